//! What every `ls` command shares, after the original osctl: `-H` (no
//! header), `-o COLS` (columns), `-L` (list the columns), `-s COLS` (sort).
//! Rows are the typed structures `-j` prints; a table cell is the JSON
//! field of the same name, so the table and `-j` cannot disagree.

use std::cmp::Ordering;

use anyhow::Result;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::output;

/// A kind of row an `ls` command prints.
pub trait Listed: Serialize {
    /// Every column (a field of the JSON object) with what it holds, in the
    /// order `-L` lists them.
    const COLUMNS: &'static [(&'static str, &'static str)];
    /// The columns printed without `-o`.
    const DEFAULT: &'static [&'static str];
}

#[derive(clap::Args, Debug, Default, Clone)]
pub struct ListOpts {
    /// Do not print the header line
    #[arg(short = 'H', long = "hide-header")]
    pub hide_header: bool,
    /// Columns to print, comma-separated (-L lists them)
    #[arg(short = 'o', long = "output", value_name = "COLS")]
    pub output: Option<String>,
    /// List the available columns and exit
    #[arg(short = 'L', long = "list")]
    pub list: bool,
    /// Sort by these columns, comma-separated
    #[arg(short = 's', long = "sort", value_name = "COLS")]
    pub sort: Option<String>,
}

/// A comma-separated option as its parts; None when not given.
pub fn split(list: &Option<String>) -> Option<Vec<String>> {
    list.as_ref().map(|l| {
        l.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    })
}

/// Keeps what a comma-separated filter allows (everything without one).
pub fn allowed(filter: &Option<Vec<String>>, value: &str) -> bool {
    filter.as_ref().is_none_or(|f| f.iter().any(|v| v == value))
}

fn columns<T: Listed>(given: &Option<String>, option: &str) -> Result<Vec<String>> {
    let Some(names) = split(given) else {
        return Ok(T::DEFAULT.iter().map(|c| c.to_string()).collect());
    };
    for name in &names {
        if !T::COLUMNS.iter().any(|(c, _)| c == name) {
            let known: Vec<&str> = T::COLUMNS.iter().map(|(c, _)| *c).collect();
            return Err(osctl_core::Error::invalid(format!(
                "{option}: unknown column '{name}' (columns: {})",
                known.join(", ")
            ))
            .into());
        }
    }
    Ok(names)
}

/// Prints `rows` as the options say: a table, or with `json` one JSON array
/// (of the `-o` columns only, when given).
pub fn print<T: Listed>(opts: &ListOpts, json: bool, rows: &[T]) -> Result<()> {
    if opts.list {
        let width = T::COLUMNS.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
        for (name, help) in T::COLUMNS {
            outln!("{name:<width$}  {help}");
        }
        return Ok(());
    }
    let shown = columns::<T>(&opts.output, "-o")?;
    let sort = match &opts.sort {
        Some(_) => columns::<T>(&opts.sort, "-s")?,
        None => Vec::new(),
    };
    let objects: Vec<Map<String, Value>> = rows.iter().map(object).collect::<Result<_>>()?;
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| {
        sort.iter()
            .map(|c| compare(&objects[a][c.as_str()], &objects[b][c.as_str()]))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    });
    if json && opts.output.is_none() {
        // The rows themselves: their fields in their own order.
        return output::json(&order.iter().map(|&i| &rows[i]).collect::<Vec<_>>());
    }
    let mut objects: Vec<Map<String, Value>> = order.iter().map(|&i| objects[i].clone()).collect();
    if json {
        for o in &mut objects {
            o.retain(|k, _| shown.contains(k));
        }
        return output::json(&objects);
    }
    let header: Vec<String> = shown.iter().map(|c| c.to_uppercase()).collect();
    let cells: Vec<Vec<String>> = objects
        .iter()
        .map(|o| shown.iter().map(|c| cell(&o[c.as_str()])).collect())
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    output::table_opt((!opts.hide_header).then_some(&header[..]), &cells);
    Ok(())
}

fn object<T: Serialize>(row: &T) -> Result<Map<String, Value>> {
    match serde_json::to_value(row)? {
        Value::Object(m) => Ok(m),
        _ => Err(anyhow::anyhow!("a row is not a JSON object")),
    }
}

/// Prints one row (`show`): as JSON, or as `column: value` lines.
pub fn show<T: Listed>(json: bool, row: &T) -> Result<()> {
    if json {
        return output::json(row);
    }
    output::pairs(&pairs(row)?);
    Ok(())
}

/// A row as `(column, cell)` pairs, every column in `-L` order.
pub fn pairs<T: Listed>(row: &T) -> Result<Vec<(&'static str, String)>> {
    let object = object(row)?;
    Ok(T::COLUMNS
        .iter()
        .map(|(c, _)| (*c, cell(&object[*c])))
        .collect())
}

/// Numbers by value, everything else by its cell text.
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        _ => cell(a).cmp(&cell(b)),
    }
}

/// A JSON value as a table cell: lists joined with commas, nothing as `-`.
pub fn cell(v: &Value) -> String {
    let text = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    };
    if text.is_empty() {
        "-".into()
    } else {
        text
    }
}

// --- the kinds of rows ------------------------------------------------------

impl Listed for osctl_core::containers::ContainerInfo {
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("pool", "the pool holding it"),
        ("id", "the container's id"),
        ("user", "the user whose id map it runs with"),
        ("group", "its group"),
        ("state", "stopped, starting, running or stopping"),
        ("rootfs", "where its root file system is on the host"),
        ("privileged", "whether it runs without a user namespace"),
        ("hostname", "its host name"),
        ("datasets", "its subdatasets"),
        (
            "send",
            "a send under way: staged or received (target), sending: STEP (source)",
        ),
    ];
    const DEFAULT: &'static [&'static str] = &["pool", "id", "user", "group", "state", "send"];
}

impl Listed for osctl_core::accounts::UserInfo {
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("pool", "the pool holding it"),
        ("name", "the user's name"),
        ("uid_map", "its uid map, NS:HOST:COUNT"),
        ("gid_map", "its gid map, NS:HOST:COUNT"),
        ("standalone", "the original's flag, kept for archives"),
    ];
    const DEFAULT: &'static [&'static str] = &["pool", "name", "uid_map", "gid_map"];
}

impl Listed for osctl_core::accounts::GroupInfo {
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("pool", "the pool holding it"),
        ("name", "the group's path"),
        ("parent", "its parent group"),
        ("cgparams", "its cgroup parameters"),
        ("devices", "its device access rules"),
    ];
    const DEFAULT: &'static [&'static str] = &["pool", "name"];
}

impl Listed for osctl_core::host::PoolEntry {
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("name", "the pool's name"),
        ("backend", "dir, zfs or btrfs"),
        ("location", "its directory or dataset"),
    ];
    const DEFAULT: &'static [&'static str] = &["name", "backend", "location"];
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// -L and -o name what -j prints: every column is a field of the row.
    fn columns_are_fields<T: Listed>(row: T) {
        let value = serde_json::to_value(&row).unwrap();
        let fields: Vec<&String> = value.as_object().unwrap().keys().collect();
        let columns: Vec<&str> = T::COLUMNS.iter().map(|(c, _)| *c).collect();
        assert_eq!(fields.len(), columns.len(), "{fields:?} {columns:?}");
        for c in columns.iter().chain(T::DEFAULT) {
            assert!(fields.iter().any(|f| f == c), "{c} is not a field");
        }
    }

    #[test]
    fn every_column_is_a_field() {
        use osctl_core::accounts::{GroupInfo, UserInfo};
        use osctl_core::containers::ContainerInfo;
        use osctl_core::host::PoolEntry;
        columns_are_fields(ContainerInfo {
            id: "a".into(),
            pool: "p".into(),
            user: "u".into(),
            group: "/".into(),
            state: osctl_core::runtime::CtState::Stopped,
            rootfs: "/x".into(),
            privileged: false,
            hostname: "a".into(),
            datasets: vec![],
            send: None,
        });
        columns_are_fields(UserInfo {
            pool: "p".into(),
            name: "u".into(),
            uid_map: vec![],
            gid_map: vec![],
            standalone: true,
        });
        columns_are_fields(GroupInfo {
            pool: "p".into(),
            name: "/".into(),
            parent: None,
            cgparams: vec![],
            devices: vec![],
        });
        columns_are_fields(PoolEntry {
            name: "p".into(),
            backend: osctl_core::storage::Backend::Dir,
            location: "/x".into(),
        });
    }

    #[test]
    fn cells() {
        assert_eq!(cell(&json!(null)), "-");
        assert_eq!(cell(&json!([])), "-");
        assert_eq!(cell(&json!(["a", "b"])), "a,b");
        assert_eq!(cell(&json!(true)), "true");
        assert_eq!(cell(&json!(12)), "12");
        assert_eq!(cell(&json!({"a": 1})), "{\"a\":1}");
    }

    #[test]
    fn numbers_sort_by_value() {
        assert_eq!(compare(&json!(9), &json!(10)), Ordering::Less);
        assert_eq!(compare(&json!("9"), &json!("10")), Ordering::Greater);
    }

    #[test]
    fn filters() {
        let f = split(&Some("a, b,".into()));
        assert_eq!(f, Some(vec!["a".to_string(), "b".to_string()]));
        assert!(allowed(&f, "b") && !allowed(&f, "c") && allowed(&None, "c"));
    }
}
