//! Users (id maps) and groups of a pool.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::idmap::{self, IdMap, IdRange};
use crate::model::{GroupConfig, UserConfig};
use crate::names;
use crate::pool::Pool;
use crate::subid::SubIds;

/// A user as `user ls` and `user show` print it.
#[derive(Debug, Clone, Serialize)]
pub struct UserInfo {
    pub pool: String,
    pub name: String,
    pub uid_map: Vec<String>,
    pub gid_map: Vec<String>,
    pub standalone: bool,
}

/// A group as `group ls` and `group show` print it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupInfo {
    pub pool: String,
    pub name: String,
    /// None for `/`.
    pub parent: Option<String>,
    pub cgparams: Vec<serde_json::Value>,
    pub devices: Vec<serde_json::Value>,
}

pub fn user_info(pool: &Pool, name: &str) -> Result<UserInfo> {
    let cfg = pool.user(name)?;
    Ok(UserInfo {
        pool: pool.name.clone(),
        name: name.to_string(),
        uid_map: cfg.uid_map,
        gid_map: cfg.gid_map,
        standalone: cfg.standalone,
    })
}

pub fn users(pool: &Pool) -> Result<Vec<UserInfo>> {
    pool.user_names()?
        .iter()
        .map(|n| user_info(pool, n))
        .collect()
}

pub fn group_info(pool: &Pool, path: &str) -> Result<GroupInfo> {
    let cfg = pool.group(path)?;
    Ok(GroupInfo {
        pool: pool.name.clone(),
        name: path.to_string(),
        parent: names::group_parent(path).map(String::from),
        cgparams: cfg.cgparams,
        devices: cfg.devices,
    })
}

pub fn groups(pool: &Pool) -> Result<Vec<GroupInfo>> {
    pool.group_paths()?
        .iter()
        .map(|p| group_info(pool, p))
        .collect()
}

/// Maps requested for a new user; None fields get an allocated block.
#[derive(Debug, Default, Clone)]
pub struct MapRequest {
    pub uid_map: Option<IdMap>,
    pub gid_map: Option<IdMap>,
}

/// Host ranges used by the pool's users, with the owner's name.
fn used_ranges(pool: &Pool) -> Result<Vec<(String, IdRange)>> {
    let mut out = Vec::new();
    for name in pool.user_names()? {
        let cfg = pool.user(&name)?;
        let (u, g) = cfg
            .maps()
            .map_err(|e| e.context(format!("user '{name}'")))?;
        for r in u.0.into_iter().chain(g.0) {
            out.push((name.clone(), r));
        }
    }
    Ok(out)
}

/// Refuses a map that overlaps another user's host range.
pub fn check_no_overlap(pool: &Pool, name: &str, maps: &[&IdMap]) -> Result<()> {
    for (owner, range) in used_ranges(pool)? {
        if owner == name {
            continue;
        }
        for map in maps {
            if let Some(r) = map.0.iter().find(|r| r.overlaps_host(&range)) {
                return Err(Error::refused(format!(
                    "user '{name}': id map {r} overlaps user '{owner}' ({range})"
                )));
            }
        }
    }
    Ok(())
}

/// Checks that a new user's name is valid and free.
fn check_new_user(pool: &Pool, name: &str) -> Result<()> {
    names::user_name(name)?;
    if pool.user_exists(name) {
        return Err(Error::exists(format!(
            "user '{name}' already exists in pool '{}'",
            pool.name
        )));
    }
    Ok(())
}

/// Creates a user. The caller holds the pool's accounts lock.
pub fn create_user(pool: &Pool, name: &str, req: &MapRequest) -> Result<UserConfig> {
    check_new_user(pool, name)?;
    let subids = SubIds::system();
    let _subid_lock = subids.lock()?;
    let block = || -> Result<IdMap> {
        let mut taken: Vec<IdRange> = used_ranges(pool)?.into_iter().map(|(_, r)| r).collect();
        taken.extend(subids.taken()?);
        Ok(IdMap::single(idmap::allocate_block(&taken)?, idmap::BLOCK))
    };
    let (uid_map, gid_map) = match (&req.uid_map, &req.gid_map) {
        (Some(u), Some(g)) => (u.clone(), g.clone()),
        (Some(u), None) => (u.clone(), u.clone()),
        (None, Some(g)) => (g.clone(), g.clone()),
        (None, None) => {
            let b = block()?;
            (b.clone(), b)
        }
    };
    check_no_overlap(pool, name, &[&uid_map, &gid_map])?;
    let cfg = UserConfig::new(&uid_map, &gid_map);
    save_new_user(pool, name, &cfg, &subids)?;
    Ok(cfg)
}

/// Registers a user whose config is given (from an archive). The caller holds
/// the accounts lock. `judge` sees the host ranges of /etc/subuid and
/// /etc/subgid under their lock and may refuse: what it checks cannot change
/// before the user's lines are added.
pub fn create_user_from(
    pool: &Pool,
    name: &str,
    cfg: &UserConfig,
    judge: impl FnOnce(&[IdRange]) -> Result<()>,
) -> Result<()> {
    check_new_user(pool, name)?;
    let subids = SubIds::system();
    let _subid_lock = subids.lock()?;
    judge(&subids.taken()?)?;
    save_new_user(pool, name, cfg, &subids)
}

/// Registers a user from an archive whose maps overlap ids given out on
/// this host: the same ranges, moved onto free host ids (a fresh block of
/// the same shape). Returns the config saved. The caller holds the accounts
/// lock.
pub fn create_user_moved(pool: &Pool, name: &str, cfg: &UserConfig) -> Result<UserConfig> {
    check_new_user(pool, name)?;
    let subids = SubIds::system();
    let _subid_lock = subids.lock()?;
    let mut taken: Vec<IdRange> = used_ranges(pool)?.into_iter().map(|(_, r)| r).collect();
    taken.extend(subids.taken()?);
    let (u, g) = cfg.maps()?;
    let uid_map = u.moved_to_free(&taken)?;
    let gid_map = if g == u {
        uid_map.clone()
    } else {
        taken.extend(uid_map.0.iter().copied());
        g.moved_to_free(&taken)?
    };
    let moved = UserConfig {
        uid_map: uid_map.to_strings(),
        gid_map: gid_map.to_strings(),
        ..cfg.clone()
    };
    save_new_user(pool, name, &moved, &subids)?;
    Ok(moved)
}

/// Whether `maps` overlap host ids given out here: the pool's other users'
/// and the subordinate-id files' (every pool's users are in those).
pub fn overlaps_given_out(pool: &Pool, name: &str, maps: &[&IdMap]) -> Result<bool> {
    let mut taken: Vec<IdRange> = used_ranges(pool)?
        .into_iter()
        .filter(|(owner, _)| owner != name)
        .map(|(_, r)| r)
        .collect();
    taken.extend(SubIds::system().taken()?);
    Ok(maps
        .iter()
        .any(|m| m.0.iter().any(|r| taken.iter().any(|t| t.overlaps_host(r)))))
}

fn save_new_user(pool: &Pool, name: &str, cfg: &UserConfig, subids: &SubIds) -> Result<()> {
    let (u, g) = cfg.maps()?;
    // The maps as we write them, whatever spelling the config had.
    let cfg = UserConfig {
        uid_map: u.to_strings(),
        gid_map: g.to_strings(),
        ..cfg.clone()
    };
    subids.add(&u, &g)?;
    if let Err(e) = pool.save_user(name, &cfg) {
        let _ = subids.remove(&u, &g);
        return Err(e);
    }
    Ok(())
}

/// Refuses to delete `what` while containers (all of them named) use it.
fn refuse_if_used(
    pool: &Pool,
    what: &str,
    uses: impl Fn(&crate::model::ContainerConfig) -> bool,
) -> Result<()> {
    let mut users = Vec::new();
    for id in pool.ct_ids()? {
        if pool.ct_unvalidated(&id).is_ok_and(|c| uses(&c)) {
            users.push(format!("'{id}'"));
        }
    }
    match users.len() {
        0 => Ok(()),
        1 => Err(Error::refused(format!(
            "{what} is used by container {}: delete it or give it another first",
            users[0]
        ))),
        _ => Err(Error::refused(format!(
            "{what} is used by containers {}: delete them or give them another first",
            users.join(", ")
        ))),
    }
}

/// Deletes a user no container uses. The caller holds the accounts lock.
pub fn delete_user(pool: &Pool, name: &str) -> Result<()> {
    let cfg = pool.user(name)?;
    refuse_if_used(pool, &format!("user '{name}'"), |c| c.user == name)?;
    let subids = SubIds::system();
    let _subid_lock = subids.lock()?;
    pool.remove_user_config(name)?;
    if let Ok((u, g)) = cfg.maps() {
        subids.remove(&u, &g)?;
    }
    Ok(())
}

/// Creates a group; its parent must exist. The caller holds the accounts lock.
pub fn create_group(pool: &Pool, path: &str) -> Result<()> {
    names::group_path(path)?;
    if pool.group_exists(path) {
        return Err(Error::exists(format!(
            "group '{path}' already exists in pool '{}'",
            pool.name
        )));
    }
    if let Some(parent) = names::group_parent(path) {
        if !pool.group_exists(parent) {
            return Err(Error::not_found(format!(
                "group '{path}': parent group '{parent}' does not exist"
            )));
        }
    }
    pool.save_group(path, &GroupConfig::new(path))
}

/// Deletes a group without subgroups and containers. `/` and `/default` stay.
pub fn delete_group(pool: &Pool, path: &str) -> Result<()> {
    pool.group(path)?;
    if path == "/" || path == "/default" {
        return Err(Error::refused(format!("group '{path}' cannot be deleted")));
    }
    let prefix = format!("{path}/");
    if let Some(child) = pool
        .group_paths()?
        .into_iter()
        .find(|g| g.starts_with(&prefix))
    {
        return Err(Error::refused(format!(
            "group '{path}' has subgroup '{child}'"
        )));
    }
    refuse_if_used(pool, &format!("group '{path}'"), |c| c.group == path)?;
    pool.remove_group_config(path)
}
