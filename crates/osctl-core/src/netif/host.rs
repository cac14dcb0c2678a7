//! The host's side of networking: bridges, the host's own addresses, `ip`
//! on the host and inside a container's network namespace.

use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

use crate::cmd::{Cmd, ExecError};
use crate::error::{Context, Error, Result};
use crate::model::grammar;

/// `ip ARGS` on the host.
pub fn ip<I, S>(args: I) -> Cmd
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Cmd::new("ip").args(args)
}

/// `ip ARGS` in the network namespace of process `pid` (a container's init):
/// the host's `ip`, so nothing in the container's root file system runs.
pub fn ip_in<I, S>(pid: u32, args: I) -> Cmd
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Cmd::new("nsenter")
        .args(["--target", &pid.to_string(), "--net", "--", "ip"])
        .args(args)
}

/// Runs `cmd`; an error whose stderr says the thing is already there (or
/// already gone, for deletions) counts as success.
pub fn run_idempotent(cmd: &Cmd, what: impl FnOnce() -> String) -> Result<()> {
    match cmd.run() {
        Ok(_) => Ok(()),
        Err(e) if already_done(&e) => Ok(()),
        Err(e) => Err(Error::exec(what(), e)),
    }
}

fn already_done(e: &ExecError) -> bool {
    let s = e.stderr();
    s.contains("File exists")
        || s.contains("Address already assigned")
        || s.contains("No such process")
        || s.contains("Cannot assign requested address")
}

const SYS_NET: &str = "/sys/class/net";

pub fn iface_exists(name: &str) -> bool {
    Path::new(SYS_NET).join(name).exists()
}

/// Checks that `name` is a bridge of the host. osctl attaches to bridges,
/// never creates them.
pub fn require_bridge(name: &str) -> Result<()> {
    grammar::ifname("bridge", name)?;
    let dev = Path::new(SYS_NET).join(name);
    if !dev.exists() {
        return Err(Error::not_found(format!(
            "bridge '{name}' does not exist on this host (osctl does not create bridges: \
             create it first, e.g. `ip link add {name} type bridge`)"
        )));
    }
    if !dev.join("bridge").is_dir() {
        return Err(Error::invalid(format!(
            "host interface '{name}' is not a bridge"
        )));
    }
    Ok(())
}

/// One address of a host interface, as `ip -j addr` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct HostAddr {
    pub dev: String,
    pub addr: IpAddr,
    pub prefix: u8,
    pub link_scope: bool,
}

#[derive(Deserialize)]
struct IpLink {
    ifname: String,
    #[serde(default)]
    addr_info: Vec<IpAddrInfo>,
}

#[derive(Deserialize)]
struct IpAddrInfo {
    #[serde(default)]
    local: Option<String>,
    #[serde(default)]
    prefixlen: u8,
    #[serde(default)]
    scope: String,
}

/// Parses `ip -j addr show` output.
pub fn parse_addrs(json: &str) -> Result<Vec<HostAddr>> {
    let links: Vec<IpLink> = serde_json::from_str(json)
        .map_err(|e| Error::invalid(format!("cannot parse `ip -j addr` output: {e}")))?;
    Ok(links
        .into_iter()
        .flat_map(|l| {
            let dev = l.ifname;
            l.addr_info.into_iter().filter_map(move |a| {
                Some(HostAddr {
                    dev: dev.clone(),
                    addr: a.local?.parse().ok()?,
                    prefix: a.prefixlen,
                    link_scope: a.scope == "link",
                })
            })
        })
        .collect())
}

/// The addresses of one host interface, or of all.
pub fn addrs(dev: Option<&str>) -> Result<Vec<HostAddr>> {
    let mut cmd = ip(["-j", "addr", "show"]);
    if let Some(dev) = dev {
        cmd = cmd.args(["dev", dev]);
    }
    let out = cmd.run().ctx(|| "cannot list the host's addresses")?;
    parse_addrs(&out)
}

#[derive(Deserialize)]
struct IpRoute {
    #[serde(default)]
    gateway: Option<String>,
}

/// Parses `ip -j route show default` output: the gateways.
pub fn parse_gateways(json: &str) -> Result<Vec<IpAddr>> {
    let routes: Vec<IpRoute> = serde_json::from_str(json)
        .map_err(|e| Error::invalid(format!("cannot parse `ip -j route` output: {e}")))?;
    Ok(routes
        .into_iter()
        .filter_map(|r| r.gateway?.parse().ok())
        .collect())
}

/// The host's default gateways, IPv4 and IPv6.
pub fn default_gateways() -> Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for family in ["-4", "-6"] {
        let json = ip(["-j", family, "route", "show", "default"])
            .run()
            .ctx(|| "cannot list the host's routes")?;
        out.extend(parse_gateways(&json)?);
    }
    Ok(out)
}

/// The gateway a bridged interface gets for `auto`: the bridge's first
/// address of the version, a global one before a link-local one.
pub fn bridge_gateway(bridge: &str, v6: bool) -> Result<Option<IpAddr>> {
    let addrs = addrs(Some(bridge))?;
    let of_version = addrs.iter().filter(|a| a.addr.is_ipv6() == v6);
    let mut sorted: Vec<&HostAddr> = of_version.collect();
    sorted.sort_by_key(|a| a.link_scope);
    Ok(sorted.first().map(|a| a.addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_from_ip_json() {
        let json = r#"[{"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host"}]},
{"ifindex":5,"ifname":"br0","addr_info":[{"family":"inet","local":"10.0.0.1","prefixlen":24,"scope":"global"},
{"family":"inet6","local":"fe80::1","prefixlen":64,"scope":"link"},{"family":"inet6","local":"fd00::1","prefixlen":64,"scope":"global"}]},
{"ifindex":6,"ifname":"ifb0"}]"#;
        let addrs = parse_addrs(json).unwrap();
        assert_eq!(addrs.len(), 4);
        assert_eq!(addrs[1].dev, "br0");
        assert_eq!(addrs[1].addr, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(addrs[1].prefix, 24);
        assert!(addrs[2].link_scope && !addrs[3].link_scope);
        assert!(parse_addrs("not json").is_err());
    }

    #[test]
    fn gateways_from_ip_json() {
        let json = r#"[{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]},{"dst":"default","dev":"wg0","flags":[]}]"#;
        assert_eq!(
            parse_gateways(json).unwrap(),
            vec!["192.0.2.1".parse::<IpAddr>().unwrap()]
        );
        assert!(parse_gateways("[]").unwrap().is_empty());
    }
}
