//! Validation of the names users and archives give us. Every name ends up in a
//! path, a dataset name or an LXC config line, so the alphabet is narrow.

use crate::error::{Error, Result};

pub const MAX_NAME: usize = 100;

fn is_name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
}

fn check(kind: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(is_name_char) {
        return Err(Error::invalid(format!(
            "invalid {kind} '{}': use 1 to {MAX_NAME} characters of a-z, 0-9, '_' and '-'",
            name.escape_debug()
        )));
    }
    Ok(())
}

pub fn container_id(id: &str) -> Result<()> {
    check("container id", id)
}

pub fn user_name(name: &str) -> Result<()> {
    check("user name", name)
}

pub fn pool_name(name: &str) -> Result<()> {
    check("pool name", name)
}

/// A group path such as `/`, `/default` or `/web/frontend`.
pub fn group_path(path: &str) -> Result<()> {
    if path == "/" {
        return Ok(());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(Error::invalid(format!(
            "invalid group name '{}': it must start with '/'",
            path.escape_debug()
        )));
    };
    if path.len() > 1000 {
        return Err(Error::invalid("invalid group name: too long"));
    }
    for part in rest.split('/') {
        check("group name part", part)
            .map_err(|e| e.context(format!("group '{}'", path.escape_debug())))?;
    }
    Ok(())
}

/// The parent of a group path (`/a/b` -> `/a`, `/a` -> `/`), None for `/`.
pub fn group_parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

/// A subdataset name relative to the container's root dataset (`var`, `var/log`).
/// No component may be `private`: every dataset keeps its files in a directory
/// of that name, where a child dataset named so would be mounted over them.
pub fn subdataset(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 255 {
        return Err(Error::invalid(format!(
            "invalid dataset name '{}'",
            name.escape_debug()
        )));
    }
    for part in name.split('/') {
        check("dataset name part", part)
            .map_err(|e| e.context(format!("dataset '{}'", name.escape_debug())))?;
        if part == crate::storage::ROOTFS_DIR {
            return Err(Error::invalid(format!(
                "invalid dataset name '{name}': '{part}' is where every dataset keeps its files"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(container_id("web-1_a").is_ok());
        for bad in ["", "Web", "a/b", "..", "a b", "a.b", &"x".repeat(101), "é"] {
            assert!(container_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn groups() {
        for good in ["/", "/default", "/a/b-c"] {
            assert!(group_path(good).is_ok(), "{good}");
        }
        for bad in ["", "default", "//", "/a/", "/a//b", "/../x", "/A"] {
            assert!(group_path(bad).is_err(), "{bad}");
        }
        assert_eq!(group_parent("/a/b"), Some("/a"));
        assert_eq!(group_parent("/a"), Some("/"));
        assert_eq!(group_parent("/"), None);
    }

    #[test]
    fn subdatasets() {
        assert!(subdataset("var/log").is_ok());
        for bad in [
            "",
            "/var",
            "var/",
            "var/../x",
            "a//b",
            ".",
            "private",
            "var/private",
        ] {
            assert!(subdataset(bad).is_err(), "{bad}");
        }
    }
}
