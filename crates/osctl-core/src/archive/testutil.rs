//! Helpers shared by the archive tests.

use std::io::Read;
use std::path::Path;

use crate::cmd::Cmd;

/// Deterministic data that compresses like real files: words of a small
/// vocabulary, numbers, and a share of noise.
pub(crate) fn sample_data(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the",
        "container",
        "root",
        "file",
        "system",
        "export",
        "import",
        "dataset",
        "snapshot",
        "stream",
        "user",
        "group",
        "config",
        "lib",
        "usr",
        "bin",
        "share",
        "0x7f",
        "ELF",
        "\n",
        "proc",
        "mount",
        "etc",
        "passwd",
        "shadow",
        "=",
        "{",
        "}",
        ";",
        "static",
        "int",
        "return",
    ];
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        let r = next();
        match r % 10 {
            0 => out.extend_from_slice(&r.to_le_bytes()[..4]),
            1 => out.extend_from_slice(format!("{} ", r % 100_000).as_bytes()),
            _ => {
                out.extend_from_slice(WORDS[(r >> 8) as usize % WORDS.len()].as_bytes());
                out.push(b' ');
            }
        }
    }
    out.truncate(len);
    out
}

/// Runs a program and returns its stdout as bytes.
pub(crate) fn run_bytes<I, S>(program: &str, args: I) -> Vec<u8>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut child = Cmd::new(program)
        .args(args)
        .spawn_reader()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    child
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("{e}"));
    out
}

pub(crate) fn run_text(program: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    Cmd::new(program)
        .args(args.iter().map(|a| a.as_ref()))
        .run()
        .unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn path_arg(p: &Path) -> &std::ffi::OsStr {
    p.as_os_str()
}

/// Whether Ruby is installed: the original osctl reads and writes archives
/// with Ruby's `Gem::Package::TarReader`/`TarWriter` and `Zlib::GzipReader`,
/// so the compatibility tests run them. Prints why a test is skipped.
pub(crate) fn have_ruby(test: &str) -> bool {
    let found = Cmd::new("ruby").arg("--version").run().is_ok();
    if !found {
        eprintln!("skipping {test}: ruby is not installed (Debian package `ruby`)");
    }
    found
}
