use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{empty_map, Extra};
use crate::error::Result;
use crate::idmap::IdMap;

/// `conf/user/<name>.yml` and `config/user.yml` in archives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserConfig {
    #[serde(default)]
    pub uid_map: Vec<String>,
    #[serde(default)]
    pub gid_map: Vec<String>,
    #[serde(default = "yes")]
    pub standalone: bool,
    #[serde(default = "empty_map")]
    pub attrs: Value,
    #[serde(flatten)]
    pub extra: Extra,
}

fn yes() -> bool {
    true
}

impl UserConfig {
    pub fn new(uid_map: &IdMap, gid_map: &IdMap) -> Self {
        UserConfig {
            uid_map: uid_map.to_strings(),
            gid_map: gid_map.to_strings(),
            standalone: true,
            attrs: empty_map(),
            extra: Extra::new(),
        }
    }

    pub fn uid_map(&self) -> Result<IdMap> {
        IdMap::parse_all(&self.uid_map)
    }

    pub fn gid_map(&self) -> Result<IdMap> {
        IdMap::parse_all(&self.gid_map)
    }

    /// Both maps, validated.
    pub fn maps(&self) -> Result<(IdMap, IdMap)> {
        Ok((self.uid_map()?, self.gid_map()?))
    }
}
