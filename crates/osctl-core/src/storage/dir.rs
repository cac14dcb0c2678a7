//! Plain directories. No snapshots and no native streams: exports use the tar
//! format, and a consistent export finds what changed after its base dump by
//! comparing the tree against the manifest recorded during that dump.

use std::fs;
use std::path::{Path, PathBuf};

use super::{Backend, Dataset, SnapshotView, Storage, ROOTFS_DIR};
use crate::error::{Context, Error, Result};
use crate::fsutil;

pub struct DirStorage {
    /// `<pool>/ct`: one directory per container.
    ct_dir: PathBuf,
}

impl DirStorage {
    pub fn new(pool_root: &Path) -> Self {
        DirStorage {
            ct_dir: pool_root.join("ct"),
        }
    }

    fn only_root(&self, ds: Dataset) -> Result<()> {
        if ds.is_root() {
            Ok(())
        } else {
            Err(Error::refused(format!(
                "container '{}': dir pools have no subdatasets (use a zfs or btrfs pool)",
                ds.ct
            )))
        }
    }

    fn ct_path(&self, ct: &str) -> PathBuf {
        self.ct_dir.join(ct)
    }
}

impl Storage for DirStorage {
    fn backend(&self) -> Backend {
        Backend::Dir
    }

    /// No snapshots: a view is the live directory.
    fn views_are_live(&self) -> bool {
        true
    }

    fn create(&self, ds: Dataset) -> Result<()> {
        self.only_root(ds)?;
        let dir = self.ct_path(ds.ct);
        fsutil::create_dir_all(&self.ct_dir)?;
        fs::create_dir(&dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::exists(format!("directory {} already exists", dir.display()))
            } else {
                Error::io(format!("cannot create {}", dir.display()), e)
            }
        })?;
        fsutil::seal_container_dir(&dir)?;
        let rootfs = dir.join(ROOTFS_DIR);
        fs::create_dir(&rootfs).ctx(|| format!("cannot create {}", rootfs.display()))?;
        fsutil::set_mode(&rootfs, 0o755)
    }

    fn exists(&self, ct: &str) -> Result<bool> {
        Ok(self.ct_path(ct).is_dir())
    }

    fn subdatasets(&self, _ct: &str) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn destroy(&self, ds: Dataset) -> Result<()> {
        self.only_root(ds)?;
        let dir = self.ct_path(ds.ct);
        // The root file system may hold immutable or append-only files; clear
        // the flags where a plain removal fails.
        match fsutil::remove_dir_all_if_exists(&dir) {
            Ok(()) => Ok(()),
            Err(first) => {
                let _ = crate::cmd::Cmd::new("chattr")
                    .args(["-R", "-ia"])
                    .arg(&dir)
                    .run();
                fsutil::remove_dir_all_if_exists(&dir).map_err(|_| first)
            }
        }
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (a, b) = (self.ct_path(from), self.ct_path(to));
        if b.exists() {
            return Err(Error::exists(format!(
                "directory {} already exists",
                b.display()
            )));
        }
        fs::rename(&a, &b).ctx(|| format!("cannot rename {} to {}", a.display(), b.display()))?;
        fsutil::seal_container_dir(&b)?;
        fsutil::sync_dir(&self.ct_dir)
    }

    fn path(&self, ds: Dataset) -> PathBuf {
        self.ct_path(ds.ct)
    }

    fn containers(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.ct_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).ctx(|| format!("cannot list {}", self.ct_dir.display())),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.ctx(|| format!("cannot list {}", self.ct_dir.display()))?;
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn snapshot(&self, _ct: &str, _snap: &str) -> Result<()> {
        Ok(())
    }

    fn destroy_snapshot(&self, _ct: &str, _snap: &str) -> Result<()> {
        Ok(())
    }

    fn snapshots(&self, _ct: &str) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn snapshot_view(&self, ds: Dataset, _snap: &str) -> Result<SnapshotView> {
        self.only_root(ds)?;
        Ok(SnapshotView::new(self.ct_path(ds.ct)))
    }
}
