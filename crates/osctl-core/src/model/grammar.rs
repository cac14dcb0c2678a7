//! What a config value may hold when it leaves the config: into an LXC
//! config line, a command line, a file name or a path. Archives are hostile
//! and configs on disk may predate these checks, so every such value is
//! checked here when a config is parsed ([`ContainerConfig::validate`], called
//! by import, `archive verify` and `Pool::ct`; resources in `resources/`,
//! also for group.yml), and the LXC renderer refuses control characters once
//! more (`runtime/lxc.rs`).
//!
//! | field                     | reaches                                  | allowed |
//! |---------------------------|------------------------------------------|---------|
//! | `hostname`                | `lxc.uts.name = …`                        | null (the container id is used), or an RFC 1123 host name: labels of 1..63 letters, digits and `-`, not starting or ending with `-`, joined by dots, 253 characters at most. The kernel holds 64: a start refuses a longer one. |
//! | `init_cmd`                | `lxc-start … -- ARGV` (an argument vector, never parsed by LXC) | null, a list or a string split at blanks; 64 arguments at most, each at most 4096 bytes without control characters; the first an absolute path. An empty one means `/sbin/init`. |
//! | `mounts[].fs`             | first field of `lxc.mount.entry = …` (an fstab line) | a string: 1..4096 bytes without control characters or blanks; null or absent (the original's dataset mounts) is left to the start, which refuses it |
//! | `mounts[].mountpoint`     | second field, a path under the root file system | a string: absolute, not `/`, no `..` component, 1..4096 bytes without control characters or blanks |
//! | `mounts[].type`, `.opts`  | third and fourth field                    | null/absent (`none`, `bind`) or 1..255 (type) / 1..4096 (opts) bytes without control characters or blanks |
//! | `raw` (`{lxc: text}`)     | LXC config lines as written (trusted archives only, `trust.rs`) | no NUL |
//! | `user`, `group`           | paths `conf/user/<name>.yml`, `conf/group/<path>/` | `names.rs`, checked where they are used (`Pool::user`, `Pool::group`); an import puts its own in |
//! | `dataset`                 | nothing: written by create and import, never read | anything |
//! | `cgparams` (container and group.yml) | a cgroup file or `lxc.cgroup[2].FILE = …`, re-rendered from parsed numbers | names of the table in `resources/cgparams.rs` only; numbers in range, `max`/`-1`, `cpu.max` as `QUOTA PERIOD`; one value each (`docs/resources.md`) |
//! | `prlimits`                | `lxc.prlimit.NAME = SOFT:HARD`, re-rendered | osctld's names; whole numbers up to 2^63−1 or `unlimited`, soft at most hard (`resources/prlimits.rs`) |
//! | `devices` (container and group.yml) | `lxc.cgroup[2].devices.allow = …`, and `lxc.mount.entry` of a `name` | `char`/`block`, major 0..4095 and minor 0..2^20−1 or `*`/`all`, a mode of `r`, `w`, `m`; `name` a path below `/dev` without blanks, control characters or `..`, bound only when the host's node is that device (`resources/devices.rs`); `trust.rs` judges grants |
//! | user.yml `uid_map`, `gid_map` | `lxc.idmap` lines, as numbers         | `idmap.rs` parses them |
//! | every other key, `attrs`  | nothing: kept and written back as YAML   | anything |
//!
//! Control characters are Unicode's (`char::is_control`: U+0000..U+001F,
//! U+007F..U+009F); a newline in an LXC config value starts a new key, which
//! may be a hook LXC runs as host root.

use serde_json::Value;

use super::container::InitCmd;
use crate::error::{Error, Result};

pub const MAX_HOSTNAME: usize = 253;
/// What `lxc.uts.name` (the kernel's `nodename`) holds.
pub const MAX_UTS_NAME: usize = 64;
pub const MAX_INIT_ARGS: usize = 64;
pub const MAX_INIT_ARG: usize = 4096;
pub const MAX_PATH: usize = 4096;
const MAX_FSTYPE: usize = 255;
/// Characters of a value quoted in an error message.
const SHOWN_CHARS: usize = 60;

pub fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// A value as an error message quotes it: control characters escaped, long
/// values cut, so that the message stays one readable line.
pub fn shown(s: &str) -> String {
    let head: String = s.chars().take(SHOWN_CHARS).collect();
    if head.len() == s.len() {
        format!("\"{}\"", head.escape_debug())
    } else {
        format!("\"{}\"... ({} bytes)", head.escape_debug(), s.len())
    }
}

/// A value for people to read (`ct show`): as it is unless it has control
/// characters, escaped then.
pub fn escaped(s: &str) -> String {
    if has_control(s) {
        s.escape_debug().to_string()
    } else {
        s.to_string()
    }
}

fn bad(field: &str, value: &str, why: &str) -> Error {
    Error::Invalid(format!("{field} {} {why}", shown(value)))
}

/// An RFC 1123 host name, possibly fully qualified.
pub fn host_name(field: &str, name: &str) -> Result<()> {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() > MAX_HOSTNAME || !name.split('.').all(label_ok) {
        return Err(bad(
            field,
            name,
            "is not a valid host name (RFC 1123: labels of 1 to 63 letters, digits and '-', \
             not starting or ending with '-', joined by dots; at most 253 characters)",
        ));
    }
    Ok(())
}

/// A string without control characters, of `1..=max` bytes, and without
/// blanks when it is a field of a blank-separated line.
fn word(field: &str, value: &str, max: usize, blanks: bool) -> Result<()> {
    if value.is_empty() {
        return Err(bad(field, value, "is empty"));
    }
    if value.len() > max {
        return Err(bad(field, value, &format!("is longer than {max} bytes")));
    }
    if has_control(value) {
        return Err(bad(field, value, "contains a control character"));
    }
    if !blanks && value.contains([' ', '\t']) {
        return Err(bad(field, value, "contains a blank"));
    }
    Ok(())
}

/// `init_cmd`, in either of its forms.
pub fn init_cmd(cmd: &InitCmd) -> Result<()> {
    if let InitCmd::Line(line) = cmd {
        if has_control(line) {
            return Err(bad("init_cmd", line, "contains a control character"));
        }
    }
    init_argv("init_cmd", &cmd.argv())
}

/// An argument vector run as the container's init. Empty means the default.
pub fn init_argv(field: &str, argv: &[String]) -> Result<()> {
    if argv.len() > MAX_INIT_ARGS {
        return Err(Error::Invalid(format!(
            "{field} has {} arguments, at most {MAX_INIT_ARGS} are allowed",
            argv.len()
        )));
    }
    for (i, arg) in argv.iter().enumerate() {
        let field = format!("{field}[{i}]");
        if arg.len() > MAX_INIT_ARG {
            return Err(bad(
                &field,
                arg,
                &format!("is longer than {MAX_INIT_ARG} bytes"),
            ));
        }
        if has_control(arg) {
            return Err(bad(&field, arg, "contains a control character"));
        }
        if i == 0 && !arg.starts_with('/') {
            return Err(bad(&field, arg, "is not an absolute path"));
        }
    }
    Ok(())
}

/// One `mounts` entry: `{fs, mountpoint, type, opts, ...}`.
pub fn mount(index: usize, entry: &Value) -> Result<()> {
    let at = |key: &str| format!("mounts[{index}].{key}");
    let Some(map) = entry.as_object() else {
        return Err(Error::Invalid(format!("mounts[{index}] is not a mapping")));
    };
    let string = |key: &str| match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(Error::Invalid(format!("{} is not a string", at(key)))),
    };
    if let Some(fs) = string("fs")? {
        word(&at("fs"), fs, MAX_PATH, false)?;
    }
    let Some(target) = string("mountpoint")? else {
        return Err(Error::Invalid(format!("{} is missing", at("mountpoint"))));
    };
    word(&at("mountpoint"), target, MAX_PATH, false)?;
    if !target.starts_with('/') || target.trim_start_matches('/').is_empty() {
        return Err(bad(
            &at("mountpoint"),
            target,
            "is not an absolute path below '/'",
        ));
    }
    if target.split('/').any(|c| c == "..") {
        return Err(bad(&at("mountpoint"), target, "has a '..' component"));
    }
    if let Some(fstype) = string("type")? {
        word(&at("type"), fstype, MAX_FSTYPE, false)?;
    }
    if let Some(opts) = string("opts")? {
        word(&at("opts"), opts, MAX_PATH, false)?;
    }
    Ok(())
}

/// Raw LXC lines: trusted, written as they are, but a NUL would end LXC's
/// reading of the file where it stands.
pub fn raw_lxc(text: &str) -> Result<()> {
    if text.contains('\0') {
        return Err(Error::Invalid(
            "raw LXC configuration contains a NUL character".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn host_names() {
        let long_ok = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        assert_eq!(long_ok.len(), 253);
        for good in ["ct101", "web.example.com", "a", "A-1.b2", "1host", &long_ok] {
            assert!(host_name("hostname", good).is_ok(), "{good}");
        }
        let too_long = format!("{long_ok}x");
        let label_64 = "a".repeat(64);
        for bad in [
            "",
            "rc1\nlxc.hook.pre-start = /bin/sh",
            "a b",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a.",
            "a_b",
            "é",
            "a\0",
            &too_long,
            &label_64,
        ] {
            assert!(host_name("hostname", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn messages_escape_and_cut() {
        let e = host_name("hostname", "rc1\nlxc.hook.pre-start = x").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with(
                r#"hostname "rc1\nlxc.hook.pre-start = x" is not a valid host name (RFC 1123"#
            ),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
        let msg = host_name("hostname", &"x".repeat(5000))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("... (5000 bytes)") && msg.len() < 300, "{msg}");
    }

    #[test]
    fn init_commands() {
        let v = |a: &[&str]| InitCmd::Argv(a.iter().map(|s| s.to_string()).collect());
        for good in [
            v(&[]),
            v(&["/sbin/init"]),
            v(&["/bin/sh", "-c", "echo \"it's\" > /x; sleep 1", ""]),
            InitCmd::Line("/bin/sh -c true".into()),
            InitCmd::Line(String::new()),
        ] {
            assert!(init_cmd(&good).is_ok(), "{good:?}");
        }
        let many = vec!["/bin/true"; 65];
        let huge = "x".repeat(4097);
        for bad in [
            v(&["/bin/sh", "-c", "true\nlxc.hook.pre-start = /bin/sh"]),
            v(&["/bin/sh", "\r"]),
            v(&["/bin/sh", "\u{7f}"]),
            v(&["/bin/sh", "\u{9b}"]),
            v(&["sbin/init"]),
            v(&[""]),
            v(&many),
            v(&["/bin/echo", &huge]),
            InitCmd::Line("/bin/sh\n-c".into()),
            InitCmd::Line("init".into()),
        ] {
            assert!(init_cmd(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mounts() {
        for good in [
            json!({"fs": "/srv/data", "mountpoint": "/mnt/data", "type": "bind", "opts": "bind,ro"}),
            json!({"fs": "/srv", "mountpoint": "/srv"}),
            // The original's mount of a subdataset.
            json!({"fs": null, "mountpoint": "/var", "type": "bind", "opts": "bind,create=dir,rw", "dataset": "var"}),
        ] {
            assert!(mount(0, &good).is_ok(), "{good}");
        }
        let m = |fs: &str, target: &str| json!({"fs": fs, "mountpoint": target});
        for bad in [
            json!("/srv /mnt"),
            json!({"fs": "/srv"}),
            json!({"fs": 1, "mountpoint": "/m"}),
            json!({"fs": "/srv", "mountpoint": "/m", "opts": ["bind"]}),
            m("/srv", "/"),
            m("/srv", "//"),
            m("/srv", "mnt"),
            m("/srv", "/mnt/../../etc"),
            m("/srv", "/a b"),
            m("/s rv", "/m"),
            m("/srv\nlxc.hook.pre-start = /bin/sh", "/m"),
            m("", "/m"),
            m("/srv", &format!("/{}", "a".repeat(4096))),
            json!({"fs": "/srv", "mountpoint": "/m", "type": "bind\tx"}),
            json!({"fs": "/srv", "mountpoint": "/m", "opts": ""}),
        ] {
            assert!(mount(0, &bad).is_err(), "{bad}");
        }
        let msg = mount(3, &m("/srv", "/a/../b")).unwrap_err().to_string();
        assert!(msg.starts_with("mounts[3].mountpoint \"/a/../b\""), "{msg}");
    }

    #[test]
    fn raw_lines() {
        assert!(raw_lxc("lxc.cap.drop = sys_admin\nlxc.cap.drop = sys_time\n").is_ok());
        assert!(raw_lxc("lxc.cap.drop = \0sys_admin").is_err());
    }
}
