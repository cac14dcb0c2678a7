//! `osctl ct send`: a container moved to another host over SSH in rounds,
//! with a short cutover; `osctl receive`: the other end.
//!
//! The source runs the system's `ssh` with this host's sending key; the
//! target's sshd forces every connection of an authorized key into
//! `osctl receive serve`, which authorizes the request and acts on it.
//!
//! Steps: `config` stages the container on the target (an import of an
//! archive holding the configs and an empty root file system, so that every
//! check of `ct import` applies; the container is `staged`: not startable).
//! Each later step sends rounds: `rootfs` the whole tree while the container
//! runs, `sync` the changes since the last round, `state` stops the
//! container, sends the last changes and starts the copy on the target;
//! `cleanup` removes the source (or, with `--clone`, starts it again).
//!
//! A round is dumped on the source into a spool file first, zstd-compressed:
//! where both pools are zfs or both btrfs, the native stream of a snapshot
//! (incremental from the round before, whose snapshot both sides keep until
//! the next round is in); else a tar layer (with a manifest of the tree's
//! state for the next round). It is then copied to the
//! target's spool, from the byte where an earlier attempt stopped, and
//! applied there only once complete and its digest matches: a cut
//! connection resumes the round, and a round is applied whole or not at
//! all. Both sides record their progress in the container's config
//! (`send_log`, as the original does), so every step can be run again.

pub mod keys;
pub mod receive;
mod rounds;
pub mod source;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::pool::Pool;

/// The key of the send log in container.yml.
pub const LOG_KEY: &str = "send_log";

/// Where a send stands on one side; kept in the container's config.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SendLog {
    /// `source` or `target`.
    pub role: String,
    /// Source: the last completed step (`config`, `rootfs`, `sync`,
    /// `state`). Target: `staged` until the cutover, then `started`.
    pub state: String,
    /// Rounds completed: acknowledged by the target (source), applied (target).
    #[serde(default)]
    pub round: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest: Option<String>,
    /// The container's id on the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_pool: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clone: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase: Option<String>,
    /// Rounds travel as the pools' native streams (both pools zfs, or both
    /// btrfs), not as tar layers; decided at the first round.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub native: bool,
    /// Source: a round dumped into the spool and not yet acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepared: Option<Prepared>,
    /// Source: stopped for the cutover by `state`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
    /// Target: the authorized key the container is received from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Target: the user and group the staging import created (removed by
    /// a cancel when nothing else uses them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_group: Option<String>,
}

/// A round waiting in the source's spool.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Prepared {
    pub round: u32,
    pub size: u64,
    pub sha256: String,
}

/// The send log of container `id`, if a send is under way.
pub fn read_log(pool: &Pool, id: &str) -> Result<Option<SendLog>> {
    log_of(&pool.ct_unvalidated(id)?, id)
}

/// The send log in the config of container `id`, if a send is under way.
pub fn log_of(cfg: &crate::model::ContainerConfig, id: &str) -> Result<Option<SendLog>> {
    match cfg.extra.get(LOG_KEY) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| Error::invalid(format!("container '{id}': send_log: {e}"))),
    }
}

/// Records (or with None drops) the send log of container `id`.
pub fn write_log(pool: &Pool, id: &str, log: Option<&SendLog>) -> Result<()> {
    let mut cfg = pool.ct_unvalidated(id)?;
    match log {
        Some(log) => {
            let v =
                serde_json::to_value(log).map_err(|e| Error::invalid(format!("send_log: {e}")))?;
            cfg.extra.insert(LOG_KEY.to_string(), v);
        }
        None => {
            cfg.extra.remove(LOG_KEY);
        }
    }
    pool.save_ct(id, &cfg)
}

/// Refuses to start a container staged by a send that has not cut over.
pub fn check_startable(cfg: &crate::model::ContainerConfig, id: &str) -> Result<()> {
    let staged = cfg
        .extra
        .get(LOG_KEY)
        .and_then(|v| v.get("state"))
        .and_then(|s| s.as_str())
        == Some("staged");
    if staged {
        return Err(Error::refused(format!(
            "container '{id}' is staged by a send that has not cut over: it starts with \
             `osctl ct send state` on the source"
        )));
    }
    Ok(())
}

/// Tokens of the protocol between the two ends travel as one command line
/// that sshd hands over: no blanks, nothing a shell or the split could see.
pub fn check_token(what: &str, value: &str) -> Result<()> {
    let ok = |c: char| c.is_ascii_alphanumeric() || "._-/:@+=,".contains(c);
    if value.is_empty() || value.len() > 256 || !value.chars().all(ok) {
        return Err(Error::invalid(format!(
            "{what} '{value}' may hold only letters, digits and . _ - / : @ + = ,"
        )));
    }
    Ok(())
}
