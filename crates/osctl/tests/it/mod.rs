mod accounts;
mod containers;
mod hostile;
mod rawtar;
mod support;
