//! The machine side of the benchmark: the work directory, the zfs-fuse daemon,
//! a file-backed zpool, a loop-mounted btrfs, page caches, and cleaning up all
//! of it, also after a Ctrl-C or a crashed earlier run.
//!
//! Cleanup finds what to undo from the machine itself (pools whose vdev lies in
//! the work directory, mounts under it, containers in its LXC path), so it works
//! the same at the end of a run, at the start of the next one and from
//! `osctl-bench cleanup`.

use std::ffi::OsStr;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use osctl_core::cmd::Cmd;

/// Every zpool the benchmark creates has this prefix (plus the pid: unique).
pub const ZPOOL_PREFIX: &str = "osctlbench";
/// Size of the sparse files behind the zpool and the btrfs file system.
const IMAGE_BYTES: u64 = 24 * 1024 * 1024 * 1024;

pub fn check_interrupted() -> Result<()> {
    osctl_core::interrupt::check().map_err(|e| anyhow!("{e}"))
}

/// Runs a command to completion and returns its stdout.
pub fn run<I, S>(program: &str, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Ok(Cmd::new(program).args(args).run()?)
}

/// The layout of the work directory.
#[derive(Debug, Clone)]
pub struct Workdir {
    pub root: PathBuf,
}

impl Workdir {
    pub fn new(root: PathBuf) -> Result<Workdir> {
        fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let root = root.canonicalize()?;
        Ok(Workdir { root })
    }
    /// Generated trees, kept between runs.
    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }
    /// `OSCTL_ROOT` of the run.
    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }
    /// Archives and streams written by the timed commands.
    pub fn out(&self) -> PathBuf {
        self.root.join("out")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn dir_pool(&self) -> PathBuf {
        self.root.join("dirpool")
    }
    /// Where raw tools unpack or receive on the dir backend.
    pub fn scratch(&self) -> PathBuf {
        self.root.join("scratch")
    }
    pub fn zfs(&self) -> PathBuf {
        self.root.join("zfs")
    }
    pub fn btrfs(&self) -> PathBuf {
        self.root.join("btrfs")
    }
    /// The second host of the send rows: its state root, pools, keys.
    pub fn target(&self) -> PathBuf {
        self.root.join("target")
    }
    fn own_daemon_pidfile(&self) -> PathBuf {
        self.root.join("zfs-fuse.pid")
    }
    /// `PID NICE`: the zfs-fuse daemon's autogroup priority before the run
    /// raised it (see [`share_priority_with_zfs_fuse`]).
    fn daemon_priority_file(&self) -> PathBuf {
        self.root.join("zfs-fuse.autogroup-nice")
    }

    /// Removes everything of an earlier run except the generated data.
    pub fn reset(&self) -> Result<()> {
        // The dir pool that `cleanup` kept goes now, and its user's lines
        // in /etc/subuid and /etc/subgid with it.
        release_subids(&self.state(), false);
        release_subids(&self.target().join("state"), false);
        for dir in [
            self.state(),
            self.out(),
            self.logs(),
            self.dir_pool(),
            self.scratch(),
            self.zfs(),
            self.btrfs(),
            self.target(),
        ] {
            if dir.exists() {
                fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            }
        }
        for dir in [self.state(), self.out(), self.logs(), self.scratch()] {
            fs::create_dir_all(&dir)?;
        }
        // LXC must be able to traverse the state directory.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(self.state(), fs::Permissions::from_mode(0o755))?;
        Ok(())
    }
}

fn zfs_answers() -> bool {
    Cmd::new("zfs").arg("list").run().is_ok()
}

/// The zfs-fuse daemon: a running one is reused (one per machine); otherwise
/// the project's script starts it, or we start our own and stop it at the end.
pub fn ensure_zfs_fuse(wd: &Workdir, repo: &Path) -> Result<()> {
    if !zfs_answers() {
        start_zfs_fuse(wd, repo)?;
    }
    share_priority_with_zfs_fuse(wd)
}

fn start_zfs_fuse(wd: &Workdir, repo: &Path) -> Result<()> {
    let script = repo.join("scripts/zfs-fuse-up.sh");
    if Cmd::new("pgrep").args(["-x", "zfs-fuse"]).run().is_ok() {
        // A daemon exists but does not answer yet (starting): a second one
        // would exit silently, so wait for this one.
        eprintln!("bench: waiting for the running zfs-fuse daemon to answer");
    } else if script.is_file() {
        Cmd::new(&script).run().context("scripts/zfs-fuse-up.sh")?;
    } else {
        if Cmd::new("zfs-fuse").arg("--help").run().is_err()
            && !Path::new("/usr/sbin/zfs-fuse").exists()
        {
            bail!("zfs-fuse is not installed (apt-get install zfs-fuse)");
        }
        // Its own process group: a Ctrl-C at the terminal must not stop the
        // daemon before the pools on it are destroyed. std::process directly:
        // the command wrapper runs programs to completion, this one stays.
        use std::os::unix::process::CommandExt;
        std::process::Command::new("zfs-fuse")
            .args(["--no-daemon", "--no-kstat-mount", "-p"])
            .arg(wd.own_daemon_pidfile())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting zfs-fuse")?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !zfs_answers() {
        if Instant::now() > deadline {
            bail!("zfs-fuse did not answer within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// zfs-fuse's daemon does in a process of its own the work that the kernel's
/// ZFS does in the process that calls `zfs send` or `zfs recv`. bench.sh
/// raises the bench's autogroup (`BENCH_NICE`) above the other sessions'
/// builds, so the daemon, in a session of its own, would rank below the
/// contenders' own threads (osctl hashing the stream) and lose the CPU to
/// them, where on kernel ZFS the send would rank with its caller. For the
/// run the daemon's autogroup gets the bench's priority; [`cleanup`] gives
/// it back (also after a killed run: the old value is kept in a file).
fn share_priority_with_zfs_fuse(wd: &Workdir) -> Result<()> {
    let ours = fs::read_to_string("/proc/self/autogroup")
        .ok()
        .and_then(|text| autogroup_nice(&text));
    let Some(ours) = ours else {
        return Ok(()); // no autogroups: nice alone ranks the processes
    };
    let pids = Cmd::new("pgrep").args(["-x", "zfs-fuse"]).run()?;
    for pid in pids.split_whitespace() {
        let file = format!("/proc/{pid}/autogroup");
        let Some(theirs) = fs::read_to_string(&file)
            .ok()
            .and_then(|t| autogroup_nice(&t))
        else {
            continue;
        };
        if theirs == ours {
            continue;
        }
        if !wd.daemon_priority_file().exists() {
            fs::write(wd.daemon_priority_file(), format!("{pid} {theirs}\n"))?;
        }
        fs::write(&file, ours.to_string()).with_context(|| format!("writing {file}"))?;
        eprintln!("bench: zfs-fuse (pid {pid}) runs at the bench's priority (autogroup nice {ours}, was {theirs})");
    }
    Ok(())
}

/// The nice value in a `/proc/PID/autogroup` line: `/autogroup-52367 nice -10`.
fn autogroup_nice(text: &str) -> Option<i32> {
    text.trim().rsplit_once(" nice ")?.1.parse().ok()
}

/// Gives the zfs-fuse daemon back the priority the run found it at.
fn restore_zfs_fuse_priority(wd: &Workdir) {
    let saved = wd.daemon_priority_file();
    let Ok(text) = fs::read_to_string(&saved) else {
        return;
    };
    if let Some((pid, nice)) = text.trim().split_once(' ') {
        // The same daemon only: a pid reused since then is not ours to touch.
        let still_zfs_fuse = fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.trim() == "zfs-fuse");
        if still_zfs_fuse {
            if let Err(e) = fs::write(format!("/proc/{pid}/autogroup"), nice) {
                eprintln!("bench: cleanup: could not restore zfs-fuse's priority: {e}");
            }
        }
    }
    let _ = fs::remove_file(saved);
}

/// A zpool on a sparse file in the work directory.
pub struct Zpool {
    pub name: String,
    pub mountpoint: PathBuf,
}

impl Zpool {
    pub fn create(wd: &Workdir) -> Result<Zpool> {
        let dir = wd.zfs();
        fs::create_dir_all(&dir)?;
        let image = dir.join("pool.img");
        sparse_file(&image)?;
        let name = format!("{ZPOOL_PREFIX}{}", std::process::id());
        let mountpoint = dir.join("mnt");
        run(
            "zpool",
            [
                OsStr::new("create"),
                OsStr::new("-m"),
                mountpoint.as_os_str(),
                OsStr::new(&name),
                image.as_os_str(),
            ],
        )
        .with_context(|| format!("creating zpool {name}"))?;
        // Reads of received datasets must not break later receives (atime).
        run("zfs", ["set", "atime=off", &name])?;
        Ok(Zpool { name, mountpoint })
    }
}

/// A btrfs file system on a loop-mounted sparse file in the work directory.
pub struct BtrfsMount {
    pub mountpoint: PathBuf,
}

impl BtrfsMount {
    pub fn create(wd: &Workdir) -> Result<BtrfsMount> {
        let dir = wd.btrfs();
        fs::create_dir_all(&dir)?;
        let image = dir.join("fs.img");
        sparse_file(&image)?;
        run(
            "mkfs.btrfs",
            [OsStr::new("-q"), OsStr::new("-f"), image.as_os_str()],
        )?;
        let mountpoint = dir.join("mnt");
        fs::create_dir_all(&mountpoint)?;
        run(
            "mount",
            [
                OsStr::new("-o"),
                OsStr::new("loop"),
                image.as_os_str(),
                mountpoint.as_os_str(),
            ],
        )?;
        Ok(BtrfsMount { mountpoint })
    }
}

fn sparse_file(path: &Path) -> Result<()> {
    let f = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.set_len(IMAGE_BYTES)?;
    Ok(())
}

/// Undoes whatever a run left in the work directory: running containers,
/// zpools, mounts, our own zfs-fuse daemon. Errors are reported, not fatal.
pub fn cleanup(wd: &Workdir) {
    for state in [wd.state(), wd.target().join("state")] {
        stop_containers(&state.join("lxc"));
    }
    release_subids(&wd.state(), true);
    release_subids(&wd.target().join("state"), false);
    for pool in our_zpools(wd) {
        let mut destroyed = false;
        for _ in 0..5 {
            if run("zpool", ["destroy", "-f", &pool]).is_ok() {
                destroyed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        if !destroyed {
            eprintln!("bench: cleanup: could not destroy zpool {pool}");
        }
    }
    for mnt in mounts_under(&wd.root) {
        if run("umount", [&mnt]).is_err()
            && run("umount", [OsStr::new("-l"), mnt.as_os_str()]).is_err()
        {
            eprintln!("bench: cleanup: could not unmount {}", mnt.display());
        }
    }
    restore_zfs_fuse_priority(wd);
    stop_own_zfs_fuse(wd);
    for image in [wd.zfs().join("pool.img"), wd.btrfs().join("fs.img")] {
        let _ = fs::remove_file(image);
    }
}

/// Removes the /etc/subuid and /etc/subgid lines of the users of the pools
/// of the state root `state`, which go away with their file systems below
/// (with `keep_dir`, the dir pool and its user are kept until the next
/// run's `Workdir::reset`).
/// Best effort: a pool that cannot be opened any more is skipped.
fn release_subids(state: &Path, keep_dir: bool) {
    use osctl_core::host::Host;
    use osctl_core::pool::Pool;
    use osctl_core::storage::Backend;
    let host = Host::at(state.to_path_buf());
    let subids = osctl_core::subid::SubIds::system();
    for entry in host.pools().unwrap_or_default() {
        if keep_dir && entry.backend == Backend::Dir {
            continue;
        }
        let Ok(pool) = Pool::open(&host, &entry) else {
            continue;
        };
        for name in pool.user_names().unwrap_or_default() {
            let maps = pool.user(&name).and_then(|user| user.maps());
            let released = maps.and_then(|(uids, gids)| {
                let _lock = subids.lock()?;
                subids.remove(&uids, &gids)
            });
            if let Err(e) = released {
                eprintln!("bench: cleanup: subordinate ids of user {name}: {e}");
            }
        }
    }
}

/// Stops (kills) every container of the run's LXC paths: `lxc/<pool>/<id>`.
fn stop_containers(lxc: &Path) {
    let Ok(pools) = fs::read_dir(lxc) else { return };
    for pool in pools.flatten() {
        let Ok(cts) = fs::read_dir(pool.path()) else {
            continue;
        };
        for ct in cts.flatten() {
            if !ct.path().join("config").exists() {
                continue;
            }
            let id = ct.file_name();
            let state = Cmd::new("lxc-info")
                .arg("-n")
                .arg(&id)
                .arg("-P")
                .arg(pool.path())
                .args(["-s", "-H"])
                .run();
            if matches!(state, Ok(s) if s.trim() != "STOPPED") {
                let _ = Cmd::new("lxc-stop")
                    .arg("-k")
                    .arg("-n")
                    .arg(&id)
                    .arg("-P")
                    .arg(pool.path())
                    .run();
            }
        }
    }
}

/// Pools named with our prefix whose vdev file lies in this work directory.
fn our_zpools(wd: &Workdir) -> Vec<String> {
    let Ok(list) = run("zpool", ["list", "-H", "-o", "name"]) else {
        return Vec::new();
    };
    let vdev = wd.zfs().join("pool.img");
    list.lines()
        .map(str::trim)
        .filter(|name| name.starts_with(ZPOOL_PREFIX))
        .filter(|name| {
            run("zpool", ["status", name])
                .map(|status| status.contains(&*vdev.to_string_lossy()))
                .unwrap_or(false)
        })
        .map(String::from)
        .collect()
}

/// Mount points at or under `root`, deepest first.
fn mounts_under(root: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found = mount_points_under(&text, root);
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

/// Pure part of [`mounts_under`]: the mount points (field 5, octal escapes
/// decoded) of mountinfo lines that lie at or under `root`.
pub fn mount_points_under(mountinfo: &str, root: &Path) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|p| p.starts_with(root))
        .collect()
}

fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn stop_own_zfs_fuse(wd: &Workdir) {
    let pidfile = wd.own_daemon_pidfile();
    let Some(pid) = fs::read_to_string(&pidfile)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    else {
        return;
    };
    // SAFETY: kill(2) with a pid we started and recorded ourselves.
    let alive = |pid| unsafe { libc::kill(pid, 0) } == 0;
    if alive(pid) {
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let _ = fs::remove_file(pidfile);
}

/// User and system CPU seconds this process used so far.
pub fn cpu_secs() -> (f64, f64) {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}

/// Drops the kernel's page, dentry and inode caches (root only).
pub fn drop_caches() -> Result<()> {
    sync_all();
    fs::write("/proc/sys/vm/drop_caches", "3").context("writing /proc/sys/vm/drop_caches")
}

fn sync_all() {
    // SAFETY: sync(2) has no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// Flushes the file system holding `path` to disk (syncfs(2)).
pub fn syncfs(path: &Path) -> Result<()> {
    let f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: a valid, open file descriptor.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("syncfs {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mounts_under_the_work_directory() {
        let mountinfo = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
90 22 7:0 / /var/tmp/osctl-bench/btrfs/mnt rw,relatime shared:50 - btrfs /dev/loop0 rw
91 22 0:50 / /var/tmp/osctl-bench/zfs/mnt\\040x rw - fuse zfs rw
92 22 0:51 / /var/tmp/osctl-benchmark rw - tmpfs tmpfs rw
";
        let found = mount_points_under(mountinfo, Path::new("/var/tmp/osctl-bench"));
        assert_eq!(
            found,
            vec![
                PathBuf::from("/var/tmp/osctl-bench/btrfs/mnt"),
                PathBuf::from("/var/tmp/osctl-bench/zfs/mnt x"),
            ]
        );
    }

    #[test]
    fn reads_an_autogroups_nice_value() {
        assert_eq!(autogroup_nice("/autogroup-52367 nice -10\n"), Some(-10));
        assert_eq!(autogroup_nice("/autogroup-1 nice 0"), Some(0));
        assert_eq!(autogroup_nice("/autogroup-1 nice 19\n"), Some(19));
        assert_eq!(autogroup_nice(""), None);
        assert_eq!(autogroup_nice("/autogroup-1 nice x"), None);
    }
}
