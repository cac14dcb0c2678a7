//! `ct|group cgparams`, `ct prlimits`, `ct|group devices`, `set|unset
//! memory-limit|cpu-limit`: the resources of containers and groups, in the
//! original's command names.

use anyhow::Result;
use clap::Subcommand;
use serde_json::Value;

use osctl_core::pool::Pool;
use osctl_core::resources::cgparams::{self, Version};
use osctl_core::resources::devices::{self, Grant};
use osctl_core::resources::hierarchy::Hierarchies;
use osctl_core::resources::live::{self, CgChange, Effect};
use osctl_core::resources::prlimits;
use osctl_core::resources::{self, Report};
use osctl_core::Error;

use crate::output;

/// Whose resources: a container (`ct ...`) or a group (`group ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Ct,
    Group,
}

/// The container or group the command is about.
const OF: &str = "The container ([POOL:]ID) or, under `group`, the group ([POOL:]PATH)";

#[derive(Subcommand, Debug)]
pub enum CgparamsCmd {
    /// List the configured cgroup parameters
    #[command(visible_alias = "list")]
    Ls {
        #[arg(value_name = "ID|GROUP", help = OF)]
        of: String,
    },
    /// Set a cgroup parameter (sizes of memory parameters take K, M, G, T)
    Set {
        /// cgroup version of the parameter (default: its own; for pids.max this host's)
        #[arg(short = 'v', long, value_parser = clap::value_parser!(u8).range(1..=2))]
        version: Option<u8>,
        #[arg(value_name = "ID|GROUP", help = OF)]
        of: String,
        /// The parameter, e.g. memory.max or cpu.weight
        parameter: String,
        /// Its value
        value: String,
    },
    /// Remove a cgroup parameter (of both versions unless --version)
    Unset {
        /// cgroup version of the parameter to remove
        #[arg(short = 'v', long, value_parser = clap::value_parser!(u8).range(1..=2))]
        version: Option<u8>,
        #[arg(value_name = "ID|GROUP", help = OF)]
        of: String,
        /// The parameter
        parameter: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum PrlimitsCmd {
    /// List the configured process limits
    #[command(visible_alias = "list")]
    Ls {
        /// The container ([POOL:]ID)
        id: String,
    },
    /// Set a process limit: SOFT_AND_HARD, or SOFT HARD (numbers or 'unlimited')
    Set {
        /// The container ([POOL:]ID)
        id: String,
        /// The limit, e.g. nofile or nproc
        limit: String,
        /// The soft limit (and the hard one when HARD is not given)
        soft: String,
        /// The hard limit
        hard: Option<String>,
    },
    /// Remove a process limit
    Unset {
        /// The container ([POOL:]ID)
        id: String,
        /// The limit
        limit: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum DevicesCmd {
    /// List allowed devices (of a container: its whole policy and who granted what)
    #[command(visible_alias = "list")]
    Ls {
        #[arg(value_name = "ID|GROUP", help = OF)]
        of: String,
    },
    /// Grant access to a device: char|block MAJOR MINOR MODE [NAME]; NAME
    /// (/dev/...) is bind-mounted from the host's node of that name
    Add {
        /// Of a group: do not pass the device on to subgroups and containers
        #[arg(long)]
        no_inherit: bool,
        #[arg(value_name = "ID|GROUP", help = OF)]
        of: String,
        /// char or block
        #[arg(value_name = "char|block")]
        kind: String,
        /// The device's major number, or * for any
        major: String,
        /// The device's minor number, or * for any
        minor: String,
        /// Access: r, w and m (mknod), e.g. rwm
        mode: String,
        /// The node to show in the container, e.g. /dev/fuse
        name: Option<String>,
    },
    /// Revoke access to a device: char|block MAJOR MINOR
    #[command(visible_alias = "delete")]
    Del {
        #[arg(value_name = "ID|GROUP", help = OF)]
        of: String,
        /// char or block
        #[arg(value_name = "char|block")]
        kind: String,
        /// The device's major number
        major: String,
        /// The device's minor number
        minor: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum LimitSetCmd {
    /// Memory limit (and swap; none when not given): sizes take K, M, G, T
    MemoryLimit {
        #[arg(value_name = "ID|GROUP", help = OF)]
        of: String,
        /// The memory limit
        memory: String,
        /// The swap limit
        swap: Option<String>,
    },
    /// CPU limit in percent of one CPU (200: two CPUs)
    CpuLimit {
        /// Length of the CFS period, in microseconds
        #[arg(short = 'p', long, default_value_t = cgparams::DEFAULT_PERIOD_US)]
        period: u64,
        #[arg(value_name = "ID|GROUP", help = OF)]
        of: String,
        /// Percent of one CPU
        percent: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum LimitUnsetCmd {
    /// Remove the memory and swap limits
    MemoryLimit {
        #[arg(value_name = "ID|GROUP", help = OF)]
        of: String,
    },
    /// Remove the CPU limit
    CpuLimit {
        #[arg(value_name = "ID|GROUP", help = OF)]
        of: String,
    },
}

// The container or group argument, for the caller to resolve `POOL:NAME`.

impl CgparamsCmd {
    pub fn of_mut(&mut self) -> &mut String {
        match self {
            CgparamsCmd::Ls { of }
            | CgparamsCmd::Set { of, .. }
            | CgparamsCmd::Unset { of, .. } => of,
        }
    }
}

impl PrlimitsCmd {
    pub fn id_mut(&mut self) -> &mut String {
        match self {
            PrlimitsCmd::Ls { id }
            | PrlimitsCmd::Set { id, .. }
            | PrlimitsCmd::Unset { id, .. } => id,
        }
    }
}

impl DevicesCmd {
    pub fn of_mut(&mut self) -> &mut String {
        match self {
            DevicesCmd::Ls { of } | DevicesCmd::Add { of, .. } | DevicesCmd::Del { of, .. } => of,
        }
    }
}

impl LimitSetCmd {
    pub fn of_mut(&mut self) -> &mut String {
        match self {
            LimitSetCmd::MemoryLimit { of, .. } | LimitSetCmd::CpuLimit { of, .. } => of,
        }
    }
}

impl LimitUnsetCmd {
    pub fn of_mut(&mut self) -> &mut String {
        match self {
            LimitUnsetCmd::MemoryLimit { of } | LimitUnsetCmd::CpuLimit { of } => of,
        }
    }
}

/// Says where a change took effect.
fn say(effect: &Effect, quiet: bool) {
    if !quiet {
        eprintln!("{effect}");
    }
}

fn cg_change(pool: &Pool, owner: Owner, of: &str, change: &CgChange) -> Result<Effect> {
    Ok(match owner {
        Owner::Ct => live::ct_cgparams(pool, of, change)?,
        Owner::Group => live::group_cgparams(pool, of, change)?,
    })
}

/// A value as given: memory sizes may have a suffix.
fn param_value(name: &str, value: &str) -> Result<Value> {
    let unlimited = ["max", "-1"].contains(&value);
    if name.starts_with("memory.") && !unlimited {
        return Ok(Value::from(resources::parse_size(value)?));
    }
    Ok(Value::from(value))
}

pub fn cgparams_cmd(
    pool: &Pool,
    owner: Owner,
    cmd: CgparamsCmd,
    json: bool,
    quiet: bool,
) -> Result<()> {
    match cmd {
        CgparamsCmd::Ls { of } => {
            let list = match owner {
                Owner::Ct => pool.ct_unvalidated(&of)?.cgparams,
                Owner::Group => pool.group(&of)?.cgparams,
            };
            list_cgparams(&list, json)
        }
        CgparamsCmd::Set {
            version,
            of,
            parameter,
            value,
        } => {
            let version = match (version, cgparams::version_of(&parameter)?) {
                (Some(v), _) => Some(v),
                (None, Some(v)) => Some(v.number()),
                // pids.max: this host's version for the controller.
                (None, None) => {
                    let c = cgparams::controller_of(&parameter)?;
                    Some(
                        Hierarchies::detect()?
                            .version_of(c)
                            .unwrap_or(Version::V2)
                            .number(),
                    )
                }
            };
            let p = cgparams::parse(version, &parameter, &param_value(&parameter, &value)?)?;
            say(
                &cg_change(pool, owner, &of, &CgChange::Set(vec![p]))?,
                quiet,
            );
            Ok(())
        }
        CgparamsCmd::Unset {
            version,
            of,
            parameter,
        } => {
            let change = CgChange::Unset {
                names: vec![parameter],
                version,
                strict: true,
            };
            say(&cg_change(pool, owner, &of, &change)?, quiet);
            Ok(())
        }
    }
}

/// A cgroup parameter as `cgparams ls -j` prints it.
#[derive(serde::Serialize)]
struct CgparamRow<'a> {
    version: &'a str,
    parameter: &'a str,
    value: &'a str,
}

fn list_cgparams(list: &[Value], json: bool) -> Result<()> {
    let shown = |v: Option<&Value>| match v {
        Some(Value::String(s)) => osctl_core::model::grammar::escaped(s),
        Some(Value::Array(a)) if a.len() == 1 => match &a[0] {
            Value::String(s) => osctl_core::model::grammar::escaped(s),
            other => other.to_string(),
        },
        Some(other) => other.to_string(),
        None => "-".into(),
    };
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| {
            vec![
                e.get("version").map_or("1".into(), |v| shown(Some(v))),
                shown(e.get("name")),
                shown(e.get("value")),
            ]
        })
        .collect();
    if json {
        let out: Vec<CgparamRow> = rows
            .iter()
            .map(|r| CgparamRow {
                version: &r[0],
                parameter: &r[1],
                value: &r[2],
            })
            .collect();
        return output::json(&out);
    }
    output::table(&["VERSION", "PARAMETER", "VALUE"], &rows);
    Ok(())
}

pub fn limit_set_cmd(pool: &Pool, owner: Owner, cmd: LimitSetCmd, quiet: bool) -> Result<()> {
    let (of, params) = match cmd {
        LimitSetCmd::MemoryLimit { of, memory, swap } => {
            let memory = resources::parse_size(&memory)?;
            let swap = swap.as_deref().map(resources::parse_size).transpose()?;
            (of, cgparams::memory_limit(memory, swap)?)
        }
        LimitSetCmd::CpuLimit {
            period,
            of,
            percent,
        } => {
            let pct = cgparams::digits(&percent)
                .filter(|p| *p > 0)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "CPU limit {} is not a whole, positive percentage",
                        osctl_core::model::grammar::shown(&percent)
                    ))
                })?;
            (of, cgparams::cpu_limit(pct, period)?)
        }
    };
    say(&cg_change(pool, owner, &of, &CgChange::Set(params))?, quiet);
    Ok(())
}

pub fn limit_unset_cmd(pool: &Pool, owner: Owner, cmd: LimitUnsetCmd, quiet: bool) -> Result<()> {
    let (of, names): (String, &[&str]) = match cmd {
        LimitUnsetCmd::MemoryLimit { of } => (of, &cgparams::MEMORY_LIMIT),
        LimitUnsetCmd::CpuLimit { of } => (of, &cgparams::CPU_LIMIT),
    };
    let change = CgChange::Unset {
        names: names.iter().map(|s| s.to_string()).collect(),
        version: None,
        strict: false,
    };
    say(&cg_change(pool, owner, &of, &change)?, quiet);
    Ok(())
}

pub fn prlimits_cmd(pool: &Pool, cmd: PrlimitsCmd, json: bool, quiet: bool) -> Result<()> {
    let effect = match cmd {
        PrlimitsCmd::Ls { id } => {
            let cfg = pool.ct_unvalidated(&id)?;
            let list = prlimits::from_config(cfg.prlimits.as_ref())
                .map_err(|e| e.context(format!("container '{id}'")))?;
            if json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|l| vec![l.name.clone(), l.soft.to_string(), l.hard.to_string()])
                .collect();
            output::table(&["LIMIT", "SOFT", "HARD"], &rows);
            return Ok(());
        }
        PrlimitsCmd::Set {
            id,
            limit,
            soft,
            hard,
        } => {
            let hard = hard.unwrap_or_else(|| soft.clone());
            let new = prlimits::parse(&limit, &Value::from(soft), &Value::from(hard))?;
            live::ct_prlimits(pool, &id, |list| {
                list.retain(|l| l.name != new.name);
                list.push(new);
                Ok(())
            })?
        }
        PrlimitsCmd::Unset { id, limit } => live::ct_prlimits(pool, &id, |list| {
            let before = list.len();
            list.retain(|l| l.name != limit);
            if list.len() == before {
                return Err(Error::not_found(format!(
                    "container '{id}' has no process limit '{}'",
                    osctl_core::model::grammar::escaped(&limit)
                )));
            }
            Ok(())
        })?,
    };
    say(&effect, quiet);
    Ok(())
}

pub fn devices_cmd(
    pool: &Pool,
    owner: Owner,
    cmd: DevicesCmd,
    json: bool,
    quiet: bool,
) -> Result<()> {
    let effect = match cmd {
        DevicesCmd::Ls { of } => return list_devices(pool, owner, &of, json),
        DevicesCmd::Add {
            no_inherit,
            of,
            kind,
            major,
            minor,
            mode,
            name,
        } => {
            let mut dev = devices::parse(&kind, &major, &minor, &mode, name.as_deref())?;
            dev.inherit = !no_inherit;
            change_devices(pool, owner, &of, move |list| {
                live::add_device(list, &dev);
                Ok(())
            })?
        }
        DevicesCmd::Del {
            of,
            kind,
            major,
            minor,
        } => {
            let dev = devices::parse(&kind, &major, &minor, "m", None)?;
            let what = owner_name(owner, &of);
            change_devices(pool, owner, &of, move |list| {
                live::del_device(list, &dev, &what)
            })?
        }
    };
    say(&effect, quiet);
    Ok(())
}

fn owner_name(owner: Owner, of: &str) -> String {
    match owner {
        Owner::Ct => format!("container '{of}'"),
        Owner::Group => format!("group '{of}'"),
    }
}

fn change_devices(
    pool: &Pool,
    owner: Owner,
    of: &str,
    change: impl FnOnce(&mut Vec<Value>) -> osctl_core::Result<()>,
) -> Result<Effect> {
    Ok(match owner {
        Owner::Ct => live::ct_devices(pool, of, change)?,
        Owner::Group => live::group_devices(pool, of, change)?,
    })
}

fn list_devices(pool: &Pool, owner: Owner, of: &str, json: bool) -> Result<()> {
    let grants = match owner {
        Owner::Ct => {
            let cfg = pool.ct_unvalidated(of)?;
            resources::report(pool, &cfg)?.devices
        }
        Owner::Group => devices::list_from_config("", &pool.group(of)?.devices)?
            .iter()
            .map(|d| {
                let source = if d.inherit {
                    "inherited by members"
                } else {
                    "this group only"
                };
                Grant::of(d, source)
            })
            .collect(),
    };
    if json {
        return output::json(&grants);
    }
    let rows: Vec<Vec<String>> = grants
        .iter()
        .map(|g| {
            vec![
                format!("{:?}", g.kind).to_lowercase(),
                g.major.clone(),
                g.minor.clone(),
                g.mode.clone(),
                g.name.clone().unwrap_or_else(|| "-".into()),
                g.source.clone(),
            ]
        })
        .collect();
    output::table(&["TYPE", "MAJOR", "MINOR", "MODE", "NAME", "SOURCE"], &rows);
    Ok(())
}

/// `ct show`'s lines on resources.
pub fn show_pairs(r: &Report) -> Vec<(&'static str, String)> {
    let limit = |kind: &str, fmt: &dyn Fn(&Value) -> String| {
        r.limits.get(kind).map_or_else(
            || "none".to_string(),
            |l| format!("{} ({})", fmt(&l.value), l.set_by),
        )
    };
    let bytes = |v: &Value| {
        v.as_u64()
            .map_or_else(|| v.to_string(), resources::human_bytes)
    };
    let prl: Vec<String> = r
        .prlimits
        .iter()
        .map(|l| format!("{}={}:{}", l.name, l.soft, l.hard))
        .collect();
    let extra: Vec<String> = r
        .devices
        .iter()
        .filter(|g| g.source != "default")
        .map(|g| {
            format!(
                "{:?} {}:{} {} ({})",
                g.kind, g.major, g.minor, g.mode, g.source
            )
            .to_lowercase()
        })
        .collect();
    vec![
        ("memory limit", limit("memory", &bytes)),
        ("swap limit", limit("swap", &bytes)),
        ("cpu limit", limit("cpu_percent", &|v| format!("{v}%"))),
        ("pids limit", limit("pids", &|v| v.to_string())),
        (
            "prlimits",
            if prl.is_empty() {
                "-".into()
            } else {
                prl.join(", ")
            },
        ),
        (
            "devices",
            if extra.is_empty() {
                "the defaults".into()
            } else {
                format!("the defaults and {}", extra.join(", "))
            },
        ),
        (
            "cgroups",
            r.cgroup
                .iter()
                .map(|(c, v)| format!("{c} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    ]
}
