//! Whether a copy of a tree is the same as the original, as precisely as the
//! way it went keeps things.

use std::collections::BTreeMap;
use std::path::Path;

use super::scan::{scan, Kind, Node, Tree};

#[derive(Clone, Copy, Debug)]
pub struct Precision {
    pub mtimes: Mtimes,
    /// Compare the mtimes of mount points and of the directories holding
    /// them: making a nested subvolume after the data arrived changes them.
    pub mount_point_mtimes: bool,
    pub xattrs: bool,
    pub allocation: Allocation,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mtimes {
    Nanoseconds,
    /// Formats and file systems that keep whole seconds (GNU tar's `gnu`
    /// format, zfs-fuse).
    Seconds,
}

/// How the space files take on disk must compare: holes must stay holes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allocation {
    /// [`Allocation::NoMore`], and each file sparse (64 KiB or more below its
    /// size) in both trees or in neither: a copy onto the same kind of file
    /// system.
    Same,
    /// No entry of the copy takes more than 32 KiB beyond the original; a
    /// compressing file system may make it less.
    NoMore,
    /// Only files of 64 MiB or more are checked, to take less than a quarter of
    /// their size in the copy: zfs-fuse reports `st_blocks` late (an attribute
    /// cache), smaller differences mean nothing there.
    LargeHolesOnly,
}

impl Precision {
    /// Everything a copy onto the same kind of file system keeps.
    pub const EXACT: Precision = Precision {
        mtimes: Mtimes::Nanoseconds,
        mount_point_mtimes: true,
        xattrs: true,
        allocation: Allocation::Same,
    };

    /// What a copy through zfs-fuse keeps: whole seconds, no xattrs, and
    /// allocation as [`Allocation::LargeHolesOnly`].
    pub const ZFS_FUSE: Precision = Precision {
        mtimes: Mtimes::Seconds,
        mount_point_mtimes: true,
        xattrs: false,
        allocation: Allocation::LargeHolesOnly,
    };
}

/// Slack for file systems that allocate a little differently (32 KiB).
const SLACK_BLOCKS: u64 = 64;

/// Panics, naming every difference, unless the tree at `copy` is the same
/// as the one at `original` (which must hold more than its root).
pub fn assert_same(original: &Path, copy: &Path, precision: &Precision) {
    let (want, got) = (scan(original), scan(copy));
    assert!(
        want.len() > 1,
        "nothing to compare: {} is empty",
        original.display()
    );
    let problems = differences(&want, &got, precision);
    assert!(
        problems.is_empty(),
        "{} differs from {}:\n{}",
        copy.display(),
        original.display(),
        problems.join("\n")
    );
}

/// Every difference between two scanned trees, one line (or a few) each.
pub fn differences(original: &Tree, copy: &Tree, precision: &Precision) -> Vec<String> {
    let mut problems = Vec::new();
    for (path, want) in original {
        let Some(got) = copy.get(path) else {
            problems.push(format!("missing in the copy: {}", show(path)));
            continue;
        };
        let fields = node_differences(want, got, precision);
        if !fields.is_empty() {
            problems.push(format!("{}: {}", show(path), fields.join("; ")));
        }
        if let Some(problem) = allocation_problem(want, got, precision.allocation) {
            problems.push(format!("{}: {problem}", show(path)));
        }
    }
    for path in copy.keys().filter(|path| !original.contains_key(*path)) {
        problems.push(format!("not in the original: {}", show(path)));
    }
    problems
}

fn node_differences(want: &Node, got: &Node, precision: &Precision) -> Vec<String> {
    let mut out = Vec::new();
    macro_rules! compare {
        ($field:ident, $show:expr) => {
            if want.$field != got.$field {
                out.push(format!(
                    "{} {} in the original, {} in the copy",
                    stringify!($field),
                    $show(&want.$field),
                    $show(&got.$field)
                ));
            }
        };
    }
    let debug = |v: &dyn std::fmt::Debug| format!("{v:?}");
    compare!(kind, debug);
    compare!(mode, |m: &u32| format!("{m:04o}"));
    compare!(uid, debug);
    compare!(gid, debug);
    compare!(nlink, debug);
    compare!(size, debug);
    compare!(digest, |d: &Option<[u8; 32]>| match d {
        Some(d) => format!("sha256 {}..", hex(&d[..8])),
        None => "none".into(),
    });
    compare!(target, |t: &Option<Vec<u8>>| match t {
        Some(t) => format!("'{}'", t.escape_ascii()),
        None => "none".into(),
    });
    compare!(rdev, |d: &u64| format!("{d:#x}"));
    compare!(link_group, |g: &Option<Vec<u8>>| match g {
        Some(g) => format!("linked with {}", show(g)),
        None => "not linked".into(),
    });
    if precision.xattrs {
        compare!(xattrs, show_xattrs);
    }
    let near_mount = |n: &Node| n.mount_point || n.holds_mount_point;
    if !(near_mount(want) || near_mount(got)) || precision.mount_point_mtimes {
        let (a, b) = (want.mtime, got.mtime);
        let same = match precision.mtimes {
            Mtimes::Nanoseconds => a == b,
            Mtimes::Seconds => a.sec == b.sec,
        };
        if !same {
            out.push(format!(
                "mtime {}.{:09} in the original, {}.{:09} in the copy",
                a.sec, a.nsec, b.sec, b.nsec
            ));
        }
    }
    out
}

fn allocation_problem(want: &Node, got: &Node, allocation: Allocation) -> Option<String> {
    let taken = || {
        format!(
            "takes {} blocks in the copy, {} in the original (size {})",
            got.blocks, want.blocks, got.size
        )
    };
    let more = got.blocks > want.blocks + SLACK_BLOCKS;
    match allocation {
        Allocation::Same if more || is_sparse(want) != is_sparse(got) => Some(taken()),
        Allocation::NoMore if more => Some(taken()),
        Allocation::LargeHolesOnly if got.size >= 64 << 20 && got.blocks * 512 >= got.size / 4 => {
            Some(taken())
        }
        _ => None,
    }
}

/// Allocated well below its size: it has holes.
fn is_sparse(node: &Node) -> bool {
    node.kind == Kind::File && node.blocks * 512 + (64 << 10) <= node.size
}

fn show(path: &[u8]) -> String {
    format!("/{}", path.escape_ascii())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn show_xattrs(xattrs: &BTreeMap<Vec<u8>, Vec<u8>>) -> String {
    let pairs: Vec<String> = xattrs
        .iter()
        .map(|(name, value)| format!("{}='{}'", name.escape_ascii(), value.escape_ascii()))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}
