//! What the fuzzers drive, kept in the library so that the coverage-guided
//! fuzzer under `fuzz/` and the property tests of the normal test suite run
//! the very same code. Each target takes arbitrary bytes; returning is
//! success, a panic is a finding. Besides "no panic", each checks what must
//! hold between the functions it drives.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::archive::meta::{self, Metadata};
use crate::archive::{ArchiveReader, DigestAlgorithm, EntryDigest};
use crate::fstar::{self, ExtractOptions};
use crate::model::{ContainerConfig, GroupConfig, UserConfig};
use crate::yaml;

/// The outer archive: reader, classification, documents, streams, as
/// `osctl archive verify` and `show` read them. Whatever `verify` accepts,
/// `show` accepts and describes alike.
pub fn archive(data: &[u8]) {
    // The plain reader, entry by entry, as the importer drives it.
    let mut reader = ArchiveReader::new(data);
    while let Ok(Some(mut entry)) = reader.next_entry() {
        if let Ok(name) = meta::classify(entry.name(), entry.kind()) {
            assert_eq!(name.entry_name(), entry.name(), "names round-trip");
        }
        if entry.read_to_vec(meta::MAX_DOCUMENT).is_ok() {
            assert!(entry.digest().is_some(), "an entry read whole has a digest");
        }
    }
    let verified = super::verify_from(data);
    let shown = super::show_from(data);
    if let Ok(report) = &verified {
        let summary = shown.expect("what verify accepts, show accepts");
        assert_eq!(summary.entries, report.summary.entries);
        assert_eq!(summary.metadata, report.summary.metadata);
        assert_eq!(summary.archive_bytes, data.len() as u64);
        assert!(!report.lines().is_empty());
    }
}

/// The archive's YAML documents and the configs: every parser on the same
/// bytes, under the budget; what parses writes back to the same value.
pub fn documents(data: &[u8]) {
    if let Ok(m) = Metadata::parse(data) {
        let text = m.to_yaml().expect("metadata serializes");
        let back = Metadata::parse(text.as_bytes()).expect("written metadata parses");
        assert_eq!(back, m, "metadata round-trips");
    }
    if let Ok(names) = meta::parse_snapshots(data) {
        let text = meta::snapshots_to_yaml(&names).expect("snapshots serialize");
        assert_eq!(meta::parse_snapshots(text.as_bytes()).ok(), Some(names));
    }
    for algorithm in [DigestAlgorithm::Blake3, DigestAlgorithm::Sha256] {
        if let Ok(digests) = meta::parse_checksums(data, algorithm) {
            let text = meta::checksums_to_yaml(&digests).expect("checksums serialize");
            let back: Vec<EntryDigest> =
                meta::parse_checksums(text.as_bytes(), algorithm).expect("written checksums parse");
            assert_eq!(back, digests, "checksums round-trip");
        }
    }
    if let Ok(user) = yaml::parse_bytes::<UserConfig>(data, "user.yml") {
        let _ = user.maps();
        let _ = yaml::to_string(&user);
    }
    if let Ok(group) = yaml::parse_bytes::<GroupConfig>(data, "group.yml") {
        let _ = yaml::to_string(&group);
    }
    if let Ok(container) = yaml::parse_bytes::<ContainerConfig>(data, "container.yml") {
        let _ = crate::trust::container_concerns(&container);
        let _ = yaml::to_string(&container);
    }
    let _ = yaml::parse_bytes::<Value>(data, "any.yml");
}

/// A root file system tar stream, extracted into `scratch/root` (created
/// here, emptied first): nothing may appear outside it, and a stream the
/// extractor accepts must pass the read-only walk too. The extraction runs
/// with the defaults (no device nodes, whiteouts applied) and, as root,
/// creates real owners and attributes.
pub fn extract(data: &[u8], scratch: &Path) {
    let root = scratch.join("root");
    let canary = scratch.join("canary");
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).expect("scratch root");
    fs::create_dir_all(&canary).expect("scratch canary");
    fs::write(canary.join("file"), b"canary").expect("canary file");

    let mut input = data;
    let extracted = fstar::extract(&mut input, &root, &ExtractOptions::default());
    let mut input = data;
    let walked = fstar::walk(&mut input, true);
    if let (Ok(stats), Err(e)) = (&extracted, &walked) {
        panic!(
            "extracted ({} entries) but the walk refused: {e}",
            stats.counts.entries
        );
    }

    let mut names: Vec<_> = fs::read_dir(scratch)
        .expect("scratch lists")
        .map(|e| e.expect("scratch entry").file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["canary", "root"], "nothing beside the root");
    let canary_names: Vec<_> = fs::read_dir(&canary)
        .expect("canary lists")
        .map(|e| e.expect("canary entry").file_name())
        .collect();
    assert_eq!(canary_names, ["file"], "nothing added next to the canary");
    assert_eq!(
        fs::read(canary.join("file")).expect("canary reads"),
        b"canary",
        "canary unchanged"
    );
    // The extraction may leave directories without write or search
    // permission; removal needs them back (root is not limited by modes,
    // other users are).
    let _ = fs::remove_dir_all(&root).or_else(|_| {
        make_removable(&root);
        fs::remove_dir_all(&root)
    });
}

fn make_removable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                make_removable(&e.path());
            }
        }
    }
}

// ---------------------------------------------------------------- seeds

/// Seeds: small, valid inputs of every kind each target reads, made by the
/// library's own writers (and GNU tar, when installed). `fuzz/corpus/` holds
/// them as files (`gen-corpus`); the property tests mutate them directly.
pub mod seeds {
    use std::fs;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::unix::fs::symlink;
    use std::path::{Path, PathBuf};

    use crate::archive::compress::{CompressOptions, Compression, Encoder};
    use crate::archive::meta::{self, ArchiveType, Metadata};
    use crate::archive::{ArchiveWriter, DigestAlgorithm};
    use crate::cmd::Cmd;
    use crate::error::{Context, Result};
    use crate::fstar::{self, DumpSource, Manifest};

    /// A named seed input.
    pub type Seed = (String, Vec<u8>);

    pub const USER_YML: &str = "---\nuid_map:\n- 0:3900000000:65536\ngid_map:\n- 0:3900000000:65536\nstandalone: true\nattrs: {}\n";
    pub const GROUP_YML: &str = "---\ncgparams: []\nattrs: {}\n";
    pub const CONTAINER_YML: &str = "---\nuser: seed\ngroup: \"/default\"\ndataset: tank/ct/seed\ndistribution: debian\nversion: '12'\nhostname: seed\ninit_cmd:\n- /sbin/init\nnet_interfaces: []\ncgparams: []\ndevices: []\nprlimits: []\nmounts: []\nraw: {}\nattrs: {}\n";
    /// As the original writes it (no `format` before it existed).
    pub const ORIGINAL_METADATA_YML: &str = "---\ntype: full\nuser: seed\ngroup: \"/default\"\ncontainer: seed\ndatasets:\n- data\nexported_at: 1690000000\n";

    /// The YAML documents an archive holds.
    pub fn documents() -> Result<Vec<Seed>> {
        let metadata = metadata(ArchiveType::Full, meta::ArchiveFormat::Tar, &[]).to_yaml()?;
        let digests = vec![crate::archive::EntryDigest {
            name: "rootfs/base.tar.gz".into(),
            size: 1234,
            algorithm: DigestAlgorithm::CURRENT,
            hex: "ab".repeat(32),
        }];
        Ok(vec![
            ("metadata.yml".into(), metadata.into_bytes()),
            ("metadata-original.yml".into(), ORIGINAL_METADATA_YML.into()),
            ("user.yml".into(), USER_YML.into()),
            ("group.yml".into(), GROUP_YML.into()),
            ("container.yml".into(), CONTAINER_YML.into()),
            (
                "snapshots.yml".into(),
                meta::snapshots_to_yaml(&[
                    "osctl-incr-1700000100".into(),
                    "osctl-base-1700000000".into(),
                ])?
                .into_bytes(),
            ),
            (
                "checksums.yml".into(),
                meta::checksums_to_yaml(&digests)?.into_bytes(),
            ),
            (
                "anchors.yml".into(),
                b"a: &x [1, 2]\nb: *x\nc: {d: !!str 3}\n".to_vec(),
            ),
        ])
    }

    /// Root file system tar streams: a full dump, a changeset with
    /// whiteouts, and GNU tar's formats when `tar` is installed.
    pub fn streams(scratch: &Path) -> Result<Vec<Seed>> {
        let (base, manifest) = base_stream(scratch)?;
        let mut out = vec![("ours-full.tar".to_string(), base)];
        let tree = scratch.join("tree");
        for format in ["gnu", "posix"] {
            let args: Vec<std::ffi::OsString> = vec![
                format!("--format={format}").into(),
                "--sparse".into(),
                "--xattrs".into(),
                "--numeric-owner".into(),
                "-cf".into(),
                "-".into(),
                "-C".into(),
                tree.clone().into(),
                ".".into(),
            ];
            let Ok(mut child) = Cmd::new("tar").args(args).spawn_reader() else {
                continue; // no GNU tar: ours only
            };
            let mut bytes = Vec::new();
            if child.read_to_end(&mut bytes).is_ok() {
                out.push((format!("gnu-tar-{format}.tar"), bytes));
            }
        }
        out.push((
            "ours-changes.tar".into(),
            changes_stream(scratch, &manifest)?,
        ));
        Ok(out)
    }

    /// Whole archives: tar format in each compression, with a changeset,
    /// the original's (no `checksums.yml`), zfs and btrfs send streams, a
    /// skel archive, hooks.
    pub fn archives(scratch: &Path) -> Result<Vec<Seed>> {
        let mut out = tar_archives(scratch)?;
        out.extend(native_archives(scratch)?);
        Ok(out)
    }

    /// The newest first, as `snapshots.yml` lists them.
    const SNAPSHOTS: [&str; 2] = ["osctl-incr-1700000100", "osctl-base-1700000000"];

    fn tar_archives(scratch: &Path) -> Result<Vec<Seed>> {
        let (base, manifest) = base_stream(scratch)?;
        let changes = changes_stream(scratch, &manifest)?;
        let tar = |kind, datasets: &[&str]| metadata(kind, meta::ArchiveFormat::Tar, datasets);
        let mut out = Vec::new();
        for compression in [Compression::Off, Compression::Gzip, Compression::Zstd] {
            let streams = vec![("rootfs/base.tar".to_string(), base.clone())];
            out.push((
                format!("tar-{}.tar", compression.name()),
                archive(
                    scratch,
                    &tar(ArchiveType::Full, &[]),
                    &streams,
                    compression,
                    &[],
                    Tail::Ours(&[]),
                )?,
            ));
        }
        let both = vec![
            ("rootfs/base.tar".to_string(), base.clone()),
            ("rootfs/incremental.tar".to_string(), changes),
        ];
        let snapshots = SNAPSHOTS;
        out.push((
            "tar-incremental.tar".into(),
            archive(
                scratch,
                &tar(ArchiveType::Full, &[]),
                &both,
                Compression::Off,
                &[],
                Tail::Ours(&snapshots),
            )?,
        ));
        // As osctl-rs wrote them before BLAKE3: SHA-256 checksums, no
        // `checksums` key in metadata.yml.
        out.push((
            "tar-sha256.tar".into(),
            archive(
                scratch,
                &Metadata {
                    checksums: None,
                    ..tar(ArchiveType::Full, &[])
                },
                &both,
                Compression::Gzip,
                &[],
                Tail::Ours(&snapshots),
            )?,
        ));
        let hooks = [("hooks/pre-start", &b"#!/bin/sh\nexit 0\n"[..])];
        out.push((
            "tar-original-hooks.tar".into(),
            archive(
                scratch,
                &tar(ArchiveType::Full, &[]),
                &both[..1],
                Compression::Gzip,
                &hooks,
                Tail::Original,
            )?,
        ));
        out.push((
            "skel.tar".into(),
            archive(
                scratch,
                &tar(ArchiveType::Skel, &[]),
                &[],
                Compression::Off,
                &[],
                Tail::Ours(&[]),
            )?,
        ));
        Ok(out)
    }

    /// zfs (with a subdataset) and btrfs send streams.
    fn native_archives(scratch: &Path) -> Result<Vec<Seed>> {
        let snapshots = SNAPSHOTS;
        let mut out = Vec::new();
        let zfs = vec![
            ("rootfs/base.dat".to_string(), zfs_stream()),
            ("rootfs/data/base.dat".to_string(), zfs_stream()),
        ];
        out.push((
            "zfs.tar".into(),
            archive(
                scratch,
                &metadata(ArchiveType::Full, meta::ArchiveFormat::Zfs, &["data"]),
                &zfs,
                Compression::Off,
                &[],
                Tail::Ours(&snapshots[1..]),
            )?,
        ));
        let btrfs = vec![("rootfs/base.dat".to_string(), btrfs_stream())];
        out.push((
            "btrfs.tar".into(),
            archive(
                scratch,
                &metadata(ArchiveType::Full, meta::ArchiveFormat::Btrfs, &[]),
                &btrfs,
                Compression::Gzip,
                &[],
                Tail::Ours(&snapshots[1..]),
            )?,
        ));
        Ok(out)
    }

    fn metadata(kind: ArchiveType, format: meta::ArchiveFormat, datasets: &[&str]) -> Metadata {
        Metadata {
            archive_type: kind,
            format,
            user: Some("seed".into()),
            group: Some("/default".into()),
            container: Some("seed".into()),
            datasets: datasets.iter().map(|d| d.to_string()).collect(),
            exported_at: 1_700_000_000,
            checksums: Some(DigestAlgorithm::CURRENT),
            part_size: None,
        }
    }

    /// What ends an archive: ours (`checksums.yml`, then `snapshots.yml`
    /// with these names) or the original's (`snapshots.yml` only).
    enum Tail<'a> {
        Ours(&'a [&'a str]),
        Original,
    }

    fn compress_seed(sink: &mut dyn Write, compression: Compression, data: &[u8]) -> Result<()> {
        let options = CompressOptions {
            threads: 1,
            ..Default::default()
        };
        let mut encoder =
            Encoder::new(compression, sink, &options).ctx(|| "cannot compress a seed")?;
        encoder.write_all(data).ctx(|| "cannot compress a seed")?;
        encoder
            .finish()
            .and_then(|s| s.flush())
            .ctx(|| "cannot compress a seed")
    }

    /// An archive laid out as export writes it; stream names get the
    /// compression's suffix and their content is compressed with it.
    fn archive(
        scratch: &Path,
        metadata: &Metadata,
        streams: &[(String, Vec<u8>)],
        compression: Compression,
        hooks: &[(&str, &[u8])],
        tail: Tail<'_>,
    ) -> Result<Vec<u8>> {
        let path = scratch.join("seed-archive.tar");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .ctx(|| format!("cannot create {}", path.display()))?;
        // The original's metadata names no checksums (it writes none).
        let metadata = &match tail {
            Tail::Original => Metadata {
                checksums: None,
                ..metadata.clone()
            },
            Tail::Ours(_) => metadata.clone(),
        };
        let mut w = ArchiveWriter::new(file)?.with_digest(metadata.digest_algorithm());
        w.add_file(meta::METADATA, metadata.to_yaml()?.as_bytes())?;
        w.add_dir(meta::CONFIG_DIR)?;
        w.add_file(meta::USER_CONFIG, USER_YML.as_bytes())?;
        w.add_file(meta::GROUP_CONFIG, GROUP_YML.as_bytes())?;
        w.add_file(meta::CONTAINER_CONFIG, CONTAINER_YML.as_bytes())?;
        if !hooks.is_empty() {
            w.add_dir(meta::HOOKS_DIR)?;
            for (name, body) in hooks {
                w.add_file(name, body)?;
            }
        }
        if metadata.archive_type == ArchiveType::Full {
            w.add_dir(meta::ROOTFS_DIR)?;
            for ds in &metadata.datasets {
                w.add_dir(&format!("{}/{ds}", meta::ROOTFS_DIR))?;
            }
        }
        for (name, data) in streams {
            let name = format!("{name}{}", compression.suffix());
            w.stream_entry(&name, |sink| compress_seed(sink, compression, data))?;
        }
        let snapshots: Vec<String> = match tail {
            Tail::Ours(names) => {
                let checksums = w.checksums().to_vec();
                w.add_file(
                    meta::CHECKSUMS,
                    meta::checksums_to_yaml(&checksums)?.as_bytes(),
                )?;
                names.iter().map(|s| s.to_string()).collect()
            }
            Tail::Original => Vec::new(),
        };
        w.add_file(
            meta::SNAPSHOTS,
            meta::snapshots_to_yaml(&snapshots)?.as_bytes(),
        )?;
        let mut file = w.finish()?;
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_end(&mut bytes))
            .ctx(|| format!("cannot read {}", path.display()))?;
        fs::remove_file(&path).ctx(|| format!("cannot remove {}", path.display()))?;
        Ok(bytes)
    }

    /// A small tree with every kind of entry our dumps write: files, a
    /// sparse one, directories, symbolic and hard links, a fifo, extended
    /// attributes, a name too long for a plain header.
    fn tree(scratch: &Path) -> Result<PathBuf> {
        let root = scratch.join("tree");
        let _ = fs::remove_dir_all(&root);
        let io = |what: &str| format!("cannot build seed tree: {what}");
        fs::create_dir_all(root.join("etc/sub")).ctx(|| io("dirs"))?;
        fs::create_dir_all(root.join("bin")).ctx(|| io("dirs"))?;
        fs::write(root.join("etc/hostname"), b"seed\n").ctx(|| io("file"))?;
        fs::write(root.join("etc/sub/data"), b"0123456789".repeat(60)).ctx(|| io("file"))?;
        fs::write(root.join("bin/busybox"), b"\x7fELF not really").ctx(|| io("file"))?;
        symlink("busybox", root.join("bin/sh")).ctx(|| io("symlink"))?;
        fs::hard_link(root.join("bin/busybox"), root.join("bin/ls")).ctx(|| io("hard link"))?;
        fs::write(root.join("n".repeat(120)), b"long name").ctx(|| io("long name"))?;
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("etc/fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .map_err(std::io::Error::from)
        .ctx(|| io("fifo"))?;
        let sparse = fs::File::create(root.join("sparse")).ctx(|| io("sparse"))?;
        sparse.set_len(1 << 20).ctx(|| io("sparse"))?;
        std::os::unix::fs::FileExt::write_all_at(&sparse, b"data", 16 << 10)
            .ctx(|| io("sparse"))?;
        // Best effort: some file systems have no user xattrs.
        let _ = rustix::fs::setxattr(
            root.join("etc/hostname"),
            "user.seed",
            b"value",
            rustix::fs::XattrFlags::empty(),
        );
        Ok(root)
    }

    fn base_stream(scratch: &Path) -> Result<(Vec<u8>, Manifest)> {
        let root = tree(scratch)?;
        let mut out = Vec::new();
        let (_, manifest) = fstar::dump_full(
            &mut out,
            &[DumpSource {
                prefix: String::new(),
                dir: root,
            }],
        )?;
        Ok((out, manifest))
    }

    /// The tree changed after `base`: a file removed, one rewritten, a
    /// directory replaced by a file, a new one.
    fn changes_stream(scratch: &Path, base: &Manifest) -> Result<Vec<u8>> {
        let root = scratch.join("tree");
        let io = |what: &str| format!("cannot change seed tree: {what}");
        fs::remove_file(root.join("bin/ls")).ctx(|| io("remove"))?;
        fs::write(root.join("etc/hostname"), b"changed\n").ctx(|| io("rewrite"))?;
        fs::remove_dir_all(root.join("etc/sub")).ctx(|| io("remove dir"))?;
        fs::write(root.join("etc/sub"), b"now a file").ctx(|| io("replace"))?;
        fs::write(root.join("new"), b"new file").ctx(|| io("add"))?;
        let mut out = Vec::new();
        fstar::dump_changes(
            &mut out,
            &[DumpSource {
                prefix: String::new(),
                dir: root,
            }],
            base,
        )?;
        Ok(out)
    }

    /// The first records of a zfs send stream: DRR_BEGIN (with the magic),
    /// DRR_END. Enough for our checks, which go no further.
    fn zfs_stream() -> Vec<u8> {
        const RECORD: usize = 312;
        let mut begin = vec![0u8; RECORD];
        begin[8..16].copy_from_slice(&super::super::ZFS_MAGIC.to_le_bytes());
        begin[16..24].copy_from_slice(&17u64.to_le_bytes()); // versioninfo
        begin[48..68].copy_from_slice(b"tank/ct/seed@osctl-b");
        let mut end = vec![0u8; RECORD];
        end[0] = 2; // DRR_END
        [begin, end].concat()
    }

    /// A btrfs send stream's header and one command's header.
    fn btrfs_stream() -> Vec<u8> {
        let mut s = super::super::BTRFS_MAGIC.to_vec();
        s.extend_from_slice(&1u32.to_le_bytes());
        s.extend_from_slice(&[0, 0, 0, 0, 21, 0, 0, 0, 0, 0]); // len, cmd END, crc
        s
    }
}
