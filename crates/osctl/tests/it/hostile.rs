//! Broken and hostile archives: each is refused with one clear error line and
//! leaves nothing behind (no container, dataset, user, group, journal).

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use serde_json::{json, Value};

use super::rawtar::{self, Entry, Kind};
use super::support::{can_run_containers, is_root, wait_until, Env};
use crate::require;

/// The pieces of an archive in the original's layout, to be spoiled one at a time.
#[derive(Clone)]
pub(super) struct Parts {
    pub metadata: String,
    pub user: Option<String>,
    pub group: Option<String>,
    pub container: Option<String>,
    /// Entries between the configs and `rootfs/`.
    pub hooks: Vec<Entry>,
    /// Entries of the root file system tar (`rootfs/base.tar.gz`).
    pub rootfs: Vec<Entry>,
    /// Replaces the gzip of `rootfs` when set.
    pub rootfs_bytes: Option<Vec<u8>>,
    pub base_name: String,
    pub snapshots: Option<String>,
    /// Extra outer entries, added before `snapshots.yml`.
    pub extra: Vec<Entry>,
}

const MAP: &str = "0:3900000000:65536";

pub(super) fn valid() -> Parts {
    Parts {
        metadata: "---\ntype: full\nformat: tar\nuser: hostile\ngroup: /default\ncontainer: victim\ndatasets: []\nexported_at: 1700000000\n".into(),
        user: Some(format!("---\nuid_map:\n- {MAP}\ngid_map:\n- {MAP}\nstandalone: true\nattrs: {{}}\n")),
        group: Some("---\ncgparams: []\nattrs: {}\n".into()),
        container: Some("---\nuser: hostile\ngroup: /default\ndataset: tank/ct/victim\nhostname: victim\nraw: {}\nmounts: []\ndevices: []\nattrs: {}\n".into()),
        hooks: Vec::new(),
        rootfs: vec![
            Entry::dir("./"),
            Entry::dir("./etc/"),
            Entry::file("./etc/hostname", b"victim\n"),
            Entry::dir("./bin/"),
            Entry::file("./bin/suid", b"#!/bin/sh\n").mode(0o4755),
        ],
        rootfs_bytes: None,
        base_name: "rootfs/base.tar.gz".into(),
        snapshots: Some("---\n- osctl-base-1700000000\n".into()),
        extra: Vec::new(),
    }
}

impl Parts {
    pub(super) fn build(&self) -> Vec<u8> {
        let mut outer = vec![
            Entry::file("metadata.yml", self.metadata.as_bytes()),
            Entry::dir("config/"),
        ];
        for (name, body) in [
            ("user", &self.user),
            ("group", &self.group),
            ("container", &self.container),
        ] {
            if let Some(body) = body {
                outer.push(Entry::file(&format!("config/{name}.yml"), body.as_bytes()));
            }
        }
        outer.extend(self.hooks.iter().cloned());
        outer.push(Entry::dir("rootfs/"));
        let stream = self
            .rootfs_bytes
            .clone()
            .unwrap_or_else(|| rawtar::gzip(&rawtar::build(&self.rootfs)));
        outer.push(Entry::file(&self.base_name, &stream));
        outer.extend(self.extra.iter().cloned());
        if let Some(s) = &self.snapshots {
            outer.push(Entry::file("snapshots.yml", s.as_bytes()));
        }
        rawtar::build(&outer)
    }

    pub(super) fn with(mut self, f: impl FnOnce(&mut Parts)) -> Parts {
        f(&mut self);
        self
    }
}

/// What the pool holds: containers, users, groups, files under ct/ and state/.
pub(super) fn pool_inventory(env: &Env) -> Vec<String> {
    let mut out = Vec::new();
    for what in ["ct", "user", "group"] {
        let list = env.json(&[what, "ls"]);
        for item in list.as_array().unwrap() {
            let key = if what == "ct" { "id" } else { "name" };
            out.push(format!("{what} {}", item[key].as_str().unwrap()));
        }
    }
    let pool = env.root().join("pools/default");
    for dir in ["ct", "state", "conf/ct", "conf/user", "../../locks/default"] {
        if let Ok(entries) = std::fs::read_dir(pool.join(dir)) {
            for e in entries.flatten() {
                out.push(format!("{dir}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    out.sort();
    out
}

/// Lines of the host's subuid and subgid files for the host ranges the
/// archives here use (other tests running meanwhile change other lines).
fn subid_lines(env: &Env) -> Vec<String> {
    let ours = |l: &&str| {
        [
            "root:3900000000:65536",
            "root:3900000100:65536",
            "root:0:65536",
            XATTR_MAP_LINE,
        ]
        .contains(l)
    };
    let subuid = env.subuid_file();
    [subuid.with_file_name("subgid"), subuid]
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            text.lines()
                .filter(ours)
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The archives here map host ids from 3900000000 and [`refused`] watches
/// those lines of /etc/subuid: tests that import them take turns, or one's
/// import would look like another's leftover.
pub(super) fn take_turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Imports `bytes` with `args`, expects one clear error line containing
/// `expect` and exit status 1, and checks that the pool and the host ids are
/// as before. Returns what went wrong, if anything.
/// The valid archive with `mounts` (a YAML list) in its container.yml.
fn with_mounts(mounts: &str) -> Vec<u8> {
    valid()
        .with(|p| {
            p.container = p
                .container
                .as_ref()
                .map(|c| c.replace("mounts: []", &format!("mounts:\n{mounts}")))
        })
        .build()
}

/// An archive that an import must refuse, leaving nothing behind.
struct Hostile<'a> {
    /// Also the archive's file name.
    name: &'a str,
    archive: Vec<u8>,
    /// Arguments of `osctl ct import` before the archive.
    args: Vec<&'a str>,
    /// A part of the one-line refusal.
    refusal: &'a str,
}

fn hostile<'a>(
    name: &'a str,
    archive: Vec<u8>,
    args: Vec<&'a str>,
    refusal: &'a str,
) -> Hostile<'a> {
    Hostile {
        name,
        archive,
        args,
        refusal,
    }
}

pub(super) fn refused(
    env: &Env,
    name: &str,
    bytes: &[u8],
    args: &[&str],
    expect: &str,
) -> Option<String> {
    let file = env.path(&format!("{name}.tar"));
    std::fs::write(&file, bytes).unwrap();
    let before = pool_inventory(env);
    let subids = subid_lines(env);
    let mut full = vec!["ct", "import"];
    full.extend_from_slice(args);
    full.push(file.to_str().unwrap());
    let out = env.run(&full);
    let err = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
    let mut problems = Vec::new();
    if out.status.code() != Some(1) {
        problems.push(format!("exit {:?}", out.status.code()));
    }
    if err.lines().count() != 1 || !err.starts_with("error: ") {
        problems.push("not one error line".to_string());
    }
    if !err.to_lowercase().contains(&expect.to_lowercase()) {
        problems.push(format!("no mention of {expect:?}"));
    }
    let after = pool_inventory(env);
    if after != before {
        problems.push(format!("left behind: {after:?}"));
    }
    if subid_lines(env) != subids {
        problems.push("/etc/subuid or /etc/subgid changed".into());
    }
    if Path::new("/tmp/osctl-escaped").exists() {
        problems.push("wrote outside the root".into());
    }
    (!problems.is_empty()).then(|| format!("{name}: {} (stderr: {err:?})", problems.join(", ")))
}

#[test]
fn a_valid_archive_imports_and_hostile_ones_are_refused() {
    require!(is_root(), "needs root (owners, subuid)");
    let _turn = take_turn();
    let env = Env::new();
    env.ok(&["pool", "ls"]);
    env.ok(&["group", "ls"]);

    // Control: the unspoiled archive imports, so every refusal below comes from its spoiling.
    let good = env.path("good.tar");
    std::fs::write(&good, valid().build()).unwrap();
    env.ok(&["ct", "import", "--as-id", "control", good.to_str().unwrap()]);
    let rootfs = env.rootfs_of("control");
    assert_eq!(
        std::fs::read(rootfs.join("etc/hostname")).unwrap(),
        b"victim\n"
    );
    assert_eq!(env.state("control"), "stopped");
    // Setuid files inside the container's map are kept as they are.
    use std::os::unix::fs::MetadataExt;
    let suid = std::fs::metadata(rootfs.join("bin/suid")).unwrap();
    assert_eq!((suid.mode() & 0o7777, suid.uid()), (0o4755, 0));

    let gz = |entries: Vec<Entry>| valid().with(|p| p.rootfs = entries).build();
    let inner = |extra: Vec<Entry>| {
        let mut v = valid().rootfs;
        v.extend(extra);
        gz(v)
    };
    let complete = valid().build();
    let cases: Vec<Hostile> = vec![
        hostile("empty", Vec::new(), vec![], "metadata.yml"),
        hostile(
            "garbage",
            b"this is not a tar archive at all, not even close".repeat(40),
            vec![],
            "archive",
        ),
        hostile(
            "truncated-in-stream",
            complete[..complete.len() / 2 + 700].to_vec(),
            vec![],
            "truncated",
        ),
        hostile(
            "truncated-in-header",
            complete[..1024 + 100].to_vec(),
            vec![],
            "truncated",
        ),
        hostile(
            "no-metadata",
            valid().with(|p| p.metadata.clear()).build()[512 + 512..].to_vec(),
            vec![],
            "metadata.yml",
        ),
        hostile(
            "bad-yaml",
            valid()
                .with(|p| p.metadata = "type: [unclosed\n".into())
                .build(),
            vec![],
            "metadata.yml",
        ),
        hostile(
            "yaml-bomb",
            valid()
                .with(|p| {
                    let mut m = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
                    for i in 1..12 {
                        let q = format!("*a{}", i - 1);
                        m += &format!(
                            "a{i}: &a{i} [{q}, {q}, {q}, {q}, {q}, {q}, {q}, {q}, {q}, {q}]\n"
                        );
                    }
                    p.metadata = m;
                })
                .build(),
            vec![],
            "metadata.yml",
        ),
        hostile(
            "deep-yaml",
            valid()
                .with(|p| p.container = Some("[".repeat(5000) + &"]".repeat(5000)))
                .build(),
            vec![],
            "container.yml",
        ),
        hostile(
            "duplicate-keys",
            valid()
                .with(|p| {
                    p.metadata = p
                        .metadata
                        .replace("type: full\n", "type: full\ntype: full\n")
                })
                .build(),
            vec![],
            "metadata.yml",
        ),
        hostile(
            "wrong-types",
            valid()
                .with(|p| p.container = Some("---\nuser: [1, 2]\ngroup: 3\n".into()))
                .build(),
            vec![],
            "container.yml",
        ),
        hostile(
            "unknown-format",
            valid()
                .with(|p| p.metadata = p.metadata.replace("format: tar", "format: xfs"))
                .build(),
            vec![],
            "format",
        ),
        hostile(
            "zfs-into-dir",
            valid()
                .with(|p| {
                    p.metadata = p.metadata.replace("format: tar", "format: zfs");
                    p.base_name = "rootfs/base.dat".into();
                })
                .build(),
            vec![],
            "zfs pool",
        ),
        hostile(
            "bad-id",
            valid()
                .with(|p| {
                    p.metadata = p
                        .metadata
                        .replace("container: victim", "container: ../../etc")
                })
                .build(),
            vec![],
            "invalid container id",
        ),
        hostile(
            "bad-user-name",
            valid()
                .with(|p| p.metadata = p.metadata.replace("user: hostile", "user: \"root:x\""))
                .build(),
            vec![],
            "invalid user name",
        ),
        hostile(
            "skel",
            valid()
                .with(|p| p.metadata = p.metadata.replace("type: full", "type: skel"))
                .build(),
            vec![],
            "skel",
        ),
        hostile(
            "no-container-yml",
            valid().with(|p| p.container = None).build(),
            vec![],
            "container.yml",
        ),
        hostile(
            "no-rootfs",
            valid()
                .with(|p| p.base_name = "rootfs/other.bin".into())
                .build(),
            vec![],
            "rootfs/other.bin",
        ),
        hostile(
            "missing-base",
            valid()
                .with(|p| p.base_name = "rootfs/incremental.tar.gz".into())
                .build(),
            vec![],
            "base",
        ),
        hostile(
            "unknown-entry",
            valid()
                .with(|p| p.extra = vec![Entry::file("evil.sh", b"#!/bin/sh\n")])
                .build(),
            vec![],
            "evil.sh",
        ),
        hostile(
            "outer-traversal",
            valid()
                .with(|p| p.extra = vec![Entry::file("../../tmp/osctl-escaped", b"x")])
                .build(),
            vec![],
            "..",
        ),
        hostile(
            "outer-symlink",
            valid()
                .with(|p| p.extra = vec![Entry::link(Kind::Symlink, "rootfs/link", "/etc")])
                .build(),
            vec![],
            "rootfs/link",
        ),
        hostile(
            "rootfs-dotdot",
            inner(vec![Entry::file("./../../../../tmp/osctl-escaped", b"x")]),
            vec![],
            "..",
        ),
        hostile(
            "rootfs-absolute",
            inner(vec![Entry::file("/tmp/osctl-escaped", b"x")]),
            vec![],
            "/tmp/osctl-escaped",
        ),
        hostile(
            "rootfs-through-symlink",
            inner(vec![
                Entry::link(Kind::Symlink, "./up", "/tmp"),
                Entry::file("./up/osctl-escaped", b"x"),
            ]),
            vec![],
            "up/osctl-escaped",
        ),
        hostile(
            "rootfs-hardlink-host",
            inner(vec![Entry::link(Kind::HardLink, "./passwd", "/etc/passwd")]),
            vec![],
            "passwd",
        ),
        hostile(
            "rootfs-hardlink-dotdot",
            inner(vec![Entry::link(
                Kind::HardLink,
                "./x",
                "../../../../etc/passwd",
            )]),
            vec![],
            "..",
        ),
        hostile(
            "rootfs-pax-override",
            inner(vec![
                Entry::pax(&[("path", b"../../../../tmp/osctl-escaped")]),
                Entry::file("./harmless", b"x"),
            ]),
            vec![],
            "..",
        ),
        hostile(
            "rootfs-gnu-longname",
            inner(vec![
                Entry::gnu_long_name(&format!(
                    "./{}/../../../../../tmp/osctl-escaped",
                    "a".repeat(120)
                )),
                Entry::file("./short", b"x"),
            ]),
            vec![],
            "..",
        ),
        hostile(
            "rootfs-uid-outside-map",
            inner(vec![Entry::file("./etc/owned", b"x").owner(70000, 0)]),
            vec![],
            "70000",
        ),
        hostile(
            "rootfs-setuid-outside-map",
            inner(vec![Entry::file("./bin/su", b"#!/bin/sh\n")
                .mode(0o4755)
                .owner(0, 200_000)]),
            vec![],
            "200000",
        ),
        hostile(
            "rootfs-device",
            inner(vec![Entry::device(Kind::BlockDev, "./dev/sda", 8, 0)]),
            vec![],
            "dev/sda",
        ),
        hostile(
            "rootfs-corrupt-gzip",
            valid()
                .with(|p| {
                    p.rootfs_bytes = Some({
                        let mut g = rawtar::gzip(&rawtar::build(&valid().rootfs));
                        let n = g.len();
                        g[n - 6] ^= 0xff; // CRC of the member
                        g
                    })
                })
                .build(),
            vec![],
            "rootfs/base.tar.gz",
        ),
        hostile(
            "host-root-map",
            valid()
                .with(|p| {
                    p.metadata = p.metadata.replace("user: hostile", "user: rooty");
                    p.user = Some("---\nuid_map:\n- 0:0:65536\ngid_map:\n- 0:0:65536\n".into())
                })
                .build(),
            vec![],
            "host root",
        ),
        hostile(
            "raw-lxc",
            valid()
                .with(|p| {
                    p.container = p.container.as_ref().map(|c| {
                        c.replace(
                            "raw: {}",
                            "raw:\n  lxc: \"lxc.apparmor.profile = unconfined\"",
                        )
                    })
                })
                .build(),
            vec![],
            "raw LXC",
        ),
        hostile(
            "host-mount",
            valid()
                .with(|p| {
                    p.container = p.container.as_ref().map(|c| {
                        c.replace(
                            "mounts: []",
                            "mounts:\n- fs: /\n  mountpoint: /host\n  type: bind\n  opts: rbind",
                        )
                    })
                })
                .build(),
            vec![],
            "mounts",
        ),
        hostile(
            "dataset-mount-of-a-dataset-not-brought",
            with_mounts("- fs:\n  mountpoint: /var\n  type: bind\n  opts: bind,create=dir,rw\n  dataset: var"),
            vec!["--trusted"],
            "mounts dataset 'var' at /var, which the container does not have",
        ),
        hostile(
            "dataset-mount-outside",
            with_mounts("- mountpoint: /../../etc\n  dataset: /"),
            vec!["--trusted"],
            "/../../etc\" has a '..' component",
        ),
        hostile(
            "dataset-mount-with-a-host-path",
            with_mounts("- fs: /etc\n  mountpoint: /mnt\n  dataset: /"),
            vec!["--trusted"],
            "names a host path",
        ),
        hostile(
            "dataset-mount-unusual-option",
            with_mounts("- mountpoint: /mnt/self\n  opts: bind,idmap=/proc/1/ns/user\n  dataset: /"),
            vec![],
            "option 'idmap=/proc/1/ns/user'",
        ),
        hostile(
            "devices",
            valid()
                .with(|p| {
                    p.container = p.container.as_ref().map(|c| {
                        c.replace(
                            "devices: []",
                            "devices:\n- type: block\n  major: 8\n  minor: 0\n  mode: rwm",
                        )
                    })
                })
                .build(),
            vec![],
            "device",
        ),
        hostile(
            "hooks",
            valid()
                .with(|p| {
                    p.hooks = vec![
                        Entry::dir("hooks/"),
                        Entry::file("hooks/pre-start", b"#!/bin/sh\nid\n"),
                    ]
                })
                .build(),
            vec![],
            "hook",
        ),
        hostile(
            "missing-as-user",
            valid().build(),
            vec!["--as-user", "nobody-here"],
            "user 'nobody-here' not found",
        ),
        hostile(
            "missing-as-group",
            valid().build(),
            vec!["--as-group", "/nowhere"],
            "group '/nowhere' not found",
        ),
        hostile(
            "existing-id",
            valid().build(),
            vec!["--as-id", "control"],
            "container 'control' already exists",
        ),
        hostile(
            "user-map-mismatch",
            valid()
                .with(|p| p.metadata = p.metadata.replace("user: hostile", "user: u-existing"))
                .build(),
            vec!["--as-id", "other"],
            "u-existing",
        ),
        hostile(
            "overlapping-map",
            valid()
                .with(|p| {
                    p.metadata = p.metadata.replace("user: hostile", "user: newcomer");
                    p.user = Some(
                        "---\nuid_map:\n- 0:3900000100:65536\ngid_map:\n- 0:3900000100:65536\n"
                            .into(),
                    );
                })
                .build(),
            vec!["--as-id", "other2", "--keep-map"],
            "overlaps",
        ),
        hostile(
            // Host ids of a user of another pool on this host.
            "map-of-another-pool",
            valid()
                .with(|p| {
                    p.metadata = p.metadata.replace("user: hostile", "user: newcomer");
                    p.user = Some(
                        "---\nuid_map:\n- 0:3900200000:65536\ngid_map:\n- 0:3900200000:65536\n"
                            .into(),
                    );
                })
                .build(),
            vec!["--as-id", "other4", "--keep-map"],
            "overlaps host ids 3900200000-3900265535",
        ),
        hostile(
            "missing-parent-group",
            valid()
                .with(|p| p.metadata = p.metadata.replace("group: /default", "group: /a/b"))
                .build(),
            vec!["--as-id", "other3"],
            "'/a'",
        ),
        hostile(
            "huge-config",
            valid()
                .with(|p| {
                    p.container = Some(format!(
                        "---\nuser: hostile\ngroup: /default\nx: \"{}\"\n",
                        "y".repeat(2 << 20)
                    ))
                })
                .build(),
            vec![],
            "container.yml",
        ),
        hostile(
            "lying-size",
            valid()
                .with(|p| {
                    p.extra = vec![Entry {
                        size: Some(1 << 32),
                        ..Entry::file("checksums.yml", b"")
                    }]
                })
                .build(),
            vec![],
            "checksums.yml",
        ),
    ];
    env.ok(&["user", "new", "--map", "0:3800000000:65536", "u-existing"]);
    let another_pool = Env::new();
    another_pool.ok(&["user", "new", "--map", "0:3900200000:65536", "u-elsewhere"]);
    assert!(cases.len() >= 25);
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| refused(&env, c.name, &c.archive, &c.args, c.refusal))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// An LXC hook line that, if LXC ever read it, would create `marker` as host root.
fn hook_line(marker: &Path) -> String {
    format!(
        "lxc.hook.pre-start = /bin/sh -c \"id > {}\"",
        marker.display()
    )
}

/// The valid archive with `key: value` in its container.yml.
fn with_ct_key(key: &str, value: &Value) -> Vec<u8> {
    valid()
        .with(|p| p.container = p.container.as_ref().map(|c| set_key(c, key, value)))
        .build()
}

/// A top-level `key` of a YAML config set to `value` (JSON is YAML).
fn set_key(yaml: &str, key: &str, value: &Value) -> String {
    let kept: Vec<&str> = yaml
        .lines()
        .filter(|l| !l.starts_with(&format!("{key}:")))
        .collect();
    format!("{}\n{key}: {value}\n", kept.join("\n"))
}

/// Sets `key` of container `id`'s config on disk, as an admin's edit or an
/// older import could have left it.
pub(super) fn set_ct_key(env: &Env, id: &str, key: &str, value: &Value) {
    let path = env.root().join(format!("pools/default/conf/ct/{id}.yml"));
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, set_key(&text, key, value)).unwrap();
}

/// `ct start` of `id` fails with one line containing `expect`, runs no hook
/// and leaves no LXC config with a hook in it; the container is stopped.
fn start_refused(env: &Env, id: &str, expect: &str, marker: &Path) {
    let err = env.fails(&["ct", "start", id], 1);
    assert!(err.contains(expect), "{err}");
    assert!(!marker.exists(), "the injected hook ran");
    let config = env.root().join(format!("lxc/default/{id}/config"));
    let written = std::fs::read_to_string(config).unwrap_or_default();
    assert!(!written.contains("lxc.hook"), "{written}");
    assert_eq!(env.state(id), "stopped");
}

#[test]
fn hole_1_lxc_config_injection_through_hostname() {
    require!(can_run_containers(), "needs root, LXC and busybox");
    let env = Env::new();
    env.ok(&["pool", "ls"]);
    let marker = env.path("hook-ran");
    let injected = json!(format!("rc1\n{}", hook_line(&marker)));
    // The one line names the archive, the entry and the field; the value is
    // escaped, and cut when long.
    let cases = [
        (
            "hostname-injection",
            with_ct_key("hostname", &injected),
            r#"hostname-injection.tar: config/container.yml: hostname "rc1\nlxc.hook.pre-start = /bin/sh -c \"id > "#.to_string(),
        ),
        (
            "hostname-5000",
            with_ct_key("hostname", &json!("x".repeat(5000))),
            format!(
                "hostname-5000.tar: config/container.yml: hostname \"{}\"... (5000 bytes) \
                 is not a valid host name (RFC 1123",
                "x".repeat(60)
            ),
        ),
    ];
    let turn = take_turn();
    for (name, bytes, cause) in &cases {
        assert_eq!(refused(&env, name, bytes, &[], cause), None);
    }
    drop(turn);
    assert!(!marker.exists());

    // A config on disk with the same hostname: start refuses it, ls and show
    // still work (escaped), and a host name makes it start.
    env.busybox_ct("inj");
    set_ct_key(&env, "inj", "hostname", &injected);
    start_refused(
        &env,
        "inj",
        r#"conf/ct/inj.yml: hostname "rc1\nlxc.hook"#,
        &marker,
    );
    let shown = env.json(&["ct", "show", "inj"])["hostname"].clone();
    assert!(
        shown.as_str().unwrap().starts_with(r"rc1\nlxc.hook"),
        "{shown}"
    );
    set_ct_key(&env, "inj", "hostname", &json!("web.example.com"));
    env.ok(&["ct", "start", "inj"]);
    let name = env.ok(&[
        "ct",
        "exec",
        "inj",
        "--",
        "cat",
        "/proc/sys/kernel/hostname",
    ]);
    assert_eq!(name.trim(), "web.example.com");
    env.ok(&["ct", "stop", "inj"]);
    assert!(!marker.exists());
    // An id that is no host name ('_') still makes a container that starts.
    env.busybox_ct("under_score");
    env.ok(&["ct", "start", "under_score"]);
    let name = env.ok(&[
        "ct",
        "exec",
        "under_score",
        "--",
        "cat",
        "/proc/sys/kernel/hostname",
    ]);
    assert_eq!(name.trim(), "under_score");
    env.ok(&["ct", "stop", "under_score"]);
}

#[test]
fn hole_1_lxc_config_injection_through_init_cmd() {
    require!(can_run_containers(), "needs root, LXC and busybox");
    let env = Env::new();
    env.ok(&["pool", "ls"]);
    let marker = env.path("hook-ran");
    let argv = json!(["/bin/sh", "-c", format!("true\n{}", hook_line(&marker))]);
    let line = json!(format!("/sbin/init\n{}", hook_line(&marker)));
    let cases = [
        (
            "init-argv",
            with_ct_key("init_cmd", &argv),
            r#"init_cmd[2] "true\nlxc.hook"#,
        ),
        (
            "init-line",
            with_ct_key("init_cmd", &line),
            r#"init_cmd "/sbin/init\nlxc.hook"#,
        ),
        (
            "init-relative",
            with_ct_key("init_cmd", &json!(["sbin/init"])),
            "not an absolute path",
        ),
    ];
    let turn = take_turn();
    for (name, bytes, cause) in &cases {
        assert_eq!(refused(&env, name, bytes, &[], cause), None);
    }
    drop(turn);

    env.busybox_ct("inj");
    set_ct_key(&env, "inj", "init_cmd", &argv);
    start_refused(
        &env,
        "inj",
        r#"conf/ct/inj.yml: init_cmd[2] "true\nlxc.hook"#,
        &marker,
    );
    // A broken container can still be deleted.
    env.ok(&["ct", "del", "inj"]);

    // Quotes of both kinds and runs of blanks reach init as they are: no
    // quoting to break out of, no argument split or joined.
    env.busybox_ct("quoted");
    let args = ["it's \"quoted\"", "a  b", "' -x '", "\"", ""];
    let script = "for a in \"$@\"; do echo \"[$a]\"; done > /root/argv; exec /sbin/init";
    let mut cmd = vec![json!("/bin/sh"), json!("-c"), json!(script), json!("sh")];
    cmd.extend(args.iter().map(|a| json!(a)));
    set_ct_key(&env, "quoted", "init_cmd", &Value::Array(cmd));
    env.ok(&["ct", "start", "quoted"]);
    let out = env.rootfs_of("quoted").join("root/argv");
    let expected: String = args.iter().map(|a| format!("[{a}]\n")).collect();
    let written = || std::fs::read_to_string(&out).unwrap_or_default();
    wait_until(10, || written() == expected);
    assert_eq!(written(), expected);
    assert_eq!(env.state("quoted"), "running");
    env.ok(&["ct", "stop", "quoted"]);
    assert!(!marker.exists());
}

/// The value of extended attribute `name` of `path` (not followed), if any.
pub fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: both strings are NUL-terminated, the buffer's length is given.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = usize::try_from(n).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// A `security.capability` value of version 3, whose root is `rootid`.
fn capability_v3(rootid: u32) -> Vec<u8> {
    let words: [u32; 6] = [0x0300_0000 | 1, 1 << 13, 0, 0, 0, rootid];
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Issue 10, hole 7: attributes only host root may set (`trusted.*`, which
/// overlayfs reads as instructions, SELinux labels, IMA/EVM signatures) came
/// back from untrusted tar archives. Without `--trusted` they refuse the
/// import; `user.*` and file capabilities (their root in the map) are kept;
/// trusted, the privileged ones are restored.
/// The host ids of the archives of `hole_7_privileged_xattrs`, which runs
/// beside tests that import `valid()`'s.
const XATTR_MAP_LINE: &str = "root:3900500000:65536";

#[test]
fn hole_7_privileged_xattrs() {
    require!(is_root(), "needs root (trusted.* attributes, subuid)");
    let env = Env::with_private_subids();
    env.ok(&["pool", "ls"]);
    let with_xattrs = |records: &[(&str, &[u8])]| {
        let records: Vec<(String, &[u8])> = records
            .iter()
            .map(|(name, value)| (format!("SCHILY.xattr.{name}"), *value))
            .collect();
        let records: Vec<(&str, &[u8])> = records.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let mut rootfs = valid().rootfs;
        rootfs.extend([Entry::pax(&records), Entry::file("./etc/marked", b"x")]);
        let map = "0:3900500000:65536";
        let user = format!("---\nuid_map:\n- {map}\ngid_map:\n- {map}\n");
        valid()
            .with(|p| {
                p.rootfs = rootfs;
                p.user = Some(user);
            })
            .build()
    };
    let privileged: [(&str, &[u8]); 5] = [
        ("trusted.overlay.redirect", b"/etc/shadow"),
        ("trusted.overlay.opaque", b"y"),
        ("security.selinux", b"system_u:object_r:shadow_t:s0"),
        ("security.ima", b"\x03\x02\x04"),
        ("security.evm", b"\x05\x02"),
    ];
    let v3_outside = capability_v3(70000);
    let mut failures: Vec<String> = privileged
        .iter()
        .filter_map(|(name, value)| {
            let archive = with_xattrs(&[(name, value)]);
            let expect = format!("'./etc/marked': extended attribute {name} refused");
            refused(&env, name, &archive, &[], &expect)
        })
        .collect();
    failures.extend(refused(
        &env,
        "capability-v3-outside",
        &with_xattrs(&[("security.capability", &v3_outside)]),
        &[],
        "file capability root uid 70000 is outside",
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Allowed without trust: user attributes and capabilities.
    let cap = capability_v3(1000);
    let kept = with_xattrs(&[("user.note", b"n"), ("security.capability", &cap)]);
    let file = env.path("kept.tar");
    std::fs::write(&file, kept).unwrap();
    env.ok(&["ct", "import", "--as-id", "kept", file.to_str().unwrap()]);
    let marked = env.rootfs_of("kept").join("etc/marked");
    assert_eq!(get_xattr(&marked, "user.note").as_deref(), Some(&b"n"[..]));
    assert_eq!(get_xattr(&marked, "security.capability"), Some(cap));

    // Trusted, the privileged ones are restored as before.
    let all = with_xattrs(&privileged);
    let file = env.path("trusted.tar");
    std::fs::write(&file, all).unwrap();
    let args = ["ct", "import", "--trusted", "--as-id", "trusting"];
    env.ok(&[&args[..], &[file.to_str().unwrap()]].concat());
    let marked = env.rootfs_of("trusting").join("etc/marked");
    for (name, value) in privileged {
        assert_eq!(
            get_xattr(&marked, name).as_deref(),
            Some(value),
            "{name} restored when trusted"
        );
    }
}
