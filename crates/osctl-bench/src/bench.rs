//! The benchmark proper: per backend, a pool and containers with the generated
//! data, then every row of issue 5 (and of issue 7 for btrfs).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::downtime;

mod pipe;
mod send;
use crate::gen::{self, Dataset};
use crate::measure::{Bench, Contender, Stats};
use crate::osctl::Osctl;
use crate::report::{med, mib, secs_list, Report, Verdict};
use crate::run::Step;
use crate::sys::{self, BtrfsMount, Workdir, Zpool};

const USER: &str = "bench";
const MAIN_CT: &str = "bench-main";
const SMALL_CT: &str = "bench-small";
const IMPORTED_CT: &str = "bench-imported";
const RAW_SNAPSHOT: &str = "bench-raw";
/// The targets of issue 5.
const SAME_SPEED: f64 = 0.95;
/// Issue 17's target for `--compression off` at 200 MiB, where the fixed
/// cost of an import or export (the short zfs/btrfs commands around the
/// stream, the configs) weighs five times as much as at 1 GiB.
const SAME_SPEED_SMALL: f64 = 0.9;
const GZIP_SPEEDUP: f64 = 1.7;
const GZIP_SIZE: f64 = 1.02;
/// `--compression zstd` against `zstd -3 -T0`: as fast, within 2% in size.
const ZSTD_SIZE: f64 = 1.02;
const RSS_LIMIT_MIB: f64 = 64.0;
const DUMP_TO_DOWNTIME: f64 = 10.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    Zfs,
    Btrfs,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Dir => "dir",
            Kind::Zfs => "zfs",
            Kind::Btrfs => "btrfs",
        }
    }

    pub fn parse(s: &str) -> Result<Kind> {
        match s {
            "dir" => Ok(Kind::Dir),
            "zfs" => Ok(Kind::Zfs),
            "btrfs" => Ok(Kind::Btrfs),
            other => bail!("unknown backend '{other}': use dir, zfs, btrfs"),
        }
    }
}

pub struct Config {
    pub workdir: Workdir,
    pub repo: PathBuf,
    pub osctl: PathBuf,
    pub quick: bool,
    pub runs: usize,
    pub drop_caches: bool,
    pub backends: Vec<Kind>,
    /// The groups of rows to measure (`--rows`); empty: all.
    pub rows: Vec<String>,
}

/// The groups of rows `--rows` picks from.
pub const ROW_GROUPS: &[&str] = &["throughput", "pipe", "downtime", "send"];

impl Config {
    fn wants(&self, group: &str) -> bool {
        self.rows.is_empty() || self.rows.iter().any(|g| g == group)
    }
}

/// `ct export` arguments, shared by the throughput and downtime rows.
pub fn export_args(id: &str, out: &Path, consistency: &str, compression: &str) -> Vec<OsString> {
    let mut v: Vec<OsString> = [
        "ct",
        "export",
        consistency,
        "--compression",
        compression,
        id,
    ]
    .iter()
    .map(OsString::from)
    .collect();
    v.push(out.as_os_str().to_owned());
    v
}

fn os(parts: &[&dyn AsRef<OsStr>]) -> Vec<OsString> {
    parts.iter().map(|p| p.as_ref().to_owned()).collect()
}

/// An osctl pool on one backend, with where the raw tools work beside it.
struct Backend {
    kind: Kind,
    pool: String,
    /// A directory on the pool's file system: flushed by the timed imports.
    fs_root: PathBuf,
    /// Raw snapshots, receives and unpacks (a dataset name for zfs, a directory otherwise).
    raw_place: PathBuf,
}

#[derive(Clone)]
struct Ct {
    id: String,
    data: Dataset,
    rootfs: PathBuf,
    /// The container's root dataset (zfs) or subvolume (btrfs).
    dataset: Option<String>,
}

/// How a raw tool dumps a container's data: `before`, then `stage > file`, then `after`.
struct RawSend {
    reset: Vec<Step>,
    before: Vec<Step>,
    stage: Vec<OsString>,
    after: Vec<Step>,
}

/// How a raw tool loads a dump: `stage < file`.
struct RawRecv {
    reset: Vec<Step>,
    stage: Vec<OsString>,
}

struct Runner<'a> {
    cfg: &'a Config,
    osctl: Osctl,
    bench: Bench,
    has_export: bool,
    has_import: bool,
    /// The gzip encoder's own row is measured once per run.
    encoder_measured: bool,
    report: Report,
}

pub fn run(cfg: &Config) -> Result<Report> {
    let wd = &cfg.workdir;
    let osctl = Osctl {
        bin: cfg.osctl.clone(),
        root: wd.state(),
    };
    let has_export = osctl.has(&["ct", "export"]);
    let has_import = osctl.has(&["ct", "import"]);
    let mut runner = Runner {
        cfg,
        osctl,
        bench: Bench {
            runs: cfg.runs,
            drop_caches: cfg.drop_caches,
            logs: wd.logs(),
        },
        has_export,
        has_import,
        encoder_measured: false,
        report: Report::default(),
    };
    if !has_export || !has_import {
        runner.report.notes.push(format!(
            "this osctl build has no `ct {}`: only the raw tools ran for those rows",
            match (has_export, has_import) {
                (false, false) => "export` / `ct import",
                (false, true) => "export",
                _ => "import",
            }
        ));
    }
    let main_spec = if cfg.quick { gen::SMALL } else { gen::LARGE };
    let main_data = gen::ensure(&main_spec, &wd.data().join(main_spec.name))?;
    let small_data = if cfg.quick {
        None
    } else {
        Some(gen::ensure(&gen::SMALL, &wd.data().join(gen::SMALL.name))?)
    };
    runner.report.notes.push(format!(
        "data: {} ({} files, {:.0} MB of file data){}; throughput is that size over the median time",
        main_data.name,
        main_data.files,
        main_data.data_bytes as f64 / 1e6,
        small_data
            .as_ref()
            .map(|d| format!(", and {} ({} files, {:.0} MB) for the RSS and downtime rows", d.name, d.files, d.data_bytes as f64 / 1e6))
            .unwrap_or_default()
    ));
    for &kind in &cfg.backends {
        sys::check_interrupted()?;
        if let Err(e) = runner.backend(kind, &main_data, small_data.as_ref()) {
            if osctl_core::interrupt::check().is_err() {
                return Err(e);
            }
            eprintln!("bench: {} backend failed: {e:#}", kind.name());
            runner
                .report
                .notes
                .push(format!("{} backend: not completed: {e:#}", kind.name()));
        }
        // Each backend's archives take gigabytes: free them before the next.
        let _ = fs::remove_dir_all(wd.out());
        fs::create_dir_all(wd.out())?;
    }
    Ok(runner.report)
}

impl Runner<'_> {
    fn backend(&mut self, kind: Kind, main: &Dataset, small: Option<&Dataset>) -> Result<()> {
        let backend = self.setup(kind)?;
        let ct = self.container(&backend, MAIN_CT, main)?;
        let small_ct = match small {
            Some(d) => Some(self.container(&backend, SMALL_CT, d)?),
            None => None,
        };
        if self.cfg.wants("throughput") {
            self.throughput_and_rss_rows(&backend, &ct, small_ct.as_ref())?;
        }
        if self.has_export && self.has_import && self.cfg.wants("pipe") {
            self.pipe_rows(&backend, &ct)?;
        }
        if self.has_export && main.bootable && self.cfg.wants("downtime") {
            self.downtime_rows(&backend, &ct, small_ct.as_ref())?;
        } else if !main.bootable {
            self.report.notes.push(
                "no /bin/busybox on this host: the containers cannot boot, downtime and send rows skipped"
                    .into(),
            );
        }
        if self.osctl.has(&["ct", "send"]) && main.bootable && self.cfg.wants("send") {
            self.send_rows(&backend, &ct)?;
        }
        Ok(())
    }

    fn throughput_and_rss_rows(
        &mut self,
        backend: &Backend,
        ct: &Ct,
        small_ct: Option<&Ct>,
    ) -> Result<()> {
        let rss = self.throughput_rows(backend, ct)?;
        let small_rss = match small_ct {
            Some(s) if self.has_export && self.has_import => Some(self.rss_only(backend, s)?),
            _ => None,
        };
        let (large_rss, small_rss) = match small_rss {
            Some(s) => (rss, s),
            // Quick mode: the only container is the 200 MiB one.
            None => ((None, None), rss),
        };
        let name = backend.kind.name();
        if self.has_export {
            self.report.rss(
                name,
                "peak RSS, export (off, gzip and zstd)".into(),
                large_rss.0,
                small_rss.0,
                RSS_LIMIT_MIB,
            );
        }
        if self.has_import {
            self.report.rss(
                name,
                "peak RSS, import (off and gzip)".into(),
                large_rss.1,
                small_rss.1,
                RSS_LIMIT_MIB,
            );
        }
        Ok(())
    }

    fn setup(&mut self, kind: Kind) -> Result<Backend> {
        let wd = &self.cfg.workdir;
        let pool = format!("bench{}", kind.name());
        let backend = match kind {
            Kind::Dir => {
                self.osctl.run(
                    None,
                    os(&[
                        &"pool",
                        &"install",
                        &"--backend",
                        &"dir",
                        &"--path",
                        &wd.dir_pool(),
                        &pool,
                    ]),
                )?;
                Backend {
                    kind,
                    pool,
                    fs_root: wd.root.clone(),
                    raw_place: wd.scratch().join("untar"),
                }
            }
            Kind::Zfs => {
                sys::ensure_zfs_fuse(wd, &self.cfg.repo)?;
                let zpool = Zpool::create(wd)?;
                let dataset = format!("{}/osctl", zpool.name);
                self.osctl.run(
                    None,
                    [
                        "pool",
                        "install",
                        "--backend",
                        "zfs",
                        "--dataset",
                        &dataset,
                        &pool,
                    ],
                )?;
                Backend {
                    kind,
                    pool,
                    fs_root: zpool.mountpoint.clone(),
                    raw_place: PathBuf::from(format!("{}/raw-recv", zpool.name)),
                }
            }
            Kind::Btrfs => {
                let mount = BtrfsMount::create(wd)?;
                let raw = mount.mountpoint.join("raw");
                fs::create_dir_all(raw.join("snap"))?;
                fs::create_dir_all(raw.join("recv"))?;
                self.osctl.run(
                    None,
                    os(&[
                        &"pool",
                        &"install",
                        &"--backend",
                        &"btrfs",
                        &"--path",
                        &mount.mountpoint.join("osctl"),
                        &pool,
                    ]),
                )?;
                Backend {
                    kind,
                    pool,
                    fs_root: mount.mountpoint.clone(),
                    raw_place: raw,
                }
            }
        };
        self.osctl.run(Some(&backend.pool), ["user", "new", USER])?;
        Ok(backend)
    }

    fn container(&mut self, b: &Backend, id: &str, data: &Dataset) -> Result<Ct> {
        eprintln!(
            "bench: {}: creating container {id} from {}",
            b.kind.name(),
            data.rootfs.display()
        );
        // Privileged: zfs-fuse has no idmapped mounts; the same everywhere keeps
        // the backends comparable (privilege does not change export or import).
        self.osctl.run(
            Some(&b.pool),
            os(&[
                &"ct",
                &"new",
                &"--user",
                &USER,
                &"--privileged",
                &"--from-dir",
                &data.rootfs,
                &id,
            ]),
        )?;
        let rootfs = self.osctl.show(&b.pool, id)?.rootfs;
        let root_dataset = rootfs
            .parent()
            .context("rootfs has no parent")?
            .to_path_buf();
        let dataset = match b.kind {
            Kind::Zfs => Some(
                zfs_dataset_mounted_at(
                    &sys::run("zfs", ["list", "-H", "-o", "name,mountpoint"])?,
                    &root_dataset,
                )
                .with_context(|| format!("no zfs dataset mounted at {}", root_dataset.display()))?,
            ),
            Kind::Btrfs => Some(root_dataset.to_string_lossy().into_owned()),
            Kind::Dir => None,
        };
        Ok(Ct {
            id: id.to_string(),
            data: data.clone(),
            rootfs,
            dataset,
        })
    }

    fn raw_send(&self, b: &Backend, ct: &Ct) -> RawSend {
        match (b.kind, &ct.dataset) {
            (Kind::Zfs, Some(ds)) => {
                let snap = format!("{ds}@{RAW_SNAPSHOT}");
                RawSend {
                    reset: vec![Step::cmd(["zfs", "destroy", &snap]).may_fail()],
                    before: vec![Step::cmd(["zfs", "snapshot", &snap])],
                    stage: os(&[&"zfs", &"send", &snap]),
                    after: vec![Step::cmd(["zfs", "destroy", &snap])],
                }
            }
            (Kind::Btrfs, Some(subvol)) => {
                let snap = b.raw_place.join("snap").join(RAW_SNAPSHOT);
                RawSend {
                    reset: vec![
                        Step::cmd(os(&[&"btrfs", &"subvolume", &"delete", &snap])).may_fail()
                    ],
                    before: vec![Step::cmd(os(&[
                        &"btrfs",
                        &"-q",
                        &"subvolume",
                        &"snapshot",
                        &"-r",
                        subvol,
                        &snap,
                    ]))],
                    stage: os(&[&"btrfs", &"-q", &"send", &snap]),
                    after: vec![Step::cmd(os(&[
                        &"btrfs",
                        &"-q",
                        &"subvolume",
                        &"delete",
                        &snap,
                    ]))],
                }
            }
            _ => RawSend {
                reset: Vec::new(),
                before: Vec::new(),
                stage: os(&[
                    &"tar",
                    &"--numeric-owner",
                    &"-cf",
                    &"-",
                    &"-C",
                    &ct.rootfs,
                    &".",
                ]),
                after: Vec::new(),
            },
        }
    }

    fn raw_recv(&self, b: &Backend) -> RawRecv {
        let place = &b.raw_place;
        match b.kind {
            Kind::Zfs => RawRecv {
                reset: vec![Step::cmd(os(&[&"zfs", &"destroy", &"-r", place])).may_fail()],
                stage: os(&[&"zfs", &"recv", &"-u", place]),
            },
            Kind::Btrfs => {
                let recv = place.join("recv");
                RawRecv {
                    reset: vec![Step::cmd(os(&[
                        &"btrfs",
                        &"subvolume",
                        &"delete",
                        &recv.join(RAW_SNAPSHOT),
                    ]))
                    .may_fail()],
                    stage: os(&[&"btrfs", &"-q", &"receive", &recv]),
                }
            }
            Kind::Dir => RawRecv {
                reset: vec![
                    Step::cmd(os(&[&"rm", &"-rf", place])),
                    Step::cmd(os(&[&"mkdir", &"-p", place])),
                ],
                stage: os(&[&"tar", &"--numeric-owner", &"-xf", &"-", &"-C", place]),
            },
        }
    }

    /// A raw dump `RawSend | filters... > out`.
    fn raw_dump(
        &self,
        b: &Backend,
        ct: &Ct,
        name: &str,
        filters: &[&[&str]],
        out: &Path,
    ) -> Contender {
        let send = self.raw_send(b, ct);
        let mut step = Step::cmd(&send.stage);
        for f in filters {
            step = step.pipe(*f);
        }
        let mut timed = send.before;
        timed.push(step.stdout(out));
        timed.extend(send.after);
        let mut reset = send.reset;
        reset.push(Step::cmd(os(&[&"rm", &"-f", &out])));
        Contender {
            name: name.to_string(),
            reset,
            timed,
            sync: out.parent().unwrap_or(Path::new("/")).to_path_buf(),
            output: Some(out.to_path_buf()),
        }
    }

    /// Runs our command (when there is one to run) against the raw tools,
    /// in the bench's alternating order; returns our figures and theirs, and
    /// keeps the highest peak RSS of ours in `peak_rss`.
    fn race(
        &self,
        label: &str,
        ours: Option<Contender>,
        raw: Vec<Contender>,
        peak_rss: &mut Option<u64>,
    ) -> Result<(Option<Stats>, Vec<Stats>)> {
        let ours_ran = ours.is_some();
        let contenders: Vec<Contender> = ours.into_iter().chain(raw).collect();
        let mut stats = self.bench.compare(label, &contenders)?;
        let ours = ours_ran.then(|| stats.remove(0));
        if let Some(kib) = ours.as_ref().and_then(|s| s.peak_rss_kib) {
            *peak_rss = Some(peak_rss.unwrap_or(0).max(kib));
        }
        Ok((ours, stats))
    }

    fn our_export(&self, b: &Backend, ct: &Ct, compression: &str, out: &Path) -> Contender {
        Contender {
            name: format!("osctl export {compression}"),
            reset: vec![Step::cmd(os(&[&"rm", &"-f", &out]))],
            timed: vec![self
                .osctl
                .step(
                    &b.pool,
                    export_args(&ct.id, out, "--consistent", compression),
                )
                .measure_rss()],
            sync: out.parent().unwrap_or(Path::new("/")).to_path_buf(),
            output: Some(out.to_path_buf()),
        }
    }

    fn raw_load(
        &self,
        b: &Backend,
        name: &str,
        filter: Option<&[&str]>,
        input: &Path,
    ) -> Contender {
        let recv = self.raw_recv(b);
        let step = match filter {
            Some(f) => Step::cmd(f).stdin(input).pipe(&recv.stage),
            None => Step::cmd(&recv.stage).stdin(input),
        };
        Contender {
            name: name.to_string(),
            reset: recv.reset,
            timed: vec![step],
            sync: b.fs_root.clone(),
            output: None,
        }
    }

    fn our_import(&self, b: &Backend, archive: &Path) -> Contender {
        Contender {
            name: "osctl import".into(),
            reset: vec![self
                .osctl
                .step(&b.pool, ["ct", "del", "--force", IMPORTED_CT])
                .may_fail()],
            timed: vec![self
                .osctl
                .step(
                    &b.pool,
                    os(&[
                        &"ct",
                        &"import",
                        &"--trusted",
                        &"--as-id",
                        &IMPORTED_CT,
                        &archive,
                    ]),
                )
                .measure_rss()],
            sync: b.fs_root.clone(),
            output: None,
        }
    }

    /// Export and import rows on the main container; returns our peak RSS
    /// (export, import) over all runs.
    fn throughput_rows(&mut self, b: &Backend, ct: &Ct) -> Result<(Option<u64>, Option<u64>)> {
        let out = self.cfg.workdir.out();
        let name = b.kind.name();
        let bytes = ct.data.data_bytes;
        let native = match b.kind {
            Kind::Zfs => "zfs send",
            Kind::Btrfs => "btrfs send",
            Kind::Dir => "tar -cf",
        };
        let raw_off_file = out.join(format!("{name}-raw.stream"));
        let raw_gz_file = out.join(format!("{name}-raw.gz"));
        let raw_off = self.raw_dump(b, ct, native, &[], &raw_off_file);
        // Warm-up: the page cache (and zfs-fuse's ARC) then hold the data for
        // every contender alike.
        eprintln!("bench: {name}: warm-up run");
        self.bench.once(
            &raw_off,
            &self.bench.logs.join(format!("{name}-warmup.log")),
        )?;

        let ours_off_file = out.join(format!("{name}-osctl-off.tar"));
        let ours_gz_file = out.join(format!("{name}-osctl-gzip.tar"));
        let mut export_rss: Option<u64> = None;
        let mut import_rss: Option<u64> = None;
        let off_target = match ct.data.name == gen::SMALL.name {
            true => SAME_SPEED_SMALL,
            false => SAME_SPEED,
        };

        // export --compression off
        let ours = self
            .has_export
            .then(|| self.our_export(b, ct, "off", &ours_off_file));
        let (ours, raw) = self.race(
            &format!("{name} export off"),
            ours,
            vec![raw_off.clone()],
            &mut export_rss,
        )?;
        let ours = ours.as_ref();
        self.report.throughput(
            name,
            format!(
                "export `--compression off` vs `{}`",
                describe_raw(b.kind, None)
            ),
            bytes,
            ours,
            &raw[0],
            off_target,
        );

        // export --compression gzip
        let raws = vec![
            self.raw_dump(
                b,
                ct,
                &format!("{native} | gzip -6"),
                &[&["gzip", "-6"]],
                &raw_gz_file,
            ),
            self.raw_dump(
                b,
                ct,
                &format!("{native} | pigz -6"),
                &[&["pigz", "-6"]],
                &out.join(format!("{name}-raw-pigz.gz")),
            ),
        ];
        let ours = self
            .has_export
            .then(|| self.our_export(b, ct, "gzip", &ours_gz_file));
        let (ours, raw) = self.race(&format!("{name} export gzip"), ours, raws, &mut export_rss)?;
        let ours = ours.as_ref();
        self.report.throughput(
            name,
            format!(
                "export `--compression gzip` vs `{}`",
                describe_raw(b.kind, Some("gzip -6"))
            ),
            bytes,
            ours,
            &raw[0],
            GZIP_SPEEDUP,
        );
        self.report.throughput(
            name,
            format!(
                "export `--compression gzip` vs `{}`",
                describe_raw(b.kind, Some("pigz -6"))
            ),
            bytes,
            ours,
            &raw[1],
            SAME_SPEED,
        );
        self.report.size(
            name,
            format!(
                "archive size, gzip, vs `{}`",
                describe_raw(b.kind, Some("gzip -6"))
            ),
            ours.and_then(|s| s.output_bytes),
            raw[0].output_bytes,
            GZIP_SIZE,
        );
        self.zstd_rows(b, ct, native, &mut export_rss)?;
        self.report.push(
            name,
            "archive size, off, vs raw stream".into(),
            [
                ours_off_size(&ours_off_file),
                format!(
                    "{:.1} MB",
                    fs::metadata(&raw_off_file).map(|m| m.len()).unwrap_or(0) as f64 / 1e6
                ),
                "—".into(),
                "—".into(),
            ],
            Verdict::Info,
        );

        if !self.encoder_measured {
            self.encoder_row(&raw_off_file, bytes)?;
            self.encoder_measured = true;
        }

        // import
        let raw_import = self.raw_load(b, &describe_load(b.kind, None), None, &raw_off_file);
        let ours =
            (self.has_import && ours_off_file.exists()).then(|| self.our_import(b, &ours_off_file));
        let (ours, raw) = self.race(
            &format!("{name} import off"),
            ours,
            vec![raw_import],
            &mut import_rss,
        )?;
        self.report.throughput(
            name,
            format!("import (archive off) vs `{}`", describe_load(b.kind, None)),
            bytes,
            ours.as_ref(),
            &raw[0],
            off_target,
        );

        let gunzip: &[&str] = &["gunzip", "-c"];
        let raw_import = self.raw_load(
            b,
            &describe_load(b.kind, Some("gunzip -c")),
            Some(gunzip),
            &raw_gz_file,
        );
        let ours =
            (self.has_import && ours_gz_file.exists()).then(|| self.our_import(b, &ours_gz_file));
        let (ours, raw) = self.race(
            &format!("{name} import gzip"),
            ours,
            vec![raw_import],
            &mut import_rss,
        )?;
        let imported = ours.is_some();
        self.report.throughput(
            name,
            format!(
                "import (archive gzip) vs `{}`",
                describe_load(b.kind, Some("gunzip -c"))
            ),
            bytes,
            ours.as_ref(),
            &raw[0],
            SAME_SPEED,
        );
        for c in self.raw_recv(b).reset {
            c.execute(&self.bench.logs.join(format!("{name}-cleanup.log")))?;
        }
        if imported {
            self.osctl
                .run(Some(&b.pool), ["ct", "del", "--force", IMPORTED_CT])?;
        }
        Ok((export_rss, import_rss))
    }

    /// export `--compression zstd` against the raw dump through `zstd -3 -T0`:
    /// time and size; our highest peak RSS goes into `export_rss`.
    fn zstd_rows(
        &mut self,
        b: &Backend,
        ct: &Ct,
        native: &str,
        export_rss: &mut Option<u64>,
    ) -> Result<()> {
        let out = self.cfg.workdir.out();
        let name = b.kind.name();
        let raws = vec![self.raw_dump(
            b,
            ct,
            &format!("{native} | zstd -3 -T0"),
            &[&["zstd", "-3", "-T0", "-q"]],
            &out.join(format!("{name}-raw.zst")),
        )];
        let ours_file = out.join(format!("{name}-osctl-zstd.tar"));
        let ours = self
            .has_export
            .then(|| self.our_export(b, ct, "zstd", &ours_file));
        let (ours, raw) = self.race(&format!("{name} export zstd"), ours, raws, export_rss)?;
        let ours = ours.as_ref();
        let raw_described = describe_raw(b.kind, Some("zstd -3 -T0"));
        self.report.throughput(
            name,
            format!("export `--compression zstd` vs `{raw_described}`"),
            ct.data.data_bytes,
            ours,
            &raw[0],
            SAME_SPEED,
        );
        self.report.size(
            name,
            format!("archive size, zstd, vs `{raw_described}`"),
            ours.and_then(|s| s.output_bytes),
            raw[0].output_bytes,
            ZSTD_SIZE,
        );
        let _ = fs::remove_file(&ours_file);
        Ok(())
    }

    /// osctl's gzip encoder alone (`osctl-bench gzip`, the library's parallel
    /// single-member encoder) against gzip -6 and pigz -6 on the same raw dump:
    /// tells the encoder's share of the export gzip rows from the rest.
    fn encoder_row(&mut self, input: &Path, bytes: u64) -> Result<()> {
        let out = self.cfg.workdir.out();
        let me = std::env::current_exe()?;
        let contender = |name: &str, argv: Vec<OsString>, file: PathBuf| Contender {
            name: name.to_string(),
            reset: vec![Step::cmd(os(&[&"rm", &"-f", &file]))],
            timed: vec![Step::cmd(argv).stdin(input).stdout(&file)],
            sync: out.clone(),
            output: Some(file),
        };
        let contenders = [
            contender(
                "osctl gzip encoder",
                os(&[&me, &"gzip"]),
                out.join("encoder-osctl.gz"),
            ),
            contender(
                "gzip -6",
                os(&[&"gzip", &"-6"]),
                out.join("encoder-gzip.gz"),
            ),
            contender(
                "pigz -6",
                os(&[&"pigz", &"-6"]),
                out.join("encoder-pigz.gz"),
            ),
        ];
        let stats = self.bench.compare("encoder", &contenders)?;
        let what = |tool: &str| {
            format!("gzip encoder alone (`osctl-bench gzip`) vs `{tool} < dump > file`")
        };
        self.report.throughput(
            "any",
            what("gzip -6"),
            bytes,
            Some(&stats[0]),
            &stats[1],
            GZIP_SPEEDUP,
        );
        self.report.throughput(
            "any",
            what("pigz -6"),
            bytes,
            Some(&stats[0]),
            &stats[2],
            SAME_SPEED,
        );
        self.report.size(
            "any",
            "gzip encoder alone: size vs `gzip -6`".into(),
            stats[0].output_bytes,
            stats[1].output_bytes,
            GZIP_SIZE,
        );
        for c in &contenders {
            if let Some(f) = &c.output {
                let _ = fs::remove_file(f);
            }
        }
        Ok(())
    }

    /// Peak RSS of our export (off, gzip, zstd) and import on the small
    /// container: one run each.
    fn rss_only(&mut self, b: &Backend, ct: &Ct) -> Result<(Option<u64>, Option<u64>)> {
        let out = self.cfg.workdir.out();
        let log = self
            .bench
            .logs
            .join(format!("{}-rss-small.log", b.kind.name()));
        let mut export = None;
        let mut import = None;
        for compression in ["off", "gzip", "zstd"] {
            let file = out.join(format!("{}-small-{compression}.tar", b.kind.name()));
            let (_, rss) = self
                .bench
                .once(&self.our_export(b, ct, compression, &file), &log)?;
            export = export.max(rss);
            // Imports as the large container's rows do: off and gzip.
            if compression != "zstd" {
                let (_, rss) = self.bench.once(&self.our_import(b, &file), &log)?;
                import = import.max(rss);
                self.osctl
                    .run(Some(&b.pool), ["ct", "del", "--force", IMPORTED_CT])?;
            }
            fs::remove_file(&file)?;
        }
        Ok((export, import))
    }

    /// `ct export --freeze` of the running container: the longest pause its
    /// own ticker saw, against the target (0.3 s with snapshots, 0.5 s on
    /// dir, where the last incremental dump runs frozen).
    fn freeze_row(&mut self, b: &Backend, c: &Ct, out: &Path) -> Result<()> {
        let name = b.kind.name();
        let runs = downtime::measure_pauses(
            &self.osctl,
            &b.pool,
            &c.id,
            out,
            "--freeze",
            self.cfg.runs,
            &self.bench.logs,
        )?;
        self.osctl.run(Some(&b.pool), ["ct", "stop", &c.id])?;
        let gaps: Vec<f64> = runs.iter().map(|r| r.longest_gap).collect();
        let totals: Vec<f64> = runs.iter().map(|r| r.total).collect();
        let target = if b.kind == Kind::Dir { 0.5 } else { 0.3 };
        let gap = med(&gaps);
        self.report.push(
            name,
            format!(
                "export --freeze at {}, 1 MiB changed: longest pause seen inside",
                c.data.name
            ),
            [
                format!("{gap:.3} s"),
                format!(
                    "runs: pause {}; export {}",
                    secs_list(&gaps),
                    secs_list(&totals)
                ),
                "—".into(),
                format!("≤ {target} s"),
            ],
            if gap <= target {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
        );
        Ok(())
    }

    fn downtime_rows(&mut self, b: &Backend, ct: &Ct, small: Option<&Ct>) -> Result<()> {
        let name = b.kind.name();
        let out = self
            .cfg
            .workdir
            .out()
            .join(format!("{name}-consistent.tar"));
        let mut per_size = Vec::new();
        for c in std::iter::once(ct).chain(small) {
            let stats = downtime::measure(
                &self.osctl,
                &b.pool,
                &c.id,
                &out,
                self.cfg.runs,
                &self.bench.logs,
            )?;
            per_size.push((c.data.name, stats));
            self.freeze_row(b, c, &out)?;
        }
        for (size, st) in &per_size {
            let downtime: Vec<f64> = st.exports.iter().map(|e| e.downtime).collect();
            let lxc_gap: Vec<f64> = st.exports.iter().map(|e| e.lxc_gap).collect();
            let total: Vec<f64> = st.exports.iter().map(|e| e.total).collect();
            let (d, stop, start) = (med(&downtime), med(&st.stop), med(&st.start));
            let budget = stop + start + 1.0;
            self.report.push(name, format!("consistent export at {size}, 1 MiB changed: downtime vs `ct stop` + `ct start` + 1 s"), [format!("{d:.2} s (LXC not running {:.2} s)", med(&lxc_gap)), format!("{stop:.2} s + {start:.2} s"), format!("{:.2}×", d / (stop + start)), format!("< {budget:.2} s")], if d < budget { Verdict::Pass } else { Verdict::Fail });
            let t = med(&total);
            let at_large = *size == gen::LARGE.name;
            let gap = med(&lxc_gap);
            // Against the whole downtime, and against the part that is not the
            // container's own shutdown (LXC leaves RUNNING only once init is done).
            for (what, down, runs) in [
                ("downtime", d, &downtime),
                ("time not running (LXC)", gap, &lxc_gap),
            ] {
                let ratio = t / down;
                self.report.push(
                    name,
                    format!("consistent export at {size}: full dump time / {what}"),
                    [
                        format!("dump {t:.2} s, {what} {down:.2} s"),
                        format!(
                            "runs: dump {}; {what} {}",
                            secs_list(&total),
                            secs_list(runs)
                        ),
                        format!("{ratio:.1}×"),
                        if at_large {
                            format!("≥ {DUMP_TO_DOWNTIME}×")
                        } else {
                            "— (1 GiB only)".into()
                        },
                    ],
                    match (at_large, ratio >= DUMP_TO_DOWNTIME) {
                        (false, _) => Verdict::Info,
                        (true, true) => Verdict::Pass,
                        (true, false) => Verdict::Fail,
                    },
                );
            }
            if let Some(rss) = st.exports.iter().filter_map(|e| e.peak_rss_kib).max() {
                self.report.notes.push(format!(
                    "{name}: peak RSS of the consistent export at {size}: {}",
                    mib(rss)
                ));
            }
        }
        if let [(large_name, large), (small_name, small)] = &per_size[..] {
            let dl = med(&large.exports.iter().map(|e| e.downtime).collect::<Vec<_>>());
            let ds = med(&small.exports.iter().map(|e| e.downtime).collect::<Vec<_>>());
            let flat = dl <= ds * 1.2 + 0.3;
            self.report.push(
                name,
                "downtime independent of the container's size".into(),
                [
                    format!("{dl:.2} s at {large_name}"),
                    format!("{ds:.2} s at {small_name}"),
                    format!("{:.2}×", dl / ds),
                    "≤ 1.2× + 0.3 s".into(),
                ],
                if flat { Verdict::Pass } else { Verdict::Fail },
            );
        }
        Ok(())
    }
}

fn ours_off_size(path: &Path) -> String {
    fs::metadata(path)
        .map(|m| format!("{:.1} MB", m.len() as f64 / 1e6))
        .unwrap_or_else(|_| "—".into())
}

fn describe_raw(kind: Kind, filter: Option<&str>) -> String {
    let base = match kind {
        Kind::Zfs => "zfs send",
        Kind::Btrfs => "btrfs send",
        Kind::Dir => "tar -cf -",
    };
    match filter {
        Some(f) => format!("{base} | {f} > file"),
        None => format!("{base} > file"),
    }
}

fn describe_load(kind: Kind, filter: Option<&str>) -> String {
    let base = match kind {
        Kind::Zfs => "zfs recv",
        Kind::Btrfs => "btrfs receive",
        Kind::Dir => "tar -xf -",
    };
    match filter {
        Some(f) => format!("{f} file | {base}"),
        None => format!("{base} < file"),
    }
}

/// The dataset whose mountpoint is `dir`, from `zfs list -H -o name,mountpoint`.
pub fn zfs_dataset_mounted_at(list: &str, dir: &Path) -> Option<String> {
    list.lines().find_map(|line| {
        let (name, mountpoint) = line.split_once('\t')?;
        (Path::new(mountpoint.trim_end()) == dir).then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_dataset_by_mountpoint() {
        let list = "tank\t/tank\ntank/osctl\t/tank/osctl\ntank/osctl/ct/b1\t/tank/osctl/ct/b1\n";
        assert_eq!(
            zfs_dataset_mounted_at(list, Path::new("/tank/osctl/ct/b1")),
            Some("tank/osctl/ct/b1".into())
        );
        assert_eq!(zfs_dataset_mounted_at(list, Path::new("/nowhere")), None);
    }

    #[test]
    fn export_arguments_in_command_line_order() {
        let v = export_args("c1", Path::new("/o/a.tar"), "--consistent", "gzip");
        assert_eq!(
            v,
            [
                "ct",
                "export",
                "--consistent",
                "--compression",
                "gzip",
                "c1",
                "/o/a.tar"
            ]
            .map(OsString::from)
        );
    }

    #[test]
    fn raw_commands_read_like_a_shell() {
        assert_eq!(
            describe_raw(Kind::Zfs, Some("pigz -6")),
            "zfs send | pigz -6 > file"
        );
        assert_eq!(
            describe_load(Kind::Btrfs, Some("gunzip -c")),
            "gunzip -c file | btrfs receive"
        );
        assert_eq!(describe_load(Kind::Dir, None), "tar -xf - < file");
    }
}
