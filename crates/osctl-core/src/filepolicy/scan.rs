//! Judging a received tree by the file policy: what `zfs recv` and `btrfs
//! receive` made of an archive's native streams, before the import commits.
//!
//! A walk of metadata only: every inode is looked at with fstatat and
//! l/flistxattr (values read only for ACLs and file capabilities), none is
//! opened but directories, no symbolic link is followed, no file's data is
//! read. The walk holds one directory descriptor at a time and goes back up
//! through `..`, checking that it arrives where it came from, so a deep tree
//! costs neither descriptors nor more memory than the names still to visit
//! in the directories above. It stays on the container's datasets: it goes
//! into the mount points it is given (subdatasets) and refuses any other
//! file system it meets.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{self as fs, FileType, Mode};
use rustix::io::Errno;

use super::{FilePolicy, XattrVerdict, ACL_ACCESS, ACL_DEFAULT, CAPABILITY};
use crate::error::{Context, Error, Result};
use crate::fstar::safefs::{self, Meta, DIR_FLAGS};
use crate::fstar::show_path;
use crate::storage::{Dataset, Storage};

/// What a scan looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Inodes judged (a hard link counts once per name), the root included.
    pub entries: u64,
    pub dirs: u64,
    /// Mount points gone into (subdatasets).
    pub mounts: u64,
}

/// Judges the datasets of container `ct` (a staging name during an import):
/// mounts them, then scans the root dataset's directory, going into the
/// subdatasets `datasets` where they are mounted.
pub fn check_container(
    storage: &dyn Storage,
    ct: &str,
    datasets: &[String],
    policy: &FilePolicy,
) -> Result<ScanStats> {
    storage.mount(ct)?;
    let root = storage.path(Dataset::root(ct));
    let mut mounts = Vec::new();
    for rel in datasets {
        let path = storage.path(Dataset::new(ct, rel));
        let inner = path.strip_prefix(&root).map_err(|_| {
            Error::invalid(format!(
                "dataset '{rel}' of '{ct}' is not below {}",
                root.display()
            ))
        })?;
        mounts.push(inner.as_os_str().as_encoded_bytes().to_vec());
    }
    scan(&root, &mounts, policy)
}

/// Judges every inode below `root` (and `root` itself); `mounts` are the
/// paths relative to `root` where other file systems may be (and must be)
/// mounted. A violation is `Error::Archive` naming the path and the rule.
pub fn scan(root: &Path, mounts: &[Vec<u8>], policy: &FilePolicy) -> Result<ScanStats> {
    let mut scanner = Scanner {
        policy,
        mounts: mounts.iter().map(|m| (m.clone(), false)).collect(),
        names: vec![0; XATTR_LIST_MAX],
        value: vec![0; XATTR_VALUE_MAX],
        without_xattrs: Vec::new(),
        stats: ScanStats::default(),
        path: Vec::new(),
    };
    scanner
        .run(root)
        .map_err(|e| e.context(format!("checking {}", root.display())))?;
    if let Some((missing, _)) = scanner.mounts.iter().find(|(_, seen)| !seen) {
        return Err(Error::refused(format!(
            "checking {}: no dataset is mounted at {}",
            root.display(),
            show_path(missing)
        )));
    }
    Ok(scanner.stats)
}

/// The kernel's limits of a name list and of one value.
const XATTR_LIST_MAX: usize = 64 << 10;
const XATTR_VALUE_MAX: usize = 64 << 10;
/// How often (in entries) a long scan looks for SIGINT and SIGTERM.
const INTERRUPT_EVERY: u64 = 4096;

/// A directory on the way down: what is left to visit in it.
struct Frame {
    names: Vec<Vec<u8>>,
    dev: u64,
    ino: u64,
    /// Length of its path in `Scanner::path`.
    path_len: usize,
}

struct Scanner<'p> {
    policy: &'p FilePolicy,
    /// Mount points to go into, and whether the walk found them.
    mounts: Vec<(Vec<u8>, bool)>,
    names: Vec<u8>,
    value: Vec<u8>,
    /// Devices whose file system has no extended attributes (zfs-fuse).
    without_xattrs: Vec<u64>,
    stats: ScanStats,
    /// The path of the inode being judged, relative to the root.
    path: Vec<u8>,
}

/// Where an inode's extended attributes are read: its own descriptor (a
/// directory), or its name in a directory (anything else; not followed).
enum Attrs<'a> {
    Fd(BorrowedFd<'a>),
    Child(BorrowedFd<'a>, &'a [u8]),
}

impl Scanner<'_> {
    fn run(&mut self, root: &Path) -> Result<()> {
        let mut dir = fs::open(root, DIR_FLAGS, Mode::empty())
            .map_err(std::io::Error::from)
            .ctx(|| "cannot open it".to_string())?;
        let meta = safefs::fstat(dir.as_fd()).ctx(|| "cannot stat it".to_string())?;
        self.stats.entries += 1;
        self.judge(&meta, Attrs::Fd(dir.as_fd()))?;
        let mut stack = vec![self.frame(dir.as_fd(), &meta)?];
        loop {
            let Some(frame) = stack.last_mut() else {
                return Ok(());
            };
            let Some(name) = frame.names.pop() else {
                stack.pop();
                let Some(parent) = stack.last() else {
                    return Ok(());
                };
                dir = self.up(dir.as_fd(), parent)?;
                self.path.truncate(parent.path_len);
                continue;
            };
            let dev = frame.dev;
            self.path.truncate(frame.path_len);
            if !self.path.is_empty() {
                self.path.push(b'/');
            }
            self.path.extend_from_slice(&name);
            if let Some((sub, meta)) = self.visit(dir.as_fd(), &name, dev)? {
                stack.push(self.frame(sub.as_fd(), &meta)?);
                dir = sub;
            }
        }
    }

    /// Judges one entry of `dir`; returns a directory to go into.
    fn visit(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        dev: u64,
    ) -> Result<Option<(OwnedFd, Meta)>> {
        self.stats.entries += 1;
        if self.stats.entries.is_multiple_of(INTERRUPT_EVERY) {
            crate::interrupt::check()?;
        }
        let meta = safefs::lstat_at(dir, name).ctx(|| self.failed("cannot stat"))?;
        if meta.file_type() != FileType::Directory {
            self.judge(&meta, Attrs::Child(dir, name))?;
            return Ok(None);
        }
        let sub = fs::openat(dir, name, DIR_FLAGS, Mode::empty())
            .map_err(std::io::Error::from)
            .ctx(|| self.failed("cannot open directory"))?;
        let opened = safefs::fstat(sub.as_fd()).ctx(|| self.failed("cannot stat"))?;
        if (opened.dev, opened.ino) != (meta.dev, meta.ino) {
            return Err(Error::busy(self.failed("changed while it was checked")));
        }
        if meta.dev != dev {
            self.enter_mount()?;
        }
        self.judge(&meta, Attrs::Fd(sub.as_fd()))?;
        Ok(Some((sub, meta)))
    }

    /// A directory on another file system: one of the given mount points,
    /// or refused.
    fn enter_mount(&mut self) -> Result<()> {
        match self.mounts.iter_mut().find(|(m, _)| *m == self.path) {
            Some((_, seen)) => {
                *seen = true;
                self.stats.mounts += 1;
                Ok(())
            }
            None => Err(Error::refused(format!(
                "{}: another file system is mounted there, not one of the container's datasets",
                show_path(&self.path)
            ))),
        }
    }

    fn frame(&mut self, dir: BorrowedFd<'_>, meta: &Meta) -> Result<Frame> {
        self.stats.dirs += 1;
        let names = safefs::read_names(dir)
            .ctx(|| self.failed("cannot read directory"))?
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        Ok(Frame {
            names,
            dev: meta.dev,
            ino: meta.ino,
            path_len: self.path.len(),
        })
    }

    /// Back to the parent directory through `..`, which must be the one
    /// the walk came down from.
    fn up(&self, dir: BorrowedFd<'_>, parent: &Frame) -> Result<OwnedFd> {
        let up = fs::openat(dir, "..", DIR_FLAGS, Mode::empty())
            .map_err(std::io::Error::from)
            .ctx(|| self.failed("cannot open the parent of"))?;
        let meta = safefs::fstat(up.as_fd()).ctx(|| self.failed("cannot stat the parent of"))?;
        if (meta.dev, meta.ino) != (parent.dev, parent.ino) {
            return Err(Error::busy(self.failed("was moved while it was checked")));
        }
        Ok(up)
    }

    /// The policy on one inode: its metadata, then its extended attributes.
    fn judge(&mut self, meta: &Meta, attrs: Attrs<'_>) -> Result<()> {
        self.policy
            .check_inode(meta.mode, meta.uid.into(), meta.gid.into(), meta.rdev)
            .map_err(|why| self.refused(why))?;
        if self.without_xattrs.contains(&meta.dev) {
            return Ok(());
        }
        let listed = match attrs {
            Attrs::Fd(fd) => fs::flistxattr(fd, &mut self.names[..]),
            Attrs::Child(dir, name) => {
                let path = safefs::proc_child_path(dir, name).ctx(|| self.failed("cannot name"))?;
                fs::llistxattr(path.as_c_str(), &mut self.names[..])
            }
        };
        let len = match listed {
            Ok(len) => len,
            Err(Errno::NOTSUP) => {
                self.without_xattrs.push(meta.dev);
                return Ok(());
            }
            Err(e) => {
                return Err(Error::io(
                    self.failed("cannot list the extended attributes of"),
                    e.into(),
                ))
            }
        };
        let mut at = 0;
        while at < len {
            let end = self.names[at..len]
                .iter()
                .position(|&b| b == 0)
                .map_or(len, |n| at + n);
            let name = self.names[at..end].to_vec();
            at = end + 1;
            if !name.is_empty() {
                self.judge_xattr(&name, &attrs)?;
            }
        }
        Ok(())
    }

    fn judge_xattr(&mut self, name: &[u8], attrs: &Attrs<'_>) -> Result<()> {
        // Only these have values the policy reads.
        let needs_value = name == CAPABILITY || name == ACL_ACCESS || name == ACL_DEFAULT;
        let value_len = if needs_value && self.policy.restores(name) {
            let cname = std::ffi::CString::new(name).expect("listed names hold no NUL");
            let got = match attrs {
                Attrs::Fd(fd) => fs::fgetxattr(fd, &cname, &mut self.value[..]),
                Attrs::Child(dir, child) => {
                    let path =
                        safefs::proc_child_path(*dir, child).ctx(|| self.failed("cannot name"))?;
                    fs::lgetxattr(path.as_c_str(), &cname, &mut self.value[..])
                }
            };
            match got {
                Ok(n) => n,
                // Removed since it was listed: nothing to judge.
                Err(Errno::NODATA) => return Ok(()),
                Err(e) => {
                    return Err(Error::io(
                        self.failed("cannot read the extended attributes of"),
                        e.into(),
                    ))
                }
            }
        } else {
            0
        };
        match self.policy.check_xattr(name, &self.value[..value_len]) {
            Ok(XattrVerdict::Restore | XattrVerdict::Skip) => Ok(()),
            Err(why) => Err(self.refused(why)),
        }
    }

    fn refused(&self, why: String) -> Error {
        Error::archive(format!("{}: {why}", show_path(&self.path)))
    }

    fn failed(&self, what: &str) -> String {
        format!("{what} {}", show_path(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::os::unix::fs::symlink;
    use testkit::fs::{chown, mknod, set_xattr, write_file};

    macro_rules! need_root {
        () => {
            if !testkit::is_root() {
                eprintln!("skipped: needs root");
                return;
            }
        };
    }

    fn mapped() -> FilePolicy {
        FilePolicy::for_import(Some(65536), false)
    }

    /// The refusal of `root`'s scan: the error's message.
    fn refusal(root: &Path, mounts: &[Vec<u8>], policy: &FilePolicy) -> String {
        match scan(root, mounts, policy) {
            Err(e) if matches!(e.kind(), ErrorKind::Archive | ErrorKind::Refused) => {
                e.message().to_string()
            }
            other => panic!("not refused: {other:?}"),
        }
    }

    /// A small tree of every kind of file, all of it allowed.
    fn good_tree(root: &Path) {
        std::fs::create_dir_all(root.join("private/etc")).unwrap();
        write_file(root.join("private/etc/passwd"), "root", 0o644, 0, 0);
        write_file(root.join("private/suid"), "x", 0o4755, 0, 0);
        write_file(root.join("private/owned"), "x", 0o2755, 65535, 65535);
        symlink("/etc/shadow", root.join("private/link")).unwrap();
        mknod(
            root.join("private/null"),
            FileType::CharacterDevice,
            0o666,
            1,
            3,
        );
        mknod(root.join("private/fifo"), FileType::Fifo, 0o600, 0, 0);
        set_xattr(root.join("private/etc/passwd"), "user.note", b"n");
    }

    #[test]
    fn allowed_trees_pass() {
        need_root!();
        let t = tempfile::tempdir().unwrap();
        good_tree(t.path());
        let stats = scan(t.path(), &[], &mapped()).unwrap();
        assert_eq!((stats.entries, stats.dirs), (9, 3), "{stats:?}");
    }

    #[test]
    fn each_rule_refuses_with_the_path() {
        need_root!();
        type Case = (&'static str, fn(&Path), &'static str);
        let cases: [Case; 6] = [
            (
                "block device",
                |p| mknod(p, FileType::BlockDevice, 0o666, 7, 0),
                "device node (block 7:0) refused",
            ),
            (
                "foreign owner",
                |p| write_file(p, "x", 0o644, 4_000_000_000, 0),
                "uid 4000000000 is outside",
            ),
            (
                "foreign group of a symlink",
                |p| {
                    symlink("x", p).unwrap();
                    rustix::fs::chownat(
                        rustix::fs::CWD,
                        p,
                        None,
                        Some(rustix::fs::Gid::from_raw(70000)),
                        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .unwrap();
                },
                "gid 70000",
            ),
            (
                "setuid outside the map",
                |p| write_file(p, "x", 0o4755, 70000, 0),
                "setuid file whose uid 70000",
            ),
            (
                "privileged attribute",
                |p| {
                    write_file(p, "x", 0o644, 0, 0);
                    set_xattr(p, "trusted.overlay.redirect", b"/etc");
                },
                "extended attribute trusted.overlay.redirect refused",
            ),
            (
                "privileged attribute on a directory",
                |p| {
                    std::fs::create_dir(p).unwrap();
                    set_xattr(p, "security.ima", b"x");
                },
                "extended attribute security.ima refused",
            ),
        ];
        for (what, make, expect) in cases {
            let t = tempfile::tempdir().unwrap();
            good_tree(t.path());
            make(&t.path().join("private/etc/bad"));
            let msg = refusal(t.path(), &[], &mapped());
            assert!(
                msg.contains("./private/etc/bad: ") && msg.contains(expect),
                "{what}: {msg}"
            );
            // Trusted, with the map of a privileged container: all of it passes.
            scan(t.path(), &[], &FilePolicy::anything()).unwrap();
        }
    }

    #[test]
    fn the_root_itself_is_judged() {
        need_root!();
        let t = tempfile::tempdir().unwrap();
        chown(t.path(), 100_000, 0);
        let msg = refusal(t.path(), &[], &mapped());
        assert!(msg.contains("./: uid 100000"), "{msg}");
    }

    /// Deeper than the descriptors a process may hold and than PATH_MAX:
    /// the walk holds one directory at a time and finds what is at the bottom.
    #[test]
    fn deep_trees_cost_no_descriptors() {
        need_root!();
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(20_000);
        let depth = (soft + 100).min(100_000) as usize;
        let t = tempfile::tempdir().unwrap();
        let mut dir = fs::open(t.path(), DIR_FLAGS, Mode::empty()).unwrap();
        for _ in 0..depth {
            fs::mkdirat(&dir, "d", Mode::from_raw_mode(0o755)).unwrap();
            dir = fs::openat(&dir, "d", DIR_FLAGS, Mode::empty()).unwrap();
        }
        let bottom = fs::openat(
            &dir,
            "f",
            fs::OFlags::CREATE | fs::OFlags::WRONLY,
            Mode::from_raw_mode(0o644),
        )
        .unwrap();
        drop(dir);
        let stats = scan(t.path(), &[], &mapped()).unwrap();
        assert_eq!(stats.dirs as usize, depth + 1);
        fs::fchown(&bottom, Some(fs::Uid::from_raw(70000)), None).unwrap();
        let msg = refusal(t.path(), &[], &mapped());
        assert!(
            msg.contains("/d/f: uid 70000"),
            "{}",
            &msg[msg.len() - 80..]
        );
        remove_chain(t.path(), depth);
    }

    /// Removes `root/d/d/...` without a path longer than two components:
    /// the child of the top `d` is moved up in its place, level by level.
    fn remove_chain(root: &Path, depth: usize) {
        let top = fs::open(root, DIR_FLAGS, Mode::empty()).unwrap();
        for _ in 0..depth {
            let d = fs::openat(&top, "d", DIR_FLAGS, Mode::empty()).unwrap();
            let _ = fs::unlinkat(&d, "f", fs::AtFlags::empty());
            if fs::renameat(&d, "d", &top, "next").is_err() {
                // The last level.
                drop(d);
                fs::unlinkat(&top, "d", fs::AtFlags::REMOVEDIR).unwrap();
                return;
            }
            drop(d);
            fs::unlinkat(&top, "d", fs::AtFlags::REMOVEDIR).unwrap();
            fs::renameat(&top, "next", &top, "d").unwrap();
        }
    }

    /// Datasets mounted inside are walked into; any other file system, or
    /// a dataset missing from its place, is refused.
    #[test]
    fn mounts() {
        need_root!();
        use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};
        let t = tempfile::tempdir().unwrap();
        good_tree(t.path());
        let var = t.path().join("private/var");
        std::fs::create_dir(&var).unwrap();
        if let Err(e) = mount("tmpfs", &var, "tmpfs", MountFlags::empty(), None) {
            eprintln!("skipped: cannot mount a tmpfs ({e})");
            return;
        }
        mknod(var.join("sda"), FileType::BlockDevice, 0o660, 8, 0);
        let listed = [b"private/var".to_vec()];
        let in_var = refusal(t.path(), &listed, &mapped());
        let foreign = refusal(t.path(), &[], &mapped());
        std::fs::remove_file(var.join("sda")).unwrap();
        let fine = scan(t.path(), &listed, &mapped());
        unmount(&var, UnmountFlags::empty()).unwrap();
        assert!(
            in_var.contains("./private/var/sda: device node"),
            "{in_var}"
        );
        assert!(
            foreign.contains("./private/var: another file system"),
            "{foreign}"
        );
        assert_eq!(fine.unwrap().mounts, 1);
        let missing = refusal(t.path(), &listed, &mapped());
        assert!(
            missing.contains("no dataset is mounted at ./private/var"),
            "{missing}"
        );
    }
}
