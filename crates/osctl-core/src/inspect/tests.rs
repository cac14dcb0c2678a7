//! `show` and `verify` on archives built by the library's writers, spoiled
//! in the ways that matter; the fuzz harness driven by proptest.

use crate::ErrorKind;
use std::path::Path;

use proptest::prelude::*;

use super::fuzz::{self, seeds};
use super::*;
use crate::archive::grammar::MAX_ENTRIES;

/// Seeds by name, built once per test.
fn seed(list: &[seeds::Seed], name: &str) -> Vec<u8> {
    list.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no seed {name}"))
        .1
        .clone()
}

fn archives() -> Vec<seeds::Seed> {
    let t = tempfile::tempdir().unwrap();
    seeds::archives(t.path()).unwrap()
}

/// Offset of the data of entry `name` in an outer archive, and its size.
fn entry_span(archive: &[u8], name: &str) -> (usize, usize) {
    let mut at = 0;
    while at + 512 <= archive.len() {
        let header = &archive[at..at + 512];
        let end = header.iter().position(|&b| b == 0).unwrap_or(100).min(100);
        let size_text = std::str::from_utf8(&header[124..135]).unwrap();
        let size = usize::from_str_radix(size_text.trim_matches(['\0', ' ']), 8).unwrap_or(0);
        if &header[..end] == name.as_bytes() {
            return (at + 512, size);
        }
        at += 512 + size.div_ceil(512) * 512;
    }
    panic!("entry {name} not found");
}

fn error_of(result: Result<VerifyReport>) -> String {
    match result {
        Ok(_) => panic!("verify accepted a broken archive"),
        Err(e) => {
            assert!(e.kind() == ErrorKind::Archive, "archive error: {e}");
            e.to_string()
        }
    }
}

#[test]
fn every_seed_archive_verifies_and_shows() {
    for (name, bytes) in archives() {
        let report = verify_from(&bytes[..]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let summary = show_from(&bytes[..]).unwrap();
        assert_eq!(summary.entries, report.summary.entries, "{name}");
        assert_eq!(report.summary.archive_bytes, bytes.len() as u64);
        let original = name.contains("original");
        assert_eq!(report.checksums_verified.is_none(), original, "{name}");
        let lines = report.lines();
        assert!(
            lines.iter().any(|l| l.starts_with("structure: ")),
            "{lines:?}"
        );
        let verdict = report.verdict(&name);
        assert!(verdict.contains(": OK ("), "{verdict}");
        if original {
            assert!(verdict.ends_with("no checksums.yml)"), "{verdict}");
        } else {
            assert!(verdict.ends_with("checksums verified)"), "{verdict}");
        }
    }
}

#[test]
fn show_has_metadata_configs_and_entries() {
    let list = archives();
    let summary = show_from(&seed(&list, "tar-incremental.tar")[..]).unwrap();
    assert_eq!(summary.metadata.container.as_deref(), Some("seed"));
    assert_eq!(summary.metadata.format, meta::ArchiveFormat::Tar);
    assert_eq!(
        summary.user.as_ref().unwrap()["uid_map"][0],
        "0:3900000000:65536"
    );
    assert_eq!(summary.container.as_ref().unwrap()["hostname"], "seed");
    assert!(summary.checksums);
    assert_eq!(
        summary.snapshots.as_deref(),
        Some(
            &[
                "osctl-incr-1700000100".to_string(),
                "osctl-base-1700000000".to_string()
            ][..]
        )
    );
    let names: Vec<&str> = summary.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "metadata.yml",
            "config",
            "config/user.yml",
            "config/group.yml",
            "config/container.yml",
            "rootfs",
            "rootfs/base.tar",
            "rootfs/incremental.tar",
            "checksums.yml",
            "snapshots.yml"
        ]
    );
    assert_eq!(summary.entries[6].compression, Some("off"));
    let hooks = show_from(&seed(&list, "tar-original-hooks.tar")[..]).unwrap();
    assert_eq!(hooks.hooks, ["pre-start"]);
    assert!(!hooks.checksums);
}

#[test]
fn verify_reports_streams() {
    let list = archives();
    let report = verify_from(&seed(&list, "tar-gzip.tar")[..]).unwrap();
    let stream = &report.streams[0];
    assert_eq!(stream.name, "rootfs/base.tar.gz");
    let tar = stream.tar.as_ref().unwrap();
    assert!(
        tar.counts.files >= 4
            && tar.counts.symlinks == 1
            && tar.counts.hardlinks == 1
            && tar.counts.fifos == 1
    );
    assert!(stream.data_bytes > stream.stored_bytes);
    let zfs = verify_from(&seed(&list, "zfs.tar")[..]).unwrap();
    assert_eq!(zfs.streams.len(), 2);
    assert_eq!(zfs.streams[1].name, "rootfs/data/base.dat");
    assert_eq!(
        zfs.streams[0].send_stream.as_deref(),
        Some("zfs send stream")
    );
    let btrfs = verify_from(&seed(&list, "btrfs.tar")[..]).unwrap();
    assert_eq!(
        btrfs.streams[0].send_stream.as_deref(),
        Some("btrfs send stream v1")
    );
}

#[test]
fn a_flipped_byte_in_a_stream_is_a_checksum_mismatch_naming_it() {
    let mut bytes = seed(&archives(), "tar-off.tar");
    let (at, size) = entry_span(&bytes, "rootfs/base.tar");
    // Inside a file's content: the tar stays valid, only the digest differs.
    let data = at
        + bytes[at..at + size]
            .windows(5)
            .position(|w| w == b"seed\n")
            .unwrap();
    bytes[data] = b'S';
    let err = error_of(verify_from(&bytes[..]));
    assert!(err.contains("'rootfs/base.tar' is damaged"), "{err}");
    assert!(err.contains("with blake3"), "{err}");
}

#[test]
fn corrupt_compressed_streams_are_named() {
    let list = archives();
    for (name, entry, word) in [
        ("tar-gzip.tar", "rootfs/base.tar.gz", "gzip"),
        ("tar-zstd.tar", "rootfs/base.tar.zst", "zstd"),
    ] {
        let mut bytes = seed(&list, name);
        let (at, size) = entry_span(&bytes, entry);
        // The trailer (gzip CRC, zstd checksum) or the data before it.
        bytes[at + size - 6] ^= 0x55;
        let err = error_of(verify_from(&bytes[..]));
        assert!(err.contains(entry), "{name}: {err}");
        assert!(
            err.contains(word) || err.contains("damaged"),
            "{name}: {err}"
        );
    }
}

#[test]
fn truncation_anywhere_is_an_error() {
    let bytes = seed(&archives(), "tar-gzip.tar");
    for cut in (0..bytes.len() - 1024).step_by(97) {
        let err = verify_from(&bytes[..cut]).expect_err("a truncated archive verified");
        assert!(err.kind() == ErrorKind::Archive, "cut at {cut}: {err}");
    }
}

#[test]
fn unsafe_names_in_a_tar_stream_are_refused_as_the_extractor_does() {
    let list = archives();
    let bytes = seed(&list, "tar-off.tar");
    let (at, _) = entry_span(&bytes, "rootfs/base.tar");
    let stream_start = at;
    // Rename "./etc/" to "../tc/" and reseal its header.
    let mut spoiled = bytes.clone();
    let header = (stream_start..bytes.len())
        .step_by(512)
        .find(|&h| bytes[h..h + 6] == *b"./etc/")
        .unwrap();
    spoiled[header..header + 6].copy_from_slice(b"../tc/");
    reseal(&mut spoiled[header..header + 512]);
    // The walk refuses it before the checksums are compared (at the end).
    let err = error_of(verify_from(&spoiled[..]));
    assert!(err.contains("archive entry 'rootfs/base.tar'"), "{err}");
    assert!(err.contains("'..'"), "{err}");
}

#[test]
fn verify_checks_the_values_that_reach_lxc() {
    let list = archives();
    let mut bytes = seed(&list, "tar-off.tar");
    let (at, size) = entry_span(&bytes, "config/container.yml");
    let text = std::str::from_utf8(&bytes[at..at + size]).unwrap();
    // Same length, so the tar stays whole; a newline would start an LXC line.
    let spoiled = text.replace("hostname: seed", "hostname: \"\\n\"");
    assert_eq!(spoiled.len(), size);
    bytes[at..at + size].copy_from_slice(spoiled.as_bytes());
    let err = error_of(verify_from(&bytes[..]));
    assert!(
        err.contains(r#"config/container.yml: hostname "\n" is not a valid host name"#),
        "{err}"
    );
}

fn reseal(header: &mut [u8]) {
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
}

#[test]
fn order_and_completeness_are_checked() {
    let list = archives();
    let bytes = seed(&list, "tar-off.tar");
    // Cut just before checksums.yml and end the archive there: the base
    // stream is present, but metadata.yml announced checksums: cut short.
    let (at, _) = entry_span(&bytes, "checksums.yml");
    let mut cut = bytes[..at - 512].to_vec();
    cut.extend_from_slice(&[0; 1024]);
    let err = error_of(verify_from(&cut[..]));
    assert!(err.contains("checksums.yml is missing"), "{err}");
    // Without the rootfs stream it is incomplete.
    let (stream_at, _) = entry_span(&bytes, "rootfs/base.tar");
    let mut head = bytes[..stream_at - 512].to_vec();
    head.extend_from_slice(&[0; 1024]);
    let err = error_of(verify_from(&head[..]));
    assert!(
        err.contains("incomplete") && err.contains("rootfs/base.tar"),
        "{err}"
    );
    // Not starting with metadata.yml.
    let (config_at, _) = entry_span(&bytes, "config/user.yml");
    let err = error_of(verify_from(&bytes[config_at - 512..]));
    assert!(err.contains("does not start with metadata.yml"), "{err}");
}

#[test]
fn send_stream_magic_is_checked() {
    let check = |bytes: &[u8], format| check_send_magic(&mut &bytes[..], format);
    let mut zfs = vec![0u8; 312];
    zfs[8..16].copy_from_slice(&ZFS_MAGIC.to_le_bytes());
    assert!(check(&zfs, meta::ArchiveFormat::Zfs).is_ok());
    let mut swapped = vec![0u8; 312];
    swapped[8..16].copy_from_slice(&ZFS_MAGIC.to_be_bytes());
    assert!(check(&swapped, meta::ArchiveFormat::Zfs).is_ok());
    assert!(check(&zfs[..10], meta::ArchiveFormat::Zfs).is_err());
    assert!(check(b"btrfs-stream\0\x01\0\0\0", meta::ArchiveFormat::Zfs).is_err());
    assert!(check(b"btrfs-stream\0\x01\0\0\0", meta::ArchiveFormat::Btrfs).is_ok());
    assert!(check(&zfs, meta::ArchiveFormat::Btrfs).is_err());
    assert!(check(&zfs, meta::ArchiveFormat::Tar).is_err());
}

// ---------------------------------------------------------------- fuzzing

/// The committed seed corpus of a fuzz target (see `fuzz/`), or the seeds
/// built here when the tree has no corpus.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    let mut out: Vec<Vec<u8>> = files.iter().filter_map(|f| std::fs::read(f).ok()).collect();
    if out.is_empty() {
        let t = tempfile::tempdir().unwrap();
        let built = match target {
            "archive" => seeds::archives(t.path()).unwrap(),
            "documents" => seeds::documents().unwrap(),
            _ => seeds::streams(t.path()).unwrap(),
        };
        out = built.into_iter().map(|(_, b)| b).collect();
    }
    out
}

/// Headers of a tar (outer or inner) found by walking sizes from the start.
fn header_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= bytes.len() && bytes[at..at + 512].iter().any(|&b| b != 0) {
        out.push(at);
        let size_text = String::from_utf8_lossy(&bytes[at + 124..at + 135]).into_owned();
        let size = usize::from_str_radix(size_text.trim_matches(['\0', ' ']), 8).unwrap_or(0);
        at += 512 + size.div_ceil(512) * 512;
    }
    out
}

/// The damage the fuzzers' mutators do, in a form proptest shrinks.
#[derive(Debug, Clone)]
enum Edit {
    /// Sets a byte anywhere.
    Byte(usize, u8),
    /// Sets a byte in a tar header (outer or nested) and reseals it.
    Header(usize, usize, u8),
    /// Writes a hostile fragment over a name, number or YAML text.
    Fragment(usize, usize),
    /// Cuts the input.
    Truncate(usize),
}

const FRAGMENTS: [&[u8]; 10] = [
    b"../",
    b"/",
    b"\0",
    b".wh.",
    b"77777777777",
    b"\n- ",
    b": &a [*a]",
    b"{{{{",
    b"\xff\xfe",
    b"rootfs/x/base.tar",
];

fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Edit::Byte(a, b)),
        (any::<usize>(), 0usize..512, any::<u8>()).prop_map(|(h, o, b)| Edit::Header(h, o, b)),
        (any::<usize>(), 0..FRAGMENTS.len()).prop_map(|(a, f)| Edit::Fragment(a, f)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(mut input: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        if input.is_empty() {
            break;
        }
        let len = input.len();
        match *edit {
            Edit::Byte(at, b) => input[at % len] = b,
            Edit::Header(which, offset, b) => {
                // Headers of the outer tar, and of the uncompressed tar
                // streams inside it.
                let outer = header_offsets(&input);
                let mut headers = outer.clone();
                for data in outer.iter().map(|h| h + 512) {
                    if input.get(data + 257..data + 262) == Some(b"ustar") {
                        let inner = header_offsets(&input[data..]);
                        headers.extend(inner.iter().map(|h| h + data));
                    }
                }
                if let Some(&h) = headers.get(which % headers.len().max(1)) {
                    if h + 512 <= len {
                        input[h + offset] = b;
                        reseal(&mut input[h..h + 512]);
                    }
                }
            }
            Edit::Fragment(at, which) => {
                let f = FRAGMENTS[which];
                let at = at % len;
                let end = (at + f.len()).min(len);
                input[at..end].copy_from_slice(&f[..end - at]);
            }
            Edit::Truncate(at) => input.truncate(at % (len + 1)),
        }
    }
    input
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// The archive target on mutated seed archives.
    #[test]
    fn fuzz_archive(which in any::<usize>(), edits in prop::collection::vec(edit_strategy(), 1..6)) {
        static CORPUS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
        let corpus = CORPUS.get_or_init(|| corpus("archive"));
        fuzz::archive(&apply(corpus[which % corpus.len()].clone(), &edits));
    }

    /// The documents target on mutated YAML.
    #[test]
    fn fuzz_documents(which in any::<usize>(), edits in prop::collection::vec(edit_strategy(), 1..6)) {
        static CORPUS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
        let corpus = CORPUS.get_or_init(|| corpus("documents"));
        fuzz::documents(&apply(corpus[which % corpus.len()].clone(), &edits));
    }

    /// The extraction target on mutated tar streams, into a fresh scratch
    /// directory: never a write outside it.
    #[test]
    fn fuzz_extract(which in any::<usize>(), edits in prop::collection::vec(edit_strategy(), 1..6)) {
        static CORPUS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
        let corpus = CORPUS.get_or_init(|| corpus("extract"));
        let scratch = tempfile::tempdir().unwrap();
        fuzz::extract(&apply(corpus[which % corpus.len()].clone(), &edits), scratch.path());
    }
}

#[test]
fn entries_are_bounded() {
    // Hook directories cost the importer nothing, so it takes any number;
    // the listing here is bounded instead.
    let file = tempfile::tempfile().unwrap();
    let mut w = crate::archive::ArchiveWriter::new(file).unwrap();
    let metadata = b"---\ntype: skel\nformat: tar\ncontainer: c\n";
    w.add_file(meta::METADATA, metadata).unwrap();
    w.add_dir(meta::HOOKS_DIR).unwrap();
    for i in 0..MAX_ENTRIES {
        w.add_dir(&format!("hooks/d{i}")).unwrap();
    }
    let mut file = w.finish().unwrap();
    let mut bytes = Vec::new();
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(0)).unwrap();
    file.read_to_end(&mut bytes).unwrap();
    let err = show_from(&bytes[..]).unwrap_err().to_string();
    assert!(err.contains("more than 10000 entries"), "{err}");
}

#[test]
fn archives_with_sha256_checksums_still_verify() {
    let list = archives();
    let bytes = seed(&list, "tar-sha256.tar");
    let (at, size) = entry_span(&bytes, "checksums.yml");
    let text = std::str::from_utf8(&bytes[at..at + size]).unwrap();
    assert!(
        text.contains("sha256: ") && !text.contains("blake3"),
        "{text}"
    );
    let report = verify_from(&bytes[..]).unwrap();
    assert_eq!(report.summary.metadata.checksums, None);
    assert!(report.checksums_verified.unwrap() >= 5);
    // And a damaged entry is named, by SHA-256.
    let mut spoiled = bytes.clone();
    let (data, size) = entry_span(&bytes, "config/user.yml");
    // "standalone: true" -> "standalone: tru" + 'd': still YAML, still a user.
    let at = data + size - "e\nattrs: {}\n".len();
    assert_eq!(spoiled[at], b'e');
    spoiled[at] = b'E';
    let err = error_of(verify_from(&spoiled[..]));
    assert!(
        err.contains("'config/user.yml' is damaged") && err.contains("sha256"),
        "{err}"
    );
}
