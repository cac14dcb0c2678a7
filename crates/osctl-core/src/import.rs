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
use std::io::{self, BufReader, Read, Seek};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use crate::accounts::{self, MapRequest};
use crate::archive::compress::{self, Compression};
use crate::archive::grammar::Grammar;
use crate::archive::lease::ReadLease;
use crate::archive::meta::{
    self, ArchiveFormat, ArchiveType, EntryName, Metadata, StreamEncoding, StreamKind, StreamName,
};
use crate::archive::{ArchiveReader, CopyError, Entry, PartsReader};
use crate::datasets;
use crate::error::{Context, Error, ErrorKind, Result};
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
use crate::storage::{self, Dataset, NativeStreams, StreamCheck, TreeJudged};
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
    /// A user the import creates keeps the archive's id maps even where
    /// they overlap ids given out here (which needs `trusted`), instead of
    /// a fresh block of the same shape.
    pub keep_map: bool,
    pub progress: Option<Progress>,
    /// A clone even under the archive's own id (`osctl ct send --clone`):
    /// new MACs, no addresses unless `keep_addresses`.
    pub force_clone: bool,
    /// Keys set in the container's config at the commit (a send's log).
    pub set_extra: Vec<(String, serde_json::Value)>,
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
    /// Created at the commit; maps from the archive, or allocated when None;
    /// `moved`: the archive's maps overlap ids given out here, so the same
    /// shape goes onto free host ids (files are stored unshifted: nothing
    /// else changes).
    Create {
        name: String,
        config: Option<UserConfig>,
        moved: bool,
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
    /// `config/group.yml`: the config of a group the import creates.
    group_config: Option<GroupConfig>,
    /// Owners of files must be below this (the user's map size).
    max_id: Option<u32>,
    journal: Journal<ImportRecord>,
    lock: Lock,
}

impl Plan {
    /// What the files of the root file system may be.
    fn file_policy(&self, trusted: bool) -> FilePolicy {
        FilePolicy::for_import(self.max_id, trusted)
    }

    /// The name the container's storage has now: the staging name, or the
    /// final id once the received datasets were placed there.
    fn built_as(&self) -> &str {
        match self.journal.record().placed {
            true => &self.id,
            false => &self.staging,
        }
    }

    /// The root dataset and the subdatasets the archive brings.
    fn datasets(&self) -> impl Iterator<Item = Dataset<'_>> {
        let rels = std::iter::once("").chain(self.metadata.datasets.iter().map(String::as_str));
        let ct = self.built_as();
        rels.map(move |rel| Dataset::new(ct, rel))
    }
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

/// Where an import is.
enum Stage {
    /// Reading the entries before the root file system; nothing is created.
    Head(Box<Head>),
    /// From the first stream on: the plan records what a failure undoes.
    Receiving(Box<Plan>),
    /// Committed, or no root file system came.
    Done,
}

/// Imports the archive at `path` into `pool`; returns the new container's id.
pub fn import(pool: &Pool, path: &Path, opts: &ImportOptions) -> Result<String> {
    import_report(pool, path, opts).map(|i| i.id)
}

/// [`import`], with the notes for the admin.
pub fn import_report(pool: &Pool, path: &Path, opts: &ImportOptions) -> Result<Imported> {
    let file = File::open(path).ctx(|| format!("cannot open archive {}", path.display()))?;
    not_an_archive(path)?;
    let archive = ArchiveFile::of(&file);
    import_input(pool, file, archive, opts)
        .map_err(|e| e.context(format!("cannot import {}", path.display())))
}

/// Imports the archive that `input` yields (a pipe, a socket, an SSH
/// channel: read once, in order, never seeking), with every check and
/// guarantee of [`import_report`]: a cut or broken input is refused and
/// leaves nothing behind.
pub fn import_from<R: Read + Send>(
    pool: &Pool,
    input: R,
    opts: &ImportOptions,
) -> Result<Imported> {
    import_input(pool, input, None, opts).map_err(|e| e.context("cannot import the archive stream"))
}

/// Imports the archive on standard input (a file or a pipe); a terminal
/// is refused.
pub fn import_stdin(pool: &Pool, opts: &ImportOptions) -> Result<Imported> {
    use std::io::IsTerminal;
    use std::os::fd::AsFd;
    let stdin = io::stdin();
    let fd = stdin
        .as_fd()
        .try_clone_to_owned()
        .ctx(|| "cannot use standard input")?;
    if fd.is_terminal() {
        return Err(Error::refused(
            "standard input is a terminal: pipe the archive in (... | osctl ct import -)",
        ));
    }
    let file = File::from(fd);
    let archive = ArchiveFile::of(&file);
    import_input(pool, file, archive, opts)
        .map_err(|e| e.context("cannot import the archive on standard input"))
}

/// The archive, where it is a regular file (see [`Env::receive_beside`]).
struct ArchiveFile {
    /// A handle sharing the reader's file offset.
    file: File,
    /// Where that offset was before the reader read anything.
    start: u64,
}

impl ArchiveFile {
    fn of(file: &File) -> Option<ArchiveFile> {
        if !file.metadata().ok()?.is_file() {
            return None;
        }
        let mut file = file.try_clone().ok()?;
        let start = file.stream_position().ok()?;
        Some(ArchiveFile { file, start })
    }
}

fn import_input<R: Read + Send>(
    pool: &Pool,
    input: R,
    archive: Option<ArchiveFile>,
    opts: &ImportOptions,
) -> Result<Imported> {
    interrupt::install();
    let mut importer = Importer {
        env: Env {
            pool,
            opts,
            progress: opts.progress.clone().unwrap_or_else(Progress::hidden),
            notes: Vec::new(),
            hostname: None,
            walk_received: false,
            archive,
        },
        grammar: Grammar::new(),
        stage: Stage::Head(Box::default()),
    };
    let result = importer.run(ArchiveReader::new(input));
    importer.env.progress.finish();
    let result = match (result, importer.stage) {
        (Ok(id), _) => Ok(id),
        (Err(e), Stage::Receiving(plan)) => {
            let e = interrupt::explain(e);
            Err(match undo(pool, *plan) {
                Ok(()) => e,
                Err(u) => e.context(format!("(undoing the import failed too: {u})")),
            })
        }
        (Err(e), _) => Err(interrupt::explain(e)),
    };
    result.map(|imported| Imported {
        notes: std::mem::take(&mut importer.env.notes),
        hostname: importer.env.hostname.take(),
        ..imported
    })
}

struct Importer<'a> {
    env: Env<'a>,
    grammar: Grammar,
    stage: Stage,
}

/// What an import works with, apart from the archive's state.
struct Env<'a> {
    pool: &'a Pool,
    opts: &'a ImportOptions,
    progress: Progress,
    /// Lines for the admin (see [`Imported`]).
    notes: Vec<String>,
    /// A clone's hostname that followed its new id: (old, new).
    hostname: Option<(String, String)>,
    /// A native stream's check left files unjudged: the received tree is
    /// walked before the commit.
    walk_received: bool,
    /// The archive, where it is a regular file.
    archive: Option<ArchiveFile>,
}

impl Importer<'_> {
    fn run<R: Read + Send>(&mut self, mut reader: ArchiveReader<R>) -> Result<Imported> {
        while let Some(mut entry) = reader.next_entry()? {
            let name = meta::classify(entry.name(), entry.kind())?;
            self.grammar.admit(&name, entry.name())?;
            if let EntryName::StreamPart(stream, _) = name {
                self.parts(&mut reader, stream)?;
                continue;
            }
            if !self.grammar.read_own(&mut entry, &name)? {
                self.entry(&mut entry, name.clone())?;
            }
            if entry.remaining() > 0 {
                return Err(Error::archive(format!(
                    "archive entry '{}' was not read to its end",
                    entry.name()
                )));
            }
            self.grammar.keep_digest(&name, &entry);
        }
        let finished = self.grammar.finish(true)?;
        let snapshots = finished.snapshots.unwrap_or_default().to_vec();
        let Stage::Receiving(mut plan) = std::mem::replace(&mut self.stage, Stage::Done) else {
            return Err(Error::archive("the archive holds no root file system"));
        };
        match self.env.complete(&mut plan, &snapshots) {
            Ok(()) => {
                let imported = summary(self.env.pool, &plan);
                plan.journal.finish()?;
                Ok(imported)
            }
            Err(e) => {
                // Back where a failure finds what to undo.
                self.stage = Stage::Receiving(plan);
                Err(e)
            }
        }
    }

    /// A stream in parts, from its first (the reader's current entry) on.
    fn parts<R: Read + Send>(
        &mut self,
        reader: &mut ArchiveReader<R>,
        stream: StreamName,
    ) -> Result<()> {
        self.start_receiving()?;
        let Stage::Receiving(plan) = &self.stage else {
            return Err(Error::archive("a stream after the import ended"));
        };
        let mut parts = PartsReader::new(reader, &mut self.grammar, stream.clone())?;
        self.env
            .receive(plan, &mut StreamIn::Parts(&mut parts), &stream)?;
        parts.finish()
    }

    /// Reads an entry the grammar admitted.
    fn entry<R: Read + Send>(&mut self, entry: &mut Entry<'_, R>, name: EntryName) -> Result<()> {
        match name {
            EntryName::Stream(stream) => {
                self.start_receiving()?;
                match &self.stage {
                    Stage::Receiving(plan) => {
                        self.env.receive(plan, &mut StreamIn::Whole(entry), &stream)
                    }
                    _ => Err(Error::archive(format!(
                        "archive entry '{}' after the import ended",
                        entry.name()
                    ))),
                }
            }
            EntryName::Dir(_) => Ok(()),
            // The grammar's own documents, read by it.
            EntryName::Metadata | EntryName::Checksums | EntryName::Snapshots => Ok(()),
            head_entry => match &mut self.stage {
                Stage::Head(head) => read_head_entry(head, entry, head_entry),
                // The grammar admits no head entry after the streams.
                _ => Err(Error::archive(format!(
                    "archive entry '{}' after the root file system",
                    entry.name()
                ))),
            },
        }
    }

    /// At the first stream: the plan, made from the head.
    fn start_receiving(&mut self) -> Result<()> {
        if let Stage::Head(head) = &mut self.stage {
            let plan = self.env.make_plan(&self.grammar, head)?;
            self.stage = Stage::Receiving(Box::new(plan));
        }
        Ok(())
    }
}

/// A config or hook before the root file system, kept in `head`.
fn read_head_entry<R: Read>(
    head: &mut Head,
    entry: &mut Entry<'_, R>,
    name: EntryName,
) -> Result<()> {
    let shown = entry.name().to_string();
    let bad = |e: Error| e.with_kind(ErrorKind::Archive);
    match name {
        EntryName::UserConfig => {
            let bytes = entry.read_to_vec(meta::MAX_DOCUMENT)?;
            head.user = Some(yaml::parse_bytes(&bytes, &shown).map_err(bad)?);
        }
        EntryName::GroupConfig => {
            let bytes = entry.read_to_vec(meta::MAX_DOCUMENT)?;
            head.group = Some(GroupConfig::parse(&bytes, &shown).map_err(bad)?);
        }
        EntryName::ContainerConfig => {
            let bytes = entry.read_to_vec(meta::MAX_DOCUMENT)?;
            head.container = Some(ContainerConfig::parse(&bytes, &shown).map_err(bad)?);
        }
        EntryName::Hook(rel) => {
            let executable = entry.mode() & 0o111 != 0;
            let body = entry.read_to_vec(meta::MAX_HOOK_BYTES)?;
            head.hooks.push(Hook {
                rel,
                body,
                executable,
            });
        }
        other => {
            return Err(Error::archive(format!(
                "archive entry '{}' is not part of the head",
                other.entry_name()
            )))
        }
    }
    Ok(())
}

impl Env<'_> {
    /// Decides id, user and group, applies the trust policy, takes the lock
    /// and starts the journal: everything before the first byte is written.
    fn make_plan(&mut self, grammar: &Grammar, head: &mut Head) -> Result<Plan> {
        let pool = self.pool;
        let opts = self.opts;
        let metadata = grammar
            .metadata()
            .cloned()
            .ok_or_else(|| Error::archive("metadata.yml not found before the root file system"))?;
        if metadata.archive_type != ArchiveType::Full {
            return Err(Error::refused(
                "the archive is a config-only (skel) archive: it holds no root file system to import",
            ));
        }
        let mut container = head.container.take().ok_or_else(|| {
            Error::archive("config/container.yml not found before the root file system")
        })?;
        let id = container_id(&metadata, opts)?;
        for ds in &metadata.datasets {
            names::subdataset(ds)
                .map_err(|e| e.context("metadata.yml").with_kind(ErrorKind::Archive))?;
        }
        check_format(pool, &metadata)?;
        // Mounts of datasets the archive does not bring would fail at start.
        datasets::check_mounts(&container, &metadata.datasets)
            .map_err(|e| Error::archive(format!("{}: {e}", meta::CONTAINER_CONFIG)))?;
        // A clone: another id than the archive's own.
        let clone = opts.force_clone
            || (opts.as_id.is_some()
                && metadata.container.is_some()
                && opts.as_id != metadata.container);
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
        let decided = match self.decide(&id, &metadata, &mut container, head) {
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
            group_config: head.group.take(),
            max_id: decided.max_id,
            journal: decided.journal,
            lock,
        })
    }

    /// The part of [`Env::make_plan`] done under the container's lock.
    fn decide(
        &mut self,
        id: &str,
        metadata: &Metadata,
        container: &mut ContainerConfig,
        head: &mut Head,
    ) -> Result<Decided> {
        let pool = self.pool;
        let opts = self.opts;
        if pool.ct_exists(id) || pool.storage.exists(id)? {
            return Err(Error::exists(format!(
                "container '{id}' already exists in pool '{}': import it under another id \
                 with --as-id NEW_ID",
                pool.name
            )));
        }
        let user = plan_user(pool, id, metadata, head.user.as_ref(), opts)?;
        let group = plan_group(pool, metadata, opts)?;
        let kept = carry_group_limits(pool, &group, head.group.as_ref(), container)?;
        self.notes.extend(kept);
        let hooks = std::mem::take(&mut head.hooks);
        let concerns = self.concerns(container, &user, (&group, head.group.as_ref()), &hooks)?;
        check_trust(&concerns, opts.trusted, opts.keep_map)?;
        netif::check_import(pool, container)?;
        let max_id = id_range(pool, &user, container)?;
        let staging = storage::staging_name(id);
        if pool.storage.exists(&staging)? {
            // A dead import's leftover, under our lock now: ours to remove.
            pool.storage.destroy(Dataset::root(&staging))?;
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

    /// What needs trust; `group`: the plan and the archive's group config.
    fn concerns(
        &self,
        container: &ContainerConfig,
        user: &UserPlan,
        group: (&GroupPlan, Option<&GroupConfig>),
        hooks: &[Hook],
    ) -> Result<Vec<String>> {
        let mut concerns = trust::container_concerns(container);
        concerns.extend(netif::import_concerns(self.pool, container)?);
        if !hooks.is_empty() {
            concerns.push(format!("it carries {} hook script(s)", hooks.len()));
        }
        if let (GroupPlan::Create(path), archived) = group {
            if let Some(g) = archived {
                concerns.extend(trust::group_concerns(path, g));
            }
            if let Some(top) = missing_parents(self.pool, path).first() {
                concerns.push(format!(
                    "group '{path}' needs group '{top}', which does not exist in pool '{}' \
                     (the limits it set at the source would not come along; or choose a group \
                     with --as-group)",
                    self.pool.name
                ));
            }
        }
        if let UserPlan::Create {
            name,
            config: Some(config),
            moved: false,
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

    /// One root file system stream: a tar into the staged root file
    /// system, or a native stream into its dataset.
    fn receive<R: Read + Send>(
        &mut self,
        plan: &Plan,
        entry: &mut StreamIn<'_, '_, R>,
        stream: &StreamName,
    ) -> Result<()> {
        interrupt::check()?;
        // Counted as read from the archive, against the entry's size.
        let size = entry.size();
        self.progress
            .step_bytes(format!("receiving {}", entry.name()), size);
        match stream.encoding {
            StreamEncoding::Tar => self.receive_tar(plan, entry, stream),
            StreamEncoding::Dat => {
                let ds = Dataset::new(&plan.staging, &stream.dataset_rel);
                let judged = self.receive_native(plan, entry, stream, ds)?;
                self.walk_received |= judged == TreeJudged::NeedsWalk;
                Ok(())
            }
        }
    }

    /// A tar stream, extracted into the root file system (made by the base
    /// stream) under the plan's file policy.
    fn receive_tar<R: Read + Send>(
        &self,
        plan: &Plan,
        entry: &mut StreamIn<'_, '_, R>,
        stream: &StreamName,
    ) -> Result<()> {
        let name = entry.name().to_string();
        if stream.kind == StreamKind::Base && stream.dataset_rel.is_empty() {
            self.pool.storage.create(Dataset::root(&plan.staging))?;
        }
        failpoint::hit("import-in-stream");
        let opts = ExtractOptions {
            policy: plan.file_policy(self.opts.trusted),
            // A base stream of the original may hold files named `.wh.*`.
            whiteouts: stream.kind == StreamKind::Incremental,
        };
        let root = self.pool.storage.rootfs(&plan.staging);
        let buffered = BufReader::with_capacity(1 << 20, self.progress.counting(&mut *entry));
        let mut input = compress::decompressor(stream.compression, buffered)
            .ctx(|| format!("cannot read {name}"))?;
        fstar::extract(&mut input, &root, &opts)
            .map_err(|e| e.context(format!("archive entry '{name}'")))?;
        // The end blocks and the compressor's trailer (its checksum).
        io::copy(&mut input, &mut io::sink()).map_err(|e| {
            Error::io(format!("archive entry '{name}'"), e).with_kind(ErrorKind::Archive)
        })?;
        Ok(())
    }

    /// A native stream into dataset `ds`, through the receiver's pipe;
    /// tells whether its check judged every file it brought.
    fn receive_native<R: Read + Send>(
        &self,
        plan: &Plan,
        entry: &mut StreamIn<'_, '_, R>,
        stream: &StreamName,
        ds: Dataset,
    ) -> Result<TreeJudged> {
        failpoint::hit("import-in-stream");
        let name = entry.name().to_string();
        let policy = plan.file_policy(self.opts.trusted);
        if let (StreamIn::Whole(whole), Compression::Off) = (&mut *entry, stream.compression) {
            if let Some(judged) = self.receive_beside(whole, ds, &policy)? {
                return Ok(judged);
            }
        }
        let mut recv = self.native()?.receive(ds, &policy)?;
        // Through our memory, never spliced: the receiver's check must see
        // the very bytes the receiver gets.
        let counted = self.progress.counting(&mut *entry);
        let buffered = BufReader::with_capacity(1 << 20, counted);
        let copied = match compress::decompressor(stream.compression, buffered) {
            Ok(mut input) => recv.copy_from(&mut input, |_| ()).map(drop),
            Err(e) => Err(CopyError::Source(
                Error::io(name.to_string(), e).with_kind(ErrorKind::Archive),
            )),
        };
        match copied {
            Err(CopyError::Source(e)) => Err(e.context(format!("archive entry '{name}'"))),
            copied => recv.end(copied, &name),
        }
    }

    /// An uncompressed native stream in an archive file, read by the
    /// receiver from the file itself while the stream's check reads the
    /// same bytes through the archive reader (hashed as ever); the file
    /// under a read lease, so that both saw the same bytes. None where this
    /// cannot be (a pipe, a backend without it, no lease): the caller
    /// copies the stream through the check into the receiver.
    fn receive_beside<R: Read>(
        &self,
        entry: &mut Entry<'_, R>,
        ds: Dataset,
        policy: &FilePolicy,
    ) -> Result<Option<TreeJudged>> {
        let Some(archive) = &self.archive else {
            return Ok(None);
        };
        // The reader reads unbuffered: its count and the shared offset must
        // both say where the entry's data begins.
        let start = archive.start + entry.position();
        let offset = (&archive.file).stream_position().ok();
        if entry.remaining() != entry.size() || offset != Some(start) {
            return Ok(None);
        }
        let Some(lease) = ReadLease::take(&archive.file) else {
            return Ok(None);
        };
        let Some((cmd, mut check)) = self.native()?.receive_beside(ds, policy)? else {
            return Ok(None);
        };
        let name = entry.name().to_string();
        let mut leased = lease.file();
        leased
            .seek(io::SeekFrom::Start(start))
            .ctx(|| format!("cannot read archive entry '{name}'"))?;
        failpoint::hit("import-beside");
        let (refused, receiver_failed) = (AtomicBool::new(false), AtomicBool::new(false));
        let (received, judged) = std::thread::scope(|scope| {
            let receiver = scope.spawn(|| {
                let received =
                    cmd.run_with_files(Some(lease.file()), None, || match refused.load(Relaxed) {
                        true => Err(io::Error::other("the stream was refused")),
                        false => interrupt::check_io(),
                    });
                receiver_failed.store(received.is_err(), Relaxed);
                received
            });
            let mut input = self.progress.counting(&mut *entry);
            let judged = judge_all(&mut input, &mut *check, &receiver_failed);
            refused.store(judged.is_err(), Relaxed);
            (receiver.join(), judged)
        });
        judged.map_err(|e| e.context(format!("archive entry '{name}'")))?;
        let received = received.map_err(|_| Error::invalid("the receiver's thread panicked"))?;
        received.map_err(|e| Error::exec(format!("cannot receive {name}"), e))?;
        // The receiver shared the leased description's offset: it must
        // have stopped within the entry (the judge saw nothing beyond).
        let read_to = leased.stream_position().unwrap_or(u64::MAX);
        if read_to > start + entry.size() {
            return Err(Error::archive(format!(
                "archive entry '{name}': the stream runs on past the entry's end"
            )));
        }
        if !lease.intact() {
            return Err(Error::archive(format!(
                "archive entry '{name}': the archive file was opened for writing while it was \
                 received"
            )));
        }
        check
            .finish()
            .map(Some)
            .map_err(|e| e.context(format!("cannot receive {name}")))
    }

    /// After the last entry: the received datasets finished and checked,
    /// then the commit.
    fn complete(&mut self, plan: &mut Plan, snapshots: &[String]) -> Result<()> {
        if plan.metadata.stream_encoding() == StreamEncoding::Dat {
            self.finish_datasets(plan, snapshots)?;
            place(self.pool, plan)?;
            self.check_private_dirs(plan)?;
            self.check_received(plan)?;
        }
        failpoint::hit("import-before-commit");
        let note = commit(self.pool, plan, self.opts.trusted, &self.opts.set_extra)?;
        self.notes.extend(note);
        failpoint::hit("import-after-commit");
        Ok(())
    }

    fn finish_datasets(&self, plan: &Plan, snapshots: &[String]) -> Result<()> {
        let native = self.native()?;
        for ds in plan.datasets() {
            native.finish_receive(ds, snapshots)?;
        }
        Ok(())
    }

    /// Every dataset a native stream brought must keep its files in its
    /// `private/`, a directory (no symlink) where the container's mounts
    /// will look for it. The datasets were placed and mounted by `place`.
    fn check_private_dirs(&self, plan: &Plan) -> Result<()> {
        let storage = &self.pool.storage;
        let top = storage.path(Dataset::root(plan.built_as()));
        for ds in plan.datasets() {
            let label = if ds.is_root() { "/" } else { ds.rel };
            storage::checked_private(&top, ds.rel).map_err(|e| match e.kind() {
                ErrorKind::NotFound if !ds.is_root() => Error::archive(format!(
                    "dataset '{}' has no private/ directory: older osctl-rs versions kept a \
                     dataset's files at its top; import the archive with such a version and \
                     export it with --format tar",
                    ds.rel
                )),
                _ => e
                    .context(format!("dataset '{label}'"))
                    .with_kind(ErrorKind::Archive),
            })?;
        }
        Ok(())
    }

    /// Native streams are judged like tar streams, by the same policy,
    /// before anything is committed: file by file as they came where their
    /// checks could, else by a walk of the received tree of every dataset.
    fn check_received(&self, plan: &Plan) -> Result<()> {
        if !self.walk_received {
            return Ok(());
        }
        self.progress.step("checking the received files");
        let storage = &*self.pool.storage;
        let (built_as, datasets) = (plan.built_as(), &plan.metadata.datasets);
        let policy = plan.file_policy(self.opts.trusted);
        filepolicy::scan::check_container(storage, built_as, datasets, &policy)
            .map(drop)
            .map_err(|e| e.context("the received root file system"))
    }

    /// The pool's native streams, for an archive of them.
    fn native(&self) -> Result<&dyn NativeStreams> {
        self.pool.storage.native().ok_or_else(|| {
            Error::refused(format!(
                "{} pools have no native streams; use the tar format",
                self.pool.storage.backend()
            ))
        })
    }
}

/// A stream's bytes: one entry, or a stream's parts read as one.
enum StreamIn<'e, 'r, R: Read> {
    Whole(&'e mut Entry<'r, R>),
    Parts(&'e mut PartsReader<'r, R>),
}

impl<R: Read> StreamIn<'_, '_, R> {
    /// The stream's name in the archive (whole, for parts).
    fn name(&self) -> String {
        match self {
            StreamIn::Whole(e) => e.name().to_string(),
            StreamIn::Parts(p) => p.name(),
        }
    }

    /// The stored size, where known before reading (parts come one by one).
    fn size(&self) -> Option<u64> {
        match self {
            StreamIn::Whole(e) => Some(e.size()),
            StreamIn::Parts(_) => None,
        }
    }
}

impl<R: Read> Read for StreamIn<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            StreamIn::Whole(e) => e.read(buf),
            StreamIn::Parts(p) => p.read(buf),
        }
    }
}

/// Reads `input` to its end through `check` (see [`Env::receive_beside`]);
/// stops early, without a verdict, once the receiver failed (its error is
/// the one to tell).
fn judge_all(
    input: &mut dyn Read,
    check: &mut dyn StreamCheck,
    receiver_failed: &AtomicBool,
) -> Result<()> {
    let mut buf = vec![0u8; storage::COPY_BUFFER];
    loop {
        interrupt::check()?;
        if receiver_failed.load(Relaxed) {
            return Ok(());
        }
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(crate::archive::reader::read_error(e)),
        };
        check.check(&buf[..n])?;
    }
}

/// The id the container gets: `--as-id`, else the archive's.
fn container_id(metadata: &Metadata, opts: &ImportOptions) -> Result<String> {
    let id = match (&opts.as_id, &metadata.container) {
        (Some(id), _) | (None, Some(id)) => id.clone(),
        (None, None) => {
            return Err(Error::invalid(
                "the archive names no container: give one with --as-id",
            ))
        }
    };
    names::container_id(&id).map_err(|e| match &opts.as_id {
        Some(_) => e,
        None => e.context("metadata.yml").with_kind(ErrorKind::Archive),
    })?;
    Ok(id)
}

/// What the committed `plan` made, for the import's closing line.
fn summary(pool: &Pool, plan: &Plan) -> Imported {
    let (new_user, allocated) = match &plan.user {
        UserPlan::Create { config, .. } => (true, config.is_none()),
        UserPlan::Existing(_) => (false, false),
    };
    let user = plan.user.name().to_string();
    // An allocated block is the user's map as the commit saved it.
    let fresh_ids = allocated
        .then(|| pool.user(&user).ok().map(|u| u.uid_map.join(",")))
        .flatten();
    Imported {
        id: plan.id.clone(),
        pool: pool.name.clone(),
        group: plan.group.name().to_string(),
        new_user,
        fresh_ids,
        new_group: matches!(plan.group, GroupPlan::Create(_)),
        user,
        ..Default::default()
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
    if Some(old.as_str()) != old_id || crate::model::grammar::host_name("hostname", new_id).is_err()
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
        Sniffed::Compressed(kind) => Err(Error::archive(format!(
            "{shown} is {kind}-compressed; osctl archives are uncompressed tars (decompress it \
             first, or, if it holds a root file system, use `osctl ct new --from-tar {shown}`)"
        ))),
        Sniffed::Tar(first) => Err(Error::archive(format!(
            "{shown} is a tar of files ('{first}' first), not an osctl archive (which starts \
             with metadata.yml); to make a container of a root file system, use \
             `osctl ct new --user USER --from-tar {shown} ID`"
        ))),
        Sniffed::OsctlArchive | Sniffed::Unknown => Ok(()),
    }
}

fn check_format(pool: &Pool, metadata: &Metadata) -> Result<()> {
    match metadata.format {
        ArchiveFormat::Tar | ArchiveFormat::TarLayers => Ok(()),
        native if pool.storage.native().map(|n| n.format()) == Some(native) => Ok(()),
        native => Err(Error::refused(format!(
            "the archive holds {native} streams, which only a {native} pool can take; pool '{}' is a {} pool \
             (export with --format tar to move containers between kinds of pools)",
            pool.name,
            pool.storage.backend()
        ))),
    }
}

/// Refuses what needs trust unless the admin gave it; the way around it
/// comes first, `--trusted` last.
fn check_trust(concerns: &[String], trusted: bool, keep_map: bool) -> Result<()> {
    if concerns.is_empty() || trusted {
        return Ok(());
    }
    let instead = if keep_map {
        "import without --keep-map to give its user a fresh block of ids, or "
    } else {
        ""
    };
    Err(Error::refused(format!(
        "the archive asks for what reaches outside the container ({}): {instead}import it with \
         --trusted if, and only if, you trust it",
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
        .map_err(|e| Error::archive(format!("config/user.yml: {e}")))?;
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
                moved: false,
            }
        });
    };
    names::user_name(name).map_err(|e| Error::archive(format!("metadata.yml: {e}")))?;
    let archived = archived.ok_or_else(|| {
        Error::archive(format!(
            "metadata.yml names user '{name}' but config/user.yml is missing"
        ))
    })?;
    let (uid_map, gid_map) = archived
        .maps()
        .map_err(|e| Error::archive(format!("config/user.yml: {e}")))?;
    if uid_map.is_empty() || gid_map.is_empty() {
        return Err(Error::archive(
            "config/user.yml: the user has no uid_map or gid_map",
        ));
    }
    if !pool.user_exists(name) {
        // Moved only where the overlap is all that is wrong with the maps:
        // their shape (size, host root, system ids) is judged as ever.
        let maps = trust::MapsToJudge {
            name,
            uid_map: &uid_map,
            gid_map: &gid_map,
        };
        let shape_ok = trust::map_concerns(&maps, &[], &[], &SubordinateFloor::system()).is_empty();
        let moved = !opts.keep_map
            && shape_ok
            && accounts::overlaps_given_out(pool, name, &[&uid_map, &gid_map])?;
        return Ok(UserPlan::Create {
            name: name.clone(),
            config: Some(archived.clone()),
            moved,
        });
    }
    let (eu, eg) = pool.user(name)?.maps()?;
    if eu != uid_map || eg != gid_map {
        return Err(Error::refused(format!(
            "user '{name}' exists in pool '{}' with other id maps (uid {eu}, gid {eg}; the \
             archive's: uid {uid_map}, gid {gid_map}): give the container an existing user with \
             --as-user USER (files are stored unshifted, so any user's map fits), or remove \
             that user here to import with the archive's maps (--keep-map)",
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
    names::group_path(path).map_err(|e| Error::archive(format!("metadata.yml: {e}")))?;
    if pool.group_exists(path) {
        return Ok(GroupPlan::Existing(path.clone()));
    }
    // Missing parents are created too, for trusted archives (`concerns`).
    Ok(GroupPlan::Create(path.clone()))
}

/// Joining a group that exists here, the container keeps the limits of its
/// group at the source where they are tighter (`resources/carry.rs`).
fn carry_group_limits(
    pool: &Pool,
    group: &GroupPlan,
    archived: Option<&GroupConfig>,
    container: &mut ContainerConfig,
) -> Result<Vec<String>> {
    match (group, archived) {
        (GroupPlan::Existing(path), Some(archived)) => {
            crate::resources::carry::fold_group_limits(pool, path, archived, container)
                .map_err(|e| e.context("config/group.yml"))
        }
        _ => Ok(Vec::new()),
    }
}

/// The parents of `path` that do not exist in the pool, root first.
fn missing_parents(pool: &Pool, path: &str) -> Vec<String> {
    let mut out = crate::resources::lineage(path);
    out.pop();
    out.retain(|g| !pool.group_exists(g));
    out
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

/// Moves received native streams to the container's final id before they
/// are checked: a dataset that was never mounted renames at once, while
/// one mounted for the checks is busy for a moment on zfs-fuse after its
/// unmount (a retry, 25 ms or more, in one import of three). The
/// journal says so first; without a config the datasets are no container
/// yet, and a failure or a crash destroys them (`recovery::undo_import`).
fn place(pool: &Pool, plan: &mut Plan) -> Result<()> {
    interrupt::check()?;
    plan.journal.update(|r| r.placed = true)?;
    pool.storage.rename(&plan.staging, &plan.id)?;
    failpoint::hit("import-after-place");
    Ok(())
}

/// Makes the staged container real: user, group, dataset, config, hooks.
/// The journal names what will be created before it is. Returns a line for
/// the admin when the user got a fresh block.
fn commit(
    pool: &Pool,
    plan: &mut Plan,
    trusted: bool,
    extra: &[(String, serde_json::Value)],
) -> Result<Option<String>> {
    interrupt::check()?;
    let _accounts = pool.lock_accounts()?;
    // Held to the end: MACs and addresses are checked and given under it.
    let _net = netif::registry::lock(&pool.host)?;
    let mut container = plan.container.clone();
    netif::finish_import(pool, &mut container)?;
    plan.journal.update(|r| r.committing = true)?;
    let note = commit_user(pool, plan, trusted)?;
    commit_group(pool, plan)?;
    failpoint::hit("import-after-accounts");
    if !plan.journal.record().placed {
        pool.storage.rename(&plan.staging, &plan.id)?;
    }
    failpoint::hit("import-after-rename");
    save_hooks(pool, &plan.id, &plan.hooks)?;
    container.user = plan.user.name().to_string();
    container.group = plan.group.name().to_string();
    container.dataset = Some(crate::containers::dataset_name(pool, &plan.id));
    // A send's log belongs to the host that wrote it, not to the archive.
    container.extra.remove(crate::send::LOG_KEY);
    for (key, value) in extra {
        container.extra.insert(key.clone(), value.clone());
    }
    pool.save_ct(&plan.id, &container)?;
    Ok(note)
}

/// The user of [`commit`]: checked, or created (the archive's maps, moved
/// or kept, or a new block).
fn commit_user(pool: &Pool, plan: &mut Plan, trusted: bool) -> Result<Option<String>> {
    let mut note = None;
    match &plan.user {
        UserPlan::Existing(name) => {
            pool.user(name)
                .map_err(|e| e.context("the user went away during the import"))?;
        }
        UserPlan::Create {
            name,
            config,
            moved,
        } => {
            if pool.user_exists(name) {
                return Err(Error::exists(format!(
                    "user '{name}' was created by someone else during the import"
                )));
            }
            plan.journal
                .update(|r| r.created_user = Some(name.clone()))?;
            match config {
                Some(config) if *moved => {
                    let made = accounts::create_user_moved(pool, name, config)?;
                    note = Some(format!(
                        "user '{name}': the archive's id maps (uid {}, gid {}) overlap ids given \
                         out on this host, so it was created with a fresh block of the same shape \
                         (uid {}, gid {}; files are stored unshifted, nothing was rewritten)",
                        config.uid_map.join(","),
                        config.gid_map.join(","),
                        made.uid_map.join(","),
                        made.gid_map.join(",")
                    ));
                }
                // Judged again under the subordinate-id lock, with the
                // creation: another import or `user new` may have taken
                // these ids since the plan.
                Some(config) => accounts::create_user_from(pool, name, config, |taken| {
                    check_trust(&user_concerns(pool, name, config, taken)?, trusted, true)
                })?,
                None => {
                    accounts::create_user(pool, name, &MapRequest::default())?;
                }
            }
        }
    }
    Ok(note)
}

/// The group of [`commit`]: checked, or created with its missing parents.
fn commit_group(pool: &Pool, plan: &mut Plan) -> Result<()> {
    match &plan.group {
        GroupPlan::Existing(path) => {
            pool.group(path)
                .map_err(|e| e.context("the group went away during the import"))?;
        }
        GroupPlan::Create(path) => {
            if pool.group_exists(path) {
                return Err(Error::exists(format!(
                    "group '{path}' was created by someone else during the import"
                )));
            }
            let parents = missing_parents(pool, path);
            plan.journal.update(|r| {
                r.created_group = Some(path.clone());
                r.created_parents = parents.clone();
            })?;
            for parent in &parents {
                accounts::create_group(pool, parent)?;
            }
            accounts::create_group(pool, path)?;
            if let Some(archived) = &plan.group_config {
                // The archive's limits and devices become the new group's.
                let cfg = GroupConfig {
                    path: None,
                    ..archived.clone()
                };
                pool.save_group(path, &cfg)?;
            }
        }
    }
    Ok(())
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
