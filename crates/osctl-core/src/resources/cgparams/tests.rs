use super::*;
use serde_json::json;

fn entry(version: u8, name: &str, value: Value) -> Value {
    json!({"version": version, "subsystem": name.split('.').next().unwrap(), "name": name,
           "value": [value], "persistent": true})
}

fn params(entries: &[Value]) -> Vec<CgParam> {
    list_from_config("", entries).unwrap()
}

fn host(v: Version) -> impl Fn(Controller) -> Version {
    move |_| v
}

fn files(l: &Limits, c: Controller, v: Version) -> Vec<(String, String)> {
    l.writes(c, v)
        .unwrap()
        .into_iter()
        .map(|w| (w.file.to_string(), w.value))
        .collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

#[test]
fn memory_of_the_original_on_either_host() {
    // What osctld's `memory-limit 1G` writes: both versions.
    let p = params(&[
        entry(2, "memory.max", json!(1073741824)),
        entry(2, "memory.swap.max", json!(0)),
        entry(1, "memory.limit_in_bytes", json!(1073741824)),
        entry(1, "memory.memsw.limit_in_bytes", json!(1073741824)),
    ]);
    for v in [Version::V1, Version::V2] {
        let l = Limits::resolve(&p, host(v)).unwrap();
        assert_eq!(l.memory, Some(Limit::Value(1 << 30)));
        assert_eq!(l.swap, Some(Limit::Value(0)));
    }
    let v1 = Limits::resolve(&p, host(Version::V1)).unwrap();
    assert_eq!(
        files(&v1, Controller::Memory, Version::V1),
        [
            pair("memory.limit_in_bytes", "1073741824"),
            pair("memory.memsw.limit_in_bytes", "1073741824")
        ]
    );
    assert_eq!(
        files(&v1, Controller::Memory, Version::V2),
        [
            pair("memory.max", "1073741824"),
            pair("memory.swap.max", "0")
        ]
    );
}

#[test]
fn v1_only_config_translates_to_v2() {
    let p = params(&[
        entry(1, "memory.limit_in_bytes", json!("536870912")),
        entry(1, "memory.memsw.limit_in_bytes", json!(805306368)),
        entry(1, "memory.soft_limit_in_bytes", json!(-1)),
        entry(1, "cpu.cfs_quota_us", json!(50000)),
        entry(1, "cpu.cfs_period_us", json!(100000)),
        entry(1, "cpu.shares", json!(1024)),
        entry(1, "pids.max", json!(100)),
        entry(1, "blkio.weight", json!(500)),
    ]);
    let l = Limits::resolve(&p, host(Version::V2)).unwrap();
    let mut all = Vec::new();
    for c in Controller::ALL {
        all.extend(files(&l, c, Version::V2));
    }
    assert_eq!(
        all,
        [
            pair("memory.max", "536870912"),
            pair("memory.swap.max", "268435456"),
            pair("memory.low", "max"),
            pair("cpu.max", "50000 100000"),
            pair("cpu.weight", "39"),
            pair("pids.max", "100"),
            pair("io.weight", "4950"),
        ]
    );
    assert_eq!(l.cpu.unwrap().percent(), Some(50.0));
}

#[test]
fn v2_only_config_on_a_v1_host() {
    let p = params(&[
        entry(2, "memory.max", json!(67108864)),
        entry(2, "memory.swap.max", json!("max")),
        entry(2, "cpu.max", json!("max 50000")),
        entry(2, "cpu.weight", json!(100)),
        entry(2, "io.weight", json!("default 100")),
    ]);
    let l = Limits::resolve(&p, host(Version::V1)).unwrap();
    assert_eq!(
        files(&l, Controller::Memory, Version::V1),
        [
            pair("memory.limit_in_bytes", "67108864"),
            pair("memory.memsw.limit_in_bytes", "-1")
        ]
    );
    assert_eq!(
        files(&l, Controller::Cpu, Version::V1),
        [
            pair("cpu.cfs_period_us", "50000"),
            pair("cpu.cfs_quota_us", "-1"),
            pair("cpu.shares", "2597")
        ]
    );
    assert_eq!(
        files(&l, Controller::Io, Version::V1),
        [pair("blkio.weight", "19")]
    );
}

#[test]
fn the_host_version_wins_and_the_other_fills_in() {
    // Memory limit only in v1 names, swap only in v2's: a v1 host adds them.
    let p = params(&[
        entry(1, "memory.limit_in_bytes", json!(1 << 30)),
        entry(2, "memory.max", json!(2u64 << 30)),
        entry(2, "memory.swap.max", json!(1 << 30)),
    ]);
    let v1 = Limits::resolve(&p, host(Version::V1)).unwrap();
    assert_eq!(v1.memory, Some(Limit::Value(1 << 30)));
    assert_eq!(
        files(&v1, Controller::Memory, Version::V1)[1],
        pair("memory.memsw.limit_in_bytes", &(2u64 << 30).to_string())
    );
    let v2 = Limits::resolve(&p, host(Version::V2)).unwrap();
    assert_eq!(v2.memory, Some(Limit::Value(2 << 30)));
}

#[test]
fn swap_needs_memory_on_v1() {
    let e = list_from_config(
        "",
        &[entry(1, "memory.memsw.limit_in_bytes", json!(1 << 30))],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("needs a memory.limit_in_bytes"), "{e}");
    let e = list_from_config(
        "",
        &[
            entry(1, "memory.limit_in_bytes", json!(2u64 << 30)),
            entry(1, "memory.memsw.limit_in_bytes", json!(1 << 30)),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("is below"), "{e}");
    let p = params(&[entry(2, "memory.swap.max", json!(1 << 20))]);
    let l = Limits::resolve(&p, host(Version::V1)).unwrap();
    assert!(l.writes(Controller::Memory, Version::V1).is_err());
    assert!(l.writes(Controller::Memory, Version::V2).is_ok());
}

#[test]
fn weights_convert_both_ways() {
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(262_144), 10_000);
    assert_eq!(weight_to_shares(1), 2);
    assert_eq!(weight_to_shares(10_000), 262_144);
    assert_eq!(blkio_to_io(10), 1);
    assert_eq!(blkio_to_io(1000), 10_000);
    assert_eq!(io_to_blkio(1), 10);
    assert_eq!(io_to_blkio(10_000), 1000);
}

#[test]
fn hostile_and_unknown_parameters_are_refused_in_one_line() {
    let hook = "1073741824\nlxc.hook.pre-start = /bin/sh -c id";
    let bad = [
        entry(1, "memory.limit_in_bytes", json!(hook)),
        entry(1, "memory.limit_in_bytes", json!("1G")),
        entry(1, "memory.limit_in_bytes", json!(" 1073741824")),
        entry(1, "memory.limit_in_bytes", json!(100)),
        entry(1, "memory.limit_in_bytes", json!("99999999999999999999999")),
        entry(1, "memory.limit_in_bytes", json!(u64::MAX)),
        entry(1, "memory.limit_in_bytes", json!(-2)),
        entry(1, "memory.limit_in_bytes", json!(1.5)),
        entry(1, "memory.limit_in_bytes", json!(null)),
        entry(2, "memory.limit_in_bytes", json!(1 << 30)),
        entry(3, "pids.max", json!(10)),
        entry(1, "pids.max", json!(0)),
        entry(1, "pids.max", json!("max\n")),
        entry(2, "cpu.max", json!("50000 100000 1")),
        entry(2, "cpu.max", json!("50000  100000")),
        entry(2, "cpu.max", json!("10 100000")),
        entry(1, "cpu.cfs_period_us", json!(10)),
        entry(1, "cpu.shares", json!(1)),
        entry(1, "memory.kmem.limit_in_bytes", json!(1 << 30)),
        entry(1, "memory.swappiness", json!(0)),
        entry(1, "cpuset.cpus", json!("0-1")),
        entry(1, "foo.bar", json!(1)),
        entry(1, "../../../etc/passwd", json!(1)),
        entry(1, "memory.limit_in_bytes\nlxc.hook.mount", json!(1 << 30)),
        json!({"version": 1, "subsystem": "cpu", "name": "memory.limit_in_bytes", "value": [1 << 30]}),
        json!({"version": 1, "subsystem": "memory", "name": "memory.limit_in_bytes", "value": [1 << 30, 1 << 29]}),
        json!({"version": "1", "name": "pids.max", "value": [1]}),
        json!({"version": 1, "value": [1]}),
        json!(["memory.limit_in_bytes", 1]),
    ];
    for b in &bad {
        let e = list_from_config("", std::slice::from_ref(b))
            .expect_err(&b.to_string())
            .to_string();
        assert!(e.starts_with("cgparams[0]"), "{e}");
        assert!(!e.contains('\n') && e.len() < 700, "{e:?}");
    }
    let e = list_from_config("", &[entry(1, "foo.bar", json!(1))])
        .unwrap_err()
        .to_string();
    assert!(e.contains("'foo.bar'") || e.contains("\"foo.bar\""), "{e}");
    assert!(e.contains("unknown"), "{e}");
    let twice = [
        entry(1, "pids.max", json!(1)),
        entry(1, "pids.max", json!(2)),
    ];
    assert!(list_from_config("", &twice).is_err());
}

#[test]
fn config_entries_round_trip() {
    let p = parse(None, "cpu.max", &json!("25000 100000")).unwrap();
    assert_eq!(p.version, Version::V2);
    let back = from_config("x", &to_config(&p)).unwrap();
    assert_eq!(back, p);
    let m = parse(Some(1), "memory.limit_in_bytes", &json!("1073741824")).unwrap();
    assert_eq!(to_config(&m)["value"], json!([1073741824]));
    assert_eq!(to_config(&m)["subsystem"], "memory");
    let io = parse(None, "blkio.weight", &json!(100)).unwrap();
    assert_eq!(to_config(&io)["subsystem"], "blkio");
    // Counterparts of the other version set the same thing.
    let v2 = parse(None, "memory.max", &json!("max")).unwrap();
    assert!(m.same_setting(&v2) && !m.same_setting(&io));
    let quota = parse(None, "cpu.cfs_quota_us", &json!(-1)).unwrap();
    assert!(quota.same_setting(&p));
    let pids1 = parse(Some(1), "pids.max", &json!(5)).unwrap();
    let pids2 = parse(Some(2), "pids.max", &json!(5)).unwrap();
    assert!(pids1.same_setting(&pids2));
}

#[test]
fn lxc_keys_follow_the_version() {
    let w = Write {
        controller: Controller::Pids,
        version: Version::V2,
        file: "pids.max",
        value: "50".into(),
    };
    assert_eq!(w.lxc_key(), "lxc.cgroup2.pids.max");
    assert_eq!(
        Write {
            version: Version::V1,
            ..w
        }
        .lxc_key(),
        "lxc.cgroup.pids.max"
    );
}
