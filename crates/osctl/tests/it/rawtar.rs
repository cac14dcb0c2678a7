//! A tar writer for tests that writes whatever it is told: names with "..",
//! absolute paths, links anywhere, PAX records, GNU long names. Hostile
//! archives are built with it; nothing in it checks anything.

#![allow(dead_code)]

use std::io::Write;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    File,
    HardLink,
    Symlink,
    CharDev,
    BlockDev,
    Dir,
    Fifo,
    Pax,
    GnuLongName,
    Other(u8),
}

impl Kind {
    fn flag(self) -> u8 {
        match self {
            Kind::File => b'0',
            Kind::HardLink => b'1',
            Kind::Symlink => b'2',
            Kind::CharDev => b'3',
            Kind::BlockDev => b'4',
            Kind::Dir => b'5',
            Kind::Fifo => b'6',
            Kind::Pax => b'x',
            Kind::GnuLongName => b'L',
            Kind::Other(b) => b,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub name: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub link: Vec<u8>,
    pub data: Vec<u8>,
    pub major: u32,
    pub minor: u32,
    /// Overrides the size field (to lie about the data).
    pub size: Option<u64>,
}

impl Entry {
    pub fn file(name: &str, data: &[u8]) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            kind: Kind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            link: Vec::new(),
            data: data.to_vec(),
            major: 0,
            minor: 0,
            size: None,
        }
    }

    pub fn dir(name: &str) -> Entry {
        Entry {
            kind: Kind::Dir,
            mode: 0o755,
            ..Entry::file(name, b"")
        }
    }

    pub fn link(kind: Kind, name: &str, target: &str) -> Entry {
        Entry {
            kind,
            link: target.as_bytes().to_vec(),
            ..Entry::file(name, b"")
        }
    }

    pub fn device(kind: Kind, name: &str, major: u32, minor: u32) -> Entry {
        Entry {
            kind,
            major,
            minor,
            mode: 0o666,
            ..Entry::file(name, b"")
        }
    }

    /// A PAX extended header carrying `records` (key, value) for the next entry.
    pub fn pax(records: &[(&str, &[u8])]) -> Entry {
        let mut data = Vec::new();
        for (k, v) in records {
            // "<len> <key>=<value>\n" where len counts the whole record.
            let body_len = 1 + k.len() + 1 + v.len() + 1;
            let mut len = body_len + 1;
            while len.to_string().len() + body_len != len {
                len = len.to_string().len() + body_len;
            }
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        Entry {
            kind: Kind::Pax,
            ..Entry::file("././@PaxHeader", &data)
        }
    }

    pub fn gnu_long_name(name: &str) -> Entry {
        let mut data = name.as_bytes().to_vec();
        data.push(0);
        Entry {
            kind: Kind::GnuLongName,
            ..Entry::file("././@LongLink", &data)
        }
    }

    pub fn owner(mut self, uid: u32, gid: u32) -> Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn mode(mut self, mode: u32) -> Entry {
        self.mode = mode;
        self
    }
}

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

pub fn header(e: &Entry) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = e.name.len().min(100);
    h[..n].copy_from_slice(&e.name[..n]);
    octal(&mut h[100..108], u64::from(e.mode));
    octal(&mut h[108..116], u64::from(e.uid));
    octal(&mut h[116..124], u64::from(e.gid));
    octal(&mut h[124..136], e.size.unwrap_or(e.data.len() as u64));
    octal(&mut h[136..148], 1_700_000_000);
    h[156] = e.kind.flag();
    let l = e.link.len().min(100);
    h[157..157 + l].copy_from_slice(&e.link[..l]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], u64::from(e.major));
    octal(&mut h[337..345], u64::from(e.minor));
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    octal(&mut h[148..155], u64::from(sum));
    h[155] = b' ';
    h
}

/// The archive bytes: headers, data padded to 512, two zero blocks.
pub fn build(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        out.extend_from_slice(&header(e));
        out.extend_from_slice(&e.data);
        let pad = (512 - e.data.len() % 512) % 512;
        out.extend(std::iter::repeat_n(0u8, pad));
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}
