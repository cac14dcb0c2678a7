//! cgroup parameters (`cgparams` of groups and containers), as osctld
//! stores them: `{version, subsystem, name, value, persistent}`, `value` a
//! list of which osctld writes each element in turn.
//!
//! Only the parameters of [`TABLE`] are accepted. Each is read into one
//! version-free [`Limits`] value; what a host writes is rendered back from it
//! in the names of the hierarchy its controller is on ([`Limits::writes`]),
//! so a config from a cgroup v1 host runs on a v2 host and back. Values never
//! reach a file or an LXC line as they were written: only the numbers parsed
//! here do. `docs/resources.md` has the table in prose.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::grammar;

/// A cgroup version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Version {
    #[serde(rename = "1")]
    V1,
    #[serde(rename = "2")]
    V2,
}

impl Version {
    pub fn number(self) -> u8 {
        match self {
            Version::V1 => 1,
            Version::V2 => 2,
        }
    }
}

/// The controllers whose parameters we apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Controller {
    Memory,
    Cpu,
    Pids,
    /// `blkio` on cgroup v1, `io` on v2.
    Io,
}

impl Controller {
    pub const ALL: [Controller; 4] = [
        Controller::Memory,
        Controller::Cpu,
        Controller::Pids,
        Controller::Io,
    ];

    /// The controller's name in a hierarchy of `version`.
    pub fn name(self, version: Version) -> &'static str {
        match (self, version) {
            (Controller::Memory, _) => "memory",
            (Controller::Cpu, _) => "cpu",
            (Controller::Pids, _) => "pids",
            (Controller::Io, Version::V1) => "blkio",
            (Controller::Io, Version::V2) => "io",
        }
    }
}

/// What a value of a parameter may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Bytes; `-1` is no limit (v1).
    BytesV1,
    /// Bytes; `max` is no limit (v2).
    BytesV2,
    /// A count or `max`.
    Count,
    /// `cpu.cfs_quota_us`: microseconds or `-1`.
    QuotaUs,
    /// `cpu.cfs_period_us`.
    PeriodUs,
    /// `cpu.max`: `QUOTA|max [PERIOD]`.
    CpuMax,
    Shares,
    CpuWeight,
    BlkioWeight,
    /// `io.weight`: `N` or `default N`.
    IoWeight,
}

/// What a parameter sets, whatever its version calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    MemoryMax,
    /// v1 `memory.memsw.limit_in_bytes` holds memory plus swap; v2's swap alone.
    Swap,
    MemoryLow,
    CpuQuota,
    CpuPeriod,
    CpuMax,
    CpuWeight,
    PidsMax,
    IoWeight,
}

/// A known parameter: its name, version (None: the same in both), controller.
struct Known {
    name: &'static str,
    version: Option<Version>,
    controller: Controller,
    slot: Slot,
    kind: Kind,
}

const fn known(
    name: &'static str,
    version: Option<Version>,
    controller: Controller,
    slot: Slot,
    kind: Kind,
) -> Known {
    Known {
        name,
        version,
        controller,
        slot,
        kind,
    }
}

use Controller as C;
const V1: Option<Version> = Some(Version::V1);
const V2: Option<Version> = Some(Version::V2);

/// Every parameter we accept. Anything else is refused: it has no
/// translation between the versions, or no meaning to us.
const TABLE: &[Known] = &[
    known(
        "memory.limit_in_bytes",
        V1,
        C::Memory,
        Slot::MemoryMax,
        Kind::BytesV1,
    ),
    known(
        "memory.memsw.limit_in_bytes",
        V1,
        C::Memory,
        Slot::Swap,
        Kind::BytesV1,
    ),
    known(
        "memory.soft_limit_in_bytes",
        V1,
        C::Memory,
        Slot::MemoryLow,
        Kind::BytesV1,
    ),
    known("memory.max", V2, C::Memory, Slot::MemoryMax, Kind::BytesV2),
    known("memory.swap.max", V2, C::Memory, Slot::Swap, Kind::BytesV2),
    known("memory.low", V2, C::Memory, Slot::MemoryLow, Kind::BytesV2),
    known(
        "cpu.cfs_quota_us",
        V1,
        C::Cpu,
        Slot::CpuQuota,
        Kind::QuotaUs,
    ),
    known(
        "cpu.cfs_period_us",
        V1,
        C::Cpu,
        Slot::CpuPeriod,
        Kind::PeriodUs,
    ),
    known("cpu.max", V2, C::Cpu, Slot::CpuMax, Kind::CpuMax),
    known("cpu.shares", V1, C::Cpu, Slot::CpuWeight, Kind::Shares),
    known("cpu.weight", V2, C::Cpu, Slot::CpuWeight, Kind::CpuWeight),
    known("pids.max", None, C::Pids, Slot::PidsMax, Kind::Count),
    known("blkio.weight", V1, C::Io, Slot::IoWeight, Kind::BlkioWeight),
    known("io.weight", V2, C::Io, Slot::IoWeight, Kind::IoWeight),
];

/// Parameters people may know, refused with the reason why.
const REFUSED: &[(&str, &str)] = &[
    (
        "memory.kmem.",
        "kernel memory limits are deprecated in cgroup v1 and absent from v2",
    ),
    (
        "memory.swappiness",
        "cgroup v2 has no per-cgroup swappiness",
    ),
    ("memory.oom_control", "cgroup v2 has no equivalent"),
    ("memory.high", "cgroup v1 has no equivalent"),
    ("memory.min", "cgroup v1 has no equivalent"),
    ("cpu.rt_", "real-time budgets have no cgroup v2 equivalent"),
    (
        "cpuset.",
        "CPU and memory node sets are not applied by osctl-rs",
    ),
    ("blkio.throttle.", "per-device throttles are not translated"),
    ("io.max", "per-device throttles are not translated"),
    ("devices.", "devices are set with `osctl ct devices`"),
];

/// The least memory limit we accept: below it nothing runs.
pub const MIN_MEMORY: u64 = 1 << 20;
/// Bytes and counts above this are refused as absurd (4 EiB).
pub const MAX_NUMBER: u64 = 1 << 62;
pub const DEFAULT_PERIOD_US: u64 = 100_000;
const MIN_QUOTA_US: u64 = 1000;
const PERIOD_US: (u64, u64) = (1000, 1_000_000);

/// A limit or none. Ordered tightest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Limit {
    Value(u64),
    Max,
}

/// A number, or the string `max`.
impl serde::Serialize for Limit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Limit::Value(n) => s.serialize_u64(*n),
            Limit::Max => s.serialize_str("max"),
        }
    }
}

impl Limit {
    pub fn value(self) -> Option<u64> {
        match self {
            Limit::Value(v) => Some(v),
            Limit::Max => None,
        }
    }

    fn v1(self) -> String {
        self.value().map_or_else(|| "-1".into(), |v| v.to_string())
    }

    fn v2(self) -> String {
        self.value().map_or_else(|| "max".into(), |v| v.to_string())
    }
}

/// A CPU bandwidth limit: `quota` microseconds every `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CpuMax {
    pub quota: Limit,
    pub period: u64,
}

impl CpuMax {
    /// The limit in percent of one CPU; None for no limit.
    pub fn percent(&self) -> Option<f64> {
        self.quota
            .value()
            .map(|q| q as f64 * 100.0 / self.period as f64)
    }
}

/// One parsed `cgparams` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct CgParam {
    pub version: Version,
    pub name: String,
    value: Parsed,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Parsed {
    Limit(Limit),
    Number(u64),
    CpuMax(CpuMax),
}

impl CgParam {
    fn known(&self) -> &'static Known {
        lookup(&self.name).expect("parsed from the table")
    }

    pub fn controller(&self) -> Controller {
        self.known().controller
    }

    /// The value as osctld would write it.
    pub fn shown_value(&self) -> String {
        render(self.known().kind, self.value)
    }

    /// True when `other` sets what this one sets: the same parameter, or
    /// its counterpart of the other cgroup version.
    pub fn same_setting(&self, other: &CgParam) -> bool {
        if self.version == other.version {
            return self.name == other.name;
        }
        family(self.known().slot) == family(other.known().slot)
    }
}

/// Slots that set the same thing in the two versions.
fn family(slot: Slot) -> u8 {
    match slot {
        Slot::MemoryMax => 0,
        Slot::Swap => 1,
        Slot::MemoryLow => 2,
        Slot::CpuQuota | Slot::CpuPeriod | Slot::CpuMax => 3,
        Slot::CpuWeight => 4,
        Slot::PidsMax => 5,
        Slot::IoWeight => 6,
    }
}

fn lookup(name: &str) -> Option<&'static Known> {
    TABLE.iter().find(|k| k.name == name)
}

/// The version a parameter name belongs to, None when both have it
/// (`pids.max`); an error for a name we do not accept.
pub fn version_of(name: &str) -> Result<Option<Version>> {
    Ok(known_name(name)?.version)
}

/// The controller a parameter name belongs to.
pub fn controller_of(name: &str) -> Result<Controller> {
    Ok(known_name(name)?.controller)
}

fn known_name(name: &str) -> Result<&'static Known> {
    if let Some(k) = lookup(name) {
        return Ok(k);
    }
    let shown = grammar::shown(name);
    if let Some((_, why)) = REFUSED.iter().find(|(p, _)| name.starts_with(p)) {
        return Err(Error::invalid(format!(
            "cgroup parameter {shown} is not supported: {why}"
        )));
    }
    Err(Error::invalid(format!(
        "cgroup parameter {shown} is unknown (supported: {})",
        TABLE.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
    )))
}

/// Parses a parameter given as a name, a version and one value (the CLI's
/// `cgparams set`, and each entry of a config).
pub fn parse(version: Option<u8>, name: &str, value: &Value) -> Result<CgParam> {
    let known = known_name(name)?;
    let version = match (version, known.version) {
        (None, Some(v)) => v,
        // osctld's configs default to 1 when the key is missing.
        (None, None) | (Some(1), None) => Version::V1,
        (Some(2), None) => Version::V2,
        (Some(n), Some(v)) if n == v.number() => v,
        (Some(n @ (1 | 2)), Some(v)) => {
            return Err(Error::invalid(format!(
                "cgroup parameter '{name}' is a cgroup v{} parameter, not v{n}",
                v.number()
            )))
        }
        (Some(n), _) => {
            return Err(Error::invalid(format!(
                "cgroup parameter '{name}': version {n} is neither 1 nor 2"
            )))
        }
    };
    let value = parse_value(known, value)
        .map_err(|why| Error::invalid(format!("cgroup parameter '{name}': value {why}")))?;
    Ok(CgParam {
        version,
        name: name.to_string(),
        value,
    })
}

/// The text of a scalar value: a YAML integer or string.
fn scalar(value: &Value) -> std::result::Result<String, String> {
    match value {
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => Ok(s.clone()),
        other => Err(format!("{} is not a number or a string", kind_of(other))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
        _ => "a scalar",
    }
}

fn parse_value(known: &Known, value: &Value) -> std::result::Result<Parsed, String> {
    // osctld keeps a list of values; these parameters take one.
    let value = match value {
        Value::Array(items) if items.len() == 1 => &items[0],
        Value::Array(items) => return Err(format!("has {} values, one is expected", items.len())),
        other => other,
    };
    let text = scalar(value)?;
    let bad = |why: &str| format!("{} {why}", grammar::shown(&text));
    let number = |s: &str, lo: u64, hi: u64| -> std::result::Result<u64, String> {
        let n: u64 = digits(s).ok_or_else(|| bad("is not a whole number"))?;
        if n < lo || n > hi {
            return Err(bad(&format!("is outside {lo}..={hi}")));
        }
        Ok(n)
    };
    let limit = |s: &str, none: &str, lo: u64| -> std::result::Result<Limit, String> {
        if s == none {
            Ok(Limit::Max)
        } else {
            number(s, lo, MAX_NUMBER).map(Limit::Value)
        }
    };
    let memory_floor = match known.slot {
        Slot::MemoryMax => MIN_MEMORY,
        _ => 0,
    };
    Ok(match known.kind {
        Kind::BytesV1 => Parsed::Limit(limit(&text, "-1", memory_floor)?),
        Kind::BytesV2 => Parsed::Limit(limit(&text, "max", memory_floor)?),
        Kind::Count => Parsed::Limit(limit(&text, "max", 1)?),
        Kind::QuotaUs => Parsed::Limit(limit(&text, "-1", MIN_QUOTA_US)?),
        Kind::PeriodUs => Parsed::Number(number(&text, PERIOD_US.0, PERIOD_US.1)?),
        Kind::CpuMax => {
            let mut words = text.split(' ');
            let quota = limit(words.next().unwrap_or(""), "max", MIN_QUOTA_US)?;
            let period = match words.next() {
                None => DEFAULT_PERIOD_US,
                Some(p) => number(p, PERIOD_US.0, PERIOD_US.1)?,
            };
            if words.next().is_some() {
                return Err(bad("is not 'QUOTA PERIOD'"));
            }
            Parsed::CpuMax(CpuMax { quota, period })
        }
        Kind::Shares => Parsed::Number(number(&text, 2, 262_144)?),
        Kind::CpuWeight => Parsed::Number(number(&text, 1, 10_000)?),
        Kind::BlkioWeight => Parsed::Number(number(&text, 10, 1000)?),
        Kind::IoWeight => {
            let n = text.strip_prefix("default ").unwrap_or(&text);
            Parsed::Number(number(n, 1, 10_000)?)
        }
    })
}

/// Plain ASCII digits as a number; no sign, no blanks, no overflow.
pub fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn render(kind: Kind, value: Parsed) -> String {
    match (kind, value) {
        (Kind::BytesV1 | Kind::QuotaUs, Parsed::Limit(l)) => l.v1(),
        (_, Parsed::Limit(l)) => l.v2(),
        (_, Parsed::Number(n)) => n.to_string(),
        (_, Parsed::CpuMax(c)) => format!("{} {}", c.quota.v2(), c.period),
    }
}

/// Reads one `cgparams` entry of a config; `at` names it in errors.
pub fn from_config(at: &str, entry: &Value) -> Result<CgParam> {
    let Some(map) = entry.as_object() else {
        return Err(Error::invalid(format!("{at} is not a mapping")));
    };
    let name = match map.get("name") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(Error::invalid(format!("{at}.name is not a string"))),
        None => return Err(Error::invalid(format!("{at}.name is missing"))),
    };
    let version = match map.get("version") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().filter(|n| *n < 256) {
            Some(n) => Some(n as u8),
            None => return Err(Error::invalid(format!("{at}.version is not 1 or 2"))),
        },
    };
    let param = parse(version, name, map.get("value").unwrap_or(&Value::Null))
        .map_err(|e| e.context(at))?;
    let expected = param.controller().name(param.version);
    match map.get("subsystem") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == expected => {}
        Some(other) => {
            return Err(Error::invalid(format!(
                "{at}: subsystem {} does not match parameter '{name}' ('{expected}')",
                grammar::shown(&scalar(other).unwrap_or_default())
            )))
        }
    }
    Ok(param)
}

/// Reads a config's `cgparams` list; a parameter may appear once per version.
pub fn list_from_config(owner: &str, entries: &[Value]) -> Result<Vec<CgParam>> {
    let mut out: Vec<CgParam> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let p = from_config(&format!("{owner}cgparams[{i}]"), entry)?;
        if out
            .iter()
            .any(|q| q.name == p.name && q.version == p.version)
        {
            return Err(Error::invalid(format!(
                "{owner}cgparams[{i}]: parameter '{}' (v{}) is set twice",
                p.name,
                p.version.number()
            )));
        }
        out.push(p);
    }
    // Each version's set must make sense on its own (memsw needs a memory limit).
    for version in [Version::V1, Version::V2] {
        Limits::of_version(&out, version).map_err(|e| e.context(owner.trim_end_matches(' ')))?;
    }
    Ok(out)
}

/// An entry as osctld writes it into a config.
pub fn to_config(p: &CgParam) -> Value {
    let known = p.known();
    let value = match p.value {
        Parsed::Limit(Limit::Value(n)) | Parsed::Number(n) => Value::from(n),
        _ => Value::from(p.shown_value()),
    };
    serde_json::json!({
        "version": p.version.number(),
        "subsystem": known.controller.name(p.version),
        "name": p.name,
        "value": [value],
        "persistent": true,
    })
}

/// What one owner's parameters set, version-free.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Limits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Limit>,
    /// Swap alone (not memory plus swap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap: Option<Limit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_low: Option<Limit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuMax>,
    /// On v2's scale, 1..=10000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_weight: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<Limit>,
    /// On v2's scale, 1..=10000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_weight: Option<u64>,
}

/// v1 `cpu.shares` (2..=262144) on v2's `cpu.weight` scale and back, as the
/// kernel documentation and runc convert them.
pub fn shares_to_weight(shares: u64) -> u64 {
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

pub fn weight_to_shares(weight: u64) -> u64 {
    2 + (weight.clamp(1, 10_000) - 1) * 262_142 / 9999
}

/// v1 `blkio.weight` (10..=1000) on v2's `io.weight` scale and back.
pub fn blkio_to_io(weight: u64) -> u64 {
    1 + (weight.clamp(10, 1000) - 10) * 9999 / 990
}

pub fn io_to_blkio(weight: u64) -> u64 {
    10 + (weight.clamp(1, 10_000) - 1) * 990 / 9999
}

impl Limits {
    /// What the parameters of one version set.
    fn of_version(params: &[CgParam], version: Version) -> Result<Limits> {
        let mut l = Limits::default();
        let mut memsw = None;
        let (mut quota, mut period) = (None, None);
        for p in params.iter().filter(|p| p.version == version) {
            match (p.known().slot, p.value) {
                (Slot::MemoryMax, Parsed::Limit(v)) => l.memory = Some(v),
                (Slot::Swap, Parsed::Limit(v)) if version == Version::V1 => memsw = Some(v),
                (Slot::Swap, Parsed::Limit(v)) => l.swap = Some(v),
                (Slot::MemoryLow, Parsed::Limit(v)) => l.memory_low = Some(v),
                (Slot::CpuQuota, Parsed::Limit(v)) => quota = Some(v),
                (Slot::CpuPeriod, Parsed::Number(n)) => period = Some(n),
                (Slot::CpuMax, Parsed::CpuMax(c)) => l.cpu = Some(c),
                (Slot::CpuWeight, Parsed::Number(n)) if version == Version::V1 => {
                    l.cpu_weight = Some(shares_to_weight(n))
                }
                (Slot::CpuWeight, Parsed::Number(n)) => l.cpu_weight = Some(n),
                (Slot::PidsMax, Parsed::Limit(v)) => l.pids = Some(v),
                (Slot::IoWeight, Parsed::Number(n)) if version == Version::V1 => {
                    l.io_weight = Some(blkio_to_io(n))
                }
                (Slot::IoWeight, Parsed::Number(n)) => l.io_weight = Some(n),
                _ => unreachable!("kinds match slots in the table"),
            }
        }
        if quota.is_some() || period.is_some() {
            l.cpu = Some(CpuMax {
                quota: quota.unwrap_or(Limit::Max),
                period: period.unwrap_or(DEFAULT_PERIOD_US),
            });
        }
        if let Some(total) = memsw {
            l.swap = Some(swap_of(total, l.memory)?);
        }
        Ok(l)
    }

    /// What `params` set on a host whose controllers are on `version_of`:
    /// a controller's own version wins, the other fills what it leaves
    /// (osctld's `memory-limit` and `cpu-limit` write both).
    pub fn resolve(
        params: &[CgParam],
        version_of: impl Fn(Controller) -> Version,
    ) -> Result<Limits> {
        let v1 = Limits::of_version(params, Version::V1)?;
        let v2 = Limits::of_version(params, Version::V2)?;
        let pick = |c: Controller| match version_of(c) {
            Version::V1 => (v1, v2),
            Version::V2 => (v2, v1),
        };
        let (m, m_) = pick(Controller::Memory);
        let (c, c_) = pick(Controller::Cpu);
        let (p, p_) = pick(Controller::Pids);
        let (i, i_) = pick(Controller::Io);
        Ok(Limits {
            memory: m.memory.or(m_.memory),
            swap: m.swap.or(m_.swap),
            memory_low: m.memory_low.or(m_.memory_low),
            cpu: c.cpu.or(c_.cpu),
            cpu_weight: c.cpu_weight.or(c_.cpu_weight),
            pids: p.pids.or(p_.pids),
            io_weight: i.io_weight.or(i_.io_weight),
        })
    }

    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// The files to write, in an order the kernel takes from unlimited
    /// (memory before memory+swap on v1), for a controller on `version`.
    pub fn writes(&self, controller: Controller, version: Version) -> Result<Vec<Write>> {
        let mut out = Vec::new();
        let mut put = |file: &'static str, value: String| {
            out.push(Write {
                controller,
                version,
                file,
                value,
            })
        };
        let v1 = version == Version::V1;
        match controller {
            Controller::Memory => {
                if let Some(m) = self.memory {
                    put(pick(v1, "memory.limit_in_bytes", "memory.max"), lim(v1, m));
                }
                if let Some(s) = self.swap {
                    if v1 {
                        put(
                            "memory.memsw.limit_in_bytes",
                            memsw_of(s, self.memory)?.v1(),
                        );
                    } else {
                        put("memory.swap.max", s.v2());
                    }
                }
                if let Some(low) = self.memory_low {
                    put(
                        pick(v1, "memory.soft_limit_in_bytes", "memory.low"),
                        lim(v1, low),
                    );
                }
            }
            Controller::Cpu => {
                if let Some(c) = self.cpu {
                    if v1 {
                        put("cpu.cfs_period_us", c.period.to_string());
                        put("cpu.cfs_quota_us", c.quota.v1());
                    } else {
                        put("cpu.max", format!("{} {}", c.quota.v2(), c.period));
                    }
                }
                if let Some(w) = self.cpu_weight {
                    let value = if v1 { weight_to_shares(w) } else { w };
                    put(pick(v1, "cpu.shares", "cpu.weight"), value.to_string());
                }
            }
            Controller::Pids => {
                if let Some(p) = self.pids {
                    put("pids.max", p.v2());
                }
            }
            Controller::Io => {
                if let Some(w) = self.io_weight {
                    let value = if v1 { io_to_blkio(w) } else { w };
                    put(pick(v1, "blkio.weight", "io.weight"), value.to_string());
                }
            }
        }
        Ok(out)
    }

    /// The controllers these limits touch.
    pub fn controllers(&self) -> Vec<Controller> {
        let mut out = Vec::new();
        if self.memory.is_some() || self.swap.is_some() || self.memory_low.is_some() {
            out.push(Controller::Memory);
        }
        if self.cpu.is_some() || self.cpu_weight.is_some() {
            out.push(Controller::Cpu);
        }
        if self.pids.is_some() {
            out.push(Controller::Pids);
        }
        if self.io_weight.is_some() {
            out.push(Controller::Io);
        }
        out
    }
}

fn pick(v1: bool, a: &'static str, b: &'static str) -> &'static str {
    if v1 {
        a
    } else {
        b
    }
}

fn lim(v1: bool, l: Limit) -> String {
    if v1 {
        l.v1()
    } else {
        l.v2()
    }
}

/// v1's memory+swap limit as swap alone, given the memory limit beside it.
fn swap_of(total: Limit, memory: Option<Limit>) -> Result<Limit> {
    match (total, memory) {
        (Limit::Max, _) => Ok(Limit::Max),
        (Limit::Value(t), Some(Limit::Value(m))) if t >= m => Ok(Limit::Value(t - m)),
        (Limit::Value(t), Some(Limit::Value(m))) => Err(Error::invalid(format!(
            "memory.memsw.limit_in_bytes ({t}) is below memory.limit_in_bytes ({m})"
        ))),
        (Limit::Value(_), _) => Err(Error::invalid(
            "memory.memsw.limit_in_bytes limits memory and swap together: it needs a \
             memory.limit_in_bytes beside it",
        )),
    }
}

/// Swap alone as v1's memory+swap limit.
fn memsw_of(swap: Limit, memory: Option<Limit>) -> Result<Limit> {
    match (swap, memory) {
        (Limit::Max, _) => Ok(Limit::Max),
        (Limit::Value(s), Some(Limit::Value(m))) => Ok(Limit::Value(m.saturating_add(s))),
        (Limit::Value(_), _) => Err(Error::refused(
            "a swap limit without a memory limit cannot be set on cgroup v1 \
             (memory.memsw.limit_in_bytes limits memory and swap together)",
        )),
    }
}

/// One file to write in a cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub controller: Controller,
    pub version: Version,
    pub file: &'static str,
    pub value: String,
}

impl Write {
    /// The LXC key that sets it on the container's cgroup.
    pub fn lxc_key(&self) -> String {
        match self.version {
            Version::V1 => format!("lxc.cgroup.{}", self.file),
            Version::V2 => format!("lxc.cgroup2.{}", self.file),
        }
    }
}

/// The parameters of osctld's `set memory-limit MEMORY [SWAP]`: both
/// versions, swap 0 when not given.
pub fn memory_limit(memory: u64, swap: Option<u64>) -> Result<Vec<CgParam>> {
    let swap = swap.unwrap_or(0);
    let total = memory.saturating_add(swap);
    [
        (2, "memory.max", memory),
        (2, "memory.swap.max", swap),
        (1, "memory.limit_in_bytes", memory),
        (1, "memory.memsw.limit_in_bytes", total),
    ]
    .into_iter()
    .map(|(v, name, n)| parse(Some(v), name, &Value::from(n)))
    .collect()
}

pub const MEMORY_LIMIT: [&str; 4] = [
    "memory.max",
    "memory.swap.max",
    "memory.limit_in_bytes",
    "memory.memsw.limit_in_bytes",
];

/// The parameters of osctld's `set cpu-limit PERCENT` (100 is one CPU).
pub fn cpu_limit(percent: u64, period: u64) -> Result<Vec<CgParam>> {
    let quota = percent.saturating_mul(period) / 100;
    [
        (2, "cpu.max", Value::from(format!("{quota} {period}"))),
        (1, "cpu.cfs_period_us", Value::from(period)),
        (1, "cpu.cfs_quota_us", Value::from(quota)),
    ]
    .into_iter()
    .map(|(v, name, value)| parse(Some(v), name, &value))
    .collect()
}

pub const CPU_LIMIT: [&str; 3] = ["cpu.max", "cpu.cfs_period_us", "cpu.cfs_quota_us"];

/// What a file holds when nothing limits it: written when a parameter is
/// removed from a running container or group.
pub fn reset_value(file: &str) -> Option<&'static str> {
    Some(match file {
        "memory.limit_in_bytes"
        | "memory.memsw.limit_in_bytes"
        | "memory.soft_limit_in_bytes"
        | "cpu.cfs_quota_us" => "-1",
        "memory.max" | "memory.swap.max" | "pids.max" => "max",
        "memory.low" => "0",
        "cpu.max" => "max 100000",
        "cpu.cfs_period_us" => "100000",
        "cpu.shares" => "1024",
        "cpu.weight" | "io.weight" => "100",
        "blkio.weight" => "500",
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
