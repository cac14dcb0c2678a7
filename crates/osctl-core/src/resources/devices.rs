//! The device policy of a container: everything denied but the usual
//! character devices, what the container's groups grant to their members
//! (`inherit`, true unless said otherwise), and what the container's own
//! config grants. osctld writes `devices` entries as `{type, major, minor,
//! mode, name, inherit, inherited}`; a `name` is the node's path under
//! `/dev`, bind-mounted from the host's node of that name.

use std::collections::BTreeMap;

use serde_json::Value;

use super::cgparams::{digits, Version};
use crate::error::{Error, Result};
use crate::model::grammar;

/// Largest major and minor numbers (the kernel's 12 and 20 bits).
const MAX_MAJOR: u32 = (1 << 12) - 1;
const MAX_MINOR: u32 = (1 << 20) - 1;
const MAX_NAME: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DevType {
    Char,
    Block,
}

impl DevType {
    fn letter(self) -> char {
        match self {
            DevType::Char => 'c',
            DevType::Block => 'b',
        }
    }

    pub fn parse(s: &str) -> Option<DevType> {
        match s {
            "char" | "c" => Some(DevType::Char),
            "block" | "b" => Some(DevType::Block),
            _ => None,
        }
    }
}

/// A major or minor number, or every one (`*`, osctld's `all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Num {
    N(u32),
    Any,
}

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Num::N(n) => write!(f, "{n}"),
            Num::Any => f.write_str("*"),
        }
    }
}

impl Num {
    fn covers(self, other: Num) -> bool {
        self == Num::Any || self == other
    }
}

/// Access: read, write, mknod; bits 1, 2, 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mode(u8);

impl Mode {
    pub const ALL: Mode = Mode(7);
    pub const MKNOD: Mode = Mode(4);

    pub fn parse(s: &str) -> Option<Mode> {
        let mut bits = 0;
        for c in s.chars() {
            bits |= match c {
                'r' => 1,
                'w' => 2,
                'm' => 4,
                _ => return None,
            };
        }
        (bits != 0).then_some(Mode(bits))
    }

    fn contains(self, other: Mode) -> bool {
        self.0 & other.0 == other.0
    }

    fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (bit, c) in [(1, 'r'), (2, 'w'), (4, 'm')] {
            if self.0 & bit != 0 {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// One `devices` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub kind: DevType,
    pub major: Num,
    pub minor: Num,
    pub mode: Mode,
    pub name: Option<String>,
    /// Groups pass it on to subgroups and containers.
    pub inherit: bool,
}

impl Device {
    pub fn key(&self) -> (DevType, Num, Num) {
        (self.kind, self.major, self.minor)
    }

    /// `c 1:3` as the cgroup device controller writes it.
    pub fn rule(&self) -> String {
        format!("{} {}:{}", self.kind.letter(), self.major, self.minor)
    }

    /// The entry as osctld writes it.
    pub fn to_config(&self, inherited: bool) -> Value {
        let num = |n: Num| match n {
            Num::N(n) => n.to_string(),
            Num::Any => "*".into(),
        };
        serde_json::json!({
            "type": self.kind,
            "major": num(self.major),
            "minor": num(self.minor),
            "mode": self.mode.to_string(),
            "name": self.name,
            "inherit": self.inherit,
            "inherited": inherited,
        })
    }
}

/// A major or minor number of a config or the command line.
pub fn parse_num(which: &str, text: &str) -> Result<Num> {
    let max = if which == "major" {
        MAX_MAJOR
    } else {
        MAX_MINOR
    };
    if text == "*" || text == "all" {
        return Ok(Num::Any);
    }
    match digits(text) {
        Some(n) if n <= u64::from(max) => Ok(Num::N(n as u32)),
        _ => Err(Error::invalid(format!(
            "device {which} {} is not a number up to {max} or '*'",
            grammar::shown(text)
        ))),
    }
}

/// A device node's name: a path below /dev that may be an fstab field.
pub fn check_name(name: &str) -> Result<()> {
    let ok = name.starts_with("/dev/")
        && name.len() <= MAX_NAME
        && !grammar::has_control(name)
        && !name.contains([' ', '\t', '\\'])
        && name[5..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if !ok {
        return Err(Error::invalid(format!(
            "device name {} is not a path below /dev (at most {MAX_NAME} bytes, no blanks, \
             control characters, empty, '.' or '..' components)",
            grammar::shown(name)
        )));
    }
    Ok(())
}

/// Parses a device given on the command line.
pub fn parse(
    kind: &str,
    major: &str,
    minor: &str,
    mode: &str,
    name: Option<&str>,
) -> Result<Device> {
    let kind = DevType::parse(kind).ok_or_else(|| {
        Error::invalid(format!(
            "device type {} is neither 'char' nor 'block'",
            grammar::shown(kind)
        ))
    })?;
    let mode = Mode::parse(mode).ok_or_else(|| {
        Error::invalid(format!(
            "device mode {} is not made of 'r', 'w' and 'm'",
            grammar::shown(mode)
        ))
    })?;
    if let Some(n) = name {
        check_name(n)?;
    }
    Ok(Device {
        kind,
        major: parse_num("major", major)?,
        minor: parse_num("minor", minor)?,
        mode,
        name: name.map(String::from),
        inherit: true,
    })
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads one `devices` entry of a config; `at` names it in errors.
pub fn from_config(at: &str, entry: &Value) -> Result<Device> {
    let Some(map) = entry.as_object() else {
        return Err(Error::invalid(format!("{at} is not a mapping")));
    };
    let field = |k: &str| {
        text(map.get(k))
            .ok_or_else(|| Error::invalid(format!("{at}.{k} is missing or not a string")))
    };
    let name = match map.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(Error::invalid(format!("{at}.name is not a string"))),
    };
    let mut dev = parse(
        &field("type")?,
        &field("major")?,
        &field("minor")?,
        &field("mode")?,
        name,
    )
    .map_err(|e| e.context(at))?;
    dev.inherit = match map.get("inherit") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(Error::invalid(format!("{at}.inherit is not true or false"))),
    };
    Ok(dev)
}

/// Reads a config's `devices` list.
pub fn list_from_config(owner: &str, entries: &[Value]) -> Result<Vec<Device>> {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| from_config(&format!("{owner}devices[{i}]"), e))
        .collect()
}

/// What every container may use: the usual character devices, and creating
/// (not opening) any node, as osctld's standard set allows.
pub fn defaults() -> Vec<Device> {
    let mut out: Vec<Device> = crate::trust::DEFAULT_DEVICES
        .iter()
        .map(|&(kind, major, minor)| Device {
            kind: if kind == 'b' {
                DevType::Block
            } else {
                DevType::Char
            },
            major: Num::N(major),
            minor: minor.map_or(Num::Any, Num::N),
            mode: Mode::ALL,
            name: None,
            inherit: true,
        })
        .collect();
    for kind in [DevType::Char, DevType::Block] {
        out.push(Device {
            kind,
            major: Num::Any,
            minor: Num::Any,
            mode: Mode::MKNOD,
            name: None,
            inherit: true,
        });
    }
    out
}

/// True when the defaults already grant what `dev` asks.
pub fn is_default(dev: &Device) -> bool {
    defaults().iter().any(|d| {
        d.kind == dev.kind
            && d.major.covers(dev.major)
            && d.minor.covers(dev.minor)
            && d.mode.contains(dev.mode)
    })
}

/// Character devices LXC's autodev makes in a container's /dev itself
/// (null, zero, full, random, urandom, tty, console, ptmx, pts).
const AUTODEV: &[(u32, Num)] = &[
    (1, Num::N(3)),
    (1, Num::N(5)),
    (1, Num::N(7)),
    (1, Num::N(8)),
    (1, Num::N(9)),
    (5, Num::N(0)),
    (5, Num::N(1)),
    (5, Num::N(2)),
    (136, Num::Any),
];

/// True when the host's `name` is itself (not a link to) a device node of
/// `kind` whose numbers the entry covers.
pub fn host_node_is(name: &str, kind: DevType, major: Num, minor: Num) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(meta) = std::fs::symlink_metadata(name) else {
        return false;
    };
    let ft = meta.file_type();
    let kind_ok = match kind {
        DevType::Char => ft.is_char_device(),
        DevType::Block => ft.is_block_device(),
    };
    let rdev = meta.rdev();
    let (maj, min) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    kind_ok && major.covers(Num::N(maj)) && minor.covers(Num::N(min))
}

/// Who granted an entry of a policy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Grant {
    #[serde(rename = "type")]
    pub kind: DevType,
    pub major: String,
    pub minor: String,
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `default`, `group /x` or `container`.
    pub source: String,
}

type Key = (DevType, Num, Num);

/// A device of a policy: its merged mode, node name and who granted it.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    mode: Mode,
    name: Option<String>,
    source: String,
}

impl Grant {
    pub fn of(d: &Device, source: &str) -> Grant {
        Grant {
            kind: d.kind,
            major: d.major.to_string(),
            minor: d.minor.to_string(),
            mode: d.mode.to_string(),
            name: d.name.clone(),
            source: source.to_string(),
        }
    }
}

/// A container's device policy: devices and their modes, merged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    entries: BTreeMap<Key, Entry>,
}

impl Policy {
    /// The defaults, then each group's inherited grants (root first), then
    /// the container's.
    pub fn build<'a>(
        groups: impl IntoIterator<Item = (&'a str, &'a [Device])>,
        own: &[Device],
    ) -> Policy {
        let mut p = Policy::default();
        p.add("default", defaults().iter());
        for (path, devs) in groups {
            p.add(&format!("group {path}"), devs.iter().filter(|d| d.inherit));
        }
        p.add("container", own.iter());
        p
    }

    fn add<'a>(&mut self, source: &str, devs: impl Iterator<Item = &'a Device>) {
        for d in devs {
            let e = self.entries.entry(d.key()).or_insert(Entry {
                mode: Mode::default(),
                name: None,
                source: source.to_string(),
            });
            if !e.mode.contains(d.mode) {
                e.source = source.to_string();
            }
            e.mode = Mode(e.mode.0 | d.mode.0);
            if e.name.is_none() {
                e.name = d.name.clone();
            }
        }
    }

    /// Allow rules (`c 1:3 rwm`), defaults first.
    pub fn rules(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|((k, maj, min), e)| format!("{} {maj}:{min} {}", k.letter(), e.mode))
            .collect()
    }

    /// LXC lines: deny everything, allow the entries, and bind-mount each
    /// named node LXC's autodev does not make, when `node_is` says the
    /// host's node of that name is the device granted (a name cannot bring
    /// in another device than its entry's).
    pub fn lxc_lines(
        &self,
        version: Version,
        node_is: impl Fn(&str, DevType, Num, Num) -> bool,
    ) -> Vec<(String, String)> {
        let key = |what: &str| match version {
            Version::V1 => format!("lxc.cgroup.devices.{what}"),
            Version::V2 => format!("lxc.cgroup2.devices.{what}"),
        };
        let mut out = vec![(key("deny"), "a".to_string())];
        out.extend(self.rules().into_iter().map(|r| (key("allow"), r)));
        for (&(kind, maj, min), e) in &self.entries {
            let Some(name) = e.name.as_deref() else {
                continue;
            };
            let autodev = AUTODEV
                .iter()
                .any(|&(a, b)| kind == DevType::Char && maj == Num::N(a) && b.covers(min));
            if !autodev && node_is(name, kind, maj, min) {
                let target = name.trim_start_matches('/');
                out.push((
                    "lxc.mount.entry".into(),
                    format!("{name} {target} none bind,optional,create=file 0 0"),
                ));
            }
        }
        out
    }

    pub fn grants(&self) -> Vec<Grant> {
        self.entries
            .iter()
            .map(|((kind, maj, min), e)| Grant {
                kind: *kind,
                major: maj.to_string(),
                minor: min.to_string(),
                mode: e.mode.to_string(),
                name: e.name.clone(),
                source: e.source.clone(),
            })
            .collect()
    }

    /// What turns this policy into `new` on a running container, as
    /// `(devices.deny|devices.allow, rule)`: a changed entry is denied with
    /// its old mode first (LXC's v2 programs match rules by their mode),
    /// then allowed with its new one.
    pub fn changes_to(&self, new: &Policy) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let keys: std::collections::BTreeSet<_> =
            self.entries.keys().chain(new.entries.keys()).collect();
        for key in keys {
            let old = self.entries.get(key).map(|e| e.mode).unwrap_or_default();
            let now = new.entries.get(key).map(|e| e.mode).unwrap_or_default();
            if old == now {
                continue;
            }
            let rule = |m: Mode| format!("{} {}:{} {m}", key.0.letter(), key.1, key.2);
            if !old.is_empty() {
                out.push(("devices.deny", rule(old)));
            }
            if !now.is_empty() {
                out.push(("devices.allow", rule(now)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dev(t: &str, maj: &str, min: &str, mode: &str) -> Device {
        parse(t, maj, min, mode, None).unwrap()
    }

    #[test]
    fn defaults_and_grants() {
        assert!(is_default(&dev("char", "1", "3", "rwm")));
        assert!(is_default(&dev("char", "136", "7", "rw")));
        assert!(is_default(&dev("block", "*", "*", "m")));
        assert!(!is_default(&dev("block", "*", "*", "rwm")));
        assert!(!is_default(&dev("block", "8", "0", "r")));
        assert!(!is_default(&dev("char", "1", "*", "r")));
        assert!(!is_default(&dev("char", "1", "11", "rw")));
    }

    #[test]
    fn policy_merges_and_renders() {
        let kvm = parse("char", "10", "232", "rw", Some("/dev/kvm")).unwrap();
        let mut private = dev("block", "8", "0", "r");
        private.inherit = false;
        let group = vec![kvm.clone(), private];
        let own = vec![dev("char", "10", "232", "m")];
        let p = Policy::build([("/g", group.as_slice())], &own);
        let lines = p.lxc_lines(Version::V1, |_, _, _, _| true);
        assert_eq!(lines[0], ("lxc.cgroup.devices.deny".into(), "a".into()));
        let rules = p.rules();
        assert!(rules.contains(&"c 10:232 rwm".to_string()), "{rules:?}");
        assert!(rules.contains(&"c 1:3 rwm".to_string()));
        assert!(rules.contains(&"b *:* m".to_string()));
        assert!(
            !rules.iter().any(|r| r.starts_with("b 8:0")),
            "not inherited"
        );
        assert!(lines.contains(&(
            "lxc.mount.entry".into(),
            "/dev/kvm dev/kvm none bind,optional,create=file 0 0".into()
        )));
        let v2 = p.lxc_lines(Version::V2, |_, _, _, _| false);
        assert!(v2.iter().all(|(k, _)| !k.starts_with("lxc.cgroup.")));
        assert!(v2.iter().all(|(k, _)| k != "lxc.mount.entry"), "{v2:?}");
        // Nodes autodev makes are not bound; tun and fuse are.
        let named = |maj, min, name| parse("char", maj, min, "rwm", Some(name)).unwrap();
        let tun = Policy::build(
            [],
            &[
                named("1", "3", "/dev/null"),
                named("10", "200", "/dev/net/tun"),
            ],
        );
        let mounts: Vec<String> = tun
            .lxc_lines(Version::V1, |_, _, _, _| true)
            .into_iter()
            .filter(|(k, _)| k == "lxc.mount.entry")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(
            mounts,
            ["/dev/net/tun dev/net/tun none bind,optional,create=file 0 0"]
        );
        let grant = p
            .grants()
            .into_iter()
            .find(|g| g.major == "10" && g.minor == "232")
            .unwrap();
        assert_eq!(grant.source, "container");
    }

    #[test]
    fn host_nodes_must_be_the_device_granted() {
        assert!(host_node_is(
            "/dev/null",
            DevType::Char,
            Num::N(1),
            Num::N(3)
        ));
        assert!(host_node_is(
            "/dev/null",
            DevType::Char,
            Num::N(1),
            Num::Any
        ));
        assert!(!host_node_is(
            "/dev/null",
            DevType::Char,
            Num::N(1),
            Num::N(5)
        ));
        assert!(!host_node_is(
            "/dev/null",
            DevType::Block,
            Num::N(1),
            Num::N(3)
        ));
        assert!(!host_node_is(
            "/dev/nonexistent",
            DevType::Char,
            Num::Any,
            Num::Any
        ));
        assert!(
            !host_node_is("/dev/fd", DevType::Char, Num::Any, Num::Any),
            "a link"
        );
    }

    #[test]
    fn live_changes() {
        let before = Policy::build([], &[dev("char", "10", "232", "rwm")]);
        let after = Policy::build([], &[dev("char", "10", "232", "r")]);
        assert_eq!(
            before.changes_to(&after),
            [
                ("devices.deny", "c 10:232 rwm".to_string()),
                ("devices.allow", "c 10:232 r".to_string())
            ]
        );
        let none = Policy::build([], &[]);
        assert_eq!(
            before.changes_to(&none),
            [("devices.deny", "c 10:232 rwm".to_string())]
        );
        assert!(none.changes_to(&none).is_empty());
    }

    #[test]
    fn configs_of_the_original_and_hostile_ones() {
        let std = json!({"type": "char", "major": "136", "minor": "all", "mode": "rwm",
                         "name": null, "inherit": true, "inherited": true});
        let d = from_config("devices[0]", &std).unwrap();
        assert_eq!(d.minor, Num::Any);
        assert!(from_config(
            "d",
            &json!({"type": "char", "major": 1, "minor": 3, "mode": "rwm"})
        )
        .is_ok());
        for bad in [
            json!({"type": "char", "major": 1, "minor": 3, "mode": "rwm\nlxc.hook.pre-start = /bin/sh"}),
            json!({"type": "char", "major": "1\n", "minor": 3, "mode": "r"}),
            json!({"type": "pipe", "major": 1, "minor": 3, "mode": "r"}),
            json!({"type": "char", "major": 4096, "minor": 3, "mode": "r"}),
            json!({"type": "char", "major": 1, "minor": 1048576, "mode": "r"}),
            json!({"type": "char", "major": -1, "minor": 3, "mode": "r"}),
            json!({"type": "char", "major": 1, "minor": 3, "mode": ""}),
            json!({"type": "char", "major": 1, "minor": 3, "mode": "rwx"}),
            json!({"type": "char", "major": 1, "minor": 3, "mode": "r", "name": "/etc/shadow"}),
            json!({"type": "char", "major": 1, "minor": 3, "mode": "r", "name": "/dev/../etc/x"}),
            json!({"type": "char", "major": 1, "minor": 3, "mode": "r", "name": "/dev/a b"}),
            json!({"type": "char", "major": 1, "minor": 3, "mode": "r", "inherit": "yes"}),
            json!({"type": "char", "minor": 3, "mode": "r"}),
            json!("c 1:3 rwm"),
        ] {
            let e = from_config("devices[0]", &bad)
                .expect_err(&bad.to_string())
                .to_string();
            assert!(e.starts_with("devices[0]"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
