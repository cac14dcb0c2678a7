//! Pools, users and groups through the CLI.

use super::support::Env;

#[test]
fn default_pool_is_created_on_first_use() {
    let env = Env::new();
    let pools = env.json(&["pool", "ls"]);
    assert_eq!(pools.as_array().unwrap().len(), 0);
    env.ok(&["group", "ls"]);
    let pools = env.json(&["pool", "ls"]);
    assert_eq!(pools[0]["name"], "default");
    assert_eq!(pools[0]["backend"], "dir");
    let groups = env.json(&["group", "ls"]);
    let names: Vec<_> = groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["/", "/default"]);
}

#[test]
fn pool_install_ls_uninstall() {
    let env = Env::new();
    let dir = env.path("p2");
    env.ok(&["pool", "install", "--path", dir.to_str().unwrap(), "second"]);
    assert!(dir.join("conf/group/default/config.yml").is_file());
    let err = env.fails(
        &[
            "pool",
            "install",
            "--path",
            env.path("p3").to_str().unwrap(),
            "second",
        ],
        1,
    );
    assert!(err.contains("pool 'second' already exists"), "{err}");
    let out = env.ok(&["pool", "ls"]);
    assert!(out.contains("second") && out.contains("dir"), "{out}");
    env.ok(&["pool", "uninstall", "second"]);
    assert!(dir.join("conf").is_dir(), "uninstall deletes nothing");
    // An existing non-empty directory that is not a pool is refused.
    let foreign = env.path("foreign");
    std::fs::create_dir_all(foreign.join("x")).unwrap();
    let err = env.fails(
        &[
            "pool",
            "install",
            "--path",
            foreign.to_str().unwrap(),
            "third",
        ],
        1,
    );
    assert!(err.contains("not empty"), "{err}");
    // A former pool directory is taken back as it is.
    env.ok(&["pool", "install", "--path", dir.to_str().unwrap(), "again"]);
}

#[test]
fn user_lifecycle_and_allocation() {
    let env = Env::with_private_subids();
    env.ok(&["user", "new", "a"]);
    env.ok(&["user", "new", "b"]);
    let a = env.json(&["user", "show", "a"]);
    let b = env.json(&["user", "show", "b"]);
    assert_ne!(a["uid_map"], b["uid_map"], "automatic blocks differ");
    let host = |u: &serde_json::Value| -> u64 {
        u["uid_map"][0]
            .as_str()
            .unwrap()
            .split(':')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(
        host(&a).abs_diff(host(&b)) >= 65536,
        "blocks do not overlap"
    );
    // The subuid lines LXC needs are there, and gone again after del.
    let line = format!("root:{}:65536", host(&a));
    assert!(std::fs::read_to_string(env.subuid_file())
        .unwrap()
        .lines()
        .any(|l| l == line));
    env.ok(&["user", "del", "a"]);
    let err = env.fails(&["user", "show", "a"], 1);
    assert!(err.contains("user 'a' not found"), "{err}");
    let remaining = std::fs::read_to_string(env.subuid_file()).unwrap();
    assert!(!remaining.lines().any(|l| l == line), "subuid line removed");
    let err = env.fails(&["user", "new", "b"], 1);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn overlapping_maps_are_refused() {
    let env = Env::new();
    env.ok(&["user", "new", "--map", "0:3000000:65536", "a"]);
    let err = env.fails(&["user", "new", "--map", "0:3060000:1000", "b"], 1);
    assert!(err.contains("overlaps user 'a'"), "{err}");
    assert!(env.fails(&["user", "show", "b"], 1).contains("not found"));
    env.ok(&[
        "user",
        "new",
        "--map-uid",
        "0:3065536:65536",
        "--map-gid",
        "0:3200000:65536",
        "c",
    ]);
    let c = env.json(&["user", "show", "c"]);
    assert_eq!(c["gid_map"][0], "0:3200000:65536");
}

#[test]
fn groups_are_hierarchical() {
    let env = Env::new();
    env.ok(&["group", "new", "/web"]);
    env.ok(&["group", "new", "/web/front"]);
    let err = env.fails(&["group", "new", "/db/main"], 1);
    assert!(err.contains("parent group '/db' does not exist"), "{err}");
    let err = env.fails(&["group", "del", "/web"], 1);
    assert!(err.contains("subgroup '/web/front'"), "{err}");
    env.ok(&["group", "del", "/web/front"]);
    env.ok(&["group", "del", "/web"]);
    assert!(env
        .fails(&["group", "del", "/default"], 1)
        .contains("cannot be deleted"));
}

#[test]
fn invalid_names_are_usage_errors_and_create_nothing() {
    let env = Env::new();
    env.ok(&["pool", "ls"]);
    for args in [
        vec!["user", "new", "Bad"],
        vec!["user", "new", "../x"],
        vec!["group", "new", "nogroupslash"],
        vec!["group", "new", "/a/../b"],
        vec!["user", "new", "--map", "0:1:0", "x"],
        vec![
            "ct",
            "new",
            "--user",
            "u",
            "--from-dir",
            "/nonexistent",
            "UPPER",
        ],
        vec![
            "ct",
            "new",
            "--user",
            "u",
            "--from-dir",
            "/nonexistent",
            "a.b",
        ],
    ] {
        let err = env.fails(&args, 2);
        assert!(err.contains("invalid"), "{args:?}: {err}");
    }
    assert_eq!(env.json(&["user", "ls"]).as_array().unwrap().len(), 0);
    assert_eq!(env.json(&["group", "ls"]).as_array().unwrap().len(), 2);
    assert_eq!(env.json(&["ct", "ls"]).as_array().unwrap().len(), 0);
    // clap's own usage errors exit 2 as well.
    let out = env.run(&["ct", "new"]);
    assert_eq!(out.status.code(), Some(2));
}
