use crate::ErrorKind;
use std::fs::File;
use std::path::Path;

use proptest::prelude::*;
use sha2::{Digest, Sha256};

use super::*;
use crate::archive::digest::hex;
use crate::archive::header::{encode, EntryKind};
use crate::archive::testutil::{run_text, sample_data};

/// Name, kind, data and digest of one entry.
type ReadEntry = (String, EntryKind, Vec<u8>, EntryDigest);

/// Everything an archive holds, read through the entries' `Read`.
fn read_all<R: Read>(input: R) -> Result<Vec<ReadEntry>> {
    let mut reader = ArchiveReader::new(input);
    let mut out = Vec::new();
    while let Some(mut entry) = reader.next_entry()? {
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(read_error)?;
        let digest = entry.digest().expect("all read");
        out.push((entry.name().to_string(), entry.kind(), data, digest));
    }
    Ok(out)
}

fn file_block(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = encode(name, EntryKind::File, data.len() as u64, 0)
        .unwrap()
        .to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn end_marker() -> Vec<u8> {
    vec![0u8; 1024]
}

/// A directory tree shaped like an export, for GNU tar to pack.
fn export_tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let files = vec![
        ("metadata.yml".to_string(), b"---\ntype: full\n".to_vec()),
        ("config/container.yml".to_string(), b"user: x\n".to_vec()),
        ("rootfs/base.dat".to_string(), sample_data(100_000, 3)),
        ("rootfs/sub/base.dat.gz".to_string(), sample_data(513, 4)),
        ("snapshots.yml".to_string(), Vec::new()),
    ];
    for (name, data) in &files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    files
}

fn gnu_tar(dir: &Path, format: &str, members: &[&str]) -> Vec<u8> {
    let out = dir.join(format!("{format}.tar"));
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"-cf", &out, &"-C"];
    let tree = dir.join("tree");
    args.push(&tree);
    let format_arg = format!("--format={format}");
    args.push(&format_arg);
    for m in members {
        args.push(m);
    }
    run_text("tar", &args);
    std::fs::read(out).unwrap()
}

#[test]
fn reads_gnu_tar_archives_in_ustar_and_gnu_format() {
    let dir = tempfile::tempdir().unwrap();
    let files = export_tree(&dir.path().join("tree"));
    let members = ["metadata.yml", "config", "rootfs", "snapshots.yml"];
    for format in ["ustar", "gnu"] {
        let bytes = gnu_tar(dir.path(), format, &members);
        let entries = read_all(bytes.as_slice()).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "metadata.yml",
                "config",
                "config/container.yml",
                "rootfs",
                "rootfs/base.dat",
                "rootfs/sub",
                "rootfs/sub/base.dat.gz",
                "snapshots.yml"
            ],
            "{format}"
        );
        for (name, data) in &files {
            let entry = entries.iter().find(|e| &e.0 == name).unwrap();
            assert_eq!(entry.1, EntryKind::File);
            assert_eq!(&entry.2, data, "{format} {name}");
            assert_eq!(entry.3.hex, hex(&Sha256::digest(data)));
            assert_eq!(entry.3.size, data.len() as u64);
        }
    }
}

#[test]
fn dot_slash_names_are_stripped_and_the_root_entry_skipped() {
    let dir = tempfile::tempdir().unwrap();
    export_tree(&dir.path().join("tree"));
    let bytes = gnu_tar(dir.path(), "gnu", &["."]);
    let entries = read_all(bytes.as_slice()).unwrap();
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert!(names.contains(&"metadata.yml"), "{names:?}");
    assert!(names.contains(&"rootfs/sub/base.dat.gz"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.is_empty() || n.starts_with("./")),
        "{names:?}"
    );
}

#[test]
fn pax_symlinks_and_long_names_from_gnu_tar_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    export_tree(&dir.path().join("tree"));
    let err = read_all(gnu_tar(dir.path(), "pax", &["metadata.yml"]).as_slice()).unwrap_err();
    assert!(err.to_string().contains("PAX"), "{err}");

    std::os::unix::fs::symlink("metadata.yml", dir.path().join("tree/link")).unwrap();
    let err = read_all(gnu_tar(dir.path(), "gnu", &["link"]).as_slice()).unwrap_err();
    assert!(
        err.to_string().contains("'link'") && err.to_string().contains("symbolic link"),
        "{err}"
    );

    let long = "l".repeat(120);
    std::fs::write(dir.path().join("tree").join(&long), b"x").unwrap();
    let err = read_all(gnu_tar(dir.path(), "gnu", &[&long]).as_slice()).unwrap_err();
    assert!(err.to_string().contains("long name"), "{err}");
    assert!(err.kind() == ErrorKind::Archive);
}

#[test]
fn unread_data_is_skipped() {
    let big = sample_data(3 << 20, 1);
    let bytes = [file_block("a", &big), file_block("b", b"bee"), end_marker()].concat();
    let mut reader = ArchiveReader::new(bytes.as_slice());
    let mut a = reader.next_entry().unwrap().unwrap();
    let mut head = [0u8; 10];
    a.read_exact(&mut head).unwrap();
    assert!(a.digest().is_none(), "not all read yet");
    let mut b = reader.next_entry().unwrap().unwrap();
    assert_eq!(b.name(), "b");
    assert_eq!(b.read_to_vec(100).unwrap(), b"bee");
    assert!(reader.next_entry().unwrap().is_none());
    assert!(reader.next_entry().unwrap().is_none(), "stays at the end");
}

#[test]
fn clean_eof_without_end_marker_and_empty_input_end_the_archive() {
    assert!(read_all(&[][..]).unwrap().is_empty());
    let bytes = file_block("a", b"x");
    assert_eq!(read_all(bytes.as_slice()).unwrap().len(), 1);
    let lone_zero = [file_block("a", b"x"), vec![0; 512]].concat();
    assert_eq!(read_all(lone_zero.as_slice()).unwrap().len(), 1);
}

#[test]
fn read_to_vec_refuses_large_entries_before_reading() {
    let bytes = [file_block("metadata.yml", &[b'a'; 5000]), end_marker()].concat();
    let mut reader = ArchiveReader::new(bytes.as_slice());
    let mut entry = reader.next_entry().unwrap().unwrap();
    let err = entry.read_to_vec(4096).unwrap_err().to_string();
    assert!(
        err.contains("metadata.yml") && err.contains("5000"),
        "{err}"
    );
}

fn expect_archive_error(bytes: &[u8], needle: &str) {
    let err = read_all(bytes).unwrap_err();
    assert!(err.kind() == ErrorKind::Archive, "{err:?}");
    assert!(
        err.to_string().contains(needle),
        "expected '{needle}' in: {err}"
    );
}

#[test]
fn hostile_inputs_are_errors() {
    let good = [file_block("metadata.yml", b"hello"), end_marker()].concat();

    expect_archive_error(&good[..300], "archive is truncated");
    expect_archive_error(&good[..514], "archive is truncated");
    let mut big = file_block("rootfs/base.dat", &sample_data(10_000, 1));
    big.truncate(5000);
    expect_archive_error(&big, "archive is truncated: entry 'rootfs/base.dat'");

    let mut bad_sum = good.clone();
    bad_sum[3] ^= 1;
    expect_archive_error(&bad_sum, "checksum");

    let mut huge = encode("rootfs/base.dat", EntryKind::File, 1 << 62, 0)
        .unwrap()
        .to_vec();
    huge.extend_from_slice(&[1u8; 4096]);
    expect_archive_error(&huge, "archive is truncated");

    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    expect_archive_error(&garbage, "not a tar archive");

    let zero_then_data = [vec![0u8; 512], file_block("a", b"x")].concat();
    expect_archive_error(&zero_then_data, "zero block");

    // Errors are sticky: nothing after a broken header is trusted.
    let mut reader = ArchiveReader::new(bad_sum.as_slice());
    assert!(reader.next_entry().is_err());
    assert!(reader.next_entry().is_err());
}

#[test]
fn copy_to_reports_truncation_as_a_source_error() {
    let mut bytes = file_block("rootfs/base.dat", &sample_data(10_000, 1));
    bytes.truncate(3000);
    let mut reader = ArchiveReader::new(bytes.as_slice());
    let mut entry = reader.next_entry().unwrap().unwrap();
    let mut out = Vec::new();
    match entry.copy_to(&mut out) {
        Err(CopyError::Source(e)) if e.kind() == ErrorKind::Archive => {
            assert!(e.message().contains("truncated"), "{e}")
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn run_reader_on(bytes: &[u8]) {
    let mut reader = ArchiveReader::new(bytes);
    for _ in 0..64 {
        match reader.next_entry() {
            Ok(Some(mut entry)) => {
                let _ = entry.copy_to(&mut std::io::sink());
            }
            Ok(None) | Err(_) => return,
        }
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        run_reader_on(&bytes);
    }

    #[test]
    fn mutated_archives_never_panic(
        flips in proptest::collection::vec((0usize..3072, any::<u8>()), 1..16),
        cut in 0usize..3072,
    ) {
        let mut bytes = [file_block("metadata.yml", b"type: full\n"), file_block("rootfs/base.dat", &[7; 700]), end_marker()].concat();
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        bytes.truncate(cut.max(1));
        run_reader_on(&bytes);
    }
}

#[test]
fn ustar_prefix_fields_from_gnu_tar_are_joined() {
    let dir = tempfile::tempdir().unwrap();
    let long_dir = format!("rootfs/{}", "d".repeat(90));
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join(&long_dir)).unwrap();
    std::fs::write(tree.join(&long_dir).join("base.dat"), b"data").unwrap();
    let bytes = gnu_tar(dir.path(), "ustar", &["rootfs"]);
    let entries = read_all(bytes.as_slice()).unwrap();
    let file = entries.iter().find(|e| e.1 == EntryKind::File).unwrap();
    assert_eq!(file.0, format!("{long_dir}/base.dat"));
    assert_eq!(file.2, b"data");
}

/// Archives the original writes: Ruby's TarWriter, directory names without a
/// slash, the root dataset's directory written twice ("rootfs", "rootfs/"),
/// a long name split into the ustar prefix.
#[test]
fn reads_what_rubys_tar_writer_writes() {
    if !crate::archive::testutil::have_ruby("reads_what_rubys_tar_writer_writes") {
        return;
    }
    const SCRIPT: &str = r##"
require 'rubygems/package'
File.open(ARGV[0], 'wb') do |io|
  tar = Gem::Package::TarWriter.new(io)
  tar.add_file('metadata.yml', 0644) { |tf| tf.write("---\ntype: full\n") }
  tar.mkdir('config', 0755)
  tar.add_file('config/container.yml', 0644) { |tf| tf.write("user: x\n") }
  tar.mkdir('rootfs', 0755)
  tar.mkdir(File.join('rootfs', '/'), 0755)
  tar.add_file(File.join('rootfs', '/base.dat'), 0644) { |tf| tf.write('x' * 100000) }
  tar.add_file('rootfs/' + 'd' * 95 + '/base.dat', 0644) { |tf| tf.write('y') }
  tar.add_file('snapshots.yml', 0644) { |tf| tf.write("---\n- osctl-base-1\n") }
end
"##;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ruby.tar");
    run_text("ruby", &[&"-e", &SCRIPT, &path]);
    let entries = read_all(File::open(&path).unwrap()).unwrap();
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    let long = format!("rootfs/{}/base.dat", "d".repeat(95));
    assert_eq!(
        names,
        [
            "metadata.yml",
            "config",
            "config/container.yml",
            "rootfs",
            "rootfs",
            "rootfs/base.dat",
            long.as_str(),
            "snapshots.yml"
        ]
    );
    assert_eq!(entries[5].2, vec![b'x'; 100_000]);
    assert_eq!(entries[6].2, b"y");
}
