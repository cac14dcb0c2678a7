//! Network interfaces with real bridges, veths and routes on this machine:
//! containers reached from the host, moved, cloned, and hostile interface
//! settings refused. Bridges are made by the tests (osctl never makes them)
//! and removed by a guard, also on failure; veths and host routes go with
//! the containers, which the test's `Env` deletes.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use super::hostile::{refused, take_turn, valid};
use super::support::{busybox, can_run_containers, is_root, wait_until, Env};
use crate::require;

/// Host objects a test made; removed when it ends, however it ends.
struct Net {
    bridges: Vec<String>,
    veths: RefCell<Vec<String>>,
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn iface_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

impl Net {
    fn new() -> Net {
        Net {
            bridges: Vec::new(),
            veths: RefCell::new(Vec::new()),
        }
    }

    /// A bridge named after the test process, up, with `addr` on it.
    fn bridge(&mut self, tag: &str, addr: &str) -> String {
        let name = format!("tb{}{tag}", std::process::id());
        ip(&["link", "add", &name, "type", "bridge"]);
        self.bridges.push(name.clone());
        ip(&["addr", "add", addr, "dev", &name]);
        ip(&["link", "set", &name, "up"]);
        name
    }

    /// A host veth seen during the test, removed at the end if still there.
    fn watch(&self, veth: &str) {
        self.veths.borrow_mut().push(veth.to_string());
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for name in self.veths.borrow().iter().chain(&self.bridges) {
            if iface_exists(name) {
                let _ = Command::new("ip").args(["link", "del", name]).status();
            }
        }
    }
}

/// Addresses no other run of these tests uses at the same time.
fn v4(net: u8, host: u8) -> String {
    format!("10.{}.{net}.{host}", 100 + std::process::id() % 100)
}

fn v6(net: u8, host: u8) -> String {
    format!("fd00:213:{:x}:{net}::{host}", std::process::id() % 0xffff)
}

fn busybox_cmd() -> Command {
    Command::new(busybox().expect("busybox"))
}

/// One ping from the host, retried for a while (addresses come up with the
/// container, IPv6 ones after duplicate address detection).
fn reachable(addr: &str) -> bool {
    wait_until(10, || {
        busybox_cmd()
            .args(["ping", "-c", "1", "-W", "1", addr])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// One ping, no retries: for addresses that must not answer.
fn answers_now(addr: &str) -> bool {
    busybox_cmd()
        .args(["ping", "-c", "1", "-W", "1", addr])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The container's web server's page, fetched from the host over HTTP/1.0
/// (retried while the server comes up).
fn http_get(addr: &str) -> String {
    let ip: std::net::IpAddr = addr.parse().unwrap();
    let fetch = || -> std::io::Result<String> {
        let timeout = Duration::from_secs(2);
        let mut conn = TcpStream::connect_timeout(&(ip, 80).into(), timeout)?;
        conn.set_read_timeout(Some(timeout))?;
        conn.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
        let mut reply = String::new();
        conn.read_to_string(&mut reply)?;
        Ok(reply)
    };
    let mut body = String::new();
    wait_until(10, || match fetch() {
        Ok(reply) if reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200") => {
            body = reply
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.to_string())
                .unwrap_or_default();
            true
        }
        _ => false,
    });
    body
}

/// `ct netif show -j` of a container's interface.
fn netif(env: &Env, pool: &str, id: &str, name: &str) -> Value {
    env.json(&["--pool", pool, "ct", "netif", "show", id, name])
}

/// Runs `osctl` with the words of `line` (no argument here has blanks).
fn ok(env: &Env, line: &str) -> String {
    env.ok(&line.split_whitespace().collect::<Vec<_>>())
}

fn fails(env: &Env, line: &str) -> String {
    env.fails(&line.split_whitespace().collect::<Vec<_>>(), 1)
}

#[test]
fn bridged_container_reached_then_moved_and_cloned() {
    require!(can_run_containers(), "needs root, LXC and busybox");
    let mut net = Net::new();
    let br = net.bridge("a", &format!("{}/24", v4(11, 1)));
    let env = Env::new();
    let rootfs = env.web_rootfs("web-rootfs", "hello from web");
    env.ct_from("web", &rootfs);
    let err = fails(&env, "ct netif new bridge --link tbnosuch0 web eth0");
    assert!(
        err.contains("bridge 'tbnosuch0' does not exist")
            && err.contains("does not create bridges"),
        "{err}"
    );
    ok(&env, &format!("ct netif new bridge --link {br} web eth0"));
    let addr = v4(11, 2);
    ok(&env, &format!("ct netif ip add web eth0 {addr}/24"));
    ok(&env, "ct start web");
    let eth0 = netif(&env, "default", "web", "eth0");
    let mac = eth0["hwaddr"].as_str().unwrap().to_string();
    let veth = eth0["veth"].as_str().unwrap().to_string();
    net.watch(&veth);
    assert!(mac.starts_with("02:6f:73:"), "{mac}");
    assert_eq!(veth, format!("os{}", mac.replace(':', "")));
    assert!(iface_exists(&veth));
    assert!(reachable(&addr), "{addr} does not answer");
    assert_eq!(http_get(&addr), "hello from web");
    assert!(fails(&env, "ct netif new routed web eth1").contains("stop it"));
    ok(&env, "ct stop web");
    assert!(!iface_exists(&veth), "the host veth outlived the container");
    let archive = env.path("web.tar");
    let archive = archive.to_str().unwrap();
    ok(&env, &format!("-q ct export --format tar web {archive}"));
    moved_to_another_pool(&env, archive, &mac, &addr);
    cloned(&env, archive, &mac, &addr);
}

/// A move: deleted here, imported into another pool: the same MAC and
/// address, reachable again.
fn moved_to_another_pool(env: &Env, archive: &str, mac: &str, addr: &str) {
    ok(env, "ct del web");
    ok(env, "pool install p2");
    ok(env, "--pool p2 user new u1");
    ok(env, &format!("--pool p2 ct import --as-user u1 {archive}"));
    ok(env, "--pool p2 ct start web");
    let moved = netif(env, "p2", "web", "eth0");
    assert_eq!(moved["hwaddr"], mac);
    assert_eq!(moved["ip_addresses"]["v4"], json!([format!("{addr}/24")]));
    assert!(reachable(addr), "{addr} does not answer after the move");
    assert_eq!(http_get(addr), "hello from web");
}

/// Clones of the moved container's archive, while it runs in pool p2.
fn cloned(env: &Env, archive: &str, mac: &str, addr: &str) {
    // A new MAC, no address, and a line saying what was dropped.
    let line = format!("--pool p2 ct import --as-user u1 --as-id web2 {archive}");
    let out = env.run(&line.split_whitespace().collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("'web2' is a clone") && stderr.contains(&format!("eth0 {addr}/24")),
        "{stderr}"
    );
    let clone = netif(env, "p2", "web2", "eth0");
    assert_ne!(clone["hwaddr"], mac);
    assert!(clone["hwaddr"].as_str().unwrap().starts_with("02:6f:73:"));
    assert_eq!(clone["ip_addresses"], json!({"v4": [], "v6": []}));
    // Keeping the address the original has on the same bridge: refused.
    let err = fails(
        env,
        &format!("--pool p2 ct import --as-user u1 --as-id web3 --keep-addresses {archive}"),
    );
    assert!(
        err.contains("used by container 'web' of pool 'p2'"),
        "{err}"
    );
    assert_eq!(
        env.run(&["--pool", "p2", "ct", "show", "web3"])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn routed_container_reached_and_changed_live() {
    require!(can_run_containers(), "needs root, LXC and busybox");
    let net = Net::new();
    let env = Env::new();
    let rootfs = env.web_rootfs("web-rootfs", "routed hello");
    env.ct_from("web", &rootfs);
    ok(&env, "ct netif new routed web eth0");
    let (a4, a6) = (v4(12, 2), v6(12, 2));
    ok(&env, &format!("ct netif ip add web eth0 {a4}/32"));
    ok(&env, &format!("ct netif ip add web eth0 {a6}/128"));
    ok(&env, "ct start web");
    let veth = netif(&env, "default", "web", "eth0")["veth"]
        .as_str()
        .unwrap()
        .to_string();
    net.watch(&veth);
    for addr in [&a4, &a6] {
        assert!(reachable(addr), "{addr} does not answer");
        assert_eq!(http_get(addr), "routed hello");
    }
    routed_host_side(&env, &veth, &a4, &a6);
    changed_live(&env, &a4);

    // Another container cannot take an address routed to this one.
    env.busybox_ct("other");
    ok(&env, "ct netif new routed other eth0");
    let err = fails(&env, &format!("ct netif ip add other eth0 {a4}/32"));
    assert!(
        err.contains(&format!("{a4}/32")) && err.contains("container 'web' of pool 'default'"),
        "{err}"
    );

    ok(&env, "ct stop web");
    assert!(!iface_exists(&veth));
    assert!(ip(&["route", "show", &a4]).is_empty());
    assert!(ip(&["-6", "route", "show", &a6]).is_empty());
}

/// Routes to the addresses, the gateways on the host side, strict
/// rp_filter there, and default routes inside through the host side, set
/// without the container's own scripts (busybox init runs none).
fn routed_host_side(env: &Env, veth: &str, a4: &str, a6: &str) {
    assert!(ip(&["route", "show", a4]).contains(&format!("dev {veth}")));
    assert!(ip(&["-6", "route", "show", a6]).contains(&format!("dev {veth}")));
    let held = ip(&["addr", "show", "dev", veth]);
    assert!(
        held.contains("inet 255.255.255.254/32 scope host"),
        "{held}"
    );
    assert!(held.contains("inet6 fe80::1/64"), "{held}");
    let rp = std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{veth}/rp_filter")).unwrap();
    assert_eq!(rp.trim(), "1");
    let inside = ok(env, "ct exec web -- ip route");
    assert!(
        inside.contains("default via 255.255.255.254 dev eth0"),
        "{inside}"
    );
    let inside6 = ok(env, "ct exec web -- ip -6 route");
    assert!(
        inside6.contains("default via fe80::1 dev eth0"),
        "{inside6}"
    );
}

/// An address added to the running container answers at once; removed, it
/// stops, and the one it had before still answers.
fn changed_live(env: &Env, before: &str) {
    let b4 = v4(12, 3);
    ok(env, &format!("ct netif ip add web eth0 {b4}/32"));
    assert!(reachable(&b4), "{b4} added live does not answer");
    assert_eq!(http_get(&b4), "routed hello");
    ok(env, &format!("ct netif ip del web eth0 {b4}/32"));
    assert!(ip(&["route", "show", &b4]).is_empty());
    assert!(!answers_now(&b4));
    assert!(answers_now(before));
}

#[test]
fn a_failing_veth_hook_is_reported() {
    require!(can_run_containers(), "needs root, LXC and busybox");
    let mut net = Net::new();
    // The bridge's network is routed on the host already.
    net.bridge("d", &format!("{}/24", v4(17, 1)));
    let env = Env::new();
    env.busybox_ct("web");
    ok(&env, "ct netif new routed web eth0");
    ok(&env, &format!("ct netif ip add web eth0 {}/32", v4(17, 2)));
    // A route through the container's address, as osctld writes one, to it.
    let path = env.root().join("pools/default/conf/ct/web.yml");
    let conf = std::fs::read_to_string(&path).unwrap();
    let routes = format!("  routes:\n    v4:\n    - {}/32\n", v4(17, 2));
    let via = format!("    - {{address: {}/24, via: {}}}\n", v4(17, 0), v4(17, 2));
    assert!(conf.contains(&routes), "{conf}");
    std::fs::write(&path, conf.replace(&routes, &(routes.clone() + &via))).unwrap();
    let err = fails(&env, "ct start web");
    let cause = format!("veth hook: cannot route {}/24 into os", v4(17, 0));
    assert!(
        err.starts_with(&format!("error: cannot start container 'web': {cause}")),
        "{err}"
    );
    assert!(err.contains("File exists"), "{err}");
    assert_eq!(env.state("web"), "stopped");
    let mac = netif(&env, "default", "web", "eth0")["hwaddr"]
        .as_str()
        .unwrap()
        .replace(':', "");
    assert!(!iface_exists(&format!("os{mac}")));
    assert!(!env.root().join("lxc/default/web/hook-error").exists());
}

/// container.yml's `net_interfaces` as vpsAdminOS's osctld writes them.
fn original_interfaces(bridge: &str, mac: &str) -> String {
    format!(
        "net_interfaces:
- type: bridge
  name: eth0
  hwaddr: {mac}
  max_tx: 0
  max_rx: 0
  tx_queues: 1
  rx_queues: 1
  ip_addresses:
    v4:
    - {b}/24
    v6: []
  link: {bridge}
  dhcp: true
  gateways:
    v4: auto
    v6: auto
- type: routed
  name: eth1
  hwaddr:
  max_tx: 0
  max_rx: 0
  tx_queues: 1
  rx_queues: 1
  ip_addresses:
    v4:
    - {r}/32
    v6: []
  routes:
    v4:
    - {r}/32
    - address: {via_net}/24
      via: {r}
    v6: []
",
        b = v4(13, 2),
        r = v4(14, 2),
        via_net = v4(16, 0),
    )
}

/// An archive laid out as vpsAdminOS's osctl writes a tar-format one (GNU
/// tar, gzip, configs verbatim), of `rootfs`, with `container` as its
/// container.yml.
fn original_archive(env: &Env, rootfs: &Path, container: &str) -> String {
    let stage = env.path("stage");
    std::fs::create_dir_all(stage.join("config")).unwrap();
    std::fs::create_dir_all(stage.join("rootfs")).unwrap();
    let write = |name: &str, body: &str| std::fs::write(stage.join(name), body).unwrap();
    write("metadata.yml", "---\ntype: full\nformat: tar\nuser: legacy\ngroup: \"/default\"\ncontainer: orig\ndatasets: []\nexported_at: 1690000000\n");
    write("config/user.yml", "---\nuid_map:\n- 0:100000:65536\ngid_map:\n- 0:100000:65536\nstandalone: true\nattrs: {}\n");
    write("config/group.yml", "---\ncgparams: []\nattrs: {}\n");
    write("config/container.yml", container);
    write("snapshots.yml", "--- []\n");
    let tar = |args: &[&str]| assert!(Command::new("tar").args(args).status().unwrap().success());
    let base = stage.join("rootfs/base.tar.gz");
    tar(&[
        "-cz",
        "--numeric-owner",
        "-f",
        base.to_str().unwrap(),
        "-C",
        rootfs.to_str().unwrap(),
        ".",
    ]);
    let archive = env.path("orig.tar").to_string_lossy().into_owned();
    let stage = stage.to_str().unwrap();
    tar(&[
        "-cf",
        &archive,
        "-C",
        stage,
        "metadata.yml",
        "config",
        "rootfs",
        "snapshots.yml",
    ]);
    archive
}

#[test]
fn original_format_interfaces_of_a_hand_written_archive_apply() {
    require!(can_run_containers(), "needs root, LXC and busybox");
    let mut net = Net::new();
    let br = net.bridge("b", &format!("{}/24", v4(13, 1)));
    let env = Env::new();
    let rootfs = env.web_rootfs("orig-rootfs", "original hello");
    let pid = std::process::id();
    let mac = format!(
        "02:6f:72:{:02x}:{:02x}:{:02x}",
        pid >> 16 & 0xff,
        pid >> 8 & 0xff,
        pid & 0xff
    );
    let container = format!(
        "---\nuser: legacy\ngroup: \"/default\"\ndataset: tank/ct/orig\ndistribution: debian\nversion: '12'\n{}cgparams: []\ndevices: []\nprlimits: []\nmounts: []\nhostname:\ninit_cmd:\nraw: {{}}\nattrs: {{}}\n",
        original_interfaces(&br, &mac)
    );
    let archive = original_archive(&env, &rootfs, &container);
    ok(&env, "user new u1");
    ok(&env, &format!("ct import --as-user u1 {archive}"));
    let eth0 = netif(&env, "default", "orig", "eth0");
    assert_eq!(eth0["hwaddr"], mac.as_str());
    assert_eq!(eth0["dhcp"], true);
    // The routed one had none: LXC would have made one up at every start.
    let eth1 = netif(&env, "default", "orig", "eth1");
    assert!(
        eth1["hwaddr"].as_str().unwrap().starts_with("02:6f:73:"),
        "{eth1}"
    );
    ok(&env, "ct start orig");
    for name in ["eth0", "eth1"] {
        net.watch(
            netif(&env, "default", "orig", name)["veth"]
                .as_str()
                .unwrap(),
        );
    }
    for addr in [v4(13, 2), v4(14, 2)] {
        assert!(reachable(&addr), "{addr} does not answer");
        assert_eq!(http_get(&addr), "original hello");
    }
    // osctld's route through an address of the container.
    let via = ip(&["route", "show", &format!("{}/24", v4(16, 0))]);
    assert!(via.contains(&format!("via {} dev os", v4(14, 2))), "{via}");
    // The bridge's address became the default gateway (`auto`).
    let routes = ok(&env, "ct exec orig -- ip route");
    assert!(
        routes.contains(&format!("default via {} dev eth0", v4(13, 1))),
        "{routes}"
    );
    // Unknown keys of the original survive into the pool's config.
    let conf = std::fs::read_to_string(env.root().join("pools/default/conf/ct/orig.yml")).unwrap();
    assert!(
        conf.contains("tx_queues: 1") && conf.contains("v4: auto"),
        "{conf}"
    );
}

/// The valid hostile-test archive with `net_interfaces: netifs`.
fn with_netifs(netifs: &Value) -> Vec<u8> {
    valid()
        .with(|p| {
            let c = p.container.take().unwrap();
            p.container = Some(format!("{c}net_interfaces: {netifs}\n"));
        })
        .build()
}

fn routed(name: &str, addrs: Value, routes: Value) -> Value {
    json!([{"type": "routed", "name": name, "ip_addresses": {"v4": addrs}, "routes": {"v4": routes}}])
}

fn bridged(link: &str) -> Value {
    json!([{"type": "bridge", "name": "eth0", "link": link}])
}

/// Interfaces refused whatever the trust, and what the error says.
fn hostile_cases(br: &str) -> Vec<(&'static str, Value, &'static str)> {
    let hook = "\nlxc.hook.pre-start = /bin/sh -c id";
    let mac = |m: &str| json!([{"type": "routed", "name": "eth0", "hwaddr": m}]);
    let addrs = |a: &str| routed("eth0", json!([a]), json!([]));
    vec![
        (
            "name-newline",
            routed(&format!("eth0{hook}"), json!([]), json!([])),
            "net_interfaces[0].name",
        ),
        (
            "name-slash",
            routed("eth0/../x", json!([]), json!([])),
            "net_interfaces[0].name",
        ),
        (
            "name-long",
            routed("eth0123456789abc", json!([]), json!([])),
            "net_interfaces[0].name",
        ),
        (
            "link-newline",
            bridged(&format!("{br}{hook}")),
            "net_interfaces[0].link",
        ),
        (
            "type",
            json!([{"type": "macvlan", "name": "eth0"}]),
            "net_interfaces[0].type",
        ),
        (
            "mac-multicast",
            mac("01:00:5e:00:00:01"),
            "net_interfaces[0].hwaddr",
        ),
        (
            "mac-garbage",
            mac("02:6f:73:00:00:01 x"),
            "net_interfaces[0].hwaddr",
        ),
        (
            "address-args",
            addrs("10.0.0.1/24 dev lo"),
            "net_interfaces[0].ip_addresses",
        ),
        (
            "address-prefix",
            addrs("10.0.0.1/33"),
            "net_interfaces[0].ip_addresses",
        ),
        (
            "route-garbage",
            routed("eth0", json!([]), json!(["default"])),
            "net_interfaces[0].routes",
        ),
        (
            "bridge-missing",
            bridged("tbnosuch1"),
            "bridge 'tbnosuch1' does not exist",
        ),
        ("bridge-not-bridge", bridged("lo"), "'lo' is not a bridge"),
    ]
}

#[test]
fn hostile_interfaces_are_refused() {
    require!(is_root(), "needs root");
    let _turn = take_turn();
    let mut net = Net::new();
    let br = net.bridge("c", &format!("{}/24", v4(15, 1)));
    let env = Env::new();
    let mut failures: Vec<String> = hostile_cases(&br)
        .iter()
        .filter_map(|(name, netifs, expect)| refused(&env, name, &with_netifs(netifs), &[], expect))
        .collect();
    // Routes over the whole IPv4 space would take the host's own traffic.
    let wide = routed(
        "eth0",
        json!([v4(15, 9) + "/32"]),
        json!(["0.0.0.0/1", "128.0.0.0/1"]),
    );
    failures.extend(refused(
        &env,
        "route-host",
        &with_netifs(&wide),
        &[],
        "covers this host's address",
    ));
    // An address routed to another container of the host.
    env.busybox_ct("holder");
    ok(&env, "ct netif new routed holder eth0");
    ok(
        &env,
        &format!("ct netif ip add holder eth0 {}/32", v4(15, 2)),
    );
    let taken = with_netifs(&routed(
        "eth0",
        json!([v4(15, 2) + "/32"]),
        json!([v4(15, 2) + "/32"]),
    ));
    failures.extend(refused(
        &env,
        "taken",
        &taken,
        &[],
        "to container 'holder' of pool 'default'",
    ));
    failures.extend(refused(
        &env,
        "taken-trusted",
        &taken,
        &["--trusted"],
        "container 'holder'",
    ));
    // A bridge the pool does not allow: only with --trusted.
    ok(&env, "pool set allowed-bridges default tbother0");
    let on_br = with_netifs(&bridged(&br));
    failures.extend(refused(
        &env,
        "bridge-not-allowed",
        &on_br,
        &[],
        "which pool 'default' does not allow",
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let file = env.path("on-br.tar");
    std::fs::write(&file, &on_br).unwrap();
    let file = file.to_str().unwrap();
    ok(&env, &format!("ct import --trusted {file}"));
    assert_eq!(
        netif(&env, "default", "victim", "eth0")["link"],
        br.as_str()
    );
    ok(&env, "ct del victim");
    ok(&env, &format!("pool set allowed-bridges default {br}"));
    ok(&env, &format!("ct import {file}"));
    ok(&env, "ct del victim");
    ok(&env, "user del hostile");
}
