//! Container lifecycle: create, start, stop, exec, delete, show.
//!
//! Public functions take the container's lock themselves; the `*_locked`
//! variants are for callers (export, import) that already hold it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::cmd::Cmd;
use crate::datasets;
use crate::error::{Context, Error, Result};
use crate::idmap::IdMap;
use crate::model::{grammar, ContainerConfig};
use crate::names;
use crate::pool::Pool;
use crate::runtime::{CtState, MountSpec, RunSpec, Runtime};
use crate::storage::Dataset;

pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a new container's root file system comes from.
#[derive(Debug, Clone)]
pub enum RootfsSource {
    Dir(PathBuf),
    /// A tarball, plain, gzip or zstd.
    Tar(PathBuf),
}

#[derive(Debug, Clone)]
pub struct NewContainer {
    pub id: String,
    pub user: String,
    pub group: String,
    pub source: RootfsSource,
    pub privileged: bool,
}

/// What `ct show` and `ct ls` print.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerInfo {
    pub id: String,
    pub pool: String,
    pub user: String,
    pub group: String,
    pub state: CtState,
    pub rootfs: String,
    pub privileged: bool,
    pub hostname: String,
    pub datasets: Vec<String>,
    /// A send under way: `staged` or `received` on the target (before and
    /// after the cutover), `sending: STEP` on the source (the last step done).
    pub send: Option<String>,
}

/// The pool's runtime.
pub fn runtime(pool: &Pool) -> &dyn Runtime {
    pool.runtime.as_ref()
}

/// The dataset name recorded in container.yml.
pub fn dataset_name(pool: &Pool, id: &str) -> String {
    pool.storage.recorded_name(id)
}

pub fn create(pool: &Pool, new: &NewContainer) -> Result<()> {
    names::container_id(&new.id)?;
    let _lock = pool.lock_ct(&new.id)?;
    if pool.ct_exists(&new.id) {
        return Err(Error::exists(format!(
            "container '{}' already exists in pool '{}'",
            new.id, pool.name
        )));
    }
    pool.user(&new.user)?;
    pool.group(&new.group)?;
    check_source(&new.source)?;
    pool.storage.create(Dataset::root(&new.id))?;
    let built = (|| {
        fill_rootfs(&pool.storage.rootfs(&new.id), &new.source)?;
        let mut cfg = ContainerConfig::new(&new.user, &new.group);
        cfg.dataset = Some(dataset_name(pool, &new.id));
        // Ids may hold '_', host names may not: such a container runs
        // under its id as LXC's uts name, with no hostname in its config.
        cfg.hostname = grammar::host_name("hostname", &new.id)
            .is_ok()
            .then(|| new.id.clone());
        cfg.privileged = new.privileged;
        pool.save_ct(&new.id, &cfg)
    })();
    if let Err(e) = built {
        let _ = pool.storage.destroy(Dataset::root(&new.id));
        let _ = pool.remove_ct_config(&new.id);
        return Err(e.context(format!("container '{}'", new.id)));
    }
    Ok(())
}

/// Refuses a source that is missing or not what its option says.
fn check_source(source: &RootfsSource) -> Result<()> {
    use crate::archive::sniff::{sniff_file, Sniffed};
    match source {
        RootfsSource::Dir(d) if d.is_file() => Err(Error::invalid(format!(
            "{} is a file, not a directory (for a tarball, use --from-tar)",
            d.display()
        ))),
        RootfsSource::Dir(d) if !d.is_dir() => Err(Error::not_found(format!(
            "directory {} not found",
            d.display()
        ))),
        RootfsSource::Tar(f) if f.is_dir() => Err(Error::invalid(format!(
            "{} is a directory, not a tarball (for a directory, use --from-dir)",
            f.display()
        ))),
        RootfsSource::Tar(f) if !f.is_file() => {
            Err(Error::not_found(format!("file {} not found", f.display())))
        }
        RootfsSource::Tar(f) if sniff_file(f) == Sniffed::OsctlArchive => {
            Err(Error::invalid(format!(
                "{} is an osctl archive, not a root file system: import it with \
                 `osctl ct import {}`",
                f.display(),
                f.display()
            )))
        }
        _ => Ok(()),
    }
}

/// Copies the source into an empty root file system, keeping owners, modes,
/// times, xattrs, hard links, device nodes and holes.
fn fill_rootfs(rootfs: &Path, source: &RootfsSource) -> Result<()> {
    let cmd = match source {
        RootfsSource::Dir(dir) => Cmd::new("cp")
            .args(["-a", "--sparse=always", "--no-target-directory"])
            .arg(dir.join("."))
            .arg(rootfs),
        // GNU tar recognises gzip and zstd input by itself.
        RootfsSource::Tar(file) => Cmd::new("tar")
            .args([
                "-x",
                "--numeric-owner",
                "--same-owner",
                "--same-permissions",
                "--xattrs",
                "--xattrs-include=*",
                "--sparse",
                "-C",
            ])
            .arg(rootfs)
            .arg("-f")
            .arg(file),
    };
    cmd.run()
        .map(drop)
        .ctx(|| "cannot fill the root file system")
}

pub fn delete(pool: &Pool, id: &str, force: bool) -> Result<()> {
    let lock = pool.lock_ct(id)?;
    let cfg = pool.ct_unvalidated(id)?;
    let rt = runtime(pool);
    let state = rt.state(id)?;
    if state.is_up() {
        if !force {
            return Err(Error::refused(format!(
                "container '{id}' is {state}: stop it first or use --force"
            )));
        }
        rt.stop(id, Duration::from_secs(0))?;
    }
    crate::resources::release(pool, id, &cfg.group);
    destroy_locked(pool, id)?;
    pool.unlock_ct(id, lock)
}

/// Removes a stopped container's runtime config, datasets, config and log.
pub fn destroy_locked(pool: &Pool, id: &str) -> Result<()> {
    runtime(pool).remove(id)?;
    pool.storage.destroy(Dataset::root(id))?;
    pool.remove_ct_config(id)?;
    crate::fsutil::remove_dir_all_if_exists(&pool.hooks_dir(id))?;
    crate::fsutil::remove_file_if_exists(&log_file(pool, id))
}

pub fn log_file(pool: &Pool, id: &str) -> PathBuf {
    pool.log_dir().join(format!("{id}.log"))
}

pub fn start(pool: &Pool, id: &str) -> Result<()> {
    let _lock = pool.lock_ct(id)?;
    start_locked(pool, id)
}

pub fn start_locked(pool: &Pool, id: &str) -> Result<()> {
    let mut cfg = pool.ct(id)?;
    crate::send::check_startable(&cfg, id)?;
    let rt = runtime(pool);
    match rt.state(id)? {
        CtState::Running => return Ok(()),
        CtState::Stopped => {}
        other => {
            return Err(Error::busy(format!("container '{id}' is {other}")));
        }
    }
    let net = crate::netif::prepare_start(pool, id, &mut cfg)?;
    pool.storage.mount(id)?;
    let mut spec = run_spec(pool, id, &cfg)?;
    spec.net = net;
    spec.resources = crate::resources::prepare_start(pool, id, &cfg)?;
    rt.start(&spec).inspect_err(|_| {
        if rt.state(id).is_ok_and(|s| s == CtState::Stopped) {
            crate::resources::release(pool, id, &cfg.group);
        }
    })
}

/// Runs a container again that a dead export was stopping or starting. LXC
/// finishes what it began without us, so first wait for that. A container
/// still running while the export was stopping it may have init half way
/// through its shutdown, and would stop on its own later: finish the stop,
/// then start it.
pub(crate) fn start_after_dead_export(pool: &Pool, id: &str, was_starting: bool) -> Result<()> {
    let rt = runtime(pool);
    if rt.settle(id)? == CtState::Running {
        if was_starting {
            return Ok(());
        }
        rt.stop(id, DEFAULT_STOP_TIMEOUT)?;
    }
    start_locked(pool, id)
}

fn run_spec(pool: &Pool, id: &str, cfg: &ContainerConfig) -> Result<RunSpec> {
    let rootfs = pool.storage.rootfs(id);
    let idmap: Option<(IdMap, IdMap)> = if cfg.privileged {
        None
    } else {
        let user = pool.user(&cfg.user)?;
        let maps: (IdMap, IdMap) = user
            .maps()
            .map_err(|e| e.context(format!("user '{}'", cfg.user)))?;
        if let Some(fs) = lacks_idmapped_mounts(&rootfs)? {
            return Err(Error::refused(format!(
                "container '{id}': its root file system is on {fs}, which has no idmapped mounts; \
                 to run it privileged (without a user namespace), run `osctl ct set privileged {id} on`"
            )));
        }
        check_lxc_path_reachable(pool, id, &maps)?;
        Some(maps)
    };
    Ok(RunSpec {
        id: id.to_string(),
        rootfs,
        hostname: cfg.hostname.clone().unwrap_or_else(|| id.to_string()),
        init: cfg.init_argv(),
        mounts: mount_specs(pool, id, cfg, idmap.as_ref().map(|m| &m.1))?,
        idmap,
        raw_lxc: cfg.raw_lxc(),
        log_file: log_file(pool, id),
        net: Vec::new(),
        resources: Vec::new(),
    })
}

/// LXC, once it runs as the container's root (its mapped host ids), must
/// pass through every directory above the pool's LXC path; a state
/// directory under a private parent (`OSCTL_ROOT=$(mktemp -d)`) stops it
/// with a message that names neither. Said here, before starting.
fn check_lxc_path_reachable(
    pool: &Pool,
    id: &str,
    (uid_map, gid_map): &(IdMap, IdMap),
) -> Result<()> {
    let (Some(uid), Some(gid)) = (uid_map.to_host(0), gid_map.to_host(0)) else {
        return Ok(());
    };
    let lxc_path = pool.lxc_path();
    let Some((dir, meta)) = crate::fsutil::first_unsearchable(&lxc_path, uid, gid) else {
        return Ok(());
    };
    use std::os::unix::fs::MetadataExt;
    Err(Error::refused(format!(
        "container '{id}' cannot start: its root user (host uid {uid}) cannot pass through {} \
         (mode {:04o}, owner uid {}), above {}, where LXC keeps the container; \
         let others search it (chmod o+x {}) or use an OSCTL_ROOT they can reach",
        dir.display(),
        meta.mode() & 0o7777,
        meta.uid(),
        lxc_path.display(),
        dir.display()
    )))
}

/// `mounts` entries of container.yml as osctld writes them
/// (`{fs, mountpoint, type, opts}`, values checked by
/// `ContainerConfig::validate`), in order; those that name one of the
/// container's datasets ([`datasets`]) show its `private/`.
/// With `gid_map` (unprivileged), those are idmapped mounts.
fn mount_specs(
    pool: &Pool,
    id: &str,
    cfg: &ContainerConfig,
    gid_map: Option<&IdMap>,
) -> Result<Vec<MountSpec>> {
    let mut shown = Vec::new();
    if cfg.mounts.iter().any(datasets::is_dataset_mount) {
        let known = pool.storage.subdatasets(id)?;
        shown = datasets::check_mounts(cfg, &known)
            .map_err(|e| e.context(format!("container '{id}'")))?;
    }
    let idmapped = gid_map.is_some();
    if let Some(root_gid) = gid_map.and_then(|m| m.to_host(0)) {
        if shown.iter().any(|m| m.at_start) {
            datasets::let_root_through(pool, id, root_gid)?;
            datasets::make_nested_mountpoints(pool, id, &shown)?;
        }
    }
    let mut shown = shown.into_iter();
    cfg.mounts
        .iter()
        .filter_map(|m| {
            if !datasets::is_dataset_mount(m) {
                return Some(host_mount_spec(m));
            }
            let mount = shown.next()?;
            mount
                .at_start
                .then(|| datasets::mount_spec(pool, id, &mount, idmapped))
        })
        .collect()
}

/// A `mounts` entry of a host path.
fn host_mount_spec(m: &serde_json::Value) -> Result<MountSpec> {
    let get = |k: &str| m.get(k).and_then(|v| v.as_str()).map(String::from);
    let source = get("fs").ok_or_else(|| Error::invalid("mount without 'fs'"))?;
    let target = get("mountpoint").ok_or_else(|| Error::invalid("mount without 'mountpoint'"))?;
    Ok(MountSpec {
        source,
        target,
        fstype: get("type").unwrap_or_else(|| "none".into()),
        options: get("opts").unwrap_or_else(|| "bind".into()),
    })
}

/// The file system's name when it cannot do idmapped mounts, None when it can.
fn lacks_idmapped_mounts(path: &Path) -> Result<Option<&'static str>> {
    let st = rustix::fs::statfs(path)
        .map_err(std::io::Error::from)
        .ctx(|| format!("cannot stat file system of {}", path.display()))?;
    // f_type values from statfs(2); these support idmapped mounts on 6.x kernels.
    let supported: &[i64] = &[
        0xEF53,     // ext2/3/4
        0x9123683E, // btrfs
        0x58465342, // xfs
        0x01021994, // tmpfs
        0x2FC12FC1, // OpenZFS (2.2+)
        0xF2F52010, // f2fs
    ];
    let ftype = st.f_type as i64;
    if supported.contains(&ftype) {
        return Ok(None);
    }
    Ok(Some(match ftype {
        0x65735546 => "FUSE (e.g. zfs-fuse)",
        _ => "a file system",
    }))
}

pub fn stop(pool: &Pool, id: &str, timeout: Duration) -> Result<()> {
    let _lock = pool.lock_ct(id)?;
    let cfg = pool.ct_unvalidated(id)?;
    runtime(pool).stop(id, timeout)?;
    crate::resources::release(pool, id, &cfg.group);
    Ok(())
}

pub fn restart(pool: &Pool, id: &str, timeout: Duration) -> Result<()> {
    let _lock = pool.lock_ct(id)?;
    pool.ct(id)?;
    runtime(pool).stop(id, timeout)?;
    start_locked(pool, id)
}

/// Runs a command in a running container. The lock is held only to look at the
/// container, not while the command runs: exec must not block an export.
pub fn exec(pool: &Pool, id: &str, argv: &[String]) -> Result<i32> {
    {
        let _lock = pool.lock_ct(id)?;
        pool.ct(id)?;
    }
    runtime(pool).exec(id, argv)
}

/// Sets whether the container runs without a user namespace; true when it
/// runs now, so that the change waits for its next start.
pub fn set_privileged(pool: &Pool, id: &str, on: bool) -> Result<bool> {
    let _lock = pool.lock_ct(id)?;
    let mut cfg = pool.ct(id)?;
    cfg.privileged = on;
    pool.save_ct(id, &cfg)?;
    Ok(runtime(pool).state(id)?.is_up())
}

/// Works on a broken config too, so that `ct ls` shows what to fix.
pub fn info(pool: &Pool, id: &str) -> Result<ContainerInfo> {
    let cfg = pool.ct_unvalidated(id)?;
    let state = runtime(pool).state(id)?;
    Ok(ContainerInfo {
        id: id.to_string(),
        pool: pool.name.clone(),
        user: cfg.user.clone(),
        group: cfg.group.clone(),
        state,
        rootfs: pool.storage.rootfs(id).to_string_lossy().into_owned(),
        privileged: cfg.privileged,
        hostname: cfg
            .hostname
            .as_deref()
            .map_or_else(|| id.to_string(), grammar::escaped),
        datasets: pool.storage.subdatasets(id)?,
        send: send_state(&cfg, id),
    })
}

/// What `send_log` says, in a word or two (a damaged log says so).
fn send_state(cfg: &crate::model::ContainerConfig, id: &str) -> Option<String> {
    let log = match crate::send::log_of(cfg, id) {
        Ok(log) => log?,
        Err(_) => return Some("damaged send_log".into()),
    };
    Some(match (log.role.as_str(), log.state.as_str()) {
        ("target", "staged") => "staged".into(),
        ("target", _) => "received".into(),
        (_, "") => "sending".into(),
        (_, step) => format!("sending: {step}"),
    })
}

pub fn list(pool: &Pool) -> Result<Vec<ContainerInfo>> {
    pool.ct_ids()?.iter().map(|id| info(pool, id)).collect()
}
