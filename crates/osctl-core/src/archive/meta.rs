//! The archive's own documents (`metadata.yml`, `snapshots.yml`,
//! `checksums.yml`) and the names of its entries.
//!
//! Everything parsed here comes from an archive that may be hostile: YAML goes
//! through the budgeted parser, names are checked component by component, and
//! any entry name that is not part of the format is refused.

use std::collections::HashSet;

use serde::{Deserialize, Deserializer, Serialize};

use super::compress::Compression;
use super::digest::DigestAlgorithm;
use super::header::EntryKind;
use super::EntryDigest;
use crate::error::{Error, ErrorKind, Result};
use crate::yaml;

pub const METADATA: &str = "metadata.yml";
pub const CONFIG_DIR: &str = "config";
pub const USER_CONFIG: &str = "config/user.yml";
pub const GROUP_CONFIG: &str = "config/group.yml";
pub const CONTAINER_CONFIG: &str = "config/container.yml";
pub const HOOKS_DIR: &str = "hooks";
pub const ROOTFS_DIR: &str = "rootfs";
pub const SNAPSHOTS: &str = "snapshots.yml";
pub const CHECKSUMS: &str = "checksums.yml";

/// How an archive's root file system is encoded: `metadata.yml`'s `format:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveFormat {
    /// `zfs send` streams, one base (and incremental) per dataset.
    Zfs,
    /// One tar of the root file system, as the original writes and reads it.
    Tar,
    /// `btrfs send` streams, one base (and incremental) per dataset.
    Btrfs,
    /// Tar streams in layers, a base and the changes after it: what a
    /// consistent export of a running container on a dir pool writes. The
    /// original reads only `format: tar` archives' base, so it must refuse
    /// these (it refuses every format but `zfs` and `tar`).
    #[serde(rename = "tar-layers")]
    TarLayers,
}

impl ArchiveFormat {
    pub const ALL: [ArchiveFormat; 4] = [
        ArchiveFormat::Zfs,
        ArchiveFormat::Tar,
        ArchiveFormat::Btrfs,
        ArchiveFormat::TarLayers,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveFormat::Zfs => "zfs",
            ArchiveFormat::Tar => "tar",
            ArchiveFormat::Btrfs => "btrfs",
            ArchiveFormat::TarLayers => "tar-layers",
        }
    }

    pub fn parse(name: &str) -> Option<ArchiveFormat> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }

    /// How the root file system's streams are encoded.
    pub fn stream_encoding(self) -> StreamEncoding {
        match self {
            ArchiveFormat::Tar | ArchiveFormat::TarLayers => StreamEncoding::Tar,
            ArchiveFormat::Zfs | ArchiveFormat::Btrfs => StreamEncoding::Dat,
        }
    }
}

impl std::fmt::Display for ArchiveFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// By hand, for a message that lists the formats known.
impl<'de> Deserialize<'de> for ArchiveFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        ArchiveFormat::parse(&name).ok_or_else(|| {
            let known: Vec<&str> = ArchiveFormat::ALL.iter().map(|f| f.as_str()).collect();
            serde::de::Error::custom(format!(
                "unknown format '{name}' (known: {})",
                known.join(", ")
            ))
        })
    }
}

/// Largest YAML document accepted from an archive.
pub const MAX_DOCUMENT: u64 = yaml::MAX_YAML_BYTES as u64;
/// Most hook scripts an archive may carry, and the largest one.
pub const MAX_HOOKS: usize = 64;
pub const MAX_HOOK_BYTES: u64 = 1 << 20;
/// Most snapshots a `snapshots.yml` may list.
const MAX_SNAPSHOTS: usize = 1000;
/// Most subdatasets a `metadata.yml` may list: every entry is checked
/// against the list, so a list as long as the YAML budget allows (~100,000)
/// made reading an archive of as many entries take minutes.
const MAX_DATASETS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveType {
    /// Configs and rootfs.
    Full,
    /// Configs only (used to send a container's configuration).
    Skel,
}

/// `metadata.yml`. Field order is the original's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(rename = "type")]
    pub archive_type: ArchiveType,
    /// How the rootfs is encoded. Archives from before the key existed hold
    /// zfs streams.
    #[serde(default = "default_format")]
    pub format: ArchiveFormat,
    #[serde(default, deserialize_with = "optional_name")]
    pub user: Option<String>,
    #[serde(default, deserialize_with = "optional_name")]
    pub group: Option<String>,
    #[serde(default, deserialize_with = "optional_name")]
    pub container: Option<String>,
    /// Subdatasets relative to the root dataset, root excluded, parents first.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub datasets: Vec<String>,
    /// Unix time of the export.
    #[serde(default)]
    pub exported_at: i64,
    /// Ours: the hash of `checksums.yml` (see `archive::digest`); absent in
    /// the original's archives (which have no checksums) and in ours from
    /// before BLAKE3 (SHA-256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksums: Option<DigestAlgorithm>,
    /// Ours: the archive was written to a pipe, each stream as consecutive
    /// parts of at most this many bytes (`<stream>.part-000001`, ...; see
    /// `archive::parts`). `checksums.yml` lists each stream once, by its
    /// whole name, with the size and digest of its parts' concatenation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_size: Option<u64>,
}

fn default_format() -> ArchiveFormat {
    ArchiveFormat::Zfs
}

/// A name that YAML may have typed as a number (`container: 101`).
fn optional_name<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Int(i64),
    }
    Ok(Option::<Scalar>::deserialize(d)?.map(|s| match s {
        Scalar::Text(t) => t,
        Scalar::Int(i) => i.to_string(),
    }))
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

impl Metadata {
    /// Parses and validates `metadata.yml`.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let meta: Metadata = parse_document(bytes, METADATA)?;
        meta.validate()?;
        Ok(meta)
    }

    pub fn to_yaml(&self) -> Result<String> {
        yaml::to_string(self)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Error::archive(format!("{METADATA}: {why}"));
        if let Some(size) = self.part_size {
            if !(super::parts::MIN_PART..=super::parts::MAX_PART).contains(&size) {
                return Err(bad(format!(
                    "part_size {size} is outside {}..={}",
                    super::parts::MIN_PART,
                    super::parts::MAX_PART
                )));
            }
        }
        for (what, value) in [
            ("user", &self.user),
            ("group", &self.group),
            ("container", &self.container),
        ] {
            if value
                .as_deref()
                .is_some_and(|v| v.is_empty() || v.contains('\0'))
            {
                return Err(bad(format!("{what} is an empty or malformed name")));
            }
        }
        if self.datasets.len() > MAX_DATASETS {
            return Err(bad(format!(
                "lists {} subdatasets, more than {MAX_DATASETS}",
                self.datasets.len()
            )));
        }
        let mut seen = HashSet::new();
        for ds in &self.datasets {
            check_dataset_rel(ds).map_err(|why| bad(format!("dataset '{ds}' {why}")))?;
            if !seen.insert(ds.as_str()) {
                return Err(bad(format!("dataset '{ds}' is listed twice")));
            }
        }
        if self.stream_encoding() == StreamEncoding::Tar && !self.datasets.is_empty() {
            return Err(bad("a tar-format archive cannot hold subdatasets".into()));
        }
        Ok(())
    }

    /// The algorithm of this archive's `checksums.yml`, if it has one.
    pub fn digest_algorithm(&self) -> DigestAlgorithm {
        self.checksums.unwrap_or(DigestAlgorithm::Sha256)
    }

    /// The stream encoding this archive's rootfs uses.
    pub fn stream_encoding(&self) -> StreamEncoding {
        self.format.stream_encoding()
    }

    /// Refuses entries this archive should not hold: streams of datasets the
    /// metadata does not list, or in another encoding than its format's, and
    /// any rootfs content in a skel archive.
    pub fn check_entry(&self, entry: &EntryName) -> Result<()> {
        let name = entry.entry_name();
        let refuse = |why: &str| Err(Error::archive(format!("archive entry '{name}': {why}")));
        let dataset = match entry {
            EntryName::Stream(s) | EntryName::StreamPart(s, _) => {
                if s.encoding != self.stream_encoding() {
                    return refuse(&format!(
                        "does not match the archive's format '{}'",
                        self.format
                    ));
                }
                Some(&s.dataset_rel)
            }
            EntryName::Dir(DirName::Dataset(rel)) => Some(rel),
            EntryName::Dir(DirName::Rootfs) => None,
            _ => return Ok(()),
        };
        if self.archive_type == ArchiveType::Skel {
            return refuse("a skel archive holds no rootfs");
        }
        match dataset {
            Some(rel) if !rel.is_empty() && !self.datasets.contains(rel) => {
                refuse("belongs to a dataset metadata.yml does not list")
            }
            _ => Ok(()),
        }
    }
}

/// Parses `snapshots.yml`: a list of snapshot names (newest first).
pub fn parse_snapshots(bytes: &[u8]) -> Result<Vec<String>> {
    let names: Vec<String> = parse_document(bytes, SNAPSHOTS)?;
    if names.len() > MAX_SNAPSHOTS {
        return Err(Error::archive(format!(
            "{SNAPSHOTS}: lists {} snapshots, more than {MAX_SNAPSHOTS}",
            names.len()
        )));
    }
    for name in &names {
        if !is_snapshot_name(name) {
            return Err(Error::archive(format!(
                "{SNAPSHOTS}: '{name}' is not a valid snapshot name"
            )));
        }
    }
    Ok(names)
}

pub fn snapshots_to_yaml(names: &[String]) -> Result<String> {
    yaml::to_string(&names)
}

/// Snapshot names we accept: 1-200 of `[A-Za-z0-9_.:-]` (the original writes
/// `osctl-base-<time>` and `osctl-incr-<time>`).
pub fn is_snapshot_name(name: &str) -> bool {
    (1..=200).contains(&name.len()) && name.bytes().all(is_dataset_byte)
}

/// Parses `checksums.yml`: a list of `{name, size, blake3}` (or `sha256`),
/// every line by `algorithm`, the one `metadata.yml` names.
pub fn parse_checksums(bytes: &[u8], algorithm: DigestAlgorithm) -> Result<Vec<EntryDigest>> {
    let digests: Vec<EntryDigest> = parse_document(bytes, CHECKSUMS)?;
    let mut seen = HashSet::new();
    for d in &digests {
        let bad = |why: &str| Error::archive(format!("{CHECKSUMS}: entry '{}' {why}", d.name));
        classify(&d.name, EntryKind::File).map_err(|_| bad("is not an entry of the format"))?;
        if d.algorithm != algorithm {
            return Err(bad(&format!(
                "has a {} digest, but metadata.yml says the archive's checksums are {}",
                d.algorithm.name(),
                algorithm.name()
            )));
        }
        if d.hex.len() != 64
            || !d
                .hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad(&format!("has a malformed {}", d.algorithm.name())));
        }
        if !seen.insert(d.name.as_str()) {
            return Err(bad("is listed twice"));
        }
    }
    Ok(digests)
}

pub fn checksums_to_yaml(digests: &[EntryDigest]) -> Result<String> {
    yaml::to_string(&digests)
}

fn parse_document<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    // A broken document in an archive is a broken archive.
    yaml::parse_bytes(bytes, what).map_err(|e| e.reclassify(ErrorKind::Invalid, ErrorKind::Archive))
}

/// What a stream holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Full stream of the base snapshot.
    Base,
    /// Incremental stream from the base snapshot (consistent exports).
    Incremental,
}

impl StreamKind {
    pub fn stem(self) -> &'static str {
        match self {
            StreamKind::Base => "base",
            StreamKind::Incremental => "incremental",
        }
    }
}

/// How a stream is encoded (before compression).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamEncoding {
    /// A send stream (`zfs send`, `btrfs send`).
    Dat,
    /// A GNU tar archive of the rootfs.
    Tar,
}

impl StreamEncoding {
    pub fn extension(self) -> &'static str {
        match self {
            StreamEncoding::Dat => ".dat",
            StreamEncoding::Tar => ".tar",
        }
    }
}

/// A rootfs stream entry: `rootfs/[<dataset_rel>/]<kind><encoding><compression>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamName {
    /// Subdataset relative to the root dataset; empty for the root dataset.
    pub dataset_rel: String,
    pub kind: StreamKind,
    pub encoding: StreamEncoding,
    pub compression: Compression,
}

impl StreamName {
    pub fn entry_name(&self) -> String {
        let file = format!(
            "{}{}{}",
            self.kind.stem(),
            self.encoding.extension(),
            self.compression.suffix()
        );
        if self.dataset_rel.is_empty() {
            format!("{ROOTFS_DIR}/{file}")
        } else {
            format!("{ROOTFS_DIR}/{}/{file}", self.dataset_rel)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DirName {
    Config,
    Hooks,
    /// `hooks/<dir>`: one level of subdirectories, as the original exports.
    HookSubdir(String),
    Rootfs,
    /// `rootfs/<rel>`: where a subdataset's streams live.
    Dataset(String),
}

/// Every entry the format knows, typed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EntryName {
    Metadata,
    UserConfig,
    GroupConfig,
    ContainerConfig,
    /// A user hook script, `hooks/<name>` or `hooks/<dir>/<name>`; holds the
    /// path below `hooks/`.
    Hook(String),
    Stream(StreamName),
    /// Part `n` (from 1) of a stream written in parts.
    StreamPart(StreamName, u32),
    Checksums,
    Snapshots,
    Dir(DirName),
}

impl EntryName {
    /// The name in the archive (directories without the trailing "/").
    pub fn entry_name(&self) -> String {
        match self {
            EntryName::Metadata => METADATA.into(),
            EntryName::UserConfig => USER_CONFIG.into(),
            EntryName::GroupConfig => GROUP_CONFIG.into(),
            EntryName::ContainerConfig => CONTAINER_CONFIG.into(),
            EntryName::Hook(rel) => format!("{HOOKS_DIR}/{rel}"),
            EntryName::Stream(s) => s.entry_name(),
            EntryName::StreamPart(s, n) => super::parts::part_name(&s.entry_name(), *n),
            EntryName::Checksums => CHECKSUMS.into(),
            EntryName::Snapshots => SNAPSHOTS.into(),
            EntryName::Dir(DirName::Config) => CONFIG_DIR.into(),
            EntryName::Dir(DirName::Hooks) => HOOKS_DIR.into(),
            EntryName::Dir(DirName::HookSubdir(d)) => format!("{HOOKS_DIR}/{d}"),
            EntryName::Dir(DirName::Rootfs) => ROOTFS_DIR.into(),
            EntryName::Dir(DirName::Dataset(rel)) => format!("{ROOTFS_DIR}/{rel}"),
        }
    }

    pub fn kind(&self) -> EntryKind {
        match self {
            EntryName::Dir(_) => EntryKind::Dir,
            _ => EntryKind::File,
        }
    }
}

/// Classifies an entry read from an archive (name as the reader gives it:
/// no "./", no trailing "/"), refusing anything that is not part of the format.
pub fn classify(name: &str, kind: EntryKind) -> Result<EntryName> {
    classify_inner(name, kind).ok_or_else(|| {
        let what = match kind {
            EntryKind::File => "file",
            EntryKind::Dir => "directory",
        };
        Error::archive(format!(
            "archive entry '{name}' ({what}) is not part of the export format"
        ))
    })
}

fn classify_inner(name: &str, kind: EntryKind) -> Option<EntryName> {
    use EntryKind::{Dir, File};
    let fixed = match (name, kind) {
        (METADATA, File) => Some(EntryName::Metadata),
        (USER_CONFIG, File) => Some(EntryName::UserConfig),
        (GROUP_CONFIG, File) => Some(EntryName::GroupConfig),
        (CONTAINER_CONFIG, File) => Some(EntryName::ContainerConfig),
        (CHECKSUMS, File) => Some(EntryName::Checksums),
        (SNAPSHOTS, File) => Some(EntryName::Snapshots),
        (CONFIG_DIR, Dir) => Some(EntryName::Dir(DirName::Config)),
        (HOOKS_DIR, Dir) => Some(EntryName::Dir(DirName::Hooks)),
        (ROOTFS_DIR, Dir) => Some(EntryName::Dir(DirName::Rootfs)),
        _ => None,
    };
    if fixed.is_some() {
        return fixed;
    }
    if let Some(rel) = name.strip_prefix("hooks/") {
        let parts: Vec<&str> = rel.split('/').collect();
        if !parts.iter().all(|p| is_hook_component(p)) {
            return None;
        }
        return match (parts.len(), kind) {
            (1, Dir) => Some(EntryName::Dir(DirName::HookSubdir(rel.into()))),
            (1 | 2, File) => Some(EntryName::Hook(rel.into())),
            _ => None,
        };
    }
    let rel = name.strip_prefix("rootfs/")?;
    match kind {
        Dir => {
            check_dataset_rel(rel).ok()?;
            Some(EntryName::Dir(DirName::Dataset(rel.into())))
        }
        File => {
            if let Some((whole, n)) = super::parts::split_part(name) {
                return match classify_inner(whole, File)? {
                    EntryName::Stream(s) => Some(EntryName::StreamPart(s, n)),
                    _ => None,
                };
            }
            let (dataset_rel, file) = rel.rsplit_once('/').unwrap_or(("", rel));
            if !dataset_rel.is_empty() {
                check_dataset_rel(dataset_rel).ok()?;
            }
            let (stem, compression) = Compression::split_suffix(file);
            let (kind, encoding) = match stem {
                "base.dat" => (StreamKind::Base, StreamEncoding::Dat),
                "base.tar" => (StreamKind::Base, StreamEncoding::Tar),
                "incremental.dat" => (StreamKind::Incremental, StreamEncoding::Dat),
                "incremental.tar" => (StreamKind::Incremental, StreamEncoding::Tar),
                _ => return None,
            };
            Some(EntryName::Stream(StreamName {
                dataset_rel: dataset_rel.into(),
                kind,
                encoding,
                compression,
            }))
        }
    }
}

fn is_dataset_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-')
}

fn is_hook_component(part: &str) -> bool {
    !part.is_empty()
        && part != "."
        && part != ".."
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A subdataset name relative to the root dataset: `a` or `a/b`, components
/// of ZFS-safe characters, no `.`/`..`. The error completes "dataset '...' ".
pub fn check_dataset_rel(rel: &str) -> std::result::Result<(), String> {
    if rel.is_empty() || rel.len() > 200 {
        return Err("must be 1-200 bytes long".into());
    }
    for part in rel.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err("has an empty, '.' or '..' component".into());
        }
        if !part.bytes().all(is_dataset_byte) {
            return Err("may hold only letters, digits, '_', '.', ':', '-' and '/'".into());
        }
    }
    Ok(())
}

/// An entry an archive must hold, given its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    Entry(EntryName),
    /// A stream, whatever its compression.
    Stream {
        dataset_rel: String,
        kind: StreamKind,
        encoding: StreamEncoding,
    },
}

impl Expected {
    pub fn matches(&self, entry: &EntryName) -> bool {
        match (self, entry) {
            (Expected::Entry(e), entry) => e == entry,
            (
                Expected::Stream {
                    dataset_rel,
                    kind,
                    encoding,
                },
                EntryName::Stream(s),
            ) => &s.dataset_rel == dataset_rel && s.kind == *kind && s.encoding == *encoding,
            _ => false,
        }
    }

    /// For messages: `rootfs/base.dat[.gz|.zst]`.
    pub fn describe(&self) -> String {
        match self {
            Expected::Entry(e) => e.entry_name(),
            Expected::Stream {
                dataset_rel,
                kind,
                encoding,
            } => {
                let stream = StreamName {
                    dataset_rel: dataset_rel.clone(),
                    kind: *kind,
                    encoding: *encoding,
                    compression: Compression::Off,
                };
                format!("{}[.gz|.zst]", stream.entry_name())
            }
        }
    }
}

/// The entries an archive with this metadata must hold. `config/user.yml` and
/// `config/group.yml` are expected when the metadata names a user or group;
/// incremental streams are optional (inconsistent exports have none), so they
/// are not listed.
pub fn expected_entries(meta: &Metadata) -> Vec<Expected> {
    let mut out = vec![Expected::Entry(EntryName::Metadata)];
    if meta.user.is_some() {
        out.push(Expected::Entry(EntryName::UserConfig));
    }
    if meta.group.is_some() {
        out.push(Expected::Entry(EntryName::GroupConfig));
    }
    out.push(Expected::Entry(EntryName::ContainerConfig));
    if meta.archive_type == ArchiveType::Full {
        let encoding = meta.stream_encoding();
        let datasets = std::iter::once("").chain(meta.datasets.iter().map(String::as_str));
        for rel in datasets {
            out.push(Expected::Stream {
                dataset_rel: rel.into(),
                kind: StreamKind::Base,
                encoding,
            });
        }
        if encoding == StreamEncoding::Dat {
            out.push(Expected::Entry(EntryName::Snapshots));
        }
    }
    out
}

/// Fails naming the first expected entry missing from `seen`.
pub fn check_complete(meta: &Metadata, seen: &[EntryName]) -> Result<()> {
    for expected in expected_entries(meta) {
        if !seen.iter().any(|e| expected.matches(e)) {
            return Err(Error::archive(format!(
                "archive is incomplete: '{}' is missing",
                expected.describe()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
