use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::netif::{self, NetIf};
use super::{empty_map, grammar, Extra};
use crate::error::Result;
use crate::yaml;

/// `conf/ct/<id>.yml` and `config/container.yml` in archives.
///
/// The fields below are the ones we act on; every other key (distribution,
/// autostart, ...) rides along in `extra`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContainerConfig {
    pub user: String,
    pub group: String,
    #[serde(default)]
    pub dataset: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    /// The command run as init; None means `/sbin/init`.
    #[serde(default)]
    pub init_cmd: Option<InitCmd>,
    /// cgroup limits, `{version, subsystem, name, value, persistent}` (`resources/`).
    #[serde(default)]
    pub cgparams: Vec<Value>,
    /// Process limits: `{NAME: {soft, hard}}` (older configs: a list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prlimits: Option<Value>,
    #[serde(default)]
    pub devices: Vec<Value>,
    #[serde(default)]
    pub mounts: Vec<Value>,
    /// Raw LXC configuration: `{lxc: "lines"}` as osctld writes it.
    #[serde(default)]
    pub raw: Option<Value>,
    /// Ours: run without a user namespace. Only with explicit consent, for file
    /// systems without idmapped mounts (zfs-fuse).
    #[serde(default, skip_serializing_if = "is_false")]
    pub privileged: bool,
    /// Veth interfaces, bridged or routed (`model/netif.rs`).
    #[serde(default)]
    pub net_interfaces: Vec<NetIf>,
    #[serde(default = "empty_map")]
    pub attrs: Value,
    #[serde(flatten)]
    pub extra: Extra,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `init_cmd` is a list of arguments in osctld; a single string is accepted too.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum InitCmd {
    Argv(Vec<String>),
    Line(String),
}

impl InitCmd {
    pub fn argv(&self) -> Vec<String> {
        match self {
            InitCmd::Argv(v) => v.clone(),
            InitCmd::Line(s) => s.split_whitespace().map(String::from).collect(),
        }
    }
}

impl ContainerConfig {
    pub fn new(user: &str, group: &str) -> Self {
        ContainerConfig {
            user: user.to_string(),
            group: group.to_string(),
            dataset: None,
            hostname: None,
            init_cmd: None,
            cgparams: Vec::new(),
            prlimits: None,
            devices: Vec::new(),
            mounts: Vec::new(),
            raw: None,
            privileged: false,
            net_interfaces: Vec::new(),
            attrs: empty_map(),
            extra: Extra::new(),
        }
    }

    /// Raw LXC lines, if any.
    pub fn raw_lxc(&self) -> Option<String> {
        let raw = self.raw.as_ref()?;
        let text = match raw {
            Value::String(s) => s.clone(),
            Value::Object(m) => match m.get("lxc") {
                Some(Value::String(s)) => s.clone(),
                _ => return None,
            },
            _ => return None,
        };
        (!text.trim().is_empty()).then_some(text)
    }

    /// Parses `config/container.yml` or `conf/ct/<id>.yml` and checks every
    /// value that reaches LXC, a command line or a path ([`grammar`]).
    /// Errors name `what` and the field.
    pub fn parse(bytes: &[u8], what: &str) -> Result<Self> {
        let cfg: ContainerConfig = yaml::parse_bytes(bytes, what)?;
        cfg.validate().map_err(|e| e.context(what))?;
        Ok(cfg)
    }

    /// Checks the values that leave the config (see [`grammar`]).
    pub fn validate(&self) -> Result<()> {
        if let Some(name) = &self.hostname {
            grammar::host_name("hostname", name)?;
        }
        if let Some(cmd) = &self.init_cmd {
            grammar::init_cmd(cmd)?;
        }
        for (i, m) in self.mounts.iter().enumerate() {
            grammar::mount(i, m)?;
        }
        if let Some(raw) = self.raw_lxc() {
            grammar::raw_lxc(&raw)?;
        }
        crate::resources::Settings::of_container(self)?;
        netif::validate_all(&self.net_interfaces)
    }

    pub fn init_argv(&self) -> Vec<String> {
        match &self.init_cmd {
            Some(cmd) if !cmd.argv().is_empty() => cmd.argv(),
            _ => vec!["/sbin/init".to_string()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_survive() {
        let text = "---\nuser: u\ngroup: /default\ndataset: tank/ct/a\ndistribution: debian\n\
                    net_interfaces: []\nautostart:\n  priority: 10\n  delay: 5\nfuture_key: {x: 1}\n";
        let cfg: ContainerConfig = yaml::parse(text, "t").unwrap();
        assert_eq!(cfg.extra["distribution"], "debian");
        let again: ContainerConfig = yaml::parse(&yaml::to_string(&cfg).unwrap(), "t").unwrap();
        assert_eq!(cfg, again);
        assert_eq!(again.extra["future_key"]["x"], 1);
    }

    #[test]
    fn raw_forms() {
        let mut c = ContainerConfig::new("u", "/default");
        assert_eq!(c.raw_lxc(), None);
        c.raw = Some(serde_json::json!({"lxc": "lxc.cap.drop = \n"}));
        assert!(c.raw_lxc().is_some());
        c.raw = Some(serde_json::json!({"lxc": null}));
        assert_eq!(c.raw_lxc(), None);
    }
}
