//! What every container of the host has: MACs and addresses must not
//! collide across pools. There is no separate registry to drift from the
//! truth: the containers' configs of all installed pools are read, under
//! one host-wide lock taken by everything that adds a MAC or an address.

use std::io::Read;

use crate::error::{Context, Error, Result};
use crate::host::Host;
use crate::lock::Lock;
use crate::model::netif::{IpNet, NetIf};
use crate::pool::Pool;

use super::host;

/// Serialises changes to MACs and addresses across the host. Taken after a
/// container's lock (and the pool's accounts lock), never before.
pub fn lock(host: &Host) -> Result<Lock> {
    Lock::acquire(
        &host.root().join("locks").join("netif.lock"),
        "the network interfaces of the host",
    )
}

/// A container and its interfaces.
pub struct Holder {
    pub pool: String,
    pub id: String,
    pub netifs: Vec<NetIf>,
}

impl Holder {
    fn named(&self) -> String {
        format!("container '{}' of pool '{}'", self.id, self.pool)
    }
}

/// Every container with interfaces on the host, except `except` (pool, id).
/// Pools that cannot be opened and configs that cannot be read are left out:
/// they cannot start either.
pub fn holders(host: &Host, except: Option<(&str, &str)>) -> Result<Vec<Holder>> {
    let mut out = Vec::new();
    for entry in host.pools()? {
        let Ok(pool) = Pool::open(host, &entry) else {
            continue;
        };
        for id in pool.ct_ids()? {
            if except == Some((pool.name.as_str(), id.as_str())) {
                continue;
            }
            if let Ok(cfg) = pool.ct_unvalidated(&id) {
                if !cfg.net_interfaces.is_empty() {
                    out.push(Holder {
                        pool: pool.name.clone(),
                        id,
                        netifs: cfg.net_interfaces,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The host side of a container's veth: named after its MAC, which is unique
/// on the host, so that names never collide and `ip link` shows whose it is.
pub fn host_veth(mac: &str) -> String {
    format!("os{}", mac.replace(':', "").to_ascii_lowercase())
}

fn same_mac(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Who holds `mac` already: a container's config or a live host interface.
pub fn mac_user(holders: &[Holder], mac: &str) -> Option<String> {
    for h in holders {
        for n in &h.netifs {
            if n.hwaddr.as_deref().is_some_and(|m| same_mac(m, mac)) {
                return Some(format!("interface {} of {}", n.name, h.named()));
            }
        }
    }
    host::iface_exists(&host_veth(mac)).then(|| format!("host interface {}", host_veth(mac)))
}

/// Prefix of the MACs osctl makes up: locally administered, unicast, and
/// away from LXC's 00:16:3e ("os" in ASCII).
pub const MAC_PREFIX: [u8; 3] = [0x02, 0x6f, 0x73];

/// A MAC nobody on the host has.
pub fn new_mac(holders: &[Holder], taken: &[String]) -> Result<String> {
    let mut random = std::fs::File::open("/dev/urandom").ctx(|| "cannot open /dev/urandom")?;
    for _ in 0..1000 {
        let mut tail = [0u8; 3];
        random
            .read_exact(&mut tail)
            .ctx(|| "cannot read /dev/urandom")?;
        let [a, b, c] = MAC_PREFIX;
        let mac = format!(
            "{a:02x}:{b:02x}:{c:02x}:{:02x}:{:02x}:{:02x}",
            tail[0], tail[1], tail[2]
        );
        if !taken.iter().any(|t| same_mac(t, &mac)) && mac_user(holders, &mac).is_none() {
            return Ok(mac);
        }
    }
    Err(Error::busy(
        "cannot find a free MAC address for a network interface",
    ))
}

/// Gives every interface without a MAC a new one; true when any changed.
pub fn assign_macs(holders: &[Holder], netifs: &mut [NetIf]) -> Result<bool> {
    let mut changed = false;
    for i in 0..netifs.len() {
        if netifs[i].hwaddr.is_none() {
            let taken: Vec<String> = netifs.iter().filter_map(|n| n.hwaddr.clone()).collect();
            netifs[i].hwaddr = Some(new_mac(holders, &taken)?);
            changed = true;
        }
    }
    Ok(changed)
}

/// The first MAC of `netifs` that another container (or host interface) has.
pub fn mac_conflict(netifs: &[NetIf], holders: &[Holder]) -> Option<String> {
    netifs.iter().find_map(|n| {
        let mac = n.hwaddr.as_deref()?;
        mac_user(holders, mac)
            .map(|who| format!("MAC {mac} of interface {} is in use by {who}", n.name))
    })
}

/// Why `netifs` cannot have their addresses on this host: an address already
/// routed to another container, a route over another container's address, or
/// the same address on the same bridge. None when they can.
pub fn address_conflict(netifs: &[NetIf], holders: &[Holder]) -> Option<String> {
    for h in holders {
        for theirs in &h.netifs {
            for mine in netifs {
                if let Some(why) = pair_conflict(mine, theirs) {
                    return Some(format!("{why} {}", h.named()));
                }
            }
        }
    }
    None
}

fn routes(n: &NetIf) -> Vec<IpNet> {
    n.route_nets().into_iter().map(|(net, _)| net).collect()
}

/// What `mine` would take from `theirs`, worded to be followed by the holder.
fn pair_conflict(mine: &NetIf, theirs: &NetIf) -> Option<String> {
    let (my_addrs, their_addrs) = (mine.addresses(), theirs.addresses());
    let (my_routes, their_routes) = (routes(mine), routes(theirs));
    for a in &my_addrs {
        if let Some(r) = their_routes.iter().find(|r| r.contains(a.addr)) {
            return Some(format!(
                "address {a} of interface {} is already routed ({r}) to",
                mine.name
            ));
        }
    }
    for r in &my_routes {
        if let Some(o) = their_routes.iter().find(|o| o.overlaps(r)) {
            return Some(format!(
                "route {r} of interface {} overlaps route {o} of",
                mine.name
            ));
        }
        if let Some(a) = their_addrs.iter().find(|a| r.contains(a.addr)) {
            return Some(format!(
                "route {r} of interface {} covers address {a} of",
                mine.name
            ));
        }
    }
    let same_bridge = mine.is_bridge() && theirs.is_bridge() && mine.link == theirs.link;
    if same_bridge {
        if let Some(a) = my_addrs
            .iter()
            .find(|a| their_addrs.iter().any(|t| t.addr == a.addr))
        {
            return Some(format!(
                "address {a} of interface {} is on bridge {} already, used by",
                mine.name,
                mine.link.as_deref().unwrap_or("?")
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::netif::{ByVersion, Route};

    fn netif(kind: &str, name: &str, addrs: &[&str], routes: &[&str]) -> NetIf {
        let split = |list: &[&str]| {
            let mut by = ByVersion::default();
            for a in list {
                by.get_mut(a.contains(':')).push(a.to_string());
            }
            by
        };
        let addrs = split(addrs);
        let routes: ByVersion<String> = split(routes);
        NetIf {
            kind: kind.into(),
            name: name.into(),
            hwaddr: None,
            ip_addresses: addrs,
            link: (kind == "bridge").then(|| "br0".to_string()),
            dhcp: None,
            gateways: None,
            routes: Some(ByVersion {
                v4: routes.v4.into_iter().map(Route::Plain).collect(),
                v6: routes.v6.into_iter().map(Route::Plain).collect(),
            }),
            extra: Default::default(),
        }
    }

    fn holder(netifs: Vec<NetIf>) -> Vec<Holder> {
        vec![Holder {
            pool: "p".into(),
            id: "other".into(),
            netifs,
        }]
    }

    #[test]
    fn conflicts() {
        let routed = netif("routed", "eth0", &["10.1.0.5/32"], &["10.1.0.5/32"]);
        let others = holder(vec![routed.clone()]);
        let msg = address_conflict(std::slice::from_ref(&routed), &others).unwrap();
        assert_eq!(
            msg,
            "address 10.1.0.5/32 of interface eth0 is already routed (10.1.0.5/32) to container 'other' of pool 'p'"
        );
        // A wider route over their address.
        let wide = netif("routed", "eth1", &["10.1.0.9/32"], &["10.1.0.0/24"]);
        assert!(address_conflict(&[wide], &others)
            .unwrap()
            .contains("overlaps route 10.1.0.5/32"));
        // A bridged address inside their route.
        let bridged = netif("bridge", "eth0", &["10.1.0.5/24"], &[]);
        assert!(address_conflict(std::slice::from_ref(&bridged), &others).is_some());
        // Unrelated addresses, other versions.
        let free = netif(
            "routed",
            "eth0",
            &["10.1.0.6/32", "fd00::6/128"],
            &["10.1.0.6/32"],
        );
        assert!(address_conflict(&[free], &others).is_none());
        // Bridged: the same address on the same bridge, not on another.
        let on_br0 = holder(vec![bridged.clone()]);
        assert!(address_conflict(std::slice::from_ref(&bridged), &on_br0)
            .unwrap()
            .contains("on bridge br0"));
        let mut elsewhere = bridged.clone();
        elsewhere.link = Some("br1".into());
        assert!(address_conflict(&[elsewhere], &on_br0).is_none());
    }

    #[test]
    fn macs() {
        let mut a = netif("routed", "eth0", &[], &[]);
        a.hwaddr = Some("02:6F:73:00:00:01".into());
        let others = holder(vec![a]);
        let mut b = netif("routed", "eth1", &[], &[]);
        b.hwaddr = Some("02:6f:73:00:00:01".into());
        assert!(mac_conflict(std::slice::from_ref(&b), &others)
            .unwrap()
            .contains("interface eth0 of container 'other'"));
        let mut fresh = vec![
            netif("routed", "eth0", &[], &[]),
            netif("bridge", "eth1", &[], &[]),
        ];
        assert!(assign_macs(&others, &mut fresh).unwrap());
        let (m0, m1) = (
            fresh[0].hwaddr.clone().unwrap(),
            fresh[1].hwaddr.clone().unwrap(),
        );
        assert!(m0.starts_with("02:6f:73:") && m0 != m1);
        crate::model::grammar::hwaddr("m", &m0).unwrap();
        assert!(!assign_macs(&others, &mut fresh).unwrap());
        assert_eq!(host_veth("02:6F:73:0a:0b:0c"), "os026f730a0b0c");
        assert!(host_veth(&m0).len() <= crate::model::grammar::MAX_IFNAME);
    }
}
