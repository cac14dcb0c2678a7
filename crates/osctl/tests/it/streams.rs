//! Archives through pipes: `ct export ID -` into `ct import -`, archives in
//! parts repacked, cut pipes, destinations checked before anything stops,
//! and moves between pools of one host without --trusted.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use super::backends::{Kind, Pool};
use super::support::{
    assert_consistent, can_run_containers, is_root, tar_names, wait_for_writes, wait_until, Env,
};
use crate::require;

/// Small parts, so that even a small container's streams come in many.
const PART: &str = "65536";

/// `osctl [pool] ct export [opts] ID - | osctl [pool] ct import [import] -`;
/// both must succeed. Returns the importer's stderr.
fn pipe(env: &Env, from: &str, export: &[&str], to: &str, import: &[&str]) -> String {
    let mut exp = env.cmd();
    exp.args(["--pool", from, "ct", "export", "--part-size", PART])
        .args(export)
        .arg("-")
        .stdout(Stdio::piped());
    let mut exporter = exp.spawn().unwrap();
    let mut imp = env.cmd();
    imp.args(["--pool", to, "ct", "import"])
        .args(import)
        .arg("-")
        .stdin(exporter.stdout.take().unwrap());
    let out = imp.output().unwrap();
    let status = exporter.wait().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(status.success(), "export {export:?} failed");
    assert!(out.status.success(), "import {import:?} failed: {stderr}");
    stderr
}

/// Exports into a pipe whose reader keeps it all: the archive in parts.
fn parts_archive(env: &Env, pool: &str, id: &str, opts: &[&str]) -> Vec<u8> {
    let mut cmd = env.cmd();
    cmd.args(["--pool", pool, "ct", "export", "--part-size", PART])
        .args(opts)
        .args([id, "-"])
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut bytes = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    assert!(child.wait().unwrap().success());
    bytes
}

/// `osctl --pool POOL ct import -` fed `bytes`; its exit code and stderr.
fn import_bytes(env: &Env, pool: &str, id: &str, bytes: &[u8]) -> (Option<i32>, String) {
    let mut child = env
        .cmd()
        .args([
            "--pool",
            pool,
            "ct",
            "import",
            "--trusted",
            "--as-id",
            id,
            "-",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(bytes);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).trim_end().to_string(),
    )
}

fn pipes_round_trip(kind: Kind) {
    require!(is_root(), "needs root");
    let env = Env::new();
    let Some(pool) = Pool::new(&env, kind) else {
        return;
    };
    let src = env.path("src");
    pool.every_kind(&src, "orig");
    pool.new_ct("orig", &src);
    let formats: &[&str] = match kind {
        Kind::Dir => &["native"],
        _ => &["native", "tar"],
    };
    for format in formats {
        for compression in ["off", "gzip", "zstd", "auto"] {
            let id = format!("p-{format}-{compression}");
            let opts = ["--format", format, "--compression", compression, "orig"];
            pipe(
                &env,
                &pool.name,
                &opts,
                &pool.name,
                &["--trusted", "--as-id", &id],
            );
            pool.assert_same(&src, &pool.rootfs(&id));
            pool.ok(&["ct", "del", &id]);
        }
    }
    // The same archive through a file: parts, seen as such, repacked into
    // the original's single entries, and imported.
    let parts = env.path("parts.tar");
    std::fs::write(&parts, parts_archive(&env, &pool.name, "orig", &[])).unwrap();
    let names = tar_names(&parts);
    assert!(
        names.iter().any(|n| n.ends_with(".part-000002")),
        "{names:?}"
    );
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with(".gz") || n.ends_with(".dat")),
        "{names:?}"
    );
    pool.ok(&["archive", "verify", parts.to_str().unwrap()]);
    let single = env.path("single.tar");
    pool.ok(&[
        "archive",
        "repack",
        parts.to_str().unwrap(),
        single.to_str().unwrap(),
    ]);
    let names = tar_names(&single);
    assert!(!names.iter().any(|n| n.contains(".part-")), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("rootfs/base.")),
        "{names:?}"
    );
    pool.ok(&["archive", "verify", single.to_str().unwrap()]);
    pool.import("repacked", &single);
    pool.assert_same(&src, &pool.rootfs("repacked"));
    pool.assert_clean();
}

#[test]
fn pipes_round_trip_on_dir() {
    pipes_round_trip(Kind::Dir);
}

#[test]
fn pipes_round_trip_on_zfs() {
    pipes_round_trip(Kind::Zfs);
}

#[test]
fn pipes_round_trip_on_btrfs() {
    pipes_round_trip(Kind::Btrfs);
}

/// A running container exported consistently through a pipe: the copy is
/// consistent and the container still runs.
fn running_through_a_pipe(kind: Kind) {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    let Some(pool) = Pool::new(&env, kind) else {
        return;
    };
    pool.new_ct("busy", &env.writer_rootfs("writer"));
    pool.ok(&["ct", "start", "busy"]);
    wait_for_writes(&pool.rootfs("busy"));
    pipe(
        &env,
        &pool.name,
        &["busy"],
        &pool.name,
        &["--trusted", "--as-id", "copy"],
    );
    assert_eq!(pool.show("busy")["state"], "running");
    assert_consistent(&pool.rootfs("copy"));
    pool.ok(&["ct", "stop", "busy"]);
    pool.assert_clean();
}

#[test]
fn running_through_a_pipe_on_dir() {
    running_through_a_pipe(Kind::Dir);
}

#[test]
fn running_through_a_pipe_on_zfs() {
    running_through_a_pipe(Kind::Zfs);
}

#[test]
fn running_through_a_pipe_on_btrfs() {
    running_through_a_pipe(Kind::Btrfs);
}

/// Offset of the first header whose name starts with `name`.
fn header_at(archive: &[u8], name: &str) -> usize {
    (0..archive.len() / 512)
        .map(|b| b * 512)
        .find(|&at| archive[at..].starts_with(name.as_bytes()))
        .unwrap_or_else(|| panic!("{name} not in the archive"))
}

fn cut_pipes(kind: Kind) {
    require!(is_root(), "needs root");
    let env = Env::new();
    let Some(pool) = Pool::new(&env, kind) else {
        return;
    };
    let src = env.path("src");
    pool.every_kind(&src, "orig");
    pool.new_ct("orig", &src);
    let whole = parts_archive(&env, &pool.name, "orig", &[]);
    let part2 = header_at(&whole, "rootfs/base.");
    let cuts = [
        ("mid-header", 700),
        ("mid-part", part2 + 512 + 30_000),
        (
            "between parts",
            header_at(&whole, "rootfs/base.") + 512 + 65536,
        ),
        ("before checksums.yml", header_at(&whole, "checksums.yml")),
        ("in snapshots.yml", whole.len() - 1024 - 100),
    ];
    for (what, at) in cuts {
        let (code, err) = import_bytes(&env, &pool.name, "cut", &whole[..at]);
        assert_eq!(code, Some(1), "{what}: {err}");
        assert_eq!(err.lines().count(), 1, "{what}: {err}");
        assert!(
            ["truncated", "incomplete", "cut off"]
                .iter()
                .any(|w| err.contains(w)),
            "{what}: {err}"
        );
        assert!(
            pool.ok(&["-j", "ct", "ls"]).matches("\"id\"").count() == 1,
            "{what}"
        );
        pool.assert_clean();
    }
    // The writer killed half-way: the reader sees a cut pipe.
    let mut exporter = env
        .cmd()
        .args([
            "--pool",
            &pool.name,
            "ct",
            "export",
            "--part-size",
            PART,
            "orig",
            "-",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = exporter.stdout.take().unwrap();
    let mut head = vec![0u8; part2 + 512 + 1000];
    out.read_exact(&mut head).unwrap();
    let mut importer = env
        .cmd()
        .args([
            "--pool",
            &pool.name,
            "ct",
            "import",
            "--trusted",
            "--as-id",
            "k",
            "-",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = importer.stdin.take().unwrap();
    stdin.write_all(&head).unwrap();
    exporter.kill().unwrap();
    exporter.wait().unwrap();
    drop(stdin);
    let done = importer.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(1), "{err}");
    // Besides what it recovered of the killed export, if it came first.
    let errors = err.lines().filter(|l| !l.starts_with("osctl: recovered"));
    assert_eq!(errors.count(), 1, "{err}");
    // The killed export's journal is replayed by the next command.
    assert!(wait_until(10, || pool
        .ok(&["-j", "ct", "ls"])
        .matches("\"id\"")
        .count()
        == 1));
    pool.assert_clean();
}

#[test]
fn cut_pipes_leave_nothing_on_dir() {
    cut_pipes(Kind::Dir);
}

#[test]
fn cut_pipes_leave_nothing_on_zfs() {
    cut_pipes(Kind::Zfs);
}

#[test]
fn cut_pipes_leave_nothing_on_btrfs() {
    cut_pipes(Kind::Btrfs);
}

#[test]
fn destinations_are_checked_before_anything_stops() {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    env.busybox_ct("web");
    env.ok(&["ct", "start", "web"]);
    let pid = || env.json(&["ct", "show", "web"])["state"].to_string();
    let before = pid();
    let taken = env.path("taken.tar");
    std::fs::write(&taken, "x").unwrap();
    let dir = env.path("out");
    std::fs::create_dir(&dir).unwrap();
    let with_slash = format!("{}/", dir.display());
    let cases = [
        (dir.to_str().unwrap().to_string(), "is a directory"),
        (with_slash, "is a directory"),
        (
            env.path("missing/a.tar").to_str().unwrap().to_string(),
            "does not exist",
        ),
        (
            taken.to_str().unwrap().to_string(),
            "already exists; --force to overwrite",
        ),
    ];
    for (dest, expect) in &cases {
        let mut args = vec!["ct", "export", "web", dest.as_str()];
        if !expect.contains("--force") {
            args.insert(2, "--force");
        }
        let err = env.fails(&args, if expect.contains("directory") { 2 } else { 1 });
        assert!(err.contains(expect), "{dest}: {err}");
        assert!(!err.contains(".partial"), "{dest}: {err}");
    }
    assert!(err_names(&env, &taken).contains(taken.to_str().unwrap()));
    assert_eq!(std::fs::read(&taken).unwrap(), b"x");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    assert_eq!(pid(), before);
    assert_eq!(env.state("web"), "running");
    env.ok(&["ct", "stop", "web"]);
}

fn err_names(env: &Env, file: &Path) -> String {
    env.fails(&["ct", "export", "web", file.to_str().unwrap()], 1)
}

/// The host's subuid lines holding `host` ids.
fn subuid_has(env: &Env, map: &str) -> bool {
    let host = map.split(':').nth(1).unwrap();
    std::fs::read_to_string(env.subuid_file())
        .unwrap()
        .lines()
        .any(|l| l.split(':').nth(1) == Some(host))
}

fn uid_map(pool: &Pool, user: &str) -> String {
    let users: serde_json::Value = serde_json::from_str(&pool.ok(&["-j", "user", "ls"])).unwrap();
    let found = users.as_array().unwrap().iter().find(|u| u["name"] == user);
    found.unwrap()["uid_map"].to_string()
}

/// A container of user `mover` moved from one pool to another of the same
/// host through a pipe, without --trusted: its user is created anew with a
/// fresh block. `start`: it is started there (zfs-fuse runs no
/// unprivileged containers).
fn move_between(from_kind: Kind, to_kind: Kind, start: bool) {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    let (Some(from), Some(to)) = (Pool::new(&env, from_kind), Pool::new(&env, to_kind)) else {
        return;
    };
    from.ok(&["user", "new", "mover"]);
    let root = env.web_rootfs("web", "moved");
    let rootfs = root.to_str().unwrap();
    from.ok(&["ct", "new", "--user", "mover", "--from-dir", rootfs, "web"]);
    let old = uid_map(&from, "mover");
    let note = pipe(&env, &from.name, &["--format", "tar", "web"], &to.name, &[]);
    let new = uid_map(&to, "mover");
    assert_ne!(old, new);
    assert!(note.contains("fresh block"), "{note}");
    assert_eq!(
        note.lines().filter(|l| l.contains("fresh block")).count(),
        1
    );
    assert!(subuid_has(
        &env,
        new.trim_matches(|c| c == '"' || c == '[' || c == ']')
    ));
    tree_same(&root, &to.rootfs("web"));
    if start {
        to.ok(&["ct", "start", "web"]);
        assert_eq!(to.show("web")["state"], "running");
        to.ok(&["ct", "stop", "web"]);
    }
    // Again, now that the user exists here with its new map: refused,
    // naming both ways. Without it, --keep-map needs trust, which the
    // message names after the way around it.
    let archive = env.path("again.tar");
    let archive = archive.to_str().unwrap();
    from.ok(&["ct", "export", "--format", "tar", "web", archive]);
    let err = to.fails(&["ct", "import", "--as-id", "again", archive]);
    assert!(
        err.contains("--as-user") && err.contains("--keep-map"),
        "{err}"
    );
    assert!(!err.contains("--trusted"), "{err}");
    to.ok(&["ct", "del", "web"]);
    to.ok(&["user", "del", "mover"]);
    let err = to.fails(&["ct", "import", "--keep-map", "--as-id", "kept", archive]);
    let way_out = err.find("without --keep-map").unwrap_or(usize::MAX);
    assert!(way_out < err.find("--trusted").unwrap(), "{err}");
    from.assert_clean();
    to.assert_clean();
}

fn tree_same(a: &Path, b: &Path) {
    let out = Command::new("diff")
        .arg("-r")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_container_moves_from_zfs_to_dir_without_trust() {
    move_between(Kind::Zfs, Kind::Dir, true);
}

#[test]
fn a_container_moves_from_btrfs_to_zfs_without_trust() {
    move_between(Kind::Btrfs, Kind::Zfs, false);
}
