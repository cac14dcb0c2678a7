//! Subdatasets of a container (`osctl ct dataset new|ls|del`): names relative
//! to the root dataset (`var`, `var/log`), each keeping its files in its own
//! `private/`, and shown to the container, as vpsAdminOS shows them, by a
//! `mounts` entry of its config that names the dataset instead of a host path:
//!
//! ```yaml
//! mounts:
//! - {fs: null, mountpoint: /var, type: bind, opts: "bind,create=dir,rw",
//!    automount: true, dataset: var, temporary: false}
//! ```
//!
//! Such an entry reaches nothing outside the container, so an archive may
//! carry it without `--trusted`; it is checked as strictly as a host mount:
//! the dataset must be one of the container's, the mountpoint a clean
//! absolute path.

use serde::Serialize;
use serde_json::{json, Value};

use crate::containers;
use crate::error::{Error, Result};
use crate::model::ContainerConfig;
use crate::names;
use crate::pool::Pool;
use crate::runtime::MountSpec;
use crate::storage::{self, Dataset};

/// Options of the mounts `ct dataset new` adds, as the original writes them.
pub const MOUNT_OPTS: &str = "bind,create=dir,rw";
/// Longest mountpoint accepted (PATH_MAX).
const MAX_MOUNTPOINT: usize = 4096;

#[derive(Debug, Clone, Serialize)]
pub struct DatasetInfo {
    /// Relative to the container's root dataset.
    pub name: String,
    /// Where the container sees it; None when no `mounts` entry shows it.
    pub mountpoint: Option<String>,
    /// Where its files are on the host: its `private/`.
    pub path: String,
}

/// A `mounts` entry that shows one of the container's datasets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetMount {
    /// "" for the root dataset (`/` in the config), else its relative name.
    pub dataset: String,
    /// Absolute, clean: no `.`, `..` or empty components, not `/`.
    pub mountpoint: String,
    pub options: String,
    /// Mounted when the container starts: `automount` and not `temporary`.
    pub at_start: bool,
}

/// Whether a `mounts` entry names a dataset (its `dataset` key is set).
pub fn is_dataset_mount(entry: &Value) -> bool {
    entry.get("dataset").is_some_and(|v| !v.is_null())
}

/// Parses a dataset mount; None for an entry that names no dataset.
pub fn parse_mount(entry: &Value) -> Option<Result<DatasetMount>> {
    is_dataset_mount(entry).then(|| parse_dataset_mount(entry))
}

fn parse_dataset_mount(entry: &Value) -> Result<DatasetMount> {
    let text = |key: &str| -> Result<Option<&str>> {
        match entry.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(Error::invalid(format!(
                "a dataset mount has a {key} that is no string ({other})"
            ))),
        }
    };
    let dataset = text("dataset")?.unwrap_or_default();
    let bad = |why: String| Error::invalid(format!("mount of dataset '{dataset}': {why}"));
    let dataset = if dataset == "/" {
        String::new()
    } else {
        names::subdataset(dataset).map_err(|e| bad(e.to_string()))?;
        dataset.to_string()
    };
    if text("fs")?.is_some() {
        return Err(bad("it names a host path (fs) as well".into()));
    }
    if !matches!(text("type")?, None | Some("bind") | Some("none")) {
        return Err(bad("its type is not bind".into()));
    }
    let mountpoint = text("mountpoint")?.ok_or_else(|| bad("it has no mountpoint".into()))?;
    check_mountpoint(mountpoint).map_err(|why| bad(format!("mountpoint '{mountpoint}' {why}")))?;
    let options = text("opts")?.unwrap_or(MOUNT_OPTS);
    if options.is_empty() || !is_word(options) {
        return Err(bad(format!(
            "options '{}' are empty or hold blanks or control characters",
            options.escape_debug()
        )));
    }
    let flag = |key: &str| entry.get(key).and_then(Value::as_bool);
    Ok(DatasetMount {
        dataset,
        mountpoint: mountpoint.to_string(),
        options: options.to_string(),
        at_start: flag("automount").unwrap_or(true) && !flag("temporary").unwrap_or(false),
    })
}

fn is_word(s: &str) -> bool {
    !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The error completes "mountpoint '...' ".
fn check_mountpoint(path: &str) -> std::result::Result<(), &'static str> {
    if path.len() > MAX_MOUNTPOINT {
        return Err("is too long");
    }
    if !is_word(path) {
        return Err("holds blanks or control characters");
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err("is not absolute");
    };
    if rest.is_empty()
        || rest
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("is '/' or has an empty, '.' or '..' component");
    }
    Ok(())
}

/// Every dataset mount of a config, checked against the container's
/// subdatasets (`datasets`; the root dataset is always there).
pub fn check_mounts(cfg: &ContainerConfig, datasets: &[String]) -> Result<Vec<DatasetMount>> {
    let mut out = Vec::new();
    for entry in &cfg.mounts {
        let Some(mount) = parse_mount(entry) else {
            continue;
        };
        let mount = mount?;
        if !mount.dataset.is_empty() && !datasets.contains(&mount.dataset) {
            return Err(Error::invalid(format!(
                "container.yml mounts dataset '{}' at {}, which the container does not have",
                mount.dataset, mount.mountpoint
            )));
        }
        out.push(mount);
    }
    Ok(out)
}

/// The entry `ct dataset new` adds, as the original's `ct dataset new` does.
fn mount_entry(dataset: &str, mountpoint: &str) -> Value {
    json!({
        "fs": null,
        "mountpoint": mountpoint,
        "type": "bind",
        "opts": MOUNT_OPTS,
        "automount": true,
        "dataset": dataset,
        "temporary": false,
    })
}

/// Where a new subdataset is shown: `mountpoint` if given, else below its
/// parent's mountpoint (`/` for the root), None when the parent is not shown.
fn default_mountpoint(cfg: &ContainerConfig, name: &str) -> Result<Option<String>> {
    let (parent, leaf) = name.rsplit_once('/').unwrap_or(("", name));
    if parent.is_empty() {
        return Ok(Some(format!("/{leaf}")));
    }
    for entry in &cfg.mounts {
        if let Some(mount) = parse_mount(entry) {
            let mount = mount?;
            if mount.dataset == parent {
                return Ok(Some(format!("{}/{leaf}", mount.mountpoint)));
            }
        }
    }
    Ok(None)
}

/// Creates a subdataset; its parent (`var` for `var/log`) must exist. It is
/// mounted at `mountpoint`, or where [`default_mountpoint`] says, from the
/// container's next start.
pub fn create(pool: &Pool, id: &str, name: &str, mountpoint: Option<&str>) -> Result<()> {
    names::subdataset(name)?;
    let _lock = pool.lock_ct(id)?;
    let mut cfg = pool.ct(id)?;
    let existing = check_mounts(&cfg, &pool.storage.subdatasets(id)?)?;
    let target = match mountpoint {
        Some(path) => {
            check_mountpoint(path)
                .map_err(|why| Error::invalid(format!("mountpoint '{path}' {why}")))?;
            Some(path.to_string())
        }
        None => default_mountpoint(&cfg, name)?,
    };
    if let Some(taken) = existing
        .iter()
        .find(|m| Some(&m.mountpoint) == target.as_ref())
    {
        return Err(Error::exists(format!(
            "container '{id}' mounts dataset '{}' at {} already",
            display_name(&taken.dataset),
            taken.mountpoint
        )));
    }
    pool.storage
        .create(Dataset::new(id, name))
        .map_err(|e| e.context(format!("container '{id}'")))?;
    if let Some(target) = target {
        cfg.mounts.push(mount_entry(name, &target));
        if let Err(e) = pool.save_ct(id, &cfg) {
            let _ = pool.storage.destroy(Dataset::new(id, name));
            return Err(e);
        }
    }
    Ok(())
}

fn display_name(dataset: &str) -> &str {
    if dataset.is_empty() {
        "/"
    } else {
        dataset
    }
}

pub fn list(pool: &Pool, id: &str) -> Result<Vec<DatasetInfo>> {
    let cfg = pool.ct(id)?;
    let mounts: Vec<DatasetMount> = cfg
        .mounts
        .iter()
        .filter_map(parse_mount)
        .filter_map(Result::ok)
        .collect();
    Ok(pool
        .storage
        .subdatasets(id)?
        .into_iter()
        .map(|name| DatasetInfo {
            path: pool
                .storage
                .private(Dataset::new(id, &name))
                .to_string_lossy()
                .into_owned(),
            mountpoint: mounts
                .iter()
                .find(|m| m.dataset == name)
                .map(|m| m.mountpoint.clone()),
            name,
        })
        .collect())
}

/// Destroys a subdataset with its snapshots and the `mounts` entries that
/// show it. Refused while the container runs or while the subdataset has
/// subdatasets of its own.
pub fn delete(pool: &Pool, id: &str, name: &str) -> Result<()> {
    names::subdataset(name)?;
    let _lock = pool.lock_ct(id)?;
    let mut cfg = pool.ct(id)?;
    let state = containers::runtime(pool).state(id)?;
    if state.is_up() {
        return Err(Error::refused(format!(
            "container '{id}' is {state}: stop it before deleting its dataset '{name}'"
        )));
    }
    let all = pool.storage.subdatasets(id)?;
    if !all.iter().any(|d| d == name) {
        return Err(Error::not_found(format!(
            "container '{id}' has no dataset '{name}'"
        )));
    }
    let prefix = format!("{name}/");
    let children: Vec<&str> = all
        .iter()
        .filter(|d| d.starts_with(&prefix))
        .map(String::as_str)
        .collect();
    if !children.is_empty() {
        return Err(Error::refused(format!(
            "dataset '{name}' of container '{id}' has datasets below it ({}): delete them first",
            children.join(", ")
        )));
    }
    let before = cfg.mounts.len();
    cfg.mounts
        .retain(|m| m.get("dataset").and_then(Value::as_str) != Some(name));
    if cfg.mounts.len() != before {
        // The config first: a dataset left without its mount is harmless,
        // a mount of a dataset that is gone stops the container's start.
        pool.save_ct(id, &cfg)?;
    }
    pool.storage.destroy(Dataset::new(id, name))
}

/// What LXC mounts for a dataset mount (checked by [`check_mounts`]): the
/// dataset's `private/`, which must be a directory reached without a
/// symlink. With `idmapped`, an idmapped mount like the root file system,
/// since files are stored as the container sees them.
pub fn mount_spec(
    pool: &Pool,
    id: &str,
    mount: &DatasetMount,
    idmapped: bool,
) -> Result<MountSpec> {
    let top = pool.storage.path(Dataset::root(id));
    let source = storage::checked_private(&top, &mount.dataset).map_err(|e| {
        e.context(format!(
            "container '{id}': dataset '{}' mounted at {}",
            display_name(&mount.dataset),
            mount.mountpoint
        ))
    })?;
    // The runtime adds create=dir to every mount; LXC takes a second one
    // for a file system option, which an idmapped bind mount refuses.
    let mut options: Vec<&str> = mount
        .options
        .split(',')
        .filter(|o| *o != "create=dir")
        .collect();
    if idmapped {
        options.push("idmap=container");
    }
    Ok(MountSpec {
        source: source.to_string_lossy().into_owned(),
        target: mount.mountpoint.clone(),
        fstype: "none".into(),
        options: options.join(","),
    })
}

/// Makes the mountpoints of idmapped dataset mounts that lie inside another
/// dataset mount, in that dataset's `private/`: LXC makes the mountpoints of
/// all idmapped mounts before it mounts any, so it would make such a one
/// in the directory that the outer mount then hides. Made beneath the
/// outer `private/` without following a symlink (its content is the
/// container's), as root, mode 0755, as LXC makes them.
pub fn make_nested_mountpoints(pool: &Pool, id: &str, mounts: &[DatasetMount]) -> Result<()> {
    use std::os::fd::AsFd;
    let top = pool.storage.path(Dataset::root(id));
    let resolver = crate::fstar::safefs::Resolver::detect();
    for (i, mount) in mounts.iter().enumerate().filter(|(_, m)| m.at_start) {
        let below = |outer: &&DatasetMount| {
            outer.at_start
                && mount
                    .mountpoint
                    .strip_prefix(&outer.mountpoint)
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        let Some(outer) = mounts[..i]
            .iter()
            .filter(below)
            .max_by_key(|o| o.mountpoint.len())
        else {
            continue;
        };
        let rel = mount.mountpoint[outer.mountpoint.len()..].trim_start_matches('/');
        let failed = |e: std::io::Error| {
            Error::io(
                format!(
                    "container '{id}': cannot make mountpoint {} in dataset '{}'",
                    mount.mountpoint,
                    display_name(&outer.dataset)
                ),
                e,
            )
        };
        let base = storage::checked_private(&top, &outer.dataset)?;
        let base = std::fs::File::open(&base).map_err(failed)?;
        resolver
            .open_or_create_dir(base.as_fd(), rel.as_bytes())
            .map_err(failed)?;
    }
    Ok(())
}

/// Lets the container's root (host gid `root_gid`, that of its gid 0) pass
/// through the container's directory, mode 0710 with that group: LXC makes
/// an idmapped mount of a dataset's `private/` as the container's root, who
/// must reach it. Nobody else on the host may (setuid files in there are
/// stored as the container sees them).
pub fn let_root_through(pool: &Pool, id: &str, root_gid: u32) -> Result<()> {
    let dir = pool.storage.path(Dataset::root(id));
    rustix::fs::chown(&dir, None, Some(rustix::fs::Gid::from_raw(root_gid)))
        .map_err(std::io::Error::from)
        .map_err(|e| Error::io(format!("cannot set the group of {}", dir.display()), e))?;
    crate::fsutil::set_mode(&dir, 0o710)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_mounts_as_the_original_writes_them() {
        let entry = mount_entry("var/log", "/var/log");
        assert!(is_dataset_mount(&entry));
        let mount = parse_mount(&entry).unwrap().unwrap();
        assert_eq!(
            mount,
            DatasetMount {
                dataset: "var/log".into(),
                mountpoint: "/var/log".into(),
                options: MOUNT_OPTS.into(),
                at_start: true,
            }
        );
        assert!(!is_dataset_mount(
            &json!({"fs": "/srv", "mountpoint": "/srv"})
        ));
        assert!(!is_dataset_mount(
            &json!({"fs": "/srv", "mountpoint": "/srv", "dataset": null})
        ));
        let root = json!({"mountpoint": "/mnt/self", "dataset": "/", "automount": false});
        let mount = parse_mount(&root).unwrap().unwrap();
        assert_eq!((mount.dataset.as_str(), mount.at_start), ("", false));
        let temporary = json!({"mountpoint": "/t", "dataset": "t", "temporary": true});
        assert!(!parse_mount(&temporary).unwrap().unwrap().at_start);
    }

    #[test]
    fn dataset_mounts_are_checked() {
        let mount = |fields: Value| {
            let mut entry = mount_entry("var", "/var");
            for (k, v) in fields.as_object().unwrap() {
                entry[k] = v.clone();
            }
            parse_mount(&entry).unwrap()
        };
        for bad in [
            json!({"dataset": "../x"}),
            json!({"dataset": "private"}),
            json!({"dataset": 7}),
            json!({"fs": "/etc"}),
            json!({"type": "proc"}),
            json!({"mountpoint": null}),
            json!({"mountpoint": "var"}),
            json!({"mountpoint": "/"}),
            json!({"mountpoint": "/a/../b"}),
            json!({"mountpoint": "/a//b"}),
            json!({"mountpoint": "/a b"}),
            json!({"mountpoint": "/a\nlxc.x = y"}),
            json!({"opts": "bind 0 0\nlxc.hook.pre-start = /x"}),
            json!({"opts": ""}),
        ] {
            assert!(mount(bad.clone()).is_err(), "{bad}");
        }
        assert!(mount(json!({"type": null, "opts": null})).is_ok());

        let mut cfg = ContainerConfig::new("u", "/default");
        cfg.mounts = vec![
            json!({"fs": "/srv", "mountpoint": "/srv"}),
            mount_entry("var", "/var"),
        ];
        assert_eq!(check_mounts(&cfg, &["var".into()]).unwrap().len(), 1);
        let err = check_mounts(&cfg, &["srv".into()]).unwrap_err().to_string();
        assert!(err.contains("dataset 'var'"), "{err}");
    }

    #[test]
    fn new_datasets_go_below_their_parents_mount() {
        let mut cfg = ContainerConfig::new("u", "/default");
        assert_eq!(
            default_mountpoint(&cfg, "var").unwrap().as_deref(),
            Some("/var")
        );
        assert_eq!(default_mountpoint(&cfg, "var/log").unwrap(), None);
        cfg.mounts.push(mount_entry("var", "/srv/var"));
        assert_eq!(
            default_mountpoint(&cfg, "var/log").unwrap().as_deref(),
            Some("/srv/var/log")
        );
    }
}
