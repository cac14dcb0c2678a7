//! Downtime of a consistent export of a running container.
//!
//! The container runs `bench-churn` (see gen.rs), a service that rewrites 1 MiB
//! five times a second. While `osctl ct export --consistent` runs, two watchers
//! note when things happen:
//! - `lxc-monitor` reports LXC's state changes (STOPPING, STOPPED, RUNNING) as
//!   they happen; each line is stamped when it arrives;
//! - a poller reads `/proc/<churn pid>/stat` every 10 ms and notes when the
//!   service dies. That is the start of the real downtime: LXC says STOPPING
//!   only once init has finished its shutdown, which takes seconds for busybox.
//!
//! Service downtime = service gone → LXC RUNNING again. The LXC-only gap
//! (leaving RUNNING → RUNNING) is reported beside it.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::bench::export_args;
use crate::gen::{CHURN_NAME, TICKS_FILE};
use crate::osctl::Osctl;
use crate::sys;

const POLL: Duration = Duration::from_millis(10);

/// One consistent export, as seen from outside.
#[derive(Debug, Clone, Copy)]
pub struct ExportTimes {
    /// The whole `osctl ct export`.
    pub total: f64,
    /// Service gone → RUNNING again.
    pub downtime: f64,
    /// LXC left RUNNING → RUNNING again.
    pub lxc_gap: f64,
    pub peak_rss_kib: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct DowntimeStats {
    pub exports: Vec<ExportTimes>,
    pub stop: Vec<f64>,
    pub start: Vec<f64>,
}

/// LXC state changes as `lxc-monitor` prints them: `'ID' changed state to [RUNNING]`.
pub fn parse_state_line(line: &str) -> Option<&str> {
    let rest = line.split("changed state to [").nth(1)?;
    rest.split(']').next()
}

/// From stamped state changes and the moment the service died (if seen):
/// (downtime, lxc gap) in seconds.
pub fn gaps(events: &[(Instant, String)], service_gone: Option<Instant>) -> Option<(f64, f64)> {
    let left = events.iter().find(|(_, s)| s != "RUNNING")?.0;
    let back = events.iter().find(|(t, s)| *t > left && s == "RUNNING")?.0;
    let down = service_gone.map_or(left, |g| g.min(left));
    Some((
        back.duration_since(down).as_secs_f64(),
        back.duration_since(left).as_secs_f64(),
    ))
}

/// The host pid of the churn service of container `id` (its cgroup names the id).
fn churn_pid(id: &str) -> Option<i32> {
    let wanted_cgroup = format!("lxc.payload.{id}");
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if !String::from_utf8_lossy(&cmdline).contains(CHURN_NAME) {
            continue;
        }
        let cgroup = fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        if cgroup
            .lines()
            .any(|l| l.ends_with(&wanted_cgroup) || l.contains(&format!("{wanted_cgroup}/")))
        {
            return Some(pid);
        }
    }
    None
}

fn wait_for_churn(id: &str) -> Result<i32> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(pid) = churn_pid(id) {
            return Ok(pid);
        }
        sys::check_interrupted()?;
        if Instant::now() > deadline {
            bail!("the churn service of container '{id}' did not start (no process '{CHURN_NAME}' in its cgroup)");
        }
        thread::sleep(POLL);
    }
}

/// Alive and not a zombie.
fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// `lxc-monitor`, its lines stamped on arrival. std::process directly: it runs
/// beside the export and is killed afterwards, which the wrapper does not do.
struct Monitor {
    child: Child,
    events: mpsc::Receiver<(Instant, String)>,
}

impl Monitor {
    fn start(lxc_path: &Path, id: &str) -> Result<Monitor> {
        let mut child = Command::new("lxc-monitor")
            .arg("-n")
            .arg(id)
            .arg("-P")
            .arg(lxc_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting lxc-monitor")?;
        let stdout = child.stdout.take().context("lxc-monitor stdout")?;
        let (tx, events) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if let Some(state) = parse_state_line(&line) {
                    let _ = tx.send((Instant::now(), state.to_string()));
                }
            }
        });
        // lxc-monitor connects to (and if needed starts) lxc-monitord; give it a moment.
        thread::sleep(Duration::from_millis(300));
        Ok(Monitor { child, events })
    }

    fn finish(mut self) -> Vec<(Instant, String)> {
        thread::sleep(Duration::from_millis(200));
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.events.try_iter().collect()
    }
}

/// Times `runs` consistent exports of the running container `id`, then its
/// stop and start. Leaves the container stopped.
pub fn measure(
    osctl: &Osctl,
    pool: &str,
    id: &str,
    out: &Path,
    runs: usize,
    logs: &Path,
) -> Result<DowntimeStats> {
    let log = logs.join(format!("downtime-{pool}-{id}.log"));
    let mut stats = DowntimeStats::default();
    if osctl.show(pool, id)?.state != "running" {
        osctl.run(Some(pool), ["ct", "start", id])?;
    }
    let sync_dir: PathBuf = out
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    for round in 0..runs {
        let pid = wait_for_churn(id)?;
        // Let the service write a few times before the export starts.
        thread::sleep(Duration::from_millis(500));
        let _ = fs::remove_file(out);
        let monitor = Monitor::start(&osctl.lxc_path(pool), id)?;
        let stop_polling = Arc::new(AtomicBool::new(false));
        let poller = {
            let stop = Arc::clone(&stop_polling);
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if !alive(pid) {
                        return Some(Instant::now());
                    }
                    thread::sleep(POLL);
                }
                None
            })
        };
        let export = osctl
            .step(pool, export_args(id, out, "--consistent", "off"))
            .measure_rss();
        let started = Instant::now();
        let report = export.execute(&log);
        sys::syncfs(&sync_dir)?;
        let total = started.elapsed().as_secs_f64();
        stop_polling.store(true, Ordering::SeqCst);
        let gone = poller.join().unwrap_or(None);
        let events = monitor.finish();
        let report = report?;
        let state = osctl.show(pool, id)?.state;
        if state != "running" {
            bail!("container '{id}' is {state} after its consistent export (it must run again)");
        }
        let Some((downtime, lxc_gap)) = gaps(&events, gone) else {
            bail!("no stop and start of container '{id}' seen during its consistent export: {events:?}");
        };
        eprintln!(
            "bench: downtime {pool}/{id} run {}/{runs}: export {total:.2} s, downtime {downtime:.2} s (LXC not running {lxc_gap:.2} s)",
            round + 1
        );
        stats.exports.push(ExportTimes {
            total,
            downtime,
            lxc_gap,
            peak_rss_kib: report.peak_rss_kib,
        });
    }
    let _ = fs::remove_file(out);
    for _ in 0..runs {
        let t = Instant::now();
        osctl.run(Some(pool), ["ct", "stop", id])?;
        stats.stop.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        osctl.run(Some(pool), ["ct", "start", id])?;
        stats.start.push(t.elapsed().as_secs_f64());
        wait_for_churn(id)?;
    }
    osctl.run(Some(pool), ["ct", "stop", id])?;
    Ok(stats)
}

/// One export of a running container, as the container's ticker saw it.
#[derive(Debug, Clone, Copy)]
pub struct PauseTimes {
    /// The whole `osctl ct export`.
    pub total: f64,
    /// The longest time between two notes of the ticker from the export's
    /// start until the ticker noted again after it.
    pub longest_gap: f64,
}

/// The kernel's uptime in seconds: the clock the container's ticker reads.
pub fn uptime() -> Result<f64> {
    let text = fs::read_to_string("/proc/uptime")?;
    parse_uptime(&text).context("unexpected /proc/uptime")
}

fn parse_uptime(line: &str) -> Option<f64> {
    line.split_whitespace().next()?.parse().ok()
}

pub fn read_ticks(file: &Path) -> Vec<f64> {
    fs::read_to_string(file)
        .map(|text| text.lines().filter_map(parse_uptime).collect())
        .unwrap_or_default()
}

/// Waits until the ticker notes a time after `after`; that note.
pub fn next_tick(file: &Path, after: f64) -> Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(&t) = read_ticks(file).iter().find(|&&t| t > after) {
            return Ok(t);
        }
        if Instant::now() > deadline {
            bail!(
                "the container's ticker noted nothing in {} for 120 s",
                file.display()
            );
        }
        thread::sleep(POLL);
    }
}

/// The longest time between two of the ticker's notes in `[start, end]`,
/// counting the edges of the window: a pause that covers the export's start
/// or end counts too. Notes outside the window are ignored.
pub fn longest_gap(ticks: &[f64], start: f64, end: f64) -> f64 {
    let inside = ticks.iter().copied().filter(|t| (start..=end).contains(t));
    let times: Vec<f64> = std::iter::once(start)
        .chain(inside)
        .chain(std::iter::once(end))
        .collect();
    times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max)
}

/// Times `runs` exports (`mode`: `--freeze`, or `--consistent` for a stop
/// and a start) of the running container `id`, reading the pause from the
/// ticker inside it (`bench-ticks`, appending to `TICKS_FILE`). The window
/// ends at the ticker's first note after the export: a restarted container
/// is down until its services run again.
pub fn measure_pauses(
    osctl: &Osctl,
    pool: &str,
    id: &str,
    out: &Path,
    mode: &str,
    runs: usize,
    logs: &Path,
) -> Result<Vec<PauseTimes>> {
    let log = logs.join(format!("pause-{pool}-{id}.log"));
    let info = osctl.show(pool, id)?;
    if info.state != "running" {
        osctl.run(Some(pool), ["ct", "start", id])?;
    }
    let ticks_file = info.rootfs.join(TICKS_FILE);
    let mut times = Vec::new();
    for round in 0..runs {
        next_tick(&ticks_file, uptime()?)?;
        thread::sleep(Duration::from_millis(500));
        let _ = fs::remove_file(out);
        // The ticker appends: emptying the file under it loses nothing.
        fs::write(&ticks_file, b"").with_context(|| format!("{}", ticks_file.display()))?;
        let export = osctl.step(pool, export_args(id, out, mode, "off"));
        let (start, started) = (uptime()?, Instant::now());
        export.execute(&log)?;
        let total = started.elapsed().as_secs_f64();
        let end = next_tick(&ticks_file, uptime()?)?;
        let longest_gap = longest_gap(&read_ticks(&ticks_file), start, end);
        eprintln!(
            "bench: {mode} {pool}/{id} run {}/{runs}: export {total:.2} s, longest pause seen inside {longest_gap:.3} s",
            round + 1
        );
        times.push(PauseTimes { total, longest_gap });
    }
    let _ = fs::remove_file(out);
    Ok(times)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_gap_counts_the_window_edges() {
        let ticks = [9.0, 10.01, 10.02, 10.40, 10.41, 11.5];
        // 10.02 -> 10.40 inside; 9.0 and 11.5 are outside the window.
        assert!((longest_gap(&ticks, 10.0, 10.5) - 0.38).abs() < 1e-9);
        // A pause over the end: the last note to the end of the window.
        assert!((longest_gap(&ticks, 10.0, 11.0) - 0.59).abs() < 1e-9);
        assert!((longest_gap(&[], 1.0, 1.25) - 0.25).abs() < 1e-9);
        assert_eq!(parse_uptime("12345.67 999.00\n"), Some(12345.67));
    }

    #[test]
    fn reads_lxc_monitor_lines() {
        assert_eq!(
            parse_state_line("'c1' changed state to [RUNNING]"),
            Some("RUNNING")
        );
        assert_eq!(parse_state_line("'c1' exited with status [0]"), None);
    }

    #[test]
    fn downtime_starts_when_the_service_dies() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let events = vec![
            (at(2000), "STOPPING".to_string()),
            (at(2010), "STOPPED".to_string()),
            (at(2300), "STARTING".to_string()),
            (at(2400), "RUNNING".to_string()),
        ];
        let (down, gap) = gaps(&events, Some(at(100))).unwrap();
        assert!((down - 2.3).abs() < 1e-9);
        assert!((gap - 0.4).abs() < 1e-9);
        // Without the service's death seen, the LXC gap is all we know.
        let (down, _) = gaps(&events, None).unwrap();
        assert!((down - 0.4).abs() < 1e-9);
        assert!(gaps(&events[..2], None).is_none());
    }
}
