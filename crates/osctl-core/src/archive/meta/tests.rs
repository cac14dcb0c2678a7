use super::*;
use crate::ErrorKind;

fn sample() -> Metadata {
    Metadata {
        archive_type: ArchiveType::Full,
        format: ArchiveFormat::Zfs,
        user: Some("1000".into()),
        group: Some("/default".into()),
        container: None,
        datasets: vec!["var".into(), "var/log".into()],
        exported_at: 1_700_000_000,
        checksums: None,
        part_size: None,
    }
}

#[test]
fn metadata_round_trips_in_the_original_key_order() {
    let text = sample().to_yaml().unwrap();
    assert!(text.starts_with("---\n"), "{text}");
    let keys: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with([' ', '-']) && l.contains(':'))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "type",
            "format",
            "user",
            "group",
            "container",
            "datasets",
            "exported_at"
        ]
    );
    assert_eq!(Metadata::parse(text.as_bytes()).unwrap(), sample());
    let empty = Metadata {
        datasets: vec![],
        ..sample()
    };
    let text = empty.to_yaml().unwrap();
    assert!(text.contains("\ndatasets: []\n"), "{text}");
    assert!(text.contains("\ncontainer: null\n"), "{text}");
}

#[test]
fn metadata_as_ruby_writes_it() {
    // Ruby 3.1's YAML.dump of the original's hash, verbatim: numeric-looking
    // names quoted, nil as an empty value.
    let text = "---\ntype: full\nformat: zfs\nuser: '1000'\ngroup: \"/default\"\ncontainer:\ndatasets: []\nexported_at: 1700000000\n";
    let meta = Metadata::parse(text.as_bytes()).unwrap();
    assert_eq!(meta.user.as_deref(), Some("1000"));
    assert_eq!(meta.group.as_deref(), Some("/default"));
    assert_eq!(meta.container, None);
    assert!(meta.datasets.is_empty());
    assert_eq!(meta.exported_at, 1_700_000_000);
    let with_datasets = "---\ntype: full\nformat: zfs\nuser: u\ngroup: g\ncontainer: myct\ndatasets:\n- var\n- var/log\nexported_at: 1\n";
    let meta = Metadata::parse(with_datasets.as_bytes()).unwrap();
    assert_eq!(meta.datasets, ["var", "var/log"]);
    assert_eq!(meta.container.as_deref(), Some("myct"));
}

#[test]
fn old_metadata_without_format_or_datasets_is_zfs() {
    let text = "---\ntype: full\nuser: u\ngroup: \ncontainer: 101\nexported_at: 1\n";
    let meta = Metadata::parse(text.as_bytes()).unwrap();
    assert_eq!(meta.format, ArchiveFormat::Zfs);
    assert!(meta.datasets.is_empty());
    assert_eq!(meta.group, None);
    assert_eq!(
        meta.container.as_deref(),
        Some("101"),
        "numbers are names too"
    );
    let meta = Metadata::parse(b"type: skel\ndatasets: ~\n").unwrap();
    assert_eq!(meta.archive_type, ArchiveType::Skel);
    assert!(meta.datasets.is_empty());
}

#[test]
fn bad_metadata_is_an_archive_error() {
    for (text, needle) in [
        ("type: full\nformat: ext4\n", "unknown format 'ext4'"),
        ("type: half\n", "invalid YAML"),
        ("format: zfs\n", "invalid YAML"),
        ("type: full\ndatasets: ['../etc']\n", "dataset '../etc'"),
        ("type: full\ndatasets: ['a b']\n", "dataset 'a b'"),
        ("type: full\ndatasets: [a, a]\n", "listed twice"),
        ("type: full\nformat: tar\ndatasets: [a]\n", "subdatasets"),
        (
            "type: full\nformat: tar-layers\ndatasets: [a]\n",
            "subdatasets",
        ),
        ("type: full\nuser: ''\n", "user"),
        ("[1, 2]\n", "invalid YAML"),
    ] {
        let err = Metadata::parse(text.as_bytes()).unwrap_err();
        assert!(err.kind() == ErrorKind::Archive, "{text}: {err:?}");
        assert!(err.to_string().contains(needle), "{text}: {err}");
    }
}

#[test]
fn snapshots_round_trip_and_are_checked() {
    let names = vec![
        "osctl-incr-1700000001".to_string(),
        "osctl-base-1700000000".to_string(),
    ];
    let text = snapshots_to_yaml(&names).unwrap();
    assert_eq!(
        text,
        "---\n- osctl-incr-1700000001\n- osctl-base-1700000000\n"
    );
    assert_eq!(parse_snapshots(text.as_bytes()).unwrap(), names);
    assert!(parse_snapshots(b"- 'a@b'\n").is_err());
    assert!(parse_snapshots(b"- ''\n").is_err());
    assert!(parse_snapshots(b"a: b\n").is_err());
    assert!(parse_snapshots(format!("- {}\n", "x".repeat(201)).as_bytes()).is_err());
}

#[test]
fn checksums_round_trip_and_are_checked() {
    let digests = vec![
        EntryDigest {
            name: "metadata.yml".into(),
            size: 12,
            algorithm: DigestAlgorithm::Blake3,
            hex: "ab".repeat(32),
        },
        EntryDigest {
            name: "rootfs/var/base.dat.gz".into(),
            size: 1 << 40,
            algorithm: DigestAlgorithm::Blake3,
            hex: "0f".repeat(32),
        },
    ];
    let text = checksums_to_yaml(&digests).unwrap();
    assert!(text.contains("blake3: "), "{text}");
    let blake3 = DigestAlgorithm::Blake3;
    assert_eq!(parse_checksums(text.as_bytes(), blake3).unwrap(), digests);
    // The algorithm is metadata.yml's.
    let err = parse_checksums(text.as_bytes(), DigestAlgorithm::Sha256).unwrap_err();
    assert!(err.to_string().contains("metadata.yml says"), "{err}");
    // Archives from before BLAKE3.
    let bad = |name: &str, sha: &str| format!("- name: {name}\n  size: 1\n  sha256: '{sha}'\n");
    let sha256 = DigestAlgorithm::Sha256;
    let old = bad("metadata.yml", &"a".repeat(64));
    assert_eq!(
        parse_checksums(old.as_bytes(), sha256).unwrap()[0].hex,
        "a".repeat(64)
    );
    assert!(parse_checksums(bad("etc/passwd", &"a".repeat(64)).as_bytes(), sha256).is_err());
    assert!(parse_checksums(bad("metadata.yml", &"A".repeat(64)).as_bytes(), sha256).is_err());
    assert!(parse_checksums(bad("metadata.yml", "abc").as_bytes(), sha256).is_err());
    let twice = bad("metadata.yml", &"a".repeat(64)).repeat(2);
    assert!(parse_checksums(twice.as_bytes(), sha256).is_err());
    let both = "- name: metadata.yml\n  size: 1\n  sha256: aa\n  blake3: bb\n";
    assert!(parse_checksums(both.as_bytes(), sha256).is_err());
    let neither = "- name: metadata.yml\n  size: 1\n";
    assert!(parse_checksums(neither.as_bytes(), sha256).is_err());
}

fn stream(
    rel: &str,
    kind: StreamKind,
    encoding: StreamEncoding,
    compression: Compression,
) -> EntryName {
    EntryName::Stream(StreamName {
        dataset_rel: rel.into(),
        kind,
        encoding,
        compression,
    })
}

#[test]
fn classify_known_entries() {
    use EntryKind::{Dir, File};
    use StreamEncoding::{Dat, Tar};
    use StreamKind::{Base, Incremental};
    let cases = [
        ("metadata.yml", File, EntryName::Metadata),
        ("config", Dir, EntryName::Dir(DirName::Config)),
        ("config/user.yml", File, EntryName::UserConfig),
        ("config/group.yml", File, EntryName::GroupConfig),
        ("config/container.yml", File, EntryName::ContainerConfig),
        ("hooks", Dir, EntryName::Dir(DirName::Hooks)),
        ("hooks/pre-start", File, EntryName::Hook("pre-start".into())),
        (
            "hooks/veth-up.d",
            Dir,
            EntryName::Dir(DirName::HookSubdir("veth-up.d".into())),
        ),
        (
            "hooks/veth-up.d/01-x",
            File,
            EntryName::Hook("veth-up.d/01-x".into()),
        ),
        ("rootfs", Dir, EntryName::Dir(DirName::Rootfs)),
        (
            "rootfs/var/log",
            Dir,
            EntryName::Dir(DirName::Dataset("var/log".into())),
        ),
        (
            "rootfs/base.dat.gz",
            File,
            stream("", Base, Dat, Compression::Gzip),
        ),
        (
            "rootfs/incremental.dat",
            File,
            stream("", Incremental, Dat, Compression::Off),
        ),
        (
            "rootfs/base.tar.gz",
            File,
            stream("", Base, Tar, Compression::Gzip),
        ),
        (
            "rootfs/var/log/base.dat.zst",
            File,
            stream("var/log", Base, Dat, Compression::Zstd),
        ),
        (
            "rootfs/var/incremental.tar",
            File,
            stream("var", Incremental, Tar, Compression::Off),
        ),
        ("snapshots.yml", File, EntryName::Snapshots),
        ("checksums.yml", File, EntryName::Checksums),
    ];
    for (name, kind, expected) in cases {
        let got = classify(name, kind).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, expected, "{name}");
        assert_eq!(got.entry_name(), name);
        assert_eq!(got.kind(), kind);
    }
}

#[test]
fn classify_refuses_everything_else() {
    use EntryKind::{Dir, File};
    for (name, kind) in [
        ("metadata.yml", Dir),
        ("config", File),
        ("config/other.yml", File),
        ("etc/passwd", File),
        ("rootfs/base.dat.bz2", File),
        ("rootfs/base.img", File),
        ("rootfs/a//base.dat", File),
        ("rootfs/./base.dat", File),
        ("rootfs/a b/base.dat", File),
        ("rootfs/..", Dir),
        ("rootfs/", Dir),
        ("hooks/a/b/c", File),
        ("hooks/a/b", Dir),
        ("hooks/..", Dir),
        ("hooks/x y", File),
        ("snapshots.yml.gz", File),
        ("", File),
    ] {
        let err = classify(name, kind).unwrap_err();
        assert!(err.kind() == ErrorKind::Archive);
        assert!(err.to_string().contains(&format!("'{name}'")), "{err}");
    }
}

#[test]
fn expected_entries_and_completeness() {
    use StreamEncoding::Dat;
    use StreamKind::Base;
    let meta = sample();
    let described: Vec<String> = expected_entries(&meta)
        .iter()
        .map(Expected::describe)
        .collect();
    assert_eq!(
        described,
        [
            "metadata.yml",
            "config/user.yml",
            "config/group.yml",
            "config/container.yml",
            "rootfs/base.dat[.gz|.zst]",
            "rootfs/var/base.dat[.gz|.zst]",
            "rootfs/var/log/base.dat[.gz|.zst]",
            "snapshots.yml"
        ]
    );
    let mut seen = vec![
        EntryName::Metadata,
        EntryName::UserConfig,
        EntryName::GroupConfig,
        EntryName::ContainerConfig,
        stream("", Base, Dat, Compression::Gzip),
        stream("var", Base, Dat, Compression::Off),
        EntryName::Snapshots,
    ];
    let err = check_complete(&meta, &seen).unwrap_err().to_string();
    assert!(err.contains("rootfs/var/log/base.dat"), "{err}");
    seen.push(stream("var/log", Base, Dat, Compression::Zstd));
    check_complete(&meta, &seen).unwrap();

    let skel = Metadata {
        archive_type: ArchiveType::Skel,
        user: None,
        group: None,
        ..sample()
    };
    assert_eq!(expected_entries(&skel).len(), 2);
    let tar = Metadata {
        format: ArchiveFormat::Tar,
        datasets: vec![],
        ..sample()
    };
    assert!(expected_entries(&tar)
        .iter()
        .any(|e| e.describe() == "rootfs/base.tar[.gz|.zst]"));
    // Layered tar archives hold the same streams under a format of their own.
    let layers = Metadata::parse(b"type: full\nformat: tar-layers\n").unwrap();
    assert_eq!(layers.stream_encoding(), StreamEncoding::Tar);
    assert_eq!(
        expected_entries(&layers),
        expected_entries(&Metadata {
            format: ArchiveFormat::Tar,
            ..layers.clone()
        })
    );
}

#[test]
fn check_entry_against_metadata() {
    use StreamEncoding::{Dat, Tar};
    use StreamKind::Base;
    let meta = sample();
    meta.check_entry(&stream("var", Base, Dat, Compression::Gzip))
        .unwrap();
    meta.check_entry(&EntryName::Dir(DirName::Dataset("var/log".into())))
        .unwrap();
    let err = meta
        .check_entry(&stream("opt", Base, Dat, Compression::Off))
        .unwrap_err();
    assert!(err.to_string().contains("does not list"), "{err}");
    let err = meta
        .check_entry(&stream("", Base, Tar, Compression::Gzip))
        .unwrap_err();
    assert!(err.to_string().contains("format"), "{err}");
    let skel = Metadata {
        archive_type: ArchiveType::Skel,
        ..sample()
    };
    assert!(skel.check_entry(&EntryName::Dir(DirName::Rootfs)).is_err());
    skel.check_entry(&EntryName::ContainerConfig).unwrap();
}

#[test]
fn the_list_of_subdatasets_is_bounded() {
    // Found while fuzzing: each entry is checked against the list, so a list
    // of ~100,000 subdatasets (what the YAML budget allows) and as many
    // entries kept a reader busy for minutes.
    let many = |n: usize| Metadata {
        datasets: (0..n).map(|i| format!("d{i}")).collect(),
        ..sample()
    };
    assert!(many(MAX_DATASETS).validate().is_ok());
    let text = many(MAX_DATASETS + 1).to_yaml().unwrap();
    let err = Metadata::parse(text.as_bytes()).unwrap_err().to_string();
    assert!(
        err.contains("lists 1001 subdatasets, more than 1000"),
        "{err}"
    );
}

#[test]
fn formats_are_written_and_read_by_their_names() {
    for format in ArchiveFormat::ALL {
        let meta = Metadata {
            format,
            ..Metadata::parse(b"type: skel\n").unwrap()
        };
        let text = meta.to_yaml().unwrap();
        assert!(text.contains(&format!("format: {format}\n")), "{text}");
        assert_eq!(Metadata::parse(text.as_bytes()).unwrap().format, format);
    }
    assert_eq!(ArchiveFormat::TarLayers.to_string(), "tar-layers");
    let err = Metadata::parse(b"type: full\nformat: ext4\n").unwrap_err();
    assert!(
        err.to_string()
            .contains("known: zfs, tar, btrfs, tar-layers"),
        "{err}"
    );
}
