//! osctl-bench: measures `osctl ct export` / `ct import` against the raw tools
//! (`zfs send`/`recv`, `btrfs send`/`receive`, GNU tar, gzip, pigz) on the same
//! generated data in the same run, and prints a markdown table (issue 5).
//! `scripts/bench.sh` is the one command that builds and runs it.

mod bench;
mod debian;
mod downtime;
mod gen;
mod measure;
mod osctl;
mod prng;
mod report;
mod run;
mod sys;

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "osctl-bench",
    about = "Benchmark of osctl export/import against the raw tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The ~200 MiB data set only (a few minutes) instead of ~1 GiB (+ 200 MiB)
    #[arg(long)]
    quick: bool,
    /// Work directory: generated data (kept), pools, archives, logs
    #[arg(long, default_value = "/var/tmp/osctl-bench")]
    workdir: PathBuf,
    /// The osctl binary under test
    #[arg(long, default_value = "target/release/osctl")]
    osctl: PathBuf,
    /// The repository (for scripts/zfs-fuse-up.sh)
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Timed runs of each contender (the median is reported); default 3,
    /// or 5 with --quick, whose runs are short and noisier
    #[arg(long)]
    runs: Option<usize>,
    /// Backends to measure, comma-separated
    #[arg(long, default_value = "dir,zfs,btrfs", value_delimiter = ',')]
    backends: Vec<String>,
    /// Drop the page cache before every timed run (cold caches) instead of warm ones
    #[arg(long)]
    drop_caches: bool,
    /// Also write the table (with the machine's description) to this file
    #[arg(long)]
    output: Option<PathBuf>,
    /// Only these groups of rows, comma-separated: throughput (with peak
    /// RSS, zstd and the gzip encoder), pipe, downtime (with --freeze), send
    #[arg(long, value_delimiter = ',')]
    rows: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Undo what an interrupted run left: containers, zpools, mounts
    Cleanup {
        #[arg(long, default_value = "/var/tmp/osctl-bench")]
        workdir: PathBuf,
    },
    /// Only generate a data set (200MiB or 1GiB) into DIR/rootfs
    Gen { size: String, dir: PathBuf },
    /// Print the machine's description
    Machine,
    /// The real-distribution rows: a debootstrapped Debian (systemd) container
    /// on a dir pool, consistent export (stop and start) against --freeze, the
    /// pause as its own ticker service saw it. Needs the network once.
    Debian {
        #[arg(long, default_value = "/var/tmp/osctl-bench")]
        workdir: PathBuf,
        #[arg(long, default_value = "target/release/osctl")]
        osctl: PathBuf,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// The pool's backend: dir (the embedded pool), zfs (a zpool on
        /// zfs-fuse) or btrfs (a loop-mounted file system), made for the run
        #[arg(long, default_value = "dir")]
        backend: String,
        /// The repository (for scripts/zfs-fuse-up.sh)
        #[arg(long, default_value = ".")]
        repo: PathBuf,
    },
    /// Judge the tree DIR as an untrusted import judges what a native
    /// stream brought (ids below 65536, the usual devices, no privileged
    /// attributes): entries, wall and CPU time of each run
    Scan {
        dir: PathBuf,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Drop the kernel's caches before each run (cold metadata)
        #[arg(long)]
        drop_caches: bool,
    },
    /// CPU seconds per GiB of the checksums.yml hashes (SHA-256 before,
    /// BLAKE3 now) on generated data in memory, one core
    Hash {
        /// GiB hashed by each algorithm per run
        #[arg(long, default_value_t = 2)]
        gib: u64,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Compress stdin to stdout with osctl's own gzip encoder (level 6, all
    /// cores): the encoder alone, for the "encoder" row
    Gzip {
        /// Worker threads (default: one per core)
        #[arg(long)]
        threads: Option<usize>,
        /// Input bytes per block (default: the library's)
        #[arg(long)]
        block_size: Option<usize>,
    },
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("osctl-bench: error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    osctl_core::interrupt::install();
    match cli.command {
        Some(Command::Cleanup { workdir }) => {
            sys::cleanup(&sys::Workdir::new(workdir)?);
            Ok(())
        }
        Some(Command::Gen { size, dir }) => {
            let spec = match size.as_str() {
                "200MiB" => gen::SMALL,
                "1GiB" => gen::LARGE,
                other => bail!("unknown size '{other}': use 200MiB or 1GiB"),
            };
            let ds = gen::ensure(&spec, &dir)?;
            println!(
                "{} files, {} bytes in {}",
                ds.files,
                ds.data_bytes,
                ds.rootfs.display()
            );
            Ok(())
        }
        Some(Command::Gzip {
            threads,
            block_size,
        }) => gzip_stdin(threads, block_size),
        Some(Command::Scan {
            dir,
            runs,
            drop_caches,
        }) => scan_runs(&dir, runs, drop_caches),
        Some(Command::Hash { gib, runs }) => hash_runs(gib, runs),
        Some(Command::Debian {
            workdir,
            osctl,
            runs,
            backend,
            repo,
        }) => debian::run(&workdir, &osctl, runs, bench::Kind::parse(&backend)?, &repo),
        Some(Command::Machine) => {
            print!("{}", report::machine());
            Ok(())
        }
        None => run(cli.run),
    }
}

fn scan_runs(dir: &std::path::Path, runs: usize, drop_caches: bool) -> Result<()> {
    use osctl_core::filepolicy::{scan, FilePolicy};
    let policy = FilePolicy::for_import(Some(65536), false);
    for run in 1..=runs {
        if drop_caches {
            sys::drop_caches()?;
        }
        let cpu_before = sys::cpu_secs();
        let started = std::time::Instant::now();
        let stats = scan::scan(dir, &[], &policy)?;
        let wall = started.elapsed().as_secs_f64();
        let (user, system) = sys::cpu_secs();
        println!(
            "run {run}: {} entries, {} directories, {wall:.3} s, CPU user {:.3} s, sys {:.3} s",
            stats.entries,
            stats.dirs,
            user - cpu_before.0,
            system - cpu_before.1
        );
    }
    Ok(())
}

fn hash_runs(gib: u64, runs: usize) -> Result<()> {
    use osctl_core::archive::DigestAlgorithm;
    let chunk: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for run in 1..=runs {
        for algorithm in [DigestAlgorithm::Sha256, DigestAlgorithm::Blake3] {
            let cpu_before = sys::cpu_secs();
            let mut hasher = algorithm.hasher();
            for _ in 0..gib << 10 {
                hasher.update(&chunk);
            }
            std::hint::black_box(hasher.hex());
            let (user, system) = sys::cpu_secs();
            let per_gib = (user - cpu_before.0 + system - cpu_before.1) / gib as f64;
            println!(
                "run {run}: {}: {per_gib:.3} s of CPU per GiB",
                algorithm.name()
            );
        }
    }
    Ok(())
}

fn gzip_stdin(threads: Option<usize>, block_size: Option<usize>) -> Result<()> {
    use osctl_core::archive::compress::{GzipOptions, ParallelGzEncoder};
    let mut options = GzipOptions::default();
    options.threads = threads.unwrap_or(options.threads);
    options.block_size = block_size.unwrap_or(options.block_size);
    let stdout = std::io::stdout().lock();
    let mut encoder =
        ParallelGzEncoder::new(std::io::BufWriter::with_capacity(1 << 20, stdout), &options)?;
    std::io::copy(&mut std::io::stdin().lock(), &mut encoder)?;
    use std::io::Write;
    encoder.finish()?.flush()?;
    Ok(())
}

fn run(args: RunArgs) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("run as root: pools, loop mounts, LXC and drop_caches need it");
    }
    let runs = args.runs.unwrap_or(if args.quick { 5 } else { 3 });
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let backends = args
        .backends
        .iter()
        .map(|b| bench::Kind::parse(b))
        .collect::<Result<Vec<_>>>()?;
    if let Some(unknown) = args
        .rows
        .iter()
        .find(|r| !bench::ROW_GROUPS.contains(&r.as_str()))
    {
        bail!(
            "unknown group of rows '{unknown}': use {}",
            bench::ROW_GROUPS.join(", ")
        );
    }
    let osctl = std::fs::canonicalize(&args.osctl).map_err(|e| {
        anyhow::anyhow!(
            "osctl binary {}: {e} (build it with cargo build --release)",
            args.osctl.display()
        )
    })?;
    let workdir = sys::Workdir::new(args.workdir)?;
    // Leftovers of an interrupted run first, then a clean slate (the data stays).
    sys::cleanup(&workdir);
    workdir.reset()?;
    let cfg = bench::Config {
        workdir: workdir.clone(),
        repo: args.repo,
        osctl,
        quick: args.quick,
        runs,
        drop_caches: args.drop_caches,
        backends,
        rows: args.rows,
    };
    let started = std::time::Instant::now();
    let load_before = report::load_average();
    let result = bench::run(&cfg);
    eprintln!("bench: cleaning up");
    sys::cleanup(&workdir);
    let mut report = result?;
    report.notes.push(format!(
        "{} timed runs per contender, order rotated each round, median shown; a ratio is the median of the rounds' ratios; {}; \
         every timed span ends with syncfs(2) of the file system written; wall time of the whole benchmark {:.0} s; \
         load average (1, 5, 15 min) {} at the start, {} at the end",
        cfg.runs,
        if cfg.drop_caches {
            "page cache dropped before every run"
        } else {
            "warm caches (one untimed warm-up dump per backend; the data fits in memory)"
        },
        started.elapsed().as_secs_f64(),
        load_before,
        report::load_average()
    ));
    let table = report.render();
    println!("{table}");
    if let Some(path) = args.output {
        let text = format!("## Machine\n\n{}\n## Results\n\n{table}", report::machine());
        std::fs::write(&path, text)?;
        eprintln!("bench: written to {}", path.display());
    }
    Ok(())
}
