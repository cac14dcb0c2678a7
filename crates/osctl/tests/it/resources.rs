//! Resources travel with the container: cgroup limits of groups and
//! containers, process limits and devices, enforced on real containers under
//! LXC on whatever hierarchy this host has for each controller.

use std::path::PathBuf;
use std::process::Command;

use osctl_core::host::Host;
use osctl_core::resources::cgparams::{Controller, Version};
use osctl_core::resources::cgroupfs;
use osctl_core::resources::hierarchy::{self, Hierarchies};

use super::hostile::{refused, take_turn, valid};
use super::support::{can_run_containers, make_busybox_rootfs, wait_until, Env};
use crate::require;

/// A container's cgroup (LXC's payload) in a controller's hierarchy.
fn payload_dir(env: &Env, id: &str, c: Controller) -> PathBuf {
    let out = Command::new("lxc-info")
        .args(["-n", id, "-P"])
        .arg(env.root().join("lxc/default"))
        .args(["-p", "-H"])
        .output()
        .unwrap();
    let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let h = Hierarchies::detect().unwrap();
    let mount = h.mount_of(c).expect("controller on this host");
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let dir = hierarchy::process_dir(mount, &text).unwrap();
    let mut out = PathBuf::new();
    for part in dir.components() {
        out.push(part);
        if part
            .as_os_str()
            .to_string_lossy()
            .starts_with("lxc.payload.")
        {
            break;
        }
    }
    out
}

/// A group's cgroup in a controller's hierarchy.
fn group_dir(env: &Env, group: &str, c: Controller) -> PathBuf {
    let h = Hierarchies::detect().unwrap();
    let rel = cgroupfs::group_rel(&Host::at(env.root()), "default", group);
    Hierarchies::dir(h.mount_of(c).unwrap(), &rel)
}

fn read(dir: &std::path::Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

/// How often the OOM killer struck in a memory cgroup (v1 or v2).
fn oom_kills(dir: &std::path::Path) -> u64 {
    let file = if dir.join("memory.events").exists() {
        "memory.events"
    } else {
        "memory.oom_control"
    };
    read(dir, file)
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .map_or(0, |n| n.parse().unwrap())
}

/// Memory limit of a cgroup, in bytes (None: unlimited).
fn memory_limit(dir: &std::path::Path) -> Option<u64> {
    let file = match Hierarchies::detect()
        .unwrap()
        .version_of(Controller::Memory)
    {
        Some(Version::V1) => "memory.limit_in_bytes",
        _ => "memory.max",
    };
    read(dir, file).parse().ok().filter(|n| *n < (1 << 60))
}

/// Runs `script` in the container: exit code, stdout and stderr.
fn sh(env: &Env, id: &str, script: &str) -> (i32, String, String) {
    let out = env.run(&["ct", "exec", id, "--", "/bin/sh", "-c", script]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Grows a shell variable until the memory limit stops it: killed (137).
const HOG: &str = "s=xxxxxxxxxxxxxxxx; while true; do s=\"$s$s\"; done";

/// Forks sleepers until the pids limit stops it; they end by themselves.
const FORKS: &str = "for i in $(seq 80); do sleep 3 & done; echo all-started";

/// A memory limit a process inside exceeds, a fork loop and `nofile`. The
/// kernel counts the events in the container's own cgroups (where the
/// process was), whichever cgroup above set the limit.
fn assert_enforced(env: &Env, id: &str) {
    let (code, out, _) = sh(env, id, "ulimit -n; ulimit -Hn");
    assert_eq!((code, out.as_str()), (0, "1024\n4096\n"));

    let (code, out, err) = sh(env, id, FORKS);
    assert_ne!(code, 0, "the fork loop ran through: {out}");
    assert!(err.contains("can't fork"), "{err}");
    let pids_dir = payload_dir(env, id, Controller::Pids);
    let events = read(&pids_dir, "pids.events");
    assert!(
        events.starts_with("max ") && events != "max 0",
        "{pids_dir:?}: {events}"
    );
    // The sleepers end, and the container takes commands again.
    assert!(wait_until(20, || sh(env, id, "true").0 == 0));

    let memory_dir = &payload_dir(env, id, Controller::Memory);
    let kills = oom_kills(memory_dir);
    let (code, _, _) = sh(env, id, HOG);
    assert_eq!(code, 137, "the memory hog was not killed");
    assert!(
        oom_kills(memory_dir) > kills,
        "no OOM kill in {memory_dir:?}"
    );
    // Only the hog died: the container runs on, and so do we.
    assert_eq!(env.state(id), "running");
    assert_eq!(sh(env, id, "echo alive").1, "alive\n");
}

#[test]
fn limits_set_by_commands_are_enforced_and_changed_live() {
    require!(can_run_containers(), "needs root, LXC and busybox");
    let env = Env::new();
    env.busybox_ct("lim");
    env.ok(&["ct", "set", "memory-limit", "lim", "64M"]);
    env.ok(&["ct", "cgparams", "set", "lim", "pids.max", "40"]);
    env.ok(&["ct", "prlimits", "set", "lim", "nofile", "1024", "4096"]);
    let shown = env.json(&["ct", "show", "lim"]);
    assert_eq!(shown["resources"]["limits"]["memory"]["value"], 64 << 20);
    assert_eq!(
        shown["resources"]["limits"]["memory"]["set_by"],
        "container"
    );
    assert_eq!(shown["resources"]["limits"]["pids"]["value"], 40);
    env.ok(&["ct", "start", "lim"]);
    let mem = payload_dir(&env, "lim", Controller::Memory);
    assert_eq!(memory_limit(&mem), Some(64 << 20));
    assert_enforced(&env, "lim");

    // Changed on the running container at once, and said so.
    let out = env.run(&["ct", "set", "memory-limit", "lim", "96M"]);
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("applied to the running container"), "{said}");
    assert_eq!(memory_limit(&mem), Some(96 << 20));
    env.ok(&["ct", "unset", "memory-limit", "lim"]);
    assert_eq!(memory_limit(&mem), None);
    // Process limits wait for the next start, and say so.
    let out = env.run(&["ct", "prlimits", "set", "lim", "nofile", "2048"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("until it is restarted"), "{said}");
    env.ok(&["ct", "restart", "lim", "--timeout", "5"]);
    assert_eq!(sh(&env, "lim", "ulimit -n; ulimit -Hn").1, "2048\n2048\n");
    env.ok(&["ct", "stop", "lim", "--timeout", "5"]);
    // Stopped, its cgroups are gone; its group's stays for the others.
    assert!(!mem.exists(), "{mem:?} left behind");
    assert!(group_dir(&env, "/default", Controller::Memory).is_dir());
}

#[test]
fn a_group_limits_the_containers_below_it() {
    require!(can_run_containers(), "needs root, LXC and busybox");
    let env = Env::new();
    env.ok(&["group", "new", "/lim"]);
    env.ok(&["group", "new", "/lim/sub"]);
    env.ok(&["group", "set", "memory-limit", "/lim", "64M"]);
    env.ok(&["group", "cgparams", "set", "/lim/sub", "pids.max", "40"]);
    let rootfs = env.busybox_rootfs("rootfs-g");
    env.ok(&["user", "new", "u1"]);
    let from = rootfs.to_str().unwrap();
    env.ok(&[
        "ct",
        "new",
        "--user",
        "u1",
        "--group",
        "/lim/sub",
        "--from-dir",
        from,
        "g",
    ]);
    env.ok(&["ct", "prlimits", "set", "g", "nofile", "1024", "4096"]);
    env.ok(&["ct", "start", "g"]);
    let shown = env.json(&["ct", "show", "g"]);
    assert_eq!(
        shown["resources"]["limits"]["memory"]["set_by"],
        "group /lim"
    );
    assert_eq!(
        shown["resources"]["limits"]["pids"]["set_by"],
        "group /lim/sub"
    );
    let group = group_dir(&env, "/lim", Controller::Memory);
    assert_eq!(memory_limit(&group), Some(64 << 20));
    // The container's own cgroup has no limit: the group's holds it.
    assert_eq!(
        memory_limit(&payload_dir(&env, "g", Controller::Memory)),
        None
    );
    assert_eq!(
        read(&group_dir(&env, "/lim/sub", Controller::Pids), "pids.max"),
        "40"
    );
    assert_eq!(
        read(&payload_dir(&env, "g", Controller::Pids), "pids.max"),
        "max"
    );
    assert_enforced(&env, "g");
    // A group's change reaches its running containers.
    env.ok(&["group", "cgparams", "set", "/lim/sub", "pids.max", "30"]);
    assert_eq!(
        read(&group_dir(&env, "/lim/sub", Controller::Pids), "pids.max"),
        "30"
    );
    env.ok(&["ct", "del", "--force", "g"]);
    env.ok(&["group", "del", "/lim/sub"]);
    assert!(!group_dir(&env, "/lim/sub", Controller::Pids).exists());
}

#[test]
fn a_device_node_is_usable_only_when_granted() {
    require!(can_run_containers(), "needs root, LXC and busybox");
    require!(
        std::path::Path::new("/dev/loop-control").exists(),
        "needs /dev/loop-control"
    );
    let env = Env::new();
    let rootfs = env.busybox_rootfs("rootfs-dev");
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/mknod")).unwrap();
    env.ok(&["user", "new", "u1"]);
    let from = rootfs.to_str().unwrap();
    // Privileged: root inside may create nodes, so only the cgroup decides.
    env.ok(&[
        "ct",
        "new",
        "--privileged",
        "--user",
        "u1",
        "--from-dir",
        from,
        "dev",
    ]);
    env.ok(&["ct", "start", "dev"]);
    let open = "exec 3</dev/lc && echo opened";
    let (code, _, err) = sh(&env, "dev", &format!("mknod /dev/lc c 10 237 && {open}"));
    assert_ne!(code, 0);
    assert!(err.contains("not permitted"), "{err}");
    assert_eq!(sh(&env, "dev", "exec 3</dev/null && echo ok").1, "ok\n");

    env.ok(&["ct", "devices", "add", "dev", "char", "10", "237", "r"]);
    let (code, out, _) = sh(&env, "dev", open);
    assert_eq!((code, out.as_str()), (0, "opened\n"));
    let listed = env.json(&["ct", "devices", "ls", "dev"]);
    let ours = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["major"] == "10" && d["minor"] == "237")
        .expect("listed");
    assert_eq!(ours["source"], "container");

    env.ok(&["ct", "devices", "del", "dev", "char", "10", "237"]);
    assert_ne!(sh(&env, "dev", open).0, 0);
    // Granted again, it is there at the next start too.
    env.ok(&["ct", "devices", "add", "dev", "char", "10", "237", "r"]);
    env.ok(&["ct", "restart", "dev", "--timeout", "5"]);
    let script = format!("mknod /dev/lc c 10 237 && {open}");
    assert_eq!(sh(&env, "dev", &script).1, "opened\n");
}

/// The original's standard devices, as its configs list them (without
/// /dev/kmsg, which is no default here).
const STANDARD_DEVICES: &str = "devices:
- {type: char, major: '1', minor: '3', mode: rwm, name: /dev/null, inherit: true, inherited: true}
- {type: char, major: '1', minor: '5', mode: rwm, name: /dev/zero, inherit: true, inherited: true}
- {type: char, major: '136', minor: all, mode: rwm, name: null, inherit: true, inherited: true}
- {type: block, major: all, minor: all, mode: m, name: null, inherit: true, inherited: true}
- {type: char, major: all, minor: all, mode: m, name: null, inherit: true, inherited: true}
";

fn param(version: u8, name: &str, value: u64) -> String {
    let subsystem = name.split('.').next().unwrap();
    format!("- {{version: {version}, subsystem: {subsystem}, name: {name}, value: [{value}], persistent: true}}\n")
}

/// An archive as the original writes it: its group limits memory to 64 MiB
/// (both versions), the container its processes to 40 and `nofile`.
fn original_archive(env: &Env) -> Vec<u8> {
    let rootfs = env.path("orig-rootfs");
    make_busybox_rootfs(&rootfs, "::respawn:/bin/sleep 1000000\n");
    let tgz = env.path("orig.tar.gz");
    let st = Command::new("tar")
        .args(["-cz", "--numeric-owner", "-f"])
        .arg(&tgz)
        .arg("-C")
        .arg(&rootfs)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let group = format!(
        "---\ncgparams:\n{}{}{}{STANDARD_DEVICES}attrs: {{}}\n",
        param(1, "memory.limit_in_bytes", 64 << 20),
        param(1, "memory.memsw.limit_in_bytes", 64 << 20),
        param(2, "memory.max", 64 << 20),
    );
    let container = format!(
        "---\nuser: hostile\ngroup: /orig\ndataset: tank/ct/victim\nhostname: victim\n\
         cgparams:\n{}prlimits:\n  nofile: {{soft: 1024, hard: 4096}}\n{STANDARD_DEVICES}\
         raw: {{}}\nmounts: []\nattrs: {{}}\n",
        param(1, "pids.max", 40)
    );
    valid()
        .with(|p| {
            p.metadata = p.metadata.replace("group: /default", "group: /orig");
            p.group = Some(group);
            p.container = Some(container);
            p.rootfs_bytes = Some(std::fs::read(&tgz).unwrap());
        })
        .build()
}

#[test]
fn limits_of_an_archive_of_the_original_come_along_and_hold() {
    require!(can_run_containers(), "needs root, LXC and busybox");
    let _turn = take_turn();
    let env = Env::new();
    let file = env.path("orig.tar");
    std::fs::write(&file, original_archive(&env)).unwrap();
    let path = file.to_str().unwrap();
    // Nothing in it grants: no --trusted needed.
    env.ok(&["ct", "import", path]);
    let group = env.json(&["group", "show", "/orig"]);
    assert_eq!(group["cgparams"].as_array().unwrap().len(), 3);
    env.ok(&["ct", "start", "victim"]);
    let mem = group_dir(&env, "/orig", Controller::Memory);
    assert_eq!(memory_limit(&mem), Some(64 << 20));
    assert_eq!(
        memory_limit(&payload_dir(&env, "victim", Controller::Memory)),
        None
    );
    assert_enforced(&env, "victim");

    // Into a group of this host without limits: the archive's group limit
    // comes along as the container's own (the tighter wins).
    let out = env.run(&[
        "ct",
        "import",
        "--as-id",
        "joined",
        "--as-group",
        "/default",
        path,
    ]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("memory 64 MiB) are now the container's own"),
        "{said}"
    );
    let shown = env.json(&["ct", "show", "joined"]);
    assert_eq!(shown["resources"]["limits"]["memory"]["value"], 64 << 20);
    assert_eq!(
        shown["resources"]["limits"]["memory"]["set_by"],
        "container"
    );
    // A group here that is tighter stays in force, nothing is added.
    env.ok(&["group", "new", "/tight"]);
    env.ok(&["group", "set", "memory-limit", "/tight", "32M"]);
    env.ok(&[
        "ct",
        "import",
        "--as-id",
        "tight",
        "--as-group",
        "/tight",
        path,
    ]);
    let shown = env.json(&["ct", "show", "tight"]);
    assert_eq!(shown["resources"]["limits"]["memory"]["value"], 32 << 20);
    assert_eq!(
        shown["resources"]["limits"]["memory"]["set_by"],
        "group /tight"
    );
    let own = env.json(&["ct", "cgparams", "ls", "tight"]);
    assert_eq!(own.as_array().unwrap().len(), 1, "{own}");
}

/// Commands with hostile values, and what their usage error must mention.
fn cli_cases(hook: &str) -> Vec<(Vec<&str>, &'static str)> {
    vec![
        (
            vec!["ct", "cgparams", "set", "h", "memory.limit_in_bytes", hook],
            "size",
        ),
        (
            vec!["ct", "cgparams", "set", "h", "pids.max", hook],
            "pids.max",
        ),
        (
            vec!["ct", "cgparams", "set", "h", "foo.bar", "1"],
            "unknown",
        ),
        (
            vec![
                "ct",
                "cgparams",
                "set",
                "h",
                "memory.kmem.limit_in_bytes",
                "1G",
            ],
            "not supported",
        ),
        (
            vec![
                "ct",
                "cgparams",
                "set",
                "h",
                "pids.max",
                "99999999999999999999999",
            ],
            "pids.max",
        ),
        (
            vec!["ct", "cgparams", "set", "h", "cpu.max", "50000 100000\n"],
            "cpu.max",
        ),
        (
            vec!["ct", "set", "memory-limit", "h", "99999999999T"],
            "size",
        ),
        (vec!["ct", "set", "memory-limit", "h", "1K"], "outside"),
        (vec!["ct", "set", "cpu-limit", "h", "0"], "percentage"),
        (
            vec!["ct", "prlimits", "set", "h", "nofile", "5", "4"],
            "above hard",
        ),
        (vec!["ct", "prlimits", "set", "h", "bogus", "5"], "unknown"),
        (vec!["ct", "prlimits", "set", "h", "nofile", hook], "nofile"),
        (
            vec!["ct", "devices", "add", "h", "char", "1", "3", "rwx"],
            "mode",
        ),
        (
            vec![
                "ct",
                "devices",
                "add",
                "h",
                "char",
                "1",
                "3",
                "r",
                "/dev/../etc/shadow",
            ],
            "below /dev",
        ),
        (
            vec!["ct", "devices", "add", "h", "char", "4096", "3", "r"],
            "major",
        ),
    ]
}

#[test]
fn hostile_resource_values_are_refused_in_one_line() {
    require!(can_run_containers(), "needs root, LXC and busybox");
    let env = Env::new();
    env.busybox_ct("h");
    let hook = "1\nlxc.hook.pre-start = /bin/sh -c 'touch /tmp/osctl-escaped'";
    for (args, expect) in cli_cases(hook) {
        let err = env.fails(&args, 2);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    let err = env.fails(&["ct", "prlimits", "set", "h", "nofile", "99999999999"], 1);
    assert!(err.contains("fs.nr_open"), "{err}");
    // A weight the kernel does not offer here (no BFQ, no io.cost) is
    // refused when set, not at the next start.
    let out = env.run(&["ct", "cgparams", "set", "h", "blkio.weight", "500"]);
    let offered = group_dir(&env, "/default", Controller::Io).join(
        match Hierarchies::detect().unwrap().version_of(Controller::Io) {
            Some(Version::V1) => "blkio.weight",
            _ => "io.weight",
        },
    );
    if offered.exists() {
        assert!(out.status.success());
        env.ok(&["ct", "cgparams", "unset", "h", "blkio.weight"]);
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("does not offer it") && err.lines().count() == 1,
            "{err}"
        );
    }
    // Nothing of it was kept.
    assert_eq!(
        env.json(&["ct", "cgparams", "ls", "h"]),
        serde_json::json!([])
    );
    assert_eq!(
        env.json(&["ct", "prlimits", "ls", "h"]),
        serde_json::json!([])
    );
}

#[test]
fn a_hostile_value_in_a_pool_config_stops_the_start() {
    require!(can_run_containers(), "needs root, LXC and busybox");
    let env = Env::new();
    env.busybox_ct("h");
    let hook = "1\nlxc.hook.pre-start = /bin/sh -c 'touch /tmp/osctl-escaped'";
    // Written into the pool's config by hand, a start refuses it: no hook runs.
    let conf = env.root().join("pools/default/conf/ct/h.yml");
    let text = std::fs::read_to_string(&conf).unwrap();
    let spoiled = text.replace(
        "cgparams: []",
        &format!(
            "cgparams:\n- {{version: 1, name: pids.max, value: [{:?}]}}",
            hook
        ),
    );
    assert_ne!(text, spoiled);
    std::fs::write(&conf, spoiled).unwrap();
    let err = env.fails(&["ct", "start", "h"], 1);
    assert!(err.contains("cgparams[0]"), "{err}");
    assert!(!std::path::Path::new("/tmp/osctl-escaped").exists());
    assert_eq!(env.state("h"), "stopped");
    // And the parameter can be removed again.
    env.ok(&["ct", "cgparams", "unset", "h", "pids.max"]);
    env.ok(&["ct", "start", "h"]);
}

/// Archives spoiled in their resources: name, archive, import options, and
/// what the error must mention.
fn archive_cases() -> Vec<(
    &'static str,
    super::hostile::Parts,
    Vec<&'static str>,
    &'static str,
)> {
    let ct = |extra: &str| {
        valid().with(|p| {
            let c = p.container.take().unwrap();
            p.container = Some(c.replace("devices: []\n", "") + extra);
        })
    };
    let group =
        |extra: &str| valid().with(|p| p.group = Some(format!("---\n{extra}attrs: {{}}\n")));
    let newline = "cgparams:\n- {version: 1, name: memory.limit_in_bytes, value: [\"1\\nlxc.hook.mount = /bin/sh\"]}\n";
    vec![
        ("cg-newline", ct(newline), vec![], "cgparams[0]"),
        (
            "cg-unknown",
            ct("cgparams:\n- {version: 1, name: foo.bar, value: [1]}\n"),
            vec![],
            "unknown",
        ),
        (
            "cg-absurd",
            ct("cgparams:\n- {version: 1, name: pids.max, value: [99999999999999999999999]}\n"),
            vec![],
            "pids.max",
        ),
        (
            "prl-bad",
            ct("prlimits:\n  nofile: {soft: 1, hard: \"2\\nlxc.hook.mount = x\"}\n"),
            vec![],
            "nofile",
        ),
        (
            "prl-rt",
            ct("prlimits:\n  rtprio: {soft: 99, hard: 99}\n"),
            vec![],
            "priority",
        ),
        (
            "dev-name",
            ct("devices:\n- {type: char, major: 1, minor: 3, mode: r, name: /etc/shadow}\n"),
            vec![],
            "below /dev",
        ),
        (
            "dev-grant",
            ct("devices:\n- {type: block, major: 8, minor: 0, mode: rw}\n"),
            vec![],
            "allows device",
        ),
        (
            "dev-all",
            ct("devices:\n- {type: char, major: all, minor: all, mode: rwm}\n"),
            vec![],
            "allows device",
        ),
        (
            "grp-bad",
            group(newline)
                .with(|p| p.metadata = p.metadata.replace("group: /default", "group: /new")),
            vec![],
            "config/group.yml",
        ),
        (
            "grp-dev",
            group("devices:\n- {type: block, major: 8, minor: 0, mode: rw}\n")
                .with(|p| p.metadata = p.metadata.replace("group: /default", "group: /new")),
            vec![],
            "allows device",
        ),
        (
            "grp-parent",
            valid()
                .with(|p| p.metadata = p.metadata.replace("group: /default", "group: /gone/sub")),
            vec![],
            "--as-group",
        ),
    ]
}

#[test]
fn hostile_archives_with_resources_are_refused_and_leave_nothing() {
    require!(super::support::is_root(), "needs root (owners, subuid)");
    let _turn = take_turn();
    let env = Env::new();
    env.ok(&["pool", "ls"]);
    let cases = archive_cases();
    let mut problems = Vec::new();
    for (name, parts, args, expect) in &cases {
        problems.extend(refused(&env, name, &parts.build(), args, expect));
    }
    assert!(problems.is_empty(), "{problems:#?}");
    // With --trusted the missing parent is created too; an import killed
    // after creating them leaves neither behind.
    let file = env.path("parent.tar");
    std::fs::write(&file, cases[10].1.build()).unwrap();
    let args = ["ct", "import", "--trusted", file.to_str().unwrap()];
    let out = env
        .cmd()
        .env("OSCTL_FAILPOINT", "import-after-accounts")
        .args(args)
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(9), "died at the failpoint");
    let groups = || -> Vec<String> {
        let list = env.json(&["group", "ls"]);
        let names = list.as_array().unwrap().iter();
        names
            .map(|g| g["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(groups(), ["/", "/default"], "recovered by the next command");
    env.ok(&args);
    assert_eq!(groups(), ["/", "/default", "/gone", "/gone/sub"]);
    env.ok(&["ct", "del", "victim"]);
}
