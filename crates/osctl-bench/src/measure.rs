//! Timing contenders against each other: the same data, the same run, the
//! order rotated from one round to the next, the median of the rounds.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;

use crate::run::Step;
use crate::sys;

/// One way of doing the job of a row: ours or a raw tool's.
#[derive(Debug, Clone)]
pub struct Contender {
    pub name: String,
    /// Untimed, before every run: removes what the previous run left.
    pub reset: Vec<Step>,
    /// Timed, in order.
    pub timed: Vec<Step>,
    /// The file system flushed (syncfs) inside the timed span, so that a tool
    /// leaving dirty pages behind does not look faster than one that syncs.
    pub sync: PathBuf,
    /// The file whose size is reported (an archive, a stream).
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub secs: Vec<f64>,
    /// CPU seconds of each run (user + system of the contender's processes).
    pub cpu: Vec<f64>,
    pub peak_rss_kib: Option<u64>,
    pub output_bytes: Option<u64>,
}

impl Stats {
    pub fn median(&self) -> f64 {
        median(&self.secs)
    }

    pub fn median_cpu(&self) -> f64 {
        median(&self.cpu)
    }
}

pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// How many times faster `ours` ran than `base`: the median of the rounds'
/// ratios. A round runs every contender once, back to back, so a drift of
/// the machine's speed over the bench (writeback, another tenant) cancels
/// out of each round's ratio; the ratio of the two medians keeps it when
/// the slow runs of one fall in other rounds than those of the other.
pub fn paired_ratio(base: &Stats, ours: &Stats) -> f64 {
    if base.secs.len() != ours.secs.len() {
        return base.median() / ours.median();
    }
    let ratios: Vec<f64> = base
        .secs
        .iter()
        .zip(&ours.secs)
        .map(|(b, o)| b / o)
        .collect();
    median(&ratios)
}

/// The order of the contenders in round `round`: rotated by one each round, so
/// that each goes first as often as the others (caches, background load).
pub fn round_order(contenders: usize, round: usize) -> Vec<usize> {
    (0..contenders).map(|k| (k + round) % contenders).collect()
}

pub struct Bench {
    pub runs: usize,
    pub drop_caches: bool,
    pub logs: PathBuf,
}

impl Bench {
    /// Runs every contender `runs` times, rotating the order; returns their stats
    /// in the order given.
    pub fn compare(&self, label: &str, contenders: &[Contender]) -> Result<Vec<Stats>> {
        let mut stats: Vec<Stats> = vec![Stats::default(); contenders.len()];
        let log = self.logs.join(format!("{}.log", slug(label)));
        for round in 0..self.runs {
            for i in round_order(contenders.len(), round) {
                let c = &contenders[i];
                let (secs, rss, cpu) = self.once_with_cpu(c, &log)?;
                let s = &mut stats[i];
                s.secs.push(secs);
                s.cpu.push(cpu);
                if let Some(rss) = rss {
                    s.peak_rss_kib = Some(s.peak_rss_kib.unwrap_or(0).max(rss));
                }
                if let Some(out) = &c.output {
                    s.output_bytes = fs::metadata(out).ok().map(|m| m.len());
                }
                eprintln!(
                    "bench: {label}: {} run {}/{}: {secs:.2} s (CPU {cpu:.2} s){}",
                    c.name,
                    round + 1,
                    self.runs,
                    rss.map(|k| format!(", peak RSS {:.1} MiB", k as f64 / 1024.0))
                        .unwrap_or_default()
                );
            }
        }
        Ok(stats)
    }

    /// One timed run of a contender: its seconds and peak RSS (if measured).
    pub fn once(&self, c: &Contender, log: &Path) -> Result<(f64, Option<u64>)> {
        let (secs, rss, _) = self.once_with_cpu(c, log)?;
        Ok((secs, rss))
    }

    /// One timed run: seconds, peak RSS, CPU seconds.
    pub fn once_with_cpu(&self, c: &Contender, log: &Path) -> Result<(f64, Option<u64>, f64)> {
        for step in &c.reset {
            step.execute(log)?;
        }
        if self.drop_caches {
            sys::drop_caches()?;
        }
        let mut rss: Option<u64> = None;
        let mut cpu = 0.0;
        let started = Instant::now();
        for step in &c.timed {
            let report = step.execute(log)?;
            cpu += report.cpu_secs;
            if let Some(k) = report.peak_rss_kib {
                rss = Some(rss.unwrap_or(0).max(k));
            }
        }
        sys::syncfs(&c.sync)?;
        Ok((started.elapsed().as_secs_f64(), rss, cpu))
    }
}

fn slug(label: &str) -> String {
    label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn ratios_are_taken_round_by_round() {
        let stats = |secs: &[f64]| Stats {
            secs: secs.to_vec(),
            ..Stats::default()
        };
        // The machine slowed down by half during the second round, after
        // ours ran in it: two rounds of three say ours takes 1.25 times as
        // long, the two medians say ours is 1.6 times faster.
        let base = stats(&[1.0, 2.0, 2.0]);
        let ours = stats(&[1.25, 1.25, 2.5]);
        assert_eq!(paired_ratio(&base, &ours), 0.8);
        assert_eq!(base.median() / ours.median(), 1.6);
        // Rounds that cannot be paired: the medians.
        assert_eq!(paired_ratio(&stats(&[1.0, 3.0]), &stats(&[1.0])), 2.0);
    }

    #[test]
    fn every_contender_leads_in_turn() {
        assert_eq!(round_order(2, 0), vec![0, 1]);
        assert_eq!(round_order(2, 1), vec![1, 0]);
        assert_eq!(round_order(3, 1), vec![1, 2, 0]);
        assert_eq!(round_order(3, 2), vec![2, 0, 1]);
    }

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(slug("zfs export gzip"), "zfs-export-gzip");
    }
}
