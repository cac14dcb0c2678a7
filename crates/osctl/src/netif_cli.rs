//! `osctl ct netif ...`: network interfaces of containers, with osctl's
//! (vpsAdminOS) names and options.

use anyhow::Result;
use clap::Subcommand;

use osctl_core::netif::{self, AddrChoice, NetIfInfo, NewNetIf, RouteChoice};
use osctl_core::pool::Pool;

use crate::output;

#[derive(Subcommand, Debug)]
pub enum NetifCmd {
    /// List the network interfaces of a container, or of all containers
    #[command(visible_alias = "list")]
    Ls {
        /// The container ([POOL:]ID); all containers of the pool without it
        id: Option<String>,
    },
    /// Show one network interface
    Show {
        /// The container ([POOL:]ID)
        id: String,
        /// The interface
        name: String,
    },
    /// Add a network interface to a stopped container
    #[command(subcommand, visible_alias = "create")]
    New(NewCmd),
    /// Remove a network interface of a stopped container
    #[command(visible_alias = "delete")]
    Del {
        /// The container ([POOL:]ID)
        id: String,
        /// The interface
        name: String,
    },
    /// Rename a network interface of a stopped container
    Rename {
        /// The container ([POOL:]ID)
        id: String,
        /// The interface
        name: String,
        /// Its new name
        new_name: String,
    },
    /// IP addresses of an interface (changes apply at once to a running container)
    #[command(subcommand)]
    Ip(IpCmd),
}

#[derive(Subcommand, Debug)]
pub enum NewCmd {
    /// A veth whose host side joins an existing host bridge
    Bridge {
        /// The host bridge (osctl does not create bridges)
        #[arg(long)]
        link: String,
        /// MAC address inside the container (default: a new unique one)
        #[arg(long)]
        hwaddr: Option<String>,
        /// Mark the interface for a DHCP client in the container (vpsAdminOS
        /// runs one; osctl configures the listed addresses itself)
        #[arg(long)]
        dhcp: bool,
        /// IPv4 gateway: auto (the bridge's address), none or an address
        #[arg(long = "gateway-v4")]
        gateway_v4: Option<String>,
        /// IPv6 gateway: auto (the bridge's address), none or an address
        #[arg(long = "gateway-v6")]
        gateway_v6: Option<String>,
        /// The container ([POOL:]ID)
        id: String,
        /// The interface's name inside the container
        name: String,
    },
    /// A veth whose addresses the host routes to it
    Routed {
        /// MAC address inside the container (default: a new unique one)
        #[arg(long)]
        hwaddr: Option<String>,
        /// The container ([POOL:]ID)
        id: String,
        /// The interface's name inside the container
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum IpCmd {
    /// List the addresses of a container's interfaces
    #[command(visible_alias = "list")]
    Ls {
        /// Only this IP version (4 or 6)
        #[arg(short = 'v', long, value_parser = ["4", "6"])]
        version: Option<String>,
        /// The container ([POOL:]ID)
        id: String,
        /// Only this interface
        name: Option<String>,
    },
    /// Add an address, ADDR/PREFIX (IPv4 or IPv6)
    Add {
        /// Routed: do not route the address to the container
        #[arg(long, conflicts_with = "route_as")]
        no_route: bool,
        /// Routed: route this network (which includes ADDR) instead of ADDR's own
        #[arg(long)]
        route_as: Option<String>,
        /// The container ([POOL:]ID)
        id: String,
        /// The interface
        name: String,
        /// The address, ADDR/PREFIX
        addr: String,
    },
    /// Remove an address, or `all`
    Del {
        /// Routed: keep the route of the address
        #[arg(long)]
        keep_route: bool,
        /// With `all`: only this IP version (4 or 6)
        #[arg(short = 'v', long, value_parser = ["4", "6"])]
        version: Option<String>,
        /// The container ([POOL:]ID)
        id: String,
        /// The interface
        name: String,
        /// The address, ADDR/PREFIX, or all
        addr: String,
    },
}

impl NetifCmd {
    /// The container argument, for [`crate::cli`] to resolve `POOL:ID`.
    pub fn id_mut(&mut self) -> Option<&mut String> {
        match self {
            NetifCmd::Ls { id } => id.as_mut(),
            NetifCmd::Show { id, .. }
            | NetifCmd::Del { id, .. }
            | NetifCmd::Rename { id, .. }
            | NetifCmd::New(NewCmd::Bridge { id, .. })
            | NetifCmd::New(NewCmd::Routed { id, .. })
            | NetifCmd::Ip(IpCmd::Ls { id, .. })
            | NetifCmd::Ip(IpCmd::Add { id, .. })
            | NetifCmd::Ip(IpCmd::Del { id, .. }) => Some(id),
        }
    }
}

pub fn run(pool: &Pool, json: bool, cmd: NetifCmd) -> Result<()> {
    match cmd {
        NetifCmd::Ls { id } => {
            let list = netif::list(pool, id.as_deref())?;
            if json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list.iter().map(row).collect();
            output::table(
                &[
                    "CTID",
                    "NAME",
                    "TYPE",
                    "LINK",
                    "HWADDR",
                    "VETH",
                    "ADDRESSES",
                ],
                &rows,
            );
        }
        NetifCmd::Show { id, name } => {
            let n = netif::show(pool, &id, &name)?;
            if json {
                return output::json(&n);
            }
            let cells = row(&n);
            let keys = [
                "ctid",
                "name",
                "type",
                "link",
                "hwaddr",
                "veth",
                "addresses",
            ];
            let mut pairs: Vec<(&str, String)> = keys.into_iter().zip(cells).collect();
            pairs.insert(0, ("pool", n.pool.clone()));
            pairs.push(("routes", dash(n.routes.join(","))));
            output::pairs(&pairs);
        }
        NetifCmd::New(new) => {
            let id = new_id(&new).to_string();
            netif::create(pool, &id, &new_netif(new))?
        }
        NetifCmd::Del { id, name } => netif::delete(pool, &id, &name)?,
        NetifCmd::Rename { id, name, new_name } => netif::rename(pool, &id, &name, &new_name)?,
        NetifCmd::Ip(cmd) => ip(pool, json, cmd)?,
    }
    Ok(())
}

fn dash(s: String) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

fn row(n: &NetIfInfo) -> Vec<String> {
    let addrs: Vec<&str> = n.ip_addresses.iter().map(|(_, a)| a.as_str()).collect();
    vec![
        n.ctid.clone(),
        n.name.clone(),
        n.kind.clone(),
        dash(n.link.clone().unwrap_or_default()),
        dash(n.hwaddr.clone().unwrap_or_default()),
        dash(n.veth.clone().unwrap_or_default()),
        dash(addrs.join(",")),
    ]
}

fn new_id(new: &NewCmd) -> &str {
    match new {
        NewCmd::Bridge { id, .. } | NewCmd::Routed { id, .. } => id,
    }
}

fn new_netif(new: NewCmd) -> NewNetIf {
    match new {
        NewCmd::Bridge {
            link,
            hwaddr,
            dhcp,
            gateway_v4,
            gateway_v6,
            name,
            ..
        } => NewNetIf {
            kind: "bridge".into(),
            name,
            link: Some(link),
            hwaddr,
            dhcp,
            gateway_v4,
            gateway_v6,
        },
        NewCmd::Routed { hwaddr, name, .. } => NewNetIf {
            kind: "routed".into(),
            name,
            hwaddr,
            ..Default::default()
        },
    }
}

fn ip(pool: &Pool, json: bool, cmd: IpCmd) -> Result<()> {
    match cmd {
        IpCmd::Ls { version, id, name } => {
            let mut list = netif::ip_list(pool, &id, name.as_deref())?;
            if let Some(v) = version {
                list.retain(|a| a.version.to_string() == v);
            }
            if json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .into_iter()
                .map(|a| vec![a.netif, a.version.to_string(), a.addr])
                .collect();
            output::table(&["NETIF", "VERSION", "ADDR"], &rows);
        }
        IpCmd::Add {
            no_route,
            route_as,
            id,
            name,
            addr,
        } => {
            let route = match (no_route, route_as) {
                (true, _) => RouteChoice::None,
                (false, Some(net)) => RouteChoice::As(net),
                (false, None) => RouteChoice::Network,
            };
            netif::ip_add(pool, &id, &name, &addr, &route)?;
        }
        IpCmd::Del {
            keep_route,
            version,
            id,
            name,
            addr,
        } => {
            let which = if addr == "all" {
                AddrChoice::All(version.and_then(|v| v.parse().ok()))
            } else {
                AddrChoice::One(addr)
            };
            netif::ip_del(pool, &id, &name, &which, keep_route)?;
        }
    }
    Ok(())
}
