//! The real-distribution rows: a debootstrapped Debian container booting
//! systemd, its consistent export (a clean stop and a start) against
//! `--freeze`, both as its own ticker service saw them.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;

use crate::bench::Kind;
use crate::downtime::{self, next_tick, PauseTimes};
use crate::gen::TICKS_FILE;
use crate::osctl::Osctl;
use crate::sys;

const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
const POOL: &str = "default";
const USER: &str = "bench";
const ID: &str = "debian";

/// The ticker of the busybox container, with coreutils' `sleep` instead of
/// busybox's `usleep`.
const TICKS_SCRIPT: &str = "#!/bin/sh\n# osctl-bench: notes the time every 10 ms.\n\
while :; do\n  read up idle < /proc/uptime\n  echo $up >> /var/tmp/ticks\n  sleep 0.01\ndone\n";
const TICKS_UNIT: &str = "[Unit]\nDescription=osctl-bench ticker\n\n[Service]\n\
ExecStart=/usr/local/bin/bench-ticks\nRestart=always\n\n[Install]\nWantedBy=multi-user.target\n";

/// A Debian root file system with systemd and the ticker enabled, made once
/// under `dir` (debootstrap needs the network) and kept.
fn rootfs(dir: &Path) -> Result<PathBuf> {
    let rootfs = dir.join("rootfs");
    if !rootfs.join("etc/debian_version").exists() {
        eprintln!("bench: debootstrap {SUITE} into {}", rootfs.display());
        let _ = fs::remove_dir_all(&rootfs);
        let target = rootfs.to_string_lossy().into_owned();
        sys::run(
            "debootstrap",
            [
                "--variant=minbase",
                "--include=systemd-sysv,procps",
                SUITE,
                &target,
                MIRROR,
            ],
        )?;
    }
    let script = rootfs.join("usr/local/bin/bench-ticks");
    fs::write(&script, TICKS_SCRIPT)?;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755))?;
    fs::write(
        rootfs.join("etc/systemd/system/bench-ticks.service"),
        TICKS_UNIT,
    )?;
    let wants = rootfs.join("etc/systemd/system/multi-user.target.wants");
    fs::create_dir_all(&wants)?;
    let link = wants.join("bench-ticks.service");
    let _ = fs::remove_file(&link);
    symlink("/etc/systemd/system/bench-ticks.service", &link)?;
    Ok(rootfs)
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn list(values: &[f64]) -> String {
    let shown: Vec<String> = values.iter().map(|v| format!("{v:.2}")).collect();
    shown.join(", ")
}

/// `osctl-bench debian`: prints the rows as a markdown table. The
/// container lives on the embedded dir pool of the bench's own state root,
/// or on a pool of `backend` made for the run (a zpool on zfs-fuse, a
/// loop-mounted btrfs) and removed after it.
pub fn run(workdir: &Path, bin: &Path, runs: usize, backend: Kind, repo: &Path) -> Result<()> {
    let dir = workdir.join("debian");
    fs::create_dir_all(&dir)?;
    let rootfs = rootfs(&dir)?;
    let osctl = Osctl {
        bin: bin.to_path_buf(),
        root: dir.join("state"),
    };
    // The first command without --pool makes the embedded default pool.
    osctl.run(None, ["ct", "ls"])?;
    let wd = sys::Workdir::new(workdir.to_path_buf())?;
    let pool = match backend {
        Kind::Dir => POOL.to_string(),
        Kind::Zfs => {
            sys::ensure_zfs_fuse(&wd, repo)?;
            let zpool = sys::Zpool::create(&wd)?;
            let dataset = format!("{}/debian", zpool.name);
            osctl.run(
                None,
                [
                    "pool",
                    "install",
                    "--backend",
                    "zfs",
                    "--dataset",
                    &dataset,
                    "debzfs",
                ],
            )?;
            "debzfs".to_string()
        }
        Kind::Btrfs => {
            let mount = sys::BtrfsMount::create(&wd)?;
            let path = mount
                .mountpoint
                .join("debian")
                .to_string_lossy()
                .into_owned();
            osctl.run(
                None,
                [
                    "pool",
                    "install",
                    "--backend",
                    "btrfs",
                    "--path",
                    &path,
                    "debbtrfs",
                ],
            )?;
            "debbtrfs".to_string()
        }
    };
    let measured = measure(&osctl, &pool, &rootfs, &dir, runs);
    let _ = osctl.run(Some(&pool), ["ct", "del", "-f", ID]);
    if backend != Kind::Dir {
        let _ = osctl.run(None, ["pool", "uninstall", &pool]);
        sys::cleanup(&wd);
    }
    print_rows(backend, &measured?);
    Ok(())
}

struct Measured {
    stop: Vec<f64>,
    start: Vec<f64>,
    up: Vec<f64>,
    pauses: Vec<(&'static str, Vec<PauseTimes>)>,
}

fn measure(osctl: &Osctl, pool: &str, rootfs: &Path, dir: &Path, runs: usize) -> Result<Measured> {
    let logs = dir.join("logs");
    fs::create_dir_all(&logs)?;
    let _ = osctl.run(Some(pool), ["ct", "del", "-f", ID]);
    let _ = osctl.run(Some(pool), ["user", "new", USER]);
    let from = rootfs.to_string_lossy().into_owned();
    osctl.run(
        Some(pool),
        [
            "ct",
            "new",
            "--user",
            USER,
            "--privileged",
            "--from-dir",
            &from,
            ID,
        ],
    )?;
    let ticks = osctl.show(pool, ID)?.rootfs.join(TICKS_FILE);
    let mut m = Measured {
        stop: Vec::new(),
        start: Vec::new(),
        up: Vec::new(),
        pauses: Vec::new(),
    };
    for _ in 0..runs {
        let t = Instant::now();
        osctl.run(Some(pool), ["ct", "start", ID])?;
        m.start.push(t.elapsed().as_secs_f64());
        // Until systemd has started the ticker: the boot as a service sees it.
        next_tick(&ticks, downtime::uptime()?)?;
        m.up.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        osctl.run(Some(pool), ["ct", "stop", ID])?;
        m.stop.push(t.elapsed().as_secs_f64());
    }
    let out = dir.join("debian.tar");
    for mode in ["--consistent", "--freeze"] {
        let pauses = downtime::measure_pauses(osctl, pool, ID, &out, mode, runs, &logs)?;
        osctl.run(Some(pool), ["ct", "stop", ID])?;
        m.pauses.push((mode, pauses));
    }
    Ok(m)
}

fn print_rows(backend: Kind, m: &Measured) {
    println!(
        "| Debian {SUITE} (systemd), {} pool | median | runs |",
        backend.name()
    );
    println!("| --- | --- | --- |");
    println!(
        "| `ct stop` | {:.2} s | {} |",
        median(&m.stop),
        list(&m.stop)
    );
    println!(
        "| `ct start` (LXC running) | {:.2} s | {} |",
        median(&m.start),
        list(&m.start)
    );
    println!(
        "| `ct start` until the ticker service runs | {:.2} s | {} |",
        median(&m.up),
        list(&m.up)
    );
    for (mode, pauses) in &m.pauses {
        let gaps: Vec<f64> = pauses.iter().map(|p| p.longest_gap).collect();
        let totals: Vec<f64> = pauses.iter().map(|p| p.total).collect();
        println!(
            "| `ct export {mode}`: longest pause seen inside (export took {}) | {:.3} s | {} |",
            list(&totals),
            median(&gaps),
            list(&gaps)
        );
    }
}
