//! Reading a tar stream through without extracting it: every header is
//! parsed by the extractor's reader and every name goes through the
//! extractor's own checks, so a stream that walks cleanly fails extraction
//! only for what needs a file system or a policy (owners outside the id map,
//! device nodes, links to what does not exist).

use std::io::Read;

use super::extract::{check_entry, Action, Whiteout};
use super::header::TarKind;
use super::read::TarReader;
use super::{show_bytes, EntryCounts};
use crate::error::Result;

/// What a stream holds, counted as [`walk`] reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WalkStats {
    #[serde(flatten)]
    pub counts: EntryCounts,
    /// Highest uid or gid an entry names.
    pub max_id: u32,
}

/// Reads the tar stream `input` to its end-of-archive marker, checking every
/// header and name as [`super::extract`] would (`whiteouts`: whether
/// `.wh.` names are whiteouts, as in incremental streams). Writes nothing.
/// Any error names the entry: `archive entry './x': <cause>`.
pub fn walk(input: &mut dyn Read, whiteouts: bool) -> Result<WalkStats> {
    let mut stats = WalkStats::default();
    let mut reader = TarReader::new(input);
    while let Some(entry) = reader.next_entry()? {
        stats.counts.entries += 1;
        let (_, action) = check_entry(&entry, whiteouts)
            .map_err(|e| e.context(format!("archive entry '{}'", show_bytes(&entry.name))))?;
        if let Action::Whiteout(w) = action {
            if !matches!(w, Whiteout::Unknown(_)) {
                stats.counts.whiteouts += 1;
            }
            continue;
        }
        if entry.kind != TarKind::HardLink {
            // A hard link's owner is its target's (the extractor ignores it).
            stats.max_id = stats.max_id.max(entry.uid).max(entry.gid);
        }
        stats.counts.add(entry.kind);
        if entry.kind == TarKind::File {
            stats.counts.file_bytes += entry.size;
        }
        // The reader skips the data (and checks it is all there) on the
        // next call.
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::super::header::{self as h, Block, BLOCK};
    use super::*;
    use crate::ErrorKind;

    fn entry(out: &mut Vec<u8>, name: &[u8], flag: u8, link: &[u8], data: &[u8]) {
        let mut b: Block = [0; BLOCK];
        h::put_str(&mut b, h::NAME, name);
        h::put_num(&mut b, h::MODE, 0o644);
        h::put_num(&mut b, h::UID, 1000);
        h::put_num(&mut b, h::GID, 7);
        h::put_num(&mut b, h::SIZE, data.len() as u64);
        h::put_num(&mut b, h::MTIME, 1);
        b[h::TYPEFLAG] = flag;
        h::put_str(&mut b, h::LINKNAME, link);
        b[h::MAGIC.0..h::MAGIC.0 + 8].copy_from_slice(h::USTAR_MAGIC);
        h::seal(&mut b);
        out.extend_from_slice(&b);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(BLOCK), 0);
    }

    /// Name, type flag, link target, data.
    type Raw<'a> = (&'a [u8], u8, &'a [u8], &'a [u8]);

    fn walked(entries: &[Raw<'_>], whiteouts: bool) -> Result<WalkStats> {
        let mut s = Vec::new();
        for (name, flag, link, data) in entries {
            entry(&mut s, name, *flag, link, data);
        }
        s.extend_from_slice(&[0; 2 * BLOCK]);
        walk(&mut &s[..], whiteouts)
    }

    #[test]
    fn counts_what_the_stream_holds() {
        let stats = walked(
            &[
                (b"./", b'5', b"", b""),
                (b"./etc/hostname", b'0', b"", b"web\n"),
                (b"./bin/sh", b'2', b"busybox", b""),
                (b"./bin/ls", b'1', b"./etc/hostname", b""),
                (b"./gone/.wh.x", b'0', b"", b""),
                (b"./gone/.wh..wh..opq", b'0', b"", b""),
                (b"./gone/.wh..wh.future", b'0', b"", b""),
            ],
            true,
        )
        .unwrap();
        assert_eq!(
            (
                stats.counts.entries,
                stats.counts.files,
                stats.counts.dirs,
                stats.counts.symlinks,
                stats.counts.hardlinks
            ),
            (7, 1, 1, 1, 1)
        );
        assert_eq!(
            (
                stats.counts.whiteouts,
                stats.counts.file_bytes,
                stats.max_id
            ),
            (2, 4, 1000)
        );
    }

    #[test]
    fn refuses_the_names_the_extractor_refuses() {
        for (name, flag, link, why) in [
            (&b"../x"[..], b'0', &b""[..], "'..'"),
            (b"/etc/passwd", b'0', b"", "absolute"),
            (b"./a", b'1', b"../../etc/shadow", "'..'"),
            (b"./a", b'1', b"./", "hard link to the root"),
            (b"./a", b'2', b"", "symbolic link"),
            (b"./", b'0', b"", "the root can only be a directory"),
            (b"./d/.wh..", b'0', b"", "malformed whiteout"),
        ] {
            let err = walked(&[(name, flag, link, b"")], true).unwrap_err();
            assert!(err.kind() == ErrorKind::Archive, "{err}");
            let text = err.to_string();
            assert!(text.contains(why), "{text}");
            assert!(text.starts_with("archive entry '"), "{text}");
        }
        // Without whiteouts, `.wh.` names are plain files.
        let stats = walked(&[(b"./d/.wh..", b'0', b"", b"")], false).unwrap();
        assert_eq!((stats.counts.files, stats.counts.whiteouts), (1, 0));
    }

    #[test]
    fn truncated_streams_are_errors() {
        let mut s = Vec::new();
        entry(&mut s, b"./f", b'0', b"", &[7; 2000]);
        assert!(walk(&mut &s[..1500], false).is_err());
        assert!(
            walk(&mut &s[..], false).is_err(),
            "no end-of-archive marker"
        );
    }
}
