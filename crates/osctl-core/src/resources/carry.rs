//! What an import carries over from the archive's group when the container
//! joins a group that exists here: that group's limits stay in force, and
//! where the archive's group limited the container more tightly (memory,
//! CPU, processes), the tighter limit comes along as the container's own. At
//! the source the container could not use more than its group allowed, so
//! this restricts it no further than it was.

use super::cgparams::{self, CgParam, Limit, Limits};
use super::hierarchy::Hierarchies;
use super::live::CgChange;
use super::{chain, host_version, Settings};
use crate::error::Result;
use crate::model::{ContainerConfig, GroupConfig};
use crate::pool::Pool;

/// The tightest of some limits (None: unlimited).
fn tightest(values: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    values.flatten().min()
}

/// True when `a` is below every limit already in force.
fn tighter(a: Option<u64>, in_force: Option<u64>) -> Option<u64> {
    a.filter(|a| in_force.is_none_or(|f| *a < f))
}

fn value(l: Option<Limit>) -> Option<u64> {
    l.and_then(Limit::value)
}

/// Adds to `ct` the limits of the archive's group (`archived`) that are
/// tighter than those of `group` (and its parents) here and its own; says
/// which for the admin.
pub fn fold_group_limits(
    pool: &Pool,
    group: &str,
    archived: &GroupConfig,
    ct: &mut ContainerConfig,
) -> Result<Vec<String>> {
    let h = Hierarchies::detect()?;
    let version = host_version(&h);
    let from = Limits::resolve(&Settings::of_group(archived)?.cgparams, &version)?;
    let own = Limits::resolve(&Settings::of_container(ct)?.cgparams, &version)?;
    let mut here = vec![own];
    for (_, s) in chain(pool, group)? {
        here.push(Limits::resolve(&s.cgparams, &version)?);
    }
    let mut add: Vec<CgParam> = Vec::new();
    let mut kept: Vec<String> = Vec::new();
    let mut put = |v: u8, name: &str, val: serde_json::Value| -> Result<()> {
        add.push(cgparams::parse(Some(v), name, &val)?);
        Ok(())
    };
    let memory = tightest(here.iter().map(|l| value(l.memory)));
    if let Some(m) = tighter(value(from.memory), memory) {
        kept.push(format!("memory {}", super::human_bytes(m)));
        put(2, "memory.max", m.into())?;
        put(1, "memory.limit_in_bytes", m.into())?;
        // v1 keeps memory and swap in one limit: the swap stays as it was.
        if let Some(s) = value(own.swap) {
            put(2, "memory.swap.max", s.into())?;
            put(1, "memory.memsw.limit_in_bytes", m.saturating_add(s).into())?;
        }
    }
    let pids = tightest(here.iter().map(|l| value(l.pids)));
    if let Some(p) = tighter(value(from.pids), pids) {
        kept.push(format!("{p} processes"));
        put(2, "pids.max", p.into())?;
        put(1, "pids.max", p.into())?;
    }
    let per_mille = |l: &Limits| l.cpu.and_then(|c| c.percent()).map(|p| (p * 10.0) as u64);
    let cpu = tightest(here.iter().map(per_mille));
    if let (Some(_), Some(c)) = (tighter(per_mille(&from), cpu), from.cpu) {
        let quota = c.quota.value().unwrap_or_default();
        kept.push(format!("CPU {}%", c.percent().unwrap_or_default()));
        put(2, "cpu.max", format!("{quota} {}", c.period).into())?;
        put(1, "cpu.cfs_period_us", c.period.into())?;
        put(1, "cpu.cfs_quota_us", quota.into())?;
    }
    if add.is_empty() {
        return Ok(Vec::new());
    }
    CgChange::Set(add).apply(&mut ct.cgparams, "the container")?;
    cgparams::list_from_config("", &ct.cgparams)?;
    Ok(vec![format!(
        "the archive's group limited the container more tightly than group '{group}' here: \
         its limits ({}) are now the container's own",
        kept.join(", ")
    )])
}
