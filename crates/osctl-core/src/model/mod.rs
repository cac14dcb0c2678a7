//! The configuration files of users, groups and containers, with the keys of
//! vpsAdminOS's osctld. Keys we do not interpret are kept as they were, so a
//! config survives a trip through us unchanged.

pub mod container;
pub mod grammar;
pub mod group;
pub mod netif;
pub mod user;

pub use container::ContainerConfig;
pub use group::GroupConfig;
pub use user::UserConfig;

use serde_json::{Map, Value};

/// Keys we do not interpret, in their original order of appearance.
pub type Extra = Map<String, Value>;

pub(crate) fn empty_map() -> Value {
    Value::Object(Map::new())
}

pub(crate) fn is_empty_list(v: &[Value]) -> bool {
    v.is_empty()
}
