//! A pool: configs of users, groups and containers, plus the storage holding
//! the containers' file systems.
//!
//! Layout of a pool's root directory (a dataset's mountpoint on zfs):
//! `conf/user/<name>.yml`, `conf/group/<path>/config.yml`, `conf/ct/<id>.yml`,
//! `log/`, `state/` (journals of exports and imports in progress), and for dir
//! and btrfs pools `ct/<id>/private` (the containers).

use std::fs;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Context, Error, ErrorKind, Result};
use crate::fsutil;
use crate::host::{Host, PoolEntry};
use crate::lock::Lock;
use crate::model::{ContainerConfig, GroupConfig, UserConfig};
use crate::names;
use crate::runtime::lxc::Lxc;
use crate::runtime::Runtime;
use crate::storage::{self, Backend, Storage};
use crate::yaml;

pub struct Pool {
    pub name: String,
    pub backend: Backend,
    pub location: String,
    /// Where `conf/`, `log/` and `state/` are.
    pub root: PathBuf,
    pub storage: Box<dyn Storage>,
    /// What runs the pool's containers: LXC, chosen here as the storage is,
    /// so that the rest of the code reaches it only through the trait.
    pub runtime: Box<dyn Runtime + Send + Sync>,
    pub host: Host,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name)
            .field("backend", &self.backend)
            .field("location", &self.location)
            .finish()
    }
}

/// Opens a backend's storage at a location; returns it with the pool root.
fn open_storage(backend: Backend, location: &str) -> Result<(Box<dyn Storage>, PathBuf)> {
    match backend {
        Backend::Dir => {
            let root = PathBuf::from(location);
            Ok((Box::new(storage::dir::DirStorage::new(&root)), root))
        }
        Backend::Btrfs => {
            let root = PathBuf::from(location);
            let storage = storage::btrfs::BtrfsStorage::open(&root)?;
            Ok((Box::new(storage), root))
        }
        Backend::Zfs => {
            let (zfs, root) = storage::zfs::ZfsStorage::open(location)?;
            Ok((Box::new(zfs), root))
        }
    }
}

/// Prepares a new pool's storage at a location (creating it where missing).
fn install_storage(backend: Backend, location: &str) -> Result<()> {
    match backend {
        Backend::Dir | Backend::Btrfs => {
            let path = Path::new(location);
            if backend == Backend::Btrfs {
                storage::btrfs::BtrfsStorage::check_location(path)?;
            }
            if path.exists() && !is_empty_or_ours(path)? {
                return Err(Error::refused(format!(
                    "{} is not empty and not an osctl pool",
                    path.display()
                )));
            }
            fsutil::create_dir_all(path)?;
            fsutil::set_mode(path, 0o711)
        }
        Backend::Zfs => storage::zfs::ZfsStorage::install(location),
    }
}

fn is_empty_or_ours(dir: &Path) -> Result<bool> {
    let mut entries = fs::read_dir(dir).ctx(|| format!("cannot read {}", dir.display()))?;
    Ok(entries.next().is_none() || dir.join("conf").join("group").join("config.yml").exists())
}

impl Pool {
    pub fn open(host: &Host, entry: &PoolEntry) -> Result<Pool> {
        let (storage, root) = open_storage(entry.backend, &entry.location)
            .map_err(|e| e.context(format!("pool '{}'", entry.name)))?;
        Ok(Pool {
            name: entry.name.clone(),
            backend: entry.backend,
            location: entry.location.clone(),
            root,
            storage,
            runtime: Box::new(Lxc::new(host.lxc_path(&entry.name))),
            host: host.clone(),
        })
    }

    /// Installs a pool: prepares its storage, its directories and the groups
    /// `/` and `/default`, then registers it.
    pub fn install(host: &Host, entry: PoolEntry) -> Result<Pool> {
        names::pool_name(&entry.name)?;
        let _registry = host.lock_registry()?;
        if host.pools()?.iter().any(|p| p.name == entry.name) {
            return Err(Error::exists(format!(
                "pool '{}' already exists",
                entry.name
            )));
        }
        install_storage(entry.backend, &entry.location)
            .map_err(|e| e.context(format!("pool '{}'", entry.name)))?;
        let pool = Pool::open(host, &entry)?;
        pool.prepare()?;
        host.register(entry)?;
        Ok(pool)
    }

    /// The pool a command works on; with none installed, the embedded default
    /// dir pool is installed first.
    pub fn select(host: &Host, name: Option<&str>) -> Result<Pool> {
        if let Some(entry) = host.select(name)? {
            return Pool::open(host, &entry);
        }
        let entry = PoolEntry {
            name: crate::host::DEFAULT_POOL.into(),
            backend: Backend::Dir,
            location: host.default_pool_path().to_string_lossy().into_owned(),
        };
        match Pool::install(host, entry.clone()) {
            Ok(pool) => Ok(pool),
            // Another command installed it meanwhile.
            Err(e) if e.kind() == ErrorKind::Exists => Pool::open(host, &entry),
            Err(e) => Err(e),
        }
    }

    fn prepare(&self) -> Result<()> {
        for dir in ["conf/user", "conf/group", "conf/ct", "log", "state"] {
            fsutil::create_dir_all(&self.root.join(dir))?;
        }
        fsutil::set_mode(&self.root.join("conf"), 0o700)?;
        for group in ["/", "/default"] {
            if !self.group_exists(group) {
                self.save_group(group, &GroupConfig::new(group))?;
            }
        }
        Ok(())
    }

    // --- paths -------------------------------------------------------------

    pub fn user_config_path(&self, name: &str) -> PathBuf {
        self.root.join("conf/user").join(format!("{name}.yml"))
    }

    pub fn group_config_path(&self, path: &str) -> PathBuf {
        let mut p = self.root.join("conf/group");
        for part in path.split('/').filter(|s| !s.is_empty()) {
            p.push(part);
        }
        p.join("config.yml")
    }

    pub fn ct_config_path(&self, id: &str) -> PathBuf {
        self.root.join("conf/ct").join(format!("{id}.yml"))
    }

    pub fn log_dir(&self) -> PathBuf {
        self.root.join("log")
    }

    /// Journals of operations in progress.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    /// Hook scripts of a container (kept from trusted archives, never run).
    pub fn hooks_dir(&self, id: &str) -> PathBuf {
        self.root.join("hooks/ct").join(id)
    }

    pub fn lxc_path(&self) -> PathBuf {
        self.host.lxc_path(&self.name)
    }

    // --- locks -------------------------------------------------------------

    pub fn ct_lock_path(&self, id: &str) -> PathBuf {
        self.host.lock_dir(&self.name).join(format!("ct.{id}.lock"))
    }

    /// Every operation on a container holds this lock.
    pub fn lock_ct(&self, id: &str) -> Result<Lock> {
        Lock::acquire(
            &self.ct_lock_path(id),
            &format!("container '{id}' in pool '{}'", self.name),
        )
    }

    /// Lets go of a container's lock, removing its file when the container
    /// does not exist (any more, or never did: a refused import), so that
    /// locks of gone containers do not pile up.
    pub fn unlock_ct(&self, id: &str, lock: Lock) -> Result<()> {
        if self.ct_exists(id) {
            return Ok(());
        }
        lock.remove()
    }

    /// Serialises changes to the pool's users and groups (and id allocation).
    pub fn lock_accounts(&self) -> Result<Lock> {
        Lock::acquire(
            &self.host.lock_dir(&self.name).join("accounts.lock"),
            &format!("users and groups of pool '{}'", self.name),
        )
    }

    // --- configs -----------------------------------------------------------

    fn load<T: DeserializeOwned>(&self, path: &Path, missing: impl FnOnce() -> Error) -> Result<T> {
        match fsutil::read_optional(path)? {
            Some(text) => yaml::parse(&text, &path.display().to_string()),
            None => Err(missing()),
        }
    }

    fn store<T: Serialize>(&self, path: &Path, value: &T) -> Result<()> {
        if let Some(dir) = path.parent() {
            fsutil::create_dir_all(dir)?;
        }
        fsutil::atomic_write(path, yaml::to_string(value)?.as_bytes())
    }

    pub fn user_exists(&self, name: &str) -> bool {
        self.user_config_path(name).exists()
    }

    pub fn user(&self, name: &str) -> Result<UserConfig> {
        names::user_name(name)?;
        self.load(&self.user_config_path(name), || {
            Error::not_found(format!("user '{name}' not found in pool '{}'", self.name))
        })
    }

    pub fn save_user(&self, name: &str, cfg: &UserConfig) -> Result<()> {
        self.store(&self.user_config_path(name), cfg)
    }

    pub fn remove_user_config(&self, name: &str) -> Result<()> {
        fsutil::remove_file_if_exists(&self.user_config_path(name))
    }

    pub fn user_names(&self) -> Result<Vec<String>> {
        yml_stems(&self.root.join("conf/user"))
    }

    pub fn group_exists(&self, path: &str) -> bool {
        self.group_config_path(path).exists()
    }

    pub fn group(&self, path: &str) -> Result<GroupConfig> {
        names::group_path(path)?;
        self.load(&self.group_config_path(path), || {
            Error::not_found(format!("group '{path}' not found in pool '{}'", self.name))
        })
    }

    pub fn save_group(&self, path: &str, cfg: &GroupConfig) -> Result<()> {
        self.store(&self.group_config_path(path), cfg)
    }

    /// Removes a group's config and its (then empty) directory.
    pub fn remove_group_config(&self, path: &str) -> Result<()> {
        let file = self.group_config_path(path);
        fsutil::remove_file_if_exists(&file)?;
        if path != "/" {
            if let Some(dir) = file.parent() {
                let _ = fs::remove_dir(dir);
            }
        }
        Ok(())
    }

    /// All group paths, parents before children.
    pub fn group_paths(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        collect_groups(&self.root.join("conf/group"), "", &mut out)?;
        out.sort();
        Ok(out)
    }

    pub fn ct_exists(&self, id: &str) -> bool {
        self.ct_config_path(id).exists()
    }

    /// A container's config, its values checked as an archive's are: a
    /// config an admin broke, or an older import left, is refused.
    pub fn ct(&self, id: &str) -> Result<ContainerConfig> {
        let cfg = self.ct_unvalidated(id)?;
        cfg.validate().map_err(|e| {
            Error::refused(format!(
                "container '{id}': {}: {e}",
                self.ct_config_path(id).display()
            ))
        })?;
        Ok(cfg)
    }

    /// A container's config without the checks of [`Pool::ct`]: for what
    /// must work on a broken config (ls, show, stop, delete, and whether a
    /// user or group is in use), never for what reaches LXC.
    pub fn ct_unvalidated(&self, id: &str) -> Result<ContainerConfig> {
        names::container_id(id)?;
        self.load(&self.ct_config_path(id), || {
            Error::not_found(format!(
                "container '{id}' not found in pool '{}'",
                self.name
            ))
        })
    }

    pub fn save_ct(&self, id: &str, cfg: &ContainerConfig) -> Result<()> {
        self.store(&self.ct_config_path(id), cfg)
    }

    pub fn remove_ct_config(&self, id: &str) -> Result<()> {
        fsutil::remove_file_if_exists(&self.ct_config_path(id))
    }

    pub fn ct_ids(&self) -> Result<Vec<String>> {
        yml_stems(&self.root.join("conf/ct"))
    }
}

/// Names of `*.yml` files in a directory, sorted.
fn yml_stems(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).ctx(|| format!("cannot list {}", dir.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.ctx(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".yml") {
            if !stem.starts_with('.') {
                names.push(stem.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

fn collect_groups(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<()> {
    if dir.join("config.yml").exists() {
        out.push(if prefix.is_empty() {
            "/".into()
        } else {
            prefix.to_string()
        });
    }
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).ctx(|| format!("cannot list {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.ctx(|| format!("cannot list {}", dir.display()))?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            let name = entry.file_name().to_string_lossy().into_owned();
            collect_groups(&entry.path(), &format!("{prefix}/{name}"), out)?;
        }
    }
    Ok(())
}
