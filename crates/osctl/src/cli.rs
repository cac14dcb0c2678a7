//! Command-line grammar (see `spec/cli.md`) and dispatch to the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use serde_json::json;

use osctl_core::accounts::{self, MapRequest};
use osctl_core::archive::compress::Compression;
use osctl_core::containers::{self, NewContainer, RootfsSource};
use osctl_core::datasets;
use osctl_core::export::{self, CompressionChoice, ExportOptions, FormatChoice};
use osctl_core::host::{Host, PoolEntry};
use osctl_core::idmap::IdMap;
use osctl_core::import::{self, ImportOptions};
use osctl_core::inspect;
use osctl_core::pool::Pool;
use osctl_core::progress::Progress;
use osctl_core::recovery;
use osctl_core::repack;
use osctl_core::storage::Backend;
use osctl_core::yaml;

use crate::output;
use crate::resources_cli::{
    self, CgparamsCmd, DevicesCmd, LimitSetCmd, LimitUnsetCmd, Owner, PrlimitsCmd,
};

#[derive(Parser, Debug)]
#[command(
    name = "osctl",
    version,
    about = "Manage containers and move them between hosts"
)]
pub struct Args {
    /// The pool to work on (default: the only pool, else the one named `default`)
    #[arg(long, global = true, help_heading = "Global options")]
    pool: Option<String>,
    /// Machine-readable output (one JSON document) for ls and show
    #[arg(short = 'j', long, global = true, help_heading = "Global options")]
    json: bool,
    /// No progress output and no closing summary
    #[arg(short = 'q', long, global = true, help_heading = "Global options")]
    quiet: bool,
    /// Print every external command osctl runs, with its duration and outcome
    #[arg(
        short = 'v',
        long = "debug",
        global = true,
        help_heading = "Global options"
    )]
    debug: bool,
    /// Seconds to wait for another operation on the same object
    /// (default: OSCTL_LOCK_TIMEOUT, else 600)
    #[arg(
        long,
        global = true,
        value_name = "SECONDS",
        help_heading = "Global options"
    )]
    lock_timeout: Option<u64>,
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand, Debug)]
enum Top {
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
    /// Run by LXC when a routed veth comes up (not for people)
    #[command(name = "veth-up-hook", hide = true)]
    VethUpHook {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum ArchiveCmd {
    /// Print the metadata, configs and entries of an archive ("-": standard input)
    Show { file: PathBuf },
    /// Check an archive's structure, streams and checksums without importing it
    /// ("-": standard input)
    Verify { file: PathBuf },
    /// Turn an archive written to a pipe (streams in parts) into the single-entry
    /// layout vpsAdminOS's osctl reads ("-": standard input, or standard output
    /// when it is a file)
    Repack {
        /// Overwrite OUT if it exists
        #[arg(long)]
        force: bool,
        input: PathBuf,
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum PoolCmd {
    /// Install a pool (creates its directory or dataset where missing)
    Install {
        #[arg(long, default_value = "dir")]
        backend: String,
        /// Directory of a dir or btrfs pool
        #[arg(long, conflicts_with = "dataset")]
        path: Option<PathBuf>,
        /// Dataset of a zfs pool
        #[arg(long)]
        dataset: Option<String>,
        name: String,
    },
    /// List pools
    Ls,
    /// Forget a pool; deletes nothing
    Uninstall { name: String },
    /// Find and remove what an interrupted export or import left behind
    Check,
    /// Show a pool's settings
    Show { name: String },
    /// Change a pool's setting
    #[command(subcommand)]
    Set(PoolSetCmd),
}

#[derive(Subcommand, Debug)]
enum PoolSetCmd {
    /// Bridges that archives imported without --trusted may attach to (none: any that exists)
    AllowedBridges { name: String, bridges: Vec<String> },
}

#[derive(Subcommand, Debug)]
enum UserCmd {
    /// Create a user; without maps a free block of 65536 host ids is allocated
    New {
        /// NS:HOST:COUNT for both uids and gids
        #[arg(long = "map")]
        map: Vec<String>,
        #[arg(long = "map-uid")]
        map_uid: Vec<String>,
        #[arg(long = "map-gid")]
        map_gid: Vec<String>,
        name: String,
    },
    Ls,
    Show {
        name: String,
    },
    Del {
        name: String,
    },
}

#[derive(Subcommand, Debug)]
enum GroupCmd {
    /// Create a group such as /web; its parent must exist
    New {
        name: String,
    },
    Ls,
    Show {
        name: String,
    },
    Del {
        name: String,
    },
    /// cgroup parameters (limits) of a group: its containers share them
    #[command(subcommand)]
    Cgparams(CgparamsCmd),
    /// Devices a group grants to its subgroups and containers
    #[command(subcommand)]
    Devices(DevicesCmd),
    /// Set a limit
    #[command(subcommand)]
    Set(LimitSetCmd),
    /// Remove a limit
    #[command(subcommand)]
    Unset(LimitUnsetCmd),
}

#[derive(Subcommand, Debug)]
enum CtCmd {
    /// Create a container from a directory or a tarball
    New {
        #[arg(long)]
        user: String,
        #[arg(long, default_value = "/default")]
        group: String,
        #[arg(
            long,
            conflicts_with = "from_tar",
            required_unless_present = "from_tar"
        )]
        from_dir: Option<PathBuf>,
        #[arg(long)]
        from_tar: Option<PathBuf>,
        /// Run without a user namespace (for file systems without idmapped mounts)
        #[arg(long)]
        privileged: bool,
        id: String,
    },
    Ls,
    Show {
        id: String,
    },
    Start {
        id: String,
    },
    Stop {
        id: String,
        /// Seconds to wait for a clean shutdown before killing
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    Restart {
        id: String,
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Print the end of the container's LXC log (why a start failed)
    Log {
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
        id: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Delete a container; a running one only with --force
    Del {
        #[arg(long)]
        force: bool,
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
    Export {
        /// Stop a running container briefly so the archive holds a consistent state (default)
        #[arg(long, overrides_with = "no_consistent")]
        consistent: bool,
        /// Never stop the container: the archive is as after a power loss
        #[arg(long)]
        no_consistent: bool,
        /// auto: compressed by the storage where it can (native streams), else gzip
        #[arg(long, default_value = "auto", value_parser = ["auto", "off", "gzip", "zstd"])]
        compression: String,
        /// native: the pool's own streams (zfs, btrfs; tar on dir pools); tar: one
        /// tree of what the container sees, subdatasets at their mountpoints,
        /// for pools of any kind
        #[arg(long, default_value = "native", value_parser = ["native", "tar"])]
        format: String,
        /// Dir pools, tar: a running container stays stopped while its one tar
        /// is written, as the original reads it; without it the changes made
        /// during the dump follow in a second layer (format tar-layers,
        /// readable by osctl-rs only)
        #[arg(long)]
        single_layer: bool,
        /// Overwrite FILE if it exists
        #[arg(long)]
        force: bool,
        /// Seconds a consistent export waits for the container to stop
        #[arg(long, default_value_t = 60)]
        stop_timeout: u64,
        /// Consistent without a restart: freeze a running container for the
        /// last snapshot instead of stopping it (crash-consistent, like a
        /// power cut)
        #[arg(long, conflicts_with_all = ["no_consistent", "single_layer"])]
        freeze: bool,
        /// Largest part of a stream written to a pipe, in bytes
        #[arg(long, hide = true, default_value_t = osctl_core::archive::parts::DEFAULT_PART)]
        part_size: u64,
        id: String,
        /// The archive file; "-": standard output (a file, or a pipe: streams in parts)
        file: PathBuf,
    },
    /// Create a container from an archive
    Import {
        #[arg(long)]
        as_id: Option<String>,
        /// An existing user instead of the archive's
        #[arg(long)]
        as_user: Option<String>,
        /// An existing group instead of the archive's
        #[arg(long)]
        as_group: Option<String>,
        /// Apply settings that reach outside the container (host-root maps,
        /// raw LXC lines, host mounts, devices, hooks)
        #[arg(long)]
        trusted: bool,
        /// A clone (--as-id) keeps the addresses of its network interfaces
        #[arg(long)]
        keep_addresses: bool,
        /// A user the import creates keeps the archive's id maps even where they
        /// overlap ids given out here (needs --trusted then) instead of a fresh block
        #[arg(long)]
        keep_map: bool,
        /// The archive file; "-": standard input (a file or a pipe)
        file: PathBuf,
    },
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

#[derive(Subcommand, Debug)]
enum DatasetCmd {
    /// Create a subdataset NAME (relative, e.g. var or var/log; the parent must
    /// exist) and mount it from the container's next start
    New {
        /// Where the container sees it (default: /NAME below the root, or
        /// below the parent dataset's mountpoint; no mount if the parent has none)
        #[arg(long)]
        mountpoint: Option<String>,
        id: String,
        name: String,
    },
    /// List a container's subdatasets
    Ls { id: String },
    /// Delete a subdataset, its snapshots and its mounts (not while the container runs)
    Del { id: String, name: String },
}

#[derive(Subcommand, Debug)]
enum SetCmd {
    /// Run the container without a user namespace (on) or with its user's maps (off)
    Privileged {
        id: String,
        #[arg(value_parser = ["on", "off"])]
        value: String,
    },
    #[command(flatten)]
    Limit(LimitSetCmd),
}

/// Prints the last `lines` lines of a log; with `follow`, then what is
/// appended, until the process is interrupted.
fn print_log(path: &std::path::Path, lines: usize, follow: bool) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let missing = || osctl_core::Error::NotFound(format!("no log yet: {}", path.display()));
    let mut file = std::fs::File::open(path).map_err(|_| missing())?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let all: Vec<&str> = text.lines().collect();
    for line in &all[all.len().saturating_sub(lines)..] {
        outln!("{line}");
    }
    let mut at = file.stream_position()?;
    if !follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let len = file.metadata()?.len();
        if len < at {
            at = 0; // The log was cut: read it from its start again.
        }
        file.seek(SeekFrom::Start(at))?;
        let mut new = Vec::new();
        at += file.read_to_end(&mut new)? as u64;
        if !new.is_empty() {
            let mut out = std::io::stdout().lock();
            out.write_all(&new)?;
            out.flush()?;
        }
    }
}

struct Ctx {
    host: Host,
    pool_name: Option<String>,
    json: bool,
    quiet: bool,
}

impl Ctx {
    /// The pool to work on, after undoing what dead exports and imports left.
    fn pool(&self) -> Result<Pool> {
        let pool = Pool::select(&self.host, self.pool_name.as_deref())?;
        for line in recovery::recover_journals(&pool)? {
            eprintln!("osctl: recovered: {line}");
        }
        Ok(pool)
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    osctl_core::cmd::trace_commands(args.debug);
    if let Some(secs) = args.lock_timeout {
        osctl_core::lock::set_wait_limit(Duration::from_secs(secs));
    }
    let operation: Vec<String> = std::env::args().skip(1).collect();
    osctl_core::lock::set_operation(operation.join(" "));
    if !args.quiet {
        osctl_core::lock::set_wait_notice(|line| eprintln!("osctl: {line}"));
    }
    let ctx = Ctx {
        host: Host::from_env(),
        pool_name: args.pool,
        json: args.json,
        quiet: args.quiet,
    };
    match args.command {
        Top::Pool(c) => pool_cmd(&ctx, c)?,
        Top::User(c) => user_cmd(&ctx, c)?,
        Top::Group(c) => group_cmd(&ctx, c)?,
        Top::Ct(c) => return ct_cmd(&ctx, c),
        Top::Archive(c) => archive_cmd(&ctx, c)?,
        Top::VethUpHook { args } => osctl_core::netif::veth_up_hook(&args)?,
        Top::Send(c) => crate::send_cli::send_cmd(&ctx.host, c)?,
        Top::Receive(c) => crate::send_cli::receive_cmd(&ctx.host, ctx.json, c)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn pool_cmd(ctx: &Ctx, cmd: PoolCmd) -> Result<()> {
    match cmd {
        PoolCmd::Install {
            backend,
            path,
            dataset,
            name,
        } => {
            let backend = Backend::parse(&backend)?;
            let location = match (backend, path, dataset) {
                (Backend::Zfs, None, Some(ds)) => ds,
                (Backend::Zfs, _, None) => {
                    return Err(
                        osctl_core::Error::Invalid("a zfs pool needs --dataset".into()).into(),
                    )
                }
                (_, Some(p), None) => std::path::absolute(p)?.to_string_lossy().into_owned(),
                (_, None, None) => ctx
                    .host
                    .root()
                    .join("pools")
                    .join(&name)
                    .to_string_lossy()
                    .into_owned(),
                (_, _, Some(_)) => {
                    return Err(osctl_core::Error::Invalid(format!(
                        "a {backend} pool takes --path, not --dataset"
                    ))
                    .into())
                }
            };
            Pool::install(
                &ctx.host,
                PoolEntry {
                    name,
                    backend,
                    location,
                },
            )?;
        }
        PoolCmd::Ls => {
            let pools = ctx.host.pools()?;
            if ctx.json {
                return output::json(&pools);
            }
            let rows = pools
                .iter()
                .map(|p| vec![p.name.clone(), p.backend.to_string(), p.location.clone()])
                .collect::<Vec<_>>();
            output::table(&["NAME", "BACKEND", "LOCATION"], &rows);
        }
        PoolCmd::Uninstall { name } => {
            let _registry = ctx.host.lock_registry()?;
            ctx.host.unregister(&name)?;
            osctl_core::resources::forget_pool(&ctx.host, &name);
        }
        PoolCmd::Check => {
            let pool = ctx.pool()?;
            let done = recovery::check_pool(&pool)?;
            if ctx.json {
                return output::json(&done);
            }
            if done.is_empty() {
                outln!("pool '{}': nothing left behind", pool.name);
            }
            for line in done {
                outln!("{line}");
            }
        }
        PoolCmd::Show { name } => {
            let pool = Pool::select(&ctx.host, Some(&name))?;
            let network = osctl_core::netif::pool_network(&pool)?;
            if ctx.json {
                return output::json(&json!({
                    "name": pool.name, "backend": pool.backend.to_string(),
                    "location": pool.location, "allowed_bridges": network.allowed_bridges,
                }));
            }
            let bridges = if network.allowed_bridges.is_empty() {
                "any".to_string()
            } else {
                network.allowed_bridges.join(",")
            };
            output::pairs(&[
                ("name", pool.name.clone()),
                ("backend", pool.backend.to_string()),
                ("location", pool.location.clone()),
                ("allowed_bridges", bridges),
            ]);
        }
        PoolCmd::Set(PoolSetCmd::AllowedBridges { name, bridges }) => {
            let pool = Pool::select(&ctx.host, Some(&name))?;
            osctl_core::netif::set_allowed_bridges(&pool, &bridges)?;
        }
    }
    Ok(())
}

fn parse_maps(entries: &[String]) -> Result<Option<IdMap>> {
    if entries.is_empty() {
        Ok(None)
    } else {
        Ok(Some(IdMap::parse_all(entries)?))
    }
}

fn user_cmd(ctx: &Ctx, cmd: UserCmd) -> Result<()> {
    let pool = ctx.pool()?;
    match cmd {
        UserCmd::New {
            map,
            map_uid,
            map_gid,
            name,
        } => {
            let both = parse_maps(&map)?;
            let req = MapRequest {
                uid_map: parse_maps(&map_uid)?.or_else(|| both.clone()),
                gid_map: parse_maps(&map_gid)?.or(both),
            };
            let _lock = pool.lock_accounts()?;
            accounts::create_user(&pool, &name, &req)?;
        }
        UserCmd::Ls => {
            let mut users = Vec::new();
            for name in pool.user_names()? {
                let cfg = pool.user(&name)?;
                users.push(json!({"name": name, "pool": pool.name, "uid_map": cfg.uid_map, "gid_map": cfg.gid_map}));
            }
            if ctx.json {
                return output::json(&users);
            }
            let rows = users
                .iter()
                .map(|u| {
                    let join = |k: &str| {
                        u[k].as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|v| v.as_str())
                                    .collect::<Vec<_>>()
                                    .join(",")
                            })
                            .unwrap_or_default()
                    };
                    vec![
                        u["name"].as_str().unwrap_or("").to_string(),
                        join("uid_map"),
                        join("gid_map"),
                    ]
                })
                .collect::<Vec<_>>();
            output::table(&["NAME", "UID_MAP", "GID_MAP"], &rows);
        }
        UserCmd::Show { name } => {
            let cfg = pool.user(&name)?;
            if ctx.json {
                return output::json(
                    &json!({"name": name, "pool": pool.name, "uid_map": cfg.uid_map, "gid_map": cfg.gid_map, "standalone": cfg.standalone}),
                );
            }
            output::pairs(&[
                ("name", name),
                ("pool", pool.name.clone()),
                ("uid_map", cfg.uid_map.join(",")),
                ("gid_map", cfg.gid_map.join(",")),
            ]);
        }
        UserCmd::Del { name } => {
            let _lock = pool.lock_accounts()?;
            accounts::delete_user(&pool, &name)?;
        }
    }
    Ok(())
}

fn group_cmd(ctx: &Ctx, cmd: GroupCmd) -> Result<()> {
    let pool = ctx.pool()?;
    match cmd {
        GroupCmd::New { name } => {
            let _lock = pool.lock_accounts()?;
            accounts::create_group(&pool, &name)?;
        }
        GroupCmd::Ls => {
            let groups = pool.group_paths()?;
            if ctx.json {
                let list: Vec<_> = groups
                    .iter()
                    .map(|g| json!({"name": g, "pool": pool.name}))
                    .collect();
                return output::json(&list);
            }
            let rows = groups.into_iter().map(|g| vec![g]).collect::<Vec<_>>();
            output::table(&["NAME"], &rows);
        }
        GroupCmd::Show { name } => {
            let cfg = pool.group(&name)?;
            if ctx.json {
                return output::json(
                    &json!({"name": name, "pool": pool.name, "cgparams": cfg.cgparams, "devices": cfg.devices}),
                );
            }
            output::pairs(&[("name", name), ("pool", pool.name.clone())]);
        }
        GroupCmd::Del { name } => {
            let _lock = pool.lock_accounts()?;
            accounts::delete_group(&pool, &name)?;
            osctl_core::resources::forget_group(&pool, &name);
        }
        GroupCmd::Cgparams(c) => {
            resources_cli::cgparams_cmd(&pool, Owner::Group, c, ctx.json, ctx.quiet)?
        }
        GroupCmd::Devices(c) => {
            resources_cli::devices_cmd(&pool, Owner::Group, c, ctx.json, ctx.quiet)?
        }
        GroupCmd::Set(c) => resources_cli::limit_set_cmd(&pool, Owner::Group, c, ctx.quiet)?,
        GroupCmd::Unset(c) => resources_cli::limit_unset_cmd(&pool, Owner::Group, c, ctx.quiet)?,
    }
    Ok(())
}

fn ct_cmd(ctx: &Ctx, cmd: CtCmd) -> Result<ExitCode> {
    let pool = ctx.pool()?;
    match cmd {
        CtCmd::New {
            user,
            group,
            from_dir,
            from_tar,
            privileged,
            id,
        } => {
            let source = match (from_dir, from_tar) {
                (Some(d), None) => RootfsSource::Dir(d),
                (None, Some(t)) => RootfsSource::Tar(t),
                _ => unreachable!("clap requires exactly one source"),
            };
            containers::create(
                &pool,
                &NewContainer {
                    id,
                    user,
                    group,
                    source,
                    privileged,
                },
            )?;
        }
        CtCmd::Ls => {
            let list = containers::list(&pool)?;
            if ctx.json {
                output::json(&list)?;
            } else {
                let rows = list
                    .iter()
                    .map(|c| {
                        vec![
                            c.id.clone(),
                            c.user.clone(),
                            c.group.clone(),
                            c.state.to_string(),
                        ]
                    })
                    .collect::<Vec<_>>();
                output::table(&["ID", "USER", "GROUP", "STATE"], &rows);
            }
        }
        CtCmd::Show { id } => {
            let c = containers::info(&pool, &id)?;
            let report = osctl_core::resources::report(&pool, &pool.ct_unvalidated(&id)?);
            if ctx.json {
                let mut v = serde_json::to_value(&c)?;
                v["resources"] = match &report {
                    Ok(r) => serde_json::to_value(r)?,
                    Err(e) => json!({"error": e.to_string()}),
                };
                output::json(&v)?;
            } else {
                let mut pairs = vec![
                    ("id", c.id),
                    ("pool", c.pool),
                    ("user", c.user),
                    ("group", c.group),
                    ("state", c.state.to_string()),
                    ("rootfs", c.rootfs),
                    ("privileged", c.privileged.to_string()),
                    ("hostname", c.hostname),
                    ("datasets", c.datasets.join(",")),
                ];
                match &report {
                    Ok(r) => pairs.extend(resources_cli::show_pairs(r)),
                    Err(e) => pairs.push(("resources", format!("cannot tell: {e}"))),
                }
                output::pairs(&pairs);
            }
        }
        CtCmd::Start { id } => containers::start(&pool, &id)?,
        CtCmd::Stop { id, timeout } => containers::stop(&pool, &id, Duration::from_secs(timeout))?,
        CtCmd::Restart { id, timeout } => {
            containers::restart(&pool, &id, Duration::from_secs(timeout))?
        }
        CtCmd::Log { id, lines, follow } => {
            pool.ct_unvalidated(&id)?;
            print_log(&containers::log_file(&pool, &id), lines, follow)?
        }
        CtCmd::Exec { id, command } => {
            let code = containers::exec(&pool, &id, &command)?;
            return Ok(ExitCode::from(code.clamp(0, 255) as u8));
        }
        CtCmd::Del { force, id } => containers::delete(&pool, &id, force)?,
        CtCmd::Set(SetCmd::Privileged { id, value }) => {
            if containers::set_privileged(&pool, &id, value == "on")? && !ctx.quiet {
                outln!("container '{id}' is running: the change applies at its next start");
            }
        }
        CtCmd::Set(SetCmd::Limit(c)) => {
            resources_cli::limit_set_cmd(&pool, Owner::Ct, c, ctx.quiet)?
        }
        CtCmd::Unset(c) => resources_cli::limit_unset_cmd(&pool, Owner::Ct, c, ctx.quiet)?,
        CtCmd::Cgparams(c) => {
            resources_cli::cgparams_cmd(&pool, Owner::Ct, c, ctx.json, ctx.quiet)?
        }
        CtCmd::Prlimits(c) => resources_cli::prlimits_cmd(&pool, c, ctx.json, ctx.quiet)?,
        CtCmd::Devices(c) => resources_cli::devices_cmd(&pool, Owner::Ct, c, ctx.json, ctx.quiet)?,
        CtCmd::Export {
            consistent: _,
            no_consistent,
            compression,
            format,
            single_layer,
            force,
            stop_timeout,
            freeze,
            part_size,
            id,
            file,
        } => {
            let opts = ExportOptions {
                consistent: !no_consistent,
                compression: match compression.as_str() {
                    "auto" => CompressionChoice::Auto,
                    other => CompressionChoice::Fixed(Compression::parse(other)?),
                },
                format: if format == "tar" {
                    FormatChoice::Tar
                } else {
                    FormatChoice::Native
                },
                single_layer,
                force,
                progress: Progress::new(!ctx.quiet),
                stop_timeout: Duration::from_secs(stop_timeout),
                freeze,
                part_size,
            };
            if file.as_os_str() == "-" {
                export::export_to_stdout(&pool, &id, &opts)?;
            } else {
                export::export(&pool, &id, &file, &opts)?;
            }
        }
        CtCmd::Import {
            as_id,
            as_user,
            as_group,
            trusted,
            keep_addresses,
            keep_map,
            file,
        } => {
            let opts = ImportOptions {
                as_id,
                as_user,
                as_group,
                trusted,
                keep_addresses,
                keep_map,
                progress: Some(Progress::new(!ctx.quiet)),
                ..Default::default()
            };
            let imported = if file.as_os_str() == "-" {
                import::import_stdin(&pool, &opts)?
            } else {
                import::import_report(&pool, &file, &opts)?
            };
            for note in &imported.notes {
                eprintln!("osctl: {note}");
            }
            if !ctx.quiet {
                eprintln!("imported container '{}'", imported.id);
            }
        }
        CtCmd::Dataset(cmd) => dataset_cmd(ctx, &pool, cmd)?,
        CtCmd::Netif(cmd) => crate::netif_cli::run(&pool, ctx.json, cmd)?,
        CtCmd::Send(cmd) => crate::send_cli::ct_send_cmd(&pool, &ctx.host, ctx.quiet, cmd)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn dataset_cmd(ctx: &Ctx, pool: &Pool, cmd: DatasetCmd) -> Result<()> {
    match cmd {
        DatasetCmd::New {
            mountpoint,
            id,
            name,
        } => datasets::create(pool, &id, &name, mountpoint.as_deref())?,
        DatasetCmd::Ls { id } => {
            let list = datasets::list(pool, &id)?;
            if ctx.json {
                return output::json(&list);
            }
            let rows = list
                .into_iter()
                .map(|d| vec![d.name, d.mountpoint.unwrap_or_else(|| "-".into()), d.path])
                .collect::<Vec<_>>();
            output::table(&["NAME", "MOUNTPOINT", "PATH"], &rows);
        }
        DatasetCmd::Del { id, name } => datasets::delete(pool, &id, &name)?,
    }
    Ok(())
}

/// `archive show` and `archive verify`: no pool involved, the archive only.
fn archive_cmd(ctx: &Ctx, cmd: ArchiveCmd) -> Result<()> {
    let stdin = |file: &PathBuf| file.as_os_str() == "-";
    match cmd {
        ArchiveCmd::Show { file } => {
            let summary = if stdin(&file) {
                inspect::show_from(std::io::stdin())
                    .map_err(|e| e.context("archive on standard input"))?
            } else {
                inspect::show(&file)?
            };
            if ctx.json {
                return output::json(&summary);
            }
            print_summary(&file, &summary)
        }
        ArchiveCmd::Verify { file } => {
            let report = if stdin(&file) {
                inspect::verify_from(std::io::stdin())
                    .map_err(|e| e.context("archive on standard input"))?
            } else {
                inspect::verify(&file)?
            };
            if ctx.json {
                return output::json(&report);
            }
            for line in report.lines() {
                outln!("{line}");
            }
            outln!("{}", report.verdict(&file.to_string_lossy()));
            Ok(())
        }
        ArchiveCmd::Repack { force, input, out } => {
            let input = match stdin(&input) {
                true => repack::Input::Stdin,
                false => repack::Input::Path(input),
            };
            let out = (!stdin(&out)).then_some(out);
            Ok(repack::repack_cmd(input, out.as_deref(), force)?)
        }
    }
}

fn print_summary(file: &std::path::Path, s: &inspect::ArchiveSummary) -> Result<()> {
    let m = &s.metadata;
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    output::pairs(&[
        ("file", file.to_string_lossy().into_owned()),
        ("size", format!("{} bytes", s.archive_bytes)),
        ("type", format!("{:?}", m.archive_type).to_lowercase()),
        ("format", m.format.to_string()),
        ("container", or_none(&m.container)),
        ("user", or_none(&m.user)),
        ("group", or_none(&m.group)),
        ("datasets", list(&m.datasets)),
        ("exported_at", output::utc_time(m.exported_at)),
        ("hooks", list(&s.hooks)),
        ("snapshots", s.snapshots.as_deref().map_or("-".into(), list)),
        (
            "checksums",
            if s.checksums {
                "checksums.yml present".into()
            } else {
                "no checksums.yml".into()
            },
        ),
    ]);
    for (name, config) in [
        ("config/user.yml", &s.user),
        ("config/group.yml", &s.group),
        ("config/container.yml", &s.container),
    ] {
        if let Some(value) = config {
            outln!("\n{name}:");
            for line in yaml::to_string(value)?.lines().skip(1) {
                outln!("  {line}");
            }
        }
    }
    outln!();
    let rows: Vec<Vec<String>> = s
        .entries
        .iter()
        .map(|e| {
            vec![
                e.kind.to_string(),
                e.size.to_string(),
                e.compression.unwrap_or("-").to_string(),
                e.name.clone(),
            ]
        })
        .collect();
    output::table(&["KIND", "SIZE", "COMPRESSION", "NAME"], &rows);
    Ok(())
}
