//! Writes the seed corpus: `gen-corpus DIR` fills DIR/archive, DIR/documents
//! and DIR/extract with the seeds of `osctl_core::inspect::fuzz::seeds`.

use std::path::PathBuf;
use std::process::ExitCode;

use osctl_core::inspect::fuzz::seeds;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: gen-corpus DIR");
        return ExitCode::from(2);
    };
    match write(&dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen-corpus: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let scratch = tempfile::tempdir()?;
    let sets = [
        ("archive", seeds::archives(scratch.path())?),
        ("documents", seeds::documents()?),
        ("extract", seeds::streams(scratch.path())?),
    ];
    for (target, seeds) in sets {
        let out = dir.join(target);
        std::fs::create_dir_all(&out)?;
        for (name, bytes) in seeds {
            println!("{target}/{name}: {} bytes", bytes.len());
            std::fs::write(out.join(name), bytes)?;
        }
    }
    Ok(())
}
