//! The order and multiplicity of an archive's entries: the one grammar that
//! `ct import` and `archive show|verify` both apply, entry by entry, before
//! either reads an entry's content.
//!
//! ```text
//! archive  = metadata.yml head streams tail
//! head     = { config/ | config/{user,group,container}.yml | hooks/... }
//! streams  = { rootfs/ | rootfs/<ds>/ | stream }
//! stream   = rootfs/[<ds>/]{base,incremental}.{dat,tar}[.gz|.zst]
//!          | { <that name>.part-NNNNNN }        (with part_size: in metadata.yml,
//!                                                000001 up, consecutive, see `parts`)
//! tail     = [checksums.yml] [snapshots.yml]        (snapshots.yml may also come first)
//! ```
//! No name twice; entries of datasets and encodings the metadata lists only;
//! per dataset one base, then at most one incremental, the root dataset's base
//! before any other stream; nothing after `checksums.yml` but `snapshots.yml`
//! (it covers everything before it). [`Grammar::finish`] then asks for what
//! the metadata says must be there.

use std::collections::HashSet;
use std::io::Read;

use super::meta::{self, EntryName, Metadata, StreamEncoding, StreamKind, StreamName};
use super::{Entry, EntryDigest, EntryKind};
use crate::error::{Error, Result};

/// Most entries in an archive we read: an export writes a dozen, plus a few
/// per subdataset and hook. Keeps the checks of order bounded whatever the
/// input.
pub const MAX_ENTRIES: usize = 10_000;

/// Where the reading is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Configs and hooks.
    Head,
    /// Root file system streams.
    Streams,
    /// `checksums.yml` and `snapshots.yml`.
    Tail,
}

/// The state of one reading of an archive, with the archive's own
/// documents (`metadata.yml`, `checksums.yml`, `snapshots.yml`) and the
/// digests of the entries `checksums.yml` covers.
pub struct Grammar {
    metadata: Option<Metadata>,
    phase: Phase,
    /// Entries admitted, in order, and as a set (to refuse duplicates).
    seen: Vec<EntryName>,
    names: HashSet<EntryName>,
    hooks: usize,
    /// Whether `checksums.yml` was admitted: nothing after it is covered.
    checksums_admitted: bool,
    checksums: Option<Vec<EntryDigest>>,
    snapshots: Option<Vec<String>>,
    /// Digests of the file entries read before `checksums.yml`.
    digests: Vec<EntryDigest>,
    /// The stream whose parts are being read, and the last part's number.
    open_parts: Option<(StreamName, u32)>,
}

/// What [`Grammar::finish`] found.
#[derive(Debug)]
pub struct Finished<'a> {
    pub metadata: &'a Metadata,
    /// `snapshots.yml`, newest first, if the archive has one.
    pub snapshots: Option<&'a [String]>,
    /// How many entries matched `checksums.yml`; None without one (or when
    /// digests were not compared).
    pub checksums_verified: Option<usize>,
}

impl Default for Grammar {
    fn default() -> Self {
        Grammar::new()
    }
}

impl Grammar {
    pub fn new() -> Grammar {
        Grammar {
            metadata: None,
            phase: Phase::Head,
            seen: Vec::new(),
            names: HashSet::new(),
            hooks: 0,
            checksums_admitted: false,
            checksums: None,
            snapshots: None,
            digests: Vec::new(),
            open_parts: None,
        }
    }

    /// Judges the next entry, named `shown` in the archive, before its
    /// content is read. `metadata.yml` must be admitted first and its parsed
    /// content given to [`Grammar::set_metadata`] before the next entry.
    pub fn admit(&mut self, name: &EntryName, shown: &str) -> Result<()> {
        let bad = |why: String| Err(Error::archive(why));
        let open_parts = self.open_parts.take();
        if let EntryName::StreamPart(stream, n) = name {
            if *n > 1 {
                return self.admit_next_part(open_parts, stream, *n, shown);
            }
        }
        if self.seen.len() >= MAX_ENTRIES {
            return bad(format!("the archive has more than {MAX_ENTRIES} entries"));
        }
        if !self.names.insert(name.clone()) {
            return bad(format!("'{shown}' appears twice"));
        }
        let Some(metadata) = &self.metadata else {
            if *name != EntryName::Metadata || !self.seen.is_empty() {
                return bad(format!(
                    "the archive does not start with metadata.yml (it starts with '{shown}'): not an osctl archive"
                ));
            }
            self.seen.push(name.clone());
            return Ok(());
        };
        metadata.check_entry(name)?;
        if self.checksums_admitted && *name != EntryName::Snapshots {
            return bad(format!(
                "'{shown}' comes after checksums.yml, which does not cover it"
            ));
        }
        check_part_layout(name, shown, metadata.part_size)?;
        let late = |what: &str| bad(format!("'{shown}' comes after the {what}"));
        match name {
            EntryName::Metadata => unreachable!("a second metadata.yml is a duplicate"),
            EntryName::UserConfig | EntryName::GroupConfig | EntryName::ContainerConfig
                if self.phase > Phase::Head =>
            {
                return late("root file system")
            }
            EntryName::Hook(_) if self.phase > Phase::Head => return late("root file system"),
            EntryName::Hook(_) => {
                self.hooks += 1;
                if self.hooks > meta::MAX_HOOKS {
                    return bad(format!("more than {} hook scripts", meta::MAX_HOOKS));
                }
            }
            EntryName::Stream(_)
            | EntryName::Dir(meta::DirName::Rootfs)
            | EntryName::Dir(meta::DirName::Dataset(_))
                if self.phase > Phase::Streams =>
            {
                return late("checksums or snapshots")
            }
            EntryName::Stream(stream) => {
                self.check_stream_order(stream, shown)?;
                self.phase = Phase::Streams;
            }
            EntryName::StreamPart(stream, _) => {
                self.check_stream_order(stream, shown)?;
                self.phase = Phase::Streams;
                // The stream counts once, by its whole name.
                let whole = EntryName::Stream(stream.clone());
                self.names.insert(whole.clone());
                self.seen.push(whole);
                self.open_parts = Some((stream.clone(), 1));
                return Ok(());
            }
            EntryName::Dir(meta::DirName::Rootfs) | EntryName::Dir(meta::DirName::Dataset(_)) => {
                self.phase = Phase::Streams;
            }
            EntryName::Checksums => {
                self.phase = Phase::Tail;
                self.checksums_admitted = true;
            }
            EntryName::Snapshots => self.phase = Phase::Tail,
            _ => {}
        }
        self.seen.push(name.clone());
        Ok(())
    }

    /// Part `n` > 1 of `stream`: only right after part `n - 1`.
    fn admit_next_part(
        &mut self,
        open: Option<(StreamName, u32)>,
        stream: &StreamName,
        n: u32,
        shown: &str,
    ) -> Result<()> {
        match open {
            Some((s, last)) if s == *stream && last + 1 == n => {
                self.open_parts = Some((s, n));
                Ok(())
            }
            _ => Err(Error::archive(format!(
                "'{shown}' does not follow part {} of its stream",
                n - 1
            ))),
        }
    }

    /// The digest of a stream read in parts (see `parts::PartsReader`).
    pub fn keep_stream_digest(&mut self, digest: EntryDigest) {
        if !self.checksums_admitted {
            self.digests.push(digest);
        }
    }

    /// Reads an admitted entry if it is one of the archive's own documents
    /// (`metadata.yml`, `checksums.yml`, `snapshots.yml`); false for others.
    pub fn read_own<R: Read>(
        &mut self,
        entry: &mut Entry<'_, R>,
        name: &EntryName,
    ) -> Result<bool> {
        match name {
            EntryName::Metadata => {
                let bytes = entry.read_to_vec(meta::MAX_DOCUMENT)?;
                let metadata = Metadata::parse(&bytes)?;
                entry.use_digest(metadata.digest_algorithm());
                self.set_metadata(metadata);
            }
            EntryName::Checksums => {
                let bytes = entry.read_to_vec(meta::MAX_DOCUMENT)?;
                let metadata = self.metadata.as_ref().expect("admitted after metadata.yml");
                let digests = meta::parse_checksums(&bytes, metadata.digest_algorithm())?;
                self.checksums = Some(digests);
            }
            EntryName::Snapshots => {
                let bytes = entry.read_to_vec(meta::MAX_DOCUMENT)?;
                self.snapshots = Some(meta::parse_snapshots(&bytes)?);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// After an admitted entry was read to its end: keeps its digest when
    /// `checksums.yml` covers it.
    pub fn keep_digest<R: Read>(&mut self, name: &EntryName, entry: &Entry<'_, R>) {
        if entry.kind() == EntryKind::File
            && !self.checksums_admitted
            && *name != EntryName::Checksums
            && !matches!(name, EntryName::StreamPart(..))
        {
            self.digests.extend(entry.digest());
        }
    }

    /// `metadata.yml`, parsed: what the rest of the archive is judged by.
    pub fn set_metadata(&mut self, metadata: Metadata) {
        self.metadata = Some(metadata);
    }

    pub fn metadata(&self) -> Option<&Metadata> {
        self.metadata.as_ref()
    }

    /// `snapshots.yml`, once read.
    pub fn snapshots(&self) -> Option<&[String]> {
        self.snapshots.as_deref()
    }

    /// Whether any stream was admitted yet.
    pub fn in_streams(&self) -> bool {
        self.phase >= Phase::Streams
    }

    /// After the last entry: everything the metadata asks for is there, send
    /// streams have their snapshots named, and, with `compare_digests`, every
    /// covered entry matches `checksums.yml`.
    pub fn finish(&self, compare_digests: bool) -> Result<Finished<'_>> {
        let metadata = self
            .metadata
            .as_ref()
            .ok_or_else(|| Error::archive("metadata.yml not found: not an osctl archive"))?;
        meta::check_complete(metadata, &self.seen)?;
        // Ours name their checksums' algorithm: then a missing checksums.yml
        // is an archive cut short (the original's have none).
        if metadata.checksums.is_some() && self.checksums.is_none() {
            return Err(Error::archive(
                "archive is incomplete: checksums.yml is missing, which metadata.yml announces",
            ));
        }
        if metadata.stream_encoding() == StreamEncoding::Dat
            && metadata.archive_type == meta::ArchiveType::Full
            && self.snapshots.as_ref().is_none_or(|s| s.is_empty())
        {
            return Err(Error::archive(
                "snapshots.yml names no snapshot, but the archive holds send streams",
            ));
        }
        let checksums_verified = match &self.checksums {
            Some(expected) if compare_digests => Some(check_checksums(expected, &self.digests)?),
            _ => None,
        };
        Ok(Finished {
            metadata,
            snapshots: self.snapshots.as_deref(),
            checksums_verified,
        })
    }

    /// Whether the archive had a `checksums.yml`.
    pub fn has_checksums(&self) -> bool {
        self.checksums.is_some()
    }

    /// One base stream per dataset, the root's first, then at most one
    /// incremental stream each: the order the importer receives them in.
    fn check_stream_order(&self, stream: &StreamName, shown: &str) -> Result<()> {
        let admitted = |dataset: &str, kind: StreamKind| {
            self.seen.iter().any(
                |e| matches!(e, EntryName::Stream(s) if s.dataset_rel == dataset && s.kind == kind),
            )
        };
        let dataset = stream.dataset_rel.as_str();
        let has_base = admitted(dataset, StreamKind::Base);
        let bad = |why: &str| Err(Error::archive(format!("'{shown}': {why}")));
        match stream.kind {
            StreamKind::Base if has_base => return bad("a second base stream"),
            StreamKind::Incremental if !has_base => {
                return bad("an incremental stream before its base")
            }
            StreamKind::Incremental if admitted(dataset, StreamKind::Incremental) => {
                return bad("a second incremental stream")
            }
            _ => {}
        }
        if !dataset.is_empty() && !admitted("", StreamKind::Base) {
            return bad("comes before the root dataset's base stream");
        }
        Ok(())
    }
}

/// Compares the digests of the entries read with `checksums.yml`: every
/// entry it lists must be there with its size and digest, and every file
/// entry before it must be listed. Returns how many matched.
pub(crate) fn check_checksums(expected: &[EntryDigest], seen: &[EntryDigest]) -> Result<usize> {
    for want in expected {
        match seen.iter().find(|d| d.name == want.name) {
            Some(got)
                if got.size == want.size
                    && got.algorithm == want.algorithm
                    && got.hex.eq_ignore_ascii_case(&want.hex) => {}
            Some(got) => {
                return Err(Error::archive(format!(
                    "archive entry '{}' is damaged: checksums.yml says {} bytes with {} {}, \
                     the archive holds {} bytes with {} {}",
                    want.name,
                    want.size,
                    want.algorithm.name(),
                    want.hex,
                    got.size,
                    got.algorithm.name(),
                    got.hex
                )))
            }
            None => {
                return Err(Error::archive(format!(
                    "checksums.yml lists '{}', which the archive lacks",
                    want.name
                )))
            }
        }
    }
    if let Some(extra) = seen
        .iter()
        .find(|d| !expected.iter().any(|w| w.name == d.name))
    {
        return Err(Error::archive(format!(
            "archive entry '{}' is not listed in checksums.yml",
            extra.name
        )));
    }
    Ok(expected.len())
}

/// Streams come whole when metadata.yml sets no `part_size`, in parts when
/// it does, never mixed.
fn check_part_layout(name: &EntryName, shown: &str, part_size: Option<u64>) -> Result<()> {
    match (name, part_size) {
        (EntryName::Stream(_), Some(_)) => Err(Error::archive(format!(
            "'{shown}' is a whole stream, but metadata.yml says streams are in parts"
        ))),
        (EntryName::StreamPart(..), None) => Err(Error::archive(format!(
            "'{shown}' is a stream part, but metadata.yml sets no part_size"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(format: &str, datasets: &[&str]) -> Metadata {
        let text = format!(
            "type: full\nformat: {format}\nuser: u\ngroup: /g\ncontainer: c\ndatasets: [{}]\nexported_at: 1\n",
            datasets.join(", ")
        );
        Metadata::parse(text.as_bytes()).unwrap()
    }

    /// Admits `names` in order after a metadata.yml of `format`; the first
    /// error, if any.
    fn judge(format: &str, datasets: &[&str], names: &[&str]) -> Result<Grammar> {
        let mut g = Grammar::new();
        g.admit(&EntryName::Metadata, "metadata.yml")?;
        g.set_metadata(metadata(format, datasets));
        for shown in names {
            let kind = if shown.ends_with('/') {
                EntryKind::Dir
            } else {
                EntryKind::File
            };
            let trimmed = shown.trim_end_matches('/');
            g.admit(&meta::classify(trimmed, kind)?, trimmed)?;
        }
        Ok(g)
    }

    fn refusal(format: &str, names: &[&str]) -> String {
        match judge(format, &["var"], names) {
            Ok(_) => panic!("{names:?} admitted"),
            Err(e) => e.to_string(),
        }
    }

    const HEAD: [&str; 4] = [
        "config/",
        "config/user.yml",
        "config/group.yml",
        "config/container.yml",
    ];

    #[test]
    fn the_writers_order_is_admitted_and_complete() {
        let mut names = HEAD.to_vec();
        names.extend([
            "hooks/",
            "hooks/pre-start",
            "rootfs/",
            "rootfs/base.dat.gz",
            "rootfs/var/",
            "rootfs/var/base.dat",
            "rootfs/incremental.dat.gz",
            "rootfs/var/incremental.dat",
            "checksums.yml",
            "snapshots.yml",
        ]);
        let mut g = judge("zfs", &["var"], &names).unwrap();
        let err = g.finish(true).unwrap_err().to_string();
        assert!(err.contains("names no snapshot"), "{err}");
        g.snapshots = Some(vec!["s".to_string()]);
        g.finish(true).unwrap();
    }

    #[test]
    fn every_entry_at_most_once() {
        for twice in [
            "config/container.yml",
            "config/user.yml",
            "hooks/x",
            "rootfs/base.dat",
        ] {
            let mut names = HEAD.to_vec();
            names.extend(["hooks/x", "rootfs/base.dat"]);
            names.push(twice);
            let err = refusal("zfs", &names);
            assert!(
                err.contains("appears twice") || err.contains("second"),
                "{twice}: {err}"
            );
        }
        let mut g = Grammar::new();
        g.admit(&EntryName::Metadata, "metadata.yml").unwrap();
        let err = g.admit(&EntryName::Metadata, "metadata.yml").unwrap_err();
        assert!(err.to_string().contains("appears twice"), "{err}");
    }

    #[test]
    fn order_is_enforced() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["rootfs/base.dat", "config/user.yml"],
                "after the root file system",
            ),
            (
                &["rootfs/base.dat", "hooks/x"],
                "after the root file system",
            ),
            (
                &["snapshots.yml", "rootfs/base.dat"],
                "after the checksums or snapshots",
            ),
            (
                &["rootfs/base.dat", "checksums.yml", "config/"],
                "does not cover it",
            ),
            (&["rootfs/incremental.dat"], "before its base"),
            (&["rootfs/var/base.dat"], "before the root dataset's base"),
            (
                &[
                    "rootfs/base.dat",
                    "rootfs/incremental.dat",
                    "rootfs/incremental.dat.gz",
                ],
                "a second incremental",
            ),
            (&["rootfs/base.tar"], "format"),
            (&["rootfs/other/base.dat"], "does not list"),
        ];
        for (names, want) in cases {
            let err = refusal("zfs", names);
            assert!(err.contains(want), "{names:?}: {err}");
        }
        let mut g = Grammar::new();
        let err = g
            .admit(&EntryName::UserConfig, "config/user.yml")
            .unwrap_err();
        assert!(err.to_string().contains("does not start with metadata.yml"));
    }

    #[test]
    fn hooks_and_entries_are_bounded() {
        let hooks: Vec<String> = (0..=meta::MAX_HOOKS)
            .map(|i| format!("hooks/h{i}"))
            .collect();
        let names: Vec<&str> = hooks.iter().map(String::as_str).collect();
        let err = refusal("zfs", &names);
        assert!(err.contains("more than 64 hook scripts"), "{err}");
    }

    #[test]
    fn completeness_follows_the_metadata() {
        let g = judge("tar", &[], &HEAD).unwrap();
        let err = g.finish(true).err().unwrap().to_string();
        assert!(err.contains("rootfs/base.tar"), "{err}");
        let mut names = HEAD.to_vec();
        names.push("rootfs/base.tar.gz");
        assert!(judge("tar", &[], &names).unwrap().finish(true).is_ok());
        let err = Grammar::new().finish(true).err().unwrap().to_string();
        assert!(err.contains("metadata.yml not found"), "{err}");
    }

    #[test]
    fn checksums_must_cover_every_entry() {
        let digest = |name: &str, hex: &str| EntryDigest {
            name: name.into(),
            size: 1,
            algorithm: crate::archive::DigestAlgorithm::Blake3,
            hex: hex.repeat(64),
        };
        let seen = [digest("metadata.yml", "a"), digest("rootfs/base.tar", "b")];
        assert_eq!(check_checksums(&seen, &seen).unwrap(), 2);
        let err = check_checksums(&seen[..1], &seen).unwrap_err().to_string();
        assert!(err.contains("'rootfs/base.tar' is not listed"), "{err}");
        let err = check_checksums(&[digest("config/user.yml", "c")], &seen[..0])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("lists 'config/user.yml', which the archive lacks"),
            "{err}"
        );
    }
}
