//! `osctl receive serve`: the target's end of a send, run by sshd as the
//! forced command of an authorized key. The request is the command line the
//! source asked for (`SSH_ORIGINAL_COMMAND`), checked word by word; the key,
//! the passphrase, the source address (`SSH_CONNECTION`) and the container
//! are authorized before anything is read or changed.

use std::io::{self, Read, Write};

use crate::containers;
use crate::error::{Context, Error, Result};
use crate::failpoint;
use crate::filepolicy::FilePolicy;
use crate::fsutil;
use crate::host::Host;
use crate::import::{self, ImportOptions};
use crate::names;
use crate::pool::Pool;

use super::keys::{self, AuthorizedKey, AuthorizedKeys};
use super::rounds::{self, round_file, target_dir};
use super::{read_log, write_log, SendLog, LOG_KEY};

/// Largest config archive `config` takes (configs and an empty tar).
const MAX_CONFIG_ARCHIVE: u64 = 16 << 20;

/// What the source asked for.
#[derive(Debug, Default)]
struct Request {
    verb: String,
    id: String,
    pool: Option<String>,
    passphrase: Option<String>,
    /// An existing user and group of the target for the container.
    as_user: Option<String>,
    as_group: Option<String>,
    clone: bool,
    no_start: bool,
    native: bool,
    /// `round`: the last round; the container leaves staging once it is in.
    cutover: bool,
    numbers: Vec<String>,
}

fn parse_request(line: &str) -> Result<Request> {
    let bad = |why: &str| Error::refused(format!("request refused: {why}"));
    let mut words = line.split_ascii_whitespace();
    // The source sends `receive <verb> ...`.
    if words.next() != Some("receive") {
        return Err(bad("not an osctl receive request"));
    }
    let mut req = Request {
        verb: words.next().ok_or_else(|| bad("no verb"))?.to_string(),
        id: words.next().ok_or_else(|| bad("no container"))?.to_string(),
        ..Default::default()
    };
    names::container_id(&req.id).map_err(|e| bad(&e.to_string()))?;
    while let Some(w) = words.next() {
        let mut value = |name: &str| {
            let v = words
                .next()
                .ok_or_else(|| bad(&format!("{name} without a value")))?;
            super::check_token(name, v).map_err(|e| bad(&e.to_string()))?;
            Ok::<_, Error>(v.to_string())
        };
        match w {
            "--pool" => req.pool = Some(value("--pool")?),
            "--passphrase" => req.passphrase = Some(value("--passphrase")?),
            "--as-user" => {
                let user = value("--as-user")?;
                names::user_name(&user).map_err(|e| bad(&e.to_string()))?;
                req.as_user = Some(user);
            }
            "--as-group" => {
                let group = value("--as-group")?;
                names::group_path(&group).map_err(|e| bad(&e.to_string()))?;
                req.as_group = Some(group);
            }
            "--clone" => req.clone = true,
            "--no-start" => req.no_start = true,
            "--native" => req.native = true,
            "--cutover" => req.cutover = true,
            n if n.bytes().all(|b| b.is_ascii_hexdigit()) && n.len() <= 64 => {
                req.numbers.push(n.to_string())
            }
            other => return Err(bad(&format!("unknown word '{}'", other.escape_debug()))),
        }
    }
    Ok(req)
}

/// The entry that allows this request, or why none does (one line, and
/// nothing changed).
fn authorize(host: &Host, key_id: &str, req: &Request, addr: &str) -> Result<AuthorizedKey> {
    let db = AuthorizedKeys::open(host)?;
    let of_key: Vec<&AuthorizedKey> = db.entries.iter().filter(|e| e.key_id() == key_id).collect();
    if of_key.is_empty() {
        return Err(Error::refused(
            "send refused: the key is not authorized here",
        ));
    }
    let entry = of_key
        .iter()
        .find(|e| e.passphrase_matches(req.passphrase.as_deref()))
        .ok_or_else(|| Error::refused("send refused: wrong passphrase for this key"))?;
    if !entry.address_allowed(addr) {
        return Err(Error::refused(format!(
            "send refused: key '{}' may not send from {addr}",
            entry.name
        )));
    }
    if let Some(ctid) = &entry.ctid {
        if *ctid != req.id {
            return Err(Error::refused(format!(
                "send refused: key '{}' may send only container '{ctid}', not '{}'",
                entry.name, req.id
            )));
        }
    }
    Ok((*entry).clone())
}

/// Serves one request of the source.
pub fn serve(
    host: &Host,
    key_id: &str,
    command: &str,
    connection: &str,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
) -> Result<()> {
    let req = parse_request(command)?;
    let addr = connection.split_whitespace().next().unwrap_or("");
    let entry = authorize(host, key_id, &req, addr)?;
    let pool = Pool::select(host, req.pool.as_deref())?;
    crate::recovery::recover_journals(&pool)?;
    let id = req.id.as_str();
    match req.verb.as_str() {
        "config" => config(&pool, &req, &entry, stdin),
        "status" => status(&pool, id, &entry, stdout),
        "round" => round(&pool, &req, &entry, stdin),
        "start" => start(&pool, id, &entry, req.no_start),
        "done" => done(host, &pool, id, &entry),
        "cancel" => cancel(&pool, id, &entry),
        other => Err(Error::refused(format!(
            "request refused: unknown verb '{}'",
            other.escape_debug()
        ))),
    }
}

/// The send log of a container received from `entry`, or why it is not one.
fn our_log(pool: &Pool, id: &str, entry: &AuthorizedKey) -> Result<SendLog> {
    let log = read_log(pool, id)?.filter(|l| l.role == "target");
    match log {
        Some(l) if l.key.as_deref() == Some(entry.name.as_str()) => Ok(l),
        _ => Err(Error::refused(format!(
            "container '{id}' in pool '{}' is not being received with key '{}'",
            pool.name, entry.name
        ))),
    }
}

fn staged_log(pool: &Pool, id: &str, entry: &AuthorizedKey) -> Result<SendLog> {
    let log = our_log(pool, id, entry)?;
    if log.state != "staged" {
        return Err(Error::refused(format!(
            "container '{id}' has already cut over"
        )));
    }
    Ok(log)
}

/// Stages the container: an import of the source's config archive.
fn config(pool: &Pool, req: &Request, entry: &AuthorizedKey, stdin: &mut dyn Read) -> Result<()> {
    let id = req.id.as_str();
    if pool.ct_exists(id) {
        staged_log(pool, id, entry).map_err(|_| {
            Error::exists(format!(
                "container '{id}' already exists in pool '{}'",
                pool.name
            ))
        })?;
        io::copy(stdin, &mut io::sink()).ctx(|| "cannot read the request".to_string())?;
        return Ok(());
    }
    // Another tenant's user would share its host ids with this container.
    if (req.as_user.is_some() || req.as_group.is_some()) && !entry.trusted {
        return Err(Error::refused(format!(
            "request refused: --as-user and --as-group need a --trusted authorized key (entry '{}')",
            entry.name
        )));
    }
    let dir = target_dir(pool, id);
    fsutil::create_dir_all(&dir)?;
    fsutil::set_mode(&dir, 0o700)?;
    let archive = dir.join("config.tar");
    let mut file =
        std::fs::File::create(&archive).ctx(|| format!("cannot create {}", archive.display()))?;
    let n = io::copy(&mut stdin.take(MAX_CONFIG_ARCHIVE + 1), &mut file)
        .ctx(|| "cannot receive the config archive".to_string())?;
    drop(file);
    if n > MAX_CONFIG_ARCHIVE {
        fsutil::remove_dir_all_if_exists(&dir)?;
        return Err(Error::archive("the config archive is too large"));
    }
    let users = pool.user_names()?;
    let groups = pool.group_paths()?;
    let log = SendLog {
        role: "target".into(),
        state: "staged".into(),
        key: Some(entry.name.clone()),
        ..Default::default()
    };
    let staged = serde_json::to_value(&log).map_err(|e| Error::invalid(e.to_string()))?;
    let opts = ImportOptions {
        as_id: Some(id.to_string()),
        as_user: req.as_user.clone(),
        as_group: req.as_group.clone(),
        force_clone: req.clone,
        trusted: entry.trusted,
        set_extra: vec![(LOG_KEY.to_string(), staged)],
        ..Default::default()
    };
    let imported = import::import_report(pool, &archive, &opts);
    fsutil::remove_file_if_exists(&archive)?;
    imported?;
    let _lock = pool.lock_ct(id)?;
    let cfg = pool.ct(id)?;
    let log = SendLog {
        created_user: (!users.contains(&cfg.user)).then(|| cfg.user.clone()),
        created_group: (!groups.contains(&cfg.group)).then(|| cfg.group.clone()),
        ..log
    };
    write_log(pool, id, Some(&log))
}

fn status(pool: &Pool, id: &str, entry: &AuthorizedKey, out: &mut dyn Write) -> Result<()> {
    let doc = if !pool.ct_exists(id) {
        serde_json::json!({"exists": false})
    } else {
        let lock = pool.lock_ct(id)?;
        let log = our_log(pool, id, entry)?;
        // The source asks after a failed attempt: where this end died
        // between recording a round and forgetting its base, the base goes.
        if log.state == "staged" {
            rounds::forget_base(pool, id, log.round, log.native)?;
        }
        pool.unlock_ct(id, lock)?;
        let next = round_file(&target_dir(pool, id), log.round + 1);
        let spooled = std::fs::metadata(&next).map_or(0, |m| m.len());
        serde_json::json!({
            "exists": true,
            "state": log.state,
            "round": log.round,
            "spooled": spooled,
            "backend": pool.storage.backend().as_str(),
        })
    };
    writeln!(out, "{doc}").ctx(|| "cannot answer".to_string())
}

/// `round ID N SIZE SHA256 OFFSET`: bytes of round N from OFFSET on; the
/// round is applied once all SIZE bytes are here and their digest matches.
fn round(pool: &Pool, req: &Request, entry: &AuthorizedKey, stdin: &mut dyn Read) -> Result<()> {
    let id = req.id.as_str();
    let [n, size, sha, offset] = req.numbers.as_slice() else {
        return Err(Error::refused(
            "request refused: round wants N SIZE SHA256 OFFSET",
        ));
    };
    let num = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| Error::refused(format!("request refused: '{s}' is not a number")))
    };
    let (n, size, offset) = (num(n)? as u32, num(size)?, num(offset)?);
    let lock = pool.lock_ct(id)?;
    let mut log = staged_log(pool, id, entry)?;
    if n <= log.round {
        io::copy(stdin, &mut io::sink()).ctx(|| "cannot read the request".to_string())?;
        if req.cutover {
            cut_over(pool, id, &mut log, req.no_start)?;
        }
        return pool.unlock_ct(id, lock);
    }
    if n != log.round + 1 {
        return Err(Error::refused(format!(
            "round {n} of container '{id}' cannot follow round {}",
            log.round
        )));
    }
    // The first round decides how all of them travel.
    if n > 1 && req.native != log.native {
        return Err(Error::refused(format!(
            "round {n} of container '{id}' is a {} stream, round 1 was not",
            if req.native { "native" } else { "tar" }
        )));
    }
    let spool = round_file(&target_dir(pool, id), n);
    let have = std::fs::metadata(&spool).map_or(0, |m| m.len());
    if offset != have {
        return Err(Error::refused(format!(
            "round {n} of container '{id}': {have} bytes are here, not {offset}"
        )));
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spool)
        .ctx(|| format!("cannot open {}", spool.display()))?;
    let got = io::copy(&mut stdin.take(size.saturating_sub(have) + 1), &mut file)
        .ctx(|| format!("round {n} of container '{id}': the connection broke"))?;
    file.sync_all()
        .ctx(|| format!("cannot write {}", spool.display()))?;
    let now = have + got;
    if now < size {
        return Err(Error::busy(format!(
            "round {n} of container '{id}' stopped after {now} of {size} bytes: run the step again to resume"
        )));
    }
    if now > size || rounds::file_sha256(&spool)? != *sha {
        fsutil::remove_file_if_exists(&spool)?;
        return Err(Error::archive(format!(
            "round {n} of container '{id}' does not match its size and digest"
        )));
    }
    let policy = FilePolicy::for_import(max_id(pool, id)?, entry.trusted);
    let applied = rounds::apply(pool, id, &spool, n, req.native, policy);
    failpoint::hit("receive-after-apply");
    fsutil::remove_file_if_exists(&spool)?;
    applied.map_err(|e| e.context(format!("round {n} of container '{id}'")))?;
    log.round = n;
    log.native = req.native;
    write_log(pool, id, Some(&log))?;
    // Kept until the log says round n is in: a round applied by an attempt
    // that died before it was recorded is received again from this base.
    rounds::forget_base(pool, id, n, req.native)?;
    if req.cutover {
        cut_over(pool, id, &mut log, req.no_start)?;
    }
    pool.unlock_ct(id, lock)
}

/// Owners of the container's files must be below its user's map size.
fn max_id(pool: &Pool, id: &str) -> Result<Option<u32>> {
    let cfg = pool.ct(id)?;
    if cfg.privileged {
        return Ok(None);
    }
    let map = pool.user(&cfg.user)?.uid_map()?;
    Ok(map.0.iter().map(|r| r.ns.saturating_add(r.count)).max())
}

/// `start`: the cutover's end here, where the last round came on its own.
fn start(pool: &Pool, id: &str, entry: &AuthorizedKey, no_start: bool) -> Result<()> {
    let lock = pool.lock_ct(id)?;
    let mut log = our_log(pool, id, entry)?;
    cut_over(pool, id, &mut log, no_start)?;
    pool.unlock_ct(id, lock)
}

/// The container is no longer staged, and starts (under its lock); a
/// start that fails leaves it staged, for the step to be run again.
fn cut_over(pool: &Pool, id: &str, log: &mut SendLog, no_start: bool) -> Result<()> {
    if log.native && log.state == "staged" {
        rounds::place(pool, id, log.round)?;
    }
    let was = log.state.clone();
    log.state = "started".into();
    write_log(pool, id, Some(log))?;
    if !no_start {
        let started =
            failpoint::check("receive-start").and_then(|()| containers::start_locked(pool, id));
        if let Err(e) = started {
            log.state = was;
            write_log(pool, id, Some(log))?;
            return Err(e);
        }
    }
    Ok(())
}

/// The send is complete: the log goes, and a single-use key with it.
fn done(host: &Host, pool: &Pool, id: &str, entry: &AuthorizedKey) -> Result<()> {
    let lock = pool.lock_ct(id)?;
    if pool.ct_exists(id) && read_log(pool, id)?.is_some() {
        let log = our_log(pool, id, entry)?;
        if log.state != "started" {
            return Err(Error::refused(format!("container '{id}' has not cut over")));
        }
        if log.native {
            rounds::forget_last(pool, id, log.round)?;
        }
        write_log(pool, id, None)?;
    }
    fsutil::remove_dir_all_if_exists(&target_dir(pool, id))?;
    pool.unlock_ct(id, lock)?;
    if entry.single_use {
        let mut db = AuthorizedKeys::open(host)?;
        if db.remove(&entry.name).is_ok() {
            db.save(&keys::receive_command()?)?;
        }
    }
    Ok(())
}

/// Removes what the send made here (nothing if it made nothing).
fn cancel(pool: &Pool, id: &str, entry: &AuthorizedKey) -> Result<()> {
    if pool.ct_exists(id) {
        let log = our_log(pool, id, entry)?;
        containers::delete(pool, id, true)?;
        if let Some(user) = &log.created_user {
            let _ = crate::accounts::delete_user(pool, user);
        }
        if let Some(group) = &log.created_group {
            let _ = crate::accounts::delete_group(pool, group);
        }
    }
    fsutil::remove_dir_all_if_exists(&target_dir(pool, id))
}
