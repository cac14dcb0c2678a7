//! Journals of exports and imports in progress, so that what a killed process
//! leaves behind can be found and undone: snapshots, a partial output file, a
//! container it stopped, a staged container, a user or group it created.
//!
//! A journal lives in the pool's `state/` directory while its operation runs
//! and holds the container's lock. A journal whose container lock is free
//! belongs to a process that died; `recovery` undoes what it records.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::fsutil;
use crate::pool::Pool;
use crate::yaml;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExportRecord {
    pub pid: u32,
    pub id: String,
    /// The partial archive, removed on failure.
    pub output: PathBuf,
    /// Snapshots taken so far, to destroy.
    #[serde(default)]
    pub snapshots: Vec<String>,
    /// The export began to stop the container and has not started it again.
    #[serde(default)]
    pub stopped: bool,
    /// The export began to start the container again (`stopped` is still set).
    #[serde(default)]
    pub starting: bool,
    /// The export began to freeze the container (`--freeze`) and has not
    /// thawed it yet.
    #[serde(default)]
    pub frozen: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ImportRecord {
    pub pid: u32,
    pub id: String,
    /// The staging name under which the container is built.
    pub staging: String,
    /// Set once the commit began: from then on, storage may sit under the final id.
    #[serde(default)]
    pub committing: bool,
    /// Set before received native streams move to the final id, ahead of
    /// their last checks and the commit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub placed: bool,
    #[serde(default)]
    pub created_user: Option<String>,
    #[serde(default)]
    pub created_group: Option<String>,
    /// Parents of `created_group` the import created too (trusted archives
    /// only), root first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created_parents: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "operation", rename_all = "lowercase")]
pub enum Record {
    Export(ExportRecord),
    Import(ImportRecord),
}

impl Record {
    pub fn id(&self) -> &str {
        match self {
            Record::Export(r) => &r.id,
            Record::Import(r) => &r.id,
        }
    }
}

/// What a journal can record: one kind of operation.
pub trait Operation: Serialize + Clone {
    /// The journal file's prefix: `state/<KIND>.<id>.yml`.
    const KIND: &'static str;
    fn id(&self) -> &str;
    fn into_record(self) -> Record;
}

impl Operation for ExportRecord {
    const KIND: &'static str = "export";
    fn id(&self) -> &str {
        &self.id
    }
    fn into_record(self) -> Record {
        Record::Export(self)
    }
}

impl Operation for ImportRecord {
    const KIND: &'static str = "import";
    fn id(&self) -> &str {
        &self.id
    }
    fn into_record(self) -> Record {
        Record::Import(self)
    }
}

/// A journal file of one operation, rewritten atomically at every step.
/// Removed by `finish`; dropping it keeps the file (the operation failed
/// before it could clean up).
pub struct Journal<R: Operation> {
    path: PathBuf,
    record: R,
}

impl<R: Operation> Journal<R> {
    fn path_for(pool: &Pool, id: &str) -> PathBuf {
        pool.state_dir().join(format!("{}.{id}.yml", R::KIND))
    }

    /// Starts a journal; the caller holds the container's lock.
    pub fn begin(pool: &Pool, record: R) -> Result<Journal<R>> {
        let path = Self::path_for(pool, record.id());
        fsutil::create_dir_all(&pool.state_dir())?;
        let journal = Journal { path, record };
        journal.save()?;
        Ok(journal)
    }

    fn save(&self) -> Result<()> {
        let text = yaml::to_string(&self.record.clone().into_record())?;
        fsutil::atomic_write(&self.path, text.as_bytes())
    }

    pub fn record(&self) -> &R {
        &self.record
    }

    /// Changes the record and writes it before the change happens on disk.
    pub fn update(&mut self, change: impl FnOnce(&mut R)) -> Result<()> {
        change(&mut self.record);
        self.save()
    }

    pub fn finish(self) -> Result<()> {
        fsutil::remove_file_if_exists(&self.path)
    }
}

/// All journals in a pool's state directory, with their paths.
pub fn list(pool: &Pool) -> Result<Vec<(PathBuf, Record)>> {
    let dir = pool.state_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(crate::error::Error::io(
                format!("cannot list {}", dir.display()),
                e,
            ))
        }
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("export.") || name.starts_with("import.")) || !name.ends_with(".yml")
        {
            continue;
        }
        if let Some(record) = read(&path)? {
            out.push((path, record));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn read(path: &Path) -> Result<Option<Record>> {
    match fsutil::read_optional(path)? {
        None => Ok(None),
        Some(text) => yaml::parse(&text, &path.display().to_string()).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip() {
        let r = Record::Import(ImportRecord {
            pid: 7,
            id: "a".into(),
            staging: "a.importing".into(),
            committing: true,
            placed: true,
            created_user: Some("a".into()),
            created_group: Some("/x/y".into()),
            created_parents: vec!["/x".into()],
        });
        let text = yaml::to_string(&r).unwrap();
        assert!(text.contains("operation: import"), "{text}");
        assert_eq!(yaml::parse::<Record>(&text, "t").unwrap(), r);
    }
}
