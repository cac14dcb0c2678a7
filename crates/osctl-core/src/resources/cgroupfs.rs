//! Our cgroup directories: where a pool's groups and containers are in each
//! hierarchy, creating them (with v2's controller delegation), writing
//! limits into them, and removing them when they are no longer used.
//!
//! Below the base LXC uses (PID 1's cgroup), a host's cgroups are
//! `<root>/pool.<pool>/group.<a>/group.<b>/ct.<id>`, as osctld lays them out;
//! LXC puts `lxc.payload.<id>` and `lxc.monitor.<id>` into `ct.<id>`
//! (`lxc.cgroup.dir`), so every group above limits the container.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::cgparams::{Version, Write};
use super::hierarchy::{Hierarchies, Mount};
use crate::error::{Error, Result};
use crate::host::{Host, DEFAULT_ROOT};

/// The top cgroup of a host's state: `osctl` for `/var/lib/osctl`, else
/// `osctl-` and a digest of `OSCTL_ROOT`, so hosts side by side (tests)
/// keep apart.
pub fn root_name(host: &Host) -> String {
    if host.root() == Path::new(DEFAULT_ROOT) {
        return "osctl".into();
    }
    let digest = Sha256::digest(host.root().as_os_str().as_encoded_bytes());
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("osctl-{hex}")
}

pub fn pool_rel(host: &Host, pool: &str) -> String {
    format!("{}/pool.{pool}", root_name(host))
}

/// A group's cgroup, relative to the base. Names were checked by `names.rs`.
pub fn group_rel(host: &Host, pool: &str, group: &str) -> String {
    let mut rel = pool_rel(host, pool);
    for part in group.split('/').filter(|p| !p.is_empty()) {
        rel.push_str("/group.");
        rel.push_str(part);
    }
    rel
}

pub fn ct_rel(host: &Host, pool: &str, group: &str, id: &str) -> String {
    format!("{}/ct.{id}", group_rel(host, pool, group))
}

fn io_err(what: String, e: std::io::Error) -> Error {
    Error::io(what, e)
}

/// Creates `rel` in a hierarchy. On v2 the controllers of `writes` are
/// enabled in every cgroup above it first: a cgroup has a controller's files
/// only when its parent delegates the controller.
pub fn ensure_dir(mount: &Mount, rel: &str, controllers: &[&str]) -> Result<PathBuf> {
    let target = Hierarchies::dir(mount, rel);
    if mount.version == Version::V1 {
        std::fs::create_dir_all(&target)
            .map_err(|e| io_err(format!("cannot create cgroup {}", target.display()), e))?;
        return Ok(target);
    }
    let mut cur = Hierarchies::dir(mount, "");
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        delegate(&cur, controllers)?;
        cur.push(part);
        match std::fs::create_dir(&cur) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(format!("cannot create cgroup {}", cur.display()), e)),
        }
    }
    Ok(target)
}

/// Enables the controllers a cgroup has in its `cgroup.subtree_control`.
fn delegate(dir: &Path, controllers: &[&str]) -> Result<()> {
    let have = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    let missing: Vec<String> = controllers
        .iter()
        .filter(|c| have.split_whitespace().any(|h| h == **c))
        .filter(|c| !enabled.split_whitespace().any(|h| h == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let file = dir.join("cgroup.subtree_control");
    std::fs::write(&file, missing.join(" ")).map_err(|e| {
        io_err(
            format!("cannot enable {} in {}", missing.join(" "), file.display()),
            e,
        )
    })
}

/// Refuses writes whose file the cgroup lacks: the kernel does not offer
/// it (cgroup files cannot be created, and writing a missing one fails with
/// a misleading "permission denied").
pub fn check_offered(dir: &Path, writes: &[Write], owner: &str) -> Result<()> {
    match writes.iter().find(|w| !dir.join(w.file).exists()) {
        Some(w) => Err(Error::refused(format!(
            "{owner}: {} cannot be set: this host's kernel does not offer it (no {})",
            w.file,
            dir.join(w.file).display()
        ))),
        None => Ok(()),
    }
}

/// Writes limits into a cgroup directory. A write the kernel refuses is tried
/// once more after the others: on v1, memory may only be raised above
/// memory+swap after that was raised, and the other way round when lowering.
pub fn apply(dir: &Path, writes: &[Write], owner: &str) -> Result<()> {
    check_offered(dir, writes, owner)?;
    let failed: Vec<&Write> = writes
        .iter()
        .filter(|w| std::fs::write(dir.join(w.file), &w.value).is_err())
        .collect();
    for w in failed {
        let file = dir.join(w.file);
        std::fs::write(&file, &w.value).map_err(|e| {
            let what = format!(
                "{owner}: cannot set {} to {} in {}",
                w.file,
                w.value,
                file.display()
            );
            io_err(what, e)
        })?;
    }
    Ok(())
}

/// Removes a cgroup and the empty cgroups below it (LXC leaves `lxc.pivot`
/// behind). A cgroup with processes stays: the kernel refuses to remove it.
pub fn remove_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Removes `rel` wherever it is, as far as it is unused.
pub fn remove_everywhere(h: &Hierarchies, rel: &str) {
    for dir in h.all_dirs(rel) {
        remove_tree(&dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::cgparams::Controller;

    /// A v2 hierarchy's root as files: what the kernel offers, and what it
    /// delegates (children get their `cgroup.controllers` from it).
    fn fake_v2(root: &Path) -> Mount {
        std::fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        std::fs::write(root.join("cgroup.subtree_control"), "cpu\n").unwrap();
        Mount {
            path: root.to_path_buf(),
            version: Version::V2,
            controllers: vec!["cpu".into(), "io".into(), "memory".into(), "pids".into()],
            base: String::new(),
        }
    }

    #[test]
    fn v2_groups_get_their_controllers_delegated() {
        let tmp = tempfile::tempdir().unwrap();
        let mount = fake_v2(tmp.path());
        let dir = ensure_dir(&mount, "osctl/pool.p/group.a", &["memory", "pids"]).unwrap();
        assert_eq!(dir, tmp.path().join("osctl/pool.p/group.a"));
        assert!(dir.is_dir());
        // The root delegates what was missing; `cpu` was there already.
        let root = std::fs::read_to_string(tmp.path().join("cgroup.subtree_control")).unwrap();
        assert_eq!(root, "+memory +pids");
        let writes = [Write {
            controller: Controller::Memory,
            version: Version::V2,
            file: "memory.max",
            value: "67108864".into(),
        }];
        assert!(
            apply(&dir, &writes, "group '/a'").is_err(),
            "not offered yet"
        );
        // The kernel makes the file once the controller is delegated.
        std::fs::write(dir.join("memory.max"), "max").unwrap();
        apply(&dir, &writes, "group '/a'").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("memory.max")).unwrap(),
            "67108864"
        );
    }

    #[test]
    fn v1_dirs_and_errors_name_the_owner() {
        let tmp = tempfile::tempdir().unwrap();
        let mount = Mount {
            path: tmp.path().join("memory"),
            version: Version::V1,
            controllers: vec!["memory".into()],
            base: "init".into(),
        };
        let dir = ensure_dir(&mount, "osctl/ct.a", &["memory"]).unwrap();
        assert_eq!(dir, tmp.path().join("memory/init/osctl/ct.a"));
        let writes = [Write {
            controller: Controller::Memory,
            version: Version::V1,
            file: "no/such/file",
            value: "1".into(),
        }];
        let e = apply(&dir, &writes, "group '/a'").unwrap_err().to_string();
        assert!(
            e.starts_with("group '/a': no/such/file cannot be set"),
            "{e}"
        );
        assert!(e.contains("does not offer it"), "{e}");
        remove_tree(&tmp.path().join("memory/init/osctl"));
        assert!(!tmp.path().join("memory/init/osctl").exists());
    }

    #[test]
    fn hosts_side_by_side_keep_apart() {
        assert_eq!(root_name(&Host::at(DEFAULT_ROOT)), "osctl");
        let a = Host::at("/tmp/a");
        assert_ne!(root_name(&a), root_name(&Host::at("/tmp/b")));
        assert_eq!(
            ct_rel(&a, "tank", "/web/front", "c1"),
            format!("{}/pool.tank/group.web/group.front/ct.c1", root_name(&a))
        );
        assert_eq!(
            group_rel(&a, "tank", "/"),
            format!("{}/pool.tank", root_name(&a))
        );
    }
}
