//! The rules an untrusted root file system must follow, whichever way it
//! arrives: a tar stream ([`crate::fstar::extract`] judges every entry), a
//! btrfs send stream ([`crate::storage::btrfs_stream`] judges the commands as
//! they pass) and any native stream once received ([`scan`] walks the tree).
//!
//! Root file systems are stored unshifted: the ids on disk are the
//! container's own, seen from the host through its user's id map. What the
//! container's root could never make inside its user namespace, an archive
//! may not bring either:
//! - owners and groups (also in POSIX ACLs and as the root uid of a v3 file
//!   capability) below the size of the user's map (`max_id`);
//! - device nodes only as the [`DevicePolicy`] allows (the import's: the
//!   usual character devices, see [`crate::trust::is_default_device_node`]);
//! - setuid and setgid only on files whose owner (group) is in the map;
//! - extended attributes: `user.*`, `security.capability` and POSIX ACLs.
//!   `trusted.*` (overlayfs reads `trusted.overlay.*` as instructions),
//!   `security.selinux`, `security.ima`, `security.evm` and the rest are for
//!   host root only.
//!
//! With `--trusted` ids and devices are judged as the import says, and the
//! privileged attributes (`trusted.*`, all of `security.*`) are restored too.

pub mod scan;

use crate::trust;

/// Device nodes a root file system may hold.
#[derive(Debug, Clone, Copy)]
pub enum DevicePolicy {
    Refuse,
    /// Those for which the function, given the kind ('c' or 'b'), major and
    /// minor number, says yes.
    Only(fn(char, u32, u32) -> bool),
    All,
}

impl DevicePolicy {
    pub fn allows(self, kind: char, major: u32, minor: u32) -> bool {
        match self {
            DevicePolicy::Refuse => false,
            DevicePolicy::Only(allowed) => allowed(kind, major, minor),
            DevicePolicy::All => true,
        }
    }
}

/// What a root file system may hold. The default refuses every device node
/// and the privileged attributes, and allows any id.
#[derive(Debug, Clone, Copy)]
pub struct FilePolicy {
    /// Refuse ids (owners, groups, ACL entries, capability root ids) at or
    /// above this: ids the container's map does not cover. None: any id.
    pub max_id: Option<u32>,
    /// Which character and block device nodes may exist. Fifos and sockets
    /// always may.
    pub devices: DevicePolicy,
    /// Restore `trusted.*` and all of `security.*` (`--trusted`).
    pub privileged_xattrs: bool,
}

impl Default for FilePolicy {
    fn default() -> Self {
        FilePolicy {
            max_id: None,
            devices: DevicePolicy::Refuse,
            privileged_xattrs: false,
        }
    }
}

/// What to do with an extended attribute that is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XattrVerdict {
    Restore,
    /// In a namespace that is not restored even when trusted (e.g.
    /// `system.nfs4_acl`): left out, with a note.
    Skip,
}

const S_IFMT: u32 = 0o170000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;

pub const CAPABILITY: &[u8] = b"security.capability";
pub const ACL_ACCESS: &[u8] = b"system.posix_acl_access";
pub const ACL_DEFAULT: &[u8] = b"system.posix_acl_default";

impl FilePolicy {
    /// An import's policy: ids below `max_id`; trusted, any device node and
    /// the privileged attributes, else only the usual devices.
    pub fn for_import(max_id: Option<u32>, trusted: bool) -> FilePolicy {
        FilePolicy {
            max_id,
            devices: if trusted {
                DevicePolicy::All
            } else {
                DevicePolicy::Only(trust::is_default_device_node)
            },
            privileged_xattrs: trusted,
        }
    }

    /// Allows everything (tools and tests that handle our own trees).
    pub const fn anything() -> FilePolicy {
        FilePolicy {
            max_id: None,
            devices: DevicePolicy::All,
            privileged_xattrs: true,
        }
    }

    /// `what` ("uid", "ACL gid") `id` must be in the container's map.
    pub fn check_id(&self, what: &str, id: u64) -> Result<(), String> {
        match self.max_id {
            Some(max) if id >= u64::from(max) => Err(format!(
                "{what} {id} is outside the container's id map (ids below {max}) (refused)"
            )),
            _ => Ok(()),
        }
    }

    pub fn check_owner(&self, uid: u64, gid: u64) -> Result<(), String> {
        self.check_id("uid", uid)?;
        self.check_id("gid", gid)
    }

    /// Setuid (setgid) only where the owner (group) is in the map. Said on
    /// its own, before the owner's check, since it is the worse of the two.
    pub fn check_setid(&self, mode: u32, uid: u64, gid: u64) -> Result<(), String> {
        for (bit, name, what, id) in [
            (S_ISUID, "setuid", "uid", uid),
            (S_ISGID, "setgid", "gid", gid),
        ] {
            if mode & bit != 0 {
                self.check_id(what, id)
                    .map_err(|why| format!("{name} file whose {why}"))?;
            }
        }
        Ok(())
    }

    /// A character ('c') or block ('b') device node.
    pub fn check_device(&self, kind: char, major: u32, minor: u32) -> Result<(), String> {
        if self.devices.allows(kind, major, minor) {
            return Ok(());
        }
        let what = if kind == 'c' { "character" } else { "block" };
        Err(format!("device node ({what} {major}:{minor}) refused"))
    }

    /// Everything about one inode that its `struct stat` tells: owner,
    /// setuid/setgid, device node (`rdev` as the kernel encodes it).
    pub fn check_inode(&self, mode: u32, uid: u64, gid: u64, rdev: u64) -> Result<(), String> {
        self.check_setid(mode, uid, gid)?;
        self.check_owner(uid, gid)?;
        self.check_node(mode, rdev)
    }

    /// A node of type `mode & S_IFMT` with device number `rdev`; only
    /// character and block devices are judged.
    pub fn check_node(&self, mode: u32, rdev: u64) -> Result<(), String> {
        let kind = match mode & S_IFMT {
            S_IFCHR => 'c',
            S_IFBLK => 'b',
            _ => return Ok(()),
        };
        // The kernel's encoding (new_encode_dev, as glibc's makedev for
        // numbers that fit): 12 bits of major, 20 of minor, in 32 bits.
        let Ok(dev) = u32::try_from(rdev) else {
            return Err(format!("device number {rdev:#x} out of range"));
        };
        let major = (dev & 0xfff00) >> 8;
        let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
        self.check_device(kind, major, minor)
    }

    /// Whether attributes named so are restored (an existing directory
    /// loses the ones of these namespaces that an entry does not list).
    pub fn restores(&self, name: &[u8]) -> bool {
        name.starts_with(b"user.")
            || name == CAPABILITY
            || name == ACL_ACCESS
            || name == ACL_DEFAULT
            || (self.privileged_xattrs
                && (name.starts_with(b"trusted.") || name.starts_with(b"security.")))
    }

    /// An extended attribute with its value: restored, skipped (trusted,
    /// in a namespace never restored) or refused (why, naming it).
    pub fn check_xattr(&self, name: &[u8], value: &[u8]) -> Result<XattrVerdict, String> {
        if !self.restores(name) {
            if self.privileged_xattrs {
                return Ok(XattrVerdict::Skip);
            }
            return Err(format!(
                "extended attribute {} refused (without --trusted only user.*, \
                 security.capability and POSIX ACLs are restored)",
                crate::fstar::show_bytes(name)
            ));
        }
        if name == ACL_ACCESS || name == ACL_DEFAULT {
            self.check_acl(value)?;
        } else if name == CAPABILITY {
            self.check_capability(value)?;
        }
        Ok(XattrVerdict::Restore)
    }

    /// A POSIX ACL in its xattr form: version 2, then (tag u16, perm u16,
    /// id u32) entries; named users and groups must be in the id map.
    fn check_acl(&self, value: &[u8]) -> Result<(), String> {
        const ACL_USER: u16 = 0x02;
        const ACL_GROUP: u16 = 0x08;
        if value.len() < 4
            || !(value.len() - 4).is_multiple_of(8)
            || value[..4] != 2u32.to_le_bytes()
        {
            return Err("malformed POSIX ACL".into());
        }
        for entry in value[4..].chunks_exact(8) {
            let tag = u16::from_le_bytes([entry[0], entry[1]]);
            let id = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
            match tag {
                ACL_USER => self.check_id("ACL uid", id.into())?,
                ACL_GROUP => self.check_id("ACL gid", id.into())?,
                _ => {}
            }
        }
        Ok(())
    }

    /// `security.capability`: a version 3 value names the uid that is root
    /// for it, which must be in the map (versions 1 and 2 name none; the
    /// kernel checks the layout when the attribute is set).
    fn check_capability(&self, value: &[u8]) -> Result<(), String> {
        const REVISION_MASK: u32 = 0xff00_0000;
        const REVISION_3: u32 = 0x0300_0000;
        const SIZE_3: usize = 24;
        let Some(magic) = value.first_chunk::<4>().map(|m| u32::from_le_bytes(*m)) else {
            return Ok(());
        };
        if magic & REVISION_MASK != REVISION_3 {
            return Ok(());
        }
        let Some(rootid) = value.get(20..SIZE_3).filter(|_| value.len() == SIZE_3) else {
            return Err("malformed file capability (version 3)".into());
        };
        let rootid = u32::from_le_bytes(rootid.try_into().expect("four bytes"));
        self.check_id("file capability root uid", rootid.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped() -> FilePolicy {
        FilePolicy::for_import(Some(1000), false)
    }

    #[test]
    fn acl_ids_are_checked() {
        let p = mapped();
        let mut acl = 2u32.to_le_bytes().to_vec();
        acl.extend_from_slice(&[0x01, 0, 6, 0, 0xff, 0xff, 0xff, 0xff]); // owner
        acl.extend_from_slice(&[0x02, 0, 6, 0, 0xe7, 0x03, 0, 0]); // user 999
        assert_eq!(p.check_xattr(ACL_ACCESS, &acl), Ok(XattrVerdict::Restore));
        acl.extend_from_slice(&[0x08, 0, 6, 0, 0xe8, 0x03, 0, 0]); // group 1000
        assert!(p.check_xattr(ACL_DEFAULT, &acl).is_err());
        assert!(p.check_xattr(ACL_ACCESS, &acl[..7]).is_err());
    }

    #[test]
    fn xattr_namespaces() {
        let p = mapped();
        for kept in [&b"user.x"[..], CAPABILITY] {
            assert_eq!(p.check_xattr(kept, b""), Ok(XattrVerdict::Restore));
        }
        for refused in [
            &b"trusted.overlay.redirect"[..],
            b"security.selinux",
            b"security.ima",
            b"security.evm",
            b"system.nfs4_acl",
            b"btrfs.compression",
        ] {
            let why = p.check_xattr(refused, b"x").unwrap_err();
            assert!(why.contains("--trusted"), "{why}");
        }
        let t = FilePolicy::for_import(Some(1000), true);
        assert_eq!(
            t.check_xattr(b"trusted.overlay.redirect", b"x"),
            Ok(XattrVerdict::Restore)
        );
        assert_eq!(
            t.check_xattr(b"security.ima", b"x"),
            Ok(XattrVerdict::Restore)
        );
        assert_eq!(
            t.check_xattr(b"system.nfs4_acl", b"x"),
            Ok(XattrVerdict::Skip)
        );
    }

    #[test]
    fn capability_root_ids() {
        let v3 = |rootid: u32| {
            let mut v = 0x0300_0000u32.to_le_bytes().to_vec();
            v.extend_from_slice(&[0; 16]);
            v.extend_from_slice(&rootid.to_le_bytes());
            v
        };
        let p = mapped();
        assert!(p.check_xattr(CAPABILITY, &v3(999)).is_ok());
        let why = p.check_xattr(CAPABILITY, &v3(100_000)).unwrap_err();
        assert!(why.contains("root uid 100000"), "{why}");
        assert!(p.check_xattr(CAPABILITY, &v3(0)[..23]).is_err());
        let v2 = [0x0200_0001u32.to_le_bytes(), [0; 4], [0; 4], [0; 4], [0; 4]].concat();
        assert!(p.check_xattr(CAPABILITY, &v2).is_ok());
    }

    #[test]
    fn inodes() {
        let p = mapped();
        assert!(p.check_inode(0o100644, 999, 999, 0).is_ok());
        assert!(p.check_inode(0o104755, 0, 0, 0).is_ok());
        let why = p.check_inode(0o104755, 5000, 0, 0).unwrap_err();
        assert!(why.starts_with("setuid file whose uid 5000"), "{why}");
        let why = p.check_inode(0o102755, 0, 5000, 0).unwrap_err();
        assert!(why.starts_with("setgid file whose gid 5000"), "{why}");
        assert!(p.check_inode(0o100644, 0, 1000, 0).is_err());
        // /dev/null (1:3) is usual, /dev/loop0 (block 7:0) and a minor past
        // 255 encoded in the high bits are not.
        assert!(p.check_inode(0o020666, 0, 0, 0x103).is_ok());
        let why = p.check_inode(0o060666, 0, 0, 0x700).unwrap_err();
        assert!(why.contains("block 7:0"), "{why}");
        let why = p.check_inode(0o020666, 0, 0, 0x0010_0103).unwrap_err();
        assert!(why.contains("character 1:259"), "{why}");
        assert!(p.check_node(0o020666, 1 << 40).is_err());
        assert!(p.check_inode(0o010644, 0, 0, 0).is_ok()); // fifo
        assert!(FilePolicy::anything()
            .check_inode(0o104755, u64::from(u32::MAX), 7, 0x800)
            .is_ok());
    }
}
