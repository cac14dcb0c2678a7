//! Round trips through our extractor and GNU tar, changesets, hostile
//! streams. These tests run as root (owners, device nodes, capabilities).

use crate::ErrorKind;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};

use testkit::fs::{
    capability_xattr, chmod, chown, noise, set_mtime, set_xattr, write_sparse, CAP_NET_RAW,
};
use testkit::tree::{assert_same, build_every_kind, Mtimes, Options, Precision};

use super::header::{self as h, Block, BLOCK};
use super::*;
use crate::cmd::Cmd;

// ---------------------------------------------------------------- helpers

/// Skips a test that needs root, saying so.
macro_rules! need_root {
    () => {
        if !testkit::is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

fn dump_to_vec(sources: &[DumpSource]) -> (Vec<u8>, DumpStats, Manifest) {
    let mut out = Vec::new();
    let (stats, manifest) = dump_full(&mut out, sources).unwrap();
    (out, stats, manifest)
}

fn root_source(dir: &Path) -> Vec<DumpSource> {
    vec![DumpSource {
        prefix: String::new(),
        dir: dir.to_path_buf(),
    }]
}

fn extract_vec(
    stream: &[u8],
    root: &Path,
    opts: &ExtractOptions,
) -> crate::error::Result<ExtractStats> {
    fs::create_dir_all(root).unwrap();
    let mut input = stream;
    extract(&mut input, root, opts)
}

fn trusting() -> ExtractOptions {
    ExtractOptions {
        policy: super::FilePolicy::anything(),
        ..Default::default()
    }
}

fn gnu_tar(args: &[&str]) {
    Cmd::new("tar").args(args).run().unwrap();
}

fn have_gnu_tar() -> bool {
    Cmd::new("tar")
        .arg("--version")
        .run()
        .is_ok_and(|v| v.contains("GNU tar"))
}

// ---------------------------------------------------------------- round trips

#[test]
fn full_dump_round_trips_through_our_extractor() {
    need_root!();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    build_every_kind(&src, &Options::ALL);
    let (stream, stats, manifest) = dump_to_vec(&root_source(&src));
    assert_eq!(stats.stream_bytes, stream.len() as u64);
    assert_eq!(stats.sparse_files, 3, "{stats:?}");
    assert_eq!(stats.counts.hardlinks, 3);
    assert_eq!(stats.counts.devices, 2);
    assert_eq!(stats.counts.fifos, 1);
    assert_eq!(manifest.len() as u64, stats.counts.entries);
    assert!(
        stream.len() < 8 << 20,
        "sparse files stay sparse in the stream: {}",
        stream.len()
    );

    let dst = t.path().join("dst");
    let got = extract_vec(&stream, &dst, &trusting()).unwrap();
    assert_eq!(got.counts.entries, stats.counts.entries);
    assert_eq!(got.capabilities_lost, 0);
    assert_same(&src, &dst, &Precision::EXACT);
}

#[test]
fn full_dump_extracts_with_gnu_tar() {
    need_root!();
    if !have_gnu_tar() {
        eprintln!("skipped: GNU tar not installed");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    build_every_kind(&src, &Options::ALL);
    let (stream, _, _) = dump_to_vec(&root_source(&src));
    let file = t.path().join("dump.tar");
    fs::write(&file, &stream).unwrap();
    let dst = t.path().join("dst");
    fs::create_dir(&dst).unwrap();
    let (f, d) = (file.to_str().unwrap(), dst.to_str().unwrap());
    gnu_tar(&[
        "-x",
        "--numeric-owner",
        "--xattrs",
        "--xattrs-include=*",
        "-p",
        "-f",
        f,
        "-C",
        d,
    ]);
    assert_same(&src, &dst, &Precision::EXACT);
}

#[test]
fn gnu_tar_posix_and_gnu_formats_extract_with_ours() {
    need_root!();
    if !have_gnu_tar() {
        eprintln!("skipped: GNU tar not installed");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    build_every_kind(&src, &Options::ALL);
    let s = src.to_str().unwrap();
    let cases: [(&str, &[&str], Precision); 4] = [
        (
            "posix",
            &[
                "--xattrs",
                "--xattrs-include=*",
                "--sparse",
                "--format=posix",
            ],
            Precision::EXACT,
        ),
        (
            "posix-sparse-0.0",
            &[
                "--xattrs",
                "--xattrs-include=*",
                "--sparse",
                "--sparse-version=0.0",
                "--format=posix",
            ],
            Precision::EXACT,
        ),
        (
            "posix-sparse-0.1",
            &[
                "--xattrs",
                "--xattrs-include=*",
                "--sparse",
                "--sparse-version=0.1",
                "--format=posix",
            ],
            Precision::EXACT,
        ),
        (
            "gnu",
            &["--sparse", "--format=gnu"],
            // Whole seconds, no xattrs.
            Precision {
                mtimes: Mtimes::Seconds,
                xattrs: false,
                ..Precision::EXACT
            },
        ),
    ];
    for (name, flags, precision) in cases {
        let file = t.path().join(format!("{name}.tar"));
        let mut args = vec!["-c", "-f", file.to_str().unwrap()];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["-C", s, "."]);
        gnu_tar(&args);
        let dst = t.path().join(format!("dst-{name}"));
        let stream = fs::read(&file).unwrap();
        let stats =
            extract_vec(&stream, &dst, &trusting()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(stats.counts.files > 10, "{name}: {stats:?}");
        assert_same(&src, &dst, &precision);
    }
}

#[test]
fn sources_nest_at_their_prefixes() {
    need_root!();
    let t = tempfile::tempdir().unwrap();
    let (outer, inner, lower) = (
        t.path().join("outer"),
        t.path().join("inner"),
        t.path().join("lower"),
    );
    fs::create_dir_all(outer.join("var/log")).unwrap();
    fs::write(outer.join("var/log/hidden"), b"under the mount point").unwrap();
    fs::write(outer.join("var/z"), b"z").unwrap();
    fs::create_dir_all(inner.join("sub")).unwrap();
    fs::write(inner.join("sub/app.log"), b"log").unwrap();
    chmod(&inner, 0o750);
    fs::create_dir_all(&lower).unwrap();
    fs::write(lower.join("data"), b"d").unwrap();
    let sources = vec![
        DumpSource {
            prefix: String::new(),
            dir: outer.clone(),
        },
        DumpSource {
            prefix: "var/log".into(),
            dir: inner.clone(),
        },
        // Its parent "srv" does not exist in the outer tree.
        DumpSource {
            prefix: "srv/data".into(),
            dir: lower.clone(),
        },
    ];
    let (stream, stats, manifest) = dump_to_vec(&sources);
    let dst = t.path().join("dst");
    extract_vec(&stream, &dst, &trusting()).unwrap();

    let expected = t.path().join("expected");
    fs::create_dir_all(&expected).unwrap();
    let cp = |from: &Path, to: &Path| {
        let (f, d) = (
            from.to_str().unwrap().to_string() + "/.",
            to.to_str().unwrap().to_string(),
        );
        Cmd::new("cp").args(["-a", &f, &d]).run().unwrap();
    };
    cp(&outer, &expected);
    fs::remove_dir_all(expected.join("var/log")).unwrap();
    fs::create_dir(expected.join("var/log")).unwrap();
    cp(&inner, &expected.join("var/log"));
    fs::create_dir_all(expected.join("srv/data")).unwrap();
    cp(&lower, &expected.join("srv/data"));
    for (dir, from) in [
        ("var/log", &inner),
        ("srv/data", &lower),
        ("var", &outer.join("var")),
        ("", &outer),
    ] {
        let md = fs::metadata(from).unwrap();
        set_mtime(expected.join(dir), md.mtime(), md.mtime_nsec());
    }
    let dst_srv = fs::metadata(dst.join("srv")).unwrap();
    assert_eq!(
        (dst_srv.mode() & 0o7777, dst_srv.mtime()),
        (0o755, 0),
        "synthetic directory"
    );
    set_mtime(expected.join("srv"), 0, 0);
    assert_same(&expected, &dst, &Precision::EXACT);
    assert!(!dst.join("var/log/hidden").exists());

    // Nothing changed: the changeset is empty.
    let mut changes = Vec::new();
    let cstats = dump_changes(&mut changes, &sources, &manifest).unwrap();
    assert_eq!(cstats.counts.entries, 0, "{cstats:?}");
    assert_eq!(stats.counts.entries as usize, manifest.len());
}

#[test]
fn other_file_systems_are_not_crossed() {
    need_root!();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("mnt")).unwrap();
    fs::write(src.join("top"), b"t").unwrap();
    let mnt = src.join("mnt");
    if let Err(e) = rustix::mount::mount(
        "tmpfs",
        &mnt,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        None::<&std::ffi::CStr>,
    ) {
        eprintln!("skipped: cannot mount a tmpfs ({e})");
        return;
    }
    fs::write(mnt.join("inside"), b"i").unwrap();
    let result = std::panic::catch_unwind(|| {
        let (stream, stats, _) = dump_to_vec(&root_source(&src));
        assert_eq!(stats.mount_points_not_crossed, 1, "{stats:?}");
        let dst = t.path().join("dst");
        extract_vec(&stream, &dst, &trusting()).unwrap();
        assert!(dst.join("mnt").is_dir());
        assert!(!dst.join("mnt/inside").exists());
        // As its own source, the mounted tree is included.
        let sources = vec![
            DumpSource {
                prefix: String::new(),
                dir: src.clone(),
            },
            DumpSource {
                prefix: "mnt".into(),
                dir: mnt.clone(),
            },
        ];
        let (stream, stats, _) = dump_to_vec(&sources);
        assert_eq!(stats.mount_points_not_crossed, 0);
        let dst2 = t.path().join("dst2");
        extract_vec(&stream, &dst2, &trusting()).unwrap();
        assert_eq!(fs::read(dst2.join("mnt/inside")).unwrap(), b"i");
    });
    rustix::mount::unmount(&mnt, rustix::mount::UnmountFlags::empty()).unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn a_file_changing_while_read_keeps_the_stream_consistent() {
    // Simulated at the writer level: the size announced is the size written.
    let file = tempfile::tempfile().unwrap();
    use std::io::Write as _;
    (&file).write_all(b"short").unwrap();
    let mut out = Vec::new();
    let mut w = write::TarWriter::new(&mut out);
    use std::os::fd::AsFd;
    rustix::fs::seek(&file, rustix::fs::SeekFrom::Start(0)).unwrap();
    let got = w.copy_from_fd(file.as_fd(), None, 4096).unwrap();
    assert_eq!(got, 5);
    w.pad().unwrap();
    w.finish().unwrap();
    assert_eq!(out.len(), 4096 + 1024);
}

// ---------------------------------------------------------------- changesets

/// Applies `stream`s one after the other into a fresh directory.
fn apply_layers(dst: &Path, streams: &[&[u8]]) {
    for s in streams {
        extract_vec(s, dst, &trusting()).unwrap();
    }
}

/// Writes `data` at `rel` below `dir`, making the directories on the way.
fn write_at(dir: &Path, rel: &str, data: &[u8]) {
    let path = dir.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

/// The base tree of the changeset test: one file or tree per change to come.
fn changeset_base(src: &Path) {
    for (rel, data) in [
        ("same", &b"unchanged"[..]),
        ("edit", b"aaaa"),
        ("append", b"start"),
        ("delete-me", b"x"),
        ("tree/a/b/c", b"c"),
        ("tree/d", b"d"),
        ("dir2file/x", b"x"),
        ("file2dir", b"f"),
        ("recreate/keep", b"old"),
        ("recreate/old-only", b"old"),
        ("chmod", b"m"),
        ("chown", b"o"),
        ("linked", b"l"),
        ("touch", b"t"),
        ("kept/inside", b"k"),
    ] {
        write_at(src, rel, data);
    }
    write_at(src, "big-unchanged", &noise(2 << 20, 3));
    symlink("same", src.join("retarget")).unwrap();
    set_xattr(src.join("edit"), "user.x", b"1");
}

/// Every kind of change a changeset carries; `aside` is a directory beside
/// `src` to move things to.
fn changeset_modify(src: &Path, aside: &Path) {
    let w = |rel: &str, data: &[u8]| write_at(src, rel, data);
    fs::write(src.join("edit"), b"bbbb").unwrap();
    set_mtime(src.join("edit"), 1_700_000_000, 5);
    fs::OpenOptions::new()
        .append(true)
        .open(src.join("append"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b" and more"))
        .unwrap();
    fs::remove_file(src.join("delete-me")).unwrap();
    fs::remove_dir_all(src.join("tree")).unwrap();
    fs::remove_dir_all(src.join("dir2file")).unwrap();
    w("dir2file", b"now a file");
    fs::remove_file(src.join("file2dir")).unwrap();
    w("file2dir/child", b"now a dir");
    // Moved away rather than deleted: its inode stays in use, so the new
    // directory cannot get the same number (file systems reuse them at once).
    fs::rename(src.join("recreate"), aside.join("recreate-old")).unwrap();
    w("recreate/keep", b"new");
    w("recreate/new-only", b"new");
    chmod(src.join("chmod"), 0o600);
    chown(src.join("chown"), 1000, 1000);
    fs::hard_link(src.join("linked"), src.join("kept/second-link")).unwrap();
    set_mtime(src.join("touch"), 1_234_567_890, 42);
    fs::remove_file(src.join("retarget")).unwrap();
    symlink("edit", src.join("retarget")).unwrap();
    w("brand/new/file", b"new");
}

#[test]
fn changeset_applied_on_the_base_gives_the_modified_tree() {
    need_root!();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    changeset_base(&src);
    let sources = root_source(&src);
    let (base, _, manifest) = dump_to_vec(&sources);
    changeset_modify(&src, t.path());

    let mut changes = Vec::new();
    let stats = dump_changes(&mut changes, &sources, &manifest).unwrap();
    assert!(
        stats.counts.file_bytes < 1024,
        "unchanged files are not in the changeset: {stats:?}"
    );
    // delete-me, tree, dir2file, file2dir: one whiteout each; recreate: opaque.
    assert_eq!(stats.counts.whiteouts, 5, "{stats:?}");

    let dst = t.path().join("dst");
    apply_layers(&dst, &[&base, &changes]);
    assert_same(&src, &dst, &Precision::EXACT);

    // Order: a directory's whiteouts come before its new entries; the opaque
    // marker right after its directory.
    let names = entry_names(&changes);
    let pos = |n: &str| {
        names
            .iter()
            .position(|x| x == n)
            .unwrap_or_else(|| panic!("{n} not in {names:?}"))
    };
    assert!(pos("./.wh.tree") < pos("./brand/"));
    assert!(pos("./.wh.dir2file") < pos("./dir2file"));
    assert_eq!(pos("./recreate/") + 1, pos("./recreate/.wh..wh..opq"));
    assert!(
        !names.iter().any(|n| n.starts_with("./tree/")),
        "one whiteout per deleted tree"
    );
    assert!(!names.contains(&"./same".to_string()));
}

/// Entry names of a stream, as our reader sees them.
fn entry_names(stream: &[u8]) -> Vec<String> {
    let mut input = stream;
    let mut r = read::TarReader::new(&mut input);
    let mut names = Vec::new();
    while let Some(e) = r.next_entry().unwrap() {
        names.push(String::from_utf8_lossy(&e.name).into_owned());
    }
    names
}

#[test]
fn changeset_of_the_full_tree_round_trips() {
    need_root!();
    // Every kind of entry, all of it replaced: the root recreated is not
    // possible, but a subdirectory with everything in it is.
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("all")).unwrap();
    fs::write(src.join("all/old"), b"o").unwrap();
    let sources = root_source(&src);
    let (base, _, manifest) = dump_to_vec(&sources);
    fs::remove_dir_all(src.join("all")).unwrap();
    build_every_kind(&src.join("all"), &Options::ALL);
    let mut changes = Vec::new();
    dump_changes(&mut changes, &sources, &manifest).unwrap();
    let dst = t.path().join("dst");
    apply_layers(&dst, &[&base, &changes]);
    assert_same(&src, &dst, &Precision::EXACT);
}

// ---------------------------------------------------------------- hostile streams

/// Raw tar blocks for hand-made streams.
struct Raw(Vec<u8>);

impl Raw {
    fn new() -> Self {
        Raw(Vec::new())
    }

    fn header(&mut self, name: &[u8], flag: u8, size: u64, link: &[u8], uid: u64) -> &mut Self {
        let mut b: Block = [0; BLOCK];
        b[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
        h::put_num(&mut b, h::MODE, 0o644);
        h::put_num(&mut b, h::UID, uid);
        h::put_num(&mut b, h::GID, 0);
        h::put_num(&mut b, h::SIZE, size);
        h::put_num(&mut b, h::MTIME, 1);
        b[h::TYPEFLAG] = flag;
        b[h::LINKNAME.0..h::LINKNAME.0 + link.len()].copy_from_slice(link);
        b[h::MAGIC.0..h::MAGIC.0 + 8].copy_from_slice(h::USTAR_MAGIC);
        h::put_num(&mut b, h::DEVMAJOR, 1);
        h::put_num(&mut b, h::DEVMINOR, 3);
        h::seal(&mut b);
        self.0.extend_from_slice(&b);
        self
    }

    fn data(&mut self, data: &[u8]) -> &mut Self {
        self.0.extend_from_slice(data);
        let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
        self.0.resize(self.0.len() + pad, 0);
        self
    }

    fn file(&mut self, name: &[u8], data: &[u8]) -> &mut Self {
        self.header(name, b'0', data.len() as u64, b"", 0)
            .data(data)
    }

    fn pax(&mut self, records: &[(&[u8], &[u8])]) -> &mut Self {
        let mut text = Vec::new();
        for (k, v) in records {
            h::pax_record(&mut text, k, v);
        }
        self.header(b"PaxHeaders/x", b'x', text.len() as u64, b"", 0)
            .data(&text)
    }

    fn end(&mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0; 2 * BLOCK]);
        self.0.clone()
    }
}

/// A target root next to a canary directory; checks that nothing but the
/// root changes.
struct Arena {
    _t: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    resolver: safefs::Resolver,
}

impl Arena {
    fn new() -> Self {
        Self::with_resolver(safefs::Resolver::detect())
    }

    fn with_resolver(resolver: safefs::Resolver) -> Self {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().to_path_buf();
        fs::create_dir(base.join("root")).unwrap();
        fs::create_dir(base.join("canary")).unwrap();
        fs::write(base.join("canary/file"), b"canary").unwrap();
        Arena {
            root: base.join("root"),
            base,
            _t: t,
            resolver,
        }
    }

    fn extract(&self, stream: &[u8], opts: &ExtractOptions) -> crate::error::Result<ExtractStats> {
        let mut input = stream;
        extract::extract_with(&mut input, &self.root, opts, self.resolver)
    }

    /// Nothing outside the root was written.
    fn check_outside(&self) {
        let mut names: Vec<_> = fs::read_dir(&self.base)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["canary", "root"]);
        let canary: Vec<_> = fs::read_dir(self.base.join("canary"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(canary, ["file"]);
        assert_eq!(fs::read(self.base.join("canary/file")).unwrap(), b"canary");
        assert!(!Path::new("/etc/x").exists());
        assert!(!Path::new("/x").exists());
    }

    /// The stream fails with an archive error whose message contains all of
    /// `words`, and nothing outside the root changed.
    fn is_ext4(&self) -> bool {
        rustix::fs::statfs(&self.root).is_ok_and(|st| st.f_type == 0xEF53)
    }

    fn refuses(&self, stream: &[u8], opts: &ExtractOptions, words: &[&str]) {
        let err = self
            .extract(stream, opts)
            .expect_err("hostile stream accepted");
        let text = err.to_string();
        assert!(
            err.kind() == ErrorKind::Archive,
            "not an archive error: {text}"
        );
        for w in words {
            assert!(text.contains(w), "{text:?} lacks {w:?}");
        }
        self.check_outside();
    }
}

#[test]
fn traversal_by_name_is_refused() {
    let a = Arena::new();
    let d = ExtractOptions::default();
    a.refuses(
        &Raw::new().file(b"../x", b"evil").end(),
        &d,
        &["archive entry '../x'", "'..'"],
    );
    a.refuses(
        &Raw::new().file(b"/etc/x", b"evil").end(),
        &d,
        &["archive entry '/etc/x'", "absolute"],
    );
    a.refuses(&Raw::new().file(b"a/../../x", b"evil").end(), &d, &["'..'"]);
    a.refuses(
        &Raw::new().file(b"./.wh.ok/../../canary", b"").end(),
        &d,
        &["'..'"],
    );
    a.refuses(&Raw::new().file(b"../.wh.canary", b"").end(), &d, &["'..'"]);
    a.refuses(
        &Raw::new().file(b"../.wh..wh..opq", b"").end(),
        &d,
        &["'..'"],
    );
}

#[test]
fn traversal_through_symlinks_is_refused() {
    need_root!();
    // Both ways of resolving paths: openat2 and the per-component fallback.
    for resolver in [safefs::Resolver::detect(), safefs::Resolver::PerComponent] {
        symlink_traversal_cases(Arena::with_resolver(resolver));
    }
}

fn symlink_traversal_cases(a: Arena) {
    let d = ExtractOptions::default();
    let up = Raw::new()
        .header(b"link", b'2', 0, b"/", 0)
        .file(b"link/etc/x", b"evil")
        .end();
    a.refuses(&up, &d, &["archive entry 'link/etc/x'", "symbolic link"]);
    let side = Raw::new()
        .header(b"c", b'2', 0, b"../canary", 0)
        .file(b"c/evil", b"evil")
        .end();
    a.refuses(&side, &d, &["symbolic link"]);
    let deep = Raw::new()
        .header(b"d/", b'5', 0, b"", 0)
        .header(b"d/e", b'2', 0, b"../../canary", 0)
        .file(b"d/e/f/evil", b"evil")
        .end();
    a.refuses(&deep, &d, &["symbolic link"]);
    // Hard link through a symlink, outside, absolute, to a directory.
    let hl = Raw::new()
        .header(b"s", b'2', 0, b"../canary", 0)
        .header(b"x", b'1', 0, b"s/file", 0)
        .end();
    a.refuses(&hl, &d, &["symbolic link"]);
    a.refuses(
        &Raw::new().header(b"x", b'1', 0, b"../../outside", 0).end(),
        &d,
        &["hard link target", "'..'"],
    );
    a.refuses(
        &Raw::new().header(b"x", b'1', 0, b"/etc/passwd", 0).end(),
        &d,
        &["absolute"],
    );
    let to_dir = Raw::new()
        .header(b"dir/", b'5', 0, b"", 0)
        .header(b"x", b'1', 0, b"dir", 0)
        .end();
    a.refuses(&to_dir, &d, &["hard link to directory"]);
    a.refuses(
        &Raw::new().header(b"x", b'1', 0, b"missing", 0).end(),
        &d,
        &["does not exist"],
    );
    // A whiteout cannot delete through a symlink either.
    let wh = Raw::new()
        .header(b"c", b'2', 0, b"../canary", 0)
        .file(b"c/.wh.file", b"")
        .end();
    a.refuses(&wh, &d, &["symbolic link"]);
    // Symlinks themselves may point anywhere: they are data.
    let fine = Raw::new()
        .header(b"anywhere", b'2', 0, b"../../../../etc/shadow", 0)
        .end();
    a.extract(&fine, &d).unwrap();
    assert_eq!(
        fs::read_link(a.root.join("anywhere")).unwrap(),
        Path::new("../../../../etc/shadow")
    );
    a.check_outside();
}

#[test]
fn overrides_by_pax_and_gnu_long_names_obey_the_same_rules() {
    let a = Arena::new();
    let d = ExtractOptions::default();
    let pax = Raw::new()
        .pax(&[(b"path", b"../evil")])
        .file(b"harmless", b"x")
        .end();
    a.refuses(&pax, &d, &["archive entry '../evil'", "'..'"]);
    let pax_link = Raw::new()
        .pax(&[(b"linkpath", b"/etc/passwd")])
        .header(b"x", b'1', 0, b"ok", 0)
        .end();
    a.refuses(&pax_link, &d, &["absolute"]);
    let pax_nul = Raw::new()
        .pax(&[(b"path", b"a\0b")])
        .file(b"harmless", b"x")
        .end();
    a.refuses(&pax_nul, &d, &["NUL"]);
    let mut long = b"../".repeat(40);
    long.extend_from_slice(b"evil\0");
    let gnu = Raw::new()
        .header(b"././@LongLink", b'L', long.len() as u64, b"", 0)
        .data(&long)
        .file(b"harmless", b"x")
        .end();
    a.refuses(&gnu, &d, &["'..'"]);
    let gnu_link = Raw::new()
        .header(b"././@LongLink", b'K', 12, b"", 0)
        .data(b"/etc/shadow\0")
        .header(b"x", b'1', 0, b"ok", 0)
        .end();
    a.refuses(&gnu_link, &d, &["absolute"]);
    let sparse_name = Raw::new()
        .pax(&[
            (b"GNU.sparse.major", b"1"),
            (b"GNU.sparse.minor", b"0"),
            (b"GNU.sparse.name", b"../evil"),
            (b"GNU.sparse.realsize", b"10"),
        ])
        .file(
            b"harmless",
            &[b"1\n0\n0\n".as_slice(), &[0u8; 506]].concat(),
        )
        .end();
    a.refuses(&sparse_name, &d, &["'..'"]);
}

#[test]
fn devices_ids_and_sizes_are_bounded() {
    need_root!();
    let a = Arena::new();
    let d = ExtractOptions::default();
    a.refuses(
        &Raw::new().header(b"dev/null", b'3', 0, b"", 0).end(),
        &d,
        &["device node", "refused"],
    );
    a.refuses(
        &Raw::new().header(b"sda", b'4', 0, b"", 0).end(),
        &d,
        &["device node"],
    );
    assert!(!a.root.join("sda").exists());
    let mapped = ExtractOptions {
        policy: super::FilePolicy {
            max_id: Some(65536),
            ..Default::default()
        },
        ..Default::default()
    };
    a.refuses(
        &Raw::new().header(b"suid", b'0', 0, b"", 65536).end(),
        &mapped,
        &["uid 65536", "outside"],
    );
    let pax_gid = Raw::new().pax(&[(b"gid", b"100000")]).file(b"g", b"").end();
    a.refuses(&pax_gid, &mapped, &["gid 100000"]);
    // Within the map, setuid survives.
    let ok = Raw::new().header(b"ok", b'0', 0, b"", 65535).end();
    a.extract(&ok, &mapped).unwrap();
    assert_eq!(fs::metadata(a.root.join("ok")).unwrap().uid(), 65535);

    let huge = Raw::new()
        .header(b"PaxHeaders/x", b'x', 2 << 20, b"", 0)
        .data(&vec![b'1'; 2 << 20])
        .end();
    a.refuses(&huge, &d, &["exceeds the limit"]);
    let big_xattr = Raw::new()
        .pax(&[(b"SCHILY.xattr.user.big", &vec![b'v'; 70_000])])
        .file(b"f", b"")
        .end();
    a.refuses(&big_xattr, &d, &["extended attribute value"]);
    // Each value is allowed, together they pass ext4's one block per file:
    // said as such, not as "No space left on device".
    let value = vec![b'v'; 3000];
    let many_xattrs = Raw::new()
        .pax(&[
            (b"SCHILY.xattr.user.a", &value),
            (b"SCHILY.xattr.user.b", &value),
            (b"SCHILY.xattr.user.c", &value),
        ])
        .file(b"crowded", b"")
        .end();
    if a.is_ext4() {
        let err = a.extract(&many_xattrs, &d).unwrap_err().to_string();
        assert!(
            err.contains("./crowded") && err.contains("more than this file system holds"),
            "{err}"
        );
        assert!(!err.contains("No space left"), "{err}");
    }
    a.refuses(
        &Raw::new().header(b"root-file", b'0', 0, b"", 0).0,
        &d,
        &["end-of-archive"],
    );
    let mut cut = Raw::new().file(b"f", &[7u8; 3000]).end();
    cut.truncate(1500);
    a.refuses(&cut, &d, &["archive entry 'f'", "truncated"]);
    a.refuses(b"", &d, &["empty"]);
    a.refuses(&vec![b'x'; 2048], &d, &["checksum"]);
    a.refuses(
        &Raw::new().file(b"./", b"").end(),
        &d,
        &["root can only be a directory"],
    );
}

/// Without trust only user.*, file capabilities and ACLs are restored; a
/// privileged attribute refuses the stream. Trusted, it is restored.
#[test]
fn privileged_xattrs_need_trust() {
    need_root!();
    let cap = capability_xattr(CAP_NET_RAW);
    let kept = Raw::new()
        .pax(&[(b"SCHILY.xattr.user.x", b"1")])
        .file(b"u", b"")
        .pax(&[(b"SCHILY.xattr.security.capability", &cap)])
        .file(b"ping", b"")
        .end();
    for name in [
        &b"trusted.overlay.redirect"[..],
        b"security.selinux",
        b"security.ima",
        b"security.evm",
    ] {
        let a = Arena::new();
        a.extract(&kept, &ExtractOptions::default()).unwrap();
        assert_eq!(
            get_xattr(&a.root.join("ping"), b"security.capability"),
            Some(cap.clone())
        );
        let key = [&b"SCHILY.xattr."[..], name].concat();
        let bad = Raw::new().pax(&[(&key, b"x")]).file(b"bad", b"").end();
        let shown = String::from_utf8_lossy(name).into_owned();
        a.refuses(
            &bad,
            &ExtractOptions::default(),
            &["'bad'", &shown, "refused"],
        );
        a.extract(&bad, &trusting()).unwrap();
        assert_eq!(
            get_xattr(&a.root.join("bad"), name).as_deref(),
            Some(&b"x"[..]),
            "{shown}"
        );
    }
}

fn get_xattr(path: &Path, name: &[u8]) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 1024];
    let name = std::ffi::CString::new(name).unwrap();
    let n = rustix::fs::lgetxattr(path, name.as_c_str(), &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

#[test]
fn zero_blocks_only_is_an_empty_archive() {
    let a = Arena::new();
    let stats = a
        .extract(&[0u8; 10240], &ExtractOptions::default())
        .unwrap();
    assert_eq!(stats.counts.entries, 0);
    assert_eq!(fs::read_dir(&a.root).unwrap().count(), 0);
}

#[test]
fn whiteouts_delete_inside_the_root_only() {
    need_root!();
    let a = Arena::new();
    let d = ExtractOptions::default();
    let base = Raw::new()
        .file(b"a", b"a")
        .header(b"d/", b'5', 0, b"", 0)
        .file(b"d/x", b"x")
        .header(b"l", b'2', 0, b"../canary", 0)
        .end();
    a.extract(&base, &d).unwrap();
    // Deleting the symlink deletes the link, not what it points to.
    let layer = Raw::new()
        .file(b".wh.l", b"")
        .file(b"d/.wh.x", b"")
        .file(b".wh.missing", b"")
        .end();
    let stats = a.extract(&layer, &d).unwrap();
    assert_eq!(stats.counts.whiteouts, 3);
    assert!(!a.root.join("l").exists() && !a.root.join("d/x").exists());
    a.check_outside();
    // An opaque marker at the root empties it: a replaced root directory.
    let opaque = Raw::new()
        .file(b"./.wh..wh..opq", b"")
        .file(b"b", b"b")
        .end();
    a.extract(&opaque, &d).unwrap();
    let names: Vec<_> = fs::read_dir(&a.root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["b"]);
    a.check_outside();
    // With whiteouts off they are plain files.
    let plain = ExtractOptions {
        whiteouts: false,
        ..Default::default()
    };
    a.extract(&Raw::new().file(b".wh.b", b"").end(), &plain)
        .unwrap();
    assert!(a.root.join(".wh.b").exists() && a.root.join("b").exists());
}

#[test]
fn replacing_entries_never_follows_what_was_there() {
    need_root!();
    let a = Arena::new();
    let d = ExtractOptions::default();
    // A file entry over a symlink to the canary replaces the symlink.
    let s = Raw::new()
        .header(b"f", b'2', 0, b"../canary/file", 0)
        .file(b"f", b"mine")
        .header(b"dir", b'2', 0, b"../canary", 0)
        .header(b"dir/", b'5', 0, b"", 0)
        .end();
    a.extract(&s, &d).unwrap();
    assert_eq!(fs::read(a.root.join("f")).unwrap(), b"mine");
    assert!(a.root.join("dir").symlink_metadata().unwrap().is_dir());
    a.check_outside();
}

#[test]
fn a_file_system_without_xattrs_gives_warnings_not_failures() {
    need_root!();
    let t = tempfile::tempdir().unwrap();
    let mnt = t.path().join("ramfs");
    fs::create_dir(&mnt).unwrap();
    // ramfs has no extended attributes at all, like zfs-fuse.
    if let Err(e) = rustix::mount::mount(
        "ramfs",
        &mnt,
        "ramfs",
        rustix::mount::MountFlags::empty(),
        None::<&std::ffi::CStr>,
    ) {
        eprintln!("skipped: cannot mount a ramfs ({e})");
        return;
    }
    let cap = capability_xattr(CAP_NET_RAW);
    let stream = Raw::new()
        .pax(&[(b"SCHILY.xattr.user.x", b"1")])
        .header(b"d/", b'5', 0, b"", 0)
        .pax(&[(b"SCHILY.xattr.security.capability", &cap)])
        .file(b"d/ping", b"\x7fELF")
        .pax(&[(b"SCHILY.xattr.system.nfs4_acl", b"?")])
        .file(b"d/odd", b"")
        .end();
    let mut input = stream.as_slice();
    // Trusted: untrusted archives may not hold system.nfs4_acl at all.
    let result = extract(&mut input, &mnt, &trusting());
    let ping = fs::read(mnt.join("d/ping"));
    rustix::mount::unmount(&mnt, rustix::mount::UnmountFlags::empty()).unwrap();
    let stats = result.unwrap();
    assert_eq!(ping.unwrap(), b"\x7fELF");
    assert_eq!(
        (
            stats.xattrs_unsupported,
            stats.capabilities_lost,
            stats.xattrs_skipped
        ),
        (2, 1, 1)
    );
    let notes = stats.notes.lines().join("\n");
    assert!(
        notes.contains("./d/ping: file capabilities lost"),
        "{notes}"
    );
}

// ---------------------------------------------------------------- fuzzing

/// Offsets of the header blocks of a valid stream (data skipped by size).
fn header_offsets(stream: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 0;
    while at + BLOCK <= stream.len() {
        let block: &Block = stream[at..at + BLOCK].try_into().unwrap();
        if h::is_zero(block) {
            break;
        }
        offsets.push(at);
        let size = h::get_num(block, h::SIZE).unwrap() as usize;
        at += BLOCK + size.div_ceil(BLOCK) * BLOCK;
    }
    offsets
}

fn fuzz_seed_stream() -> Vec<u8> {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("d/e")).unwrap();
    fs::write(src.join("d/e/f"), b"data").unwrap();
    fs::write(src.join("long".repeat(40)), b"x").unwrap();
    fs::hard_link(src.join("d/e/f"), src.join("hard")).unwrap();
    symlink("../canary", src.join("up")).unwrap();
    write_sparse(src.join("sparse"), 1 << 20, &[(4096, 100)]);
    set_xattr(src.join("d"), "user.x", b"y");
    dump_to_vec(&root_source(&src)).0
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 128, ..Default::default() })]

    /// Random damage to a valid stream (with or without fixing checksums)
    /// never panics and never writes outside the root.
    #[test]
    fn mutated_streams_never_escape(
        edits in proptest::collection::vec((0usize..1 << 16, proptest::prelude::any::<u8>()), 1..12),
        text_edits in proptest::collection::vec((0usize..1 << 16, 0usize..6), 0..4),
        truncate_at in proptest::option::of(0usize..1 << 16),
        reseal in proptest::prelude::any::<bool>(),
    ) {
        static SEED: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let seed = SEED.get_or_init(fuzz_seed_stream);
        let headers = header_offsets(seed);
        let mut stream = seed.clone();
        for (at, byte) in edits {
            // Aim at headers more often than at data.
            let at = if at % 2 == 0 { headers[at / 2 % headers.len()] + at % BLOCK } else { at % stream.len() };
            stream[at] = byte;
        }
        // Splice hostile fragments into names and PAX records.
        const FRAGMENTS: [&[u8]; 6] = [b"../", b"/", b"\0", b".wh.", b"999999999", b"\n"];
        for (at, which) in text_edits {
            let at = headers[at % headers.len()] + at % 100;
            let fragment = FRAGMENTS[which];
            let end = (at + fragment.len()).min(stream.len());
            stream[at..end].copy_from_slice(&fragment[..end - at]);
        }
        if reseal {
            for &at in &headers {
                let block: &mut Block = (&mut stream[at..at + BLOCK]).try_into().unwrap();
                h::seal(block);
            }
        }
        if let Some(cut) = truncate_at {
            stream.truncate(cut % (stream.len() + 1));
        }
        let a = Arena::new();
        let _ = a.extract(&stream, &ExtractOptions::default());
        a.check_outside();
    }
}
