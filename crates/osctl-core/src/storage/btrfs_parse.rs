//! Pure parsers of what `btrfs` (btrfs-progs) and the kernel print, kept apart
//! from the code that runs the commands so that they can be tested on canned
//! output.

use std::path::Path;

/// Output that does not look like what we asked `btrfs` (or the kernel) for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected output of {source_name}: {reason}")]
pub struct ParseError {
    /// The command or file that printed it, e.g. "`btrfs subvolume list`".
    pub source_name: &'static str,
    pub reason: String,
}

type Result<T> = std::result::Result<T, ParseError>;

/// One line of `btrfs subvolume list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedSubvolume {
    pub id: u64,
    /// The id of the subvolume that contains it.
    pub top_level: u64,
    /// Its path relative to the file system's top-level subvolume.
    pub path: String,
}

/// Parses `btrfs subvolume list [-o] PATH`: lines of the form
/// `ID 257 gen 7 top level 256 path ct/c1/private/var`. The path is the rest of
/// the line, spaces included. Any other line is an error: a name with a line
/// break in it must not turn into a second entry unnoticed.
pub fn parse_subvolume_list(out: &str) -> Result<Vec<ListedSubvolume>> {
    out.lines()
        .filter(|line| !line.trim().is_empty())
        .map(parse_subvolume_line)
        .collect()
}

fn parse_subvolume_line(line: &str) -> Result<ListedSubvolume> {
    let bad = || ParseError {
        source_name: "`btrfs subvolume list`",
        reason: format!("the line '{}'", line.escape_debug()),
    };
    let fields: Vec<&str> = line.splitn(9, ' ').collect();
    let [id_key, id, gen_key, generation, top_key, level_key, top, path_key, path] =
        fields.as_slice()
    else {
        return Err(bad());
    };
    let keys_ok = (*id_key, *gen_key, *top_key, *level_key, *path_key)
        == ("ID", "gen", "top", "level", "path");
    if !keys_ok || path.is_empty() || generation.parse::<u64>().is_err() {
        return Err(bad());
    }
    Ok(ListedSubvolume {
        id: id.parse().map_err(|_| bad())?,
        top_level: top.parse().map_err(|_| bad())?,
        path: (*path).to_string(),
    })
}

/// What `btrfs subvolume show PATH` tells about a subvolume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubvolumeShow {
    /// Its path relative to the top-level subvolume; "" for the top level
    /// itself (printed as `/`).
    pub path: String,
    pub readonly: bool,
    /// Set by `btrfs receive` once a stream is received completely.
    pub received_uuid: Option<String>,
    /// The sent subvolume's ctransid, set with the received UUID (0 when
    /// nothing was received).
    pub send_transid: u64,
}

/// Parses `btrfs subvolume show PATH`: the path on the first line, then
/// `Key: value` lines (`Flags: readonly`, `Received UUID: -`).
pub fn parse_subvolume_show(out: &str) -> Result<SubvolumeShow> {
    let mut lines = out.lines();
    let path = match lines.next().map(str::trim).unwrap_or("") {
        "" => {
            return Err(ParseError {
                source_name: "`btrfs subvolume show`",
                reason: "nothing".into(),
            })
        }
        "/" => String::new(),
        path => path.to_string(),
    };
    let mut show = SubvolumeShow {
        path,
        readonly: false,
        received_uuid: None,
        send_transid: 0,
    };
    for (key, value) in lines.filter_map(|line| line.split_once(':')) {
        let value = value.trim();
        match key.trim() {
            "Flags" => show.readonly = value.split_whitespace().any(|f| f == "readonly"),
            "Received UUID" if value != "-" && !value.is_empty() => {
                show.received_uuid = Some(value.to_string())
            }
            "Send transid" => {
                show.send_transid = value.parse().map_err(|_| ParseError {
                    source_name: "`btrfs subvolume show`",
                    reason: format!("send transid '{}'", value.escape_debug()),
                })?
            }
            _ => {}
        }
    }
    Ok(show)
}

/// `child` relative to `parent`, both paths from the top-level subvolume
/// (`parent` "" being the top level itself); None when `child` is not below it.
pub fn path_below<'a>(parent: &str, child: &'a str) -> Option<&'a str> {
    let rest = if parent.is_empty() {
        child
    } else {
        child.strip_prefix(parent)?.strip_prefix('/')?
    };
    (!rest.is_empty()).then_some(rest)
}

/// Whether `btrfs send --help` offers `--compressed-data` (btrfs-progs 6.0 and
/// later, or 5.19 built with experimental features).
pub fn send_offers_compressed_data(help: &str) -> bool {
    help.split(|c: char| c.is_whitespace() || c == ',' || c == '|')
        .any(|word| word == "--compressed-data")
}

/// The highest send stream version the kernel writes, from
/// `/sys/fs/btrfs/features/send_stream_version`.
pub fn parse_send_stream_version(text: &str) -> Result<u32> {
    text.trim().parse().map_err(|_| ParseError {
        source_name: "send_stream_version",
        reason: format!("'{}'", text.trim().escape_debug()),
    })
}

/// The `compression` property of an inode, as `btrfs property get PATH compression` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompressionProperty {
    /// Not set: the mount option decides.
    Unset,
    /// Set to `no`/`none`: new data is not compressed whatever the mount says.
    Disabled,
    /// An algorithm (`zstd`, `lzo`, `zlib`, possibly with a level).
    Algorithm(String),
}

pub fn parse_compression_property(out: &str) -> CompressionProperty {
    let value = out
        .lines()
        .find_map(|line| line.trim().strip_prefix("compression="))
        .map(str::trim);
    match value {
        None | Some("") => CompressionProperty::Unset,
        Some("no" | "none") => CompressionProperty::Disabled,
        Some(alg) => CompressionProperty::Algorithm(alg.to_string()),
    }
}

/// The compression algorithm the btrfs mount holding `path` applies to new
/// data (`compress=` or `compress-force=` among its super options), from
/// `/proc/self/mountinfo`. `path` must be absolute and free of symlinks. The
/// mount with the longest mount point containing `path` holds it (the later one
/// among mounts stacked on the same point); None when that mount is not btrfs
/// or does not compress.
pub fn mount_compression(mountinfo: &str, path: &Path) -> Option<String> {
    let mut holder: Option<(usize, MountEntry)> = None;
    for entry in mountinfo.lines().filter_map(parse_mountinfo_line) {
        let depth = Path::new(&entry.mount_point).components().count();
        if path.starts_with(&entry.mount_point) && holder.as_ref().is_none_or(|(d, _)| depth >= *d)
        {
            holder = Some((depth, entry));
        }
    }
    let (_, entry) = holder?;
    if entry.fstype != "btrfs" {
        return None;
    }
    entry.super_options.split(',').find_map(|opt| {
        // A bare `compress` means zlib.
        let (key, value) = opt.split_once('=').unwrap_or((opt, "zlib"));
        match key {
            "compress" | "compress-force" => {
                // `zstd:3`: the level does not matter here.
                let alg = value.split(':').next().unwrap_or(value);
                (alg != "no" && alg != "none").then(|| alg.to_string())
            }
            _ => None,
        }
    })
}

struct MountEntry<'a> {
    mount_point: String,
    fstype: &'a str,
    super_options: &'a str,
}

/// `36 35 98:0 /root /mnt rw,noatime master:1 - btrfs /dev/sda rw,compress=zstd:3`:
/// the mount point is the 5th field; after the ` - ` separator come the type,
/// the source and the super options.
fn parse_mountinfo_line(line: &str) -> Option<MountEntry<'_>> {
    let (before, after) = line.split_once(" - ")?;
    let mount_point = unescape_mountinfo(before.split(' ').nth(4)?);
    let mut after = after.split(' ');
    let fstype = after.next()?;
    let _source = after.next()?;
    Some(MountEntry {
        mount_point,
        fstype,
        super_options: after.next().unwrap_or(""),
    })
}

/// Undoes the octal escapes mountinfo uses for blanks and backslashes (`\040`).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let s = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(s, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a relative path is made of plain names only (no `..`, `.`, root or
/// empty parts), so that joining it to a directory stays below that directory.
pub fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "\
ID 257 gen 12 top level 256 path pool/ct/c1/private/var
ID 259 gen 14 top level 256 path pool/ct/c1/private/home/a b
";

    #[test]
    fn subvolume_list() {
        let subs = parse_subvolume_list(LIST).unwrap();
        assert_eq!(
            subs,
            vec![
                ListedSubvolume {
                    id: 257,
                    top_level: 256,
                    path: "pool/ct/c1/private/var".into()
                },
                ListedSubvolume {
                    id: 259,
                    top_level: 256,
                    path: "pool/ct/c1/private/home/a b".into()
                },
            ]
        );
        assert_eq!(parse_subvolume_list("").unwrap(), vec![]);
    }

    #[test]
    fn subvolume_list_refuses_stray_lines() {
        for bad in [
            "ID 257 gen 12 top level 256 path pool/x\nrest of a name",
            "ID x gen 12 top level 256 path p",
            "ID 257 gen 12 top level 256 path ",
            "ID 257 gen 12 top level 256",
            "ID 257 gen 12 top level 256 name p",
        ] {
            assert!(parse_subvolume_list(bad).is_err(), "{bad:?}");
        }
    }

    const SHOW_RECEIVED: &str = "\
pool/snapshots/c2.importing/.recv/root/base
\tName: \t\t\tbase
\tUUID: \t\t\tb465758e-e749-a84e-b1be-7fc8659ff06c
\tParent UUID: \t\t-
\tReceived UUID: \t\t335980a6-70e3-a246-994a-7e07461f1865
\tCreation time: \t\t2026-11-26 20:50:13 +0000
\tSubvolume ID: \t\t262
\tFlags: \t\t\treadonly
\tSend transid: \t\t1207
\tSend time: \t\t2026-11-26 20:50:13 +0000
\tReceive transid: \t1211
\tSnapshot(s):
";

    const SHOW_PARTIAL: &str = "\
r/s1
\tName: \t\t\ts1
\tParent UUID: \t\t-
\tReceived UUID: \t\t-
\tCreation time: \t\t2026-11-26 20:57:09 +0000
\tFlags: \t\t\t-
\tSnapshot(s):
";

    #[test]
    fn subvolume_show() {
        let received = parse_subvolume_show(SHOW_RECEIVED).unwrap();
        assert_eq!(received.path, "pool/snapshots/c2.importing/.recv/root/base");
        assert!(received.readonly);
        assert_eq!(
            received.received_uuid.as_deref(),
            Some("335980a6-70e3-a246-994a-7e07461f1865")
        );
        assert_eq!(received.send_transid, 1207);
        let partial = parse_subvolume_show(SHOW_PARTIAL).unwrap();
        assert_eq!(partial.path, "r/s1");
        assert!(!partial.readonly);
        assert_eq!(partial.received_uuid, None);
        assert_eq!(partial.send_transid, 0);
        let top = parse_subvolume_show("/\n\tName: \t\t\t<FS_TREE>\n").unwrap();
        assert_eq!(top.path, "");
        assert!(parse_subvolume_show("").is_err());
    }

    #[test]
    fn paths_below() {
        assert_eq!(
            path_below("ct/c1", "ct/c1/private/var"),
            Some("private/var")
        );
        assert_eq!(path_below("", "ct/c1"), Some("ct/c1"));
        assert_eq!(path_below("ct/c1", "ct/c10/private"), None);
        assert_eq!(path_below("ct/c1", "ct/c1"), None);
        assert_eq!(path_below("ct/c1", "other"), None);
    }

    #[test]
    fn compressed_data_option() {
        let v62 = "    --proto N                 use protocol version N\n    \
                   --compressed-data         send data that is compressed on the filesystem directly\n";
        assert!(send_offers_compressed_data(v62));
        let v515 = "    -f <outfile>              Output is normally written to stdout.\n    \
                    --no-data                 send in NO_FILE_DATA mode\n";
        assert!(!send_offers_compressed_data(v515));
        // A mention inside another word is not the option.
        assert!(!send_offers_compressed_data("--compressed-data-v3 foo"));
    }

    #[test]
    fn stream_version() {
        assert_eq!(parse_send_stream_version("2\n").unwrap(), 2);
        assert!(parse_send_stream_version("two").is_err());
    }

    #[test]
    fn compression_property() {
        use CompressionProperty::*;
        assert_eq!(parse_compression_property(""), Unset);
        assert_eq!(
            parse_compression_property("compression=zstd\n"),
            Algorithm("zstd".into())
        );
        assert_eq!(parse_compression_property("compression=none\n"), Disabled);
        assert_eq!(parse_compression_property("compression=no\n"), Disabled);
    }

    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
50 22 0:45 / /mnt/bt rw,relatime shared:30 - btrfs /dev/loop0 rw,compress=zstd:3,space_cache=v2,subvolid=5,subvol=/
51 22 0:46 / /mnt/plain rw,relatime - btrfs /dev/loop1 rw,space_cache=v2,subvolid=5,subvol=/
52 50 0:47 / /mnt/bt/tmp rw - tmpfs tmpfs rw
53 22 0:48 /sub /mnt/with\\040space rw - btrfs /dev/loop2 rw,compress-force,subvol=/sub
54 22 0:49 / /mnt/later rw - btrfs /dev/loop3 rw,compress=lzo
55 22 0:49 / /mnt/later rw - btrfs /dev/loop4 rw
";

    #[test]
    fn mount_compression_options() {
        let at = |p: &str| mount_compression(MOUNTINFO, Path::new(p));
        assert_eq!(at("/mnt/bt/osctl/ct/c1"), Some("zstd".into()));
        assert_eq!(at("/mnt/bt"), Some("zstd".into()));
        assert_eq!(at("/mnt/plain/x"), None);
        assert_eq!(at("/mnt/bt/tmp/x"), None, "tmpfs on top");
        assert_eq!(at("/mnt/btx"), None, "not below /mnt/bt");
        assert_eq!(at("/mnt/with space/p"), Some("zlib".into()));
        assert_eq!(at("/mnt/later/p"), None, "the later mount wins");
        assert_eq!(at("/srv"), None);
    }

    #[test]
    fn plain_relative_paths() {
        for good in ["var", "var/log", "a b/c"] {
            assert!(is_plain_relative(good), "{good}");
        }
        for bad in [
            "", "/var", "var/", "var//log", "../x", "a/../b", ".", "a/./b",
        ] {
            assert!(!is_plain_relative(bad), "{bad}");
        }
    }
}
