//! The sending key of this host (`osctl send key`) and the keys allowed to
//! send here (`osctl receive authorized-keys`).
//!
//! Allowed keys are kept in `send/authorized-keys.yml` under the state root;
//! `send/authorized_keys` is rendered from it for sshd (`AuthorizedKeysFile`
//! points there), each line `restrict` and forced to `osctl receive serve`,
//! which authorizes every request itself (see `receive.rs`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cmd::Cmd;
use crate::error::{Context, Error, Result};
use crate::fsutil;
use crate::host::Host;
use crate::lock::Lock;
use crate::names;

/// Key types `send key gen` makes and `authorized-keys add` takes.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
];

pub fn send_dir(host: &Host) -> PathBuf {
    host.root().join("send")
}

/// The sending key's private file; the public one has `.pub` added.
pub fn private_key_path(host: &Host) -> Result<PathBuf> {
    let dir = send_dir(host).join("key");
    let found = KEY_TYPES.iter().map(|t| dir.join(key_file_name(t)));
    found.into_iter().find(|p| p.exists()).ok_or_else(|| {
        Error::not_found("this host has no sending key: make one with `osctl send key gen`")
    })
}

pub fn public_key_path(host: &Host) -> Result<PathBuf> {
    let private = private_key_path(host)?;
    Ok(PathBuf::from(format!("{}.pub", private.display())))
}

fn key_file_name(key_type: &str) -> String {
    let short = key_type
        .trim_start_matches("ssh-")
        .trim_start_matches("ecdsa-sha2-");
    format!("id_{short}")
}

/// `osctl send key gen`: a new sending key of `kind` (ed25519, rsa, ecdsa).
pub fn generate(host: &Host, kind: &str, force: bool) -> Result<PathBuf> {
    let (ssh_type, file) = match kind {
        "ed25519" => ("ed25519", "id_ed25519"),
        "rsa" => ("rsa", "id_rsa"),
        "ecdsa" => ("ecdsa", "id_nistp256"),
        other => {
            return Err(Error::invalid(format!(
                "key type '{other}' is not one of ed25519, rsa, ecdsa"
            )))
        }
    };
    let dir = send_dir(host).join("key");
    fsutil::create_dir_all(&dir)?;
    fsutil::set_mode(&dir, 0o700)?;
    let _lock = Lock::acquire(&send_dir(host).join("key.lock"), "the sending key")?;
    if let Ok(existing) = private_key_path(host) {
        if !force {
            return Err(Error::exists(format!(
                "the sending key {} already exists: use -f to replace it",
                existing.display()
            )));
        }
        fsutil::remove_file_if_exists(&existing)?;
        fsutil::remove_file_if_exists(&PathBuf::from(format!("{}.pub", existing.display())))?;
    }
    let path = dir.join(file);
    Cmd::new("ssh-keygen")
        .args(["-q", "-t", ssh_type, "-N", "", "-C", "osctl-send", "-f"])
        .arg(&path)
        .run()
        .map_err(|e| Error::exec("cannot generate the sending key", e))?;
    Ok(path)
}

/// One key allowed to send containers here.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuthorizedKey {
    pub name: String,
    /// `<type> <base64>`, without a comment.
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctid: Option<String>,
    /// SHA-256 of the passphrase, hex; the passphrase itself is not kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_sha256: Option<String>,
    #[serde(default)]
    pub single_use: bool,
    /// Its containers are imported as with `ct import --trusted`.
    #[serde(default)]
    pub trusted: bool,
}

impl AuthorizedKey {
    /// What tells entries of one public key apart from other keys' (the
    /// forced command names it).
    pub fn key_id(&self) -> String {
        key_id(&self.key)
    }

    pub fn passphrase_matches(&self, given: Option<&str>) -> bool {
        match (&self.passphrase_sha256, given) {
            (None, None) => true,
            (Some(want), Some(p)) => *want == passphrase_digest(p),
            _ => false,
        }
    }

    /// Whether the source address `addr` is allowed by `from`.
    pub fn address_allowed(&self, addr: &str) -> bool {
        match &self.from {
            None => true,
            Some(patterns) => patterns.split(',').any(|p| pattern_matches(p.trim(), addr)),
        }
    }
}

pub fn key_id(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

pub fn passphrase_digest(passphrase: &str) -> String {
    Sha256::digest(passphrase.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An address pattern of `--from`: an address, a network (`ADDR/PREFIX`),
/// or a pattern with `*` and `?` as sshd's `from=` takes them.
fn pattern_matches(pattern: &str, addr: &str) -> bool {
    if let Some((net, prefix)) = pattern.split_once('/') {
        let (Ok(net), Ok(prefix), Ok(addr)) = (
            net.parse::<IpAddr>(),
            prefix.parse::<u32>(),
            addr.parse::<IpAddr>(),
        ) else {
            return false;
        };
        return in_network(net, prefix, addr);
    }
    glob(pattern.as_bytes(), addr.as_bytes())
}

fn in_network(net: IpAddr, prefix: u32, addr: IpAddr) -> bool {
    let (n, a, bits) = match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => (u32::from(n) as u128, u32::from(a) as u128, 32),
        (IpAddr::V6(n), IpAddr::V6(a)) => (u128::from(n), u128::from(a), 128),
        _ => return false,
    };
    if prefix > bits {
        return false;
    }
    let shift = bits - prefix;
    shift == bits || (n >> shift) == (a >> shift)
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
        _ => false,
    }
}

/// The checked `<type> <base64>` of a public key line (a comment is dropped).
pub fn parse_public_key(line: &str) -> Result<String> {
    let mut words = line.split_whitespace();
    let (Some(kind), Some(blob)) = (words.next(), words.next()) else {
        return Err(Error::invalid(
            "the public key (standard input) is not '<type> <base64> [comment]'",
        ));
    };
    if !KEY_TYPES.contains(&kind) {
        return Err(Error::invalid(format!(
            "the public key's type '{kind}' is not one of {}",
            KEY_TYPES.join(", ")
        )));
    }
    let base64 = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=');
    if blob.len() > 16384 || !blob.bytes().all(base64) {
        return Err(Error::invalid("the public key's data is not base64"));
    }
    Ok(format!("{kind} {blob}"))
}

/// Checks `--from`: comma-separated addresses, networks or patterns, with
/// nothing that could end the `from="..."` option.
pub fn check_from(from: &str) -> Result<()> {
    let ok = |c: char| c.is_ascii_hexdigit() || ".:/*?,".contains(c);
    if from.is_empty() || !from.chars().all(ok) {
        return Err(Error::invalid(format!(
            "--from '{from}' is not a list of addresses, networks (ADDR/PREFIX) or patterns (* ?)"
        )));
    }
    Ok(())
}

/// The database of allowed keys, read and written under its lock.
pub struct AuthorizedKeys {
    dir: PathBuf,
    pub entries: Vec<AuthorizedKey>,
    _lock: Lock,
}

impl AuthorizedKeys {
    pub fn open(host: &Host) -> Result<AuthorizedKeys> {
        let dir = send_dir(host);
        fsutil::create_dir_all(&dir)?;
        let lock = Lock::acquire(&dir.join("authorized-keys.lock"), "the authorized keys")?;
        let db = dir.join("authorized-keys.yml");
        let entries = match fsutil::read_optional(&db)? {
            Some(text) => crate::yaml::parse(&text, &db.display().to_string())?,
            None => Vec::new(),
        };
        Ok(AuthorizedKeys {
            dir,
            entries,
            _lock: lock,
        })
    }

    pub fn add(&mut self, entry: AuthorizedKey) -> Result<()> {
        names::user_name(&entry.name)
            .map_err(|_| Error::invalid(format!("'{}' is not a valid key name", entry.name)))?;
        if self.entries.iter().any(|e| e.name == entry.name) {
            return Err(Error::exists(format!(
                "authorized key '{}' already exists",
                entry.name
            )));
        }
        let clash = self
            .entries
            .iter()
            .any(|e| e.key == entry.key && e.passphrase_sha256 == entry.passphrase_sha256);
        if clash {
            return Err(Error::exists(format!(
                "this public key is already authorized with the same passphrase: give '{}' \
                 another --passphrase to tell the two apart",
                entry.name
            )));
        }
        self.entries.push(entry);
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> Result<AuthorizedKey> {
        let at = self
            .entries
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| Error::not_found(format!("authorized key '{name}' not found")))?;
        Ok(self.entries.remove(at))
    }

    /// Writes the database and the authorized_keys file rendered from it.
    pub fn save(&self, receive_command: &str) -> Result<()> {
        let yaml = crate::yaml::to_string(&self.entries)?;
        fsutil::atomic_write(&self.dir.join("authorized-keys.yml"), yaml.as_bytes())?;
        let path = self.dir.join("authorized_keys");
        fsutil::atomic_write(&path, render(&self.entries, receive_command).as_bytes())?;
        fsutil::set_mode(&path, 0o600)
    }

    pub fn file(host: &Host) -> PathBuf {
        send_dir(host).join("authorized_keys")
    }
}

/// One line per distinct public key: sshd uses the first line whose key
/// matches, so entries sharing a key share the line, and `osctl receive`
/// tells them apart by passphrase. `from=` lists the addresses of every
/// entry of the key (none if one of them has no restriction).
fn render(entries: &[AuthorizedKey], receive_command: &str) -> String {
    let mut out = String::from("# written by osctl (osctl receive authorized-keys); do not edit\n");
    let mut seen: Vec<&str> = Vec::new();
    for e in entries {
        if seen.contains(&e.key.as_str()) {
            continue;
        }
        seen.push(&e.key);
        let same: Vec<&AuthorizedKey> = entries.iter().filter(|o| o.key == e.key).collect();
        let from = if same.iter().all(|o| o.from.is_some()) {
            let all: Vec<&str> = same.iter().filter_map(|o| o.from.as_deref()).collect();
            format!(",from=\"{}\"", all.join(","))
        } else {
            String::new()
        };
        out.push_str(&format!(
            "restrict{from},command=\"{receive_command} {}\" {}\n",
            e.key_id(),
            e.key
        ));
    }
    out
}

/// The forced command: this binary, with the state root and subordinate-id
/// files it runs with here.
pub fn receive_command() -> Result<String> {
    let exe = std::env::current_exe().ctx(|| "cannot tell where osctl is".to_string())?;
    let mut cmd = String::new();
    for var in ["OSCTL_ROOT", "OSCTL_SUBID_DIR"] {
        if let Some(value) = std::env::var_os(var) {
            let value =
                std::path::absolute(Path::new(&value)).ctx(|| format!("cannot resolve {var}"))?;
            cmd.push_str(&format!("{var}={} ", shell_safe(&value)?));
        }
    }
    #[cfg(feature = "failpoints")]
    cmd.push_str(&failpoint_word());
    cmd.push_str(&format!("{} receive serve", shell_safe(&exe)?));
    Ok(cmd)
}

/// A test build's failpoint goes to the receiving end too: the tests make
/// the target fail or die where they set it before saving the keys.
#[cfg(feature = "failpoints")]
fn failpoint_word() -> String {
    let point = std::env::var("OSCTL_FAILPOINT").unwrap_or_default();
    let plain = |c: char| c.is_ascii_alphanumeric() || "-:".contains(c);
    match !point.is_empty() && point.chars().all(plain) {
        true => format!("OSCTL_FAILPOINT={point} "),
        false => String::new(),
    }
}

/// A path that goes into the forced command as it is: no quoting needed.
fn shell_safe(path: &Path) -> Result<String> {
    let s = path.to_string_lossy();
    let ok = |c: char| c.is_ascii_alphanumeric() || "/._-+".contains(c);
    if s.chars().all(ok) {
        Ok(s.into_owned())
    } else {
        Err(Error::invalid(format!(
            "{s}: osctl's paths in authorized_keys may hold only letters, digits and / . _ - +"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_patterns() {
        assert!(pattern_matches("127.0.0.2", "127.0.0.2"));
        assert!(!pattern_matches("127.0.0.2", "127.0.0.3"));
        assert!(pattern_matches("127.0.0.*", "127.0.0.3"));
        assert!(pattern_matches("10.0.0.0/8", "10.1.2.3"));
        assert!(!pattern_matches("10.0.0.0/8", "11.1.2.3"));
        assert!(pattern_matches("0.0.0.0/0", "11.1.2.3"));
        assert!(!pattern_matches("10.0.0.0/8", "::1"));
        assert!(check_from("1.2.3.4,fe80::/10").is_ok());
        assert!(check_from("1.2.3.4\" x").is_err());
    }

    #[test]
    fn one_line_per_key() {
        let e = |name: &str, pass: Option<&str>, from: Option<&str>| AuthorizedKey {
            name: name.into(),
            key: "ssh-ed25519 AAAA".into(),
            from: from.map(String::from),
            ctid: None,
            passphrase_sha256: pass.map(passphrase_digest),
            single_use: false,
            trusted: false,
        };
        let text = render(
            &[e("a", Some("x"), Some("1.2.3.4")), e("b", Some("y"), None)],
            "osctl receive serve",
        );
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("restrict,command=\"osctl receive serve "));
        let text = render(&[e("a", Some("x"), Some("1.2.3.4"))], "c");
        assert!(text.contains("restrict,from=\"1.2.3.4\",command="));
    }
}
