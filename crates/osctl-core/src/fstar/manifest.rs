//! What a full dump saw, per path, so that a later walk can tell what changed.
//!
//! Paths are stored with '/' replaced by NUL (which no name contains): byte
//! order of such keys is the pre-order of the tree with each directory's
//! children sorted by name, so every subtree is one contiguous run that
//! directly follows its directory. The dump walks in exactly that order, so
//! the manifest is built sorted, and lookups are binary searches.

/// Kind of a recorded entry (the file type bits of `st_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    Char,
    Block,
    Fifo,
}

/// State of one path when the full dump stat'ed it (before reading it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub ino: u64,
    pub size: u64,
    pub rdev: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Key bytes, then the symlink target, in the arena.
    start: usize,
    key_len: u32,
    target_len: u32,
    state: Recorded,
}

/// The state of every path a full dump wrote (see [`super::dump_full`]).
/// About 80 bytes per path plus the path itself.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    arena: Vec<u8>,
    slots: Vec<Slot>,
    sorted: bool,
}

/// Turns an archive path ("a/b/c", "" for the root) into a manifest key.
pub(crate) fn key_of(rel: &[u8]) -> Vec<u8> {
    rel.iter().map(|&b| if b == b'/' { 0 } else { b }).collect()
}

impl Manifest {
    /// Number of recorded paths.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub(crate) fn new() -> Self {
        Manifest {
            sorted: true,
            ..Default::default()
        }
    }

    pub(crate) fn push(&mut self, rel: &[u8], state: Recorded, target: &[u8]) {
        let start = self.arena.len();
        self.arena
            .extend(rel.iter().map(|&b| if b == b'/' { 0 } else { b }));
        self.arena.extend_from_slice(target);
        let slot = Slot {
            start,
            key_len: rel.len() as u32,
            target_len: target.len() as u32,
            state,
        };
        if let Some(last) = self.slots.last() {
            if self.slot_key(last) >= &self.arena[start..start + rel.len()] {
                self.sorted = false;
            }
        }
        self.slots.push(slot);
    }

    /// Sorts (only if the walk did not already produce sorted keys) and drops
    /// duplicates, keeping the first record of a path.
    pub(crate) fn seal(mut self) -> Self {
        if !self.sorted {
            let arena = &self.arena;
            let key = |s: &Slot| &arena[s.start..s.start + s.key_len as usize];
            self.slots.sort_by(|a, b| key(a).cmp(key(b)));
            self.slots.dedup_by(|b, a| key(a) == key(b));
            self.sorted = true;
        }
        self.slots.shrink_to_fit();
        self.arena.shrink_to_fit();
        self
    }

    fn slot_key(&self, s: &Slot) -> &[u8] {
        &self.arena[s.start..s.start + s.key_len as usize]
    }

    pub(crate) fn key(&self, index: usize) -> &[u8] {
        self.slot_key(&self.slots[index])
    }

    pub(crate) fn state(&self, index: usize) -> &Recorded {
        &self.slots[index].state
    }

    pub(crate) fn target(&self, index: usize) -> &[u8] {
        let s = &self.slots[index];
        let from = s.start + s.key_len as usize;
        &self.arena[from..from + s.target_len as usize]
    }

    /// Index of a key.
    pub(crate) fn find(&self, key: &[u8]) -> Option<usize> {
        self.slots
            .binary_search_by(|s| self.slot_key(s).cmp(key))
            .ok()
    }

    /// Indices of the direct children of the directory at `index`, in order.
    pub(crate) fn children(&self, index: usize) -> Vec<usize> {
        let dir = self.key(index);
        let mut found = Vec::new();
        let mut i = index + 1;
        while i < self.slots.len() && is_below(dir, self.key(i)) {
            found.push(i);
            i = self.subtree_end(i);
        }
        found
    }

    /// The last component of the path at `index`.
    pub(crate) fn name(&self, index: usize) -> &[u8] {
        let key = self.key(index);
        let start = key.iter().rposition(|&b| b == 0).map_or(0, |i| i + 1);
        &key[start..]
    }

    /// Index just past the subtree rooted at `index`.
    pub(crate) fn subtree_end(&self, index: usize) -> usize {
        let root = self.key(index);
        let rest = &self.slots[index + 1..];
        index + 1 + rest.partition_point(|s| is_below(root, self.slot_key(s)))
    }
}

const MAGIC: &[u8; 8] = b"osctlmf1";
const SLOT_BYTES: usize = 4 + 4 + 1 + 4 * 3 + 8 * 6;

impl Manifest {
    /// The manifest as bytes, for keeping it between commands (the rounds
    /// of `osctl ct send`); [`Manifest::from_bytes`] reads it back.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.arena.len() + self.slots.len() * SLOT_BYTES);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.arena.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.slots.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.arena);
        for s in &self.slots {
            let r = &s.state;
            out.extend_from_slice(&s.key_len.to_le_bytes());
            out.extend_from_slice(&s.target_len.to_le_bytes());
            out.push(r.kind as u8);
            for v in [r.mode, r.uid, r.gid] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            for v in [r.ino, r.size, r.rdev, s.start as u64] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            for v in [r.mtime_ns, r.ctime_ns] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// Reads what [`Manifest::to_bytes`] wrote; None if it is damaged.
    pub fn from_bytes(bytes: &[u8]) -> Option<Manifest> {
        let rest = bytes.strip_prefix(MAGIC.as_slice())?;
        let u64_at = |b: &[u8], at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
        };
        let u32_at = |b: &[u8], at: usize| -> Option<u32> {
            Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
        };
        let arena_len = usize::try_from(u64_at(rest, 0)?).ok()?;
        let count = usize::try_from(u64_at(rest, 8)?).ok()?;
        let arena = rest.get(16..16usize.checked_add(arena_len)?)?.to_vec();
        let table = &rest[16 + arena_len..];
        if table.len() != count.checked_mul(SLOT_BYTES)? {
            return None;
        }
        let mut slots = Vec::with_capacity(count);
        for b in table.chunks_exact(SLOT_BYTES) {
            let kind = match b[8] {
                0 => Kind::File,
                1 => Kind::Dir,
                2 => Kind::Symlink,
                3 => Kind::Char,
                4 => Kind::Block,
                5 => Kind::Fifo,
                _ => return None,
            };
            let slot = Slot {
                key_len: u32_at(b, 0)?,
                target_len: u32_at(b, 4)?,
                start: usize::try_from(u64_at(b, 45)?).ok()?,
                state: Recorded {
                    kind,
                    mode: u32_at(b, 9)?,
                    uid: u32_at(b, 13)?,
                    gid: u32_at(b, 17)?,
                    ino: u64_at(b, 21)?,
                    size: u64_at(b, 29)?,
                    rdev: u64_at(b, 37)?,
                    mtime_ns: u64_at(b, 53)? as i64,
                    ctime_ns: u64_at(b, 61)? as i64,
                },
            };
            let end = slot
                .start
                .checked_add(slot.key_len as usize)?
                .checked_add(slot.target_len as usize)?;
            if end > arena.len() {
                return None;
            }
            slots.push(slot);
        }
        let m = Manifest {
            arena,
            slots,
            sorted: true,
        };
        let ordered = (1..m.slots.len()).all(|i| m.key(i - 1) < m.key(i));
        ordered.then_some(m)
    }
}

/// Is `key` strictly inside the directory `dir`?
fn is_below(dir: &[u8], key: &[u8]) -> bool {
    if dir.is_empty() {
        return !key.is_empty();
    }
    key.len() > dir.len() && key.starts_with(dir) && key[dir.len()] == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ino: u64) -> Recorded {
        Recorded {
            kind: Kind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            ino,
            size: 0,
            rdev: 0,
            mtime_ns: 0,
            ctime_ns: 0,
        }
    }

    #[test]
    fn bytes_round_trip_and_damage_is_refused() {
        let mut m = Manifest::new();
        for (i, p) in ["", "a", "a/b", "z"].iter().enumerate() {
            m.push(
                p.as_bytes(),
                rec(i as u64 + 7),
                if i == 2 { b"t" } else { b"" },
            );
        }
        let m = m.seal();
        let bytes = m.to_bytes();
        let back = Manifest::from_bytes(&bytes).expect("reads back");
        assert_eq!(back.len(), 4);
        for i in 0..4 {
            assert_eq!(back.key(i), m.key(i));
            assert_eq!(back.state(i), m.state(i));
            assert_eq!(back.target(i), m.target(i));
        }
        assert!(Manifest::from_bytes(&bytes[..bytes.len() - 1]).is_none());
        assert!(Manifest::from_bytes(b"osctlmf0").is_none());
    }

    #[test]
    fn subtrees_are_contiguous_and_children_skip_them() {
        let mut m = Manifest::new();
        // Pre-order with sorted names: "a!" sorts after all of "a/..." only
        // because '/' is stored as NUL.
        for (i, p) in ["", "a", "a/b", "a/b/c", "a/d", "a!", "z"]
            .iter()
            .enumerate()
        {
            m.push(p.as_bytes(), rec(i as u64), b"");
        }
        let m = m.seal();
        assert_eq!(m.len(), 7);
        let root = m.find(b"").unwrap();
        let names = |i| {
            m.children(i)
                .into_iter()
                .map(|c| m.name(c))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(root), vec![&b"a"[..], b"a!", b"z"]);
        let a = m.find(&key_of(b"a")).unwrap();
        assert_eq!(names(a), vec![&b"b"[..], b"d"]);
        assert_eq!(m.subtree_end(a), m.find(&key_of(b"a!")).unwrap());
        assert_eq!(m.state(m.find(&key_of(b"a/b/c")).unwrap()).ino, 3);
    }

    #[test]
    fn unsorted_input_is_sorted_on_seal() {
        let mut m = Manifest::new();
        m.push(b"b", rec(1), b"t1");
        m.push(b"a", rec(2), b"t2");
        m.push(b"a", rec(3), b"t3");
        let m = m.seal();
        assert_eq!(m.len(), 2);
        let a = m.find(b"a").unwrap();
        assert_eq!(m.state(a).ino, 2);
        assert_eq!(m.target(a), b"t2");
        assert_eq!(m.target(m.find(b"b").unwrap()), b"t1");
    }
}
