//! `osctl send`, `osctl receive` and `osctl ct send`: moving containers
//! between hosts over SSH, with the original osctl's command names.

use std::io::Read;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::json;

use osctl_core::host::Host;
use osctl_core::pool::Pool;
use osctl_core::progress::Progress;
use osctl_core::send::keys::{self, AuthorizedKey, AuthorizedKeys};
use osctl_core::send::{receive, source};

use crate::output;

#[derive(Subcommand, Debug)]
pub enum SendCmd {
    /// This host's sending key
    #[command(subcommand)]
    Key(KeyCmd),
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Make the sending key
    Gen {
        /// ed25519, rsa or ecdsa
        #[arg(short = 't', long = "type", default_value = "ed25519")]
        kind: String,
        /// Replace an existing key
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Print the path of the public or private key
    Path {
        /// Which of the pair
        #[arg(value_parser = ["public", "private"], default_value = "public")]
        which: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ReceiveCmd {
    /// Keys allowed to send containers to this host
    #[command(subcommand, name = "authorized-keys")]
    AuthorizedKeys(AuthKeysCmd),
    /// Run by sshd for an authorized key (not for people)
    #[command(hide = true)]
    Serve {
        /// The authorized key's id, written into its forced command
        key_id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuthKeysCmd {
    /// Allow a public key (read from standard input) to send here
    Add {
        /// A name for this entry (for ls and del)
        name: String,
        /// Source addresses allowed: ADDR, ADDR/PREFIX or patterns with * ?, comma-separated
        #[arg(long)]
        from: Option<String>,
        /// Only this container (its id here)
        #[arg(long)]
        ctid: Option<String>,
        /// The sender must give it; tells apart entries of one key
        #[arg(long)]
        passphrase: Option<String>,
        /// Removed after one completed send
        #[arg(long)]
        single_use: bool,
        /// Import what this key sends as `ct import --trusted` does
        #[arg(long)]
        trusted: bool,
    },
    /// List the allowed keys
    Ls,
    /// Remove an allowed key
    Del {
        /// The entry's name
        name: String,
    },
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct CtSendCmd {
    #[command(subcommand)]
    step: Option<StepCmd>,
    #[command(flatten)]
    opts: SendOpts,
    /// The container ([POOL:]ID; all steps in one go)
    #[arg(required = true)]
    id: Option<String>,
    /// [user@]host[:port]
    #[arg(required = true)]
    dest: Option<String>,
}

impl CtSendCmd {
    /// The container argument, for [`crate::cli`] to resolve `POOL:ID`.
    pub fn id_mut(&mut self) -> Option<&mut String> {
        match &mut self.step {
            None => self.id.as_mut(),
            Some(
                StepCmd::Config { id, .. }
                | StepCmd::Rootfs { id }
                | StepCmd::Sync { id }
                | StepCmd::State { id, .. }
                | StepCmd::Cleanup { id }
                | StepCmd::Cancel { id },
            ) => Some(id),
        }
    }
}

#[derive(Args, Debug, Default)]
pub struct SendOpts {
    /// Keep the source (started again after the cutover); the copy gets new MACs
    #[arg(long)]
    clone: bool,
    /// Given to the target to choose among entries of the sending key
    #[arg(long)]
    passphrase: Option<String>,
    /// The target's pool
    #[arg(long)]
    to_pool: Option<String>,
    /// The container's id on the target
    #[arg(long)]
    as_id: Option<String>,
    /// An existing user of the target instead of the container's (the
    /// target's key entry must be --trusted)
    #[arg(long, value_name = "USER")]
    as_user: Option<String>,
    /// An existing group of the target instead of the container's (the
    /// target's key entry must be --trusted)
    #[arg(long, value_name = "GROUP")]
    as_group: Option<String>,
    /// Leave the copy stopped on the target
    #[arg(long)]
    no_start: bool,
}

#[derive(Subcommand, Debug)]
pub enum StepCmd {
    /// Stage the container on the target (not startable there)
    Config {
        #[command(flatten)]
        opts: SendOpts,
        /// The container ([POOL:]ID)
        id: String,
        /// [user@]host[:port]
        dest: String,
    },
    /// Send the root file system while the container runs
    Rootfs {
        /// The container ([POOL:]ID)
        id: String,
    },
    /// Send the changes since the last round
    Sync {
        /// The container ([POOL:]ID)
        id: String,
    },
    /// Stop, send the last changes, start on the target
    State {
        /// Leave the copy stopped on the target
        #[arg(long)]
        no_start: bool,
        /// The container ([POOL:]ID)
        id: String,
    },
    /// Remove the source (with --clone: start it again)
    Cleanup {
        /// The container ([POOL:]ID)
        id: String,
    },
    /// Undo the send before cleanup: nothing stays on the target
    Cancel {
        /// The container ([POOL:]ID)
        id: String,
    },
}

pub fn send_cmd(host: &Host, cmd: SendCmd) -> Result<()> {
    match cmd {
        SendCmd::Key(KeyCmd::Gen { kind, force }) => {
            keys::generate(host, &kind, force)?;
        }
        SendCmd::Key(KeyCmd::Path { which }) => {
            let path = match which.as_str() {
                "private" => keys::private_key_path(host)?,
                _ => keys::public_key_path(host)?,
            };
            println!("{}", path.display());
        }
    }
    Ok(())
}

pub fn receive_cmd(host: &Host, json: bool, cmd: ReceiveCmd) -> Result<()> {
    match cmd {
        ReceiveCmd::Serve { key_id } => {
            let command = std::env::var("SSH_ORIGINAL_COMMAND").unwrap_or_default();
            let connection = std::env::var("SSH_CONNECTION").unwrap_or_default();
            receive::serve(
                host,
                &key_id,
                &command,
                &connection,
                &mut std::io::stdin().lock(),
                &mut std::io::stdout().lock(),
            )?;
        }
        ReceiveCmd::AuthorizedKeys(c) => auth_keys_cmd(host, json, c)?,
    }
    Ok(())
}

fn auth_keys_cmd(host: &Host, json: bool, cmd: AuthKeysCmd) -> Result<()> {
    match cmd {
        AuthKeysCmd::Add {
            name,
            from,
            ctid,
            passphrase,
            single_use,
            trusted,
        } => {
            let mut line = String::new();
            std::io::stdin().take(64 << 10).read_to_string(&mut line)?;
            let key = keys::parse_public_key(&line)?;
            if let Some(f) = &from {
                keys::check_from(f)?;
            }
            if let Some(id) = &ctid {
                osctl_core::names::container_id(id)?;
            }
            let mut db = AuthorizedKeys::open(host)?;
            db.add(AuthorizedKey {
                name,
                key,
                from,
                ctid,
                passphrase_sha256: passphrase.as_deref().map(keys::passphrase_digest),
                single_use,
                trusted,
            })?;
            db.save(&keys::receive_command()?)?;
        }
        AuthKeysCmd::Ls => {
            let db = AuthorizedKeys::open(host)?;
            let rows: Vec<_> = db
                .entries
                .iter()
                .map(|e| {
                    json!({"name": e.name, "key": e.key, "from": e.from, "ctid": e.ctid,
                       "passphrase": e.passphrase_sha256.is_some(), "single_use": e.single_use,
                       "trusted": e.trusted})
                })
                .collect();
            if json {
                output::json(&rows)?;
            } else {
                let show = |v: &serde_json::Value| match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => "-".into(),
                    other => other.to_string(),
                };
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        ["name", "from", "ctid", "passphrase", "single_use"]
                            .iter()
                            .map(|k| show(&r[k]))
                            .collect()
                    })
                    .collect();
                output::table(
                    &["NAME", "FROM", "CTID", "PASSPHRASE", "SINGLE-USE"],
                    &table,
                );
            }
        }
        AuthKeysCmd::Del { name } => {
            let mut db = AuthorizedKeys::open(host)?;
            db.remove(&name)?;
            db.save(&keys::receive_command()?)?;
        }
    }
    Ok(())
}

fn options(opts: SendOpts, quiet: bool) -> source::SendOptions {
    source::SendOptions {
        clone: opts.clone,
        passphrase: opts.passphrase,
        to_pool: opts.to_pool,
        as_id: opts.as_id,
        as_user: opts.as_user,
        as_group: opts.as_group,
        no_start: opts.no_start,
        progress: Progress::new(!quiet),
        report: Box::new(move |line| {
            if !quiet {
                eprintln!("osctl: {line}");
            }
        }),
    }
}

pub fn ct_send_cmd(pool: &Pool, host: &Host, quiet: bool, cmd: CtSendCmd) -> Result<()> {
    let Some(step) = cmd.step else {
        let (Some(id), Some(dest)) = (cmd.id, cmd.dest) else {
            unreachable!("clap requires ID and DEST");
        };
        let o = options(cmd.opts, quiet);
        let r = source::send_all(pool, host, &id, &dest, &o);
        o.progress.finish();
        return Ok(r?);
    };
    let r = match step {
        StepCmd::Config { opts, id, dest } => {
            let o = options(opts, quiet);
            source::config(pool, host, &id, &dest, &o)
        }
        StepCmd::Rootfs { id } => {
            source::rootfs(pool, host, &id, &options(SendOpts::default(), quiet))
        }
        StepCmd::Sync { id } => source::sync(pool, host, &id, &options(SendOpts::default(), quiet)),
        StepCmd::State { no_start, id } => {
            let opts = SendOpts {
                no_start,
                ..Default::default()
            };
            source::state(pool, host, &id, &options(opts, quiet))
        }
        StepCmd::Cleanup { id } => source::cleanup(pool, host, &id),
        StepCmd::Cancel { id } => source::cancel(pool, host, &id),
    };
    Ok(r?)
}
