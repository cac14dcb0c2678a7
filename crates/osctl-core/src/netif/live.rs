//! Address changes applied to a running container: inside through the host's
//! `ip` in the container's network namespace, on the host side for routes.

use std::net::IpAddr;

use crate::cmd::Cmd;
use crate::containers;
use crate::error::{Error, Result};
use crate::model::grammar;
use crate::model::netif::{IpNet, NetIf};
use crate::pool::Pool;

use super::{gateway, host, host_veth, ROUTED_GATEWAY_V6};

fn family(v6: bool) -> &'static str {
    if v6 {
        "-6"
    } else {
        "-4"
    }
}

/// The container's init and the host side of `n`.
fn endpoints(pool: &Pool, id: &str, n: &NetIf) -> Result<(u32, String)> {
    let pid = containers::runtime(pool)
        .init_pid(id)?
        .ok_or_else(|| crate::runtime::not_running(id))?;
    let mac = n.hwaddr.as_deref().ok_or_else(|| {
        Error::refused(format!(
            "interface '{}' of container '{id}' has no MAC: restart the container",
            n.name
        ))
    })?;
    Ok((pid, host_veth(mac)))
}

fn run(cmd: Cmd, what: impl FnOnce() -> String) -> Result<()> {
    cmd.run().map(drop).map_err(|e| Error::exec(what(), e))
}

pub(super) fn add(
    pool: &Pool,
    id: &str,
    n: &NetIf,
    addr: IpNet,
    route: Option<IpNet>,
) -> Result<()> {
    let (pid, veth) = endpoints(pool, id, n)?;
    let fam = family(addr.is_v6());
    let at = || format!("container '{id}': interface '{}'", n.name);
    // What was done, undone in reverse when a later step fails.
    let mut undo: Vec<Cmd> = Vec::new();
    let result = (|| {
        if let Some(r) = route {
            let r = r.to_string();
            let cmd = host::ip([fam, "route", "add", &r, "dev", &veth]);
            run(cmd, || format!("cannot route {r} on the host"))?;
            undo.push(host::ip([fam, "route", "del", &r, "dev", &veth]));
        }
        let a = addr.to_string();
        let mut cmd = host::ip_in(pid, [fam, "addr", "add", &a]);
        if !addr.is_v6() {
            cmd = cmd.args(["brd", "+"]);
        }
        run(cmd.args(["dev", &n.name]), || format!("cannot add {a}"))?;
        undo.push(host::ip_in(pid, [fam, "addr", "del", &a, "dev", &n.name]));
        default_route(pid, &veth, n, addr.is_v6())
    })();
    if result.is_err() {
        for cmd in undo.iter().rev() {
            let _ = cmd.run();
        }
    }
    result.map_err(|e| e.context(at()))
}

/// Makes sure the container has a default route of the version through `n`
/// where it should (an existing default route is left as it is).
fn default_route(pid: u32, veth: &str, n: &NetIf, v6: bool) -> Result<()> {
    let fam = family(v6);
    let Some(gw) = gateway(n, v6)? else {
        return Ok(());
    };
    let gw = gw.to_string();
    if n.is_routed() {
        let held = if v6 {
            format!("{ROUTED_GATEWAY_V6}/64")
        } else {
            format!("{}/32", grammar::ROUTED_GATEWAY_V4)
        };
        let mut cmd = host::ip([fam, "addr", "add", &held, "dev", veth]);
        cmd = if v6 {
            cmd.arg("nodad")
        } else {
            cmd.args(["scope", "host"])
        };
        host::run_idempotent(&cmd, || format!("cannot give {veth} the routed gateway"))?;
        if !v6 {
            let cmd = host::ip_in(pid, [fam, "route", "add", &gw, "dev", &n.name]);
            host::run_idempotent(&cmd, || "cannot add the route to the gateway".into())?;
        }
    }
    let cmd = host::ip_in(
        pid,
        [fam, "route", "add", "default", "via", &gw, "dev", &n.name],
    );
    host::run_idempotent(&cmd, || "cannot add the default route".into())
}

pub(super) fn del(
    pool: &Pool,
    id: &str,
    n: &NetIf,
    addrs: &[IpNet],
    routes: &[(IpNet, Option<IpAddr>)],
) -> Result<()> {
    let (pid, veth) = endpoints(pool, id, n)?;
    let at = || format!("container '{id}': interface '{}'", n.name);
    for a in addrs {
        let fam = family(a.is_v6());
        let cmd = host::ip_in(pid, [fam, "addr", "del", &a.to_string(), "dev", &n.name]);
        host::run_idempotent(&cmd, || format!("{}: cannot remove {a}", at()))?;
    }
    for (r, via) in routes {
        let mut cmd = host::ip([family(r.is_v6()), "route", "del", &r.to_string()]);
        if let Some(via) = via {
            cmd = cmd.args(["via", &via.to_string()]);
        }
        let cmd = cmd.args(["dev", &veth]);
        host::run_idempotent(&cmd, || format!("{}: cannot remove the route {r}", at()))?;
    }
    Ok(())
}
