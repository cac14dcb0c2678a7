//! What runs containers. One implementation, LXC; a pool holds its runtime
//! as it holds its storage ([`crate::pool::Pool::runtime`]), and the rest of
//! the code reaches it only through the trait.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::idmap::IdMap;
use crate::model::netif::IpNet;

pub mod lxc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CtState {
    Stopped,
    Starting,
    Running,
    Stopping,
}

impl CtState {
    pub fn as_str(self) -> &'static str {
        match self {
            CtState::Stopped => "stopped",
            CtState::Starting => "starting",
            CtState::Running => "running",
            CtState::Stopping => "stopping",
        }
    }

    /// True when the container has processes (anything but stopped).
    pub fn is_up(self) -> bool {
        self != CtState::Stopped
    }
}

impl std::fmt::Display for CtState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A host path mounted into the container (`mounts` in container.yml).
#[derive(Debug, Clone, PartialEq)]
pub struct MountSpec {
    pub source: String,
    /// Absolute path inside the container.
    pub target: String,
    pub fstype: String,
    pub options: String,
}

/// A veth interface: `name` inside, `host_veth` on the host side.
#[derive(Debug, Clone, PartialEq)]
pub struct NetSpec {
    pub name: String,
    pub hwaddr: String,
    pub host_veth: String,
    /// The bridge the host side joins; None for a routed interface.
    pub link: Option<String>,
    /// Configured inside before init runs.
    pub addrs: Vec<IpNet>,
    /// The container's default routes, at most one per version.
    pub gateways: Vec<IpAddr>,
    /// Routes on the host into the host side.
    pub host_routes: Vec<IpNet>,
    /// A command the runtime runs on the host once the veth exists; the
    /// runtime appends its own arguments, the host side's name last.
    pub up_hook: Option<String>,
}

/// Everything the runtime needs to start a container.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub id: String,
    pub rootfs: PathBuf,
    pub hostname: String,
    pub init: Vec<String>,
    /// None: privileged, no user namespace.
    pub idmap: Option<(IdMap, IdMap)>,
    pub mounts: Vec<MountSpec>,
    pub raw_lxc: Option<String>,
    pub log_file: PathBuf,
    /// Network interfaces; none means no network at all.
    pub net: Vec<NetSpec>,
    /// LXC lines of its cgroup, limits, device policy and process limits
    /// (`resources/`): keys and values checked there.
    pub resources: Vec<(String, String)>,
}

pub trait Runtime {
    fn state(&self, id: &str) -> Result<CtState>;
    /// Starts the container and waits until it runs.
    fn start(&self, spec: &RunSpec) -> Result<()>;
    /// Asks init to shut down, kills everything after `timeout`.
    fn stop(&self, id: &str, timeout: Duration) -> Result<()>;
    /// Waits until the container is running or stopped (a start or stop
    /// under way goes on without its caller) and returns which.
    fn settle(&self, id: &str) -> Result<CtState>;
    /// Freezes every process of a running container (cgroup freezer): a
    /// pause without a shutdown, for a crash-consistent snapshot.
    fn freeze(&self, id: &str) -> Result<()>;
    /// Lets a frozen container run again; a container not frozen is fine.
    fn thaw(&self, id: &str) -> Result<()>;
    /// Runs a command inside, with the caller's stdio; returns its exit code.
    fn exec(&self, id: &str, argv: &[String]) -> Result<i32>;
    /// Forgets the container (its runtime config).
    fn remove(&self, id: &str) -> Result<()>;
    /// The host pid of a running container's init.
    fn init_pid(&self, id: &str) -> Result<Option<u32>>;
    /// Sets a cgroup file of a running container (`devices.allow`, ...).
    fn cgroup_set(&self, id: &str, key: &str, value: &str) -> Result<()>;
}

pub(crate) fn not_running(id: &str) -> Error {
    Error::refused(format!("container '{id}' is not running"))
}
