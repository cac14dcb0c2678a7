//! The original's conventions and the admin's aids (issue 16, part 2): `ls`
//! across pools with -H/-o/-L/-s and filters, `POOL:ID`, aliases, typed -j,
//! help, man pages and completions, the closing lines of export and import,
//! and the progress bar under a terminal.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::hostile;
use super::support::{can_run_containers, have, is_root, Env};
use crate::require;

/// A root file system that needs no busybox: a directory with a file.
fn plain_rootfs(env: &Env, name: &str, noise_mib: u64) -> PathBuf {
    let root = env.path(name);
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), "x\n").unwrap();
    if noise_mib > 0 {
        let random = std::fs::File::open("/dev/urandom").unwrap();
        let mut noise = std::fs::File::create(root.join("noise")).unwrap();
        std::io::copy(
            &mut std::io::Read::take(random, noise_mib << 20),
            &mut noise,
        )
        .unwrap();
    }
    root
}

/// Pools `default` (user u1, container c1) and `second` (user u2, group
/// /web, container c2 in it).
fn two_pools(env: &Env) {
    let rootfs = plain_rootfs(env, "rootfs", 0);
    let rootfs = rootfs.to_str().unwrap();
    env.ok(&["user", "new", "u1"]);
    env.ok(&["ct", "new", "--user", "u1", "--from-dir", rootfs, "c1"]);
    let second = env.path("second");
    env.ok(&[
        "pool",
        "install",
        "--path",
        second.to_str().unwrap(),
        "second",
    ]);
    env.ok(&["user", "new", "second:u2"]);
    env.ok(&["group", "new", "second:/web"]);
    env.ok(&[
        "ct",
        "new",
        "--user",
        "u2",
        "--group",
        "/web",
        "--from-dir",
        rootfs,
        "second:c2",
    ]);
}

/// The table's lines, each split into its cells.
fn cells(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

#[test]
fn ls_lists_every_pool_with_the_originals_options() {
    require!(is_root(), "needs root");
    let env = Env::with_private_subids();
    two_pools(&env);
    let table = cells(&env.ok(&["ct", "ls"]));
    assert_eq!(table[0], ["POOL", "ID", "USER", "GROUP", "STATE", "SEND"]);
    assert_eq!(
        table[1],
        ["default", "c1", "u1", "/default", "stopped", "-"]
    );
    assert_eq!(table[2], ["second", "c2", "u2", "/web", "stopped", "-"]);
    // --pool filters; -H drops the header; -o picks and orders columns.
    let only = cells(&env.ok(&["--pool", "second", "ct", "ls", "-H", "-o", "id,group"]));
    assert_eq!(only, [["c2", "/web"]]);
    // -s sorts (descending ids would put c2 first: sort by user, u1 < u2).
    let sorted = cells(&env.ok(&["ct", "ls", "-H", "-o", "user,id", "-s", "pool"]));
    assert_eq!(sorted, [["u1", "c1"], ["u2", "c2"]]);
    // -L lists the columns, with what each holds.
    let columns = env.ok(&["ct", "ls", "-L"]);
    for c in ["pool", "id", "state", "rootfs", "hostname", "datasets"] {
        assert!(columns.lines().any(|l| l.starts_with(c)), "{columns}");
    }
    // Ids, with or without their pool; filters -u, -g, -S.
    let ids = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["ct", "ls", "-H", "-o", "id"];
        full.extend_from_slice(args);
        env.ok(&full).lines().map(String::from).collect()
    };
    assert_eq!(ids(&["second:c2"]), ["c2"]);
    assert_eq!(ids(&["c1", "c2"]), ["c1", "c2"]);
    assert_eq!(ids(&["default:c2"]), Vec::<String>::new());
    assert_eq!(ids(&["-u", "u2"]), ["c2"]);
    assert_eq!(ids(&["-g", "/default"]), ["c1"]);
    assert_eq!(ids(&["-S", "stopped"]), ["c1", "c2"]);
    assert_eq!(ids(&["-S", "running"]), Vec::<String>::new());
    let err = env.fails(&["ct", "ls", "-S", "sleeping"], 2);
    assert!(err.contains("unknown state 'sleeping'"), "{err}");
    let err = env.fails(&["ct", "ls", "-o", "id,colour"], 2);
    assert!(
        err.contains("unknown column 'colour' (columns: pool, id"),
        "{err}"
    );
    // -o with -j: the chosen fields only.
    let picked = env.json(&["ct", "ls", "-o", "id,pool"]);
    assert_eq!(picked[0].as_object().unwrap().len(), 2, "{picked}");

    // The same conventions for users, groups and pools.
    let users = cells(&env.ok(&["user", "ls", "-H", "-o", "pool,name"]));
    assert_eq!(users, [["default", "u1"], ["second", "u2"]]);
    assert_eq!(
        env.ok(&["user", "ls", "-H", "-o", "name", "second:u2"]),
        "u2\n"
    );
    let groups = env.ok(&["--pool", "second", "group", "ls", "-H", "-o", "name"]);
    assert_eq!(groups, "/\n/default\n/web\n");
    assert!(env.ok(&["group", "ls", "-L"]).contains("parent"));
    let pools = cells(&env.ok(&["pool", "ls", "-H", "-o", "name,backend", "-s", "name"]));
    assert_eq!(pools, [["default", "dir"], ["second", "dir"]]);
    assert_eq!(
        env.ok(&["pool", "ls", "-H", "-o", "name", "second"]),
        "second\n"
    );
}

#[test]
fn ids_take_their_pool_and_the_originals_aliases_work() {
    require!(is_root(), "needs root");
    let env = Env::with_private_subids();
    two_pools(&env);
    assert_eq!(env.json(&["ct", "show", "second:c2"])["pool"], "second");
    assert_eq!(env.json(&["user", "show", "second:u2"])["pool"], "second");
    assert_eq!(env.json(&["group", "show", "second:/web"])["parent"], "/");
    // A pool named twice must agree.
    let err = env.fails(&["--pool", "default", "ct", "show", "second:c2"], 2);
    assert!(
        err.contains("'second:c2' names pool 'second' but --pool says 'default'"),
        "{err}"
    );
    env.ok(&["--pool", "second", "ct", "show", "second:c2"]);
    // `list`, `delete`, `info` as the original spells them.
    assert_eq!(env.json(&["ct", "list"]).as_array().unwrap().len(), 2);
    assert_eq!(
        env.json(&["group", "list", "second:/web"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    env.ok(&["ct", "info", "c1"]);
    env.ok(&["ct", "delete", "second:c2"]);
    env.ok(&["group", "delete", "second:/web"]);
    env.ok(&["user", "delete", "second:u2"]);
    assert_eq!(env.ok(&["ct", "ls", "-H", "-o", "id"]), "c1\n");
    assert_eq!(env.ok(&["user", "ls", "-H", "-o", "name"]), "u1\n");
}

#[test]
fn stop_t_del_f_and_exec_without_dashes() {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    env.busybox_ct("c1");
    env.ok(&["ct", "start", "default:c1"]);
    // The command's own options are not osctl's; its status is ours.
    let listed = env.ok(&["ct", "exec", "c1", "ls", "-a", "/"]);
    assert!(listed.lines().any(|l| l == "etc"), "{listed}");
    let out = env.run(&["ct", "exec", "c1", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    env.ok(&["ct", "stop", "-t", "5", "c1"]);
    assert_eq!(env.state("c1"), "stopped");
    env.ok(&["ct", "start", "c1"]);
    let err = env.fails(&["ct", "del", "c1"], 1);
    assert!(err.contains("--force"), "{err}");
    env.ok(&["ct", "del", "-f", "c1"]);
    assert!(env.json(&["ct", "ls"]).as_array().unwrap().is_empty());
}

#[test]
fn json_comes_from_typed_rows_for_every_object() {
    require!(is_root(), "needs root");
    let env = Env::with_private_subids();
    two_pools(&env);
    // Sorted: the JSON object's order is serde_json's.
    let fields = |v: &Value| -> Vec<String> {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    let user = &env.json(&["user", "ls", "second:u2"])[0];
    assert_eq!(
        fields(user),
        ["gid_map", "name", "pool", "standalone", "uid_map"]
    );
    assert_eq!(user["standalone"], true);
    let group = env.json(&["group", "show", "second:/web"]);
    assert_eq!(
        fields(&group),
        ["cgparams", "devices", "name", "parent", "pool"]
    );
    let ct = &env.json(&["ct", "ls", "c1"])[0];
    assert_eq!(ct["privileged"], false);
    assert_eq!(ct["datasets"], Value::Array(vec![]));
    assert!(env.json(&["ct", "show", "c1"])["resources"].is_object());
    let pools = env.json(&["pool", "ls"]);
    assert_eq!(fields(&pools[1]), ["backend", "location", "name"]);
    let pool = env.json(&["pool", "show", "second"]);
    assert_eq!(pool["allowed_bridges"], Value::Array(vec![]));
    assert!(env.json(&["ct", "netif", "ls", "c1"]).is_array());
}

#[test]
fn help_describes_options_lists_choices_and_keeps_global_options_apart() {
    let env = Env::new();
    let help = env.ok(&["ct", "export", "--help"]);
    let globals = help
        .find("Global options:")
        .expect("a Global options heading");
    // The command's own options come before the global ones, which are apart.
    assert!(help.find("--stop-timeout").unwrap() < globals, "{help}");
    assert!(help[globals..].contains("--lock-timeout"), "{help}");
    assert!(!help[..globals].contains("--lock-timeout"), "{help}");
    for choice in [
        "- auto:",
        "- off:",
        "- gzip:",
        "- zstd:",
        "- native:",
        "- tar:",
    ] {
        assert!(help.contains(choice), "{choice} missing: {help}");
    }
    let help = env.ok(&["pool", "install", "--help"]);
    for choice in ["- dir:", "- zfs:", "- btrfs:"] {
        assert!(help.contains(choice), "{choice} missing: {help}");
    }
    let help = env.ok(&["ct", "new", "--help"]);
    assert!(
        help.contains("needs one of --from-dir and --from-tar"),
        "{help}"
    );
    let out = env.run(&["ct", "new", "--user", "u1", "c1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--from-dir") && err.contains("--from-tar"),
        "{err}"
    );
    // A bad choice is a usage error that lists the good ones.
    let out = env.run(&["ct", "export", "--compression", "lz4", "c1", "f"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("[possible values: auto, off, gzip, zstd]"),
        "{err}"
    );
}

/// The names `.TP` items of the ENVIRONMENT section of a man page give.
fn environment_of(page: &str) -> Vec<String> {
    let section = page
        .split(".SH ENVIRONMENT")
        .nth(1)
        .expect("an ENVIRONMENT section");
    let section = section.split("\n.SH").next().unwrap();
    section
        .lines()
        .filter_map(|l| l.strip_prefix("\\fB")?.strip_suffix("\\fR"))
        .map(String::from)
        .collect()
}

#[test]
fn install_puts_binary_man_pages_and_completions_in_place() {
    let dest = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(repo.join("scripts/install.sh"))
        .env("DESTDIR", dest.path())
        .env("PREFIX", "/usr")
        .env("OSCTL_BIN", env!("CARGO_BIN_EXE_osctl"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let usr = dest.path().join("usr");
    assert!(usr.join("bin/osctl").is_file());
    let man = usr.join("share/man/man8");
    for page in [
        "osctl.8",
        "osctl-ct.8",
        "osctl-ct-export.8",
        "osctl-user.8",
        "osctl-pool-ls.8",
    ] {
        assert!(man.join(page).is_file(), "{page} missing");
    }
    // Hidden commands get no page.
    assert!(!man.join("osctl-veth-up-hook.8").exists());
    let read = |rel: &str| std::fs::read_to_string(usr.join(rel)).unwrap();
    assert!(read("share/bash-completion/completions/osctl")
        .contains("osctl__subcmd__ct__subcmd__export"));
    assert!(read("share/zsh/site-functions/_osctl").starts_with("#compdef osctl"));
    assert!(read("share/fish/vendor_completions.d/osctl.fish").contains("complete -c osctl"));
    // Every variable osctl reads (the unit test in gen.rs holds the code to
    // this list) is in osctl(8) and in the README.
    let page = read("share/man/man8/osctl.8");
    let documented = environment_of(&page);
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    for name in ["OSCTL_ROOT", "OSCTL_LOCK_TIMEOUT", "OSCTL_SUBID_DIR"] {
        assert!(
            documented
                .iter()
                .any(|d| d.replace("\\-", "-").replace("\\_", "_") == name),
            "{name}: {documented:?}"
        );
    }
    for name in &documented {
        let name = name.replace("\\-", "-");
        assert!(
            readme.contains(&format!("`{name}`")),
            "{name} not in the README"
        );
    }
    assert!(readme.contains("scripts/install.sh"));
}

/// The one line an export printed: `exported container 'ID' to PATH: SIZE in TIME[, downtime D]`.
fn export_line(out: &str, id: &str, file: &Path) -> String {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    let prefix = format!("exported container '{id}' to {}: ", file.display());
    assert!(lines[0].starts_with(&prefix), "{out}");
    assert!(
        lines[0].contains(" MiB in ") || lines[0].contains(" KiB in "),
        "{out}"
    );
    lines[0].to_string()
}

/// `osctl [-q] ct export c1 -` into a pipe (`Stdio::piped`) or a file.
fn export_to_stdout(env: &Env, quiet: bool, out: std::process::Stdio) -> std::process::Output {
    let mut cmd = env.cmd();
    if quiet {
        cmd.arg("-q");
    }
    let out = cmd
        .args(["ct", "export", "c1", "-"])
        .stdout(out)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    out
}

/// `osctl [-q] ct import --as-id ID -` fed `archive`.
fn import_from_stdin(env: &Env, quiet: bool, id: &str, archive: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut cmd = env.cmd();
    if quiet {
        cmd.arg("-q");
    }
    let mut child = cmd
        .args(["ct", "import", "--as-id", id, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(archive).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    out
}

#[test]
fn export_and_import_through_stdio_end_with_one_line_beside_the_archive() {
    use std::process::Stdio;
    require!(is_root(), "needs root");
    let env = Env::with_private_subids();
    let rootfs = plain_rootfs(&env, "rootfs", 1);
    env.ok(&["user", "new", "u1"]);
    let from = rootfs.to_str().unwrap();
    env.ok(&["ct", "new", "--user", "u1", "--from-dir", from, "c1"]);
    let shown = Path::new("standard output");
    // A pipe: the archive alone on stdout, the closing line on stderr.
    let out = export_to_stdout(&env, false, Stdio::piped());
    let line = export_line(&String::from_utf8_lossy(&out.stderr), "c1", shown);
    assert!(out.stdout.starts_with(b"metadata.yml"), "{line}");
    let archive = out.stdout;
    // A file: the same, its size counted from where it was written.
    let file = env.path("c1.tar");
    let out = export_to_stdout(&env, false, std::fs::File::create(&file).unwrap().into());
    let line = export_line(&String::from_utf8_lossy(&out.stderr), "c1", shown);
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(line.contains(" MiB in ") && size > 1 << 20, "{line}");
    let out = export_to_stdout(&env, true, Stdio::piped());
    assert!(out.stderr.is_empty() && !out.stdout.is_empty(), "{out:?}");
    // The import's line on stdout, as from a file; -q: nothing at all.
    let out = import_from_stdin(&env, false, "c2", &archive);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with("imported container 'c2' into pool 'default'")
            && said.lines().count() == 1,
        "{said}"
    );
    let out = import_from_stdin(&env, true, "c3", &archive);
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
}

#[test]
fn export_and_import_end_with_one_line_that_q_silences() {
    require!(is_root(), "needs root");
    let env = Env::with_private_subids();
    let rootfs = plain_rootfs(&env, "rootfs", 1);
    env.ct_from("c1", &rootfs);
    let file = env.path("c1.tar");
    let line = export_line(
        &env.ok(&["ct", "export", "c1", file.to_str().unwrap()]),
        "c1",
        &file,
    );
    // A stopped container is never down for the export.
    assert!(!line.contains("downtime"), "{line}");
    let out = env.run(&[
        "-q",
        "ct",
        "export",
        "--force",
        "c1",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");

    // An archive without a user: one named after the container, with a
    // fresh block of ids; a clone whose hostname was its id takes the new one.
    let archive = env.path("nouser.tar");
    let parts = hostile::valid().with(|p| {
        p.metadata = p.metadata.replace("user: hostile\n", "");
        p.user = None;
    });
    std::fs::write(&archive, parts.build()).unwrap();
    let archive = archive.to_str().unwrap();
    let out = env.ok(&["ct", "import", "--as-id", "clone1", archive]);
    let ids = &env.json(&["user", "show", "clone1"])["uid_map"][0];
    let expected = format!(
        "imported container 'clone1' into pool 'default' (user 'clone1', group '/default'); \
         created user 'clone1' with a fresh id block {}; hostname 'victim' is now 'clone1'\n",
        ids.as_str().unwrap()
    );
    assert_eq!(out, expected);
    assert_eq!(env.json(&["ct", "show", "clone1"])["hostname"], "clone1");
    let out = env.run(&["-q", "ct", "import", "--as-id", "clone2", archive]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    // An existing user and group: nothing created, nothing renamed.
    let out = env.ok(&[
        "ct",
        "import",
        "--as-id",
        "c2",
        "--as-user",
        "u1",
        file.to_str().unwrap(),
    ]);
    assert_eq!(
        out,
        "imported container 'c2' into pool 'default' (user 'u1', group '/default'); hostname 'c1' is now 'c2'\n"
    );
}

#[test]
fn a_consistent_export_of_a_running_container_says_its_downtime() {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    env.busybox_ct("c1");
    env.ok(&["ct", "start", "c1"]);
    let file = env.path("c1.tar");
    let out = env.ok(&["ct", "export", "--freeze", "c1", file.to_str().unwrap()]);
    let line = export_line(&out, "c1", &file);
    let downtime = line.split(", downtime ").nth(1).expect("a downtime");
    let secs: f64 = downtime.trim_end_matches(" s").parse().unwrap();
    assert!(secs < 30.0, "{line}");
    assert_eq!(env.state("c1"), "running");
    env.ok(&["ct", "stop", "c1"]);
}

/// Runs osctl under a pseudo-terminal (`script`), returns what it drew.
fn on_terminal(env: &Env, args: &[&str]) -> String {
    let (ok, text) = on_terminal_status(env, args);
    assert!(ok, "{text}");
    text
}

/// [`on_terminal`] for a command that may fail: whether it succeeded, and
/// what it drew. Runs in the test's directory (a file named `-` would show).
fn on_terminal_status(env: &Env, args: &[&str]) -> (bool, String) {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut line = quote(env!("CARGO_BIN_EXE_osctl"));
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    let mut script = Command::new("script");
    script.args(["-qec", &line, "/dev/null"]);
    // The test host's variables (OSCTL_ROOT, OSCTL_SUBID_DIR).
    for (name, value) in env.cmd().get_envs() {
        if let Some(value) = value {
            script.env(name, value);
        }
    }
    script.current_dir(env.root());
    let out = script.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), text)
}

#[test]
fn a_terminal_is_refused_as_the_archive_with_one_line() {
    require!(is_root() && have("script"), "needs root and script(1)");
    let env = Env::with_private_subids();
    let rootfs = plain_rootfs(&env, "rootfs", 0);
    env.ok(&["user", "new", "u1"]);
    let from = rootfs.to_str().unwrap();
    env.ok(&["ct", "new", "--user", "u1", "--from-dir", from, "c1"]);
    // Standard output and input both the pty: nothing binary is drawn, no
    // file named "-" is written, one line says why.
    for (args, says) in [
        (
            &["ct", "export", "c1", "-"][..],
            "standard output is a terminal",
        ),
        (
            &["ct", "import", "--as-id", "c2", "-"][..],
            "standard input is a terminal",
        ),
    ] {
        let (ok, drawn) = on_terminal_status(&env, args);
        assert!(!ok, "{args:?}: {drawn:?}");
        let lines: Vec<&str> = drawn.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {drawn:?}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(says),
            "{drawn:?}"
        );
        assert!(!env.root().join("-").exists(), "{args:?}");
    }
    assert_eq!(env.state("c1"), "stopped");
    let ids = env.json(&["ct", "ls"]);
    assert_eq!(ids.as_array().map(Vec::len), Some(1), "{ids}");
    // Nothing of the refused export is left to be recovered or in the way.
    let file = env.path("c1.tar");
    env.ok(&["ct", "export", "c1", file.to_str().unwrap()]);
}

#[test]
fn progress_on_a_terminal_shows_percent_eta_and_the_closing_line() {
    require!(is_root() && have("script"), "needs root and script(1)");
    let env = Env::with_private_subids();
    let rootfs = plain_rootfs(&env, "rootfs", 48);
    env.ct_from("c1", &rootfs);
    let file = env.path("c1.tar");
    let drawn = on_terminal(&env, &["ct", "export", "c1", file.to_str().unwrap()]);
    // The tree's size is known: a bar with a total, percent and ETA.
    let bar = drawn
        .split(['\r', '\n'])
        .rfind(|l| l.contains("base of rootfs") && l.contains('%'))
        .unwrap_or_else(|| panic!("no bar with a percent: {drawn:?}"));
    assert!(bar.contains("ETA") && bar.contains("MiB/"), "{bar:?}");
    assert!(bar.contains("100%"), "{bar:?}");
    // Every step that moves bytes has a total here; the others spin.
    let lines: Vec<&str> = drawn.split(['\r', '\n']).collect();
    assert!(
        lines.iter().all(|l| !l.contains("B/s") || l.contains('%')),
        "{drawn:?}"
    );
    let closing = format!("exported container 'c1' to {}: ", file.display());
    assert!(drawn.contains(&closing), "{drawn:?}");
    // The import's bar counts the entry's bytes against its size.
    let drawn = on_terminal(
        &env,
        &["ct", "import", "--as-id", "c2", file.to_str().unwrap()],
    );
    assert!(
        drawn
            .split(['\r', '\n'])
            .any(|l| l.contains("receiving rootfs/base.tar.gz") && l.contains('%')),
        "{drawn:?}"
    );
    assert!(
        drawn.contains("imported container 'c2' into pool 'default'"),
        "{drawn:?}"
    );
    // Without a terminal nothing but the closing line is written.
    let out = env.run(&["ct", "export", "--force", "c1", file.to_str().unwrap()]);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
