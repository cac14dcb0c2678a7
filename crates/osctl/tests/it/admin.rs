//! The admin's CLI (issue 16): errors that say what to do, diagnostics of a
//! failed start, waiting for a lock, exit codes after a signal.

use std::io::Read;
use std::process::Stdio;

use super::hostile::set_ct_key;
use super::support::{can_run_containers, is_root, set_mode, signal, stopped_at, wait_until, Env};
use crate::require;

/// Replaces the `init_cmd` of container `id` on disk with `argv`.
fn set_init(env: &Env, id: &str, argv: &[&str]) {
    set_ct_key(env, id, "init_cmd", &serde_json::json!(argv));
}

#[test]
fn a_failed_start_says_lxcs_cause_and_where_its_log_is() {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    env.busybox_ct("broken");
    set_init(&env, "broken", &["/nonexistent"]);
    let err = env.fails(&["ct", "start", "broken"], 1);
    assert!(err.contains("Failed to exec \"/nonexistent\""), "{err}");
    assert!(
        !err.contains("foreground mode"),
        "LXC's generic advice: {err}"
    );
    let log = env.root().join("pools/default/log/broken.log");
    assert!(
        err.contains(&format!("LXC's log: {}", log.display())),
        "{err}"
    );
    // The next attempt's cause is its own, not the first one's.
    set_init(&env, "broken", &["/also-missing"]);
    let err = env.fails(&["ct", "start", "broken"], 1);
    assert!(err.contains("\"/also-missing\""), "{err}");
    // `ct log` shows the end of that log.
    let tail = env.ok(&["ct", "log", "broken", "-n", "40"]);
    assert!(tail.contains("/also-missing"), "{tail}");
    assert!(tail.lines().count() <= 40);
}

#[test]
fn a_state_directory_lxc_cannot_pass_is_named_before_starting() {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    env.busybox_ct("closed");
    // As `OSCTL_ROOT=$(mktemp -d)` makes it.
    set_mode(env.dir.path(), 0o700);
    let err = env.fails(&["ct", "start", "closed"], 1);
    set_mode(env.dir.path(), 0o755);
    let dir = env.dir.path().display().to_string();
    assert!(
        err.contains(&format!("cannot pass through {dir} (mode 0700")),
        "{err}"
    );
    assert!(err.contains(&format!("chmod o+x {dir}")), "{err}");
    env.ok(&["ct", "start", "closed"]);
    env.ok(&["ct", "stop", "closed"]);
}

#[test]
fn archives_and_tarballs_given_to_the_wrong_command_say_which_to_use() {
    require!(is_root(), "needs root");
    let env = Env::new();
    let rootfs = env.busybox_ct("src");
    let archive = env.path("src.tar");
    let archive_arg = archive.to_str().unwrap();
    env.ok(&["ct", "export", "src", archive_arg]);
    let err = env.fails(
        &["ct", "new", "--user", "u1", "--from-tar", archive_arg, "x"],
        2,
    );
    assert!(
        err.contains("is an osctl archive") && err.contains("osctl ct import"),
        "{err}"
    );
    assert!(!env.root().join("pools/default/conf/ct/x.yml").exists());

    let tarball = env.path("rootfs.tar");
    let packed = std::process::Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["-cf", tarball.to_str().unwrap(), "."])
        .status()
        .unwrap();
    assert!(packed.success());
    let err = env.fails(&["ct", "import", tarball.to_str().unwrap()], 1);
    assert!(
        err.contains("is a tar of files") && err.contains("--from-tar"),
        "{err}"
    );

    let gz = env.path("src.tar.gz");
    std::fs::write(&gz, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]).unwrap();
    let err = env.fails(&["ct", "import", gz.to_str().unwrap()], 1);
    assert!(
        err.contains("gzip-compressed") && err.contains("uncompressed tars"),
        "{err}"
    );

    let err = env.fails(
        &["ct", "new", "--user", "u1", "--from-dir", archive_arg, "y"],
        2,
    );
    assert!(err.contains("is a file, not a directory"), "{err}");

    // Rust's "(os error 2)" is not shown.
    let err = env.fails(&["ct", "import", "/nonexistent/x.tar"], 1);
    assert!(
        err.contains("No such file or directory") && !err.contains("os error"),
        "{err}"
    );
}

#[test]
fn waiting_for_a_lock_says_who_holds_it() {
    require!(is_root(), "needs root");
    let env = Env::new();
    env.busybox_ct("held");
    // An import that stops before its commit, holding its container's lock.
    let archive = env.path("held.tar");
    env.ok(&["ct", "export", "held", archive.to_str().unwrap()]);
    let mut cmd = env.cmd();
    cmd.args(["ct", "import", "--as-id", "twin", archive.to_str().unwrap()]);
    let holder = stopped_at(cmd, "import-before-commit");
    let out = env.run(&["--lock-timeout", "1", "ct", "del", "twin"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(lines.len(), 2, "the notice, then the error: {stderr}");
    let who = format!(
        "`osctl ct import --as-id twin {}` (pid {}",
        archive.display(),
        holder.id()
    );
    assert!(lines[0].starts_with("osctl: container 'twin'"), "{stderr}");
    assert!(
        lines[0].contains(&who) && lines[0].contains("waiting up to 1 s"),
        "{stderr}"
    );
    assert!(
        lines[1].contains("busy") && lines[1].contains(&who),
        "{stderr}"
    );
    assert!(lines[1].contains("--lock-timeout"), "{stderr}");
    // The environment variable does the same.
    let out = env
        .cmd()
        .env("OSCTL_LOCK_TIMEOUT", "1")
        .args(["ct", "del", "twin"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("longer than 1 s"));
    signal(&holder, libc::SIGCONT);
    assert!(holder.wait_with_output().unwrap().status.success());
}

#[test]
fn refusals_name_everything_and_say_what_to_do() {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    env.busybox_ct("one");
    env.busybox_ct("two");
    let err = env.fails(&["user", "del", "u1"], 1);
    assert!(err.contains("containers 'one', 'two'"), "{err}");
    // An id clash on import suggests --as-id.
    let archive = env.path("one.tar");
    env.ok(&["ct", "export", "one", archive.to_str().unwrap()]);
    let err = env.fails(&["ct", "import", archive.to_str().unwrap()], 1);
    assert!(
        err.contains("already exists") && err.contains("--as-id"),
        "{err}"
    );
    // exported_at is a date.
    let shown = env.ok(&["archive", "show", archive.to_str().unwrap()]);
    let line = shown
        .lines()
        .find(|l| l.starts_with("exported_at:"))
        .unwrap();
    assert!(
        line.ends_with(" UTC") && line.contains('-') && line.contains(':'),
        "{line}"
    );
    // A change that waits for the next start says so.
    env.ok(&["ct", "start", "one"]);
    let said = env.ok(&["ct", "set", "privileged", "one", "on"]);
    assert!(said.contains("applies at its next start"), "{said}");
    env.ok(&["ct", "set", "privileged", "one", "off"]);
    // --debug shows the commands osctl runs, with their durations.
    let out = env.run(&["--debug", "ct", "stop", "one"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("osctl: ran lxc-stop -n one") && l.contains(" ms, ")),
        "{stderr}"
    );
}

#[test]
fn sigint_ends_an_import_with_130() {
    require!(is_root(), "needs root");
    let env = Env::new();
    let root = env.noisy_rootfs("big", 300);
    env.ct_from("big", &root);
    let archive = env.path("big.tar");
    env.ok(&[
        "ct",
        "export",
        "--compression",
        "gzip",
        "big",
        archive.to_str().unwrap(),
    ]);
    let mut child = env
        .cmd()
        .args(["ct", "import", "--as-id", "copy", archive.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let staged = env.root().join("pools/default/ct/copy.importing");
    assert!(wait_until(30, || staged.exists()), "the import never began");
    signal(&child, libc::SIGINT);
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("SIGINT") && stderr.lines().count() == 1,
        "{stderr}"
    );
    assert!(!staged.exists());
    assert!(env.json(&["ct", "ls"]).as_array().unwrap().len() == 1);
}
