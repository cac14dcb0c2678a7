//! Printing: plain tables for people, one JSON document for scripts, and the
//! one-line error.

use serde::Serialize;

/// `println!` that ends the program quietly when stdout is a closed pipe
/// (`osctl -j ct ls | head`) instead of panicking. SIGPIPE stays ignored: a
/// receiving child that dies must be an error we report, not our death.
macro_rules! outln {
    () => {
        $crate::output::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))
    };
}

pub fn write_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{args}") {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: cannot write to standard output: {e}");
        }
        std::process::exit(1);
    }
}

/// The error as one line: causes joined, newlines folded, Rust's
/// "(os error N)" dropped (the text before it says the same), and a part
/// said twice in a row ("container 'a': container 'a': ...") said once.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        // Library errors already include their sources in the message.
        if parts.last().is_some_and(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    let text = parts
        .join(": ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    tidy(&text)
}

fn tidy(text: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in text.split(": ") {
        if out.last() != Some(&part) {
            out.push(part);
        }
    }
    let mut text = out.join(": ");
    while let Some(at) = text.find(" (os error ") {
        match text[at..].find(')') {
            Some(end) => text.replace_range(at..at + end + 1, ""),
            None => break,
        }
    }
    text
}

pub fn is_usage(e: &anyhow::Error) -> bool {
    e.downcast_ref::<osctl_core::Error>()
        .is_some_and(osctl_core::Error::is_usage)
}

pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints rows under a header, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    table_opt(Some(header), rows);
}

/// [`table`], the header optional (`-H`).
pub fn table_opt(header: Option<&[&str]>, rows: &[Vec<String>]) {
    let columns = header.map_or_else(|| rows.first().map_or(0, Vec::len), <[&str]>::len);
    let mut widths: Vec<usize> = vec![0; columns];
    for (w, h) in widths.iter_mut().zip(header.unwrap_or_default()) {
        *w = h.len();
    }
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let text: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.to_string()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        outln!("{}", text.join("  "));
    };
    if let Some(header) = header {
        line(header.to_vec());
    }
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Prints `key: value` lines.
pub fn pairs(items: &[(&str, String)]) {
    let width = items.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (k, v) in items {
        outln!("{:<width$} {v}", format!("{k}:"));
    }
}

/// Bytes as people read them: `512 B`, `12.3 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn seconds(d: std::time::Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// The closing line of an export: where, how big, how long, and how long
/// the container was down.
pub fn exported(id: &str, done: &osctl_core::export::Exported) -> String {
    let mut line = format!(
        "exported container '{id}' to {}: {} in {}",
        done.path.display(),
        bytes(done.bytes),
        seconds(done.elapsed)
    );
    if let Some(down) = done.downtime {
        line.push_str(&format!(", downtime {}", seconds(down)));
    }
    line
}

/// The closing line of an import: the container, its pool, user and group,
/// and what the import created or changed.
pub fn imported(done: &osctl_core::import::Imported) -> String {
    let mut line = format!(
        "imported container '{}' into pool '{}' (user '{}', group '{}')",
        done.id, done.pool, done.user, done.group
    );
    match (&done.fresh_ids, done.new_user) {
        (Some(ids), _) => line.push_str(&format!(
            "; created user '{}' with a fresh id block {ids}",
            done.user
        )),
        (None, true) => line.push_str(&format!("; created user '{}'", done.user)),
        (None, false) => {}
    }
    if done.new_group {
        line.push_str(&format!("; created group '{}'", done.group));
    }
    if let Some((old, new)) = &done.hostname {
        line.push_str(&format!("; hostname '{old}' is now '{new}'"));
    }
    line
}

pub use osctl_core::timefmt::utc_time;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tidied() {
        assert_eq!(
            tidy("container 'a': container 'a': cannot open x: No such file or directory (os error 2)"),
            "container 'a': cannot open x: No such file or directory"
        );
        assert_eq!(tidy("a: b: a"), "a: b: a");
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 30), "5.0 GiB");
    }
}
