//! osctl's library: the model (pools, users, groups, containers), the archive
//! format, the storage backends and the runtime. The `osctl` binary is a thin
//! command-line layer over it.

pub mod accounts;
pub mod cmd;
pub mod containers;
pub mod datasets;
pub mod error;
pub mod fsutil;
pub mod host;
pub mod idmap;
pub mod lock;
pub mod model;
pub mod names;
pub mod pool;
pub mod runtime;
pub mod storage;
pub mod subid;
pub mod yaml;

pub use error::{Error, Result};
