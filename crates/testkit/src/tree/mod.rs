//! Trees of files for round-trip tests: [`build_every_kind`] makes one,
//! [`scan`] reads everything a faithful copy keeps, [`assert_same`] compares
//! an original and its copy at a [`Precision`].

mod build;
mod compare;
mod scan;

pub use build::{build_every_kind, Options};
pub use compare::{assert_same, differences, Allocation, Mtimes, Precision};
pub use scan::{scan, Kind, Mtime, Node, Tree};
