//! Process resource limits of a container's init (`prlimits`), applied by
//! LXC as `lxc.prlimit.NAME = SOFT:HARD`. osctld writes them as a mapping
//! `{nofile: {soft: 1024, hard: 4096}}`; older configs as a list of
//! `{name, soft, hard}`.

use serde_json::{Map, Value};

use super::cgparams::digits;
use crate::error::{Error, Result};
use crate::model::grammar;

/// The limits osctld accepts (`prlimit_set.rb`), in setrlimit(2)'s names.
pub const NAMES: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// Numbers above this are refused as absurd (RLIM_INFINITY is spelled
/// `unlimited`).
pub const MAX_VALUE: u64 = i64::MAX as u64;

/// A soft or hard limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RlimValue {
    Value(u64),
    Unlimited,
}

impl std::fmt::Display for RlimValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RlimValue::Value(n) => write!(f, "{n}"),
            RlimValue::Unlimited => f.write_str("unlimited"),
        }
    }
}

impl serde::Serialize for RlimValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            RlimValue::Value(n) => s.serialize_u64(*n),
            RlimValue::Unlimited => s.serialize_str("unlimited"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PrLimit {
    pub name: String,
    pub soft: RlimValue,
    pub hard: RlimValue,
}

impl PrLimit {
    pub fn lxc_line(&self) -> (String, String) {
        (
            format!("lxc.prlimit.{}", self.name),
            format!("{}:{}", self.soft, self.hard),
        )
    }
}

/// Parses one limit: a known name, soft at most hard.
pub fn parse(name: &str, soft: &Value, hard: &Value) -> Result<PrLimit> {
    if !NAMES.contains(&name) {
        return Err(Error::invalid(format!(
            "process limit {} is unknown (known: {})",
            grammar::shown(name),
            NAMES.join(", ")
        )));
    }
    let value = |which: &str, v: &Value| -> Result<RlimValue> {
        let text = match v {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => {
                return Err(Error::invalid(format!(
                    "process limit '{name}': {which} is not a number or 'unlimited'"
                )))
            }
        };
        if text == "unlimited" {
            return Ok(RlimValue::Unlimited);
        }
        match digits(&text) {
            Some(n) if n <= MAX_VALUE => Ok(RlimValue::Value(n)),
            _ => Err(Error::invalid(format!(
                "process limit '{name}': {which} {} is not a whole number up to {MAX_VALUE} or 'unlimited'",
                grammar::shown(&text)
            ))),
        }
    };
    let soft = value("soft", soft)?;
    let hard = value("hard", hard)?;
    if soft > hard {
        return Err(Error::invalid(format!(
            "process limit '{name}': soft {soft} is above hard {hard}"
        )));
    }
    Ok(PrLimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

/// Reads a config's `prlimits`: a mapping, a list, or nothing.
pub fn from_config(value: Option<&Value>) -> Result<Vec<PrLimit>> {
    let mut out: Vec<PrLimit> = Vec::new();
    let mut add = |at: String, name: &str, entry: &Value| -> Result<()> {
        let Some(m) = entry.as_object() else {
            return Err(Error::invalid(format!("{at} is not a mapping")));
        };
        let get = |k: &str| m.get(k).unwrap_or(&Value::Null);
        let limit = parse(name, get("soft"), get("hard")).map_err(|e| e.context(&at))?;
        if out.iter().any(|l| l.name == limit.name) {
            return Err(Error::invalid(format!("{at}: '{name}' is set twice")));
        }
        out.push(limit);
        Ok(())
    };
    match value {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, entry) in map {
                add(format!("prlimits.{}", grammar::escaped(name)), name, entry)?;
            }
        }
        Some(Value::Array(items)) => {
            for (i, entry) in items.iter().enumerate() {
                let name = match entry.get("name") {
                    Some(Value::String(s)) => s.as_str(),
                    _ => {
                        return Err(Error::invalid(format!(
                            "prlimits[{i}].name is not a string"
                        )))
                    }
                };
                add(format!("prlimits[{i}]"), name, entry)?;
            }
        }
        Some(_) => return Err(Error::invalid("prlimits is not a mapping or a list")),
    }
    Ok(out)
}

/// The mapping osctld writes.
pub fn to_config(limits: &[PrLimit]) -> Value {
    let mut map = Map::new();
    for l in limits {
        map.insert(
            l.name.clone(),
            serde_json::json!({"soft": l.soft, "hard": l.hard}),
        );
    }
    Value::Object(map)
}

/// The host's ceiling for open files (`fs.nr_open`): LXC cannot set a
/// higher `nofile`, and the start would fail.
pub fn check_host(limits: &[PrLimit]) -> Result<()> {
    let Some(nofile) = limits.iter().find(|l| l.name == "nofile") else {
        return Ok(());
    };
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    if let Some(ceiling) = nr_open {
        let over = |v: RlimValue| v > RlimValue::Value(ceiling);
        if over(nofile.soft) || over(nofile.hard) {
            return Err(Error::refused(format!(
                "process limit 'nofile' ({}:{}) exceeds this host's fs.nr_open ({ceiling})",
                nofile.soft, nofile.hard
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn forms_of_configs() {
        assert!(from_config(None).unwrap().is_empty());
        assert!(from_config(Some(&json!([]))).unwrap().is_empty());
        let map = from_config(Some(&json!({"nofile": {"soft": 1024, "hard": 4096}}))).unwrap();
        assert_eq!(
            map[0].lxc_line(),
            ("lxc.prlimit.nofile".into(), "1024:4096".into())
        );
        let list = from_config(Some(
            &json!([{"name": "nproc", "soft": "unlimited", "hard": "unlimited"}]),
        ))
        .unwrap();
        assert_eq!(list[0].lxc_line().1, "unlimited:unlimited");
        assert_eq!(
            to_config(&map),
            json!({"nofile": {"soft": 1024, "hard": 4096}})
        );
    }

    #[test]
    fn hostile_values() {
        for bad in [
            json!({"nofile": {"soft": 1, "hard": "2\nlxc.hook.pre-start = /bin/sh"}}),
            json!({"nofile": {"soft": 5, "hard": 4}}),
            json!({"nofile": {"soft": "unlimited", "hard": 4}}),
            json!({"nofile": {"soft": -1, "hard": 4}}),
            json!({"nofile": {"soft": 1, "hard": 99999999999999999999u128.to_string()}}),
            json!({"nofile": {"soft": 1, "hard": 9223372036854775808u64}}),
            json!({"nofile": {"soft": 1}}),
            json!({"nofile": {"soft": 1.5, "hard": 2}}),
            json!({"bogus": {"soft": 1, "hard": 2}}),
            json!({"no file": {"soft": 1, "hard": 2}}),
            json!([{"name": "nofile", "soft": 1, "hard": 2}, {"name": "nofile", "soft": 1, "hard": 2}]),
            json!("nofile=1"),
        ] {
            let e = from_config(Some(&bad))
                .expect_err(&bad.to_string())
                .to_string();
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
