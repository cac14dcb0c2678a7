//! Which cgroup hierarchy each controller is on: hosts run cgroup v1, v2, or
//! both at once (a "hybrid" host binds some controllers to v1 hierarchies and
//! leaves the others to v2). Read from `/proc/self/mounts`, the v2 root's
//! `cgroup.controllers`, and `/proc/1/cgroup`: LXC run as root puts its
//! cgroups below PID 1's cgroup (less a trailing `/init.scope`), and so do we.

use std::path::{Path, PathBuf};

use super::cgparams::{Controller, Version};
use crate::error::{Context, Result};

/// One mounted hierarchy.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub path: PathBuf,
    pub version: Version,
    /// Controllers bound to it (`name=...` for named v1 hierarchies).
    pub controllers: Vec<String>,
    /// PID 1's cgroup in it, relative, without `init.scope`: where LXC
    /// (as root) and we put cgroups.
    pub base: String,
}

/// The host's hierarchies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hierarchies {
    pub mounts: Vec<Mount>,
}

/// v1 mount options that are not controllers.
fn is_v1_controller(option: &str) -> bool {
    const OTHERS: &[&str] = &[
        "rw",
        "ro",
        "nosuid",
        "nodev",
        "noexec",
        "relatime",
        "noatime",
        "xattr",
        "clone_children",
        "noprefix",
        "cpuset_v2_mode",
        "favordynmods",
    ];
    option.starts_with("name=")
        || !(OTHERS.contains(&option) || option.contains('=') || option.is_empty())
}

/// Parses `/proc/self/mounts`: the v1 hierarchies with their controllers and
/// the first cgroup2 mount (its controllers left empty, see [`Hierarchies::detect`]).
pub fn parse_mounts(mounts: &str) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for line in mounts.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 4 {
            continue;
        }
        let (path, fstype, options) = (PathBuf::from(f[1]), f[2], f[3]);
        let mount = match fstype {
            "cgroup" => Mount {
                path,
                version: Version::V1,
                controllers: options
                    .split(',')
                    .filter(|o| is_v1_controller(o))
                    .map(String::from)
                    .collect(),
                base: String::new(),
            },
            "cgroup2" => Mount {
                path,
                version: Version::V2,
                controllers: Vec::new(),
                base: String::new(),
            },
            _ => continue,
        };
        // The same hierarchy mounted twice (bind mounts): the first counts.
        let seen = out.iter().any(|m| {
            m.version == mount.version
                && (mount.version == Version::V2 || m.controllers == mount.controllers)
        });
        if !seen {
            out.push(mount);
        }
    }
    out
}

/// Sets each mount's base from `/proc/1/cgroup` (`ID:CONTROLLERS:PATH`).
pub fn apply_bases(mounts: &mut [Mount], pid1_cgroup: &str) {
    for line in pid1_cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let base = path
            .strip_suffix("/init.scope")
            .unwrap_or(path)
            .trim_matches('/')
            .to_string();
        let mut wanted: Vec<&str> = ctrls.split(',').filter(|c| !c.is_empty()).collect();
        wanted.sort_unstable();
        for m in mounts.iter_mut() {
            let mut have: Vec<&str> = m.controllers.iter().map(String::as_str).collect();
            have.sort_unstable();
            let same = match m.version {
                Version::V2 => wanted.is_empty(),
                Version::V1 => !wanted.is_empty() && have == wanted,
            };
            if same {
                m.base = base.clone();
            }
        }
    }
}

impl Hierarchies {
    /// The host's hierarchies as this process sees them.
    pub fn detect() -> Result<Hierarchies> {
        let mounts =
            std::fs::read_to_string("/proc/self/mounts").ctx(|| "cannot read /proc/self/mounts")?;
        let mut mounts = parse_mounts(&mounts);
        for m in mounts.iter_mut().filter(|m| m.version == Version::V2) {
            let file = m.path.join("cgroup.controllers");
            let list = std::fs::read_to_string(&file).unwrap_or_default();
            m.controllers = list.split_whitespace().map(String::from).collect();
        }
        let pid1 =
            std::fs::read_to_string("/proc/1/cgroup").ctx(|| "cannot read /proc/1/cgroup")?;
        apply_bases(&mut mounts, &pid1);
        Ok(Hierarchies { mounts })
    }

    fn v1_with(&self, controller: &str) -> Option<&Mount> {
        self.mounts
            .iter()
            .find(|m| m.version == Version::V1 && m.controllers.iter().any(|c| c == controller))
    }

    pub fn v2(&self) -> Option<&Mount> {
        self.mounts.iter().find(|m| m.version == Version::V2)
    }

    /// The hierarchy a controller is on, None when the host has it nowhere.
    pub fn mount_of(&self, c: Controller) -> Option<&Mount> {
        self.v1_with(c.name(Version::V1)).or_else(|| {
            self.v2()
                .filter(|m| m.controllers.iter().any(|x| x == c.name(Version::V2)))
        })
    }

    pub fn version_of(&self, c: Controller) -> Option<Version> {
        self.mount_of(c).map(|m| m.version)
    }

    /// The device policy's hierarchy: v1's devices controller, else v2,
    /// where LXC attaches a BPF program.
    pub fn devices_version(&self) -> Option<Version> {
        self.v1_with("devices")
            .or_else(|| self.v2())
            .map(|m| m.version)
    }

    /// Where `rel` (a cgroup path below the base) is in a mount.
    pub fn dir(mount: &Mount, rel: &str) -> PathBuf {
        let mut p = mount.path.clone();
        for part in mount.base.split('/').chain(rel.split('/')) {
            if !part.is_empty() {
                p.push(part);
            }
        }
        p
    }

    /// `rel` in every hierarchy LXC makes cgroups in.
    pub fn all_dirs(&self, rel: &str) -> Vec<PathBuf> {
        self.mounts
            .iter()
            .map(|m| Hierarchies::dir(m, rel))
            .collect()
    }

    /// One line for people: `memory v1, cpu v1, pids v2, ...`.
    pub fn describe(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Controller::ALL
            .iter()
            .map(|&c| {
                let v = self.version_of(c).map_or("none".into(), |v| {
                    format!("v{} ({})", v.number(), c.name(v))
                });
                (c.name(Version::V2).to_string(), v)
            })
            .collect();
        let dev = self
            .devices_version()
            .map_or("none".into(), |v| format!("v{}", v.number()));
        out.push(("devices".into(), dev));
        out
    }
}

/// The cgroup a process is in, in the hierarchy of `mount`, from
/// `/proc/PID/cgroup`: an absolute directory.
pub fn process_dir(mount: &Mount, proc_cgroup: &str) -> Option<PathBuf> {
    for line in proc_cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let matches = match mount.version {
            Version::V2 => ctrls.is_empty(),
            Version::V1 => {
                let mut a: Vec<&str> = ctrls.split(',').collect();
                let mut b: Vec<&str> = mount.controllers.iter().map(String::as_str).collect();
                a.sort_unstable();
                b.sort_unstable();
                !a.is_empty() && a == b
            }
        };
        if matches {
            let rel = path.trim_start_matches('/');
            if rel.split('/').any(|c| c == "..") {
                return None;
            }
            return Some(Path::new(&mount.path).join(rel));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This development VM: v1 controllers, a nearly empty cgroup2.
    const HYBRID: &str = "\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/devices cgroup rw,relatime,devices 0 0
cgroup /sys/fs/cgroup/blkio cgroup rw,relatime,blkio 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
";
    const HYBRID_PID1: &str = "9:name=systemd:/\n8:pids:/\n4:memory:/\n1:cpu:/\n0::/\n";

    /// A systemd host with only cgroup v2.
    const UNIFIED: &str = "\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0
";

    #[test]
    fn hybrid_host() {
        let mut mounts = parse_mounts(HYBRID);
        apply_bases(&mut mounts, HYBRID_PID1);
        let h = Hierarchies { mounts };
        assert_eq!(h.version_of(Controller::Memory), Some(Version::V1));
        assert_eq!(h.version_of(Controller::Io), Some(Version::V1));
        assert_eq!(h.devices_version(), Some(Version::V1));
        let mem = h.mount_of(Controller::Memory).unwrap();
        assert_eq!(
            Hierarchies::dir(mem, "osctl/pool.p/ct.a"),
            PathBuf::from("/sys/fs/cgroup/memory/osctl/pool.p/ct.a")
        );
        // The systemd name, the unified mount and every controller's: 8 places.
        assert_eq!(h.all_dirs("x").len(), 8);
    }

    #[test]
    fn unified_host_under_init_scope() {
        let mut mounts = parse_mounts(UNIFIED);
        mounts[0].controllers = ["cpuset", "cpu", "io", "memory", "pids"]
            .map(String::from)
            .to_vec();
        apply_bases(&mut mounts, "0::/init.scope\n");
        let h = Hierarchies { mounts };
        for c in Controller::ALL {
            assert_eq!(h.version_of(c), Some(Version::V2), "{c:?}");
        }
        assert_eq!(h.devices_version(), Some(Version::V2));
        let m = h.mount_of(Controller::Pids).unwrap();
        assert_eq!(m.base, "");
        assert_eq!(
            Hierarchies::dir(m, "osctl/ct.a"),
            PathBuf::from("/sys/fs/cgroup/osctl/ct.a")
        );
    }

    #[test]
    fn bases_below_a_slice_and_process_dirs() {
        let mut mounts = parse_mounts(UNIFIED);
        mounts[0].controllers = vec!["memory".into()];
        apply_bases(&mut mounts, "0::/machine.slice/init.scope\n");
        assert_eq!(mounts[0].base, "machine.slice");
        let dir = process_dir(&mounts[0], "0::/osctl/ct.a/lxc.payload.a\n").unwrap();
        assert_eq!(
            dir,
            PathBuf::from("/sys/fs/cgroup/osctl/ct.a/lxc.payload.a")
        );
        assert_eq!(process_dir(&mounts[0], "0::/a/../../etc\n"), None);
        let v1 = parse_mounts(HYBRID);
        let mem = v1.iter().find(|m| m.controllers == ["memory"]).unwrap();
        let dir = process_dir(mem, "8:pids:/x\n4:memory:/y/z\n").unwrap();
        assert_eq!(dir, PathBuf::from("/sys/fs/cgroup/memory/y/z"));
    }

    #[test]
    fn missing_controller() {
        let mut mounts = parse_mounts(UNIFIED);
        mounts[0].controllers = vec!["memory".into()];
        let h = Hierarchies { mounts };
        assert_eq!(h.version_of(Controller::Io), None);
        assert_eq!(Hierarchies::default().devices_version(), None);
    }
}
