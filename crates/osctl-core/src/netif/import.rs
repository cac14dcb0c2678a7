//! Interfaces that arrive in an archive. A move (the archive's own id) keeps
//! MACs and addresses; a clone gets new MACs and, unless asked to keep them,
//! no addresses. Either way nothing may collide with another container of
//! the host, bridges must exist, and without `--trusted` an archive can
//! neither attach to a bridge the pool does not allow nor claim the host's
//! own addresses or the way to its gateway.

use std::net::IpAddr;

use crate::error::{Error, ErrorKind, Result};
use crate::model::netif::{ByVersion, NetIf};
use crate::model::ContainerConfig;
use crate::pool::Pool;

use super::{host, pool_network, registry};

/// Prepares an archive's interfaces for a clone: MACs cleared (new ones are
/// given at the commit), addresses and routes dropped unless kept. Returns
/// the line that tells the admin, None for a move or a container without
/// interfaces.
pub fn shape_for_import(
    id: &str,
    cfg: &mut ContainerConfig,
    clone: bool,
    keep_addresses: bool,
) -> Option<String> {
    if !clone || cfg.net_interfaces.is_empty() {
        return None;
    }
    let mut dropped = Vec::new();
    for n in &mut cfg.net_interfaces {
        n.hwaddr = None;
        if keep_addresses {
            continue;
        }
        for (_, a) in n.ip_addresses.iter() {
            dropped.push(format!("{} {a}", n.name));
        }
        n.ip_addresses = ByVersion::default();
        if let Some(routes) = &mut n.routes {
            *routes = ByVersion::default();
        }
    }
    let mut note =
        format!("container '{id}' is a clone: its network interfaces get new MAC addresses");
    if !dropped.is_empty() {
        note.push_str(&format!(
            "; dropped their addresses (--keep-addresses keeps them): {}",
            dropped.join(", ")
        ));
    }
    Some(note)
}

fn refused(e: Error) -> Error {
    e.with_kind(ErrorKind::Refused)
}

/// What no `--trusted` allows: a missing bridge, a MAC or an address another
/// container of the host has.
pub fn check_import(pool: &Pool, cfg: &ContainerConfig) -> Result<()> {
    for n in &cfg.net_interfaces {
        if let Some(link) = &n.link {
            host::require_bridge(link)
                .map_err(|e| refused(e.context(format!("interface '{}'", n.name))))?;
        }
    }
    if cfg.net_interfaces.is_empty() {
        return Ok(());
    }
    let holders = registry::holders(&pool.host, None)?;
    conflicts(&cfg.net_interfaces, &holders)
}

fn conflicts(netifs: &[NetIf], holders: &[registry::Holder]) -> Result<()> {
    if let Some(why) = registry::mac_conflict(netifs, holders) {
        return Err(Error::refused(format!(
            "{why}: import the archive as a clone (--as-id) or delete that container first"
        )));
    }
    if let Some(why) = registry::address_conflict(netifs, holders) {
        return Err(Error::refused(why));
    }
    Ok(())
}

/// At the commit, under [`registry::lock`]: checks again (another import or
/// `ip add` may have come first) and gives the interfaces without one a MAC.
pub fn finish_import(pool: &Pool, cfg: &mut ContainerConfig) -> Result<()> {
    if cfg.net_interfaces.is_empty() {
        return Ok(());
    }
    let holders = registry::holders(&pool.host, None)?;
    conflicts(&cfg.net_interfaces, &holders)?;
    registry::assign_macs(&holders, &mut cfg.net_interfaces)?;
    Ok(())
}

/// Why the archive's interfaces need trust: a bridge the pool does not
/// allow, an address of the host itself, a route over the host's addresses
/// or its gateway.
pub fn import_concerns(pool: &Pool, cfg: &ContainerConfig) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let allowed = pool_network(pool)?.allowed_bridges;
    for n in &cfg.net_interfaces {
        match &n.link {
            Some(link) if !allowed.is_empty() && !allowed.contains(link) => out.push(format!(
                "interface '{}' attaches to bridge '{link}', which pool '{}' does not allow (allowed: {})",
                n.name,
                pool.name,
                allowed.join(", ")
            )),
            _ => {}
        }
    }
    let has_addresses = cfg
        .net_interfaces
        .iter()
        .any(|n| !n.ip_addresses.is_empty() || n.routes.as_ref().is_some_and(|r| !r.is_empty()));
    if has_addresses {
        let mine: Vec<IpAddr> = host::addrs(None)?.into_iter().map(|a| a.addr).collect();
        let gateways = host::default_gateways()?;
        for n in &cfg.net_interfaces {
            out.extend(host_concerns(n, &mine, &gateways));
        }
    }
    Ok(out)
}

/// What of the host's own an interface would take.
fn host_concerns(n: &NetIf, host_addrs: &[IpAddr], gateways: &[IpAddr]) -> Vec<String> {
    let mut out = Vec::new();
    for a in n.addresses() {
        if host_addrs.contains(&a.addr) {
            out.push(format!(
                "address {a} of interface '{}' is an address of this host",
                n.name
            ));
        }
    }
    for (r, _) in n.route_nets() {
        if let Some(a) = host_addrs.iter().find(|a| r.contains(**a)) {
            out.push(format!(
                "route {r} of interface '{}' covers this host's address {a}",
                n.name
            ));
        } else if let Some(g) = gateways.iter().find(|g| r.contains(**g)) {
            out.push(format!(
                "route {r} of interface '{}' covers this host's gateway {g}",
                n.name
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::netif::Route;

    fn routed(addrs: &[&str], routes: &[&str]) -> NetIf {
        NetIf {
            kind: "routed".into(),
            name: "eth0".into(),
            hwaddr: Some("02:6f:73:00:00:01".into()),
            ip_addresses: ByVersion {
                v4: addrs.iter().map(|s| s.to_string()).collect(),
                v6: vec![],
            },
            link: None,
            dhcp: None,
            gateways: None,
            routes: Some(ByVersion {
                v4: routes.iter().map(|s| Route::Plain(s.to_string())).collect(),
                v6: vec![],
            }),
            extra: Default::default(),
        }
    }

    #[test]
    fn clones_lose_macs_and_addresses() {
        let mut cfg = ContainerConfig::new("u", "/default");
        cfg.net_interfaces = vec![routed(&["10.0.0.2/32"], &["10.0.0.2/32"])];
        let mut moved = cfg.clone();
        assert_eq!(shape_for_import("a", &mut moved, false, false), None);
        assert_eq!(moved, cfg);

        let mut kept = cfg.clone();
        let note = shape_for_import("b", &mut kept, true, true).unwrap();
        assert!(!note.contains("dropped"), "{note}");
        assert_eq!(kept.net_interfaces[0].hwaddr, None);
        assert_eq!(kept.net_interfaces[0].addresses().len(), 1);

        let mut clone = cfg.clone();
        let note = shape_for_import("c", &mut clone, true, false).unwrap();
        assert!(
            note.ends_with(
                "dropped their addresses (--keep-addresses keeps them): eth0 10.0.0.2/32"
            ),
            "{note}"
        );
        assert!(clone.net_interfaces[0].addresses().is_empty());
        assert!(clone.net_interfaces[0].route_nets().is_empty());
    }

    #[test]
    fn what_takes_from_the_host() {
        let host: Vec<IpAddr> = vec!["192.0.2.2".parse().unwrap()];
        let gw: Vec<IpAddr> = vec!["192.0.2.1".parse().unwrap()];
        assert!(host_concerns(&routed(&["10.0.0.2/32"], &["10.0.0.2/32"]), &host, &gw).is_empty());
        let own = host_concerns(&routed(&["192.0.2.2/32"], &[]), &host, &gw);
        assert_eq!(
            own,
            ["address 192.0.2.2/32 of interface 'eth0' is an address of this host"]
        );
        let wide = host_concerns(
            &routed(&["10.0.0.2/32"], &["0.0.0.0/1", "128.0.0.0/1"]),
            &host,
            &gw,
        );
        assert_eq!(wide.len(), 1, "{wide:?}");
        assert!(
            wide[0].contains("covers this host's address 192.0.2.2"),
            "{wide:?}"
        );
        let to_gw = host_concerns(&routed(&["10.0.0.2/32"], &["192.0.2.1/32"]), &host, &gw);
        assert!(to_gw[0].contains("gateway 192.0.2.1"), "{to_gw:?}");
    }
}
