//! The command-line grammar (see `spec/cli.md`), after vpsAdminOS's osctl:
//! its aliases (`list`, `delete`, ...), short options and `ls` options.
//! Every command, argument and option says in one line what it is; the man
//! pages and shell completions are generated from these definitions.

use std::path::PathBuf;

use clap::{ArgGroup, Parser, Subcommand, ValueEnum};

use crate::list::ListOpts;
use crate::resources_cli::{CgparamsCmd, DevicesCmd, LimitSetCmd, LimitUnsetCmd, PrlimitsCmd};

const GLOBAL: &str = "Global options";

#[derive(Parser, Debug)]
#[command(
    name = "osctl",
    version,
    about = "Manage containers and move them between hosts",
    long_about = "Manage containers (LXC) in pools (directories, ZFS, btrfs) and move them \
                  between hosts as archives compatible with vpsAdminOS's osctl.\n\n\
                  Containers, users and groups may be named POOL:NAME wherever one is \
                  taken (e.g. tank:web1), instead of --pool."
)]
pub struct Args {
    /// The pool to work on (default: the only pool, else the one named
    /// `default`); for ls commands, the pools to list (comma-separated)
    #[arg(long, global = true, value_name = "POOL", help_heading = GLOBAL)]
    pub pool: Option<String>,
    /// Machine-readable output (one JSON document) for ls and show
    #[arg(short = 'j', long, global = true, help_heading = GLOBAL)]
    pub json: bool,
    /// No progress output and no closing summary
    #[arg(short = 'q', long, global = true, help_heading = GLOBAL)]
    pub quiet: bool,
    /// Print every external command osctl runs, with its duration and outcome
    #[arg(short = 'v', long = "debug", global = true, help_heading = GLOBAL)]
    pub debug: bool,
    /// Seconds to wait for another operation on the same object
    /// (default: OSCTL_LOCK_TIMEOUT, else 600)
    #[arg(long, global = true, value_name = "SECONDS", help_heading = GLOBAL)]
    pub lock_timeout: Option<u64>,
    #[command(subcommand)]
    pub command: Top,
}

#[derive(Subcommand, Debug)]
pub enum Top {
    /// Pools: where configs and containers live
    #[command(subcommand)]
    Pool(PoolCmd),
    /// Users: id maps of containers
    #[command(subcommand)]
    User(UserCmd),
    /// Groups: a hierarchy of containers
    #[command(subcommand)]
    Group(GroupCmd),
    /// Containers
    #[command(subcommand, name = "ct")]
    Ct(CtCmd),
    /// Archives: look inside or check one without importing it
    #[command(subcommand)]
    Archive(ArchiveCmd),
    /// This host's key for sending containers to other hosts
    #[command(subcommand)]
    Send(crate::send_cli::SendCmd),
    /// Receiving containers from other hosts
    #[command(subcommand)]
    Receive(crate::send_cli::ReceiveCmd),
    /// Print a shell completion script (bash, zsh, fish, ...) to standard output
    GenCompletion {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
    /// Write the man pages (osctl(8) and one per command group) into DIR
    GenMan {
        /// Where to write osctl.8, osctl-ct.8, ...
        dir: PathBuf,
    },
    /// Run by LXC when a routed veth comes up (not for people)
    #[command(name = "veth-up-hook", hide = true)]
    VethUpHook {
        /// What LXC passes to a hook
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ArchiveCmd {
    /// Print the metadata, configs and entries of an archive
    Show {
        /// The archive ("-": standard input)
        file: PathBuf,
    },
    /// Check an archive's structure, streams and checksums without importing it
    Verify {
        /// The archive ("-": standard input)
        file: PathBuf,
    },
    /// Turn an archive written to a pipe (streams in parts) into the single-entry
    /// layout vpsAdminOS's osctl reads
    Repack {
        /// Overwrite OUT if it exists
        #[arg(long)]
        force: bool,
        /// The parts archive ("-": standard input)
        input: PathBuf,
        /// The archive to write ("-": standard output, when it is a file)
        out: PathBuf,
    },
}

/// The kinds of pools.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum BackendArg {
    /// Plain directories: containers are copied file by file
    Dir,
    /// ZFS datasets: snapshots, zfs send/recv
    Zfs,
    /// btrfs subvolumes: snapshots, btrfs send/receive
    Btrfs,
}

#[derive(Subcommand, Debug)]
pub enum PoolCmd {
    /// Install a pool (creates its directory or dataset where missing)
    Install {
        /// The kind of storage
        #[arg(long, value_enum, default_value_t = BackendArg::Dir)]
        backend: BackendArg,
        /// Directory of a dir or btrfs pool (default: $OSCTL_ROOT/pools/NAME)
        #[arg(long, value_name = "DIR", conflicts_with = "dataset")]
        path: Option<PathBuf>,
        /// Dataset of a zfs pool
        #[arg(long, value_name = "DATASET")]
        dataset: Option<String>,
        /// The new pool's name
        name: String,
    },
    /// List pools
    #[command(visible_alias = "list")]
    Ls {
        #[command(flatten)]
        list: ListOpts,
        /// Only these pools
        names: Vec<String>,
    },
    /// Forget a pool; deletes nothing
    Uninstall {
        /// The pool
        name: String,
    },
    /// Find and remove what an interrupted export or import left behind
    Check,
    /// Show a pool's settings
    #[command(visible_alias = "info")]
    Show {
        /// The pool
        name: String,
    },
    /// Change a pool's setting
    #[command(subcommand)]
    Set(PoolSetCmd),
}

#[derive(Subcommand, Debug)]
pub enum PoolSetCmd {
    /// Bridges that archives imported without --trusted may attach to (none: any)
    AllowedBridges {
        /// The pool
        name: String,
        /// Host bridges; none to allow any that exists
        bridges: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create a user; without maps a free block of 65536 host ids is allocated
    #[command(visible_alias = "create")]
    New {
        /// An id map for both uids and gids (repeatable)
        #[arg(long = "map", value_name = "NS:HOST:COUNT")]
        map: Vec<String>,
        /// A uid map (repeatable)
        #[arg(long = "map-uid", value_name = "NS:HOST:COUNT")]
        map_uid: Vec<String>,
        /// A gid map (repeatable)
        #[arg(long = "map-gid", value_name = "NS:HOST:COUNT")]
        map_gid: Vec<String>,
        /// The new user's name ([POOL:]NAME)
        name: String,
    },
    /// List the users of every pool
    #[command(visible_alias = "list")]
    Ls {
        #[command(flatten)]
        list: ListOpts,
        /// Only these users
        names: Vec<String>,
    },
    /// Show a user
    #[command(visible_alias = "info")]
    Show {
        /// The user ([POOL:]NAME)
        name: String,
    },
    /// Delete a user no container uses
    #[command(visible_alias = "delete")]
    Del {
        /// The user ([POOL:]NAME)
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum GroupCmd {
    /// Create a group such as /web; its parent must exist
    #[command(visible_alias = "create")]
    New {
        /// The new group's path ([POOL:]/NAME[/SUB...])
        name: String,
    },
    /// List the groups of every pool
    #[command(visible_alias = "list")]
    Ls {
        #[command(flatten)]
        list: ListOpts,
        /// Only these groups
        names: Vec<String>,
    },
    /// Show a group
    #[command(visible_alias = "info")]
    Show {
        /// The group ([POOL:]PATH)
        name: String,
    },
    /// Delete a group without subgroups and containers
    #[command(visible_alias = "delete")]
    Del {
        /// The group ([POOL:]PATH)
        name: String,
    },
    /// cgroup parameters (limits) of a group: its containers share them
    #[command(subcommand)]
    Cgparams(CgparamsCmd),
    /// Devices a group grants to its subgroups and containers
    #[command(subcommand)]
    Devices(DevicesCmd),
    /// Set a limit of a group
    #[command(subcommand)]
    Set(LimitSetCmd),
    /// Remove a limit of a group
    #[command(subcommand)]
    Unset(LimitUnsetCmd),
}

/// How the root file system is compressed in an archive.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum CompressionArg {
    /// The storage's own compressed stream where it has one, else gzip
    Auto,
    /// Uncompressed
    Off,
    /// One gzip member, on all cores
    Gzip,
    /// zstd, multithreaded (vpsAdminOS's osctl cannot read it)
    Zstd,
}

/// What kind of streams an archive holds.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum FormatArg {
    /// The pool's own streams (zfs, btrfs; tar on dir pools)
    Native,
    /// One tree of what the container sees, for pools of any kind
    Tar,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Subcommand, Debug)]
pub enum CtCmd {
    /// Create a container from a directory or a tarball (needs one of
    /// --from-dir and --from-tar)
    #[command(
        visible_alias = "create",
        group(ArgGroup::new("source").required(true).args(["from_dir", "from_tar"]))
    )]
    New {
        /// The user whose id map the container runs with
        #[arg(long)]
        user: String,
        /// The container's group
        #[arg(long, default_value = "/default")]
        group: String,
        /// Copy the root file system from this directory
        #[arg(long, value_name = "DIR")]
        from_dir: Option<PathBuf>,
        /// Extract the root file system from this tarball (plain, gzip or zstd)
        #[arg(long, value_name = "FILE")]
        from_tar: Option<PathBuf>,
        /// Run without a user namespace (for file systems without idmapped mounts)
        #[arg(long)]
        privileged: bool,
        /// The new container's id ([POOL:]ID)
        id: String,
    },
    /// List the containers of every pool
    #[command(visible_alias = "list")]
    Ls {
        #[command(flatten)]
        list: ListOpts,
        /// Only containers of these users (comma-separated)
        #[arg(short = 'u', long, value_name = "USERS")]
        user: Option<String>,
        /// Only containers of these groups (comma-separated)
        #[arg(short = 'g', long, value_name = "GROUPS")]
        group: Option<String>,
        /// Only containers in these states (comma-separated: stopped,
        /// starting, running, stopping)
        #[arg(short = 'S', long, value_name = "STATES")]
        state: Option<String>,
        /// Only these containers ([POOL:]ID)
        ids: Vec<String>,
    },
    /// Show a container
    #[command(visible_alias = "info")]
    Show {
        /// The container ([POOL:]ID)
        id: String,
    },
    /// Start a container
    Start {
        /// The container ([POOL:]ID)
        id: String,
    },
    /// Stop a container: a clean shutdown, killed after the timeout
    Stop {
        /// The container ([POOL:]ID)
        id: String,
        /// Seconds to wait for a clean shutdown before killing
        #[arg(short = 't', long, value_name = "SECS", default_value_t = 60)]
        timeout: u64,
    },
    /// Stop a container and start it again
    Restart {
        /// The container ([POOL:]ID)
        id: String,
        /// Seconds to wait for a clean shutdown before killing
        #[arg(short = 't', long, value_name = "SECS", default_value_t = 60)]
        timeout: u64,
    },
    /// Print the end of the container's LXC log (why a start failed)
    Log {
        /// The container ([POOL:]ID)
        id: String,
        /// How many lines from the end
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
        /// Keep printing what is added, until interrupted
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Run a command inside a running container; its exit status is ours
    Exec {
        /// The container ([POOL:]ID)
        id: String,
        /// The command and its arguments (`--` before it is optional)
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "COMMAND"
        )]
        command: Vec<String>,
    },
    /// Delete a container; a running one only with --force
    #[command(visible_alias = "delete")]
    Del {
        /// Stop a running container first
        #[arg(short = 'f', long)]
        force: bool,
        /// The container ([POOL:]ID)
        id: String,
    },
    /// Change a setting
    #[command(subcommand)]
    Set(SetCmd),
    /// Remove a setting
    #[command(subcommand)]
    Unset(LimitUnsetCmd),
    /// cgroup parameters (limits) of a container
    #[command(subcommand)]
    Cgparams(CgparamsCmd),
    /// Process limits (setrlimit) of a container
    #[command(subcommand)]
    Prlimits(PrlimitsCmd),
    /// Devices a container may use
    #[command(subcommand)]
    Devices(DevicesCmd),
    /// Write the container (configs and root file system) into one archive
    ///
    /// What vpsAdminOS's osctl reads: --format native on zfs pools with
    /// --compression off, gzip or auto; tar archives (--format tar, or native
    /// on dir pools) with gzip or auto, since it looks for rootfs/base.tar.gz
    /// only, and in one layer: always on zfs and btrfs pools, on dir pools
    /// when the container is stopped, with --no-consistent or --single-layer.
    /// It refuses loudly what it cannot read (zstd, uncompressed tar, btrfs
    /// streams, format tar-layers).
    #[command(verbatim_doc_comment)]
    Export(ExportArgs),
    /// Create a container from an archive
    Import(ImportArgs),
    /// Subdatasets of a container (zfs, btrfs), each with its own private/, shown
    /// to the container by a dataset mount of its config
    #[command(subcommand)]
    Dataset(DatasetCmd),
    /// Network interfaces: bridged or routed veth pairs
    #[command(subcommand, visible_alias = "net")]
    Netif(crate::netif_cli::NetifCmd),
    /// Move the container to another host over SSH, in rounds
    Send(crate::send_cli::CtSendCmd),
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Stop a running container briefly so the archive holds a consistent state (default)
    #[arg(long, overrides_with = "no_consistent")]
    pub consistent: bool,
    /// Never stop the container: the archive is as after a power loss
    #[arg(long)]
    pub no_consistent: bool,
    /// How the root file system is compressed
    #[arg(long, value_enum, default_value_t = CompressionArg::Auto)]
    pub compression: CompressionArg,
    /// What kind of streams the archive holds
    #[arg(long, value_enum, default_value_t = FormatArg::Native)]
    pub format: FormatArg,
    /// Dir pools, tar: a running container stays stopped while its one tar
    /// is written, as the original reads it; without it the changes made
    /// during the dump follow in a second layer (format tar-layers,
    /// readable by osctl-rs only)
    #[arg(long)]
    pub single_layer: bool,
    /// Overwrite FILE if it exists
    #[arg(long)]
    pub force: bool,
    /// Seconds a consistent export waits for the container to stop
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub stop_timeout: u64,
    /// Consistent without a restart: freeze a running container for the
    /// last snapshot instead of stopping it (crash-consistent, like a
    /// power cut)
    #[arg(long, conflicts_with_all = ["no_consistent", "single_layer"])]
    pub freeze: bool,
    /// Largest part of a stream written to a pipe, in bytes
    #[arg(long, hide = true, default_value_t = osctl_core::archive::parts::DEFAULT_PART)]
    pub part_size: u64,
    /// The container ([POOL:]ID)
    pub id: String,
    /// The archive to write ("-": standard output, a file or a pipe: streams in parts)
    pub file: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The new container's id instead of the archive's ([POOL:]ID: into POOL)
    #[arg(long, value_name = "ID")]
    pub as_id: Option<String>,
    /// An existing user instead of the archive's
    #[arg(long, value_name = "USER")]
    pub as_user: Option<String>,
    /// An existing group instead of the archive's
    #[arg(long, value_name = "GROUP")]
    pub as_group: Option<String>,
    /// Apply settings that reach outside the container (host-root maps,
    /// raw LXC lines, host mounts, devices, hooks)
    #[arg(long)]
    pub trusted: bool,
    /// A clone (--as-id) keeps the addresses of its network interfaces
    #[arg(long)]
    pub keep_addresses: bool,
    /// A user the import creates keeps the archive's id maps even where they
    /// overlap ids given out here (needs --trusted then) instead of a fresh block
    #[arg(long)]
    pub keep_map: bool,
    /// The archive to read ("-": standard input, a file or a pipe)
    pub file: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum DatasetCmd {
    /// Create a subdataset NAME (relative, e.g. var or var/log; the parent must
    /// exist) and mount it from the container's next start
    #[command(visible_alias = "create")]
    New {
        /// Where the container sees it (default: /NAME below the root, or
        /// below the parent dataset's mountpoint; no mount if the parent has none)
        #[arg(long)]
        mountpoint: Option<String>,
        /// The container ([POOL:]ID)
        id: String,
        /// The subdataset, relative to the container's root dataset
        name: String,
    },
    /// List a container's subdatasets
    #[command(visible_alias = "list")]
    Ls {
        /// The container ([POOL:]ID)
        id: String,
    },
    /// Delete a subdataset, its snapshots and its mounts (not while the container runs)
    #[command(visible_alias = "delete")]
    Del {
        /// The container ([POOL:]ID)
        id: String,
        /// The subdataset
        name: String,
    },
}

impl DatasetCmd {
    /// The container argument, for [`crate::cli`] to resolve `POOL:ID`.
    pub fn id_mut(&mut self) -> &mut String {
        match self {
            DatasetCmd::New { id, .. } | DatasetCmd::Ls { id } | DatasetCmd::Del { id, .. } => id,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum SetCmd {
    /// Run the container without a user namespace (on) or with its user's maps (off)
    Privileged {
        /// The container ([POOL:]ID)
        id: String,
        /// on or off
        #[arg(value_enum)]
        value: OnOff,
    },
    #[command(flatten)]
    Limit(LimitSetCmd),
}
