//! `osctl`: the command line over `osctl-core`. Parsing, printing and exit
//! codes live here; everything else is in the library.

#[macro_use]
mod output;
mod args;
mod cli;
mod gen;
mod list;
mod netif_cli;
mod resources_cli;
mod send_cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = match args::Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let usage = e.use_stderr();
            let _ = e.print();
            return ExitCode::from(if usage { 2 } else { 0 });
        }
    };
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", output::one_line(&e));
            match osctl_core::interrupt::received() {
                // As a shell reports a death by the signal: 130 for SIGINT,
                // 143 for SIGTERM, after the same clean-up as any failure.
                Some(sig) => ExitCode::from(128 + sig as u8),
                None if output::is_usage(&e) => ExitCode::from(2),
                None => ExitCode::from(1),
            }
        }
    }
}
