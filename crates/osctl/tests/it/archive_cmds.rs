//! `osctl archive verify` and `osctl archive show` on real exports, on
//! archives spoiled in the ways that happen (a flipped bit, a cut download, a
//! broken gzip), on the original's archives; and an import that refuses a
//! stream altered behind its checksums.yml.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use testkit::loopfs::LoopFs;

use super::rawtar::{self, Entry};
use super::support::{is_root, Env};
use crate::require;

/// One entry of an outer archive, as the tests below take them apart.
struct Outer {
    name: String,
    dir: bool,
    data: Vec<u8>,
}

/// The entries of a plain ustar archive (what export writes).
fn outer_entries(archive: &[u8]) -> Vec<Outer> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= archive.len() && archive[at..at + 512].iter().any(|&b| b != 0) {
        let h = &archive[at..at + 512];
        let name_end = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let size_text = std::str::from_utf8(&h[124..135]).unwrap();
        let size = usize::from_str_radix(size_text.trim_matches(['\0', ' ']), 8).unwrap();
        out.push(Outer {
            name: String::from_utf8(h[..name_end].to_vec()).unwrap(),
            dir: h[156] == b'5',
            data: archive[at + 512..at + 512 + size].to_vec(),
        });
        at += 512 + size.div_ceil(512) * 512;
    }
    out
}

fn rebuild(entries: &[Outer]) -> Vec<u8> {
    let list: Vec<Entry> = entries
        .iter()
        .map(|e| {
            if e.dir {
                Entry::dir(&e.name)
            } else {
                Entry::file(&e.name, &e.data)
            }
        })
        .collect();
    rawtar::build(&list)
}

/// Offset of entry `name`'s data in the archive.
fn data_offset(archive: &[u8], name: &str) -> usize {
    let mut at = 0;
    for e in outer_entries(archive) {
        if e.name == name {
            return at + 512;
        }
        at += 512 + e.data.len().div_ceil(512) * 512;
    }
    panic!("no entry {name}");
}

/// Offset of the content of file `name` in a tar stream (our dumps name
/// entries "./etc/hostname").
fn inner_file_offset(tar: &[u8], name: &str) -> usize {
    let mut field = name.as_bytes().to_vec();
    field.push(0);
    (0..tar.len())
        .step_by(512)
        .find(|&at| tar[at..].starts_with(&field))
        .map(|at| at + 512)
        .unwrap_or_else(|| panic!("no {name} in the stream"))
}

/// A busybox container `c1` exported with `compression`.
fn exported(env: &Env, compression: &str) -> PathBuf {
    env.busybox_ct("c1");
    let archive = env.path(&format!("c1-{compression}.tar"));
    env.ok(&[
        "ct",
        "export",
        "--compression",
        compression,
        "c1",
        archive.to_str().unwrap(),
    ]);
    archive
}

fn verify_fails(env: &Env, archive: &Path) -> String {
    env.fails(&["archive", "verify", archive.to_str().unwrap()], 1)
}

#[test]
fn a_real_export_verifies_and_shows() {
    require!(is_root(), "needs root (export of a container)");
    let env = Env::new();
    let archive = exported(&env, "gzip");
    let out = env.ok(&["archive", "verify", archive.to_str().unwrap()]);
    let last = out.lines().last().unwrap();
    assert_eq!(
        last,
        format!(
            "archive {}: OK (9 entries, {} bytes, checksums verified)",
            archive.display(),
            std::fs::metadata(&archive).unwrap().len()
        ),
        "{out}"
    );
    for group in [
        "structure: ",
        "metadata.yml: full archive, format tar, container 'c1'",
        "configs: config/user.yml, config/group.yml, config/container.yml parsed",
        "rootfs/base.tar.gz: gzip stream intact",
        "names safe",
        "snapshots.yml: osctl-base-",
        "checksums: all 5 entries match checksums.yml",
    ] {
        assert!(out.contains(group), "{group:?} in {out}");
    }
    // The export's time as a date, not a count of seconds.
    let metadata_line = out
        .lines()
        .find(|l| l.starts_with("metadata.yml:"))
        .unwrap();
    assert!(
        metadata_line.contains(" exported at 20") && metadata_line.ends_with(" UTC"),
        "{metadata_line}"
    );
    // The same through a pipe.
    let mut child = env
        .cmd()
        .args(["archive", "verify", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let bytes = std::fs::read(&archive).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    let mut piped = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut piped)
        .unwrap();
    assert!(child.wait().unwrap().success());
    writer.join().unwrap().unwrap();
    assert!(piped.contains("archive -: OK (9 entries"), "{piped}");

    let shown = env.json(&["archive", "show", archive.to_str().unwrap()]);
    assert_eq!(shown["metadata"]["type"], "full");
    assert_eq!(shown["metadata"]["format"], "tar");
    assert_eq!(shown["metadata"]["container"], "c1");
    assert_eq!(shown["metadata"]["user"], "u1");
    assert_eq!(shown["metadata"]["group"], "/default");
    assert!(shown["metadata"]["exported_at"].as_i64().unwrap() > 1_700_000_000);
    assert!(shown["user"]["uid_map"][0]
        .as_str()
        .unwrap()
        .starts_with("0:"));
    assert_eq!(shown["container"]["user"], "u1");
    assert!(shown["group"].is_object());
    assert_eq!(shown["checksums"], true);
    let entries = shown["entries"].as_array().unwrap();
    let stream = entries
        .iter()
        .find(|e| e["name"] == "rootfs/base.tar.gz")
        .unwrap();
    assert_eq!(stream["compression"], "gzip");
    let text = env.ok(&["archive", "show", archive.to_str().unwrap()]);
    for line in [
        "container:   c1",
        "checksums:   checksums.yml present",
        "config/container.yml:",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
}

#[test]
fn a_flipped_byte_in_a_stream_is_a_checksum_mismatch() {
    require!(is_root(), "needs root (export of a container)");
    let env = Env::new();
    let archive = exported(&env, "off");
    let mut bytes = std::fs::read(&archive).unwrap();
    // A byte of /etc/hostname's content inside the uncompressed tar: the
    // stream stays a valid tar, only its digest changes.
    let stream = data_offset(&bytes, "rootfs/base.tar");
    let at = stream + inner_file_offset(&bytes[stream..], "./etc/hostname");
    assert_eq!(&bytes[at..at + 8], b"busybox\n");
    bytes[at] = b'B';
    std::fs::write(&archive, &bytes).unwrap();
    let err = verify_fails(&env, &archive);
    assert!(
        err.contains("archive entry 'rootfs/base.tar' is damaged: checksums.yml says"),
        "{err}"
    );
}

#[test]
fn a_truncated_archive_and_a_corrupt_gzip_fail_clearly() {
    require!(is_root(), "needs root (export of a container)");
    let env = Env::new();
    let archive = exported(&env, "gzip");
    let bytes = std::fs::read(&archive).unwrap();
    let stream = data_offset(&bytes, "rootfs/base.tar.gz");

    let cut = env.path("cut.tar");
    std::fs::write(&cut, &bytes[..stream + 1000]).unwrap();
    let err = verify_fails(&env, &cut);
    assert!(err.contains("truncated"), "{err}");
    assert!(err.contains("rootfs/base.tar.gz"), "{err}");

    let size = outer_entries(&bytes)
        .iter()
        .find(|e| e.name == "rootfs/base.tar.gz")
        .unwrap()
        .data
        .len();
    // The gzip magic, and the CRC-32 of the trailer (the content decodes,
    // the gzip check fails at its end).
    for at in [stream, stream + size - 8] {
        let mut spoiled = bytes.clone();
        spoiled[at] ^= 0xff;
        let broken = env.path("broken.tar");
        std::fs::write(&broken, &spoiled).unwrap();
        let err = verify_fails(&env, &broken);
        assert!(
            err.contains("archive entry 'rootfs/base.tar.gz': corrupt gzip stream"),
            "{err}"
        );
    }
    // Damage inside the compressed data shows in what it decodes to.
    let mut spoiled = bytes.clone();
    spoiled[stream + size / 2] ^= 0xff;
    let broken = env.path("broken.tar");
    std::fs::write(&broken, &spoiled).unwrap();
    let err = verify_fails(&env, &broken);
    assert!(err.contains("archive entry 'rootfs/base.tar.gz'"), "{err}");
}

#[test]
fn an_original_archive_verifies_without_checksums() {
    let env = Env::new();
    let rootfs = rawtar::gzip(&rawtar::build(&[
        Entry::dir("./"),
        Entry::dir("./etc/"),
        Entry::file("./etc/hostname", b"legacy\n"),
    ]));
    let archive = rawtar::build(&[
        Entry::file("metadata.yml", b"---\ntype: full\nformat: tar\nuser: legacy\ngroup: \"/default\"\ncontainer: legacy-ct\ndatasets: []\nexported_at: 1690000000\n"),
        Entry::dir("config/"),
        Entry::file("config/user.yml", b"---\nugid: 100123\nuid_map:\n- 0:3600000000:65536\ngid_map:\n- 0:3600000000:65536\nstandalone: true\nattrs: {}\n"),
        Entry::file("config/group.yml", b"---\ncgparams: []\nattrs: {}\n"),
        Entry::file("config/container.yml", b"---\nuser: legacy\ngroup: \"/default\"\ndataset: tank/ct/legacy-ct\ndistribution: debian\nraw: {}\nattrs: {}\n"),
        Entry::dir("rootfs/"),
        Entry::file("rootfs/base.tar.gz", &rootfs),
        Entry::file("snapshots.yml", b"--- []\n"),
    ]);
    let file = env.path("legacy.tar");
    std::fs::write(&file, &archive).unwrap();
    let out = env.ok(&["archive", "verify", file.to_str().unwrap()]);
    assert!(out.contains("checksums: no checksums.yml"), "{out}");
    let verdict = format!("OK (8 entries, {} bytes, no checksums.yml)", archive.len());
    assert!(out.trim_end().ends_with(&verdict), "{out}");
    let shown = env.json(&["archive", "show", file.to_str().unwrap()]);
    assert_eq!(shown["checksums"], false);
    assert_eq!(shown["user"]["ugid"], 100123);
}

#[test]
fn import_refuses_a_stream_altered_behind_its_checksums() {
    require!(is_root(), "needs root (export and import of a container)");
    let env = Env::new();
    let archive = exported(&env, "gzip");
    let mut entries = outer_entries(&std::fs::read(&archive).unwrap());
    assert_eq!(
        entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        [
            "metadata.yml",
            "config/",
            "config/user.yml",
            "config/group.yml",
            "config/container.yml",
            "rootfs/",
            "rootfs/base.tar.gz",
            "checksums.yml",
            "snapshots.yml"
        ]
    );
    // A valid gzip of a valid tar, /etc/hostname changed: only the
    // checksum can tell.
    let stream = entries
        .iter_mut()
        .find(|e| e.name == "rootfs/base.tar.gz")
        .unwrap();
    let mut tar = Vec::new();
    flate2::read::MultiGzDecoder::new(&stream.data[..])
        .read_to_end(&mut tar)
        .unwrap();
    let at = inner_file_offset(&tar, "./etc/hostname");
    assert_eq!(&tar[at..at + 8], b"busybox\n");
    tar[at..at + 8].copy_from_slice(b"hackbox\n");
    stream.data = rawtar::gzip(&tar);
    let altered = env.path("altered.tar");
    std::fs::write(&altered, rebuild(&entries)).unwrap();

    let err = verify_fails(&env, &altered);
    assert!(
        err.contains("archive entry 'rootfs/base.tar.gz' is damaged"),
        "{err}"
    );
    let err = env.fails(
        &["ct", "import", "--as-id", "copy", altered.to_str().unwrap()],
        1,
    );
    assert!(
        err.contains("archive entry 'rootfs/base.tar.gz' is damaged"),
        "{err}"
    );
    let ids: Vec<String> = env
        .json(&["ct", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["c1"], "nothing imported");
    // checksums.yml dropped while metadata.yml still announces it: an
    // archive cut short, refused.
    entries.retain(|e| e.name != "checksums.yml");
    let unchecked = env.path("unchecked.tar");
    std::fs::write(&unchecked, rebuild(&entries)).unwrap();
    let err = env.fails(
        &[
            "ct",
            "import",
            "--as-id",
            "copy",
            unchecked.to_str().unwrap(),
        ],
        1,
    );
    assert!(err.contains("checksums.yml is missing"), "{err}");
    // Without any checksums (as the original writes archives) the same
    // stream imports: the check is the checksums', not the stream's.
    let metadata = entries
        .iter_mut()
        .find(|e| e.name == "metadata.yml")
        .unwrap();
    let text = String::from_utf8(metadata.data.clone()).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("checksums:"))
        .collect();
    assert_eq!(kept.len() + 1, text.lines().count(), "{text}");
    metadata.data = format!("{}\n", kept.join("\n")).into_bytes();
    std::fs::write(&unchecked, rebuild(&entries)).unwrap();
    env.ok(&[
        "ct",
        "import",
        "--as-id",
        "copy",
        unchecked.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(env.rootfs_of("copy").join("etc/hostname")).unwrap(),
        "hackbox\n"
    );
}

#[test]
fn verify_of_a_file_that_is_no_archive() {
    let env = Env::new();
    let file = env.path("notes.txt");
    std::fs::write(&file, "not an archive at all\n".repeat(40)).unwrap();
    let err = verify_fails(&env, &file);
    assert!(
        err.contains(&format!("archive {}", file.display())),
        "{err}"
    );
    let err = env.fails(&["archive", "show", "/nonexistent/x.tar"], 1);
    assert!(
        err.contains("cannot open archive /nonexistent/x.tar"),
        "{err}"
    );
}

#[test]
fn a_btrfs_export_verifies_its_send_stream() {
    let Some(bt) = LoopFs::new("btrfs", 256, "") else {
        return;
    };
    let env = Env::new();
    let pool = bt.path().join("pool");
    env.ok(&[
        "pool",
        "install",
        "--backend",
        "btrfs",
        "--path",
        pool.to_str().unwrap(),
        "bt",
    ]);
    let rootfs = env.busybox_rootfs("rootfs");
    env.ok(&["--pool", "bt", "user", "new", "u1"]);
    env.ok(&[
        "--pool",
        "bt",
        "ct",
        "new",
        "--user",
        "u1",
        "--from-dir",
        rootfs.to_str().unwrap(),
        "b1",
    ]);
    let archive = env.path("b1.tar");
    env.ok(&[
        "--pool",
        "bt",
        "ct",
        "export",
        "b1",
        archive.to_str().unwrap(),
    ]);
    let out = env.ok(&["archive", "verify", archive.to_str().unwrap()]);
    assert!(out.contains("format btrfs"), "{out}");
    assert!(out.contains("btrfs send stream v"), "{out}");
    assert!(out.contains("checksums verified"), "{out}");
    env.ok(&["--pool", "bt", "ct", "del", "b1"]);
    env.ok(&["--pool", "bt", "user", "del", "u1"]);
}
