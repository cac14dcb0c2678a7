//! `osctl ct send` on the source: the steps, the rounds and the transport
//! (the system's `ssh` in batch mode with this host's sending key).

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::archive::meta::{self, ArchiveFormat, ArchiveType, Metadata};
use crate::archive::{ArchiveWriter, DigestAlgorithm};
use crate::cmd::{Cmd, ExecError, OffsetWatch};
use crate::containers;
use crate::error::{Context, Error, Result};
use crate::failpoint;
use crate::fsutil;
use crate::host::Host;
use crate::names;
use crate::pool::Pool;
use crate::progress::Progress;
use crate::runtime::CtState;

use super::keys;
use super::rounds;
use super::{read_log, write_log, SendLog};

/// Extra arguments for every `ssh` (words split on blanks), e.g. `-b ADDR`.
pub const SSH_OPTIONS_ENV: &str = "OSCTL_SSH_OPTIONS";

pub struct SendOptions {
    pub clone: bool,
    pub passphrase: Option<String>,
    pub to_pool: Option<String>,
    pub as_id: Option<String>,
    /// An existing user and group of the target (needs a trusted key there).
    pub as_user: Option<String>,
    pub as_group: Option<String>,
    pub no_start: bool,
    pub progress: Progress,
    /// One line per round and the cutover's downtime.
    pub report: Box<dyn Fn(String)>,
}

/// `[user@]host[:port]`, checked.
struct Dest {
    login: Option<String>,
    host: String,
    port: Option<u16>,
}

fn parse_dest(dest: &str) -> Result<Dest> {
    let bad = || Error::invalid(format!("destination '{dest}' is not [user@]host[:port]"));
    let (login, rest) = match dest.split_once('@') {
        Some((u, r)) => (Some(u.to_string()), r),
        None => (None, dest),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p.parse::<u16>().map_err(|_| bad())?)),
        _ => (rest, None),
    };
    let host_ok = |c: char| c.is_ascii_alphanumeric() || ".-:".contains(c);
    if host.is_empty() || host.starts_with('-') || !host.chars().all(host_ok) {
        return Err(bad());
    }
    if let Some(u) = &login {
        names::user_name(u).map_err(|_| bad())?;
    }
    Ok(Dest {
        login,
        host: host.to_string(),
        port,
    })
}

/// One connection's command: `ssh ... receive VERB TARGET_ID ...`.
fn remote(host: &Host, log: &SendLog, verb: &str, words: &[String]) -> Result<Cmd> {
    let dest = parse_dest(log.dest.as_deref().unwrap_or_default())?;
    let key = keys::private_key_path(host)?;
    let known = keys::send_dir(host).join("known_hosts");
    let mut cmd = Cmd::new("ssh")
        .arg("-i")
        .arg(&key)
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=accept-new",
        ])
        .args(["-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known.display()));
    if let Some(port) = dest.port {
        cmd = cmd.args(["-p", &port.to_string()]);
    }
    if let Ok(extra) = std::env::var(SSH_OPTIONS_ENV) {
        cmd = cmd.args(extra.split_whitespace());
    }
    if let Some(login) = &dest.login {
        cmd = cmd.args(["-l", login]);
    }
    let target = log.target_id.as_deref().unwrap_or_default();
    let mut line = format!("receive {verb} {target}");
    if let Some(p) = &log.to_pool {
        line.push_str(&format!(" --pool {p}"));
    }
    if let Some(p) = &log.passphrase {
        line.push_str(&format!(" --passphrase {p}"));
    }
    for w in words {
        line.push(' ');
        line.push_str(w);
    }
    Ok(cmd.arg("--").arg(&dest.host).arg(line))
}

/// The target's answer as one line: its own error line, or ssh's.
fn remote_error(log: &SendLog, verb: &str, e: ExecError) -> Error {
    let dest = log.dest.as_deref().unwrap_or_default();
    let last = e
        .stderr()
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(|l| l.trim_start_matches("error: ").to_string());
    match last {
        Some(line) => Error::refused(format!("{dest} ({verb}): {line}")),
        None => Error::exec(format!("cannot reach {dest}"), e),
    }
}

fn run_remote(host: &Host, log: &SendLog, verb: &str, words: &[String]) -> Result<String> {
    remote(host, log, verb, words)?
        .run()
        .map_err(|e| remote_error(log, verb, e))
}

/// Runs a request with `input` (from its current offset) as its stdin.
fn run_remote_with(
    host: &Host,
    log: &SendLog,
    verb: &str,
    words: &[String],
    input: &File,
    progress: &Progress,
) -> Result<()> {
    let cmd = remote(host, log, verb, words)?;
    let mut sent = OffsetWatch::new(input).ctx(|| "cannot read the spool".to_string())?;
    cmd.run_with_files(Some(input), None, || {
        crate::interrupt::check_io()?;
        progress.add_bytes(sent.advance()?);
        Ok(())
    })
    .map_err(|e| remote_error(log, verb, e))
}

/// The send log of a container being sent from here.
fn source_log(pool: &Pool, id: &str) -> Result<SendLog> {
    read_log(pool, id)?
        .filter(|l| l.role == "source")
        .ok_or_else(|| {
            Error::refused(format!(
                "container '{id}' is not being sent: start with `osctl ct send config {id} DEST`"
            ))
        })
}

fn expect_state(log: &SendLog, id: &str, step: &str, after: &[&str]) -> Result<()> {
    if after.contains(&log.state.as_str()) {
        return Ok(());
    }
    Err(Error::refused(format!(
        "container '{id}': `ct send {step}` follows {}, and the send is at '{}'",
        after.join(" or "),
        if log.state.is_empty() {
            "nothing"
        } else {
            &log.state
        }
    )))
}

/// Runs `step` under the container's lock.
fn locked<T>(pool: &Pool, id: &str, step: impl FnOnce() -> Result<T>) -> Result<T> {
    names::container_id(id)?;
    let lock = pool.lock_ct(id)?;
    let out = step()?;
    pool.unlock_ct(id, lock)?;
    Ok(out)
}

/// `ct send config ID DEST`: stages the container on the target.
pub fn config(pool: &Pool, host: &Host, id: &str, dest: &str, opts: &SendOptions) -> Result<()> {
    parse_dest(dest)?;
    for word in [
        &opts.passphrase,
        &opts.to_pool,
        &opts.as_id,
        &opts.as_user,
        &opts.as_group,
    ]
    .into_iter()
    .flatten()
    {
        super::check_token("option", word)?;
    }
    if let Some(as_id) = &opts.as_id {
        names::container_id(as_id)?;
    }
    if let Some(user) = &opts.as_user {
        names::user_name(user)?;
    }
    if let Some(group) = &opts.as_group {
        names::group_path(group)?;
    }
    locked(pool, id, || {
        let cfg = pool.ct(id)?;
        let mut log = match read_log(pool, id)?.filter(|l| l.role == "source") {
            Some(log) if !log.state.is_empty() && log.dest.as_deref() != Some(dest) => {
                return Err(Error::refused(format!(
                    "container '{id}' is being sent to {}: cancel that first",
                    log.dest.unwrap_or_default()
                )))
            }
            Some(log) if !log.state.is_empty() => return Ok(()),
            // Not staged yet: this attempt's options count.
            _ => SendLog {
                role: "source".into(),
                dest: Some(dest.to_string()),
                target_id: Some(opts.as_id.clone().unwrap_or_else(|| id.to_string())),
                to_pool: opts.to_pool.clone(),
                clone: opts.clone,
                passphrase: opts.passphrase.clone(),
                ..Default::default()
            },
        };
        if !pool.storage.subdatasets(id)?.is_empty() {
            return Err(Error::refused(format!(
                "container '{id}' has subdatasets, which `ct send` does not carry yet: use export and import"
            )));
        }
        // Recorded first: a cancel must know where the container went.
        write_log(pool, id, Some(&log))?;
        failpoint::hit("send-config-after-log");
        let archive = config_archive(pool, id, &cfg)?;
        let mut words: Vec<String> = log
            .clone
            .then(|| "--clone".to_string())
            .into_iter()
            .collect();
        for (option, value) in [("--as-user", &opts.as_user), ("--as-group", &opts.as_group)] {
            if let Some(value) = value {
                words.extend([option.to_string(), value.clone()]);
            }
        }
        opts.progress.step(format!("config of {id}"));
        let file = File::open(&archive).ctx(|| format!("cannot open {}", archive.display()))?;
        let sent = run_remote_with(host, &log, "config", &words, &file, &opts.progress);
        fsutil::remove_file_if_exists(&archive)?;
        sent?;
        log.state = "config".into();
        write_log(pool, id, Some(&log))
    })
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An archive of the container's configs and an empty root file system:
/// what the target imports to stage the container.
fn config_archive(
    pool: &Pool,
    id: &str,
    cfg: &crate::model::ContainerConfig,
) -> Result<std::path::PathBuf> {
    let dir = rounds::source_dir(pool, id);
    fsutil::create_dir_all(&dir)?;
    fsutil::set_mode(&dir, 0o700)?;
    if pool.hooks_dir(id).exists() {
        return Err(Error::refused(format!(
            "container '{id}' has hook scripts, which need a trusted import: use export and import --trusted"
        )));
    }
    let path = dir.join("config.tar");
    let file = File::create(&path).ctx(|| format!("cannot create {}", path.display()))?;
    let mut w = ArchiveWriter::new(file)?;
    let metadata = Metadata {
        archive_type: ArchiveType::Full,
        format: ArchiveFormat::Tar,
        user: Some(cfg.user.clone()),
        group: Some(cfg.group.clone()),
        container: Some(id.to_string()),
        datasets: Vec::new(),
        exported_at: now(),
        checksums: Some(DigestAlgorithm::CURRENT),
        part_size: None,
    };
    w.add_file(meta::METADATA, metadata.to_yaml()?.as_bytes())?;
    w.add_dir(meta::CONFIG_DIR)?;
    for (entry, path) in [
        (meta::USER_CONFIG, pool.user_config_path(&cfg.user)),
        (meta::GROUP_CONFIG, pool.group_config_path(&cfg.group)),
        (meta::CONTAINER_CONFIG, pool.ct_config_path(id)),
    ] {
        let body = std::fs::read(&path).ctx(|| format!("cannot read {}", path.display()))?;
        w.add_file(entry, &body)?;
    }
    w.add_dir(meta::ROOTFS_DIR)?;
    // An empty tar: two zero blocks.
    w.add_file(&format!("{}/base.tar", meta::ROOTFS_DIR), &[0u8; 1024])?;
    let checksums = w.checksums().to_vec();
    w.add_file(
        meta::CHECKSUMS,
        meta::checksums_to_yaml(&checksums)?.as_bytes(),
    )?;
    w.add_file(meta::SNAPSHOTS, meta::snapshots_to_yaml(&[])?.as_bytes())?;
    w.finish()?;
    Ok(path)
}

/// Sends one round: the one waiting in the spool if an earlier attempt
/// stopped, else the next one, dumped now; `cutover` words go with its
/// request (see `state`). True where the target took the round in this
/// call, with those words; false where it already had it.
fn send_round(
    pool: &Pool,
    host: &Host,
    id: &str,
    log: &mut SendLog,
    opts: &SendOptions,
    cutover: &[String],
) -> Result<bool> {
    // The target is asked where it stands only where the answer matters:
    // before the first round (its backend decides the kind of rounds) and
    // for a round an earlier attempt began (what of it arrived). A round
    // dumped now is new to the target; each question is an ssh connection,
    // which the cutover's downtime would pay.
    let status = match (log.round, &log.prepared) {
        (0, _) | (_, Some(_)) => Some(target_status(host, id, log)?),
        _ => None,
    };
    if let (0, None, Some(status)) = (log.round, &log.prepared, &status) {
        log.native = native_rounds_possible(pool, status);
    }
    let mut dumped = None;
    let prepared = match &log.prepared {
        Some(p) => p.clone(),
        None => {
            opts.progress
                .step(format!("round {} of {id}: dumping", log.round + 1));
            let dumping = Instant::now();
            let p = rounds::prepare(pool, id, log.round + 1, log.native)?;
            dumped = Some(dumping.elapsed());
            log.prepared = Some(p.clone());
            write_log(pool, id, Some(log))?;
            failpoint::hit("send-after-dump");
            p
        }
    };
    let n = prepared.round;
    let started = Instant::now();
    let mut sent = 0;
    let (applied, offset) = match &status {
        Some(status) => (
            status["round"].as_u64().unwrap_or(0),
            status["spooled"].as_u64().unwrap_or(0),
        ),
        None => (u64::from(log.round), 0),
    };
    let taken_now = applied < u64::from(n);
    if taken_now {
        opts.progress.step(format!("round {n} of {id}"));
        let spool = rounds::round_file(&rounds::source_dir(pool, id), n);
        sent = send_spool(host, log, &spool, &prepared, offset, opts, cutover)?;
        failpoint::hit("send-after-round");
    }
    log.round = n;
    log.prepared = None;
    write_log(pool, id, Some(log))?;
    rounds::acknowledged(pool, id, n, log.native)?;
    let kind = match log.native {
        true => pool.storage.backend().as_str(),
        false => "tar",
    };
    (opts.report)(round_line(
        n,
        kind,
        sent,
        prepared.size,
        dumped,
        started.elapsed(),
    ));
    Ok(taken_now)
}

/// The target's view of the send: whether the container is staged there,
/// the rounds it applied, the bytes of the next one it holds, its backend.
fn target_status(host: &Host, id: &str, log: &SendLog) -> Result<serde_json::Value> {
    let status: serde_json::Value = serde_json::from_str(&run_remote(host, log, "status", &[])?)
        .map_err(|e| Error::refused(format!("the target's status is not JSON: {e}")))?;
    if status["exists"] != true {
        return Err(Error::refused(format!(
            "the target holds no staged container '{}': run `ct send cancel {id}` and start again",
            log.target_id.as_deref().unwrap_or_default()
        )));
    }
    Ok(status)
}

/// Native streams need the same backend on both sides; a target that does
/// not tell its backend gets tar layers.
fn native_rounds_possible(pool: &Pool, status: &serde_json::Value) -> bool {
    pool.storage.native().is_some()
        && status["backend"].as_str() == Some(pool.storage.backend().as_str())
}

/// Copies a round dumped into `spool` from byte `offset` on, `extra`
/// words added to its request; returns the bytes sent.
fn send_spool(
    host: &Host,
    log: &SendLog,
    spool: &Path,
    prepared: &super::Prepared,
    offset: u64,
    opts: &SendOptions,
    extra: &[String],
) -> Result<u64> {
    let n = prepared.round;
    let mut file = File::open(spool).ctx(|| format!("cannot open {}", spool.display()))?;
    file.seek(SeekFrom::Start(offset))
        .ctx(|| format!("cannot read {}", spool.display()))?;
    let mut words = vec![
        n.to_string(),
        prepared.size.to_string(),
        prepared.sha256.clone(),
        offset.to_string(),
    ];
    if log.native {
        words.push("--native".to_string());
    }
    words.extend_from_slice(extra);
    run_remote_with(host, log, "round", &words, &file, &opts.progress)?;
    Ok(prepared.size - offset)
}

/// What the source says of a round: its size and kind, how long its dump
/// took (where this step dumped it) and its copy (with the target's check
/// and apply, and at the cutover its start).
fn round_line(
    n: u32,
    kind: &str,
    sent: u64,
    size: u64,
    dumped: Option<Duration>,
    took: Duration,
) -> String {
    let secs = took.as_secs_f64().max(0.001);
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let resumed = if sent < size {
        format!(" (resumed, {:.2} MiB were there)", mib(size - sent))
    } else {
        String::new()
    };
    let dumped = dumped.map_or(String::new(), |d| {
        format!(" dumped in {:.2} s,", d.as_secs_f64())
    });
    format!(
        "round {n}: {:.2} MiB ({kind} stream){dumped} sent in {:.2} s, {:.2} MiB/s{resumed}",
        mib(sent),
        secs,
        mib(sent) / secs
    )
}

/// `ct send rootfs ID`: the whole root file system, while the container runs.
pub fn rootfs(pool: &Pool, host: &Host, id: &str, opts: &SendOptions) -> Result<()> {
    locked(pool, id, || {
        let mut log = source_log(pool, id)?;
        if log.round >= 1 {
            return Ok(());
        }
        expect_state(&log, id, "rootfs", &["config"])?;
        send_round(pool, host, id, &mut log, opts, &[])?;
        log.state = "rootfs".into();
        write_log(pool, id, Some(&log))
    })
}

/// `ct send sync ID`: the changes since the last round.
pub fn sync(pool: &Pool, host: &Host, id: &str, opts: &SendOptions) -> Result<()> {
    locked(pool, id, || {
        let mut log = source_log(pool, id)?;
        expect_state(&log, id, "sync", &["rootfs", "sync"])?;
        if log.prepared.is_some() {
            send_round(pool, host, id, &mut log, opts, &[])?;
        }
        send_round(pool, host, id, &mut log, opts, &[])?;
        log.state = "sync".into();
        write_log(pool, id, Some(&log))
    })
}

/// `ct send state ID`: the cutover. A round while the container runs, then
/// it stops, the last changes go and the copy starts on the target (in one
/// connection); on failure the source runs again.
pub fn state(pool: &Pool, host: &Host, id: &str, opts: &SendOptions) -> Result<()> {
    locked(pool, id, || {
        let mut log = source_log(pool, id)?;
        if log.state == "state" {
            return Ok(());
        }
        expect_state(&log, id, "state", &["rootfs", "sync"])?;
        if log.prepared.is_some() {
            send_round(pool, host, id, &mut log, opts, &[])?;
        }
        let rt = containers::runtime(pool);
        let running = rt.state(id)? != CtState::Stopped;
        if running {
            // One more round while the container runs: what changed since
            // the last sync travels now, and the round after the stop
            // carries only the last seconds' changes.
            send_round(pool, host, id, &mut log, opts, &[])?;
            // Written back while the container still runs, what it wrote
            // lately no longer lengthens its shutdown's sync (busybox and
            // systemd both sync), which is downtime.
            opts.progress.step(format!("flushing {id}'s file system"));
            fsutil::sync_file_system(&pool.storage.rootfs(id))?;
        }
        let stopped_at = Instant::now();
        // From the stop on, any failure starts the source again.
        let cut = (|| {
            if running {
                opts.progress.step(format!("stopping {id}"));
                log.stopped = true;
                write_log(pool, id, Some(&log))?;
                rt.stop(id, containers::DEFAULT_STOP_TIMEOUT)?;
                failpoint::hit("send-after-stop");
                failpoint::check("send-stop")?;
            }
            let stop_took = stopped_at.elapsed();
            cut_over(pool, host, id, &mut log, opts).map(|()| stop_took)
        })();
        let stop_took = match cut {
            Ok(took) => took,
            Err(e) => {
                return Err(match start_again(pool, id, &mut log) {
                    Ok(()) => e,
                    Err(s) => e.context(format!("(starting the source again failed too: {s})")),
                });
            }
        };
        log.state = "state".into();
        write_log(pool, id, Some(&log))?;
        (opts.report)(format!(
            "cutover: container '{id}' was down for {:.2} s (its stop took {:.2} s)",
            stopped_at.elapsed().as_secs_f64(),
            stop_took.as_secs_f64()
        ));
        Ok(())
    })
}

/// The last round and the target's start, in one connection where the
/// round is new to the target (each connection costs the downtime an ssh
/// handshake); a `start` alone where an earlier attempt's round is in.
fn cut_over(
    pool: &Pool,
    host: &Host,
    id: &str,
    log: &mut SendLog,
    opts: &SendOptions,
) -> Result<()> {
    let no_start: Vec<String> = opts
        .no_start
        .then(|| "--no-start".to_string())
        .into_iter()
        .collect();
    let cutover: Vec<String> = ["--cutover".to_string()]
        .into_iter()
        .chain(no_start.iter().cloned())
        .collect();
    if send_round(pool, host, id, log, opts, &cutover)? {
        return Ok(());
    }
    opts.progress.step(format!("starting {id} on the target"));
    run_remote(host, log, "start", &no_start).map(drop)
}

fn start_again(pool: &Pool, id: &str, log: &mut SendLog) -> Result<()> {
    if !log.stopped {
        return Ok(());
    }
    containers::start_locked(pool, id)?;
    log.stopped = false;
    write_log(pool, id, Some(log))
}

/// `ct send cleanup ID`: the source goes (or with --clone runs again).
pub fn cleanup(pool: &Pool, host: &Host, id: &str) -> Result<()> {
    let log = locked(pool, id, || {
        let mut log = source_log(pool, id)?;
        expect_state(&log, id, "cleanup", &["state", "done"])?;
        if log.state == "state" {
            run_remote(host, &log, "done", &[])?;
            failpoint::hit("send-cleanup-after-done");
            log.state = "done".into();
            write_log(pool, id, Some(&log))?;
        }
        if log.clone {
            start_again(pool, id, &mut log)?;
            rounds::forget_snapshots(pool, id)?;
            write_log(pool, id, None)?;
        }
        Ok(log)
    })?;
    if !log.clone {
        containers::delete(pool, id, true)?;
    }
    fsutil::remove_dir_all_if_exists(&rounds::source_dir(pool, id))
}

/// `ct send cancel ID`: the target's copy goes, the source runs as before.
pub fn cancel(pool: &Pool, host: &Host, id: &str) -> Result<()> {
    locked(pool, id, || {
        let mut log = source_log(pool, id)?;
        if log.state == "done" {
            return Err(Error::refused(format!(
                "container '{id}' was sent and the target's copy is its own: finish with `ct send cleanup {id}`"
            )));
        }
        run_remote(host, &log, "cancel", &[])?;
        start_again(pool, id, &mut log)?;
        rounds::forget_snapshots(pool, id)?;
        write_log(pool, id, None)?;
        fsutil::remove_dir_all_if_exists(&rounds::source_dir(pool, id))
    })
}

/// `ct send ID DEST`: every step in one go.
pub fn send_all(pool: &Pool, host: &Host, id: &str, dest: &str, opts: &SendOptions) -> Result<()> {
    let step = |name: &str, r: Result<()>| r.map_err(|e| e.context(format!("ct send {name}")));
    step("config", config(pool, host, id, dest, opts))?;
    step("rootfs", rootfs(pool, host, id, opts))?;
    step("sync", sync(pool, host, id, opts))?;
    step("state", state(pool, host, id, opts))?;
    step("cleanup", cleanup(pool, host, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        let d = parse_dest("root@127.0.0.2:2222").unwrap();
        assert_eq!(
            (d.login.as_deref(), d.host.as_str(), d.port),
            (Some("root"), "127.0.0.2", Some(2222))
        );
        let d = parse_dest("node2.example").unwrap();
        assert_eq!((d.login, d.port), (None, None));
        assert!(parse_dest("-oProxyCommand=x").is_err());
        assert!(parse_dest("a b").is_err());
        assert!(parse_dest("h:99999").is_err());
    }

    #[test]
    fn round_lines_tell_size_kind_dump_and_rate() {
        let whole = round_line(
            2,
            "tar",
            3 << 20,
            3 << 20,
            Some(Duration::from_millis(400)),
            Duration::from_secs(2),
        );
        assert_eq!(
            whole,
            "round 2: 3.00 MiB (tar stream) dumped in 0.40 s, sent in 2.00 s, 1.50 MiB/s"
        );
        // Resumed: dumped by an earlier attempt, part of it already there.
        let resumed = round_line(3, "zfs", 1 << 20, 2 << 20, None, Duration::from_secs(1));
        assert_eq!(
            resumed,
            "round 3: 1.00 MiB (zfs stream) sent in 1.00 s, 1.00 MiB/s (resumed, 1.00 MiB were there)"
        );
    }
}
