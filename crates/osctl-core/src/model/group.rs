use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{empty_map, is_empty_list, Extra};

/// `conf/group/<path>/config.yml` and `config/group.yml` in archives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct GroupConfig {
    /// Only the root group `/` carries its path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default)]
    pub cgparams: Vec<Value>,
    #[serde(default, skip_serializing_if = "is_empty_list")]
    pub devices: Vec<Value>,
    #[serde(default = "empty_map")]
    pub attrs: Value,
    #[serde(flatten)]
    pub extra: Extra,
}

impl GroupConfig {
    pub fn new(path: &str) -> Self {
        GroupConfig {
            path: (path == "/").then(|| "/".to_string()),
            attrs: empty_map(),
            ..Default::default()
        }
    }
}
