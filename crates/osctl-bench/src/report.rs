//! The markdown table, the rows' arithmetic and the machine's description.

use std::fmt::Write as _;
use std::fs;

use crate::measure::{self, median, Stats};
use crate::sys;

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pass,
    Fail,
    /// A figure without a target, or one whose other side did not run.
    Info,
}

impl Verdict {
    fn mark(&self) -> &'static str {
        match self {
            Verdict::Pass => "✅",
            Verdict::Fail => "❌",
            Verdict::Info => "",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Row {
    pub backend: String,
    pub what: String,
    pub ours: String,
    pub raw: String,
    pub ratio: String,
    pub target: String,
    pub verdict: Verdict,
}

#[derive(Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

pub fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

fn timing(bytes: u64, s: &Stats) -> String {
    let m = s.median();
    format!(
        "{:.0} MB/s ({:.2} s, CPU {:.2} s)",
        mb_per_s(bytes, m),
        m,
        s.median_cpu()
    )
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

impl Report {
    /// Adds a row; `figures` are the osctl, raw tool, ratio and target cells.
    pub fn push(&mut self, backend: &str, what: String, figures: [String; 4], verdict: Verdict) {
        let [ours, raw, ratio, target] = figures;
        self.rows.push(Row {
            backend: backend.to_string(),
            what,
            ours,
            raw,
            ratio,
            target,
            verdict,
        });
    }

    /// Throughput of ours against a raw tool on the same data: the ratio is
    /// ours/raw (above 1: we are faster); passes at `min_ratio` or more.
    pub fn throughput(
        &mut self,
        backend: &str,
        what: String,
        bytes: u64,
        ours: Option<&Stats>,
        raw: &Stats,
        min_ratio: f64,
    ) {
        let raw_s = timing(bytes, raw);
        match ours {
            Some(ours) => {
                let ratio = measure::paired_ratio(raw, ours);
                let verdict = if ratio >= min_ratio {
                    Verdict::Pass
                } else {
                    Verdict::Fail
                };
                self.push(
                    backend,
                    what,
                    [
                        timing(bytes, ours),
                        raw_s,
                        format!("{ratio:.2}×"),
                        format!("≥ {min_ratio}×"),
                    ],
                    verdict,
                );
            }
            None => self.push(
                backend,
                what,
                [
                    "not run".into(),
                    raw_s,
                    "—".into(),
                    format!("≥ {min_ratio}×"),
                ],
                Verdict::Info,
            ),
        }
    }

    /// Size of our archive against the raw tool's output; passes within `max_ratio`.
    pub fn size(
        &mut self,
        backend: &str,
        what: String,
        ours: Option<u64>,
        raw: Option<u64>,
        max_ratio: f64,
    ) {
        let show =
            |b: Option<u64>| b.map_or("—".to_string(), |b| format!("{:.1} MB", b as f64 / 1e6));
        let (ratio, verdict) = match (ours, raw) {
            (Some(o), Some(r)) if r > 0 => {
                let q = o as f64 / r as f64;
                (
                    format!("{q:.3}×"),
                    if q <= max_ratio {
                        Verdict::Pass
                    } else {
                        Verdict::Fail
                    },
                )
            }
            _ => ("—".to_string(), Verdict::Info),
        };
        self.push(
            backend,
            what,
            [show(ours), show(raw), ratio, format!("≤ {max_ratio}×")],
            verdict,
        );
    }

    /// Peak RSS at the large size against the small one: under `limit_mib`
    /// and not growing with the container (within 10% + 2 MiB).
    pub fn rss(
        &mut self,
        backend: &str,
        what: String,
        large: Option<u64>,
        small: Option<u64>,
        limit_mib: f64,
    ) {
        let show = |k: Option<u64>, size: &str| {
            k.map_or("—".to_string(), |k| format!("{} at {size}", mib(k)))
        };
        let (ratio, verdict) = match (large, small) {
            (Some(l), Some(s)) => {
                let under = (l.max(s) as f64 / 1024.0) < limit_mib;
                let flat = l as f64 <= s as f64 * 1.1 + 2048.0;
                (
                    format!("{:.2}×", l as f64 / s as f64),
                    if under && flat {
                        Verdict::Pass
                    } else {
                        Verdict::Fail
                    },
                )
            }
            (Some(l), None) | (None, Some(l)) => (
                "—".to_string(),
                if (l as f64 / 1024.0) < limit_mib {
                    Verdict::Pass
                } else {
                    Verdict::Fail
                },
            ),
            (None, None) => ("—".to_string(), Verdict::Info),
        };
        self.push(
            backend,
            what,
            [
                show(large, "1 GiB"),
                show(small, "200 MiB"),
                ratio,
                format!("< {limit_mib} MiB, same at both sizes"),
            ],
            verdict,
        );
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("| backend | measure | osctl | raw tool | ratio | target | |\n");
        s.push_str("|---|---|---|---|---|---|---|\n");
        for r in &self.rows {
            let cells = [&r.backend, &r.what, &r.ours, &r.raw, &r.ratio, &r.target];
            let cells: Vec<String> = cells.iter().map(|c| cell(c)).collect();
            let _ = writeln!(s, "| {} | {} |", cells.join(" | "), r.verdict.mark());
        }
        if !self.notes.is_empty() {
            s.push('\n');
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }
}

/// A table cell: a `|` would end the cell, even inside a code span.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// The load average now: the machine is shared, the figures depend on it.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn secs_list(xs: &[f64]) -> String {
    xs.iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn med(xs: &[f64]) -> f64 {
    median(xs)
}

/// A version line of a tool, or "not installed".
fn version(program: &str, args: &[&str]) -> String {
    match sys::run(program, args) {
        Ok(out) => out.lines().next().unwrap_or("").trim().to_string(),
        Err(_) => "not installed".to_string(),
    }
}

fn package_version(package: &str) -> String {
    sys::run("dpkg-query", ["-W", "-f=${Version}", package])
        .unwrap_or_else(|_| "not installed".into())
}

/// The machine the figures come from, as a markdown list.
pub fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
        .map(|kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let os = fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default();
    let mut s = String::new();
    let _ = writeln!(s, "- CPU: {cpu}, {nproc} cores (nproc)");
    let _ = writeln!(s, "- memory: {mem}");
    let _ = writeln!(s, "- kernel: {}, userland: {os}", kernel.trim());
    let _ = writeln!(
        s,
        "- zfs-fuse {}, btrfs-progs ({}), LXC {}",
        package_version("zfs-fuse"),
        version("btrfs", &["--version"]),
        version("lxc-start", &["--version"])
    );
    let _ = writeln!(
        s,
        "- {}, pigz ({}), {}",
        version("gzip", &["--version"]),
        version("pigz", &["--version"]),
        version("tar", &["--version"])
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(secs: &[f64]) -> Stats {
        Stats {
            secs: secs.to_vec(),
            ..Stats::default()
        }
    }

    #[test]
    fn throughput_ratio_is_ours_over_raw() {
        let mut r = Report::default();
        r.throughput(
            "zfs",
            "export".into(),
            1_000_000_000,
            Some(&stats(&[2.0, 2.1, 1.9])),
            &stats(&[1.0, 1.0, 1.0]),
            0.95,
        );
        assert_eq!(r.rows[0].ratio, "0.50×");
        assert_eq!(r.rows[0].verdict, Verdict::Fail);
        assert_eq!(r.rows[0].ours, "500 MB/s (2.00 s, CPU NaN s)");
        r.throughput(
            "zfs",
            "export".into(),
            1_000_000_000,
            Some(&stats(&[1.0])),
            &stats(&[1.0]),
            0.95,
        );
        assert_eq!(r.rows[1].verdict, Verdict::Pass);
    }

    #[test]
    fn rss_must_stay_flat_and_small() {
        let mut r = Report::default();
        r.rss("zfs", "rss".into(), Some(20 * 1024), Some(19 * 1024), 64.0);
        r.rss("zfs", "rss".into(), Some(60 * 1024), Some(20 * 1024), 64.0);
        r.rss("zfs", "rss".into(), Some(80 * 1024), None, 64.0);
        let v: Vec<_> = r.rows.iter().map(|r| r.verdict.clone()).collect();
        assert_eq!(v, vec![Verdict::Pass, Verdict::Fail, Verdict::Fail]);
    }

    #[test]
    fn size_within_two_percent() {
        let mut r = Report::default();
        r.size("zfs", "size".into(), Some(1010), Some(1000), 1.02);
        r.size("zfs", "size".into(), Some(1030), Some(1000), 1.02);
        assert_eq!(r.rows[0].verdict, Verdict::Pass);
        assert_eq!(r.rows[1].verdict, Verdict::Fail);
        assert!(r.render().contains("| zfs | size | 0.0 MB |"));
        r.size("zfs", "vs `a | b`".into(), None, None, 1.0);
        assert!(r.render().contains("| vs `a \\| b` |"));
    }
}
