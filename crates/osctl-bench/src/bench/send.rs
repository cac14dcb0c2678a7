//! `osctl ct send` to a second host on this machine (issue 15): a second
//! state root with a pool of the same backend, behind a real sshd on
//! 127.0.0.2. Rows: the cutover's downtime with 1 MiB and with 200 MiB
//! changed since the last sync, against the target's `ct stop` and `ct
//! start` plus 1 s; and a whole one-shot send against `zfs send | ssh |
//! zfs recv` (or `btrfs send | ssh | btrfs receive`) and `tar | ssh | tar`
//! of the same data. Every send is a `--clone`, so that the source
//! container stays for the next run and the next rows.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use testkit::sshd::Sshd;

use super::{os, Backend, Ct, Kind, Runner, USER};
use crate::downtime::{longest_gap, next_tick, read_ticks, uptime};
use crate::gen::TICKS_FILE;
use crate::measure::Contender;
use crate::osctl::Osctl;
use crate::prng::Rng;
use crate::report::{med, secs_list, Verdict};
use crate::run::Step;

/// The loopback address of the target host.
const TARGET_ADDR: &str = "127.0.0.2";
/// Where the raw tools receive on the target.
const RAW_TARGET: &str = "target-raw";
/// The file written into the container between the last sync and the
/// cutover for the "200 MiB changed" row.
const CHANGED_FILE: &str = "var/tmp/bench-send-changed";

/// The second host: its osctl, its sshd and the key of the raw tools.
struct Target {
    osctl: Osctl,
    /// The target's pool (one per backend: `target<backend>`).
    pool: String,
    sshd: Sshd,
    raw_key: PathBuf,
    /// A directory (dir, btrfs) or dataset (zfs) where the raw tools receive.
    raw_place: String,
}

impl Target {
    /// Removes the copy of `id` and the user its import made (the next
    /// run's import would find it with another id map and refuse).
    fn remove_copy(&self, id: &str) -> Vec<Step> {
        vec![
            self.osctl
                .step(&self.pool, ["ct", "del", "--force", id])
                .may_fail(),
            self.osctl
                .step(&self.pool, ["user", "del", USER])
                .may_fail(),
        ]
    }

    /// `ssh` into the target as the raw tools do, running `command` there.
    fn ssh(&self, command: &str) -> Vec<OsString> {
        os(&[
            &"ssh",
            &"-i",
            &self.raw_key,
            &"-p",
            &self.sshd.port.to_string(),
            &"-o",
            &"BatchMode=yes",
            &"-o",
            &"StrictHostKeyChecking=no",
            &"-o",
            &"UserKnownHostsFile=/dev/null",
            &"-o",
            &"LogLevel=ERROR",
            &format!("root@{TARGET_ADDR}"),
            &command,
        ])
    }
}

/// One cutover as the bench saw it.
struct Cutover {
    /// What `ct send state` reported: from the source's stop to the target's start.
    reported: f64,
    /// The longest pause between the ticker's notes, from the start of
    /// `ct send state` to the copy's first note on the target.
    seen_inside: f64,
    stop: f64,
    start: f64,
}

impl Runner<'_> {
    pub(super) fn send_rows(&mut self, b: &Backend, ct: &Ct) -> Result<()> {
        let target = self.target(b)?;
        let name = b.kind.name();
        for changed_mib in [1, 200] {
            let cutovers = (0..self.cfg.runs)
                .map(|run| self.cutover(b, ct, &target, changed_mib, run))
                .collect::<Result<Vec<_>>>()?;
            let pick = |f: fn(&Cutover) -> f64| cutovers.iter().map(f).collect::<Vec<f64>>();
            let (reported, inside) = (pick(|c| c.reported), pick(|c| c.seen_inside));
            let (stop, start) = (med(&pick(|c| c.stop)), med(&pick(|c| c.start)));
            let budget = stop + start + 1.0;
            let down = med(&reported);
            self.report.push(
                name,
                format!(
                    "ct send at {}, {changed_mib} MiB changed since the last sync: downtime vs the target's `ct stop` + `ct start` + 1 s",
                    ct.data.name
                ),
                [
                    format!(
                        "{down:.2} s (runs {}; longest pause seen inside {})",
                        secs_list(&reported),
                        secs_list(&inside)
                    ),
                    format!("{stop:.2} s + {start:.2} s"),
                    format!("{:.2}×", down / (stop + start)),
                    format!("< {budget:.2} s"),
                ],
                if down < budget {
                    Verdict::Pass
                } else {
                    Verdict::Fail
                },
            );
        }
        self.send_total_rows(b, ct, &target)
    }

    /// The target host: state root, pool, authorized key, sshd.
    fn target(&self, b: &Backend) -> Result<Target> {
        let wd = &self.cfg.workdir;
        let osctl = Osctl {
            bin: self.osctl.bin.clone(),
            root: wd.target().join("state"),
        };
        fs::create_dir_all(&osctl.root)?;
        // LXC must be able to traverse the state directory.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&osctl.root, fs::Permissions::from_mode(0o755))?;
        let (install, raw_place): (Vec<OsString>, String) = match b.kind {
            Kind::Dir => (
                os(&[&"--path", &wd.target().join("dirpool")]),
                wd.target().join(RAW_TARGET).to_string_lossy().into(),
            ),
            Kind::Zfs => {
                let zpool = b.raw_place.iter().next().context("no zpool name")?;
                let zpool = zpool.to_string_lossy();
                (
                    os(&[&"--dataset", &format!("{zpool}/target")]),
                    format!("{zpool}/{RAW_TARGET}"),
                )
            }
            Kind::Btrfs => (
                os(&[&"--path", &b.fs_root.join("target")]),
                b.fs_root.join(RAW_TARGET).to_string_lossy().into(),
            ),
        };
        let pool = format!("target{}", b.kind.name());
        let mut args = os(&[&"pool", &"install", &"--backend", &b.kind.name()]);
        args.extend(install);
        args.push(pool.clone().into());
        osctl.run(None, args)?;
        let key_path = || self.osctl.run(None, ["send", "key", "path", "public"]);
        let public = match key_path() {
            Ok(path) => path,
            Err(_) => {
                self.osctl.run(None, ["send", "key", "gen"])?;
                key_path()?
            }
        };
        let public = fs::read(public.trim())?;
        // One entry for the key: an earlier backend's goes.
        let _ = osctl.run(None, ["receive", "authorized-keys", "del", "bench"]);
        run_with_stdin(
            &osctl,
            &["receive", "authorized-keys", "add", "bench", "--trusted"],
            &public,
        )?;
        let raw_key = wd.target().join("raw_key");
        if !raw_key.exists() {
            crate::sys::run(
                "ssh-keygen",
                os(&[&"-q", &"-t", &"ed25519", &"-N", &"", &"-f", &raw_key]),
            )?;
        }
        let raw_keys = wd.target().join("raw_authorized_keys");
        fs::copy(raw_key.with_extension("pub"), &raw_keys)?;
        let sshd = Sshd::start(
            TARGET_ADDR,
            &[osctl.root.join("send/authorized_keys"), raw_keys],
        );
        Ok(Target {
            osctl,
            pool,
            sshd,
            raw_key,
            raw_place,
        })
    }

    /// One step-by-step `--clone` send: config, rootfs, sync, then
    /// `changed_mib` written (1 MiB: the churn service's own rewrite), then
    /// the timed cutover; the copy's stop and start timed; both cleaned up.
    fn cutover(
        &self,
        b: &Backend,
        ct: &Ct,
        target: &Target,
        changed_mib: u64,
        run: usize,
    ) -> Result<Cutover> {
        let id = ct.id.as_str();
        let info = self.osctl.show(&b.pool, id)?;
        if info.state != "running" {
            self.osctl.run(Some(&b.pool), ["ct", "start", id])?;
        }
        let dest = target.sshd.dest();
        let step = |words: &[&str]| {
            let mut args = vec!["ct", "send"];
            args.extend_from_slice(words);
            self.osctl.run(Some(&b.pool), args)
        };
        step(&["config", "--clone", "--to-pool", &target.pool, id, &dest])?;
        step(&["rootfs", id])?;
        step(&["sync", id])?;
        let changed = ct.rootfs.join(CHANGED_FILE);
        if changed_mib > 1 {
            write_random(&changed, changed_mib << 20, run as u64)?;
        }
        // The churn service rewrites its 1 MiB five times a second.
        std::thread::sleep(std::time::Duration::from_millis(600));
        let ticks = target.osctl.show(&target.pool, id)?.rootfs.join(TICKS_FILE);
        let (start, started) = (uptime()?, Instant::now());
        let stderr = run_loud(&self.osctl, &b.pool, &["ct", "send", "state", id])?;
        let state_secs = started.elapsed().as_secs_f64();
        let reported = parse_downtime(&stderr)
            .with_context(|| format!("no downtime in `ct send state`'s report: {stderr}"))?;
        let end = next_tick(&ticks, uptime()?)?;
        let seen_inside = longest_gap(&read_ticks(&ticks), start, end);
        step(&["cleanup", id])?;
        let _ = fs::remove_file(&changed);
        let timed = |words: [&str; 3]| -> Result<f64> {
            let t = Instant::now();
            target.osctl.run(Some(&target.pool), words)?;
            Ok(t.elapsed().as_secs_f64())
        };
        let stop = timed(["ct", "stop", id])?;
        let start_secs = timed(["ct", "start", id])?;
        for step in target.remove_copy(id) {
            step.execute(&self.bench.logs.join("send.log"))?;
        }
        eprintln!(
            "bench: {} send, {changed_mib} MiB changed, run {}/{}: state {state_secs:.2} s, downtime {reported:.2} s, longest pause inside {seen_inside:.3} s; target stop {stop:.2} s, start {start_secs:.2} s; osctl said: {}",
            b.kind.name(),
            run + 1,
            self.cfg.runs,
            cutover_lines(&stderr)
        );
        Ok(Cutover {
            reported,
            seen_inside,
            stop,
            start: start_secs,
        })
    }

    /// A whole one-shot send against the raw tools through ssh.
    fn send_total_rows(&mut self, b: &Backend, ct: &Ct, target: &Target) -> Result<()> {
        let name = b.kind.name();
        let dest = target.sshd.dest();
        let ours = Contender {
            name: "osctl ct send --clone".into(),
            reset: target.remove_copy(&ct.id),
            timed: vec![self.osctl.step(
                &b.pool,
                [
                    "ct",
                    "send",
                    "--clone",
                    "--to-pool",
                    &target.pool,
                    &ct.id,
                    &dest,
                ],
            )],
            sync: b.fs_root.clone(),
            output: None,
        };
        let mut contenders = vec![ours];
        if b.kind != Kind::Dir {
            contenders.push(self.raw_over_ssh(b, ct, target, true));
        }
        contenders.push(self.raw_over_ssh(b, ct, target, false));
        let label = format!("{name} send");
        let stats = self.bench.compare(&label, &contenders)?;
        let ours = &stats[0];
        for (contender, raw) in contenders.iter().zip(&stats).skip(1) {
            self.report.push(
                name,
                format!(
                    "ct send at {} (one shot, --clone) vs `{}`",
                    ct.data.name, contender.name
                ),
                [
                    format!("{:.2} s (runs {})", ours.median(), secs_list(&ours.secs)),
                    format!("{:.2} s (runs {})", raw.median(), secs_list(&raw.secs)),
                    format!("{:.2}×", raw.median() / ours.median()),
                    "— (total time, for the record)".into(),
                ],
                Verdict::Info,
            );
        }
        for step in target.remove_copy(&ct.id) {
            step.execute(&self.bench.logs.join("send.log"))?;
        }
        Ok(())
    }

    /// The raw tools' move of the container's data: its native stream
    /// (`native`) or a tar of its root file system, through ssh.
    fn raw_over_ssh(&self, b: &Backend, ct: &Ct, target: &Target, native: bool) -> Contender {
        // Apart: btrfs receives read-only subvolumes, which `rm` cannot remove.
        // tar unpacks into a directory of the pool's file system (apart:
        // btrfs receives read-only subvolumes, which `rm` cannot remove).
        let place = &match native {
            true => target.raw_place.clone(),
            false => b
                .fs_root
                .join("target-raw-tar")
                .to_string_lossy()
                .into_owned(),
        };
        let tar_ct = Ct {
            dataset: None,
            ..ct.clone()
        };
        let raw = self.raw_send(b, if native { ct } else { &tar_ct });
        let (receive, reset, name) = match (native, b.kind) {
            (true, Kind::Zfs) => (
                format!("zfs recv -u -F {place}"),
                vec![Step::cmd(["zfs", "destroy", "-r", place]).may_fail()],
                "zfs send | ssh | zfs recv",
            ),
            (true, _) => (
                format!("mkdir -p {place} && btrfs -q receive {place}"),
                vec![Step::cmd(os(&[
                    &"sh",
                    &"-c",
                    &format!("btrfs -q subvolume delete {place}/* ; rm -rf {place}"),
                ]))
                .may_fail()],
                "btrfs send | ssh | btrfs receive",
            ),
            (false, _) => (
                format!("mkdir -p {place} && tar --numeric-owner -xf - -C {place}"),
                vec![Step::cmd(["rm", "-rf", place])],
                "tar -cf - | ssh | tar -xf -",
            ),
        };
        let mut reset_steps = raw.reset;
        reset_steps.extend(reset);
        let stage = match native {
            true => raw.stage,
            // The running container's files change under tar, which then
            // exits with 1 ("file changed as we read it"): not a failure.
            false => os(&[
                &"sh",
                &"-c",
                &format!(
                    "tar --numeric-owner -cf - -C '{}' . ; test $? -le 1",
                    ct.rootfs.display()
                ),
            ]),
        };
        let mut timed = raw.before;
        timed.push(Step::cmd(stage).pipe(target.ssh(&receive)));
        timed.extend(raw.after);
        Contender {
            name: name.into(),
            reset: reset_steps,
            timed,
            sync: b.fs_root.clone(),
            output: None,
        }
    }
}

/// `osctl` without `-q`, for the report lines on stderr; that stderr.
fn run_loud(osctl: &Osctl, pool: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(&osctl.bin)
        .args(["--pool", pool])
        .args(args)
        .env("OSCTL_ROOT", &osctl.root)
        .stdin(Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("osctl {}: {stderr}", args.join(" "));
    }
    Ok(stderr)
}

fn run_with_stdin(osctl: &Osctl, args: &[&str], input: &[u8]) -> Result<()> {
    let mut child = Command::new(&osctl.bin)
        .args(args)
        .env("OSCTL_ROOT", &osctl.root)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().context("stdin")?.write_all(input)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "osctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The last round's line and the cutover's, as osctl printed them (what
/// the downtime is made of), joined.
fn cutover_lines(report: &str) -> String {
    let lines: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("osctl: round ") || l.contains("osctl: cutover: "))
        .map(|l| l.trim_start_matches("osctl: "))
        .collect();
    lines[lines.len().saturating_sub(2)..].join("; ")
}

/// The seconds in `cutover: container 'ID' was down for S s` (and what
/// may follow it on the line).
fn parse_downtime(report: &str) -> Option<f64> {
    report
        .lines()
        .find_map(|l| l.split_once("was down for ")?.1.split_once(" s"))?
        .0
        .trim()
        .parse()
        .ok()
}

/// `bytes` of incompressible data (a new seed each run, so no round can
/// reuse an earlier one's blocks).
fn write_random(path: &Path, bytes: u64, seed: u64) -> Result<()> {
    let mut rng = Rng::new(0x5e4d_0000 + seed);
    let mut file = std::io::BufWriter::new(fs::File::create(path)?);
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..bytes >> 20 {
        rng.fill(&mut block);
        file.write_all(&block)?;
    }
    file.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_cutover_line() {
        let report = "osctl: round 3: 1.00 MiB (zfs stream) sent in 0.20 s, 5.00 MiB/s\n\
                      osctl: cutover: container 'bench-main' was down for 2.37 s\n";
        assert_eq!(parse_downtime(report), Some(2.37));
        let with_stop = "osctl: round 3: 1.00 MiB (tar stream) dumped in 0.31 s, sent in 0.20 s, 5.00 MiB/s\n\
                         osctl: cutover: container 'bench-main' was down for 2.37 s (its stop took 2.01 s)\n";
        assert_eq!(parse_downtime(with_stop), Some(2.37));
        let both = "round 3: 1.00 MiB (tar stream) dumped in 0.31 s, sent in 0.20 s, 5.00 MiB/s; \
                    cutover: container 'bench-main' was down for 2.37 s (its stop took 2.01 s)";
        assert_eq!(
            cutover_lines(&format!("osctl: round 2: x\n{with_stop}")),
            both
        );
        assert_eq!(parse_downtime("osctl: round 1: ...\n"), None);
    }
}
