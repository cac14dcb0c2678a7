//! Shell completions and man pages, generated from the command-line grammar
//! so that they never lag behind it (`osctl gen-completion SHELL`,
//! `osctl gen-man DIR`; `scripts/install.sh` installs both).

use std::path::Path;

use anyhow::{Context, Result};
use clap::{Command, CommandFactory};

use crate::args::Args;

/// Every environment variable osctl reads, with what it does: the
/// ENVIRONMENT section of osctl(8) (the README has the same list).
pub const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "OSCTL_ROOT",
        "The host state directory: the registry of pools, lock files, LXC configs and the \
         embedded default pool. Default: /var/lib/osctl.",
    ),
    (
        "OSCTL_LOCK_TIMEOUT",
        "Seconds an operation waits for another one on the same object before it gives up \
         (default 600); --lock-timeout overrides it.",
    ),
    (
        "OSCTL_SUBID_DIR",
        "The directory holding the subuid and subgid files osctl adds its users' id ranges to \
         (default /etc), e.g. for tests that must not touch the host's.",
    ),
    (
        "OSCTL_FAILPOINT",
        "Test builds only (feature failpoints): NAME kills the process at the named point of \
         an export, import or send, NAME:stop stops it there, NAME:fail makes the step there \
         fail (a send's stop, receive or start); authorized-keys add and del pass it on to \
         the receiving end. Release builds ignore it.",
    ),
    (
        "OSCTL_SSH_OPTIONS",
        "Words added to every ssh command of ct send (e.g. -b ADDRESS, -o Port=2222), split \
         on blanks.",
    ),
    (
        "SSH_ORIGINAL_COMMAND",
        "Set by sshd for the forced command of an authorized key: the request osctl receive \
         serve checks word by word before it acts.",
    ),
    (
        "SSH_CONNECTION",
        "Set by sshd: the sender's address, checked against an authorized key's --from.",
    ),
    (
        "LXC_CONFIG_FILE",
        "Set by LXC for hooks: where the hidden veth-up-hook command leaves its error for the \
         start to report.",
    ),
];

const EXIT_STATUS: &str = "0 on success, 1 on an operational error, 2 on a usage error; \
    ct exec passes the command's own status through; 130 after SIGINT and 143 after SIGTERM \
    (the operation is undone first).";

fn command() -> Command {
    let mut cmd = Args::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// Prints the completion script for `shell` to standard output.
pub fn completion(shell: clap_complete::Shell) {
    let mut cmd = command();
    clap_complete::generate(shell, &mut cmd, "osctl", &mut std::io::stdout());
}

/// Writes osctl.8 and a page per command (osctl-ct.8, osctl-ct-export.8,
/// ...; the pages refer to each other by these names) into `dir`.
pub fn man_pages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write_pages(&command(), dir, true)
}

fn write_pages(cmd: &Command, dir: &Path, top: bool) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, false)?;
    }
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("osctl-rs");
    let mut page = Vec::new();
    man.render(&mut page)?;
    if top {
        page.extend_from_slice(extra_sections().as_bytes());
    }
    let path = dir.join(man.get_filename());
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))
}

/// Escapes text for a roff line: backslashes, and a leading dot or quote.
fn roff_text(text: &str) -> String {
    let text = text.replace('\\', "\\e").replace('-', "\\-");
    match text.chars().next() {
        Some('.') | Some('\'') => format!("\\&{text}"),
        _ => text,
    }
}

fn extra_sections() -> String {
    let mut out = String::from(".SH ENVIRONMENT\n");
    for (name, what) in ENVIRONMENT {
        out.push_str(&format!(
            ".TP\n\\fB{}\\fR\n{}\n",
            roff_text(name),
            roff_text(what)
        ));
    }
    out.push_str(&format!(
        ".SH \"EXIT STATUS\"\n{}\n",
        roff_text(EXIT_STATUS)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command, argument and option says what it is, in one line.
    #[test]
    fn everything_is_described() {
        fn walk(cmd: &Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_about().is_none() && path != " osctl" {
                missing.push(format!("command{path}"));
            }
            for arg in cmd.get_arguments() {
                let builtin = ["help", "version"].contains(&arg.get_id().as_str());
                if arg.get_help().is_none() && !builtin && !arg.is_hide_set() {
                    missing.push(format!("{path}: {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&command(), "", &mut missing);
        assert!(missing.is_empty(), "undescribed: {missing:#?}");
    }

    #[test]
    fn the_grammar_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn roff_is_escaped() {
        assert_eq!(roff_text(".x -y \\"), "\\&.x \\-y \\e");
    }

    /// Every variable the code reads is in osctl(8) (and, by the CLI test
    /// that compares, in the README).
    #[test]
    fn environment_is_documented() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut read = Vec::new();
        for dir in ["crates/osctl-core/src", "crates/osctl/src"] {
            collect_env_reads(&root.join(dir), &mut read);
        }
        assert!(read.contains(&"OSCTL_ROOT".to_string()), "{read:?}");
        for name in read {
            assert!(
                ENVIRONMENT.iter().any(|(n, _)| *n == name),
                "{name} is read but not documented"
            );
        }
    }

    fn collect_env_reads(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                collect_env_reads(&path, out);
                continue;
            }
            // Unit tests' own knobs are not osctl's.
            if path.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for (at, _) in text.match_indices("env::var") {
                let rest = &text[at..];
                if let Some(name) = rest.split('"').nth(1) {
                    if name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                        out.push(name.to_string());
                    }
                }
            }
        }
    }
}
