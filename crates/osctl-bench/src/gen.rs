//! The benchmark's root file system: a Debian-like tree built from a seed.
//!
//! Many small files (text, binary-looking, a few gzipped-looking ones), merged-usr
//! symlinks, library symlinks, alternatives, a few hard links, owners other than
//! root, setuid programs; plus one large incompressible file and one large
//! log-like file. The host's static busybox and an inittab are added when the
//! host has them, so that the container boots (the downtime rows need that).
//!
//! The plan (every path, size and kind) is made first, from the seed only, so
//! small-file sizes can be scaled to the wanted total before anything is written.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use crate::prng::Rng;

/// Bumped whenever the generator's output changes, so a cached tree is remade.
const GENERATOR_VERSION: u32 = 1;
const MIB: u64 = 1024 * 1024;
/// The busybox the container boots with; taken from the host when present.
const HOST_BUSYBOX: &str = "/bin/busybox";

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct DataSpec {
    pub name: &'static str,
    pub seed: u64,
    pub small_files: usize,
    pub small_bytes: u64,
    pub random_bytes: u64,
    pub log_bytes: u64,
}

/// ~200 MiB: the QUICK=1 data set, and the small container of a full run.
pub const SMALL: DataSpec = DataSpec {
    name: "200MiB",
    seed: 0x6f73_6374_6c00_0200,
    small_files: 10_000,
    small_bytes: 80 * MIB,
    random_bytes: 56 * MIB,
    log_bytes: 64 * MIB,
};

/// ~1 GiB: the full run's data set.
pub const LARGE: DataSpec = DataSpec {
    name: "1GiB",
    seed: 0x6f73_6374_6c00_1024,
    small_files: 20_000,
    small_bytes: 200 * MIB,
    random_bytes: 400 * MIB,
    log_bytes: 424 * MIB,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Content {
    /// Words from a skewed vocabulary: documentation, configs, scripts.
    Text,
    /// Random runs, zero runs and repeats: programs, libraries, catalogs.
    Binary,
    /// Incompressible: gzipped man pages and changelogs, the large blob.
    Random,
    /// Timestamped log lines: the large compressible file.
    Log,
    /// The host's busybox, copied as it is.
    HostBusybox,
    /// Fixed text given in the plan.
    Fixed(&'static str),
}

#[derive(Debug)]
enum Node {
    Dir {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        size: u64,
        content: Content,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
    HardLink {
        path: String,
        existing: String,
    },
}

/// The result of generating: where the tree is and how much file data it holds.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: &'static str,
    pub rootfs: PathBuf,
    /// Bytes in regular files, each inode counted once: the figure throughput is based on.
    pub data_bytes: u64,
    pub files: u64,
    pub bootable: bool,
}

/// init runs the churn service: the downtime rows' "running container that
/// changes 1 MiB during the export".
const INITTAB: &str =
    "::sysinit:/bin/mkdir -p /run/lock\n::respawn:/usr/bin/bench-churn\n::respawn:/usr/bin/bench-ticks\n::shutdown:/bin/sync\n";
/// Rewrites the same 1 MiB five times a second: however long an export runs,
/// at most 1 MiB differs between its base and its final snapshot.
pub const CHURN_SCRIPT: &str = "#!/bin/sh\n# osctl-bench: a service that keeps changing 1 MiB of its data.\n\
while :; do\n  dd if=/dev/urandom of=/var/tmp/churn bs=64k count=16 conv=notrunc 2>/dev/null\n  sleep 0.2\ndone\n";
pub const CHURN_NAME: &str = "bench-churn";
/// Notes the time (the kernel's uptime, the host's clock too) every 10 ms:
/// the freeze rows take the longest gap between two notes, the pause as the
/// container's own processes saw it.
pub const TICKS_SCRIPT: &str = "#!/bin/sh\n# osctl-bench: notes the time every 10 ms.\n\
while :; do\n  read up idle < /proc/uptime\n  echo $up >> /var/tmp/ticks\n  usleep 10000\ndone\n";
pub const TICKS_FILE: &str = "var/tmp/ticks";
const APPLETS: &[&str] = &[
    "sh", "ash", "cat", "dd", "echo", "ls", "mkdir", "mount", "nohup", "rm", "sleep", "sync",
    "true", "umount", "halt", "poweroff", "reboot", "hostname", "id", "tee", "usleep",
];
const LANGS: &[&str] = &[
    "de", "fr", "es", "it", "pt_BR", "ru", "ja", "zh_CN", "pl", "cs", "nl", "sv",
];

struct Planner {
    rng: Rng,
    vocab: Vec<String>,
    nodes: Vec<Node>,
    taken: HashSet<String>,
    small_files: usize,
}

impl Planner {
    fn word(&mut self) -> String {
        let i = pick_word(&mut self.rng, self.vocab.len());
        self.vocab[i].clone()
    }

    /// Reserves a path; false when it is already used (the caller skips it).
    fn claim(&mut self, path: &str) -> bool {
        self.taken.insert(path.to_string())
    }

    fn dir(&mut self, path: &str, mode: u32) {
        if self.claim(path) {
            self.nodes.push(Node::Dir {
                path: path.to_string(),
                mode,
            });
        }
    }

    fn file(&mut self, path: String, content: Content, mode: u32, owner: (u32, u32)) -> bool {
        if !self.claim(&path) {
            return false;
        }
        let size = self.small_size(content);
        self.nodes.push(Node::File {
            path,
            size,
            content,
            mode,
            uid: owner.0,
            gid: owner.1,
        });
        self.small_files += 1;
        true
    }

    fn symlink(&mut self, path: String, target: String) {
        if self.claim(&path) {
            self.nodes.push(Node::Symlink { path, target });
        }
    }

    /// Sizes before scaling: log-normal like a distribution's files (median a
    /// couple of KiB, a long tail), binaries larger than text.
    fn small_size(&mut self, content: Content) -> u64 {
        let (median, sigma) = match content {
            Content::Binary => (12_000.0, 1.6),
            Content::Random => (1_500.0, 1.0),
            _ => (2_500.0, 1.5),
        };
        let size: f64 = median * (sigma * self.rng.normal()).exp();
        size.clamp(0.0, 4.0 * MIB as f64) as u64
    }

    fn package(&mut self) {
        let name = if self.rng.chance(0.3) {
            format!("lib{}{}", self.word(), self.rng.range(0, 9))
        } else if self.rng.chance(0.3) {
            format!("{}-{}", self.word(), self.word())
        } else {
            self.word()
        };
        let doc = format!("usr/share/doc/{name}");
        self.dir(&doc, 0o755);
        let mut owned = Vec::new();
        let root = (0, 0);
        for (file, content) in [
            ("copyright", Content::Text),
            ("changelog.Debian.gz", Content::Random),
        ] {
            let path = format!("{doc}/{file}");
            if self.file(path.clone(), content, 0o644, root) {
                owned.push(path);
            }
        }
        if self.rng.chance(0.5) {
            for _ in 0..self.rng.range(1, 3) {
                let prog = self.word();
                let setuid = self.rng.chance(0.02);
                let dir = if self.rng.chance(0.15) {
                    "usr/sbin"
                } else {
                    "usr/bin"
                };
                let path = format!("{dir}/{prog}");
                let mode = if setuid { 0o4755 } else { 0o755 };
                if !self.file(path.clone(), Content::Binary, mode, root) {
                    continue;
                }
                owned.push(path.clone());
                let section = if dir == "usr/sbin" { 8 } else { 1 };
                let man = format!("usr/share/man/man{section}/{prog}.{section}.gz");
                if self.file(man.clone(), Content::Random, 0o644, root) {
                    owned.push(man);
                }
                if self.rng.chance(0.05) {
                    let alias =
                        format!("{path}-{}.{}", self.rng.range(1, 5), self.rng.range(0, 40));
                    if self.claim(&alias) {
                        self.nodes.push(Node::HardLink {
                            path: alias,
                            existing: path.clone(),
                        });
                    }
                } else if self.rng.chance(0.1) {
                    let alias = self.word();
                    self.symlink(format!("etc/alternatives/{alias}"), format!("/{path}"));
                    self.symlink(
                        format!("usr/bin/{alias}"),
                        format!("/etc/alternatives/{alias}"),
                    );
                }
            }
        }
        if self.rng.chance(0.3) {
            let lib = self.word();
            let major = self.rng.range(0, 6);
            let real = format!("lib{lib}.so.{major}.{}.0", self.rng.range(0, 30));
            let path = format!("usr/lib/x86_64-linux-gnu/{real}");
            if self.file(path.clone(), Content::Binary, 0o644, root) {
                owned.push(path);
                self.symlink(
                    format!("usr/lib/x86_64-linux-gnu/lib{lib}.so.{major}"),
                    real,
                );
            }
        }
        if self.rng.chance(0.4) {
            let share = format!("usr/share/{name}");
            self.dir(&share, 0o755);
            let subdirs: Vec<String> = (0..self.rng.range(0, 3))
                .map(|_| format!("{share}/{}", self.word()))
                .collect();
            for sub in &subdirs {
                self.dir(sub, 0o755);
            }
            for _ in 0..self.rng.range(2, 40) {
                let dir = if subdirs.is_empty() || self.rng.chance(0.4) {
                    share.clone()
                } else {
                    subdirs[self.rng.below(subdirs.len() as u64) as usize].clone()
                };
                let (ext, content) = match self.rng.below(4) {
                    0 => ("dat", Content::Binary),
                    1 => ("xml", Content::Text),
                    _ => ("txt", Content::Text),
                };
                let path = format!("{dir}/{}.{ext}", self.word());
                if self.file(path.clone(), content, 0o644, root) {
                    owned.push(path);
                }
            }
        }
        if self.rng.chance(0.2) {
            let module = name.replace('-', "_");
            let dir = format!("usr/lib/python3/dist-packages/{module}");
            self.dir(&dir, 0o755);
            for _ in 0..self.rng.range(3, 30) {
                let path = format!("{dir}/{}.py", self.word());
                if self.file(path.clone(), Content::Text, 0o644, root) {
                    owned.push(path);
                }
            }
        }
        if self.rng.chance(0.3) {
            for _ in 0..self.rng.range(2, 8) {
                let lang = LANGS[self.rng.below(LANGS.len() as u64) as usize];
                let dir = format!("usr/share/locale/{lang}/LC_MESSAGES");
                self.dir(&format!("usr/share/locale/{lang}"), 0o755);
                self.dir(&dir, 0o755);
                let path = format!("{dir}/{name}.mo");
                if self.file(path.clone(), Content::Binary, 0o644, root) {
                    owned.push(path);
                }
            }
        }
        if self.rng.chance(0.3) {
            let dir = format!("etc/{name}");
            self.dir(&dir, 0o755);
            for _ in 0..self.rng.range(1, 3) {
                let path = format!("{dir}/{}.conf", self.word());
                if self.file(path.clone(), Content::Text, 0o644, root) {
                    owned.push(path);
                }
            }
        }
        if self.rng.chance(0.05) {
            // A daemon's spool and log, owned by a system user.
            let uid = self.rng.range(100, 120) as u32;
            let dir = format!("var/spool/{name}");
            self.dir(&dir, 0o750);
            self.file(format!("{dir}/queue"), Content::Binary, 0o600, (uid, uid));
            self.file(
                format!("var/log/{name}.log"),
                Content::Text,
                0o640,
                (uid, 4),
            );
        }
        for ext in ["list", "md5sums"] {
            self.file(
                format!("var/lib/dpkg/info/{name}.{ext}"),
                Content::Text,
                0o644,
                root,
            );
        }
    }
}

/// A word index skewed towards the start of the vocabulary, as in natural text.
fn pick_word(rng: &mut Rng, len: usize) -> usize {
    let u = rng.unit();
    ((u * u * u) * len as f64) as usize
}

fn vocabulary(rng: &mut Rng) -> Vec<String> {
    const ONSETS: &[&str] = &[
        "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "st", "tr",
        "gr", "pl", "ch", "sh", "x", "z",
    ];
    const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ae", "io", "y"];
    let mut words = Vec::with_capacity(2048);
    let mut seen = HashSet::new();
    while words.len() < 2048 {
        let syllables = rng.range(1, 4);
        let mut w = String::new();
        for _ in 0..syllables {
            w.push_str(ONSETS[rng.below(ONSETS.len() as u64) as usize]);
            w.push_str(VOWELS[rng.below(VOWELS.len() as u64) as usize]);
        }
        if seen.insert(w.clone()) {
            words.push(w);
        }
    }
    words
}

fn plan(spec: &DataSpec, with_busybox: bool) -> Vec<Node> {
    let rng = Rng::new(spec.seed);
    let vocab = vocabulary(&mut rng.derive("vocabulary"));
    let mut p = Planner {
        rng: rng.derive("tree"),
        vocab,
        nodes: Vec::new(),
        taken: HashSet::new(),
        small_files: 0,
    };
    for (dir, mode) in [
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("usr/lib", 0o755),
        ("usr/lib/x86_64-linux-gnu", 0o755),
        ("usr/lib/python3", 0o755),
        ("usr/lib/python3/dist-packages", 0o755),
        ("usr/share", 0o755),
        ("usr/share/doc", 0o755),
        ("usr/share/man", 0o755),
        ("usr/share/man/man1", 0o755),
        ("usr/share/man/man5", 0o755),
        ("usr/share/man/man8", 0o755),
        ("usr/share/locale", 0o755),
        ("etc", 0o755),
        ("etc/alternatives", 0o755),
        ("var", 0o755),
        ("var/lib", 0o755),
        ("var/lib/dpkg", 0o755),
        ("var/lib/dpkg/info", 0o755),
        ("var/log", 0o755),
        ("var/spool", 0o755),
        ("var/cache", 0o755),
        ("var/tmp", 0o1777),
        ("tmp", 0o1777),
        ("root", 0o700),
        ("home", 0o755),
        ("run", 0o755),
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("mnt", 0o755),
        ("opt", 0o755),
        ("srv", 0o755),
    ] {
        p.dir(dir, mode);
    }
    for (link, target) in [("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib")] {
        p.symlink(link.to_string(), target.to_string());
    }
    if with_busybox {
        p.claim("usr/bin/busybox");
        p.nodes.push(Node::File {
            path: "usr/bin/busybox".into(),
            size: 0,
            content: Content::HostBusybox,
            mode: 0o755,
            uid: 0,
            gid: 0,
        });
        for applet in APPLETS {
            p.symlink(format!("usr/bin/{applet}"), "busybox".into());
        }
        p.symlink("usr/sbin/init".into(), "../bin/busybox".into());
        for (name, script) in [("bench-churn", CHURN_SCRIPT), ("bench-ticks", TICKS_SCRIPT)] {
            let path = format!("usr/bin/{name}");
            p.claim(&path);
            p.nodes.push(Node::File {
                path,
                size: script.len() as u64,
                content: Content::Fixed(script),
                mode: 0o755,
                uid: 0,
                gid: 0,
            });
        }
        p.claim("etc/inittab");
        p.nodes.push(Node::File {
            path: "etc/inittab".into(),
            size: INITTAB.len() as u64,
            content: Content::Fixed(INITTAB),
            mode: 0o644,
            uid: 0,
            gid: 0,
        });
    }
    while p.small_files < spec.small_files {
        p.package();
    }
    scale_small_files(&mut p.nodes, spec.small_bytes);
    p.dir("var/lib/bench", 0o755);
    p.dir("var/log/bench", 0o750);
    p.nodes.push(Node::File {
        path: "var/lib/bench/blob.bin".into(),
        size: spec.random_bytes,
        content: Content::Random,
        mode: 0o644,
        uid: 0,
        gid: 0,
    });
    p.nodes.push(Node::File {
        path: "var/log/bench/app.log".into(),
        size: spec.log_bytes,
        content: Content::Log,
        mode: 0o640,
        uid: 0,
        gid: 4,
    });
    p.nodes
}

/// Scales the generated small files so that together they hold `total` bytes.
fn scale_small_files(nodes: &mut [Node], total: u64) {
    let scalable = |c: &Content| matches!(c, Content::Text | Content::Binary | Content::Random);
    let sum: u64 = nodes
        .iter()
        .filter_map(|n| match n {
            Node::File { size, content, .. } if scalable(content) => Some(*size),
            _ => None,
        })
        .sum();
    if sum == 0 {
        return;
    }
    let factor = total as f64 / sum as f64;
    for n in nodes {
        if let Node::File { size, content, .. } = n {
            if scalable(content) {
                *size = (*size as f64 * factor) as u64;
            }
        }
    }
}

/// Fills `buf` with `len` bytes of the given kind.
struct Writer {
    rng: Rng,
    vocab: Vec<String>,
    /// Seconds since the log's start, for the next log line.
    log_clock: u64,
}

impl Writer {
    fn text(&mut self, buf: &mut Vec<u8>, len: usize) {
        let mut col = 0;
        while buf.len() < len {
            let w = &self.vocab[pick_word(&mut self.rng, self.vocab.len())];
            buf.extend_from_slice(w.as_bytes());
            col += w.len() + 1;
            if col > 72 {
                buf.push(b'\n');
                col = 0;
            } else {
                buf.push(if self.rng.chance(0.08) { b',' } else { b' ' });
            }
        }
        buf.truncate(len);
    }

    /// Programs compress to about half: random stretches between zero runs and
    /// repeats of earlier bytes.
    fn binary(&mut self, buf: &mut Vec<u8>, len: usize) {
        while buf.len() < len {
            let n = self.rng.range(4, 64) as usize;
            match self.rng.below(10) {
                0..=3 => {
                    let start = buf.len();
                    buf.resize(start + n, 0);
                    self.rng.fill(&mut buf[start..]);
                }
                4..=7 if buf.len() > 64 => {
                    let back = self.rng.range(1, buf.len().min(4096) as u64) as usize;
                    let from = buf.len() - back;
                    for i in 0..n {
                        let b = buf[from + i % back];
                        buf.push(b);
                    }
                }
                _ => buf.resize(buf.len() + n, 0),
            }
        }
        buf.truncate(len);
    }

    fn random(&mut self, buf: &mut Vec<u8>, len: usize) {
        buf.resize(len, 0);
        self.rng.fill(buf);
    }

    fn log(&mut self, buf: &mut Vec<u8>, len: usize) {
        const SERVICES: &[&str] = &["nginx", "postgres", "cron", "sshd", "app-worker", "kernel"];
        const LEVELS: &[&str] = &["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"];
        while buf.len() < len {
            self.log_clock += self.rng.range(0, 3);
            let t = self.log_clock;
            let (d, h, m, s) = (t / 86_400 % 28 + 1, t / 3600 % 24, t / 60 % 60, t % 60);
            let service = SERVICES[self.rng.below(SERVICES.len() as u64) as usize];
            let level = LEVELS[self.rng.below(LEVELS.len() as u64) as usize];
            let line = format!(
                "2025-03-{d:02}T{h:02}:{m:02}:{s:02}.{:03}Z host-{:02} {service}[{}]: {level} request id={:08x} ",
                self.rng.below(1000),
                self.rng.below(8),
                self.rng.range(300, 9000),
                self.rng.next_u64() as u32,
            );
            buf.extend_from_slice(line.as_bytes());
            let words = self.rng.range(3, 12) as usize;
            let mut text = Vec::new();
            for _ in 0..words {
                let w = &self.vocab[pick_word(&mut self.rng, self.vocab.len())];
                text.extend_from_slice(w.as_bytes());
                text.push(b' ');
            }
            buf.extend_from_slice(&text);
            buf.push(b'\n');
        }
        buf.truncate(len);
    }
}

/// The tree of `spec` under `dir/rootfs`, made unless a complete one of the same
/// generator version and spec is already there.
pub fn ensure(spec: &DataSpec, dir: &Path) -> Result<Dataset> {
    let rootfs = dir.join("rootfs");
    let stamp = dir.join("complete");
    let with_busybox = Path::new(HOST_BUSYBOX).is_file();
    let wanted = format!("generator {GENERATOR_VERSION} {spec:?} busybox={with_busybox}\n");
    if let Ok(have) = fs::read_to_string(&stamp) {
        if let Some((first, counts)) = have.split_once('\n') {
            if format!("{first}\n") == wanted {
                if let Some(ds) = parse_counts(counts, spec.name, &rootfs, with_busybox) {
                    return Ok(ds);
                }
            }
        }
    }
    if dir.exists() {
        fs::remove_dir_all(dir)
            .with_context(|| format!("removing stale data {}", dir.display()))?;
    }
    fs::create_dir_all(&rootfs)?;
    eprintln!(
        "bench: generating the {} data set in {}",
        spec.name,
        rootfs.display()
    );
    let started = std::time::Instant::now();
    let nodes = plan(spec, with_busybox);
    let (data_bytes, files) = write_tree(spec, &nodes, &rootfs)?;
    fs::write(&stamp, format!("{wanted}{data_bytes} {files}\n"))?;
    eprintln!(
        "bench: {} files, {:.0} MiB of file data in {:.1} s",
        files,
        data_bytes as f64 / MIB as f64,
        started.elapsed().as_secs_f64()
    );
    Ok(Dataset {
        name: spec.name,
        rootfs,
        data_bytes,
        files,
        bootable: with_busybox,
    })
}

fn parse_counts(line: &str, name: &'static str, rootfs: &Path, bootable: bool) -> Option<Dataset> {
    let mut it = line.split_whitespace();
    let data_bytes = it.next()?.parse().ok()?;
    let files = it.next()?.parse().ok()?;
    Some(Dataset {
        name,
        rootfs: rootfs.to_path_buf(),
        data_bytes,
        files,
        bootable,
    })
}

fn write_tree(spec: &DataSpec, nodes: &[Node], rootfs: &Path) -> Result<(u64, u64)> {
    let rng = Rng::new(spec.seed);
    let mut w = Writer {
        rng: rng.derive("content"),
        vocab: vocabulary(&mut rng.derive("vocabulary")),
        log_clock: 0,
    };
    // A fixed mtime: archives of the same tree then differ only where the tools differ.
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_689_600);
    let mut buf = Vec::new();
    let (mut bytes, mut files) = (0u64, 0u64);
    for node in nodes {
        crate::sys::check_interrupted()?;
        match node {
            Node::Dir { path, mode } => {
                let p = rootfs.join(path);
                fs::create_dir_all(&p)?;
                fs::set_permissions(&p, fs::Permissions::from_mode(*mode))?;
            }
            Node::File {
                path,
                size,
                content,
                mode,
                uid,
                gid,
            } => {
                let p = rootfs.join(path);
                if let Some(parent) = p.parent() {
                    fs::create_dir_all(parent)?;
                }
                let written = write_file(&mut w, &mut buf, &p, *size, *content)?;
                let f = File::options().write(true).open(&p)?;
                f.set_modified(mtime)?;
                std::os::unix::fs::chown(&p, Some(*uid), Some(*gid))?;
                // chown clears setuid bits: set the mode last.
                fs::set_permissions(&p, fs::Permissions::from_mode(*mode))?;
                bytes += written;
                files += 1;
            }
            Node::Symlink { path, target } => {
                let p = rootfs.join(path);
                if let Some(parent) = p.parent() {
                    fs::create_dir_all(parent)?;
                }
                symlink(target, &p).with_context(|| format!("symlink {}", p.display()))?;
            }
            Node::HardLink { path, existing } => {
                fs::hard_link(rootfs.join(existing), rootfs.join(path))
                    .with_context(|| format!("hard link {path}"))?;
            }
        }
    }
    Ok((bytes, files))
}

/// Writes one file in chunks of at most 4 MiB; returns its size.
fn write_file(
    w: &mut Writer,
    buf: &mut Vec<u8>,
    path: &Path,
    size: u64,
    content: Content,
) -> Result<u64> {
    const CHUNK: u64 = 4 * MIB;
    let mut out = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    match content {
        Content::HostBusybox => {
            let mut src = File::open(HOST_BUSYBOX)?;
            return Ok(std::io::copy(&mut src, &mut out)?);
        }
        Content::Fixed(text) => {
            out.write_all(text.as_bytes())?;
            return Ok(text.len() as u64);
        }
        _ => {}
    }
    let mut left = size;
    while left > 0 {
        let n = left.min(CHUNK) as usize;
        buf.clear();
        match content {
            Content::Text => w.text(buf, n),
            Content::Binary => w.binary(buf, n),
            Content::Random => w.random(buf, n),
            Content::Log => w.log(buf, n),
            Content::HostBusybox | Content::Fixed(_) => unreachable!("handled above"),
        }
        out.write_all(buf)?;
        left -= n as u64;
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: DataSpec = DataSpec {
        name: "tiny",
        seed: 42,
        small_files: 300,
        small_bytes: 2 * MIB,
        random_bytes: 64 * 1024,
        log_bytes: 64 * 1024,
    };

    fn file_sizes(nodes: &[Node]) -> Vec<(String, u64)> {
        nodes
            .iter()
            .filter_map(|n| match n {
                Node::File { path, size, .. } => Some((path.clone(), *size)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn plan_is_deterministic_and_hits_the_budget() {
        let a = file_sizes(&plan(&TINY, false));
        let b = file_sizes(&plan(&TINY, false));
        assert_eq!(a, b);
        assert!(a.len() >= TINY.small_files);
        let total: u64 = a.iter().map(|(_, s)| s).sum();
        let expected = TINY.small_bytes + TINY.random_bytes + TINY.log_bytes;
        // Scaling truncates each size: at most a byte per file is lost.
        assert!(
            total <= expected && total + a.len() as u64 >= expected,
            "{total}"
        );
    }

    #[test]
    fn plan_has_links_of_every_kind() {
        let nodes = plan(&LARGE, false);
        let symlinks = nodes
            .iter()
            .filter(|n| matches!(n, Node::Symlink { .. }))
            .count();
        let hard = nodes
            .iter()
            .filter(|n| matches!(n, Node::HardLink { .. }))
            .count();
        assert!(symlinks > 100, "{symlinks}");
        assert!(hard > 3, "{hard}");
    }

    #[test]
    fn content_kinds_compress_differently() {
        let rng = Rng::new(5);
        let mut w = Writer {
            rng: rng.derive("c"),
            vocab: vocabulary(&mut rng.derive("v")),
            log_clock: 0,
        };
        let mut text = Vec::new();
        w.text(&mut text, 10_000);
        let mut log = Vec::new();
        w.log(&mut log, 10_000);
        assert_eq!(text.len(), 10_000);
        assert_eq!(log.len(), 10_000);
        assert!(text.is_ascii() && log.is_ascii());
        assert!(log.starts_with(b"2025-03-01T"));
        let distinct = |b: &[u8]| b.iter().collect::<HashSet<_>>().len();
        let mut random = Vec::new();
        w.random(&mut random, 10_000);
        assert!(distinct(&text) < 40 && distinct(&random) == 256);
    }

    #[test]
    fn writes_a_tree_with_owners_and_links() {
        let dir = std::env::temp_dir().join(format!("osctl-bench-gen-{}", std::process::id()));
        let ds = ensure(&TINY, &dir).unwrap();
        assert!(ds.data_bytes >= TINY.small_bytes + TINY.random_bytes + TINY.log_bytes - 1000);
        let log = fs::metadata(ds.rootfs.join("var/log/bench/app.log")).unwrap();
        assert_eq!(log.len(), TINY.log_bytes);
        assert_eq!(std::os::unix::fs::MetadataExt::gid(&log), 4);
        assert_eq!(
            fs::read_link(ds.rootfs.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
        // The second call finds the stamp and does not regenerate.
        let again = ensure(&TINY, &dir).unwrap();
        assert_eq!(again.data_bytes, ds.data_bytes);
        fs::remove_dir_all(&dir).unwrap();
    }
}
