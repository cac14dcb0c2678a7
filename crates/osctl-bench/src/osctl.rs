//! Driving the `osctl` binary under test, with its state in the work directory.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use osctl_core::cmd::Cmd;

use crate::run::Step;

#[derive(Debug, Clone)]
pub struct Osctl {
    pub bin: PathBuf,
    pub root: PathBuf,
}

/// What `ct show -j` tells the benchmark.
#[derive(Debug, Clone)]
pub struct CtInfo {
    pub rootfs: PathBuf,
    pub state: String,
}

impl Osctl {
    pub fn argv<I, S>(&self, pool: Option<&str>, args: I) -> Vec<OsString>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut v: Vec<OsString> = vec![self.bin.clone().into_os_string(), "-q".into()];
        if let Some(pool) = pool {
            v.push("--pool".into());
            v.push(pool.into());
        }
        v.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        v
    }

    /// A step running `osctl [--pool POOL] ARGS...` (for timing).
    pub fn step<I, S>(&self, pool: &str, args: I) -> Step
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Step::cmd(self.argv(Some(pool), args)).env("OSCTL_ROOT", &self.root)
    }

    /// Runs `osctl` to completion; its stdout.
    pub fn run<I, S>(&self, pool: Option<&str>, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let argv = self.argv(pool, args);
        let cmd = Cmd::new(&argv[0])
            .args(&argv[1..])
            .env("OSCTL_ROOT", &self.root);
        Ok(cmd.run()?)
    }

    /// Whether this build has a command (`osctl ct export --help` succeeds).
    pub fn has(&self, words: &[&str]) -> bool {
        let mut args: Vec<&str> = words.to_vec();
        args.push("--help");
        self.run(None, args).is_ok()
    }

    pub fn show(&self, pool: &str, id: &str) -> Result<CtInfo> {
        let out = self.run(Some(pool), ["-j", "ct", "show", id])?;
        parse_show(&out).with_context(|| format!("osctl ct show -j {id}"))
    }

    pub fn lxc_path(&self, pool: &str) -> PathBuf {
        self.root.join("lxc").join(pool)
    }
}

/// The fields the benchmark needs from `osctl ct show -j`.
pub fn parse_show(json: &str) -> Result<CtInfo> {
    let v: serde_json::Value = serde_json::from_str(json)?;
    let field = |name: &str| {
        v.get(name)
            .and_then(|x| x.as_str())
            .map(String::from)
            .ok_or_else(|| anyhow!("no string field '{name}' in {json}"))
    };
    Ok(CtInfo {
        rootfs: PathBuf::from(field("rootfs")?),
        state: field("state")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rootfs_and_state() {
        let info =
            parse_show(r#"{"id":"b","state":"running","rootfs":"/p/ct/b/private","user":"u"}"#)
                .unwrap();
        assert_eq!(info.rootfs, PathBuf::from("/p/ct/b/private"));
        assert_eq!(info.state, "running");
        assert!(parse_show(r#"{"id":"b"}"#).is_err());
        assert!(parse_show("not json").is_err());
    }
}
