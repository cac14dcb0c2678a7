//! Resources that travel with a container: the cgroup limits of its groups
//! and its own (`cgparams`), its process limits (`prlimits`) and its device
//! policy (`devices`), read from the configs osctld writes and applied when
//! the container starts:
//!
//! - each group's limits are written into the group's own cgroup (groups
//!   nest, so a container is limited by every group above it), and LXC puts
//!   the container below its group (`lxc.cgroup.dir`);
//! - the container's limits, prlimits and device policy become LXC lines
//!   (`lxc.cgroup.*` for a controller on a cgroup v1 hierarchy,
//!   `lxc.cgroup2.*` on v2, per controller: hosts may be hybrid).
//!
//! `live.rs` changes them on running containers. `docs/resources.md` says
//! which parameters translate between the versions.

pub mod carry;
pub mod cgparams;
pub mod cgroupfs;
pub mod devices;
pub mod hierarchy;
pub mod live;
pub mod prlimits;

use std::collections::BTreeMap;

use cgparams::{CgParam, Controller, CpuMax, Limit, Limits, Version, Write};
use devices::{Device, Grant, Policy};
use hierarchy::{Hierarchies, Mount};
use prlimits::PrLimit;

use crate::error::{Error, Result};
use crate::model::{ContainerConfig, GroupConfig};
use crate::names;
use crate::pool::Pool;

/// The resource settings of one config, parsed and checked.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub cgparams: Vec<CgParam>,
    pub devices: Vec<Device>,
    pub prlimits: Vec<PrLimit>,
}

impl Settings {
    pub fn of_container(cfg: &ContainerConfig) -> Result<Settings> {
        Ok(Settings {
            cgparams: cgparams::list_from_config("", &cfg.cgparams)?,
            devices: devices::list_from_config("", &cfg.devices)?,
            prlimits: prlimits::from_config(cfg.prlimits.as_ref())?,
        })
    }

    pub fn of_group(cfg: &GroupConfig) -> Result<Settings> {
        Ok(Settings {
            cgparams: cgparams::list_from_config("", &cfg.cgparams)?,
            devices: devices::list_from_config("", &cfg.devices)?,
            prlimits: Vec::new(),
        })
    }
}

/// A group and its ancestors' paths, root first.
pub fn lineage(group: &str) -> Vec<String> {
    let mut paths = vec![group.to_string()];
    while let Some(parent) = paths.last().and_then(|p| names::group_parent(p)) {
        paths.push(parent.to_string());
    }
    paths.reverse();
    paths
}

/// The settings of a group and its ancestors, root first.
pub fn chain(pool: &Pool, group: &str) -> Result<Vec<(String, Settings)>> {
    lineage(group)
        .into_iter()
        .map(|path| {
            let cfg = pool.group(&path)?;
            let settings = Settings::of_group(&cfg).map_err(|e| {
                Error::refused(format!(
                    "group '{path}': {}: {e}",
                    pool.group_config_path(&path).display()
                ))
            })?;
            Ok((path, settings))
        })
        .collect()
}

/// Where each controller is on this host; v2 for one it lacks (writing
/// its limits is refused then, see [`host_writes`]).
pub fn host_version(h: &Hierarchies) -> impl Fn(Controller) -> Version + '_ {
    move |c| h.version_of(c).unwrap_or(Version::V2)
}

/// The files `limits` writes on this host, with the hierarchy of each.
fn host_writes<'h>(
    h: &'h Hierarchies,
    limits: &Limits,
    owner: &str,
) -> Result<Vec<(&'h Mount, Vec<Write>)>> {
    limits
        .controllers()
        .into_iter()
        .map(|c| {
            let mount = h.mount_of(c).ok_or_else(|| {
                Error::refused(format!(
                    "{owner} has {} limits, but this host has no {} cgroup controller",
                    c.name(Version::V2),
                    c.name(Version::V2)
                ))
            })?;
            let writes = limits
                .writes(c, mount.version)
                .map_err(|e| e.context(owner))?;
            Ok((mount, writes))
        })
        .collect()
}

/// Refuses limits of `owner` this host's kernel does not offer, looked up
/// in the cgroup of `group` (made if missing, as LXC would make it).
pub(crate) fn check_offered(
    pool: &Pool,
    h: &Hierarchies,
    group: &str,
    limits: &Limits,
    owner: &str,
) -> Result<()> {
    let rel = cgroupfs::group_rel(&pool.host, &pool.name, group);
    for (mount, writes) in host_writes(h, limits, owner)? {
        let ctrls: Vec<&str> = writes
            .iter()
            .map(|w| w.controller.name(mount.version))
            .collect();
        let dir = cgroupfs::ensure_dir(mount, &rel, &ctrls)?;
        cgroupfs::check_offered(&dir, &writes, owner)?;
    }
    Ok(())
}

/// On cgroup v1 a cgroup's CPU quota may not exceed its parent's (the
/// kernel refuses it; v2 takes the tighter by itself): the tighter wins.
fn clamp_cpu(limits: &mut Limits, above: Option<CpuMax>, on_v1: bool) {
    let (
        Some(mine),
        Some(CpuMax {
            quota: Limit::Value(q),
            period: p,
        }),
    ) = (limits.cpu, above)
    else {
        return;
    };
    let allowed = q.saturating_mul(mine.period) / p;
    if on_v1 && mine.quota.value().is_none_or(|m| m > allowed) {
        limits.cpu = Some(CpuMax {
            quota: Limit::Value(allowed),
            period: mine.period,
        });
    }
}

/// The tighter of two CPU limits.
fn tighter_cpu(a: Option<CpuMax>, b: Option<CpuMax>) -> Option<CpuMax> {
    match (a, b) {
        (Some(x), Some(y)) => {
            let ratio = |c: CpuMax| c.percent().unwrap_or(f64::INFINITY);
            Some(if ratio(y) < ratio(x) { y } else { x })
        }
        (x, y) => x.or(y),
    }
}

/// Writes the limits of a container's groups into their cgroups and returns
/// the LXC lines of the container's own: its cgroup, limits, device policy
/// and process limits. Called right before LXC starts it.
pub fn prepare_start(
    pool: &Pool,
    id: &str,
    cfg: &ContainerConfig,
) -> Result<Vec<(String, String)>> {
    let h = Hierarchies::detect()?;
    let chain = chain(pool, &cfg.group)?;
    let own = Settings::of_container(cfg)?;
    let me = format!("container '{id}'");
    prlimits::check_host(&own.prlimits).map_err(|e| e.context(&me))?;
    let cpu_v1 = h.version_of(Controller::Cpu) == Some(Version::V1);
    let mut above: Option<CpuMax> = None;
    for (path, settings) in &chain {
        let owner = format!("group '{path}'");
        let mut limits =
            Limits::resolve(&settings.cgparams, host_version(&h)).map_err(|e| e.context(&owner))?;
        clamp_cpu(&mut limits, above, cpu_v1);
        above = tighter_cpu(above, limits.cpu);
        let rel = cgroupfs::group_rel(&pool.host, &pool.name, path);
        for (mount, writes) in host_writes(&h, &limits, &owner)? {
            let ctrls: Vec<&str> = writes
                .iter()
                .map(|w| w.controller.name(mount.version))
                .collect();
            let dir = cgroupfs::ensure_dir(mount, &rel, &ctrls)?;
            cgroupfs::apply(&dir, &writes, &owner)?;
        }
    }
    let rel = cgroupfs::ct_rel(&pool.host, &pool.name, &cfg.group, id);
    let mut lines = vec![("lxc.cgroup.dir".to_string(), rel)];
    let mut limits =
        Limits::resolve(&own.cgparams, host_version(&h)).map_err(|e| e.context(&me))?;
    clamp_cpu(&mut limits, above, cpu_v1);
    check_offered(pool, &h, &cfg.group, &limits, &me)?;
    for (_, writes) in host_writes(&h, &limits, &me)? {
        lines.extend(writes.iter().map(|w| (w.lxc_key(), w.value.clone())));
    }
    let version = h.devices_version().ok_or_else(|| {
        Error::refused(format!(
            "{me}: this host has no cgroup device controller to confine it with"
        ))
    })?;
    lines.extend(policy(&chain, &own).lxc_lines(version, devices::host_node_is));
    lines.extend(own.prlimits.iter().map(PrLimit::lxc_line));
    Ok(lines)
}

/// A container's device policy from its groups' grants and its own.
pub fn policy(chain: &[(String, Settings)], own: &Settings) -> Policy {
    Policy::build(
        chain
            .iter()
            .map(|(p, s)| (p.as_str(), s.devices.as_slice())),
        &own.devices,
    )
}

/// Removes a stopped container's cgroups (LXC leaves some behind).
pub fn release(pool: &Pool, id: &str, group: &str) {
    if let Ok(h) = Hierarchies::detect() {
        cgroupfs::remove_everywhere(&h, &cgroupfs::ct_rel(&pool.host, &pool.name, group, id));
    }
}

/// Removes a deleted group's cgroups.
pub fn forget_group(pool: &Pool, group: &str) {
    if let Ok(h) = Hierarchies::detect() {
        cgroupfs::remove_everywhere(&h, &cgroupfs::group_rel(&pool.host, &pool.name, group));
    }
}

/// Removes the cgroups of an uninstalled pool that nothing runs in, and the
/// host's top cgroup when no pool is left in it.
pub fn forget_pool(host: &crate::host::Host, pool: &str) {
    if let Ok(h) = Hierarchies::detect() {
        cgroupfs::remove_everywhere(&h, &cgroupfs::pool_rel(host, pool));
        for dir in h.all_dirs(&cgroupfs::root_name(host)) {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A limit in force and who set it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InForce {
    pub value: serde_json::Value,
    pub set_by: String,
}

/// One parameter as written on this host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Written {
    pub set_by: String,
    pub parameter: String,
    pub value: String,
}

/// What `ct show` says of a container's resources.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Each controller's hierarchy on this host (`v1 (blkio)`, `v2 (io)`).
    pub cgroup: BTreeMap<String, String>,
    /// The tightest limit of the container and its groups, by kind:
    /// `memory` and `swap` in bytes, `cpu_percent` (100 is one CPU), `pids`.
    pub limits: BTreeMap<String, InForce>,
    /// Every parameter written at start, in this host's names.
    pub cgparams: Vec<Written>,
    pub prlimits: Vec<PrLimit>,
    pub devices: Vec<Grant>,
}

/// The resources a container runs with on this host.
pub fn report(pool: &Pool, cfg: &ContainerConfig) -> Result<Report> {
    let h = Hierarchies::detect()?;
    let chain = chain(pool, &cfg.group)?;
    let own = Settings::of_container(cfg)?;
    let mut owners: Vec<(String, Limits)> = vec![(
        "container".into(),
        Limits::resolve(&own.cgparams, host_version(&h))?,
    )];
    for (path, s) in chain.iter().rev() {
        owners.push((
            format!("group {path}"),
            Limits::resolve(&s.cgparams, host_version(&h))?,
        ));
    }
    let mut limits = BTreeMap::new();
    let mut tightest = |kind: &str, pick: &dyn Fn(&Limits) -> Option<f64>| {
        let best = owners
            .iter()
            .filter_map(|(who, l)| pick(l).map(|v| (v, who)))
            .fold(None::<(f64, &String)>, |acc, x| match acc {
                Some(a) if a.0 <= x.0 => Some(a),
                _ => Some(x),
            });
        if let Some((v, who)) = best {
            let value = if v.fract() == 0.0 && v < 1e18 {
                serde_json::Value::from(v as u64)
            } else {
                serde_json::Value::from((v * 100.0).round() / 100.0)
            };
            limits.insert(
                kind.to_string(),
                InForce {
                    value,
                    set_by: who.clone(),
                },
            );
        }
    };
    let bytes = |l: Option<Limit>| l.and_then(Limit::value).map(|v| v as f64);
    tightest("memory", &|l| bytes(l.memory));
    tightest("swap", &|l| bytes(l.swap));
    tightest("cpu_percent", &|l| l.cpu.and_then(|c| c.percent()));
    tightest("pids", &|l| bytes(l.pids));
    let mut written = Vec::new();
    for (who, l) in owners.iter().rev() {
        for (_, writes) in host_writes(&h, l, who).unwrap_or_default() {
            written.extend(writes.into_iter().map(|w| Written {
                set_by: who.clone(),
                parameter: w.file.to_string(),
                value: w.value,
            }));
        }
    }
    Ok(Report {
        cgroup: h.describe().into_iter().collect(),
        limits,
        cgparams: written,
        prlimits: own.prlimits.clone(),
        devices: policy(&chain, &own).grants(),
    })
}

/// Bytes for people: `64 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if v.fract() == 0.0 {
        format!("{v} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A size of the command line: bytes, or with a K, M, G or T suffix
/// (powers of 1024), as osctl's `memory-limit` takes it.
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let (num, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_lowercase() {
                'k' => 10,
                'm' => 20,
                'g' => 30,
                't' => 40,
                _ => 64,
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    cgparams::digits(num)
        .filter(|_| shift < 64)
        .and_then(|n| n.checked_mul(1u64 << shift))
        .filter(|n| *n <= cgparams::MAX_NUMBER)
        .ok_or_else(|| {
            Error::invalid(format!(
                "size {} is not a number of bytes with an optional K, M, G or T suffix",
                crate::model::grammar::shown(text)
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        for bad in ["", "M", "1.5G", "-1", "1Q", "99999999999T", "1 G\n"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(human_bytes(64 << 20), "64 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }

    #[test]
    fn lineage_is_root_first() {
        assert_eq!(lineage("/a/b"), ["/", "/a", "/a/b"]);
        assert_eq!(lineage("/"), ["/"]);
    }

    #[test]
    fn cpu_clamped_to_the_group_on_v1() {
        let half = CpuMax {
            quota: Limit::Value(50_000),
            period: 100_000,
        };
        let mut l = Limits {
            cpu: Some(CpuMax {
                quota: Limit::Value(80_000),
                period: 50_000,
            }),
            ..Default::default()
        };
        clamp_cpu(&mut l, Some(half), false);
        assert_eq!(l.cpu.unwrap().quota, Limit::Value(80_000), "v2 takes both");
        clamp_cpu(&mut l, Some(half), true);
        assert_eq!(l.cpu.unwrap().quota, Limit::Value(25_000));
        let mut unlimited = Limits {
            cpu: Some(CpuMax {
                quota: Limit::Max,
                period: 100_000,
            }),
            ..Default::default()
        };
        clamp_cpu(&mut unlimited, Some(half), true);
        assert_eq!(unlimited.cpu.unwrap().quota, Limit::Value(50_000));
    }
}
