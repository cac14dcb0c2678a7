//! User namespace id maps: entries of `ns:host:count`, as osctl writes them.

use std::fmt;

use crate::error::{Error, Result};

/// Size of an automatically allocated block of host ids.
pub const BLOCK: u32 = 65536;
/// Where automatic allocation starts (below are the host's own users).
pub const FIRST_HOST_ID: u32 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IdRange {
    pub ns: u32,
    pub host: u32,
    pub count: u32,
}

impl IdRange {
    pub fn parse(s: &str) -> Result<IdRange> {
        let bad = || {
            Error::invalid(format!(
                "invalid id map entry '{}': expected NS:HOST:COUNT",
                s.escape_debug()
            ))
        };
        // Digits only: u32's parser would also take "+5", which then
        // travelled into configs as it was written.
        let number = |p: &str| {
            (!p.is_empty() && p.len() <= 10 && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse().ok())
                .flatten()
        };
        let mut parts = s.split(':');
        let mut next = || -> Result<u32> { parts.next().and_then(number).ok_or_else(bad) };
        let r = IdRange {
            ns: next()?,
            host: next()?,
            count: next()?,
        };
        if parts.next().is_some() || r.count == 0 {
            return Err(bad());
        }
        if u64::from(r.ns) + u64::from(r.count) > 1 << 32
            || u64::from(r.host) + u64::from(r.count) > 1 << 32
        {
            return Err(Error::invalid(format!(
                "invalid id map entry '{s}': the range passes 2^32"
            )));
        }
        Ok(r)
    }

    pub fn host_end(&self) -> u64 {
        u64::from(self.host) + u64::from(self.count)
    }

    pub fn overlaps_host(&self, other: &IdRange) -> bool {
        u64::from(self.host) < other.host_end() && u64::from(other.host) < self.host_end()
    }

    /// Maps a namespace id to the host, if in range.
    pub fn to_host(&self, ns_id: u32) -> Option<u32> {
        (ns_id >= self.ns && u64::from(ns_id) < u64::from(self.ns) + u64::from(self.count))
            .then(|| self.host + (ns_id - self.ns))
    }
}

impl fmt::Display for IdRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.ns, self.host, self.count)
    }
}

/// The first host id an untrusted archive's user may map, per kind, as
/// `SUB_UID_MIN` and `SUB_GID_MIN` of `/etc/login.defs` set it: below are
/// the host's own users and groups (daemons, logins, `disk`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubordinateFloor {
    pub uid: u32,
    pub gid: u32,
}

/// Where shadow-utils starts subordinate ids when login.defs does not say.
pub const DEFAULT_SUB_ID_MIN: u32 = 100_000;
/// Most ids one user of an untrusted archive may map (uids, and gids).
pub const MAX_UNTRUSTED_IDS: u64 = 1 << 24;
/// The highest host id a map may reach: (u32)-1 means "no id" to the kernel.
pub const LAST_HOST_ID: u32 = u32::MAX - 1;

impl SubordinateFloor {
    /// The host's floor, from `/etc/login.defs`.
    pub fn system() -> SubordinateFloor {
        let text = std::fs::read_to_string("/etc/login.defs").unwrap_or_default();
        SubordinateFloor::from_login_defs(&text)
    }

    /// Reads `SUB_UID_MIN` and `SUB_GID_MIN` from login.defs' text.
    pub fn from_login_defs(text: &str) -> SubordinateFloor {
        let value = |key: &str| {
            // The last setting wins, as in shadow-utils.
            text.lines()
                .rev()
                .find_map(|l| {
                    let mut words = l.split_whitespace();
                    (words.next() == Some(key)).then(|| words.next()?.parse().ok())?
                })
                .unwrap_or(DEFAULT_SUB_ID_MIN)
        };
        SubordinateFloor {
            uid: value("SUB_UID_MIN"),
            gid: value("SUB_GID_MIN"),
        }
    }

    /// Why `map` (of `kind`, "uid" or "gid") may not come from an untrusted
    /// archive, or None: its host ranges must lie within FLOOR..=LAST_HOST_ID
    /// and hold at most MAX_UNTRUSTED_IDS ids.
    pub fn judge(&self, map: &IdMap, kind: &str) -> Option<String> {
        let floor = if kind == "uid" { self.uid } else { self.gid };
        let allowed = || {
            format!(
                "an untrusted archive may map host {kind}s {floor}-{LAST_HOST_ID} \
                 (SUB_{}_MIN in /etc/login.defs and up), at most {MAX_UNTRUSTED_IDS} of them",
                kind.to_uppercase()
            )
        };
        if let Some(r) = map.0.iter().find(|r| r.host < floor) {
            return Some(format!(
                "its {kind} map {r} reaches host {kind}s below {floor}, the host's own: {}",
                allowed()
            ));
        }
        if let Some(r) = map
            .0
            .iter()
            .find(|r| r.host_end() > u64::from(LAST_HOST_ID) + 1)
        {
            return Some(format!(
                "its {kind} map {r} reaches host {kind} {}: {}",
                u32::MAX,
                allowed()
            ));
        }
        let total: u64 = map.0.iter().map(|r| u64::from(r.count)).sum();
        (total > MAX_UNTRUSTED_IDS)
            .then(|| format!("its {kind} map holds {total} ids: {}", allowed()))
    }
}

/// A whole map: one or more ranges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdMap(pub Vec<IdRange>);

impl IdMap {
    pub fn parse_all<S: AsRef<str>>(entries: &[S]) -> Result<IdMap> {
        let ranges = entries
            .iter()
            .map(|e| IdRange::parse(e.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let map = IdMap(ranges);
        map.check_self_overlap()?;
        Ok(map)
    }

    pub fn single(host: u32, count: u32) -> IdMap {
        IdMap(vec![IdRange { ns: 0, host, count }])
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    fn check_self_overlap(&self) -> Result<()> {
        for (i, a) in self.0.iter().enumerate() {
            for b in &self.0[i + 1..] {
                let ns_overlap = u64::from(a.ns) < u64::from(b.ns) + u64::from(b.count)
                    && u64::from(b.ns) < u64::from(a.ns) + u64::from(a.count);
                if ns_overlap || a.overlaps_host(b) {
                    return Err(Error::invalid(format!(
                        "id map entries {a} and {b} overlap"
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn overlaps(&self, other: &IdMap) -> bool {
        self.0
            .iter()
            .any(|a| other.0.iter().any(|b| a.overlaps_host(b)))
    }

    /// True when host id 0 (root) is inside the map.
    pub fn reaches_host_root(&self) -> bool {
        self.0.iter().any(|r| r.host == 0)
    }

    pub fn to_host(&self, ns_id: u32) -> Option<u32> {
        self.0.iter().find_map(|r| r.to_host(ns_id))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for IdMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_strings().join(","))
    }
}

/// The lowest block of `BLOCK` host ids from `FIRST_HOST_ID` on, aligned to
/// `BLOCK`, that overlaps none of `taken`.
pub fn allocate_block(taken: &[IdRange]) -> Result<u32> {
    allocate_span(taken, BLOCK)
}

/// The lowest run of `span` host ids from `FIRST_HOST_ID` on, starting at a
/// multiple of `BLOCK`, that overlaps none of `taken`.
pub fn allocate_span(taken: &[IdRange], span: u32) -> Result<u32> {
    let mut start = u64::from(FIRST_HOST_ID);
    let block = u64::from(BLOCK);
    while start + u64::from(span) <= u64::from(u32::MAX) {
        let candidate = IdRange {
            ns: 0,
            host: start as u32,
            count: span,
        };
        match taken
            .iter()
            .filter(|t| t.overlaps_host(&candidate))
            .map(|t| t.host_end())
            .max()
        {
            None => return Ok(start as u32),
            // Jump past the blocker, keeping blocks aligned for readability.
            Some(end) => start = end.div_ceil(block) * block,
        }
    }
    Err(Error::refused("no free block of host ids left"))
}

impl IdMap {
    /// The same ranges moved, together, onto the lowest free host ids:
    /// each keeps its container ids and count and its distance from the
    /// others on the host.
    pub fn moved_to_free(&self, taken: &[IdRange]) -> Result<IdMap> {
        let lo = self.0.iter().map(|r| r.host).min().unwrap_or(0);
        let hi = self.0.iter().map(IdRange::host_end).max().unwrap_or(0);
        let span = u32::try_from(hi - u64::from(lo))
            .map_err(|_| Error::refused("the id map spans more host ids than there are"))?;
        let start = allocate_span(taken, span.max(1))?;
        Ok(IdMap(
            self.0
                .iter()
                .map(|r| IdRange {
                    host: start + (r.host - lo),
                    ..*r
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_moves_whole_onto_free_ids() {
        let map = IdMap::parse_all(&["0:100000:1000", "5000:105000:60536"]).unwrap();
        let taken = [IdRange::parse("0:100000:65536").unwrap()];
        let moved = map.moved_to_free(&taken).unwrap();
        assert_eq!(moved.to_string(), "0:196608:1000,5000:201608:60536");
        assert!(!moved.overlaps(&IdMap(taken.to_vec())));
    }

    #[test]
    fn parse_and_print() {
        let r = IdRange::parse("0:100000:65536").unwrap();
        assert_eq!(r.to_string(), "0:100000:65536");
        for bad in [
            "",
            "1:2",
            "a:b:c",
            "0:1:0",
            "0:4294967295:2",
            "1:2:3:4",
            "+0:+100000:+65536",
            " 0:100000:65536",
            "0:100000:65536\n",
            "0:-1:2",
            "00000000000:1:1",
        ] {
            assert!(IdRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn overlap() {
        let a = IdMap::single(100_000, 65536);
        let b = IdMap::single(165_535, 10);
        let c = IdMap::single(165_536, 10);
        assert!(a.overlaps(&b));
        assert!(!a.overlaps(&c));
        assert!(IdMap::parse_all(&["0:100000:10", "5:200000:10"]).is_err());
    }

    #[test]
    fn allocation_skips_taken() {
        assert_eq!(allocate_block(&[]).unwrap(), 100_000);
        let taken = [IdRange {
            ns: 0,
            host: 100_000,
            count: 65536,
        }];
        assert_eq!(allocate_block(&taken).unwrap(), 196_608);
        let taken = [IdRange {
            ns: 0,
            host: 150_000,
            count: 1,
        }];
        assert_eq!(allocate_block(&taken).unwrap(), 196_608);
    }

    #[test]
    fn untrusted_maps_stay_among_subordinate_ids() {
        let defs =
            "# comment\nSUB_UID_MIN\t\t   200000\nSUB_GID_MIN 300000\nSUB_UID_MAX 600100000\n";
        let floor = SubordinateFloor::from_login_defs(defs);
        assert_eq!((floor.uid, floor.gid), (200_000, 300_000));
        let floor = SubordinateFloor::from_login_defs("");
        assert_eq!((floor.uid, floor.gid), (100_000, 100_000));

        let map = |s: &[&str]| IdMap::parse_all(s).unwrap();
        assert_eq!(floor.judge(&map(&["0:100000:65536"]), "uid"), None);
        assert_eq!(floor.judge(&map(&["0:4294901759:65536"]), "gid"), None);
        let system = floor.judge(&map(&["0:1:65536"]), "uid").unwrap();
        assert!(system.contains("below 100000"), "{system}");
        assert!(system.contains("100000-4294967294"), "{system}");
        let minus_one = floor.judge(&map(&["0:4294901760:65536"]), "gid").unwrap();
        assert!(minus_one.contains("4294967295"), "{minus_one}");
        let huge = floor
            .judge(&map(&["0:100000:16777216", "16777216:20000000:1"]), "uid")
            .unwrap();
        assert!(huge.contains("16777217 ids"), "{huge}");
        assert_eq!(floor.judge(&map(&["0:100000:16777216"]), "uid"), None);
    }

    #[test]
    fn root_reach() {
        assert!(IdMap::single(0, 65536).reaches_host_root());
        assert!(!IdMap::single(1, 65536).reaches_host_root());
    }
}
