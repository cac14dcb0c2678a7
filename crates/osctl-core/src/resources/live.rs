//! Changing the resources of containers and groups: the config first, then
//! the running container's cgroups where the kernel lets us, and a word on
//! which happened ([`Effect`]).

use serde_json::Value;

use super::cgparams::{self, CgParam, Limits, Write};
use super::devices::{self, Device, Policy};
use super::hierarchy::{self, Hierarchies, Mount};
use super::prlimits::{self, PrLimit};
use super::{cgroupfs, chain, check_offered, host_version, host_writes, policy, Settings};
use crate::containers::runtime;
use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::runtime::{CtState, Runtime};

/// Where a change took effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Applied to what runs now (and to every later start).
    Now(String),
    /// Saved; applied when the container (or a container of the group) starts.
    NextStart(String),
}

impl std::fmt::Display for Effect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Effect::Now(s) | Effect::NextStart(s) => f.write_str(s),
        }
    }
}

/// A change of a `cgparams` list.
#[derive(Debug, Clone)]
pub enum CgChange {
    /// Sets these, replacing the same parameter and its counterpart of the
    /// other cgroup version (which would otherwise fill in for it).
    Set(Vec<CgParam>),
    /// Removes parameters by name (of one version, or both). `strict`: one
    /// of them must be there.
    Unset {
        names: Vec<String>,
        version: Option<u8>,
        strict: bool,
    },
}

fn entry_param(entry: &Value) -> Option<CgParam> {
    cgparams::from_config("", entry).ok()
}

impl CgChange {
    pub(crate) fn apply(&self, list: &mut Vec<Value>, owner: &str) -> Result<()> {
        match self {
            CgChange::Set(new) => {
                for p in new {
                    list.retain(|e| !entry_param(e).is_some_and(|old| old.same_setting(p)));
                }
                list.extend(new.iter().map(cgparams::to_config));
            }
            CgChange::Unset {
                names,
                version,
                strict,
            } => {
                let before = list.len();
                list.retain(|e| {
                    let name = e.get("name").and_then(Value::as_str).unwrap_or("");
                    let v = e.get("version").and_then(Value::as_u64).unwrap_or(1);
                    !(names.iter().any(|n| n == name) && version.is_none_or(|x| u64::from(x) == v))
                });
                if *strict && list.len() == before {
                    return Err(Error::not_found(format!(
                        "{owner} has no cgroup parameter {}",
                        names.join(", ")
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The files written for `limits`, or none when they cannot be (a broken
/// config before the change).
fn writes_of(h: &Hierarchies, list: &[Value]) -> Vec<(Mount, Vec<Write>)> {
    cgparams::list_from_config("", list)
        .and_then(|p| Limits::resolve(&p, host_version(h)))
        .and_then(|l| host_writes(h, &l, ""))
        .map(|v| v.into_iter().map(|(m, w)| (m.clone(), w)).collect())
        .unwrap_or_default()
}

/// What turns the `old` files into the `new` ones: changed values, and the
/// kernel's default for files no longer set.
fn diff(old: &[(Mount, Vec<Write>)], new: &[(Mount, Vec<Write>)]) -> Vec<(Mount, Vec<Write>)> {
    let mut out: Vec<(Mount, Vec<Write>)> = Vec::new();
    let mut put = |m: &Mount, w: Write| match out.iter_mut().find(|(x, _)| x == m) {
        Some((_, ws)) => ws.push(w),
        None => out.push((m.clone(), vec![w])),
    };
    let flat = |l: &[(Mount, Vec<Write>)]| -> Vec<(Mount, Write)> {
        l.iter()
            .flat_map(|(m, ws)| ws.iter().map(move |w| (m.clone(), w.clone())))
            .collect()
    };
    let (old, new) = (flat(old), flat(new));
    for (m, w) in &new {
        if !old.iter().any(|(_, o)| o == w) {
            put(m, w.clone());
        }
    }
    for (m, o) in &old {
        if !new.iter().any(|(_, w)| w.file == o.file) {
            if let Some(reset) = cgparams::reset_value(o.file) {
                put(
                    m,
                    Write {
                        value: reset.to_string(),
                        ..o.clone()
                    },
                );
            }
        }
    }
    out
}

/// Changes a container's `cgparams` and applies the change to it if it runs.
pub fn ct_cgparams(pool: &Pool, id: &str, change: &CgChange) -> Result<Effect> {
    let _lock = pool.lock_ct(id)?;
    let mut cfg = pool.ct_unvalidated(id)?;
    let owner = format!("container '{id}'");
    let h = Hierarchies::detect()?;
    let old = writes_of(&h, &cfg.cgparams);
    change.apply(&mut cfg.cgparams, &owner)?;
    let params = cgparams::list_from_config("", &cfg.cgparams).map_err(|e| e.context(&owner))?;
    let limits = Limits::resolve(&params, host_version(&h)).map_err(|e| e.context(&owner))?;
    check_offered(pool, &h, &cfg.group, &limits, &owner)?;
    pool.save_ct(id, &cfg)?;
    let changes = diff(&old, &writes_of(&h, &cfg.cgparams));
    if changes.is_empty() {
        return Ok(Effect::Now(format!(
            "{owner}: saved; this host's cgroups stay as they are"
        )));
    }
    let rt = runtime(pool);
    if rt.state(id)? != CtState::Running {
        return Ok(Effect::NextStart(format!(
            "{owner}: saved; applies when it starts"
        )));
    }
    match write_running(rt, id, &changes, &owner) {
        Ok(()) => Ok(Effect::Now(format!("{owner}: saved and applied to the running container"))),
        Err(e) => Ok(Effect::NextStart(format!(
            "{owner}: saved; applies at its next start, the running container was left as it was ({e})"
        ))),
    }
}

/// The container's cgroup (LXC's `lxc.payload.*`) in a hierarchy, found
/// from its init's `/proc/PID/cgroup` (init may have moved into a cgroup
/// of its own below it, as systemd does).
fn payload_dir(rt: &dyn Runtime, id: &str, mount: &Mount) -> Result<std::path::PathBuf> {
    let pid = rt
        .init_pid(id)?
        .ok_or_else(|| Error::refused(format!("container '{id}' has no init process")))?;
    let file = format!("/proc/{pid}/cgroup");
    let text =
        std::fs::read_to_string(&file).map_err(|e| Error::io(format!("cannot read {file}"), e))?;
    let dir = hierarchy::process_dir(mount, &text)
        .ok_or_else(|| Error::refused(format!("container '{id}': its cgroup is not in {file}")))?;
    let mut out = std::path::PathBuf::new();
    for part in dir.components() {
        out.push(part);
        if part
            .as_os_str()
            .to_string_lossy()
            .starts_with("lxc.payload.")
        {
            return Ok(out);
        }
    }
    Err(Error::refused(format!(
        "container '{id}': its init is not in an LXC payload cgroup ({})",
        dir.display()
    )))
}

fn write_running(
    rt: &dyn Runtime,
    id: &str,
    changes: &[(Mount, Vec<Write>)],
    owner: &str,
) -> Result<()> {
    for (mount, writes) in changes {
        cgroupfs::apply(&payload_dir(rt, id, mount)?, writes, owner)?;
    }
    Ok(())
}

/// Changes a group's `cgparams` and writes them into its cgroup, where
/// containers of the group have made one.
pub fn group_cgparams(pool: &Pool, path: &str, change: &CgChange) -> Result<Effect> {
    let _lock = pool.lock_accounts()?;
    let mut cfg = pool.group(path)?;
    let owner = format!("group '{path}'");
    let h = Hierarchies::detect()?;
    let old = writes_of(&h, &cfg.cgparams);
    change.apply(&mut cfg.cgparams, &owner)?;
    let params = cgparams::list_from_config("", &cfg.cgparams).map_err(|e| e.context(&owner))?;
    let limits = Limits::resolve(&params, host_version(&h)).map_err(|e| e.context(&owner))?;
    check_offered(pool, &h, path, &limits, &owner)?;
    pool.save_group(path, &cfg)?;
    let rel = cgroupfs::group_rel(&pool.host, &pool.name, path);
    let mut applied = false;
    for (mount, writes) in diff(&old, &writes_of(&h, &cfg.cgparams)) {
        let dir = Hierarchies::dir(&mount, &rel);
        if !dir.is_dir() {
            continue;
        }
        if let Err(e) = cgroupfs::apply(&dir, &writes, &owner) {
            return Ok(Effect::NextStart(format!(
                "{owner}: saved; applies when its containers start, its cgroup was left as it was ({e})"
            )));
        }
        applied = true;
    }
    Ok(if applied {
        Effect::Now(format!(
            "{owner}: saved and applied to its cgroup (and so to its running containers)"
        ))
    } else {
        Effect::NextStart(format!("{owner}: saved; applies when its containers start"))
    })
}

/// Changes a container's process limits. LXC sets them on init as the
/// container starts: a running one keeps its limits until then.
pub fn ct_prlimits(
    pool: &Pool,
    id: &str,
    change: impl FnOnce(&mut Vec<PrLimit>) -> Result<()>,
) -> Result<Effect> {
    let _lock = pool.lock_ct(id)?;
    let mut cfg = pool.ct_unvalidated(id)?;
    let owner = format!("container '{id}'");
    let mut list = prlimits::from_config(cfg.prlimits.as_ref()).map_err(|e| e.context(&owner))?;
    change(&mut list)?;
    prlimits::check_host(&list).map_err(|e| e.context(&owner))?;
    cfg.prlimits = Some(prlimits::to_config(&list));
    pool.save_ct(id, &cfg)?;
    Ok(Effect::NextStart(if runtime(pool).state(id)?.is_up() {
        format!("{owner}: saved; process limits are set as a container starts, the running one keeps its own until it is restarted")
    } else {
        format!("{owner}: saved; applies when it starts")
    }))
}

/// Adds (or replaces) a device in a `devices` list.
pub fn add_device(list: &mut Vec<Value>, dev: &Device) {
    list.retain(|e| !devices::from_config("", e).is_ok_and(|d| d.key() == dev.key()));
    list.push(dev.to_config(false));
}

/// Removes a device from a `devices` list.
pub fn del_device(list: &mut Vec<Value>, dev: &Device, owner: &str) -> Result<()> {
    let before = list.len();
    list.retain(|e| !devices::from_config("", e).is_ok_and(|d| d.key() == dev.key()));
    if list.len() == before {
        return Err(Error::not_found(format!(
            "{owner} has no device {}",
            dev.rule()
        )));
    }
    Ok(())
}

/// The device policy of a container as its configs say now.
fn ct_policy(pool: &Pool, id: &str) -> Result<Policy> {
    let cfg = pool.ct_unvalidated(id)?;
    Ok(policy(
        &chain(pool, &cfg.group)?,
        &Settings::of_container(&cfg)?,
    ))
}

/// Applies a policy change to a running container through LXC (which keeps
/// v2's device program); Err when it could not.
fn apply_policy(pool: &Pool, id: &str, old: &Policy, new: &Policy) -> Result<bool> {
    let rt = runtime(pool);
    if rt.state(id)? != CtState::Running {
        return Ok(false);
    }
    for (key, rule) in old.changes_to(new) {
        rt.cgroup_set(id, key, &rule)?;
    }
    Ok(true)
}

/// Changes a container's `devices` and its running policy.
pub fn ct_devices(
    pool: &Pool,
    id: &str,
    change: impl FnOnce(&mut Vec<Value>) -> Result<()>,
) -> Result<Effect> {
    let _lock = pool.lock_ct(id)?;
    let mut cfg = pool.ct_unvalidated(id)?;
    let owner = format!("container '{id}'");
    let old = ct_policy(pool, id).ok();
    change(&mut cfg.devices)?;
    devices::list_from_config("", &cfg.devices).map_err(|e| e.context(&owner))?;
    pool.save_ct(id, &cfg)?;
    let new = ct_policy(pool, id)?;
    let Some(old) = old else {
        return Ok(Effect::NextStart(format!(
            "{owner}: saved; applies at its next start"
        )));
    };
    Ok(match apply_policy(pool, id, &old, &new) {
        Ok(true) => Effect::Now(format!("{owner}: saved and applied to the running container")),
        Ok(false) => Effect::NextStart(format!("{owner}: saved; applies when it starts")),
        Err(e) => Effect::NextStart(format!(
            "{owner}: saved; applies at its next start, the running container was left as it was ({e})"
        )),
    })
}

/// Changes a group's `devices` and the running policy of every container
/// below it.
pub fn group_devices(
    pool: &Pool,
    path: &str,
    change: impl FnOnce(&mut Vec<Value>) -> Result<()>,
) -> Result<Effect> {
    let _lock = pool.lock_accounts()?;
    let mut cfg = pool.group(path)?;
    let owner = format!("group '{path}'");
    let prefix = format!("{}/", path.trim_end_matches('/'));
    let members: Vec<String> = pool
        .ct_ids()?
        .into_iter()
        .filter(|id| {
            pool.ct_unvalidated(id)
                .is_ok_and(|c| c.group == path || c.group.starts_with(&prefix))
        })
        .collect();
    let before: Vec<(String, Option<Policy>)> = members
        .iter()
        .map(|id| (id.clone(), ct_policy(pool, id).ok()))
        .collect();
    change(&mut cfg.devices)?;
    devices::list_from_config("", &cfg.devices).map_err(|e| e.context(&owner))?;
    pool.save_group(path, &cfg)?;
    let (mut now, mut later) = (Vec::new(), Vec::new());
    for (id, old) in before {
        let _lock = pool.lock_ct(&id)?;
        let applied = match (old, ct_policy(pool, &id)) {
            (Some(old), Ok(new)) => apply_policy(pool, &id, &old, &new),
            _ => Ok(false),
        };
        match applied {
            Ok(true) => now.push(id),
            Ok(false) => {}
            Err(e) => later.push(format!("{id} ({e})")),
        }
    }
    Ok(match (now.is_empty(), later.is_empty()) {
        (true, true) => {
            Effect::NextStart(format!("{owner}: saved; applies when its containers start"))
        }
        (_, true) => Effect::Now(format!(
            "{owner}: saved and applied to running container(s) {}",
            now.join(", ")
        )),
        _ => Effect::NextStart(format!(
            "{owner}: saved; left as they were until their next start: {}",
            later.join("; ")
        )),
    })
}
