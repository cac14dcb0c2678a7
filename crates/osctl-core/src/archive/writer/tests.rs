use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::*;
use crate::archive::compress::{decompressor, CompressOptions, Compression, Encoder};
use crate::archive::digest::hex;
use crate::archive::meta;
use crate::archive::reader::ArchiveReader;
use crate::archive::testutil::{path_arg, run_bytes, run_text, sample_data};

struct Built {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    base: Vec<u8>,
    incremental: Vec<u8>,
    digests: Vec<EntryDigest>,
}

/// An archive in the original's order: metadata.yml, config/, config/*.yml,
/// rootfs/, rootfs/base.dat.gz (compressed through the sink's Write),
/// rootfs/incremental.dat (copied straight into the file), snapshots.yml.
fn build_original_order() -> Built {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.tar");
    let base = sample_data(3 << 20, 1);
    let incremental = sample_data(700_001, 2);
    let source = dir.path().join("incremental");
    std::fs::write(&source, &incremental).unwrap();

    let mut w = ArchiveWriter::new(File::create(&path).unwrap()).unwrap();
    w.add_file(meta::METADATA, b"---\ntype: full\n").unwrap();
    w.add_dir(meta::CONFIG_DIR).unwrap();
    w.add_file(meta::USER_CONFIG, b"uid_map: []\n").unwrap();
    w.add_file(meta::GROUP_CONFIG, b"attrs: {}\n").unwrap();
    w.add_file(meta::CONTAINER_CONFIG, b"user: u\n").unwrap();
    w.add_dir(meta::ROOTFS_DIR).unwrap();
    w.stream_entry("rootfs/base.dat.gz", |sink| {
        let mut gz =
            Encoder::new(Compression::Gzip, &mut *sink, &CompressOptions::default()).unwrap();
        gz.write_all(&base).unwrap();
        gz.finish().unwrap();
        Ok(())
    })
    .unwrap();
    w.stream_entry("rootfs/incremental.dat", |sink| {
        let n = sink.copy_from(&mut File::open(&source).unwrap())?;
        assert_eq!(n, incremental.len() as u64);
        Ok(())
    })
    .unwrap();
    w.add_file(meta::SNAPSHOTS, b"---\n- osctl-base-1\n")
        .unwrap();
    let digests = w.checksums().to_vec();
    w.finish().unwrap();
    Built {
        _dir: dir,
        path,
        base,
        incremental,
        digests,
    }
}

fn sha(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// What the writer records: BLAKE3.
fn digest_of(data: &[u8]) -> String {
    DigestAlgorithm::CURRENT.hex_of(data)
}

/// SHA-256 of every file entry of an archive, as our reader finds them when
/// no metadata named an algorithm.
fn sha256_of_entries(path: &Path) -> Vec<(String, u64, String)> {
    let mut reader = ArchiveReader::new(std::fs::File::open(path).unwrap());
    let mut out = Vec::new();
    while let Some(mut entry) = reader.next_entry().unwrap() {
        if entry.kind() == EntryKind::File {
            std::io::copy(&mut entry, &mut std::io::sink()).unwrap();
            let d = entry.digest().unwrap();
            assert_eq!(d.algorithm, DigestAlgorithm::Sha256);
            out.push((d.name, d.size, d.hex));
        }
    }
    out
}

fn extract(archive: &Path, name: &str) -> Vec<u8> {
    run_bytes(
        "tar",
        [
            std::ffi::OsStr::new("-xOf"),
            path_arg(archive),
            name.as_ref(),
        ],
    )
}

#[test]
fn gnu_tar_lists_the_original_order_with_modes() {
    let built = build_original_order();
    let listing = run_text("tar", &[&"-tvf", &path_arg(&built.path)]);
    let rows: Vec<(&str, &str)> = listing
        .lines()
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (fields[0], *fields.last().unwrap())
        })
        .collect();
    let expected = [
        ("-rw-r--r--", "metadata.yml"),
        ("drwxr-xr-x", "config/"),
        ("-rw-r--r--", "config/user.yml"),
        ("-rw-r--r--", "config/group.yml"),
        ("-rw-r--r--", "config/container.yml"),
        ("drwxr-xr-x", "rootfs/"),
        ("-rw-r--r--", "rootfs/base.dat.gz"),
        ("-rw-r--r--", "rootfs/incremental.dat"),
        ("-rw-r--r--", "snapshots.yml"),
    ];
    assert_eq!(rows, expected, "{listing}");
    assert!(listing.contains("root/root"), "{listing}");
}

#[test]
fn gnu_tar_extracts_the_right_bytes_and_digests_match() {
    let built = build_original_order();
    let gz = extract(&built.path, "rootfs/base.dat.gz");
    let mut base = Vec::new();
    decompressor(Compression::Gzip, gz.as_slice())
        .unwrap()
        .read_to_end(&mut base)
        .unwrap();
    assert_eq!(base, built.base);
    let incremental = extract(&built.path, "rootfs/incremental.dat");
    assert_eq!(incremental, built.incremental);
    assert_eq!(
        extract(&built.path, "snapshots.yml"),
        b"---\n- osctl-base-1\n"
    );

    let names: Vec<&str> = built.digests.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "metadata.yml",
            "config/user.yml",
            "config/group.yml",
            "config/container.yml",
            "rootfs/base.dat.gz",
            "rootfs/incremental.dat",
            "snapshots.yml"
        ]
    );
    for d in &built.digests {
        let bytes = extract(&built.path, &d.name);
        assert_eq!(d.size, bytes.len() as u64, "{}", d.name);
        assert_eq!(d.hex, digest_of(&bytes), "{}", d.name);
    }
}

#[test]
fn our_reader_reads_it_back_with_the_same_digests() {
    let built = build_original_order();
    let mut reader = ArchiveReader::new(File::open(&built.path).unwrap());
    let mut digests = Vec::new();
    let mut names = Vec::new();
    while let Some(mut entry) = reader.next_entry().unwrap() {
        names.push(entry.name().to_string());
        // As the importer does once it parsed metadata.yml.
        entry.use_digest(DigestAlgorithm::CURRENT);
        if entry.kind() == EntryKind::File {
            entry.copy_to(&mut std::io::sink()).unwrap();
            digests.push(entry.digest().unwrap());
        }
    }
    assert_eq!(names[1], "config");
    assert_eq!(names[5], "rootfs");
    assert_eq!(digests, built.digests);
}

#[test]
fn mixed_write_and_zero_copy_in_one_entry_hash_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.tar");
    let middle = sample_data(2_500_000, 4);
    let middle_path = dir.path().join("middle");
    std::fs::write(&middle_path, &middle).unwrap();
    let mut w = ArchiveWriter::new(File::create(&path).unwrap()).unwrap();
    w.stream_entry("rootfs/base.dat", |sink| {
        sink.write_all(b"head").unwrap();
        sink.copy_from(&mut File::open(&middle_path).unwrap())?;
        sink.write_all(&[7u8; 3 << 20]).unwrap(); // larger than the buffer: bypasses it
        sink.write_all(b"tail").unwrap();
        assert_eq!(sink.written(), 4 + middle.len() as u64 + (3 << 20) + 4);
        Ok(())
    })
    .unwrap();
    let digest = w.checksums()[0].clone();
    w.finish().unwrap();
    let expected = [b"head".as_slice(), &middle, &[7u8; 3 << 20], b"tail"].concat();
    assert_eq!(extract(&path, "rootfs/base.dat"), expected);
    assert_eq!(digest.hex, digest_of(&expected));
    assert_eq!(digest.size, expected.len() as u64);
}

#[test]
fn empty_and_block_sized_streams() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.tar");
    let mut w = ArchiveWriter::new(File::create(&path).unwrap()).unwrap();
    w.stream_entry("rootfs/base.dat", |_| Ok(())).unwrap();
    w.stream_entry("rootfs/incremental.dat", |sink| {
        sink.write_all(&[1u8; 1024]).unwrap();
        Ok(())
    })
    .unwrap();
    w.add_file("snapshots.yml", b"").unwrap();
    w.finish().unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    assert_eq!(
        len,
        512 + 512 + 1024 + 512 + 1024,
        "headers, data, end marker"
    );
    assert_eq!(extract(&path, "rootfs/base.dat"), b"");
    assert_eq!(extract(&path, "rootfs/incremental.dat"), vec![1u8; 1024]);
}

#[test]
fn long_names_are_refused_and_the_archive_goes_on() {
    let file = tempfile::tempfile().unwrap();
    let mut w = ArchiveWriter::new(file).unwrap();
    let long = format!("rootfs/{}/base.dat", "a".repeat(100));
    let err = w.add_file(&long, b"x").unwrap_err().to_string();
    assert!(err.contains("100"), "{err}");
    assert!(w.stream_entry(&long, |_| Ok(())).is_err());
    w.add_file(meta::METADATA, b"x").unwrap();
    w.finish().unwrap();
}

#[test]
fn a_failed_stream_breaks_the_archive_and_drop_is_quiet() {
    let file = tempfile::tempfile().unwrap();
    let mut w = ArchiveWriter::new(file).unwrap();
    let err = w
        .stream_entry("rootfs/base.dat", |sink| -> Result<()> {
            sink.write_all(b"partial").unwrap();
            Err(Error::invalid("zfs send died"))
        })
        .unwrap_err();
    assert!(err.to_string().contains("zfs send died"));
    assert!(w.add_file(meta::SNAPSHOTS, b"").is_err());
    assert!(w.stream_entry("x", |_| Ok(())).is_err());
    drop(w);
}

#[test]
fn pipes_are_refused_as_output() {
    let (_read, write) = std::io::pipe().unwrap();
    let file = File::from(std::os::fd::OwnedFd::from(write));
    let err = ArchiveWriter::new(file).err().unwrap().to_string();
    assert!(err.contains("seekable"), "{err}");
}

/// Builds an archive holding one entry of `size` bytes as a sparse file
/// (holes cost nothing), to check how readers take our size encodings.
fn sparse_archive(dir: &Path, size: u64) -> std::path::PathBuf {
    let path = dir.join(format!("big-{size}.tar"));
    let mut file = File::create(&path).unwrap();
    file.write_all(&header::encode("rootfs/base.dat", EntryKind::File, size, 0).unwrap())
        .unwrap();
    let data_end = 512 + size.div_ceil(512) * 512;
    file.set_len(data_end + 1024).unwrap();
    path
}

#[test]
fn gnu_tar_reads_sizes_beyond_8_and_64_gib() {
    let dir = tempfile::tempdir().unwrap();
    for size in [(8u64 << 30) + 1, (64u64 << 30) + 513] {
        let path = sparse_archive(dir.path(), size);
        let listing = run_text("tar", &[&"-tvf", &path_arg(&path)]);
        assert!(
            listing.contains(&format!(" {size} ")),
            "size {size} not in: {listing}"
        );
        let mut reader = ArchiveReader::new(File::open(&path).unwrap());
        let entry = reader.next_entry().unwrap().unwrap();
        assert_eq!(entry.size(), size);
    }
}

/// Ruby's TarReader parses sizes as strict octal: up to 64 GiB ours must be
/// 12 octal digits, which it reads (base-256 would make it raise).
#[test]
fn ruby_tar_reader_reads_sizes_beyond_8_gib() {
    if !crate::archive::testutil::have_ruby("ruby_tar_reader_reads_sizes_beyond_8_gib") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let size = (8u64 << 30) + 1;
    let path = sparse_archive(dir.path(), size);
    let script = r#"require "rubygems/package"
File.open(ARGV[0], "rb") { |io| Gem::Package::TarReader.new(io).each { |e| puts e.header.size } }"#;
    let out = run_text("ruby", &[&"-e", &script, &path_arg(&path)]);
    assert_eq!(out.trim(), size.to_string());
}

/// Shows which system calls move a stream into the archive. Run by hand:
/// `strace -f -e trace=splice,copy_file_range,sendfile,write -o /tmp/t
/// target/debug/deps/osctl_core-* zero_copy_probe --ignored --nocapture`.
#[test]
#[ignore]
fn zero_copy_probe() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    std::fs::write(&source, sample_data(32 << 20, 1)).unwrap();
    let mut w = ArchiveWriter::new(File::create(dir.path().join("a.tar")).unwrap()).unwrap();
    w.stream_entry("rootfs/base.dat", |sink| {
        let mut child = crate::cmd::Cmd::new("cat")
            .arg(&source)
            .spawn_reader()
            .unwrap();
        sink.with_file(|file| {
            child
                .copy_to_file(file)
                .map_err(|e| Error::io("cat failed", e))
        })
    })
    .unwrap();
    println!("{:?}", w.checksums());
    let archive = w.finish().unwrap();
    drop(archive);
    let mut reader = ArchiveReader::new(File::open(dir.path().join("a.tar")).unwrap());
    let mut entry = reader.next_entry().unwrap().unwrap();
    let mut dd = crate::cmd::Cmd::new("dd")
        .args(["of=/dev/null", "status=none"])
        .spawn_writer()
        .unwrap();
    entry.copy_to(dd.stdin()).unwrap();
    println!("{:?}", entry.digest());
    dd.finish().unwrap();
}

/// What the original importer does with our archive: Ruby's TarReader finds
/// every entry, and Zlib::GzipReader (first gzip member only) gets the whole
/// stream back.
#[test]
fn ruby_tar_reader_and_gzip_reader_read_our_archive() {
    if !crate::archive::testutil::have_ruby("ruby_tar_reader_and_gzip_reader_read_our_archive") {
        return;
    }
    const SCRIPT: &str = r##"
require 'rubygems/package'
require 'zlib'
require 'digest'
File.open(ARGV[0], 'rb') do |io|
  Gem::Package::TarReader.new(io).each do |e|
    kind = e.directory? ? 'dir' : 'file'
    line = "#{e.full_name} #{kind} #{e.header.mode.to_s(8)} #{e.header.size}"
    if e.full_name.end_with?('.gz')
      gz = Zlib::GzipReader.new(e)
      d = Digest::SHA256.new
      while (chunk = gz.read(1 << 20)); d.update(chunk); end
      line += " #{d.hexdigest}"
    elsif e.file?
      line += " #{Digest::SHA256.hexdigest(e.read || '')}"
    end
    puts line
  end
end
"##;
    let built = build_original_order();
    let out = run_text("ruby", &[&"-e", &SCRIPT, &path_arg(&built.path)]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 9, "{out}");
    assert!(lines[1].starts_with("config/ dir 755 0"), "{out}");
    assert_eq!(
        lines[6],
        format!(
            "rootfs/base.dat.gz file 644 {} {}",
            built.digests[4].size,
            sha(&built.base)
        )
    );
    for (name, size, sha256) in sha256_of_entries(&built.path)
        .into_iter()
        .filter(|(name, ..)| !name.ends_with(".gz"))
    {
        let expected = format!("{name} file 644 {size} {sha256}");
        assert!(
            lines.contains(&expected.as_str()),
            "{expected} not in {out}"
        );
    }
}
