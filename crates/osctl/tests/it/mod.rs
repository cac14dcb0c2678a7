mod accounts;
mod containers;
mod support;
