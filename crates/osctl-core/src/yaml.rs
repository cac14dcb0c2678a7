//! YAML in and out. Everything parsed here may come from a hostile archive, so
//! parsing runs under a budget: bounded input, depth, nodes, aliases and
//! scalar bytes, and duplicate keys are errors.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// Largest YAML document we accept (configs are a few KiB).
pub const MAX_YAML_BYTES: usize = 1024 * 1024;

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(MAX_YAML_BYTES),
            max_events: 200_000,
            max_aliases: 64,
            max_anchors: 64,
            max_depth: 64,
            max_nodes: 100_000,
            max_documents: 1,
            max_total_scalar_bytes: MAX_YAML_BYTES,
        },
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
    }
}

/// Parses `text`; `what` names the document in the error (e.g. "config/user.yml").
pub fn parse<T: DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    if text.len() > MAX_YAML_BYTES {
        return Err(Error::invalid(format!(
            "{what}: larger than the {} KiB allowed for a YAML document",
            MAX_YAML_BYTES / 1024
        )));
    }
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| {
        Error::invalid(format!(
            "{what}: invalid YAML: {}",
            one_line(&e.to_string())
        ))
    })
}

/// Like [`parse`], for bytes that must be UTF-8.
pub fn parse_bytes<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| Error::invalid(format!("{what}: not UTF-8 text")))?;
    parse(text, what)
}

pub fn to_string<T: Serialize>(value: &T) -> Result<String> {
    let body = serde_saphyr::to_string(value)
        .map_err(|e| Error::invalid(format!("cannot write YAML: {e}")))?;
    // Ruby's YAML.dump starts documents with `---`; keep files looking alike.
    Ok(format!("---\n{body}"))
}

fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn round_trip_value() {
        let v: Value = parse("---\na: 1\nb: [x, y]\nc: null\n", "t").unwrap();
        let text = to_string(&v).unwrap();
        let back: Value = parse(&text, "t").unwrap();
        assert_eq!(v, back);
    }

    #[test]
    fn billion_laughs_is_refused() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            doc += &format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n");
        }
        assert!(parse::<Value>(&doc, "bomb").is_err());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let doc = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(parse::<Value>(&doc, "deep").is_err());
    }

    #[test]
    fn duplicate_keys_are_refused() {
        assert!(parse::<Value>("a: 1\na: 2\n", "dup").is_err());
    }

    #[test]
    fn huge_input_is_refused() {
        let doc = format!("a: {}\n", "x".repeat(MAX_YAML_BYTES + 1));
        assert!(parse::<Value>(&doc, "huge").is_err());
    }
}
