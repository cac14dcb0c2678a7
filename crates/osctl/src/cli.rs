//! Dispatch of the command line (grammar in [`crate::args`]) to the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

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

use crate::args::*;
use crate::list::{self, ListOpts};
use crate::output;
use crate::resources_cli::{self, Owner};

/// Prints the last `lines` lines of a log; with `follow`, then what is
/// appended, until the process is interrupted.
fn print_log(path: &std::path::Path, lines: usize, follow: bool) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let missing = || osctl_core::Error::not_found(format!("no log yet: {}", path.display()));
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

fn usage(message: String) -> anyhow::Error {
    osctl_core::Error::invalid(message).into()
}

impl Ctx {
    /// The pool to work on, after undoing what dead exports and imports left.
    fn pool(&self) -> Result<Pool> {
        self.open(self.pool_name.as_deref())
    }

    fn open(&self, name: Option<&str>) -> Result<Pool> {
        let pool = Pool::select(&self.host, name)?;
        for line in recovery::recover_journals(&pool)? {
            eprintln!("osctl: recovered: {line}");
        }
        Ok(pool)
    }

    /// The pool of an object named `POOL:NAME` (or of --pool, or the
    /// default), leaving the bare name in `arg`. Names never hold ':'.
    fn locate(&self, arg: &mut String) -> Result<Pool> {
        let Some((pool, name)) = arg.split_once(':') else {
            return self.pool();
        };
        if let Some(given) = self.pool_name.as_deref().filter(|p| *p != pool) {
            return Err(usage(format!(
                "'{arg}' names pool '{pool}' but --pool says '{given}'"
            )));
        }
        let pool = self.open(Some(pool))?;
        *arg = name.to_string();
        Ok(pool)
    }

    /// The pools an `ls` lists: those of --pool (comma-separated), else
    /// every pool (the default one is installed when there is none). A pool
    /// that cannot be opened is named on stderr and left out.
    fn pools_to_list(&self) -> Result<Vec<Pool>> {
        if let Some(names) = list::split(&self.pool_name) {
            return names.iter().map(|n| self.open(Some(n))).collect();
        }
        let entries = self.host.pools()?;
        if entries.is_empty() {
            return Ok(vec![self.pool()?]);
        }
        let mut pools = Vec::new();
        for entry in entries {
            match self.open(Some(&entry.name)) {
                Ok(pool) => pools.push(pool),
                Err(e) => eprintln!("osctl: skipped: {}", output::one_line(&e)),
            }
        }
        Ok(pools)
    }

    /// Rows of every listed pool.
    fn rows<T>(&self, of_pool: impl Fn(&Pool) -> osctl_core::Result<Vec<T>>) -> Result<Vec<T>> {
        let mut rows = Vec::new();
        for pool in self.pools_to_list()? {
            rows.extend(of_pool(&pool)?);
        }
        Ok(rows)
    }
}

/// Of the names an `ls` was given ([POOL:]NAME), whether `row` is one.
fn named(names: &[String], pool: &str, name: &str) -> bool {
    names.is_empty()
        || names.iter().any(|n| match n.split_once(':') {
            Some((p, n)) => p == pool && n == name,
            None => n == name,
        })
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
        Top::Send(c) => crate::send_cli::send_cmd(&ctx.host, c)?,
        Top::Receive(c) => crate::send_cli::receive_cmd(&ctx.host, ctx.json, c)?,
        Top::GenCompletion { shell } => crate::gen::completion(shell),
        Top::GenMan { dir } => crate::gen::man_pages(&dir)?,
        Top::VethUpHook { args } => osctl_core::netif::veth_up_hook(&args)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn pool_location(
    ctx: &Ctx,
    backend: Backend,
    path: Option<PathBuf>,
    dataset: Option<String>,
    name: &str,
) -> Result<String> {
    Ok(match (backend, path, dataset) {
        (Backend::Zfs, None, Some(ds)) => ds,
        (Backend::Zfs, _, None) => return Err(usage("a zfs pool needs --dataset".into())),
        (_, Some(p), None) => std::path::absolute(p)?.to_string_lossy().into_owned(),
        (_, None, None) => ctx
            .host
            .root()
            .join("pools")
            .join(name)
            .to_string_lossy()
            .into_owned(),
        (_, _, Some(_)) => {
            return Err(usage(format!(
                "a {backend} pool takes --path, not --dataset"
            )))
        }
    })
}

fn pool_cmd(ctx: &Ctx, cmd: PoolCmd) -> Result<()> {
    match cmd {
        PoolCmd::Install {
            backend,
            path,
            dataset,
            name,
        } => {
            let backend = match backend {
                BackendArg::Dir => Backend::Dir,
                BackendArg::Zfs => Backend::Zfs,
                BackendArg::Btrfs => Backend::Btrfs,
            };
            let location = pool_location(ctx, backend, path, dataset, &name)?;
            Pool::install(
                &ctx.host,
                PoolEntry {
                    name,
                    backend,
                    location,
                },
            )?;
        }
        PoolCmd::Ls { list, names } => {
            let mut pools = ctx.host.pools()?;
            pools.retain(|p| {
                list::allowed(&list::split(&ctx.pool_name), &p.name)
                    && (names.is_empty() || names.contains(&p.name))
            });
            return list::print(&list, ctx.json, &pools);
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
            let info = PoolInfo {
                allowed_bridges: osctl_core::netif::pool_network(&pool)?.allowed_bridges,
                name: pool.name,
                backend: pool.backend,
                location: pool.location,
            };
            if ctx.json {
                return output::json(&info);
            }
            let bridges = match info.allowed_bridges.join(",") {
                b if b.is_empty() => "any".to_string(),
                b => b,
            };
            output::pairs(&[
                ("name", info.name),
                ("backend", info.backend.to_string()),
                ("location", info.location),
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

/// What `pool show` prints.
#[derive(serde::Serialize)]
struct PoolInfo {
    name: String,
    backend: Backend,
    location: String,
    allowed_bridges: Vec<String>,
}

fn parse_maps(entries: &[String]) -> Result<Option<IdMap>> {
    if entries.is_empty() {
        Ok(None)
    } else {
        Ok(Some(IdMap::parse_all(entries)?))
    }
}

fn user_cmd(ctx: &Ctx, cmd: UserCmd) -> Result<()> {
    match cmd {
        UserCmd::New {
            map,
            map_uid,
            map_gid,
            mut name,
        } => {
            let pool = ctx.locate(&mut name)?;
            let both = parse_maps(&map)?;
            let req = MapRequest {
                uid_map: parse_maps(&map_uid)?.or_else(|| both.clone()),
                gid_map: parse_maps(&map_gid)?.or(both),
            };
            let _lock = pool.lock_accounts()?;
            accounts::create_user(&pool, &name, &req)?;
        }
        UserCmd::Ls { list, names } => {
            let mut rows = ctx.rows(accounts::users)?;
            rows.retain(|u| named(&names, &u.pool, &u.name));
            return list::print(&list, ctx.json, &rows);
        }
        UserCmd::Show { mut name } => {
            let pool = ctx.locate(&mut name)?;
            return list::show(ctx.json, &accounts::user_info(&pool, &name)?);
        }
        UserCmd::Del { mut name } => {
            let pool = ctx.locate(&mut name)?;
            let _lock = pool.lock_accounts()?;
            accounts::delete_user(&pool, &name)?;
        }
    }
    Ok(())
}

fn group_cmd(ctx: &Ctx, cmd: GroupCmd) -> Result<()> {
    match cmd {
        GroupCmd::New { mut name } => {
            let pool = ctx.locate(&mut name)?;
            let _lock = pool.lock_accounts()?;
            accounts::create_group(&pool, &name)?;
        }
        GroupCmd::Ls { list, names } => {
            let mut rows = ctx.rows(accounts::groups)?;
            rows.retain(|g| named(&names, &g.pool, &g.name));
            return list::print(&list, ctx.json, &rows);
        }
        GroupCmd::Show { mut name } => {
            let pool = ctx.locate(&mut name)?;
            return list::show(ctx.json, &accounts::group_info(&pool, &name)?);
        }
        GroupCmd::Del { mut name } => {
            let pool = ctx.locate(&mut name)?;
            let _lock = pool.lock_accounts()?;
            accounts::delete_group(&pool, &name)?;
            osctl_core::resources::forget_group(&pool, &name);
        }
        GroupCmd::Cgparams(mut c) => {
            let pool = ctx.locate(c.of_mut())?;
            resources_cli::cgparams_cmd(&pool, Owner::Group, c, ctx.json, ctx.quiet)?
        }
        GroupCmd::Devices(mut c) => {
            let pool = ctx.locate(c.of_mut())?;
            resources_cli::devices_cmd(&pool, Owner::Group, c, ctx.json, ctx.quiet)?
        }
        GroupCmd::Set(mut c) => {
            let pool = ctx.locate(c.of_mut())?;
            resources_cli::limit_set_cmd(&pool, Owner::Group, c, ctx.quiet)?
        }
        GroupCmd::Unset(mut c) => {
            let pool = ctx.locate(c.of_mut())?;
            resources_cli::limit_unset_cmd(&pool, Owner::Group, c, ctx.quiet)?
        }
    }
    Ok(())
}

/// `ct ls`: the containers of every listed pool, filtered.
fn ct_ls(ctx: &Ctx, list: &ListOpts, filters: [&Option<String>; 3], ids: &[String]) -> Result<()> {
    let [users, groups, states] = filters.map(list::split);
    if let Some(bad) = states
        .iter()
        .flatten()
        .find(|s| !["stopped", "starting", "running", "stopping"].contains(&s.as_str()))
    {
        return Err(usage(format!(
            "-S: unknown state '{bad}' (states: stopped, starting, running, stopping)"
        )));
    }
    let mut rows = ctx.rows(containers::list)?;
    rows.retain(|c| {
        named(ids, &c.pool, &c.id)
            && list::allowed(&users, &c.user)
            && list::allowed(&groups, &c.group)
            && list::allowed(&states, c.state.as_str())
    });
    list::print(list, ctx.json, &rows)
}

fn ct_cmd(ctx: &Ctx, cmd: CtCmd) -> Result<ExitCode> {
    match cmd {
        CtCmd::New {
            user,
            group,
            from_dir,
            from_tar,
            privileged,
            mut id,
        } => {
            let pool = ctx.locate(&mut id)?;
            let source = match (from_dir, from_tar) {
                (Some(d), None) => RootfsSource::Dir(d),
                (None, Some(t)) => RootfsSource::Tar(t),
                _ => unreachable!("clap requires exactly one source"),
            };
            let new = NewContainer {
                id,
                user,
                group,
                source,
                privileged,
            };
            containers::create(&pool, &new)?;
        }
        CtCmd::Ls {
            list,
            user,
            group,
            state,
            ids,
        } => ct_ls(ctx, &list, [&user, &group, &state], &ids)?,
        CtCmd::Show { mut id } => {
            let pool = ctx.locate(&mut id)?;
            ct_show(ctx, &pool, &id)?;
        }
        CtCmd::Start { mut id } => containers::start(&ctx.locate(&mut id)?, &id)?,
        CtCmd::Stop { mut id, timeout } => {
            containers::stop(&ctx.locate(&mut id)?, &id, Duration::from_secs(timeout))?
        }
        CtCmd::Restart { mut id, timeout } => {
            containers::restart(&ctx.locate(&mut id)?, &id, Duration::from_secs(timeout))?
        }
        CtCmd::Log {
            mut id,
            lines,
            follow,
        } => {
            let pool = ctx.locate(&mut id)?;
            pool.ct_unvalidated(&id)?;
            print_log(&containers::log_file(&pool, &id), lines, follow)?
        }
        CtCmd::Exec { mut id, command } => {
            let code = containers::exec(&ctx.locate(&mut id)?, &id, &command)?;
            return Ok(ExitCode::from(code.clamp(0, 255) as u8));
        }
        CtCmd::Del { force, mut id } => containers::delete(&ctx.locate(&mut id)?, &id, force)?,
        CtCmd::Set(SetCmd::Privileged { mut id, value }) => {
            let pool = ctx.locate(&mut id)?;
            if containers::set_privileged(&pool, &id, value == OnOff::On)? && !ctx.quiet {
                outln!("container '{id}' is running: the change applies at its next start");
            }
        }
        CtCmd::Set(SetCmd::Limit(mut c)) => {
            let pool = ctx.locate(c.of_mut())?;
            resources_cli::limit_set_cmd(&pool, Owner::Ct, c, ctx.quiet)?
        }
        CtCmd::Unset(mut c) => {
            let pool = ctx.locate(c.of_mut())?;
            resources_cli::limit_unset_cmd(&pool, Owner::Ct, c, ctx.quiet)?
        }
        CtCmd::Cgparams(mut c) => {
            let pool = ctx.locate(c.of_mut())?;
            resources_cli::cgparams_cmd(&pool, Owner::Ct, c, ctx.json, ctx.quiet)?
        }
        CtCmd::Prlimits(mut c) => {
            let pool = ctx.locate(c.id_mut())?;
            resources_cli::prlimits_cmd(&pool, c, ctx.json, ctx.quiet)?
        }
        CtCmd::Devices(mut c) => {
            let pool = ctx.locate(c.of_mut())?;
            resources_cli::devices_cmd(&pool, Owner::Ct, c, ctx.json, ctx.quiet)?
        }
        CtCmd::Export(a) => ct_export(ctx, a)?,
        CtCmd::Import(a) => ct_import(ctx, a)?,
        CtCmd::Dataset(mut cmd) => {
            let pool = ctx.locate(cmd.id_mut())?;
            dataset_cmd(ctx, &pool, cmd)?
        }
        CtCmd::Netif(mut cmd) => {
            let pool = match cmd.id_mut() {
                Some(id) => ctx.locate(id)?,
                None => ctx.pool()?,
            };
            crate::netif_cli::run(&pool, ctx.json, cmd)?
        }
        CtCmd::Send(mut cmd) => {
            let pool = match cmd.id_mut() {
                Some(id) => ctx.locate(id)?,
                None => ctx.pool()?,
            };
            crate::send_cli::ct_send_cmd(&pool, &ctx.host, ctx.quiet, cmd)?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `ct show`: the container's row with its resources.
fn ct_show(ctx: &Ctx, pool: &Pool, id: &str) -> Result<()> {
    let c = containers::info(pool, id)?;
    let report = osctl_core::resources::report(pool, &pool.ct_unvalidated(id)?);
    if ctx.json {
        let mut v = serde_json::to_value(&c)?;
        v["resources"] = match &report {
            Ok(r) => serde_json::to_value(r)?,
            Err(e) => serde_json::json!({"error": e.to_string()}),
        };
        return output::json(&v);
    }
    let mut pairs = list::pairs(&c)?;
    match &report {
        Ok(r) => pairs.extend(resources_cli::show_pairs(r)),
        Err(e) => pairs.push(("resources", format!("cannot tell: {e}"))),
    }
    output::pairs(&pairs);
    Ok(())
}

fn ct_export(ctx: &Ctx, mut a: ExportArgs) -> Result<()> {
    let pool = ctx.locate(&mut a.id)?;
    let opts = ExportOptions {
        consistent: !a.no_consistent,
        compression: match a.compression {
            CompressionArg::Auto => CompressionChoice::Auto,
            CompressionArg::Off => CompressionChoice::Fixed(Compression::Off),
            CompressionArg::Gzip => CompressionChoice::Fixed(Compression::Gzip),
            CompressionArg::Zstd => CompressionChoice::Fixed(Compression::Zstd),
        },
        format: match a.format {
            FormatArg::Native => FormatChoice::Native,
            FormatArg::Tar => FormatChoice::Tar,
        },
        single_layer: a.single_layer,
        force: a.force,
        progress: Progress::new(!ctx.quiet),
        stop_timeout: Duration::from_secs(a.stop_timeout),
        freeze: a.freeze,
        part_size: a.part_size,
    };
    let to_stdout = a.file.as_os_str() == "-";
    let done = match to_stdout {
        true => export::export_to_stdout(&pool, &a.id, &opts)?,
        false => export::export(&pool, &a.id, &a.file, &opts)?,
    };
    match (ctx.quiet, to_stdout) {
        (true, _) => {}
        // Standard output holds the archive: the closing line goes aside.
        (false, true) => eprintln!("{}", output::exported(&a.id, &done)),
        (false, false) => outln!("{}", output::exported(&a.id, &done)),
    }
    Ok(())
}

fn ct_import(ctx: &Ctx, a: ImportArgs) -> Result<()> {
    let mut as_id = a.as_id;
    let pool = match as_id.as_mut() {
        Some(id) => ctx.locate(id)?,
        None => ctx.pool()?,
    };
    let opts = ImportOptions {
        as_id,
        as_user: a.as_user,
        as_group: a.as_group,
        trusted: a.trusted,
        keep_addresses: a.keep_addresses,
        keep_map: a.keep_map,
        progress: Some(Progress::new(!ctx.quiet)),
        ..Default::default()
    };
    let imported = match a.file.as_os_str() == "-" {
        true => import::import_stdin(&pool, &opts)?,
        false => import::import_report(&pool, &a.file, &opts)?,
    };
    for note in &imported.notes {
        eprintln!("osctl: {note}");
    }
    if !ctx.quiet {
        outln!("{}", output::imported(&imported));
    }
    Ok(())
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
