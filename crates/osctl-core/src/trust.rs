//! What an imported archive may ask for without `--trusted`.
//!
//! An archive is someone else's configuration. Settings that reach outside the
//! container — host ids up to root, raw LXC lines, host mounts, devices beyond
//! the usual ones, hook scripts, running without a user namespace — are refused
//! unless the admin says the archive is trusted.

use serde_json::Value;

use crate::datasets::{is_dataset_mount, parse_mount};
use crate::idmap::{IdMap, IdRange, SubordinateFloor};
use crate::model::{ContainerConfig, GroupConfig};

/// Character devices every container may have: null, zero, full, random,
/// urandom, tty, console, ptmx, pts, tun, fuse.
pub(crate) const DEFAULT_DEVICES: &[(char, u32, Option<u32>)] = &[
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

/// Options a mount of the container's own dataset may have without trust.
const DATASET_MOUNT_OPTIONS: &[&str] = &[
    "bind",
    "rbind",
    "create=dir",
    "rw",
    "ro",
    "nosuid",
    "nodev",
    "noexec",
    "noatime",
    "relatime",
    "optional",
];

/// True for a device node an untrusted archive may create in a root file
/// system: the defaults above (what debootstrap puts in /dev, for one).
pub fn is_default_device_node(kind: char, major: u32, minor: u32) -> bool {
    DEFAULT_DEVICES
        .iter()
        .any(|&(k, maj, min)| k == kind && maj == major && min.is_none_or(|m| m == minor))
}

/// True when a `devices` entry (`{type, major, minor, mode, ...}`) asks for
/// no more than the default policy grants (`resources/devices.rs`).
fn is_default_device(dev: &Value) -> bool {
    crate::resources::devices::from_config("", dev)
        .is_ok_and(|d| crate::resources::devices::is_default(&d))
}

fn describe_device(dev: &Value) -> String {
    let field = |k: &str| match dev.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "?".into(),
    };
    format!("{} {}:{}", field("type"), field("major"), field("minor"))
}

/// The maps of a user an archive asks us to create, and what they are
/// judged against.
pub struct MapsToJudge<'a> {
    pub name: &'a str,
    pub uid_map: &'a IdMap,
    pub gid_map: &'a IdMap,
}

/// Reasons why a user's id maps need trust: they reach host root or other
/// host system ids (below `floor`), past the last id or beyond the size an
/// untrusted user may have, overlap another user of the pool (`others`), or
/// overlap host ids given out outside the pool (`host_taken`: the
/// /etc/subuid and /etc/subgid lines, which hold every pool's users and the
/// system's own ranges).
pub fn map_concerns(
    user: &MapsToJudge<'_>,
    others: &[(String, IdMap)],
    host_taken: &[IdRange],
    floor: &SubordinateFloor,
) -> Vec<String> {
    let name = user.name;
    let maps = [("uid", user.uid_map), ("gid", user.gid_map)];
    let mut out = Vec::new();
    if maps.iter().any(|(_, m)| m.reaches_host_root()) {
        out.push(format!(
            "user '{name}' maps host id 0 (host root) into the container"
        ));
    } else {
        out.extend(
            maps.iter()
                .filter_map(|(kind, m)| floor.judge(m, kind))
                .map(|why| format!("user '{name}': {why}")),
        );
    }
    let mut overlapped: Vec<&str> = Vec::new();
    for (other, theirs) in others {
        if other != name
            && !overlapped.contains(&other.as_str())
            && maps.iter().any(|(_, m)| m.overlaps(theirs))
        {
            overlapped.push(other);
            out.push(format!(
                "user '{name}' overlaps the id range of user '{other}'"
            ));
        }
    }
    // The pool's users are in those files too: said once, by name, above.
    let ours = |r: &IdRange| {
        maps.iter()
            .any(|(_, m)| m.0.iter().any(|a| a.overlaps_host(r)))
    };
    if let Some(r) = host_taken
        .iter()
        .find(|r| ours(r))
        .filter(|_| overlapped.is_empty())
    {
        out.push(format!(
            "user '{name}' overlaps host ids {}-{}, given out on this host in /etc/subuid \
             or /etc/subgid (to another pool's user or by the system)",
            r.host,
            r.host_end() - 1
        ));
    }
    out
}

/// Reasons why a container config needs trust.
pub fn container_concerns(ct: &ContainerConfig) -> Vec<String> {
    let mut out = Vec::new();
    if ct.raw_lxc().is_some() {
        out.push("container.yml has raw LXC configuration".into());
    }
    // A mount of one of the container's own datasets reaches nothing else;
    // its options stay among the usual ones.
    let host_mounts = ct.mounts.iter().filter(|m| !is_dataset_mount(m)).count();
    if host_mounts > 0 {
        out.push(format!("container.yml mounts {host_mounts} host path(s)"));
    }
    for mount in ct.mounts.iter().filter_map(parse_mount).flatten() {
        for option in mount.options.split(',') {
            if !DATASET_MOUNT_OPTIONS.contains(&option) {
                out.push(format!(
                    "container.yml mounts dataset '{}' with option '{option}'",
                    mount.dataset
                ));
            }
        }
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
    out.extend(prlimit_concerns(ct));
    out
}

/// Process limits that let a container's processes raise their scheduling
/// priority above what the host gives them: real-time priority and nice.
fn prlimit_concerns(ct: &ContainerConfig) -> Vec<String> {
    use crate::resources::prlimits::{self, RlimValue};
    let limits = prlimits::from_config(ct.prlimits.as_ref()).unwrap_or_default();
    limits
        .iter()
        .filter(|l| ["rtprio", "nice"].contains(&l.name.as_str()))
        .filter(|l| l.hard != RlimValue::Value(0))
        .map(|l| {
            format!(
                "container.yml lets processes raise their priority (prlimit {} {}:{})",
                l.name, l.soft, l.hard
            )
        })
        .collect()
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
            &json!({"type": "char", "major": "136", "minor": "*", "mode": "rw"})
        ));
        assert!(is_default_device(
            &json!({"type": "block", "major": "*", "minor": "*", "mode": "m"})
        ));
        assert!(!is_default_device(
            &json!({"type": "block", "major": "*", "minor": "*", "mode": "rwm"})
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
        ct.prlimits =
            Some(json!({"rtprio": {"soft": 0, "hard": 99}, "nofile": {"soft": 1, "hard": 2}}));
        assert_eq!(container_concerns(&ct).len(), 5);
    }

    #[test]
    fn dataset_mounts_are_no_host_mounts() {
        let mut ct = ContainerConfig::new("u", "/default");
        let var = json!({"fs": null, "mountpoint": "/var", "type": "bind",
            "opts": "bind,create=dir,rw", "automount": true, "dataset": "var", "temporary": false});
        ct.mounts = vec![var.clone()];
        assert!(container_concerns(&ct).is_empty());
        let mut odd = var;
        odd["opts"] = json!("bind,rw,idmap=/proc/1/ns/user");
        ct.mounts = vec![odd, json!({"fs": "/", "mountpoint": "/host"})];
        let concerns = container_concerns(&ct);
        assert_eq!(concerns.len(), 2, "{concerns:?}");
        assert!(concerns[0].contains("1 host path"), "{concerns:?}");
        assert!(concerns[1].contains("option 'idmap="), "{concerns:?}");
    }

    fn judge(
        name: &str,
        map: &IdMap,
        others: &[(String, IdMap)],
        host_taken: &[IdRange],
    ) -> Vec<String> {
        let user = MapsToJudge {
            name,
            uid_map: map,
            gid_map: map,
        };
        map_concerns(
            &user,
            others,
            host_taken,
            &SubordinateFloor::from_login_defs(""),
        )
    }

    #[test]
    fn maps() {
        let root = IdMap::single(0, 65536);
        assert_eq!(judge("a", &root, &[], &[]).len(), 1);
        let mine = IdMap::single(200000, 65536);
        // Both maps of b, as the importer lists them: said once.
        let others = vec![
            ("b".to_string(), IdMap::single(250000, 10)),
            ("b".to_string(), IdMap::single(250000, 10)),
        ];
        let concerns = judge("a", &mine, &others, &[]);
        assert_eq!(concerns.len(), 1, "{concerns:?}");
        assert!(judge("b", &IdMap::single(250000, 10), &others, &[]).is_empty());

        // Host-wide lines: a range of another pool (or the system's) is a
        // concern; b's own line is not said twice.
        let line = |host, count| IdRange { ns: 0, host, count };
        let host_taken = [line(250000, 10), line(300000, 65536)];
        let concerns = judge("a", &mine, &others, &host_taken);
        assert_eq!(concerns.len(), 1, "{concerns:?}");
        assert!(concerns[0].contains("user 'b'"), "{concerns:?}");
        let elsewhere = IdMap::single(330000, 10);
        let concerns = judge("c", &elsewhere, &others, &host_taken);
        assert_eq!(concerns.len(), 1, "{concerns:?}");
        assert!(
            concerns[0].contains("host ids 300000-365535"),
            "{concerns:?}"
        );
        assert!(judge("c", &IdMap::single(400000, 10), &others, &host_taken).is_empty());
    }

    #[test]
    fn maps_onto_system_ids_or_too_large() {
        let system = judge("s", &IdMap::single(1, 65536), &[], &[]);
        assert_eq!(system.len(), 2, "uid and gid: {system:?}");
        assert!(system[0].contains("below 100000"), "{system:?}");
        let huge = judge("h", &IdMap::single(100000, 200_000_000), &[], &[]);
        assert!(huge[0].contains("200000000 ids"), "{huge:?}");
    }
}
