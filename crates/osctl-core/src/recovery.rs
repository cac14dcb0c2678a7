//! Undoing what an interrupted export or import left behind.
//!
//! Every command that opens a pool first replays the journals of dead
//! operations (`recover_journals`); `osctl pool check` also looks for leftovers
//! that no journal names (`check_pool`).

use crate::accounts;
use crate::containers;
use crate::error::Result;
use crate::journal::{self, ExportRecord, ImportRecord, Record};
use crate::lock::Lock;
use crate::pool::Pool;
use crate::storage::{self, Dataset};

/// Snapshot names our exports take.
pub fn is_our_snapshot(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("osctl-") else {
        return false;
    };
    ["base-", "incr-"].iter().any(|p| {
        rest.strip_prefix(p)
            .is_some_and(|ts| !ts.is_empty() && ts.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Undoes the work of every journal whose operation is no longer running.
/// Returns one line per thing done.
pub fn recover_journals(pool: &Pool) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for dir in [
        pool.state_dir(),
        pool.root.join("conf/ct"),
        pool.root.join("conf/user"),
    ] {
        for path in crate::fsutil::remove_stale_temp_files(&dir)? {
            done.push(format!("removed temporary file {}", path.display()));
        }
    }
    let mut leftovers_removed = false;
    for (path, record) in journal::list(pool)? {
        // A held lock means the operation is alive.
        let Some(lock) = Lock::try_acquire(&pool.ct_lock_path(record.id()))? else {
            continue;
        };
        // A dead export's snapshot view (a zfs clone) would keep its
        // snapshot from being destroyed.
        if !leftovers_removed {
            done.extend(pool.storage.remove_leftovers()?);
            leftovers_removed = true;
        }
        match &record {
            Record::Export(r) => undo_export(pool, r, &mut done)?,
            Record::Import(r) => undo_import(pool, r, &mut done)?,
        }
        crate::fsutil::remove_file_if_exists(&path)?;
        pool.unlock_ct(record.id(), lock)?;
    }
    Ok(done)
}

fn undo_export(pool: &Pool, r: &ExportRecord, done: &mut Vec<String>) -> Result<()> {
    if pool.storage.exists(&r.id)? {
        for snap in &r.snapshots {
            pool.storage.destroy_snapshot(&r.id, snap)?;
            done.push(format!("destroyed snapshot {snap} of container '{}'", r.id));
        }
    }
    if r.output.exists() {
        crate::fsutil::remove_file_if_exists(&r.output)?;
        done.push(format!("removed partial archive {}", r.output.display()));
    }
    if r.frozen && pool.ct_exists(&r.id) {
        containers::runtime(pool).thaw(&r.id)?;
        done.push(format!(
            "thawed container '{}' (an export had frozen it)",
            r.id
        ));
    }
    if r.stopped && pool.ct_exists(&r.id) {
        containers::start_after_dead_export(pool, &r.id, r.starting)?;
        done.push(format!(
            "started container '{}' again (an export had stopped it)",
            r.id
        ));
    }
    Ok(())
}

/// Removes what an import built: the staged container, and after a commit
/// that did not complete, the container's storage and hooks and the user and
/// group it created.
pub(crate) fn undo_import(pool: &Pool, r: &ImportRecord, done: &mut Vec<String>) -> Result<()> {
    // Also when only some of it exists (a stream half received).
    let staged = pool.storage.exists(&r.staging)?;
    pool.storage.destroy(Dataset::root(&r.staging))?;
    if staged {
        done.push(format!("removed staged container '{}'", r.staging));
    }
    let committed = pool.ct_exists(&r.id);
    if committed || !(r.committing || r.placed) {
        return Ok(());
    }
    if pool.storage.exists(&r.id)? {
        pool.storage.destroy(Dataset::root(&r.id))?;
        done.push(format!("removed half-imported container '{}'", r.id));
    }
    if !r.committing {
        return Ok(());
    }
    crate::fsutil::remove_dir_all_if_exists(&pool.hooks_dir(&r.id))?;
    let _accounts = pool.lock_accounts()?;
    for group in r.created_group.iter().chain(r.created_parents.iter().rev()) {
        if pool.group_exists(group) && accounts::delete_group(pool, group).is_ok() {
            done.push(format!("removed group '{group}' created by the import"));
        }
    }
    if let Some(user) = &r.created_user {
        if pool.user_exists(user) && accounts::delete_user(pool, user).is_ok() {
            done.push(format!("removed user '{user}' created by the import"));
        }
    }
    Ok(())
}

/// Everything `recover_journals` does, plus leftovers no journal names: staged
/// containers and our snapshots on containers no operation holds.
pub fn check_pool(pool: &Pool) -> Result<Vec<String>> {
    let mut done = recover_journals(pool)?;
    done.extend(pool.storage.remove_leftovers()?);
    for name in pool.storage.containers()? {
        let Some(id) = storage::staged_id(&name) else {
            continue;
        };
        if let Some(lock) = Lock::try_acquire(&pool.ct_lock_path(id))? {
            pool.storage.destroy(Dataset::root(&name))?;
            done.push(format!("removed staged container '{name}'"));
            pool.unlock_ct(id, lock)?;
        }
    }
    for id in pool.ct_ids()? {
        let Some(_lock) = Lock::try_acquire(&pool.ct_lock_path(&id))? else {
            continue;
        };
        if !pool.storage.exists(&id)? {
            continue;
        }
        for snap in pool
            .storage
            .snapshots(&id)?
            .into_iter()
            .filter(|s| is_our_snapshot(s))
        {
            pool.storage.destroy_snapshot(&id, &snap)?;
            done.push(format!("destroyed snapshot {snap} of container '{id}'"));
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names() {
        assert!(is_our_snapshot("osctl-base-1700000000"));
        assert!(is_our_snapshot("osctl-incr-1"));
        assert!(!is_our_snapshot("osctl-base-"));
        assert!(!is_our_snapshot("osctl-copy-base-1"));
        assert!(!is_our_snapshot("daily-2026"));
    }
}
