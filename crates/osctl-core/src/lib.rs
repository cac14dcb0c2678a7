//! osctl's library: the model (pools, users, groups, containers), the archive
//! format, the storage backends and the runtime. The `osctl` binary is a thin
//! command-line layer over it.

pub mod accounts;
pub mod archive;
pub mod cmd;
pub mod containers;
pub mod datasets;
pub mod error;
pub mod export;
pub mod failpoint;
pub mod filepolicy;
pub mod fstar;
pub mod fsutil;
pub mod host;
pub mod idmap;
pub mod import;
pub mod inspect;
pub mod interrupt;
pub mod journal;
pub mod lock;
pub mod model;
pub mod names;
pub mod netif;
pub mod pool;
pub mod progress;
pub mod recovery;
pub mod repack;
pub mod resources;
pub mod runtime;
pub mod send;
pub mod storage;
pub mod subid;
mod tarblock;
pub mod timefmt;
pub mod trust;
pub mod yaml;

pub use error::{Error, ErrorKind, Result};
