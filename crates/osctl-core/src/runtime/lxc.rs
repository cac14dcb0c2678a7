//! LXC 5 through its command-line tools, one config file per container under
//! the pool's LXC path.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{not_running, CtState, MountSpec, NetSpec, RunSpec, Runtime};
use crate::cmd::Cmd;
use crate::error::{Context, Error, Result};
use crate::failpoint;
use crate::fsutil;
use crate::model::grammar;

pub struct Lxc {
    path: PathBuf,
}

/// A hook that fails leaves its one-line reason in this file of the
/// container's LXC directory (next to `LXC_CONFIG_FILE`): LXC itself logs a
/// hook's output only at debug level.
pub const HOOK_ERROR: &str = "hook-error";

/// Parses `lxc-info -s -H` output.
pub fn parse_state(output: &str) -> Result<CtState> {
    // `lxc-info -s` prints "State:   RUNNING"; with -H only "RUNNING".
    let word = output
        .lines()
        .map(|l| l.trim())
        .find(|l| !l.is_empty())
        .map(|l| l.rsplit(char::is_whitespace).next().unwrap_or(l))
        .unwrap_or("");
    match word {
        "STOPPED" => Ok(CtState::Stopped),
        "STARTING" => Ok(CtState::Starting),
        "RUNNING" | "FROZEN" | "FREEZING" | "THAWED" => Ok(CtState::Running),
        "STOPPING" | "ABORTING" => Ok(CtState::Stopping),
        other => Err(Error::invalid(format!("unexpected LXC state '{other}'"))),
    }
}

/// The keys of [`RunSpec::resources`] lines.
const RESOURCE_KEYS: &[&str] = &[
    "lxc.cgroup.",
    "lxc.cgroup2.",
    "lxc.prlimit.",
    "lxc.mount.entry",
];

/// Renders the LXC config of a container. The values were checked when the
/// config was read (`model/grammar.rs`); a control character is refused here
/// once more, since a newline would start a line of its own (a hook, say).
/// Init is not in it: [`Lxc::start`] hands LXC the argument vector itself.
pub fn render_config(spec: &RunSpec) -> Result<String> {
    let refuse = |what: &str, value: &str, why: &str| refusal(spec, what, value, why);
    if spec.hostname.len() > grammar::MAX_UTS_NAME {
        let why = format!(
            "is longer than the {} bytes of a kernel host name",
            grammar::MAX_UTS_NAME
        );
        return Err(refuse("hostname", &spec.hostname, &why));
    }
    let mut c = String::new();
    let mut line = |k: &str, v: &str| {
        if grammar::has_control(v) {
            return Err(refuse(k, v, "contains a control character"));
        }
        let _ = writeln!(c, "{k} = {v}");
        Ok(())
    };
    line("lxc.uts.name", &spec.hostname)?;
    line("lxc.rootfs.path", &format!("dir:{}", spec.rootfs.display()))?;
    if let Some((uid_map, gid_map)) = &spec.idmap {
        // Ownership on disk is as the container sees it; an idmapped mount
        // shows it shifted into the user namespace.
        line("lxc.rootfs.options", "idmap=container")?;
        for r in &uid_map.0 {
            line("lxc.idmap", &format!("u {} {} {}", r.ns, r.host, r.count))?;
        }
        for r in &gid_map.0 {
            line("lxc.idmap", &format!("g {} {} {}", r.ns, r.host, r.count))?;
        }
    }
    if spec.net.is_empty() {
        line("lxc.net.0.type", "empty")?;
    }
    for (i, net) in spec.net.iter().enumerate() {
        for (key, value) in net_lines(net) {
            line(&format!("lxc.net.{i}.{key}"), &value)?;
        }
    }
    line("lxc.mount.auto", "proc:mixed sys:ro cgroup:mixed")?;
    line("lxc.autodev", "1")?;
    line("lxc.tty.max", "0")?;
    line("lxc.console.path", "none")?;
    line("lxc.log.file", &spec.log_file.display().to_string())?;
    line("lxc.log.level", "WARN")?;
    for m in &spec.mounts {
        line("lxc.mount.entry", &mount_entry(spec, m)?)?;
    }
    for (key, value) in &spec.resources {
        let bad_key = grammar::has_control(key) || key.contains([' ', '\t', '=']);
        if bad_key || !RESOURCE_KEYS.iter().any(|k| key.starts_with(k)) {
            return Err(refuse("key", key, "is not one of resources"));
        }
        line(key, value)?;
    }
    if let Some(raw) = &spec.raw_lxc {
        grammar::raw_lxc(raw)
            .map_err(|e| Error::refused(format!("container '{}': {e}", spec.id)))?;
        c.push_str("# raw configuration from container.yml\n");
        c.push_str(raw.trim_end());
        c.push('\n');
    }
    Ok(c)
}

fn refusal(spec: &RunSpec, what: &str, value: &str, why: &str) -> Error {
    Error::refused(format!(
        "container '{}': cannot write its LXC config: {what} {} {why}",
        spec.id,
        grammar::shown(value)
    ))
}

/// An `lxc.mount.entry` value: an fstab line, where an empty or blank field
/// would shift the others.
fn mount_entry(spec: &RunSpec, m: &MountSpec) -> Result<String> {
    let target = m.target.trim_start_matches('/');
    for field in [&m.source, target, &m.fstype, &m.options] {
        if field.is_empty() || field.contains([' ', '\t']) {
            let why = "is empty or has blanks";
            return Err(refusal(spec, "lxc.mount.entry field", field, why));
        }
    }
    Ok(format!(
        "{} {target} {} {},create=dir 0 0",
        m.source, m.fstype, m.options
    ))
}

/// The keys (after `lxc.net.N.`) and values of one veth interface.
fn net_lines(net: &NetSpec) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("type", "veth".to_string()),
        ("name", net.name.clone()),
        ("flags", "up".into()),
        ("hwaddr", net.hwaddr.clone()),
        ("veth.pair", net.host_veth.clone()),
    ];
    if let Some(link) = &net.link {
        out.push(("link", link.clone()));
    }
    for a in &net.addrs {
        out.push(match (a.is_v6(), a.broadcast()) {
            (true, _) => ("ipv6.address", a.to_string()),
            // LXC 5 gets the broadcast address wrong when left to itself.
            (false, Some(brd)) => ("ipv4.address", format!("{a} {brd}")),
            (false, None) => ("ipv4.address", a.to_string()),
        });
    }
    for gw in &net.gateways {
        let key = if gw.is_ipv6() {
            "ipv6.gateway"
        } else {
            "ipv4.gateway"
        };
        out.push((key, gw.to_string()));
    }
    for r in &net.host_routes {
        let key = if r.is_v6() {
            "veth.ipv6.route"
        } else {
            "veth.ipv4.route"
        };
        out.push((key, r.network().to_string()));
    }
    if let Some(hook) = &net.up_hook {
        out.push(("script.up", hook.clone()));
    }
    out
}

impl Lxc {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Lxc { path: path.into() }
    }

    fn config_dir(&self, id: &str) -> PathBuf {
        self.path.join(id)
    }

    fn tool(&self, tool: &str, id: &str) -> Cmd {
        Cmd::new(tool).arg("-n").arg(id).arg("-P").arg(&self.path)
    }

    fn wait_for(&self, id: &str, state: &str, timeout: Duration) -> Result<()> {
        self.tool("lxc-wait", id)
            .args(["-s", state, "-t"])
            .arg(timeout.as_secs().max(1).to_string())
            .run()
            .map(drop)
            .ctx(|| format!("container '{id}' did not reach {state}"))
    }
}

/// The first error LXC logged after `offset` (this attempt's, not an older
/// one's), without LXC's prefix of time, file and function: the cause, where
/// lxc-start itself says only "run the container in foreground mode".
pub fn first_error_since(log: &Path, offset: u64) -> Option<String> {
    let text = std::fs::read(log).ok()?;
    let since = text.get(usize::try_from(offset).ok()?..)?;
    String::from_utf8_lossy(since)
        .lines()
        .find(|l| l.contains(" ERROR "))
        // "<prefix> ERROR <area> - <file>:<function>:<line> - <cause>"
        .map(|l| l.splitn(3, " - ").nth(2).unwrap_or(l).trim().to_string())
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

impl Runtime for Lxc {
    fn state(&self, id: &str) -> Result<CtState> {
        if !self.config_dir(id).join("config").exists() {
            return Ok(CtState::Stopped);
        }
        let out = self
            .tool("lxc-info", id)
            .args(["-s", "-H"])
            .run()
            .ctx(|| format!("cannot get the state of container '{id}'"))?;
        parse_state(&out).map_err(|e| e.context(format!("container '{id}'")))
    }

    fn start(&self, spec: &RunSpec) -> Result<()> {
        let config = render_config(spec)?;
        let dir = self.config_dir(&spec.id);
        fsutil::create_dir_all(&dir)?;
        fsutil::atomic_write(&dir.join("config"), config.as_bytes())?;
        fsutil::remove_file_if_exists(&dir.join(HOOK_ERROR))?;
        // Init's arguments go to LXC as a vector: LXC 5 splits lxc.init.cmd
        // at every space (quotes are kept as characters), LXC 6 at blanks
        // outside quotes, so no quoting in the config is right for both.
        let logged_before = file_len(&spec.log_file);
        let started = self
            .tool("lxc-start", &spec.id)
            .args(["-d", "--"])
            .args(&spec.init)
            .run()
            .map(drop);
        if let Err(e) = started {
            // A hook of ours says why it failed in a file (LXC logs a
            // hook's output only at debug level); else LXC's first error.
            let hook_error = std::fs::read_to_string(dir.join(HOOK_ERROR)).ok();
            let _ = fsutil::remove_file_if_exists(&dir.join(HOOK_ERROR));
            let cause = match hook_error {
                Some(why) => Some(why.trim().to_string()),
                None => first_error_since(&spec.log_file, logged_before),
            };
            let failed = format!("cannot start container '{}'", spec.id);
            return Err(match cause {
                Some(cause) => Error::io(
                    failed,
                    std::io::Error::other(format!(
                        "{cause} (LXC's log: {})",
                        spec.log_file.display()
                    )),
                ),
                None => Error::exec(failed, e),
            });
        }
        self.wait_for(&spec.id, "RUNNING", Duration::from_secs(30))
    }

    fn stop(&self, id: &str, timeout: Duration) -> Result<()> {
        if !self.state(id)?.is_up() {
            return Ok(());
        }
        // lxc-stop sends SIGPWR to init and kills the container after the timeout.
        let res = self
            .tool("lxc-stop", id)
            .arg("-t")
            .arg(timeout.as_secs().to_string())
            .run();
        if let Err(e) = res {
            // It may have stopped on its own meanwhile.
            if self.state(id)? != CtState::Stopped {
                return Err(Error::exec(format!("cannot stop container '{id}'"), e));
            }
        }
        self.wait_for(id, "STOPPED", Duration::from_secs(30))
    }

    fn settle(&self, id: &str) -> Result<CtState> {
        if self.state(id)? == CtState::Stopped {
            return Ok(CtState::Stopped);
        }
        self.wait_for(id, "RUNNING|STOPPED", Duration::from_secs(30))?;
        self.state(id)
    }

    fn freeze(&self, id: &str) -> Result<()> {
        let failed = || format!("cannot freeze container '{id}'");
        match self.set_legacy_freezer(id, FROZEN) {
            Ok(true) => Ok(()),
            Ok(false) => self.tool("lxc-freeze", id).run().map(drop).ctx(failed),
            Err(e) => {
                // Never leave it half frozen: callers thaw only after a
                // freeze that worked.
                let _ = self.thaw(id);
                Err(e).ctx(failed)
            }
        }
    }

    fn thaw(&self, id: &str) -> Result<()> {
        if self.state(id)? == CtState::Stopped {
            return Ok(());
        }
        let failed = || format!("cannot thaw container '{id}'");
        match self.set_legacy_freezer(id, THAWED).ctx(failed)? {
            true => Ok(()),
            false => self.tool("lxc-unfreeze", id).run().map(drop).ctx(failed),
        }
    }

    fn exec(&self, id: &str, argv: &[String]) -> Result<i32> {
        if self.state(id)? != CtState::Running {
            return Err(not_running(id));
        }
        let status = self
            .tool("lxc-attach", id)
            .args([
                "--clear-env",
                "--set-var",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--",
            ])
            .args(argv)
            .run_inherited()
            .ctx(|| format!("cannot run a command in container '{id}'"))?;
        use std::os::unix::process::ExitStatusExt;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }

    fn remove(&self, id: &str) -> Result<()> {
        fsutil::remove_dir_all_if_exists(&self.config_dir(id))
    }

    fn init_pid(&self, id: &str) -> Result<Option<u32>> {
        if self.state(id)? != CtState::Running {
            return Ok(None);
        }
        let out = self
            .tool("lxc-info", id)
            .args(["-p", "-H"])
            .run()
            .ctx(|| format!("cannot get the init of container '{id}'"))?;
        Ok(out.trim().parse().ok())
    }

    fn cgroup_set(&self, id: &str, key: &str, value: &str) -> Result<()> {
        self.tool("lxc-cgroup", id)
            .args([key, value])
            .run()
            .map(drop)
            .ctx(|| format!("container '{id}': cannot set {key} to '{value}'"))
    }
}

impl Lxc {
    /// Under the cgroup v1 freezer, writes `state` (FROZEN or THAWED) to the
    /// container's `freezer.state` and polls it at short intervals until the
    /// kernel reports it; false where the file cannot be written (cgroup v2
    /// has none), leaving the work to LXC's own tools.
    ///
    /// lxc-freeze does the same but, if its first read still says FREEZING
    /// (a process waiting in a FUSE request, as on zfs-fuse, takes a
    /// moment), sleeps a whole second before it reads again: a 1 s pause for
    /// a freeze of a few milliseconds. Under cgroup v2 it waits for the
    /// kernel's event instead, and is used there. A container frozen here
    /// must be thawed here too: lxc-unfreeze, whose own record of the state
    /// never heard of this freeze, would leave it frozen.
    fn set_legacy_freezer(&self, id: &str, state: &str) -> Result<bool> {
        if self.cgroup_set(id, FREEZER_STATE, state).is_err() {
            return Ok(false);
        }
        let deadline = Instant::now() + FREEZER_TIMEOUT;
        let mut pause = Duration::from_millis(1);
        loop {
            let mut now = self.cgroup_get(id, FREEZER_STATE)?;
            // Tests: a freeze that never completes, as when a process waits
            // in a FUSE request whose server does not answer.
            if state == FROZEN && failpoint::check("freezer-settles").is_err() {
                now = "FREEZING".into();
            }
            if now.trim() == state {
                return Ok(true);
            }
            // A freeze gives way to SIGINT/SIGTERM (and is undone by the
            // caller); a thaw never does.
            if state == FROZEN {
                crate::interrupt::check()?;
            }
            if Instant::now() >= deadline {
                return Err(Error::busy(format!(
                    "its freezer still says {} after {} s",
                    now.trim(),
                    FREEZER_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Reads a cgroup file of a running container.
    fn cgroup_get(&self, id: &str, key: &str) -> Result<String> {
        self.tool("lxc-cgroup", id)
            .arg(key)
            .run()
            .ctx(|| format!("container '{id}': cannot read {key}"))
    }
}

/// The cgroup v1 freezer's state file, and the two states osctl asks for.
const FREEZER_STATE: &str = "freezer.state";
const FROZEN: &str = "FROZEN";
const THAWED: &str = "THAWED";
/// How long a freeze or thaw may take before it is given up.
const FREEZER_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idmap::IdMap;
    use crate::runtime::{MountSpec, NetSpec};

    #[test]
    fn the_first_error_of_this_attempt_is_the_cause() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("c1.log");
        let old = "lxc-start c1 20261203143000.000 ERROR    start - ../src/lxc/start.c:x:1 - Old trouble\n";
        let new = "lxc-start c1 20261203143041.666 WARN     conf - a.c:f:2 - Harmless\n\
                   lxc-start c1 20261203143041.666 ERROR    start - ../src/lxc/start.c:print_top_failing_dir:99 - Permission denied - Could not access /tmp/x. Please grant it x access\n\
                   lxc-start c1 20261203143041.666 ERROR    sync - ../src/lxc/sync.c:sync_wait:34 - An error occurred in another process\n";
        std::fs::write(&log, format!("{old}{new}")).unwrap();
        assert_eq!(
            first_error_since(&log, old.len() as u64).as_deref(),
            Some("Permission denied - Could not access /tmp/x. Please grant it x access")
        );
        assert_eq!(first_error_since(&log, 0).as_deref(), Some("Old trouble"));
        assert_eq!(
            first_error_since(&log, (old.len() + new.len()) as u64),
            None
        );
    }

    #[test]
    fn states() {
        assert_eq!(parse_state("RUNNING\n").unwrap(), CtState::Running);
        assert_eq!(
            parse_state("State:          STOPPED\n").unwrap(),
            CtState::Stopped
        );
        assert_eq!(parse_state("STOPPING").unwrap(), CtState::Stopping);
        assert!(parse_state("").is_err());
        assert!(parse_state("BOGUS").is_err());
    }

    #[test]
    fn config_for_unprivileged() {
        let spec = RunSpec {
            id: "c1".into(),
            rootfs: "/p/ct/c1/private".into(),
            hostname: "c1".into(),
            init: vec!["/sbin/init".into()],
            idmap: Some((IdMap::single(100000, 65536), IdMap::single(100000, 65536))),
            mounts: vec![],
            raw_lxc: None,
            log_file: "/p/log/c1.log".into(),
            net: vec![],
            resources: vec![],
        };
        let c = render_config(&spec).unwrap();
        assert!(c.contains("lxc.rootfs.path = dir:/p/ct/c1/private\n"));
        assert!(c.contains("lxc.rootfs.options = idmap=container\n"));
        assert!(c.contains("lxc.idmap = u 0 100000 65536\n"));
        assert!(c.contains("lxc.idmap = g 0 100000 65536\n"));
    }

    fn privileged() -> RunSpec {
        RunSpec {
            id: "c1".into(),
            rootfs: "/r".into(),
            hostname: "h".into(),
            init: vec!["/bin/sh".into(), "-c".into(), "sleep 1".into()],
            idmap: None,
            mounts: vec![MountSpec {
                source: "/srv".into(),
                target: "/mnt/srv".into(),
                fstype: "none".into(),
                options: "bind".into(),
            }],
            raw_lxc: Some("lxc.cap.drop = sys_admin".into()),
            log_file: "/l".into(),
            net: vec![],
            resources: vec![("lxc.cgroup.pids.max".into(), "50".into())],
        }
    }

    #[test]
    fn config_for_privileged_has_no_idmap() {
        let c = render_config(&privileged()).unwrap();
        assert!(!c.contains("idmap"));
        assert!(c.contains("lxc.cap.drop = sys_admin\n"));
        assert!(c.contains("lxc.mount.entry = /srv mnt/srv none bind,create=dir 0 0\n"));
        // Init is handed to lxc-start, not written.
        assert!(!c.contains("init") && !c.contains("sleep"));
    }

    fn net(name: &str, link: Option<&str>, addrs: &[&str]) -> NetSpec {
        let parse = |a: &&str| crate::model::grammar::ip_net("t", a, a.contains(':')).unwrap();
        NetSpec {
            name: name.into(),
            hwaddr: "02:6f:73:00:00:01".into(),
            host_veth: "os026f73000001".into(),
            link: link.map(String::from),
            addrs: addrs.iter().map(parse).collect(),
            gateways: vec![],
            host_routes: vec![],
            up_hook: None,
        }
    }

    #[test]
    fn network_interfaces() {
        let mut spec = privileged();
        assert!(render_config(&spec)
            .unwrap()
            .contains("lxc.net.0.type = empty\n"));
        let bridged = NetSpec {
            gateways: vec!["10.0.0.1".parse().unwrap()],
            ..net("eth0", Some("br0"), &["10.0.0.2/24", "fd00::2/64"])
        };
        let mut routed = net("eth1", None, &["203.0.113.5/32"]);
        routed.hwaddr = "02:6f:73:00:00:02".into();
        routed.host_veth = "os026f73000002".into();
        routed.host_routes =
            vec![crate::model::grammar::ip_net("t", "203.0.113.9/24", false).unwrap()];
        routed.gateways = vec!["255.255.255.254".parse().unwrap()];
        routed.up_hook = Some("/usr/bin/osctl veth-up-hook".into());
        spec.net = vec![bridged, routed];
        let c = render_config(&spec).unwrap();
        let expected = "lxc.net.0.type = veth
lxc.net.0.name = eth0
lxc.net.0.flags = up
lxc.net.0.hwaddr = 02:6f:73:00:00:01
lxc.net.0.veth.pair = os026f73000001
lxc.net.0.link = br0
lxc.net.0.ipv4.address = 10.0.0.2/24 10.0.0.255
lxc.net.0.ipv6.address = fd00::2/64
lxc.net.0.ipv4.gateway = 10.0.0.1
lxc.net.1.type = veth
lxc.net.1.name = eth1
lxc.net.1.flags = up
lxc.net.1.hwaddr = 02:6f:73:00:00:02
lxc.net.1.veth.pair = os026f73000002
lxc.net.1.ipv4.address = 203.0.113.5/32
lxc.net.1.ipv4.gateway = 255.255.255.254
lxc.net.1.veth.ipv4.route = 203.0.113.0/24
lxc.net.1.script.up = /usr/bin/osctl veth-up-hook
";
        assert!(c.contains(expected), "{c}");
        assert!(!c.contains("type = empty"));
        // Names reach the config as they are: a newline would start a key.
        spec.net[0].name = "eth0\nlxc.hook.pre-start = /bin/sh".into();
        let e = render_config(&spec).unwrap_err().to_string();
        assert!(
            e.starts_with("container 'c1': cannot write its LXC config: lxc.net.0.name"),
            "{e}"
        );
    }

    #[test]
    fn control_characters_are_refused() {
        let hook = "\nlxc.hook.pre-start = /bin/sh -c id";
        let mut spoiled: Vec<(&str, RunSpec)> = Vec::new();
        let mut spoil = |what, f: &dyn Fn(&mut RunSpec)| {
            let mut spec = privileged();
            f(&mut spec);
            spoiled.push((what, spec));
        };
        spoil("hostname", &|s| s.hostname = format!("h{hook}"));
        spoil("hostname cr", &|s| s.hostname = "h\r".into());
        spoil("hostname del", &|s| s.hostname = "h\u{7f}".into());
        spoil("rootfs", &|s| s.rootfs = format!("/r{hook}").into());
        spoil("log", &|s| s.log_file = format!("/l{hook}").into());
        spoil("mount source", &|s| {
            s.mounts[0].source = format!("/srv{hook}")
        });
        spoil("mount target", &|s| s.mounts[0].target = "/m\n".into());
        spoil("mount options", &|s| {
            s.mounts[0].options = format!("bind{hook}")
        });
        spoil("mount blank", &|s| s.mounts[0].options = "bind ro".into());
        spoil("mount root", &|s| s.mounts[0].target = "/".into());
        spoil("raw nul", &|s| s.raw_lxc = Some("lxc.cap.drop = \0".into()));
        spoil("long hostname", &|s| s.hostname = "a".repeat(65));
        spoil("resource value", &|s| {
            s.resources[0].1 = format!("50{hook}")
        });
        spoil("resource key", &|s| {
            s.resources[0].0 = "lxc.hook.pre-start".into()
        });
        for (what, spec) in &spoiled {
            let e = render_config(spec).expect_err(what).to_string();
            assert!(e.starts_with("container 'c1': "), "{what}: {e}");
            assert!(!e.contains('\n') && !e.contains('\r'), "{what}: {e:?}");
        }
        let mut spec = privileged();
        spec.hostname = "a".repeat(64);
        assert!(render_config(&spec).is_ok());
    }
}
