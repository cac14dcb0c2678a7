//! What an imported archive may ask for without `--trusted`.
//!
//! An archive is someone else's configuration. Settings that reach outside the
//! container — host ids up to root, raw LXC lines, host mounts, devices beyond
//! the usual ones, hook scripts, running without a user namespace — are refused
//! unless the admin says the archive is trusted.

use serde_json::Value;

use crate::idmap::IdMap;
use crate::model::{ContainerConfig, GroupConfig};

/// Character devices every container may have: null, zero, full, random,
/// urandom, tty, console, ptmx, pts, tun, fuse.
const DEFAULT_DEVICES: &[(char, u32, Option<u32>)] = &[
    ('c', 1, Some(3)),
    ('c', 1, Some(5)),
    ('c', 1, Some(7)),
    ('c', 1, Some(8)),
    ('c', 1, Some(9)),
    ('c', 5, Some(0)),
    ('c', 5, Some(1)),
    ('c', 5, Some(2)),
    ('c', 136, None),
    ('c', 10, Some(200)),
    ('c', 10, Some(229)),
];

/// True for a device node an untrusted archive may create in a root file
/// system: the defaults above (what debootstrap puts in /dev, for one).
pub fn is_default_device_node(kind: char, major: u32, minor: u32) -> bool {
    DEFAULT_DEVICES
        .iter()
        .any(|&(k, maj, min)| k == kind && maj == major && min.is_none_or(|m| m == minor))
}

fn number(v: Option<&Value>) -> Option<u32> {
    match v? {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// True when a `devices` entry (`{type, major, minor, mode, ...}`) is one of the defaults.
fn is_default_device(dev: &Value) -> bool {
    let kind = match dev.get("type").and_then(Value::as_str) {
        Some("char") | Some("c") => 'c',
        Some("block") | Some("b") => 'b',
        _ => return false,
    };
    let Some(major) = number(dev.get("major")) else {
        return false;
    };
    let minor_any = matches!(dev.get("minor").and_then(Value::as_str), Some("*"));
    let minor = number(dev.get("minor"));
    DEFAULT_DEVICES.iter().any(|&(k, maj, min)| {
        k == kind
            && maj == major
            && match min {
                None => true,
                Some(m) => !minor_any && minor == Some(m),
            }
    })
}

fn describe_device(dev: &Value) -> String {
    let field = |k: &str| match dev.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "?".into(),
    };
    format!("{} {}:{}", field("type"), field("major"), field("minor"))
}

/// Reasons why an id map needs trust; `others` are other users' maps.
pub fn map_concerns(name: &str, maps: &[&IdMap], others: &[(String, IdMap)]) -> Vec<String> {
    let mut out = Vec::new();
    if maps.iter().any(|m| m.reaches_host_root()) {
        out.push(format!(
            "user '{name}' maps host id 0 (host root) into the container"
        ));
    }
    for (other, theirs) in others {
        if other != name && maps.iter().any(|m| m.overlaps(theirs)) {
            out.push(format!(
                "user '{name}' overlaps the id range of user '{other}'"
            ));
        }
    }
    out
}

/// Reasons why a container config needs trust.
pub fn container_concerns(ct: &ContainerConfig) -> Vec<String> {
    let mut out = Vec::new();
    if ct.raw_lxc().is_some() {
        out.push("container.yml has raw LXC configuration".into());
    }
    if !ct.mounts.is_empty() {
        out.push(format!(
            "container.yml mounts {} host path(s)",
            ct.mounts.len()
        ));
    }
    for dev in ct.devices.iter().filter(|d| !is_default_device(d)) {
        out.push(format!(
            "container.yml allows device {}",
            describe_device(dev)
        ));
    }
    if ct.privileged {
        out.push("container.yml runs the container privileged".into());
    }
    out
}

/// Reasons why a group config (one the import would create) needs trust.
pub fn group_concerns(path: &str, group: &GroupConfig) -> Vec<String> {
    group
        .devices
        .iter()
        .filter(|d| !is_default_device(d))
        .map(|d| format!("group '{path}' allows device {}", describe_device(d)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_devices_pass_others_do_not() {
        assert!(is_default_device(
            &json!({"type": "char", "major": 1, "minor": 3, "mode": "rwm"})
        ));
        assert!(is_default_device(
            &json!({"type": "char", "major": "136", "minor": "*"})
        ));
        assert!(!is_default_device(
            &json!({"type": "block", "major": 8, "minor": 0})
        ));
        assert!(!is_default_device(
            &json!({"type": "char", "major": 1, "minor": "*"})
        ));
        assert!(!is_default_device(
            &json!({"type": "char", "major": 1, "minor": 1})
        ));
    }

    #[test]
    fn container_settings() {
        let mut ct = ContainerConfig::new("u", "/default");
        assert!(container_concerns(&ct).is_empty());
        ct.raw = Some(json!({"lxc": "lxc.apparmor.profile = unconfined"}));
        ct.mounts = vec![json!({"fs": "/", "mountpoint": "/host"})];
        ct.devices = vec![json!({"type": "block", "major": 8, "minor": 0})];
        ct.privileged = true;
        assert_eq!(container_concerns(&ct).len(), 4);
    }

    #[test]
    fn maps() {
        let root = IdMap::single(0, 65536);
        assert_eq!(map_concerns("a", &[&root], &[]).len(), 1);
        let mine = IdMap::single(200000, 65536);
        let others = vec![("b".to_string(), IdMap::single(250000, 10))];
        assert_eq!(map_concerns("a", &[&mine], &others).len(), 1);
        assert!(map_concerns("b", &[&IdMap::single(250000, 10)], &others).is_empty());
    }
}
