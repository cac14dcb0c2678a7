//! `/etc/subuid` and `/etc/subgid`: LXC's `newuidmap` accepts a map only when
//! root owns the host range there. We add one `root:HOST:COUNT` line per map
//! range of a user and remove exactly those lines again; other lines are
//! never touched.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::fsutil;
use crate::idmap::{IdMap, IdRange};
use crate::lock::Lock;

pub struct SubIds {
    uid_file: PathBuf,
    gid_file: PathBuf,
    lock_file: PathBuf,
}

fn line_for(r: &IdRange) -> String {
    format!("root:{}:{}", r.host, r.count)
}

/// Host ranges that lines of a subid file give to anyone.
pub fn parse_ranges(text: &str) -> Vec<IdRange> {
    text.lines()
        .filter_map(|l| {
            let mut p = l.trim().split(':');
            let _owner = p.next()?;
            let host = p.next()?.parse().ok()?;
            let count = p.next()?.parse().ok()?;
            Some(IdRange { ns: 0, host, count })
        })
        .collect()
}

impl SubIds {
    pub fn system() -> SubIds {
        let etc = std::env::var_os("OSCTL_SUBID_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/etc"));
        SubIds {
            uid_file: etc.join("subuid"),
            gid_file: etc.join("subgid"),
            // Shared by every OSCTL_ROOT on the host, like the files themselves.
            lock_file: PathBuf::from("/run/lock/osctl-subid.lock"),
        }
    }

    pub fn lock(&self) -> Result<Lock> {
        Lock::acquire(&self.lock_file, "/etc/subuid and /etc/subgid")
    }

    /// Ranges handed out in either file (by us or anyone else).
    pub fn taken(&self) -> Result<Vec<IdRange>> {
        let mut out = Vec::new();
        for f in [&self.uid_file, &self.gid_file] {
            out.extend(parse_ranges(&fsutil::read_optional(f)?.unwrap_or_default()));
        }
        Ok(out)
    }

    /// Adds lines for the maps; the caller holds [`SubIds::lock`].
    pub fn add(&self, uid_map: &IdMap, gid_map: &IdMap) -> Result<()> {
        edit(&self.uid_file, |lines| add_lines(lines, uid_map))?;
        edit(&self.gid_file, |lines| add_lines(lines, gid_map))
    }

    /// Removes one line per range of the maps; the caller holds [`SubIds::lock`].
    pub fn remove(&self, uid_map: &IdMap, gid_map: &IdMap) -> Result<()> {
        edit(&self.uid_file, |lines| remove_lines(lines, uid_map))?;
        edit(&self.gid_file, |lines| remove_lines(lines, gid_map))
    }
}

fn add_lines(lines: &mut Vec<String>, map: &IdMap) {
    for r in &map.0 {
        lines.push(line_for(r));
    }
}

fn remove_lines(lines: &mut Vec<String>, map: &IdMap) {
    for r in &map.0 {
        let wanted = line_for(r);
        // The last one: ours were appended.
        if let Some(i) = lines.iter().rposition(|l| l.trim() == wanted) {
            lines.remove(i);
        }
    }
}

fn edit(path: &Path, change: impl FnOnce(&mut Vec<String>)) -> Result<()> {
    let text = fsutil::read_optional(path)?.unwrap_or_default();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let before = lines.clone();
    change(&mut lines);
    if lines == before {
        return Ok(());
    }
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    fsutil::atomic_write(path, out.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_and_remove_keep_other_lines() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("subuid"), "alice:200000:65536\n").unwrap();
        let s = SubIds {
            uid_file: d.path().join("subuid"),
            gid_file: d.path().join("subgid"),
            lock_file: d.path().join("lock"),
        };
        let m = IdMap::single(300000, 65536);
        s.add(&m, &m).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("subuid")).unwrap(),
            "alice:200000:65536\nroot:300000:65536\n"
        );
        assert_eq!(s.taken().unwrap().len(), 3);
        s.remove(&m, &m).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("subuid")).unwrap(),
            "alice:200000:65536\n"
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("subgid")).unwrap(),
            ""
        );
    }
}
