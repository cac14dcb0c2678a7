mod accounts;
mod containers;
mod export_import;
mod hostile;
mod loopfs;
mod rawtar;
mod support;
mod tree;
