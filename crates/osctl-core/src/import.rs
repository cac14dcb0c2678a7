//! `osctl ct import`: a container from an archive, treated as hostile.
//!
//! The archive is read once, in order, as a stream. Only known entry names are
//! accepted; configs are parsed under a budget and checked against the trust
//! policy before anything is created. The root file system is built under a
//! staging name; users, groups and the container's config are created only at
//! the commit, after every stream was received and every checksum matched. A
//! failure undoes everything; a killed import leaves a journal that the next
//! command replays.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use crate::accounts::{self, MapRequest};
use crate::archive::compress::{self, Compression};
use crate::archive::grammar::Grammar;
use crate::archive::meta::{
    self, ArchiveType, EntryName, Metadata, StreamEncoding, StreamKind, StreamName,
};
use crate::archive::{ArchiveReader, CopyError, Entry};
use crate::cmd::OffsetWatch;
use crate::datasets;
use crate::error::{Context, Error, Result};
use crate::failpoint;
use crate::filepolicy::{self, FilePolicy};
use crate::fstar::{self, ExtractOptions};
use crate::idmap::{IdMap, IdRange, SubordinateFloor};
use crate::interrupt;
use crate::journal::{ImportRecord, Journal};
use crate::lock::Lock;
use crate::model::{ContainerConfig, GroupConfig, UserConfig};
use crate::names;
use crate::netif;
use crate::pool::Pool;
use crate::progress::Progress;
use crate::storage;
use crate::subid::SubIds;
use crate::trust;
use crate::yaml;

#[derive(Default)]
pub struct ImportOptions {
    pub as_id: Option<String>,
    pub as_user: Option<String>,
    pub as_group: Option<String>,
    pub trusted: bool,
    /// A clone (`--as-id` other than the archive's id) keeps the addresses
    /// of its network interfaces.
    pub keep_addresses: bool,
    pub progress: Option<Progress>,
}

/// What an import made, and what the admin should be told about it.
#[derive(Debug, Clone, Default)]
pub struct Imported {
    pub id: String,
    pub pool: String,
    pub user: String,
    pub group: String,
    /// The import created the user (else it existed).
    pub new_user: bool,
    /// The id map allocated for a new user whose archive brought none.
    pub fresh_ids: Option<String>,
    pub new_group: bool,
    /// A clone whose hostname was its id takes the new id: (old, new).
    pub hostname: Option<(String, String)>,
    /// One line each (e.g. the addresses a clone dropped).
    pub notes: Vec<String>,
}

/// Who the container will belong to, decided before anything is created.
enum UserPlan {
    Existing(String),
    /// Created at the commit; maps from the archive, or allocated when None.
    Create {
        name: String,
        config: Option<UserConfig>,
    },
}

enum GroupPlan {
    Existing(String),
    Create(String),
}

impl UserPlan {
    fn name(&self) -> &str {
        match self {
            UserPlan::Existing(n) | UserPlan::Create { name: n, .. } => n,
        }
    }
}

impl GroupPlan {
    fn name(&self) -> &str {
        match self {
            GroupPlan::Existing(n) | GroupPlan::Create(n) => n,
        }
    }
}

/// A hook script from the archive. The original installs a hook with the
/// mode of its entry and runs it only when executable: the bit is kept.
struct Hook {
    rel: String,
    body: Vec<u8>,
    executable: bool,
}

/// What the entries before the root file system said.
#[derive(Default)]
struct Head {
    user: Option<UserConfig>,
    group: Option<GroupConfig>,
    container: Option<ContainerConfig>,
    hooks: Vec<Hook>,
}

/// Everything decided from the head, and held while the streams arrive.
struct Plan {
    id: String,
    staging: String,
    metadata: Metadata,
    container: ContainerConfig,
    user: UserPlan,
    group: GroupPlan,
    hooks: Vec<Hook>,
    /// Owners of files must be below this (the user's map size).
    max_id: Option<u32>,
    journal: Journal<ImportRecord>,
    lock: Lock,
}

/// What [`Importer::decide`] settles under the container's lock.
struct Decided {
    staging: String,
    user: UserPlan,
    group: GroupPlan,
    hooks: Vec<Hook>,
    max_id: Option<u32>,
    journal: Journal<ImportRecord>,
}

/// Imports the archive at `path` into `pool`; returns the new container's id.
pub fn import(pool: &Pool, path: &Path, opts: &ImportOptions) -> Result<String> {
    import_report(pool, path, opts).map(|i| i.id)
}

/// [`import`], with the notes for the admin.
pub fn import_report(pool: &Pool, path: &Path, opts: &ImportOptions) -> Result<Imported> {
    interrupt::install();
    let file = File::open(path).ctx(|| format!("cannot open archive {}", path.display()))?;
    not_an_archive(path)?;
    let mut importer = Importer {
        pool,
        opts,
        progress: opts.progress.clone().unwrap_or_else(Progress::hidden),
        head: Head::default(),
        grammar: Grammar::new(),
        plan: None,
        notes: Vec::new(),
        hostname: None,
    };
    let result = importer.run(ArchiveReader::new(file));
    importer.progress.finish();
    let result = match result {
        Ok(id) => Ok(id),
        Err(e) => {
            let e = interrupt::explain(e);
            match importer.plan.take() {
                Some(plan) => Err(match undo(pool, plan) {
                    Ok(()) => e,
                    Err(u) => e.context(format!("(undoing the import failed too: {u})")),
                }),
                None => Err(e),
            }
        }
    };
    result
        .map(|imported| Imported {
            notes: std::mem::take(&mut importer.notes),
            hostname: importer.hostname.take(),
            ..imported
        })
        .map_err(|e| e.context(format!("cannot import {}", path.display())))
}

struct Importer<'a> {
    pool: &'a Pool,
    opts: &'a ImportOptions,
    progress: Progress,
    head: Head,
    grammar: Grammar,
    plan: Option<Plan>,
    /// Lines for the admin (see [`Imported`]).
    notes: Vec<String>,
    hostname: Option<(String, String)>,
}

impl Importer<'_> {
    fn run(&mut self, mut reader: ArchiveReader<File>) -> Result<Imported> {
        while let Some(mut entry) = reader.next_entry()? {
            let name = meta::classify(entry.name(), entry.kind())?;
            self.grammar.admit(&name, entry.name())?;
            if !self.grammar.read_own(&mut entry, &name)? {
                self.entry(&mut entry, name.clone())?;
            }
            if entry.remaining() > 0 {
                return Err(Error::Archive(format!(
                    "archive entry '{}' was not read to its end",
                    entry.name()
                )));
            }
            self.grammar.keep_digest(&name, &entry);
        }
        let finished = self.grammar.finish(true)?;
        let snapshots = finished.snapshots.unwrap_or_default().to_vec();
        if self.plan.is_none() {
            return Err(Error::Archive(
                "the archive holds no root file system".into(),
            ));
        }
        self.finish_datasets(&snapshots)?;
        self.check_private_dirs()?;
        self.check_received()?;
        let plan = self.plan.as_mut().expect("checked above");
        failpoint::hit("import-before-commit");
        let fresh_ids = commit(self.pool, plan, self.opts.trusted)?;
        failpoint::hit("import-after-commit");
        let plan = self.plan.take().expect("checked above");
        plan.journal.finish()?;
        Ok(Imported {
            pool: self.pool.name.clone(),
            user: plan.user.name().to_string(),
            group: plan.group.name().to_string(),
            new_user: matches!(plan.user, UserPlan::Create { .. }),
            fresh_ids,
            new_group: matches!(plan.group, GroupPlan::Create(_)),
            id: plan.id,
            ..Default::default()
        })
    }

    /// Reads an entry the grammar admitted.
    fn entry(&mut self, entry: &mut Entry<'_, File>, name: EntryName) -> Result<()> {
        let shown = entry.name().to_string();
        match name {
            EntryName::UserConfig | EntryName::GroupConfig | EntryName::ContainerConfig => {
                let bytes = entry.read_to_vec(meta::MAX_DOCUMENT)?;
                let bad = |e: Error| Error::Archive(e.to_string());
                match name {
                    EntryName::UserConfig => {
                        self.head.user = Some(yaml::parse_bytes(&bytes, &shown).map_err(bad)?)
                    }
                    EntryName::GroupConfig => {
                        self.head.group = Some(yaml::parse_bytes(&bytes, &shown).map_err(bad)?)
                    }
                    _ => {
                        self.head.container =
                            Some(ContainerConfig::parse(&bytes, &shown).map_err(bad)?)
                    }
                }
            }
            EntryName::Hook(rel) => {
                let executable = entry.mode() & 0o111 != 0;
                let body = entry.read_to_vec(meta::MAX_HOOK_BYTES)?;
                self.head.hooks.push(Hook {
                    rel,
                    body,
                    executable,
                });
            }
            EntryName::Dir(_) => {}
            EntryName::Stream(stream) => {
                if self.plan.is_none() {
                    self.plan = Some(self.make_plan()?);
                }
                self.receive(entry, &stream)?;
            }
            // The grammar's own documents, read by it.
            EntryName::Metadata | EntryName::Checksums | EntryName::Snapshots => {}
        }
        Ok(())
    }

    /// Decides id, user and group, applies the trust policy, takes the lock
    /// and starts the journal: everything before the first byte is written.
    fn make_plan(&mut self) -> Result<Plan> {
        let pool = self.pool;
        let opts = self.opts;
        let metadata = self
            .grammar
            .metadata()
            .cloned()
            .expect("admitted after metadata.yml");
        if metadata.archive_type != ArchiveType::Full {
            return Err(Error::Refused(
                "the archive is a config-only (skel) archive: it holds no root file system to import".into(),
            ));
        }
        let mut container = self.head.container.take().ok_or_else(|| {
            Error::Archive("config/container.yml not found before the root file system".into())
        })?;
        let id = match (&opts.as_id, &metadata.container) {
            (Some(id), _) | (None, Some(id)) => id.clone(),
            (None, None) => {
                return Err(Error::Invalid(
                    "the archive names no container: give one with --as-id".into(),
                ))
            }
        };
        names::container_id(&id).map_err(|e| match &opts.as_id {
            Some(_) => e,
            None => Error::Archive(format!("metadata.yml: {e}")),
        })?;
        for ds in &metadata.datasets {
            names::subdataset(ds).map_err(|e| Error::Archive(format!("metadata.yml: {e}")))?;
        }
        check_format(pool, &metadata)?;
        // Mounts of datasets the archive does not bring would fail at start.
        datasets::check_mounts(&container, &metadata.datasets)
            .map_err(|e| Error::Archive(format!("{}: {e}", meta::CONTAINER_CONFIG)))?;
        // A clone: another id than the archive's own.
        let clone = opts.as_id.is_some()
            && metadata.container.is_some()
            && opts.as_id != metadata.container;
        self.notes.extend(netif::shape_for_import(
            &id,
            &mut container,
            clone,
            opts.keep_addresses,
        ));
        if clone {
            self.hostname = rename_host(&mut container, metadata.container.as_deref(), &id);
        }
        let lock = pool.lock_ct(&id)?;
        let decided = match self.decide(&id, &metadata, &container) {
            Ok(decided) => decided,
            Err(e) => {
                let _ = pool.unlock_ct(&id, lock);
                return Err(e);
            }
        };
        failpoint::hit("import-after-journal");
        Ok(Plan {
            id,
            staging: decided.staging,
            metadata,
            container,
            user: decided.user,
            group: decided.group,
            hooks: decided.hooks,
            max_id: decided.max_id,
            journal: decided.journal,
            lock,
        })
    }

    /// The part of [`Importer::make_plan`] done under the container's lock.
    fn decide(
        &mut self,
        id: &str,
        metadata: &Metadata,
        container: &ContainerConfig,
    ) -> Result<Decided> {
        let pool = self.pool;
        let opts = self.opts;
        if pool.ct_exists(id) || pool.storage.exists(id)? {
            return Err(Error::Exists(format!(
                "container '{id}' already exists in pool '{}': import it under another id \
                 with --as-id NEW_ID",
                pool.name
            )));
        }
        let user = plan_user(pool, id, metadata, self.head.user.as_ref(), opts)?;
        let group = plan_group(pool, metadata, opts)?;
        let hooks = std::mem::take(&mut self.head.hooks);
        let concerns = self.concerns(container, &user, &group, &hooks)?;
        check_trust(&concerns, opts.trusted)?;
        netif::check_import(pool, container)?;
        let max_id = id_range(pool, &user, container)?;
        let staging = storage::staging_name(id);
        if pool.storage.exists(&staging)? {
            // A dead import's leftover, under our lock now: ours to remove.
            pool.storage.destroy(&staging, "")?;
        }
        let journal = Journal::begin(
            pool,
            ImportRecord {
                pid: std::process::id(),
                id: id.to_string(),
                staging: staging.clone(),
                ..Default::default()
            },
        )?;
        Ok(Decided {
            staging,
            user,
            group,
            hooks,
            max_id,
            journal,
        })
    }

    fn concerns(
        &self,
        container: &ContainerConfig,
        user: &UserPlan,
        group: &GroupPlan,
        hooks: &[Hook],
    ) -> Result<Vec<String>> {
        let mut concerns = trust::container_concerns(container);
        concerns.extend(netif::import_concerns(self.pool, container)?);
        if !hooks.is_empty() {
            concerns.push(format!("it carries {} hook script(s)", hooks.len()));
        }
        if let (GroupPlan::Create(path), Some(g)) = (group, &self.head.group) {
            concerns.extend(trust::group_concerns(path, g));
        }
        if let UserPlan::Create {
            name,
            config: Some(config),
        } = user
        {
            concerns.extend(user_concerns(
                self.pool,
                name,
                config,
                &SubIds::system().taken()?,
            )?);
        }
        Ok(concerns)
    }

    fn receive(&mut self, entry: &mut Entry<'_, File>, stream: &StreamName) -> Result<()> {
        interrupt::check()?;
        let plan = self.plan.as_ref().expect("planned before the first stream");
        let name = entry.name().to_string();
        let dataset = stream.dataset_rel.as_str();
        self.progress
            .step_bytes(format!("receiving {name}"), Some(entry.size()));
        let storage = &self.pool.storage;
        if stream.kind == StreamKind::Base
            && dataset.is_empty()
            && stream.encoding == StreamEncoding::Tar
        {
            storage.create(&plan.staging, "")?;
        }
        failpoint::hit("import-in-stream");
        let in_place = stream.encoding == StreamEncoding::Dat
            && stream.compression == Compression::Off
            && self.receive_in_place(entry, &plan.staging, dataset)?;
        match stream.encoding {
            // Received straight from the archive file: nothing left to copy.
            _ if in_place => {}
            StreamEncoding::Tar => {
                let opts = ExtractOptions {
                    policy: self.file_policy(),
                    // A base stream of the original may hold files named `.wh.*`.
                    whiteouts: stream.kind == StreamKind::Incremental,
                };
                let root = storage.rootfs(&plan.staging);
                let buffered = BufReader::with_capacity(
                    1 << 20,
                    CountingReader {
                        inner: &mut *entry,
                        progress: &self.progress,
                    },
                );
                let mut input = compress::decompressor(stream.compression, buffered)
                    .ctx(|| format!("cannot read {name}"))?;
                fstar::extract(&mut input, &root, &opts)
                    .map_err(|e| e.context(format!("archive entry '{name}'")))?;
                // The end blocks and the compressor's trailer (its checksum).
                io::copy(&mut input, &mut io::sink())
                    .map_err(|e| Error::Archive(format!("archive entry '{name}': {e}")))?;
            }
            StreamEncoding::Dat => {
                let mut recv = storage.receive(&plan.staging, dataset, &self.file_policy())?;
                // Spliced without a copy when the receiver takes the stream
                // unchecked (zfs); through userspace when it must pass a check
                // first (btrfs), or be decompressed.
                let splice = stream.compression == Compression::Off;
                let copied = match recv.splice_target() {
                    Some(stdin) if splice => {
                        entry.splice_to(stdin).map(|n| self.progress.add_bytes(n))
                    }
                    _ => {
                        // Counted as read from the archive, as the entry's size.
                        let counted = CountingReader {
                            inner: &mut *entry,
                            progress: &self.progress,
                        };
                        let buffered = BufReader::with_capacity(1 << 20, counted);
                        match compress::decompressor(stream.compression, buffered) {
                            Ok(mut input) => recv.copy_from(&mut input, |_| ()).map(drop),
                            Err(e) => {
                                Err(CopyError::Source(Error::Archive(format!("{name}: {e}"))))
                            }
                        }
                    }
                };
                match copied {
                    Err(CopyError::Source(e)) => {
                        return Err(e.context(format!("archive entry '{name}'")))
                    }
                    copied => recv.end(copied, &name)?,
                }
            }
        }
        Ok(())
    }

    /// Receives an uncompressed native stream with the archive file itself as
    /// the receiver's stdin, positioned at the entry's data: no pipe, no copy
    /// through us (the data is hashed by a thread reading it back). The
    /// receiver must then have stopped exactly at the entry's end: short of it,
    /// the entry held more than the stream; past it, the stream ran on into
    /// the archive's next members. False (nothing done) where the storage
    /// checks its streams on the way in or the archive is not a regular file.
    fn receive_in_place(
        &self,
        entry: &mut Entry<'_, File>,
        staging: &str,
        dataset: &str,
    ) -> Result<bool> {
        let storage = &self.pool.storage;
        if !storage.receives_from_file() {
            return Ok(false);
        }
        let name = entry.name().to_string();
        let received = entry.take_over(|input, start, len| {
            let receive = storage.receive_cmd(staging, dataset)?;
            let failed = || format!("cannot receive {name}");
            let mut read = OffsetWatch::new(&input).ctx(failed)?;
            receive
                .run_with_files(Some(&input), None, || {
                    interrupt::check_io()?;
                    self.progress.add_bytes(read.advance()?);
                    Ok(())
                })
                .map_err(|e| Error::exec(failed(), e))?;
            self.progress.add_bytes(read.advance().ctx(failed)?);
            let end = read.offset().ctx(failed)?;
            check_stream_end(&name, end.saturating_sub(start), len)
        })?;
        Ok(received.is_some())
    }

    /// Every dataset a native stream brought must keep its files in its
    /// `private/`, a directory (no symlink) where the container's mounts
    /// will look for it.
    fn check_private_dirs(&self) -> Result<()> {
        let plan = self.plan.as_ref().expect("planned");
        if plan.metadata.stream_encoding() == StreamEncoding::Tar {
            return Ok(());
        }
        let storage = &self.pool.storage;
        storage.mount(&plan.staging)?;
        let top = storage.path(&plan.staging, "");
        for ds in std::iter::once("").chain(plan.metadata.datasets.iter().map(String::as_str)) {
            let label = if ds.is_empty() { "/" } else { ds };
            storage::checked_private(&top, ds).map_err(|e| match e {
                Error::NotFound(_) if !ds.is_empty() => Error::Archive(format!(
                    "dataset '{ds}' has no private/ directory: older osctl-rs versions kept a \
                     dataset's files at its top; import the archive with such a version and \
                     export it with --format tar"
                )),
                other => Error::Archive(format!("dataset '{label}': {other}")),
            })?;
        }
        Ok(())
    }

    /// What the files of the root file system may be.
    fn file_policy(&self) -> FilePolicy {
        let plan = self.plan.as_ref().expect("planned");
        FilePolicy::for_import(plan.max_id, self.opts.trusted)
    }

    /// Native streams are judged like tar streams: the received tree of
    /// every dataset, by the same policy, before anything is committed.
    fn check_received(&self) -> Result<()> {
        let plan = self.plan.as_ref().expect("planned");
        if plan.metadata.stream_encoding() == StreamEncoding::Tar {
            return Ok(());
        }
        self.progress.step("checking the received files");
        let storage = &*self.pool.storage;
        let (staging, datasets) = (&plan.staging, &plan.metadata.datasets);
        filepolicy::scan::check_container(storage, staging, datasets, &self.file_policy())
            .map(drop)
            .map_err(|e| e.context("the received root file system"))
    }

    fn finish_datasets(&self, snapshots: &[String]) -> Result<()> {
        let plan = self.plan.as_ref().expect("planned");
        if plan.metadata.stream_encoding() == StreamEncoding::Tar {
            return Ok(());
        }
        for ds in std::iter::once(String::new()).chain(plan.metadata.datasets.iter().cloned()) {
            self.pool
                .storage
                .finish_receive(&plan.staging, &ds, snapshots)?;
        }
        Ok(())
    }
}

/// A clone whose hostname was its old id (as `ct new` sets it) is named after
/// its new id, when that is a valid host name. Returns (old, new).
fn rename_host(
    container: &mut ContainerConfig,
    old_id: Option<&str>,
    new_id: &str,
) -> Option<(String, String)> {
    let old = container.hostname.clone()?;
    if Some(old.as_str()) != old_id
        || crate::model::grammar::host_name("hostname", new_id).is_err()
    {
        return None;
    }
    container.hostname = Some(new_id.to_string());
    Some((old, new_id.to_string()))
}

/// Refuses, saying what to do instead, a file that is plainly not an osctl
/// archive: a compressed file, or a tar of files (a root file system).
fn not_an_archive(path: &Path) -> Result<()> {
    use crate::archive::sniff::{sniff_file, Sniffed};
    let shown = path.display();
    match sniff_file(path) {
        Sniffed::Compressed(kind) => Err(Error::Archive(format!(
            "{shown} is {kind}-compressed; osctl archives are uncompressed tars (decompress it \
             first, or, if it holds a root file system, use `osctl ct new --from-tar {shown}`)"
        ))),
        Sniffed::Tar(first) => Err(Error::Archive(format!(
            "{shown} is a tar of files ('{first}' first), not an osctl archive (which starts \
             with metadata.yml); to make a container of a root file system, use \
             `osctl ct new --user USER --from-tar {shown} ID`"
        ))),
        Sniffed::OsctlArchive | Sniffed::Unknown => Ok(()),
    }
}

/// A receiver that read a stream from the archive file itself must have read
/// exactly the entry's `len` bytes; it `read` that many from the entry's start.
fn check_stream_end(name: &str, read: u64, len: u64) -> Result<()> {
    match read.cmp(&len) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(Error::Archive(format!(
            "archive entry '{name}': its stream ends after {read} of the entry's {len} bytes \
             (data after the end of the stream)"
        ))),
        std::cmp::Ordering::Greater => Err(Error::Archive(format!(
            "archive entry '{name}': its stream does not end within the entry's {len} bytes \
             (the receiver read {} bytes past it, into the archive's next members)",
            read - len
        ))),
    }
}

fn check_format(pool: &Pool, metadata: &Metadata) -> Result<()> {
    match metadata.format.as_str() {
        meta::FORMAT_TAR | meta::FORMAT_TAR_LAYERS => Ok(()),
        native if pool.storage.native_format() == Some(native) => Ok(()),
        native => Err(Error::Refused(format!(
            "the archive holds {native} streams, which only a {native} pool can take; pool '{}' is a {} pool \
             (export with --format tar to move containers between kinds of pools)",
            pool.name,
            pool.storage.backend()
        ))),
    }
}

/// Refuses what needs trust unless the admin gave it.
fn check_trust(concerns: &[String], trusted: bool) -> Result<()> {
    if concerns.is_empty() || trusted {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "the archive asks for what reaches outside the container ({}): import it with --trusted only if you trust it",
        concerns.join("; ")
    )))
}

/// Why the user an archive asks for needs trust, judged against the pool's
/// users and the host's subordinate-id lines (`host_taken`).
fn user_concerns(
    pool: &Pool,
    name: &str,
    config: &UserConfig,
    host_taken: &[IdRange],
) -> Result<Vec<String>> {
    let (uid_map, gid_map) = config
        .maps()
        .map_err(|e| Error::Archive(format!("config/user.yml: {e}")))?;
    let user = trust::MapsToJudge {
        name,
        uid_map: &uid_map,
        gid_map: &gid_map,
    };
    Ok(trust::map_concerns(
        &user,
        &other_maps(pool)?,
        host_taken,
        &SubordinateFloor::system(),
    ))
}

fn other_maps(pool: &Pool) -> Result<Vec<(String, IdMap)>> {
    let mut out = Vec::new();
    for name in pool.user_names()? {
        if let Ok((u, g)) = pool.user(&name).and_then(|c| c.maps()) {
            out.push((name.clone(), u));
            out.push((name, g));
        }
    }
    Ok(out)
}

fn plan_user(
    pool: &Pool,
    id: &str,
    metadata: &Metadata,
    archived: Option<&UserConfig>,
    opts: &ImportOptions,
) -> Result<UserPlan> {
    if let Some(name) = &opts.as_user {
        pool.user(name)?;
        return Ok(UserPlan::Existing(name.clone()));
    }
    let Some(name) = &metadata.user else {
        // No user in the archive: one named after the container.
        return Ok(if pool.user_exists(id) {
            UserPlan::Existing(id.to_string())
        } else {
            UserPlan::Create {
                name: id.to_string(),
                config: None,
            }
        });
    };
    names::user_name(name).map_err(|e| Error::Archive(format!("metadata.yml: {e}")))?;
    let archived = archived.ok_or_else(|| {
        Error::Archive(format!(
            "metadata.yml names user '{name}' but config/user.yml is missing"
        ))
    })?;
    let (uid_map, gid_map) = archived
        .maps()
        .map_err(|e| Error::Archive(format!("config/user.yml: {e}")))?;
    if uid_map.is_empty() || gid_map.is_empty() {
        return Err(Error::Archive(
            "config/user.yml: the user has no uid_map or gid_map".into(),
        ));
    }
    if !pool.user_exists(name) {
        return Ok(UserPlan::Create {
            name: name.clone(),
            config: Some(archived.clone()),
        });
    }
    let (eu, eg) = pool.user(name)?.maps()?;
    if eu != uid_map || eg != gid_map {
        return Err(Error::Refused(format!(
            "user '{name}' exists in pool '{}' with other id maps (uid {eu}, gid {eg}; the archive's: uid {uid_map}, \
             gid {gid_map}): choose a user with --as-user",
            pool.name
        )));
    }
    Ok(UserPlan::Existing(name.clone()))
}

fn plan_group(pool: &Pool, metadata: &Metadata, opts: &ImportOptions) -> Result<GroupPlan> {
    if let Some(path) = &opts.as_group {
        pool.group(path)?;
        return Ok(GroupPlan::Existing(path.clone()));
    }
    let Some(path) = &metadata.group else {
        return Ok(GroupPlan::Existing("/default".into()));
    };
    names::group_path(path).map_err(|e| Error::Archive(format!("metadata.yml: {e}")))?;
    if pool.group_exists(path) {
        return Ok(GroupPlan::Existing(path.clone()));
    }
    match names::group_parent(path) {
        Some(parent) if !pool.group_exists(parent) => Err(Error::NotFound(format!(
            "group '{path}' cannot be created: its parent group '{parent}' does not exist in pool '{}'",
            pool.name
        ))),
        _ => Ok(GroupPlan::Create(path.clone())),
    }
}

/// Owners of the container's files must be below this: its user's map size.
fn id_range(pool: &Pool, user: &UserPlan, container: &ContainerConfig) -> Result<Option<u32>> {
    if container.privileged {
        return Ok(None);
    }
    let map = match user {
        UserPlan::Existing(name) => pool.user(name)?.uid_map()?,
        UserPlan::Create {
            config: Some(config),
            ..
        } => config.uid_map()?,
        UserPlan::Create { config: None, .. } => IdMap::single(0, crate::idmap::BLOCK),
    };
    Ok(map.0.iter().map(|r| r.ns.saturating_add(r.count)).max())
}

struct CountingReader<'a, R> {
    inner: R,
    progress: &'a Progress,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add_bytes(n as u64);
        Ok(n)
    }
}

/// Makes the staged container real: user, group, dataset, config, hooks.
/// The journal names what will be created before it is. Returns the id map
/// allocated for a new user whose archive brought none.
fn commit(pool: &Pool, plan: &mut Plan, trusted: bool) -> Result<Option<String>> {
    let mut fresh_ids = None;
    interrupt::check()?;
    let _accounts = pool.lock_accounts()?;
    // Held to the end: MACs and addresses are checked and given under it.
    let _net = netif::registry::lock(&pool.host)?;
    let mut container = plan.container.clone();
    netif::finish_import(pool, &mut container)?;
    plan.journal.update(|r| r.committing = true)?;
    match &plan.user {
        UserPlan::Existing(name) => {
            pool.user(name)
                .map_err(|e| e.context("the user went away during the import"))?;
        }
        UserPlan::Create { name, config } => {
            if pool.user_exists(name) {
                return Err(Error::Exists(format!(
                    "user '{name}' was created by someone else during the import"
                )));
            }
            plan.journal
                .update(|r| r.created_user = Some(name.clone()))?;
            match config {
                // Judged again under the subordinate-id lock, with the
                // creation: another import or `user new` may have taken
                // these ids since the plan.
                Some(config) => accounts::create_user_from(pool, name, config, |taken| {
                    check_trust(&user_concerns(pool, name, config, taken)?, trusted)
                })?,
                None => {
                    let cfg = accounts::create_user(pool, name, &MapRequest::default())?;
                    fresh_ids = Some(cfg.uid_map.join(","));
                }
            }
        }
    }
    match &plan.group {
        GroupPlan::Existing(path) => {
            pool.group(path)
                .map_err(|e| e.context("the group went away during the import"))?;
        }
        GroupPlan::Create(path) => {
            if pool.group_exists(path) {
                return Err(Error::Exists(format!(
                    "group '{path}' was created by someone else during the import"
                )));
            }
            plan.journal
                .update(|r| r.created_group = Some(path.clone()))?;
            accounts::create_group(pool, path)?;
        }
    }
    failpoint::hit("import-after-accounts");
    pool.storage.rename(&plan.staging, &plan.id)?;
    failpoint::hit("import-after-rename");
    save_hooks(pool, &plan.id, &plan.hooks)?;
    container.user = plan.user.name().to_string();
    container.group = plan.group.name().to_string();
    container.dataset = Some(crate::containers::dataset_name(pool, &plan.id));
    pool.save_ct(&plan.id, &container)?;
    Ok(fresh_ids)
}

/// Trusted hook scripts are kept (never run by osctl-rs) next to the pool's
/// configs, so that a later export carries them on.
fn save_hooks(pool: &Pool, id: &str, hooks: &[Hook]) -> Result<()> {
    for hook in hooks {
        let path = pool.hooks_dir(id).join(&hook.rel);
        if let Some(dir) = path.parent() {
            crate::fsutil::create_dir_all(dir)?;
        }
        crate::fsutil::atomic_write(&path, &hook.body)?;
        let mode = if hook.executable { 0o700 } else { 0o600 };
        crate::fsutil::set_mode(&path, mode)?;
    }
    Ok(())
}

/// Undoes a failed import, as its journal records it.
fn undo(pool: &Pool, plan: Plan) -> Result<()> {
    crate::recovery::undo_import(pool, plan.journal.record(), &mut Vec::new())?;
    plan.journal.finish()?;
    pool.unlock_ct(&plan.id, plan.lock)
}
