//! Network interfaces of containers: veth pairs, bridged (the host side joins
//! an existing host bridge) or routed (the host routes the container's
//! addresses into the host side), kept in `net_interfaces` of container.yml in
//! osctld's format so that archives carry them both ways.
//!
//! At start, LXC creates the veth, configures the addresses and the default
//! route inside before init runs, and adds the host routes of routed
//! interfaces. A routed container's default route goes through the host side
//! as in osctld: via 255.255.255.254 (IPv4) and a link-local address (IPv6),
//! which the host side holds. osctld keeps 255.255.255.254 on a dummy
//! interface `osrtr0` and uses the veth's generated link-local address; here
//! a hook LXC runs once the veth exists puts 255.255.255.254 (scope host) and
//! fe80::1 on the host side itself: no host-wide interface to create or leave
//! behind, and both known before the start, so LXC sets the container's
//! routes before init.
//!
//! MACs are unique on the host and name the host side of the veth
//! (`os` + the MAC's hex digits), see `registry.rs`.

pub mod host;
mod import;
mod live;
pub mod registry;

use std::net::{IpAddr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::containers;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::model::grammar;
use crate::model::netif::{self, ByVersion, Gateways, IpNet, NetIf, Route};
use crate::model::{ContainerConfig, Extra};
use crate::pool::Pool;
use crate::runtime::{CtState, NetSpec};
use crate::yaml;

pub use import::{check_import, finish_import, import_concerns, shape_for_import};
pub use registry::host_veth;

/// The IPv6 gateway of routed containers, on the host side of each veth.
pub const ROUTED_GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// What `ct netif new` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewNetIf {
    /// `bridge` or `routed`.
    pub kind: String,
    pub name: String,
    pub link: Option<String>,
    pub hwaddr: Option<String>,
    pub dhcp: bool,
    pub gateway_v4: Option<String>,
    pub gateway_v6: Option<String>,
}

/// What `ct netif ls` and `show` print.
#[derive(Debug, Clone, Serialize)]
pub struct NetIfInfo {
    pub pool: String,
    pub ctid: String,
    pub name: String,
    pub index: usize,
    #[serde(rename = "type")]
    pub kind: String,
    pub link: Option<String>,
    pub hwaddr: Option<String>,
    /// The host side, while the container runs.
    pub veth: Option<String>,
    pub dhcp: Option<bool>,
    pub gateways: Option<serde_json::Value>,
    pub ip_addresses: ByVersion<String>,
    pub routes: Vec<String>,
}

/// One row of `ct netif ip ls`.
#[derive(Debug, Clone, Serialize)]
pub struct IpInfo {
    pub pool: String,
    pub ctid: String,
    pub netif: String,
    pub version: u8,
    pub addr: String,
}

/// Which route `ip add` gives a routed interface.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum RouteChoice {
    /// The address's network (osctld's default).
    #[default]
    Network,
    None,
    /// A network that includes the address (`--route-as`).
    As(String),
}

fn not_found(id: &str, name: &str) -> Error {
    Error::not_found(format!(
        "network interface '{name}' not found in container '{id}'"
    ))
}

fn index_of(cfg: &ContainerConfig, id: &str, name: &str) -> Result<usize> {
    cfg.net_interfaces
        .iter()
        .position(|n| n.name == name)
        .ok_or_else(|| not_found(id, name))
}

fn require_stopped(pool: &Pool, id: &str, to: &str) -> Result<()> {
    let state = containers::runtime(pool).state(id)?;
    if state.is_up() {
        return Err(Error::refused(format!(
            "container '{id}' is {state}: stop it to {to}"
        )));
    }
    Ok(())
}

/// Adds an interface to a stopped container.
pub fn create(pool: &Pool, id: &str, new: &NewNetIf) -> Result<()> {
    let _lock = pool.lock_ct(id)?;
    let mut cfg = pool.ct(id)?;
    require_stopped(pool, id, "add a network interface")?;
    grammar::ifname("interface name", &new.name)?;
    if cfg.net_interfaces.iter().any(|n| n.name == new.name) {
        return Err(Error::exists(format!(
            "network interface '{}' already exists in container '{id}'",
            new.name
        )));
    }
    let netif = new_netif(new)?;
    if let Some(link) = &netif.link {
        host::require_bridge(link)?;
    }
    cfg.net_interfaces.push(netif);
    netif::validate_all(&cfg.net_interfaces)?;
    let _net = registry::lock(&pool.host)?;
    let holders = registry::holders(&pool.host, Some((&pool.name, id)))?;
    if let Some(mac) = &new.hwaddr {
        let own = cfg.net_interfaces.iter().rev().skip(1);
        let in_ct = own
            .filter_map(|n| n.hwaddr.as_deref())
            .any(|m| m.eq_ignore_ascii_case(mac));
        if let Some(who) =
            registry::mac_user(&holders, mac).or_else(|| in_ct.then(|| format!("container '{id}'")))
        {
            return Err(Error::exists(format!("MAC {mac} is in use by {who}")));
        }
    }
    registry::assign_macs(&holders, &mut cfg.net_interfaces)?;
    pool.save_ct(id, &cfg)
}

fn new_netif(new: &NewNetIf) -> Result<NetIf> {
    let bridge = new.kind == netif::BRIDGE;
    if !bridge && new.kind != netif::ROUTED {
        return Err(Error::invalid(format!(
            "unknown interface type '{}' (bridge or routed)",
            new.kind
        )));
    }
    let gateways = bridge.then(|| {
        let mut g = Gateways::auto();
        g.v4 = new.gateway_v4.clone().or(g.v4);
        g.v6 = new.gateway_v6.clone().or(g.v6);
        g
    });
    // The keys osctld writes for every veth, with its defaults.
    let mut extra = Extra::new();
    for (k, v) in [
        ("max_tx", 0),
        ("max_rx", 0),
        ("tx_queues", 1),
        ("rx_queues", 1),
    ] {
        extra.insert(k.into(), json!(v));
    }
    let netif = NetIf {
        kind: new.kind.clone(),
        name: new.name.clone(),
        hwaddr: new.hwaddr.clone(),
        ip_addresses: ByVersion::default(),
        link: if bridge { new.link.clone() } else { None },
        dhcp: bridge.then_some(new.dhcp),
        gateways,
        routes: (!bridge).then(ByVersion::default),
        extra,
    };
    netif.validate("interface")?;
    Ok(netif)
}

/// Removes an interface of a stopped container.
pub fn delete(pool: &Pool, id: &str, name: &str) -> Result<()> {
    let _lock = pool.lock_ct(id)?;
    let mut cfg = pool.ct(id)?;
    let i = index_of(&cfg, id, name)?;
    require_stopped(pool, id, "remove a network interface")?;
    cfg.net_interfaces.remove(i);
    pool.save_ct(id, &cfg)
}

/// Renames an interface of a stopped container.
pub fn rename(pool: &Pool, id: &str, name: &str, new_name: &str) -> Result<()> {
    let _lock = pool.lock_ct(id)?;
    let mut cfg = pool.ct(id)?;
    let i = index_of(&cfg, id, name)?;
    if name == new_name {
        return Ok(());
    }
    grammar::ifname("interface name", new_name)?;
    if cfg.net_interfaces.iter().any(|n| n.name == new_name) {
        return Err(Error::exists(format!(
            "network interface '{new_name}' already exists in container '{id}'"
        )));
    }
    require_stopped(pool, id, "rename a network interface")?;
    cfg.net_interfaces[i].name = new_name.to_string();
    pool.save_ct(id, &cfg)
}

fn info(pool: &Pool, id: &str, index: usize, n: &NetIf, running: bool) -> NetIfInfo {
    NetIfInfo {
        pool: pool.name.clone(),
        ctid: id.to_string(),
        name: grammar::escaped(&n.name),
        index,
        kind: grammar::escaped(&n.kind),
        link: n.link.as_deref().map(grammar::escaped),
        hwaddr: n.hwaddr.as_deref().map(grammar::escaped),
        veth: n.hwaddr.as_deref().filter(|_| running).map(host_veth),
        dhcp: n.dhcp,
        gateways: n.gateways.as_ref().map(|g| json!({"v4": g.v4, "v6": g.v6})),
        ip_addresses: n.ip_addresses.clone(),
        routes: n
            .routes
            .iter()
            .flat_map(|r| r.iter())
            .map(|(_, r)| match r.via() {
                Some(via) => format!("{} via {via}", r.address()),
                None => r.address().to_string(),
            })
            .collect(),
    }
}

/// The interfaces of one container, or of every container of the pool.
/// Works on a broken config too, as `ct ls` does.
pub fn list(pool: &Pool, id: Option<&str>) -> Result<Vec<NetIfInfo>> {
    let ids = match id {
        Some(id) => vec![id.to_string()],
        None => pool.ct_ids()?,
    };
    let rt = containers::runtime(pool);
    let mut out = Vec::new();
    for id in ids {
        let cfg = pool.ct_unvalidated(&id)?;
        if cfg.net_interfaces.is_empty() {
            continue;
        }
        let running = rt.state(&id)? == CtState::Running;
        for (i, n) in cfg.net_interfaces.iter().enumerate() {
            out.push(info(pool, &id, i, n, running));
        }
    }
    Ok(out)
}

pub fn show(pool: &Pool, id: &str, name: &str) -> Result<NetIfInfo> {
    let cfg = pool.ct_unvalidated(id)?;
    let i = index_of(&cfg, id, name)?;
    let running = containers::runtime(pool).state(id)? == CtState::Running;
    Ok(info(pool, id, i, &cfg.net_interfaces[i], running))
}

/// The addresses of a container's interfaces (one, or all).
pub fn ip_list(pool: &Pool, id: &str, name: Option<&str>) -> Result<Vec<IpInfo>> {
    let cfg = pool.ct_unvalidated(id)?;
    if let Some(name) = name {
        index_of(&cfg, id, name)?;
    }
    let chosen = cfg
        .net_interfaces
        .iter()
        .filter(|n| name.is_none_or(|name| n.name == name));
    Ok(chosen
        .flat_map(|n| {
            n.ip_addresses.iter().map(|(v6, a)| IpInfo {
                pool: pool.name.clone(),
                ctid: id.to_string(),
                netif: grammar::escaped(&n.name),
                version: if v6 { 6 } else { 4 },
                addr: grammar::escaped(a),
            })
        })
        .collect())
}

/// The route `ip add` gives `addr` on a routed interface.
fn route_for(addr: &IpNet, choice: &RouteChoice) -> Result<Option<IpNet>> {
    match choice {
        RouteChoice::Network => Ok(Some(addr.network())),
        RouteChoice::None => Ok(None),
        RouteChoice::As(net) => {
            let r = grammar::ip_net("--route-as", net, addr.is_v6())?;
            if !r.contains(addr.addr) {
                return Err(Error::invalid(format!("{r} does not include {addr}")));
            }
            Ok(Some(r.network()))
        }
    }
}

/// Adds an address; on a running container at once, else at its next start.
pub fn ip_add(pool: &Pool, id: &str, name: &str, addr: &str, route: &RouteChoice) -> Result<()> {
    let _lock = pool.lock_ct(id)?;
    let mut cfg = pool.ct(id)?;
    let i = index_of(&cfg, id, name)?;
    let addr = grammar::ip_net("address", addr, addr.contains(':'))?;
    let n = &mut cfg.net_interfaces[i];
    if n.addresses().iter().any(|a| a.addr == addr.addr) {
        return Err(Error::exists(format!(
            "address {} is already on interface '{name}' of container '{id}'",
            addr.addr
        )));
    }
    n.ip_addresses.get_mut(addr.is_v6()).push(addr.to_string());
    let mut new_route = None;
    if n.is_routed() {
        new_route =
            route_for(&addr, route)?.filter(|r| !n.route_nets().iter().any(|(o, _)| o == r));
        if let Some(r) = new_route {
            let routes = n.routes.get_or_insert_with(ByVersion::default);
            routes.get_mut(r.is_v6()).push(Route::Plain(r.to_string()));
        }
    }
    netif::validate_all(&cfg.net_interfaces)?;
    let _net = registry::lock(&pool.host)?;
    let holders = registry::holders(&pool.host, Some((&pool.name, id)))?;
    if let Some(why) = registry::address_conflict(&cfg.net_interfaces, &holders) {
        return Err(Error::refused(why));
    }
    if live_state(pool, id)? {
        live::add(pool, id, &cfg.net_interfaces[i], addr, new_route)?;
    }
    pool.save_ct(id, &cfg)
}

/// True when the container runs (changes apply live), false when it is
/// stopped; an error while it is starting or stopping.
fn live_state(pool: &Pool, id: &str) -> Result<bool> {
    match containers::runtime(pool).state(id)? {
        CtState::Running => Ok(true),
        CtState::Stopped => Ok(false),
        other => Err(Error::busy(format!("container '{id}' is {other}"))),
    }
}

/// Which addresses `ip del` removes.
#[derive(Debug, Clone, PartialEq)]
pub enum AddrChoice {
    One(String),
    /// All, or all of one version.
    All(Option<u8>),
}

/// Removes addresses and (unless `keep_route`) their routes, and routes via
/// them; on a running container at once.
pub fn ip_del(
    pool: &Pool,
    id: &str,
    name: &str,
    which: &AddrChoice,
    keep_route: bool,
) -> Result<()> {
    let _lock = pool.lock_ct(id)?;
    let mut cfg = pool.ct(id)?;
    let i = index_of(&cfg, id, name)?;
    let n = &mut cfg.net_interfaces[i];
    let removed: Vec<IpNet> = match which {
        AddrChoice::One(a) => {
            let v6 = a.contains(':');
            let addr = grammar::ip_net("address", a, v6)?;
            let found = n.addresses().into_iter().find(|x| x.addr == addr.addr);
            vec![found.ok_or_else(|| {
                Error::not_found(format!(
                    "address {} not found on interface '{name}' of container '{id}'",
                    addr.addr
                ))
            })?]
        }
        AddrChoice::All(version) => n
            .addresses()
            .into_iter()
            .filter(|a| version.is_none_or(|v| (v == 6) == a.is_v6()))
            .collect(),
    };
    for a in &removed {
        n.ip_addresses
            .get_mut(a.is_v6())
            .retain(|s| grammar::ip_net("", s, a.is_v6()).map(|x| x.addr).ok() != Some(a.addr));
    }
    let dropped_routes = drop_routes(n, &removed, keep_route);
    if live_state(pool, id)? {
        live::del(pool, id, &cfg.net_interfaces[i], &removed, &dropped_routes)?;
    }
    pool.save_ct(id, &cfg)
}

/// Removes the routes of removed addresses (their networks, unless kept)
/// and the routes via them; returns what it removed.
fn drop_routes(n: &mut NetIf, removed: &[IpNet], keep_route: bool) -> Vec<(IpNet, Option<IpAddr>)> {
    let Some(routes) = n.routes.as_mut() else {
        return Vec::new();
    };
    let mut dropped = Vec::new();
    for v6 in [false, true] {
        routes.get_mut(v6).retain(|r| {
            let Ok(net) = grammar::ip_net("", r.address(), v6) else {
                return true;
            };
            let via = r.via().and_then(|v| grammar::ip_addr("", v, v6).ok());
            let gone = removed
                .iter()
                .any(|a| (!keep_route && net.network() == a.network()) || via == Some(a.addr));
            if gone {
                dropped.push((net, via));
            }
            !gone
        });
    }
    dropped
}

/// Before a start: MACs given to interfaces without one (and saved), bridges
/// checked, the runtime's view of every interface.
pub fn prepare_start(pool: &Pool, id: &str, cfg: &mut ContainerConfig) -> Result<Vec<NetSpec>> {
    if cfg.net_interfaces.iter().any(|n| n.hwaddr.is_none()) {
        let _net = registry::lock(&pool.host)?;
        let holders = registry::holders(&pool.host, Some((&pool.name, id)))?;
        registry::assign_macs(&holders, &mut cfg.net_interfaces)?;
        pool.save_ct(id, cfg)?;
    }
    let mut with_gateway = [false, false];
    cfg.net_interfaces
        .iter()
        .map(|n| {
            net_spec(n, &mut with_gateway)
                .map_err(|e| e.context(format!("container '{id}': interface '{}'", n.name)))
        })
        .collect()
}

/// One interface as the runtime sees it. The first interface with a
/// gateway of a version gets the default route of that version.
fn net_spec(n: &NetIf, with_gateway: &mut [bool; 2]) -> Result<NetSpec> {
    let hwaddr = n.hwaddr.clone().expect("MACs are assigned before");
    if let Some(link) = &n.link {
        host::require_bridge(link)?;
    }
    let addrs = n.addresses();
    let mut gateways = Vec::new();
    for v6 in [false, true] {
        if with_gateway[v6 as usize] || !addrs.iter().any(|a| a.is_v6() == v6) {
            continue;
        }
        if let Some(gw) = gateway(n, v6)? {
            gateways.push(gw);
            with_gateway[v6 as usize] = true;
        }
    }
    let routes = n.route_nets();
    let host_routes = routes
        .iter()
        .filter(|(_, via)| via.is_none())
        .map(|(r, _)| *r);
    let up_hook = if n.is_routed() {
        let via = routes
            .iter()
            .filter_map(|(r, via)| Some(format!(" --via {}={}", r.network(), via.as_ref()?)));
        Some(format!(
            "{} {HOOK}{}",
            hook_program()?,
            via.collect::<String>()
        ))
    } else {
        None
    };
    Ok(NetSpec {
        name: n.name.clone(),
        host_veth: host_veth(&hwaddr),
        hwaddr,
        link: n.link.clone(),
        addrs,
        gateways,
        host_routes: host_routes.collect(),
        up_hook,
    })
}

/// The container's default route through this interface, if any.
fn gateway(n: &NetIf, v6: bool) -> Result<Option<IpAddr>> {
    if n.is_routed() {
        return Ok(Some(if v6 {
            IpAddr::V6(ROUTED_GATEWAY_V6)
        } else {
            IpAddr::V4(grammar::ROUTED_GATEWAY_V4)
        }));
    }
    let link = n.link.as_deref().unwrap_or_default();
    match n.gateways.as_ref().and_then(|g| g.get(v6)) {
        None | Some("auto") => host::bridge_gateway(link, v6),
        Some("none") => Ok(None),
        Some(addr) => grammar::ip_addr("gateway", addr, v6).map(Some),
    }
}

/// The hidden `osctl` subcommand LXC runs when a routed veth comes up.
pub const HOOK: &str = "veth-up-hook";

/// This very program, for LXC to run as the hook. LXC runs the hook line
/// through `sh -c`, appending the container's id (`names.rs`: a-z, 0-9, `_`,
/// `-`) and the veth's name (the grammar's): a path with anything but plain
/// characters is refused.
fn hook_program() -> Result<String> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::io("cannot find the osctl program for the veth hook", e))?;
    let path = exe.to_string_lossy().into_owned();
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"/._+-".contains(&b);
    if !path.bytes().all(plain) {
        return Err(Error::refused(format!(
            "the osctl program's path {} has characters LXC's hook line cannot take",
            grammar::shown(&path)
        )));
    }
    Ok(path)
}

/// [`veth_up`], leaving its error where the start finds it
/// ([`crate::runtime::lxc::HOOK_ERROR`]).
pub fn veth_up_hook(args: &[String]) -> Result<()> {
    let result = veth_up(args);
    if let (Err(e), Some(config)) = (&result, std::env::var_os("LXC_CONFIG_FILE")) {
        if let Some(dir) = std::path::Path::new(&config).parent() {
            let why = format!("veth hook: {e}\n");
            let _ = std::fs::write(dir.join(crate::runtime::lxc::HOOK_ERROR), why);
        }
    }
    result
}

/// The hook: LXC calls it with `[--via NET=GW]... CT net up veth HOST_VETH`
/// once a routed veth exists. It gives the host side the containers'
/// gateways (255.255.255.254 and fe80::1), strict reverse-path filtering, and
/// the routes via a container's address.
pub fn veth_up(args: &[String]) -> Result<()> {
    let veth = args.last().map(String::as_str).unwrap_or_default();
    grammar::ifname("veth", veth)?;
    if !veth.starts_with("os") {
        return Err(Error::invalid(format!("'{veth}' is not a veth of osctl")));
    }
    let dev = ["dev", veth];
    let gw4 = format!("{}/32", grammar::ROUTED_GATEWAY_V4);
    let cmd = host::ip(["-4", "addr", "add", &gw4])
        .args(dev)
        .args(["scope", "host"]);
    host::run_idempotent(&cmd, || format!("cannot give {veth} the routed gateway"))?;
    if ipv6_enabled(veth) {
        let gw6 = format!("{ROUTED_GATEWAY_V6}/64");
        let cmd = host::ip(["-6", "addr", "add", &gw6]).args(dev).arg("nodad");
        host::run_idempotent(&cmd, || format!("cannot give {veth} the routed gateway"))?;
    }
    let rp = format!("/proc/sys/net/ipv4/conf/{veth}/rp_filter");
    std::fs::write(&rp, "1").map_err(|e| Error::io(format!("cannot write {rp}"), e))?;
    let mut rest = args.iter();
    while let Some(a) = rest.next() {
        if a != "--via" {
            continue;
        }
        let (net, via) = rest
            .next()
            .and_then(|v| v.split_once('='))
            .unwrap_or_default();
        let v6 = net.contains(':');
        let net = grammar::ip_net("--via", net, v6)?;
        let via = grammar::ip_addr("--via", via, v6)?;
        let cmd = host::ip(["route", "add", &net.to_string(), "via", &via.to_string()])
            .args(dev)
            .arg("onlink");
        cmd.run()
            .map_err(|e| Error::exec(format!("cannot route {net} into {veth}"), e))?;
    }
    Ok(())
}

fn ipv6_enabled(dev: &str) -> bool {
    let path = format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6");
    std::fs::read_to_string(path).is_ok_and(|s| s.trim() == "0")
}

/// The pool's network settings: `conf/network.yml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PoolNetwork {
    /// Bridges an untrusted archive may attach to; empty: any that exists.
    #[serde(default)]
    pub allowed_bridges: Vec<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

fn network_path(pool: &Pool) -> std::path::PathBuf {
    pool.root.join("conf").join("network.yml")
}

pub fn pool_network(pool: &Pool) -> Result<PoolNetwork> {
    let path = network_path(pool);
    match fsutil::read_optional(&path)? {
        Some(text) => yaml::parse(&text, &path.display().to_string()),
        None => Ok(PoolNetwork::default()),
    }
}

/// Sets the bridges untrusted archives may attach to (none: any).
pub fn set_allowed_bridges(pool: &Pool, bridges: &[String]) -> Result<()> {
    for b in bridges {
        grammar::ifname("bridge", b)?;
    }
    let _lock = pool.lock_accounts()?;
    let mut cfg = pool_network(pool)?;
    cfg.allowed_bridges = bridges.to_vec();
    fsutil::atomic_write(&network_path(pool), yaml::to_string(&cfg)?.as_bytes())
}
