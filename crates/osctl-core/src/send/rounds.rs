//! Rounds of a send: dumped into a spool file on the source, copied to the
//! target's spool, applied there as a tar layer.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::archive::compress::{self, CompressOptions, Compression, Encoder};
use crate::error::{Context, Error, Result};
use crate::filepolicy::FilePolicy;
use crate::fstar::{self, DumpSource, ExtractOptions, Manifest};
use crate::fsutil;
use crate::pool::Pool;

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

/// Dumps round `round` of container `id`: the whole root file system after
/// round 0, else the changes since the manifest of round `round - 1`; the
/// new manifest is kept for the next round. Returns what the spool holds.
pub(crate) fn prepare(pool: &Pool, id: &str, round: u32) -> Result<Prepared> {
    let dir = source_dir(pool, id);
    fsutil::create_dir_all(&dir)?;
    fsutil::set_mode(&dir, 0o700)?;
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
    let (_, manifest) = fstar::dump_round(&mut enc, &sources, base.as_ref())?;
    let hashing = enc.finish().ctx(failed)?;
    hashing.file.sync_all().ctx(failed)?;
    let prepared = Prepared {
        round,
        size: hashing.len,
        sha256: hex(&hashing.hash.finalize()),
    };
    fsutil::atomic_write(&manifest_file(&dir, round), &manifest.to_bytes())?;
    std::fs::rename(&part, round_file(&dir, round)).ctx(failed)?;
    Ok(prepared)
}

/// After the target acknowledged `round`: its stream and the manifest
/// before it are no longer needed.
pub(crate) fn acknowledged(pool: &Pool, id: &str, round: u32) -> Result<()> {
    let dir = source_dir(pool, id);
    fsutil::remove_file_if_exists(&round_file(&dir, round))?;
    if round > 1 {
        fsutil::remove_file_if_exists(&manifest_file(&dir, round - 1))?;
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

/// Applies a complete round from the target's spool to the staged
/// container `id`, judged by `policy` as an import judges a tar stream.
pub(crate) fn apply(pool: &Pool, id: &str, spool: &Path, policy: FilePolicy) -> Result<()> {
    let file = File::open(spool).ctx(|| format!("cannot open {}", spool.display()))?;
    let mut input = compress::decompressor(Compression::Zstd, io::BufReader::new(file))
        .ctx(|| "cannot decompress the round".to_string())?;
    let opts = ExtractOptions {
        policy,
        whiteouts: true,
    };
    fstar::extract(&mut input, &pool.storage.rootfs(id), &opts)?;
    Ok(())
}
