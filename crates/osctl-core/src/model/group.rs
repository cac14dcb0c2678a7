use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{empty_map, is_empty_list, Extra};
use crate::error::Result;
use crate::yaml;

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
    /// Parses `config/group.yml` and checks its limits and devices
    /// (`resources/`). Errors name `what` and the field.
    pub fn parse(bytes: &[u8], what: &str) -> Result<Self> {
        let cfg: GroupConfig = yaml::parse_bytes(bytes, what)?;
        cfg.validate().map_err(|e| e.context(what))?;
        Ok(cfg)
    }

    /// Checks the values that reach a cgroup file or an LXC line.
    pub fn validate(&self) -> Result<()> {
        crate::resources::Settings::of_group(self).map(drop)
    }

    pub fn new(path: &str) -> Self {
        GroupConfig {
            path: (path == "/").then(|| "/".to_string()),
            attrs: empty_map(),
            ..Default::default()
        }
    }
}
