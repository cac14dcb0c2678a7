//! Rounds of a send: dumped into a spool file on the source, copied to the
//! target's spool, applied there as a tar layer.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::archive::compress::{self, CompressOptions, Compression, Encoder};
use crate::error::{Context, Error, Result};
use crate::failpoint;
use crate::filepolicy::{self, FilePolicy};
use crate::fstar::{self, DumpSource, ExtractOptions, Manifest};
use crate::fsutil;
use crate::pool::Pool;
use crate::storage::{self, Dataset, NativeStreams, SendRequest, TreeJudged};

use super::Prepared;

/// The source's spool of container `id`: round streams and manifests.
pub(crate) fn source_dir(pool: &Pool, id: &str) -> PathBuf {
    pool.state_dir().join("send").join(id)
}

/// The target's spool of container `id`.
pub(crate) fn target_dir(pool: &Pool, id: &str) -> PathBuf {
    pool.state_dir().join("receive").join(id)
}

pub(crate) fn round_file(dir: &Path, round: u32) -> PathBuf {
    dir.join(format!("round-{round}"))
}

fn manifest_file(dir: &Path, round: u32) -> PathBuf {
    dir.join(format!("manifest-{round}"))
}

/// A writer that hashes and counts what passes into a file.
struct Hashing {
    file: File,
    hash: Sha256,
    len: u64,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The snapshot of round `round` of a native send, on both sides.
pub(crate) fn round_snapshot(round: u32) -> String {
    format!("{ROUND_SNAPSHOT_PREFIX}{round}")
}

const ROUND_SNAPSHOT_PREFIX: &str = "osctl-send-";

/// Dumps round `round` of container `id` into the spool: after round 0 the
/// whole root file system, else the changes since round `round - 1`, as a
/// native stream (`native`) or a tar layer. Returns what the spool holds.
pub(crate) fn prepare(pool: &Pool, id: &str, round: u32, native: bool) -> Result<Prepared> {
    let dir = source_dir(pool, id);
    fsutil::create_dir_all(&dir)?;
    fsutil::set_mode(&dir, 0o700)?;
    let part = dir.join(format!("round-{round}.part"));
    let file = File::create(&part).ctx(|| format!("cannot create {}", part.display()))?;
    let hashing = Hashing {
        file,
        hash: Sha256::new(),
        len: 0,
    };
    let failed = || format!("cannot dump round {round} of container '{id}'");
    let mut enc =
        Encoder::new(Compression::Zstd, hashing, &CompressOptions::default()).ctx(failed)?;
    if native {
        dump_native(pool, id, round, &mut enc)?;
    } else {
        dump_tar(pool, id, round, &mut enc)?;
    }
    let hashing = enc.finish().ctx(failed)?;
    hashing.file.sync_all().ctx(failed)?;
    let prepared = Prepared {
        round,
        size: hashing.len,
        sha256: hex(&hashing.hash.finalize()),
    };
    std::fs::rename(&part, round_file(&dir, round)).ctx(failed)?;
    Ok(prepared)
}

/// A tar layer of the changes since the manifest of the round before; the
/// new manifest is kept for the next round.
fn dump_tar(pool: &Pool, id: &str, round: u32, out: &mut dyn Write) -> Result<()> {
    let dir = source_dir(pool, id);
    let base = match round {
        1 => None,
        n => {
            let path = manifest_file(&dir, n - 1);
            let bytes = std::fs::read(&path).ctx(|| format!("cannot read {}", path.display()))?;
            Some(Manifest::from_bytes(&bytes).ok_or_else(|| {
                Error::invalid(format!(
                    "{} is damaged: cancel the send and start again",
                    path.display()
                ))
            })?)
        }
    };
    let sources = [DumpSource {
        prefix: String::new(),
        dir: pool.storage.rootfs(id),
    }];
    let (_, manifest) = fstar::dump_round(out, &sources, base.as_ref())?;
    fsutil::atomic_write(&manifest_file(&dir, round), &manifest.to_bytes())
}

/// The native stream of a new snapshot, incremental from the round
/// before's. A snapshot of this round left by an attempt that died before
/// the round was recorded is taken again.
fn dump_native(pool: &Pool, id: &str, round: u32, out: &mut dyn Write) -> Result<()> {
    let native = native_streams(pool)?;
    let snap = round_snapshot(round);
    pool.storage.destroy_snapshot(id, &snap)?;
    pool.storage.snapshot(id, &snap)?;
    let base = (round > 1).then(|| round_snapshot(round - 1));
    let request = SendRequest {
        snapshot: &snap,
        from: base.as_deref(),
        compressed: false,
    };
    let mut stream = storage::send(native, Dataset::root(id), &request)?;
    io::copy(&mut stream, out)
        .map(drop)
        .ctx(|| format!("cannot send round {round} of container '{id}'"))
}

fn native_streams(pool: &Pool) -> Result<&dyn NativeStreams> {
    pool.storage.native().ok_or_else(|| {
        Error::refused(format!(
            "pool '{}' ({}) has no native streams",
            pool.name,
            pool.storage.backend()
        ))
    })
}

/// Removes the round snapshots a native send left on the source.
pub(crate) fn forget_snapshots(pool: &Pool, id: &str) -> Result<()> {
    if !pool.ct_exists(id) {
        return Ok(());
    }
    for snap in pool.storage.snapshots(id)? {
        if snap.starts_with(ROUND_SNAPSHOT_PREFIX) {
            pool.storage.destroy_snapshot(id, &snap)?;
        }
    }
    Ok(())
}

/// After the target acknowledged `round`: its stream and the manifest
/// before it are no longer needed.
pub(crate) fn acknowledged(pool: &Pool, id: &str, round: u32, native: bool) -> Result<()> {
    let dir = source_dir(pool, id);
    fsutil::remove_file_if_exists(&round_file(&dir, round))?;
    if round > 1 {
        fsutil::remove_file_if_exists(&manifest_file(&dir, round - 1))?;
        if native {
            pool.storage
                .destroy_snapshot(id, &round_snapshot(round - 1))?;
        }
    }
    Ok(())
}

/// Digest of a whole file.
pub(crate) fn file_sha256(path: &Path) -> Result<String> {
    let mut file = File::open(path).ctx(|| format!("cannot open {}", path.display()))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .ctx(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(hex(&hash.finalize()))
}

/// Applies a complete round `round` from the target's spool to the staged
/// container `id`, judged by `policy` as an import judges what it receives:
/// a tar layer as it is extracted, a native stream's tree after it is
/// received (and undone if refused).
pub(crate) fn apply(
    pool: &Pool,
    id: &str,
    spool: &Path,
    round: u32,
    native: bool,
    policy: FilePolicy,
) -> Result<()> {
    let mut input = spooled_round(spool)?;
    if !native {
        let opts = ExtractOptions {
            policy,
            whiteouts: true,
        };
        fstar::extract(&mut input, &pool.storage.rootfs(id), &opts)?;
        return failpoint::check(&apply_failpoint(round));
    }
    let native = native_streams(pool)?;
    let ds = Dataset::root(id);
    let snap = round_snapshot(round);
    let base = (round > 1).then(|| round_snapshot(round - 1));
    let received = (|| {
        let receive = |input: &mut dyn Read| {
            let mut receiver = native.receive_round(ds, &snap, base.as_deref(), &policy)?;
            let copied = receiver.copy_from(input, |_| {}).map(drop);
            receiver.end(copied, &format!("round {round}"))
        };
        let judged = match receive(&mut input) {
            Ok(judged) => judged,
            // zfs-fuse fails an incremental receive now and then with
            // "I/O error", leaving the dataset as it was; once more from
            // the spool, and the error stands if that fails too.
            Err(e) if e.to_string().contains("I/O error") => receive(&mut *spooled_round(spool)?)?,
            Err(e) => return Err(e),
        };
        let tree = native.received_round(ds, &snap, base.as_deref())?;
        if let TreeJudged::NeedsWalk = judged {
            filepolicy::scan::scan(&tree, &[], &policy)?;
        }
        failpoint::check(&apply_failpoint(round))
    })();
    received.map_err(|e| match native.drop_round(ds, &snap, base.as_deref()) {
        Ok(()) => e,
        Err(undo) => e.context(format!("(undoing the round failed too: {undo})")),
    })
}

/// Tests make the apply of round N fail after it received, as a receive
/// that fails does (`receive-round-N:fail`).
fn apply_failpoint(round: u32) -> String {
    format!("receive-round-{round}")
}

/// Once round `round` of a native send is recorded on the target, the
/// snapshot of the round before is no longer needed (and the next round's
/// receive would take it for one its stream made).
pub(crate) fn forget_base(pool: &Pool, id: &str, round: u32, native: bool) -> Result<()> {
    match native && round > 1 {
        true => native_streams(pool)?.forget_round(Dataset::root(id), &round_snapshot(round - 1)),
        false => Ok(()),
    }
}

/// A round in the target's spool, decompressed as it is read.
fn spooled_round(spool: &Path) -> Result<Box<dyn Read + Send>> {
    let file = File::open(spool).ctx(|| format!("cannot open {}", spool.display()))?;
    compress::decompressor(Compression::Zstd, io::BufReader::new(file))
        .ctx(|| "cannot decompress the round".to_string())
}

/// At the cutover on the target: the last native round becomes the
/// container's root file system.
pub(crate) fn place(pool: &Pool, id: &str, round: u32) -> Result<()> {
    native_streams(pool)?.place_round(Dataset::root(id), &round_snapshot(round))
}

/// After the send: the target's last round snapshot goes.
pub(crate) fn forget_last(pool: &Pool, id: &str, round: u32) -> Result<()> {
    native_streams(pool)?.forget_round(Dataset::root(id), &round_snapshot(round))
}
