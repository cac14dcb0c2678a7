//! Subdatasets of a container (`osctl ct dataset new|ls|del`): names relative
//! to the root dataset (`var`, `var/log`), mounted at `private/<name>`.

use serde::Serialize;

use crate::containers;
use crate::error::{Error, Result};
use crate::names;
use crate::pool::Pool;
use crate::runtime::Runtime;

#[derive(Debug, Clone, Serialize)]
pub struct DatasetInfo {
    /// Relative to the container's root dataset.
    pub name: String,
    /// Where its files are on the host.
    pub path: String,
}

/// Creates a subdataset; its parent (`var` for `var/log`) must exist.
pub fn create(pool: &Pool, id: &str, name: &str) -> Result<()> {
    names::subdataset(name)?;
    let _lock = pool.lock_ct(id)?;
    pool.ct(id)?;
    pool.storage
        .create(id, name)
        .map_err(|e| e.context(format!("container '{id}'")))
}

pub fn list(pool: &Pool, id: &str) -> Result<Vec<DatasetInfo>> {
    pool.ct(id)?;
    Ok(pool
        .storage
        .subdatasets(id)?
        .into_iter()
        .map(|name| DatasetInfo {
            path: pool.storage.path(id, &name).to_string_lossy().into_owned(),
            name,
        })
        .collect())
}

/// Destroys a subdataset with its snapshots. Refused while the container runs
/// or while the subdataset has subdatasets of its own.
pub fn delete(pool: &Pool, id: &str, name: &str) -> Result<()> {
    names::subdataset(name)?;
    let _lock = pool.lock_ct(id)?;
    pool.ct(id)?;
    let state = containers::runtime(pool).state(id)?;
    if state.is_up() {
        return Err(Error::Refused(format!(
            "container '{id}' is {state}: stop it before deleting its dataset '{name}'"
        )));
    }
    let all = pool.storage.subdatasets(id)?;
    if !all.iter().any(|d| d == name) {
        return Err(Error::NotFound(format!(
            "container '{id}' has no dataset '{name}'"
        )));
    }
    let prefix = format!("{name}/");
    let children: Vec<&str> = all
        .iter()
        .filter(|d| d.starts_with(&prefix))
        .map(String::as_str)
        .collect();
    if !children.is_empty() {
        return Err(Error::Refused(format!(
            "dataset '{name}' of container '{id}' has datasets below it ({}): delete them first",
            children.join(", ")
        )));
    }
    pool.storage.destroy(id, name)
}
