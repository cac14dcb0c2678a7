//! Host state under `OSCTL_ROOT`: the registry of installed pools, lock files
//! and the LXC path. Nothing else on the host is ours.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::lock::Lock;
use crate::names;
use crate::storage::Backend;
use crate::yaml;

pub const DEFAULT_ROOT: &str = "/var/lib/osctl";
pub const DEFAULT_POOL: &str = "default";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PoolEntry {
    pub name: String,
    pub backend: Backend,
    /// A directory (dir, btrfs) or a dataset (zfs).
    pub location: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Registry {
    #[serde(default)]
    pools: Vec<PoolEntry>,
}

#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
}

impl Host {
    /// The host state of `OSCTL_ROOT`, or of `/var/lib/osctl`.
    pub fn from_env() -> Host {
        let root = std::env::var_os("OSCTL_ROOT")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
        Host::at(root)
    }

    pub fn at(root: impl Into<PathBuf>) -> Host {
        let root = root.into();
        // Relative roots would change meaning with the working directory.
        let root = std::path::absolute(&root).unwrap_or(root);
        Host { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn registry_path(&self) -> PathBuf {
        self.root.join("pools.yml")
    }

    /// Lock files of a pool's objects.
    pub fn lock_dir(&self, pool: &str) -> PathBuf {
        self.root.join("locks").join(pool)
    }

    /// LXC's `-P` path for a pool's containers.
    pub fn lxc_path(&self, pool: &str) -> PathBuf {
        self.root.join("lxc").join(pool)
    }

    /// Where the embedded default pool lives.
    pub fn default_pool_path(&self) -> PathBuf {
        self.root.join("pools").join(DEFAULT_POOL)
    }

    /// Serialises changes to the registry.
    pub fn lock_registry(&self) -> Result<Lock> {
        Lock::acquire(
            &self.root.join("locks").join("registry.lock"),
            "the pool registry",
        )
    }

    pub fn pools(&self) -> Result<Vec<PoolEntry>> {
        let path = self.registry_path();
        match fsutil::read_optional(&path)? {
            None => Ok(Vec::new()),
            Some(text) => Ok(yaml::parse::<Registry>(&text, &path.display().to_string())?.pools),
        }
    }

    fn save(&self, pools: Vec<PoolEntry>) -> Result<()> {
        fsutil::create_dir_all(&self.root)?;
        fsutil::atomic_write(
            &self.registry_path(),
            yaml::to_string(&Registry { pools })?.as_bytes(),
        )
    }

    /// Adds a pool to the registry; the caller holds the registry lock.
    pub fn register(&self, entry: PoolEntry) -> Result<()> {
        names::pool_name(&entry.name)?;
        let mut pools = self.pools()?;
        if pools.iter().any(|p| p.name == entry.name) {
            return Err(Error::exists(format!(
                "pool '{}' already exists",
                entry.name
            )));
        }
        if let Some(p) = pools.iter().find(|p| p.location == entry.location) {
            return Err(Error::exists(format!(
                "{} is already used by pool '{}'",
                entry.location, p.name
            )));
        }
        pools.push(entry);
        self.save(pools)
    }

    /// Removes a pool from the registry; the caller holds the registry lock.
    pub fn unregister(&self, name: &str) -> Result<PoolEntry> {
        let mut pools = self.pools()?;
        let i = pools
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| Error::not_found(format!("pool '{name}' not found")))?;
        let entry = pools.remove(i);
        self.save(pools)?;
        Ok(entry)
    }

    /// The pool a command works on: the named one; else the only one; else `default`.
    pub fn select(&self, name: Option<&str>) -> Result<Option<PoolEntry>> {
        let pools = self.pools()?;
        if let Some(name) = name {
            return pools
                .into_iter()
                .find(|p| p.name == name)
                .map(Some)
                .ok_or_else(|| Error::not_found(format!("pool '{name}' not found")));
        }
        if pools.len() == 1 {
            return Ok(pools.into_iter().next());
        }
        if pools.is_empty() {
            return Ok(None);
        }
        match pools.into_iter().find(|p| p.name == DEFAULT_POOL) {
            Some(p) => Ok(Some(p)),
            None => Err(Error::invalid(
                "several pools are installed and none is named 'default': choose one with --pool",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_and_select() {
        let d = tempfile::tempdir().unwrap();
        let host = Host::at(d.path());
        assert!(host.select(None).unwrap().is_none());
        let a = PoolEntry {
            name: "a".into(),
            backend: Backend::Dir,
            location: "/x".into(),
        };
        host.register(a.clone()).unwrap();
        assert_eq!(host.select(None).unwrap(), Some(a.clone()));
        assert!(host.register(a.clone()).is_err());
        let b = PoolEntry {
            name: "b".into(),
            backend: Backend::Dir,
            location: "/y".into(),
        };
        host.register(b).unwrap();
        assert!(host.select(None).is_err());
        assert_eq!(host.select(Some("a")).unwrap(), Some(a));
        assert!(host.select(Some("zz")).is_err());
    }
}
