//! `osctl`: the command line over `osctl-core`. Parsing, printing and exit
//! codes live here; everything else is in the library.

mod cli;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Output into a closed pipe (`osctl -j ct ls | head`) ends us quietly, as
    // any Unix tool, instead of a panic in println!.
    // SAFETY: setting a signal's disposition to its default is always sound.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = match cli::Args::try_parse() {
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
            ExitCode::from(if output::is_usage(&e) { 2 } else { 1 })
        }
    }
}
