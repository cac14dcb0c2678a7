//! Operations racing each other on the same objects: serialised or refused
//! clearly, never leaving anything corrupt.

use std::process::{Child, Output};
use std::time::Duration;

use super::support::{can_run_containers, is_root, Env};
use crate::require;

fn spawn(env: &Env, args: &[&str]) -> Child {
    env.cmd()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn clean(env: &Env) {
    let left = env.json(&["pool", "check"]);
    assert_eq!(left.as_array().unwrap().len(), 0, "pool check found {left}");
}

#[test]
fn two_exports_of_one_container_are_serialised() {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    env.busybox_ct("c1");
    env.ok(&["ct", "start", "c1"]);
    let (a, b) = (env.path("a.tar"), env.path("b.tar"));
    let first = spawn(&env, &["ct", "export", "c1", a.to_str().unwrap()]);
    let second = spawn(&env, &["ct", "export", "c1", b.to_str().unwrap()]);
    for out in [finish(first), finish(second)] {
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(env.state("c1"), "running");
    env.ok(&["ct", "import", "--as-id", "from-a", a.to_str().unwrap()]);
    env.ok(&["ct", "import", "--as-id", "from-b", b.to_str().unwrap()]);
    clean(&env);
}

#[test]
fn export_and_delete_of_one_container_do_not_mix() {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    let rootfs = env.busybox_rootfs("r");
    std::fs::write(rootfs.join("root/data"), vec![1u8; 32 << 20]).unwrap();
    env.ct_from("c1", &rootfs);
    env.ok(&["ct", "start", "c1"]);
    let archive = env.path("c1.tar");
    let export = spawn(
        &env,
        &[
            "ct",
            "export",
            "--compression",
            "gzip",
            "c1",
            archive.to_str().unwrap(),
        ],
    );
    std::thread::sleep(Duration::from_millis(200));
    let del = finish(spawn(&env, &["ct", "del", "--force", "c1"]));
    let export = finish(export);
    assert!(del.status.success(), "{}", stderr(&del));
    if export.status.success() {
        // The export went first and is whole.
        env.ok(&["ct", "import", "--as-id", "back", archive.to_str().unwrap()]);
    } else {
        // The delete went first: the export found no container.
        assert!(
            stderr(&export).contains("container 'c1' not found"),
            "{}",
            stderr(&export)
        );
        assert!(!archive.exists());
    }
    assert!(env.run(&["ct", "show", "c1"]).status.code() == Some(1));
    clean(&env);
}

#[test]
fn two_imports_under_one_id_give_one_container() {
    require!(is_root(), "needs root");
    let env = Env::new();
    env.busybox_ct("tmpl");
    let archive = env.path("t.tar");
    env.ok(&["ct", "export", "tmpl", archive.to_str().unwrap()]);
    for round in 0..3 {
        let id = format!("twin{round}");
        let a = spawn(
            &env,
            &["ct", "import", "--as-id", &id, archive.to_str().unwrap()],
        );
        let b = spawn(
            &env,
            &["ct", "import", "--as-id", &id, archive.to_str().unwrap()],
        );
        let outs = [finish(a), finish(b)];
        let ok = outs.iter().filter(|o| o.status.success()).count();
        assert_eq!(
            ok,
            1,
            "exactly one import wins: {:?}",
            outs.iter().map(stderr).collect::<Vec<_>>()
        );
        let loser = outs.iter().find(|o| !o.status.success()).unwrap();
        assert!(
            stderr(loser).contains(&format!("container '{id}' already exists")),
            "{}",
            stderr(loser)
        );
        // One error line; before it, the loser may have said whom it waited for.
        let said = stderr(loser);
        let errors: Vec<&str> = said.lines().filter(|l| !l.starts_with("osctl: ")).collect();
        assert_eq!(errors.len(), 1, "{said}");
        assert!(said
            .lines()
            .all(|l| l.starts_with("error: ") || l.contains("waiting")));
        env.ok(&["ct", "show", &id]);
    }
    clean(&env);
}

#[test]
fn import_racing_the_deletion_of_its_user() {
    require!(is_root(), "needs root");
    let env = Env::new();
    env.busybox_ct("tmpl");
    let archive = env.path("t.tar");
    env.ok(&["ct", "export", "tmpl", archive.to_str().unwrap()]);
    for round in 0..6u64 {
        env.ok(&["user", "new", "racer"]);
        let id = format!("r{round}");
        let import = spawn(
            &env,
            &[
                "ct",
                "import",
                "--as-id",
                &id,
                "--as-user",
                "racer",
                archive.to_str().unwrap(),
            ],
        );
        std::thread::sleep(Duration::from_millis(round * 15));
        let del = finish(spawn(&env, &["user", "del", "racer"]));
        let import = finish(import);
        let user_exists = env.run(&["user", "show", "racer"]).status.success();
        let ct_exists = env.run(&["ct", "show", &id]).status.success();
        match (import.status.success(), del.status.success()) {
            (true, false) => {
                assert!(
                    stderr(&del).contains("used by container"),
                    "{}",
                    stderr(&del)
                );
                assert!(ct_exists && user_exists);
            }
            (false, true) => {
                let err = stderr(&import);
                assert!(
                    err.contains("user 'racer'")
                        && err.lines().filter(|l| !l.starts_with("osctl: ")).count() == 1,
                    "{err}"
                );
                assert!(!ct_exists && !user_exists);
            }
            other => panic!(
                "round {round}: import and del both {other:?}: {} / {}",
                stderr(&import),
                stderr(&del)
            ),
        }
        clean(&env);
        if ct_exists {
            env.ok(&["ct", "del", &id]);
            env.ok(&["user", "del", "racer"]);
        }
    }
}
