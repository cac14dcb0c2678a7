//! Regression tests for the holes of the security review (issue 10), each
//! named after its number there; the ones not here live beside the backend
//! or path they were found on (hostile.rs, backends.rs).

use std::process::Child;

use super::hostile::{refused, valid};
use super::rawtar::Entry;
use super::support::{is_root, signal, stopped_at, Env};
use crate::require;

/// The subuid and subgid lines a host range has.
fn lines_of(env: &Env, range: &str) -> Vec<String> {
    let line = format!("root:{range}");
    let subgid = env.subuid_file().with_file_name("subgid");
    [env.subuid_file(), subgid]
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .filter(|l| *l == line)
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// An archive of `valid()`'s container whose user is `user` with both maps `map`.
fn archive_with_user(user: &str, map: &str) -> Vec<u8> {
    valid()
        .with(|p| {
            p.metadata = p
                .metadata
                .replace("user: hostile", &format!("user: {user}"));
            p.user = Some(format!("---\nuid_map:\n- {map}\ngid_map:\n- {map}\n"));
        })
        .build()
}

#[test]
fn hole_4_maps_onto_host_system_ids_or_too_large_are_refused() {
    require!(is_root(), "needs root (owners, subuid)");
    let env = Env::with_private_subids();
    let cases = [
        // Host daemons, logins and the disk group.
        ("system-ids", "0:1:65536", "below 100000"),
        ("just-below-the-floor", "0:99999:65536", "below 100000"),
        // (u32)-1 is no id at all.
        ("minus-one", "0:4294901760:65536", "4294967295"),
        (
            "hundreds-of-millions",
            "0:100000000:300000000",
            "300000000 ids",
        ),
        // Stored as written before: now not a map entry at all.
        (
            "plus-signs",
            "+0:+3900000000:+65536",
            "invalid id map entry",
        ),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(name, map, expect)| {
            refused(&env, name, &archive_with_user("mapper", map), &[], expect)
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The message says what is allowed.
    let file = env.path("system-ids.tar");
    let err = env.fails(&["ct", "import", file.to_str().unwrap()], 1);
    assert!(
        err.contains("100000-4294967294") && err.contains("16777216"),
        "{err}"
    );
}

/// Starts `osctl ct import FILE` in `env`, stopped at the point before its
/// commit; returns it once it is stopped there.
fn import_stopped_before_commit(env: &Env, file: &str) -> Child {
    let mut cmd = env.cmd();
    cmd.args(["ct", "import", "--keep-map", file]);
    stopped_at(cmd, "import-before-commit")
}

/// Lets a stopped import go on; returns its exit code and stderr.
fn resume(child: Child) -> (Option<i32>, String) {
    signal(&child, libc::SIGCONT);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).trim_end().to_string(),
    )
}

#[test]
fn hole_5_the_overlap_check_and_the_users_creation_are_one_step() {
    require!(is_root(), "needs root (owners, subuid)");
    // Two hosts' worth of pools sharing /etc/subuid: two imports of users
    // with the same map, the first paused between its check and its commit.
    let (first, second) = (Env::new(), Env::new());
    let map = "0:3600000000:65536";
    let bytes = archive_with_user("twin", map);
    let (a, b) = (first.path("twin.tar"), second.path("twin.tar"));
    std::fs::write(&a, &bytes).unwrap();
    std::fs::write(&b, &bytes).unwrap();
    let paused = import_stopped_before_commit(&first, a.to_str().unwrap());
    second.ok(&["ct", "import", "--keep-map", b.to_str().unwrap()]);
    let (code, err) = resume(paused);
    assert_eq!(code, Some(1), "the paused import must fail: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("overlaps host ids 3600000000-3600065535"),
        "{err}"
    );
    assert_eq!(
        lines_of(&second, "3600000000:65536").len(),
        2,
        "one uid, one gid line"
    );
    assert!(first.json(&["ct", "ls"]).as_array().unwrap().is_empty());
    assert!(first.json(&["user", "ls"]).as_array().unwrap().is_empty());
}

#[test]
fn hole_5_user_new_during_an_import_cannot_share_its_block() {
    require!(is_root(), "needs root (owners, subuid)");
    let env = Env::with_private_subids();
    // The block `user new` hands out next.
    env.ok(&["user", "new", "probe"]);
    let block = env.json(&["user", "show", "probe"])["uid_map"][0]
        .as_str()
        .unwrap()
        .to_string();
    env.ok(&["user", "del", "probe"]);
    let file = env.path("incoming.tar");
    std::fs::write(&file, archive_with_user("incoming", &block)).unwrap();
    let paused = import_stopped_before_commit(&env, file.to_str().unwrap());
    env.ok(&["user", "new", "latecomer"]);
    let latecomer = env.json(&["user", "show", "latecomer"])["uid_map"][0].clone();
    assert_eq!(latecomer, block.as_str(), "user new took the free block");
    let (code, err) = resume(paused);
    assert_eq!(code, Some(1), "the import must not share the block: {err}");
    assert!(err.contains("user 'latecomer'"), "{err}");
    let range = block.trim_start_matches("0:");
    assert_eq!(lines_of(&env, range).len(), 2, "only latecomer's lines");
    assert!(env.json(&["ct", "ls"]).as_array().unwrap().is_empty());
}

#[test]
fn hole_6_duplicate_entries_are_refused_by_import_and_verify_alike() {
    require!(is_root(), "needs root (owners, subuid)");
    let env = Env::with_private_subids();
    let second_container =
        "---\nuser: hostile\ngroup: /default\nhostname: other\nprivileged: true\n";
    let second_user = "---\nuid_map:\n- 0:0:65536\ngid_map:\n- 0:0:65536\n";
    for (name, dup) in [
        (
            "container",
            Entry::file("config/container.yml", second_container.as_bytes()),
        ),
        (
            "user",
            Entry::file("config/user.yml", second_user.as_bytes()),
        ),
        ("config-dir", Entry::dir("config/")),
    ] {
        let bytes = valid().with(|p| p.hooks = vec![dup]).build();
        let problem = refused(&env, name, &bytes, &[], "appears twice");
        assert!(problem.is_none(), "{problem:?}");
        let file = env.path(&format!("{name}.tar"));
        let err = env.fails(&["archive", "verify", file.to_str().unwrap()], 1);
        assert!(err.contains("appears twice"), "{name}: {err}");
    }
}

#[test]
fn hole_8_refused_imports_leave_no_lock_and_say_each_reason_once() {
    require!(is_root(), "needs root (owners, subuid)");
    let env = Env::new();
    env.ok(&["user", "new", "--map", "0:3600200000:65536", "holder"]);
    let locks = env.root().join("locks/default");
    let bytes = archive_with_user("intruder", "0:3600200000:65536");
    let file = env.path("overlap.tar");
    std::fs::write(&file, bytes).unwrap();
    // Kept (without it the user gets a fresh block, see streams.rs).
    let err = env.fails(&["ct", "import", "--keep-map", file.to_str().unwrap()], 1);
    assert_eq!(
        err.matches("overlaps the id range of user 'holder'")
            .count(),
        1,
        "{err}"
    );
    assert!(
        !locks.join("ct.victim.lock").exists(),
        "the refused import left its lock file"
    );
    // Also when the refusal comes late (a stream that breaks the rules).
    let late = valid()
        .with(|p| p.rootfs.push(Entry::file("./far", b"x").owner(70000, 0)))
        .build();
    let file = env.path("late.tar");
    std::fs::write(&file, late).unwrap();
    env.fails(&["ct", "import", file.to_str().unwrap()], 1);
    assert!(!locks.join("ct.victim.lock").exists());
    // Extended attributes more than ext4 keeps for one file: said as such.
    let value = vec![b'v'; 3000];
    let crowded = valid()
        .with(|p| {
            p.rootfs.push(Entry::pax(&[
                ("SCHILY.xattr.user.a", &value[..]),
                ("SCHILY.xattr.user.b", &value[..]),
                ("SCHILY.xattr.user.c", &value[..]),
            ]));
            p.rootfs.push(Entry::file("./crowded", b""));
        })
        .build();
    let file = env.path("crowded.tar");
    std::fs::write(&file, crowded).unwrap();
    let err = env.fails(&["ct", "import", file.to_str().unwrap()], 1);
    assert!(
        err.contains("./crowded") && err.contains("more than this file system holds"),
        "{err}"
    );
    assert!(!locks.join("ct.victim.lock").exists());
    // A deleted container's lock goes with it.
    let file = env.path("good.tar");
    std::fs::write(&file, archive_with_user("owner", "0:3600400000:65536")).unwrap();
    env.ok(&["ct", "import", file.to_str().unwrap()]);
    assert!(locks.join("ct.victim.lock").exists());
    env.ok(&["ct", "del", "victim"]);
    assert!(!locks.join("ct.victim.lock").exists());
}
