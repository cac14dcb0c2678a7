//! `net_interfaces` of container.yml, in osctld's format: a list of veth
//! interfaces, each `bridge` (attached to a host bridge) or `routed` (host
//! routes to its addresses). Keys we do not interpret (`max_tx`, `tx_queues`,
//! ...) ride along in `extra`.
//!
//! ```yaml
//! net_interfaces:
//! - type: bridge
//!   name: eth0
//!   hwaddr: 02:6f:73:12:34:56
//!   max_tx: 0
//!   ip_addresses: {v4: [192.168.1.2/24], v6: []}
//!   link: br0
//!   dhcp: false
//!   gateways: {v4: auto, v6: auto}
//! - type: routed
//!   name: eth1
//!   ip_addresses: {v4: [203.0.113.5/32], v6: [2001:db8::5/128]}
//!   routes: {v4: [203.0.113.5/32, {address: 10.0.0.0/24, via: 203.0.113.5}], v6: [2001:db8::5/128]}
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Deserializer, Serialize};

use super::{grammar, Extra};
use crate::error::{Error, Result};

pub const BRIDGE: &str = "bridge";
pub const ROUTED: &str = "routed";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetIf {
    /// `bridge` or `routed`; anything else is refused by [`NetIf::validate`].
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    /// The MAC address inside the container; None in the original means
    /// "LXC picks one", here: one is assigned at import or start.
    #[serde(default)]
    pub hwaddr: Option<String>,
    #[serde(default)]
    pub ip_addresses: ByVersion<String>,
    /// Bridge: the host bridge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Bridge: osctld runs a DHCP client in the container when true; osctl
    /// keeps it for the original and configures the addresses itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp: Option<bool>,
    /// Bridge: `auto` (the bridge's address), `none` or an address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateways: Option<Gateways>,
    /// Routed: what the host routes into the interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<ByVersion<Route>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Lists kept per IP version: `{v4: [...], v6: [...]}` (osctld once wrote
/// the keys as the integers 4 and 6; those are read too).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ByVersion<T> {
    pub v4: Vec<T>,
    pub v6: Vec<T>,
}

impl<T> Default for ByVersion<T> {
    fn default() -> Self {
        ByVersion {
            v4: Vec::new(),
            v6: Vec::new(),
        }
    }
}

impl<T> ByVersion<T> {
    pub fn get(&self, v6: bool) -> &Vec<T> {
        if v6 {
            &self.v6
        } else {
            &self.v4
        }
    }

    pub fn get_mut(&mut self, v6: bool) -> &mut Vec<T> {
        if v6 {
            &mut self.v6
        } else {
            &mut self.v4
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (bool, &T)> {
        let v4 = self.v4.iter().map(|t| (false, t));
        v4.chain(self.v6.iter().map(|t| (true, t)))
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

/// A key of [`ByVersion`]: `v4`, `v6`, 4 or 6.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct VersionKey(bool);

impl<'de> Deserialize<'de> for VersionKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = VersionKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("v4 or v6")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<VersionKey, E> {
                match s {
                    "v4" | "4" => Ok(VersionKey(false)),
                    "v6" | "6" => Ok(VersionKey(true)),
                    _ => Err(E::custom(format!(
                        "unknown IP version '{s}': expected v4 or v6"
                    ))),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<VersionKey, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<VersionKey, E> {
                self.visit_str(&n.to_string())
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ByVersion<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map: Option<BTreeMap<VersionKey, Option<Vec<T>>>> = Option::deserialize(d)?;
        let mut out = ByVersion::default();
        for (VersionKey(v6), list) in map.unwrap_or_default() {
            *out.get_mut(v6) = list.unwrap_or_default();
        }
        Ok(out)
    }
}

/// One entry of `routes`: a network, or a network reached through an address
/// of the container (`{address, via}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Route {
    Plain(String),
    Via {
        address: String,
        #[serde(default)]
        via: Option<String>,
    },
}

impl Route {
    pub fn address(&self) -> &str {
        match self {
            Route::Plain(a) | Route::Via { address: a, .. } => a,
        }
    }

    pub fn via(&self) -> Option<&str> {
        match self {
            Route::Plain(_) => None,
            Route::Via { via, .. } => via.as_deref(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Gateways {
    #[serde(default)]
    pub v4: Option<String>,
    #[serde(default)]
    pub v6: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Gateways {
    pub fn auto() -> Self {
        Gateways {
            v4: Some("auto".into()),
            v6: Some("auto".into()),
            extra: Extra::new(),
        }
    }

    pub fn get(&self, v6: bool) -> Option<&str> {
        if v6 { &self.v6 } else { &self.v4 }.as_deref()
    }
}

/// An address with its prefix length, as `ip` writes it: `192.0.2.5/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn is_v6(&self) -> bool {
        self.addr.is_ipv6()
    }

    fn bits(addr: IpAddr) -> u128 {
        match addr {
            IpAddr::V4(a) => u32::from(a) as u128,
            IpAddr::V6(a) => u128::from(a),
        }
    }

    fn width(&self) -> u8 {
        if self.is_v6() {
            128
        } else {
            32
        }
    }

    /// `prefix` one bits followed by zeros, `width` bits wide.
    fn mask(&self) -> u128 {
        let full = match self.width() {
            128 => u128::MAX,
            w => (1u128 << w) - 1,
        };
        full & !full.checked_shr(self.prefix as u32).unwrap_or(0)
    }

    /// The network the address is in: `192.0.2.0/24` for `192.0.2.5/24`.
    pub fn network(&self) -> IpNet {
        let bits = Self::bits(self.addr) & self.mask();
        let addr = if self.is_v6() {
            IpAddr::V6(Ipv6Addr::from(bits))
        } else {
            IpAddr::V4(Ipv4Addr::from(bits as u32))
        };
        IpNet {
            addr,
            prefix: self.prefix,
        }
    }

    /// The IPv4 broadcast address of the network, for prefixes below 31.
    pub fn broadcast(&self) -> Option<Ipv4Addr> {
        match self.addr {
            IpAddr::V4(a) if self.prefix < 31 => {
                Some(Ipv4Addr::from(u32::from(a) | !(self.mask() as u32)))
            }
            _ => None,
        }
    }

    /// Whether `addr` is in this network.
    pub fn contains(&self, addr: IpAddr) -> bool {
        addr.is_ipv6() == self.is_v6() && Self::bits(addr) & self.mask() == self.network_bits()
    }

    fn network_bits(&self) -> u128 {
        Self::bits(self.addr) & self.mask()
    }

    /// Whether the two networks share an address.
    pub fn overlaps(&self, other: &IpNet) -> bool {
        if self.is_v6() != other.is_v6() {
            return false;
        }
        let (wide, narrow) = if self.prefix <= other.prefix {
            (self, other)
        } else {
            (other, self)
        };
        wide.contains(narrow.addr)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl NetIf {
    pub fn is_routed(&self) -> bool {
        self.kind == ROUTED
    }

    pub fn is_bridge(&self) -> bool {
        self.kind == BRIDGE
    }

    /// The interface's addresses, checked ([`NetIf::validate`] passed).
    pub fn addresses(&self) -> Vec<IpNet> {
        self.ip_addresses
            .iter()
            .filter_map(|(v6, a)| grammar::ip_net("", a, v6).ok())
            .collect()
    }

    /// Routed: the networks the host routes here, with their `via`.
    pub fn route_nets(&self) -> Vec<(IpNet, Option<IpAddr>)> {
        let Some(routes) = &self.routes else {
            return Vec::new();
        };
        routes
            .iter()
            .filter_map(|(v6, r)| {
                let net = grammar::ip_net("", r.address(), v6).ok()?;
                let via = r.via().and_then(|v| grammar::ip_addr("", v, v6).ok());
                Some((net, via))
            })
            .collect()
    }

    /// Checks every value that reaches an LXC config or an `ip` command
    /// line; `at` names the entry (`net_interfaces[0]`).
    pub fn validate(&self, at: &str) -> Result<()> {
        let field = |k: &str| format!("{at}.{k}");
        if self.kind != BRIDGE && self.kind != ROUTED {
            return Err(Error::invalid(format!(
                "{} {} is not a known interface type (bridge or routed)",
                field("type"),
                grammar::shown(&self.kind)
            )));
        }
        grammar::ifname(&field("name"), &self.name)?;
        if let Some(mac) = &self.hwaddr {
            grammar::hwaddr(&field("hwaddr"), mac)?;
        }
        let addrs = self.ip_addresses.v4.len() + self.ip_addresses.v6.len();
        if addrs > grammar::MAX_NETIF_ADDRS {
            return Err(Error::invalid(format!(
                "{} has {addrs} addresses, at most {} are allowed",
                field("ip_addresses"),
                grammar::MAX_NETIF_ADDRS
            )));
        }
        for (v6, a) in self.ip_addresses.iter() {
            grammar::ip_net(&field("ip_addresses"), a, v6)?;
        }
        if self.is_bridge() {
            self.validate_bridge(&field)?;
        } else if self.link.is_some() {
            return Err(Error::invalid(format!(
                "{} is set on a routed interface",
                field("link")
            )));
        }
        if let Some(routes) = &self.routes {
            self.validate_routes(&field("routes"), routes)?;
        }
        Ok(())
    }

    fn validate_bridge(&self, field: &dyn Fn(&str) -> String) -> Result<()> {
        match &self.link {
            Some(link) => grammar::ifname(&field("link"), link)?,
            None => {
                return Err(Error::invalid(format!(
                    "{} is missing: a bridged interface names its bridge",
                    field("link")
                )))
            }
        }
        if let Some(gws) = &self.gateways {
            for v6 in [false, true] {
                if let Some(gw) = gws.get(v6) {
                    if gw != "auto" && gw != "none" {
                        grammar::ip_addr(&field("gateways"), gw, v6)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn validate_routes(&self, field: &str, routes: &ByVersion<Route>) -> Result<()> {
        let n = routes.v4.len() + routes.v6.len();
        if n > grammar::MAX_NETIF_ADDRS {
            return Err(Error::invalid(format!(
                "{field} has {n} routes, at most {} are allowed",
                grammar::MAX_NETIF_ADDRS
            )));
        }
        for (v6, r) in routes.iter() {
            grammar::ip_net(field, r.address(), v6)?;
            if let Some(via) = r.via() {
                grammar::ip_addr(field, via, v6)?;
            }
        }
        Ok(())
    }
}

/// Checks the whole list: each entry, and names unique.
pub fn validate_all(netifs: &[NetIf]) -> Result<()> {
    if netifs.len() > grammar::MAX_NETIFS {
        return Err(Error::invalid(format!(
            "net_interfaces has {} entries, at most {} are allowed",
            netifs.len(),
            grammar::MAX_NETIFS
        )));
    }
    for (i, n) in netifs.iter().enumerate() {
        n.validate(&format!("net_interfaces[{i}]"))?;
        if netifs[..i].iter().any(|o| o.name == n.name) {
            return Err(Error::invalid(format!(
                "net_interfaces: interface name '{}' is used twice",
                n.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ContainerConfig;
    use crate::yaml;

    /// As osctld's `NetInterface::{Bridge,Routed}#save` writes them.
    const ORIGINAL: &str = r#"---
user: u
group: /default
net_interfaces:
- type: bridge
  name: eth0
  hwaddr: 02:6f:73:00:00:01
  max_tx: 0
  max_rx: 0
  tx_queues: 1
  rx_queues: 1
  ip_addresses:
    v4:
    - 192.168.1.2/24
    v6: []
  link: br0
  dhcp: true
  gateways:
    v4: auto
    v6: none
- type: routed
  name: eth1
  hwaddr:
  max_tx: 0
  max_rx: 0
  tx_queues: 1
  rx_queues: 1
  ip_addresses:
    v4:
    - 203.0.113.5/32
    v6:
    - 2001:db8::5/128
  routes:
    v4:
    - 203.0.113.5/32
    - address: 10.9.0.0/24
      via: 203.0.113.5
    v6:
    - 2001:db8::5/128
"#;

    #[test]
    fn the_originals_format() {
        let cfg = ContainerConfig::parse(ORIGINAL.as_bytes(), "t").unwrap();
        let [br, rt] = &cfg.net_interfaces[..] else {
            panic!("two interfaces")
        };
        assert!(br.is_bridge() && rt.is_routed());
        assert_eq!(br.link.as_deref(), Some("br0"));
        assert_eq!(br.dhcp, Some(true));
        let gws = br.gateways.as_ref().unwrap();
        assert_eq!(
            (gws.get(false), gws.get(true)),
            (Some("auto"), Some("none"))
        );
        assert_eq!(br.addresses()[0].to_string(), "192.168.1.2/24");
        assert_eq!(br.extra["tx_queues"], 1);
        assert_eq!(rt.hwaddr, None);
        assert_eq!(rt.addresses().len(), 2);
        let routes = rt.route_nets();
        assert_eq!(routes.len(), 3);
        assert_eq!(routes[1].0.to_string(), "10.9.0.0/24");
        assert_eq!(routes[1].1, Some("203.0.113.5".parse().unwrap()));

        // Written back, read again: the same, unknown keys included.
        let again = ContainerConfig::parse(yaml::to_string(&cfg).unwrap().as_bytes(), "t").unwrap();
        assert_eq!(cfg, again);
    }

    #[test]
    fn integer_version_keys_of_older_osctld() {
        let text = r#"---
user: u
group: /default
net_interfaces:
- type: routed
  name: eth0
  ip_addresses:
    4: [10.0.0.1/32]
    6: []
  routes:
    4: [10.0.0.1/32]
"#;
        let cfg = ContainerConfig::parse(text.as_bytes(), "t").unwrap();
        assert_eq!(cfg.net_interfaces[0].ip_addresses.v4, vec!["10.0.0.1/32"]);
        assert_eq!(cfg.net_interfaces[0].route_nets().len(), 1);
    }

    #[test]
    fn hostile_values_are_refused() {
        let base = |entry: &str| format!("---\nuser: u\ngroup: /default\nnet_interfaces:\n{entry}");
        for (entry, field) in [
            ("- {type: macvlan, name: eth0}", "net_interfaces[0].type"),
            ("- {type: routed, name: \"eth0\\nlxc.hook.pre-start = /bin/sh\"}", "net_interfaces[0].name"),
            ("- {type: routed, name: eth0/../x}", "net_interfaces[0].name"),
            ("- {type: routed, name: averyveryverylongname}", "net_interfaces[0].name"),
            ("- {type: bridge, name: eth0}", "net_interfaces[0].link"),
            ("- {type: bridge, name: eth0, link: \"br0 x\"}", "net_interfaces[0].link"),
            ("- {type: routed, name: eth0, link: br0}", "net_interfaces[0].link"),
            ("- {type: routed, name: eth0, hwaddr: \"01:00:5e:00:00:01\"}", "net_interfaces[0].hwaddr"),
            ("- {type: routed, name: eth0, ip_addresses: {v4: [\"10.0.0.1/24 dev lo\"]}}", "net_interfaces[0].ip_addresses"),
            ("- {type: routed, name: eth0, ip_addresses: {v4: [\"2001:db8::1/64\"]}}", "net_interfaces[0].ip_addresses"),
            ("- {type: routed, name: eth0, routes: {v6: [{address: \"2001:db8::/64\", via: \"10.0.0.1\"}]}}", "net_interfaces[0].routes"),
            ("- {type: bridge, name: eth0, link: br0, gateways: {v4: \"10.0.0.1; reboot\"}}", "net_interfaces[0].gateways"),
            ("- {type: routed, name: eth0}\n- {type: routed, name: eth0}", "net_interfaces: interface name 'eth0' is used twice"),
        ] {
            let e = ContainerConfig::parse(base(entry).as_bytes(), "t")
                .expect_err(entry)
                .to_string();
            assert!(e.contains(field), "{entry}: {e}");
            assert!(!e.contains('\n'), "{e:?}");
        }
        let bad_version = base("- {type: routed, name: eth0, ip_addresses: {v5: []}}");
        assert!(ContainerConfig::parse(bad_version.as_bytes(), "t").is_err());
    }

    #[test]
    fn networks() {
        let n = |s: &str| grammar::ip_net("", s, s.contains(':')).unwrap();
        assert_eq!(n("192.0.2.77/24").network().to_string(), "192.0.2.0/24");
        assert_eq!(n("192.0.2.77/32").network().to_string(), "192.0.2.77/32");
        assert_eq!(n("192.0.2.77/0").network().to_string(), "0.0.0.0/0");
        assert_eq!(n("2001:db8::77/64").network().to_string(), "2001:db8::/64");
        assert_eq!(n("2001:db8::77/0").network().to_string(), "::/0");
        assert_eq!(
            n("192.0.2.77/24").broadcast(),
            Some("192.0.2.255".parse().unwrap())
        );
        assert_eq!(
            n("10.1.2.3/8").broadcast(),
            Some("10.255.255.255".parse().unwrap())
        );
        assert_eq!(n("192.0.2.77/32").broadcast(), None);
        assert!(n("192.0.2.0/24").contains("192.0.2.200".parse().unwrap()));
        assert!(!n("192.0.2.0/24").contains("192.0.3.1".parse().unwrap()));
        assert!(!n("192.0.2.0/24").contains("2001:db8::1".parse().unwrap()));
        assert!(n("2001:db8::/32").contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(n("192.0.2.5/32").overlaps(&n("192.0.2.0/24")));
        assert!(n("192.0.2.0/24").overlaps(&n("192.0.2.5/32")));
        assert!(!n("192.0.2.5/32").overlaps(&n("192.0.2.6/32")));
        assert!(n("192.0.2.5/0").overlaps(&n("10.0.0.1/32")));
    }
}
