//! `osctl archive repack IN OUT`: an archive whose streams are in parts (one
//! written to a pipe) turned into the single-entry layout that vpsAdminOS's
//! osctl reads. Everything is checked as an import checks it (the grammar,
//! every digest); the output is written under a temporary name and renamed
//! only when the input proved whole.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::archive::grammar::Grammar;
use crate::archive::meta::{self, EntryName};
use crate::archive::{ArchiveReader, ArchiveWriter, EntryKind, PartsReader};
use crate::error::{Context, Error, Result};
use crate::export::PartialFile;
use crate::interrupt::{self, Interruptible};

/// Repacks the archive `input` yields into the file `out`; `force`
/// overwrites it.
pub fn repack<R: Read + Send>(input: R, out: &Path, force: bool) -> Result<()> {
    let partial = PartialFile::plan(out, force)?;
    let file = partial.create()?;
    repack_into(input, ArchiveWriter::new(file)?)?;
    partial.commit()
}

/// Repacks into an open seekable file (standard output redirected to one),
/// from its position.
pub fn repack_to_file<R: Read + Send>(input: R, file: File) -> Result<()> {
    repack_into(input, ArchiveWriter::new(file)?)
}

/// Where `osctl archive repack` reads.
pub enum Input {
    Stdin,
    Path(std::path::PathBuf),
}

/// `osctl archive repack IN OUT`: OUT None is standard output, which must be
/// a regular file (sizes are patched in place).
pub fn repack_cmd(input: Input, out: Option<&Path>, force: bool) -> Result<()> {
    let reader: Box<dyn Read + Send> = match &input {
        Input::Stdin => Box::new(io::stdin()),
        Input::Path(p) => {
            Box::new(File::open(p).ctx(|| format!("cannot open archive {}", p.display()))?)
        }
    };
    let result = match out {
        Some(out) => repack(reader, out, force),
        None => repack_to_file(reader, seekable_stdout()?),
    };
    result.map_err(|e| match &input {
        Input::Stdin => e.context("cannot repack the archive on standard input"),
        Input::Path(p) => e.context(format!("cannot repack {}", p.display())),
    })
}

/// Standard output as a file, if it is a regular one.
fn seekable_stdout() -> Result<File> {
    use std::os::fd::AsFd;
    let fd = io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .ctx(|| "cannot use standard output")?;
    let file = File::from(fd);
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err(Error::refused(
            "standard output is not a file: a repacked archive's sizes are written after its \
             streams, so it needs a file (give OUT a file name or redirect to one)",
        ));
    }
    Ok(file)
}

fn repack_into<R: Read + Send>(input: R, mut w: ArchiveWriter) -> Result<()> {
    interrupt::install();
    let mut grammar = Grammar::new();
    let mut reader = ArchiveReader::new(Interruptible(input));
    while let Some(mut entry) = reader.next_entry()? {
        let name = meta::classify(entry.name(), entry.kind())?;
        grammar.admit(&name, entry.name())?;
        let shown = entry.name().to_string();
        match &name {
            EntryName::StreamPart(stream, _) => {
                let whole = stream.entry_name();
                let mut parts = PartsReader::new(&mut reader, &mut grammar, stream.clone())?;
                w.stream_entry(&whole, |sink| sink.copy_from(&mut parts))?;
                parts.finish()?;
                continue;
            }
            EntryName::Stream(_) => {
                w.stream_entry(&shown, |sink| sink.copy_from(&mut entry))?;
            }
            _ if entry.kind() == EntryKind::Dir => w.add_dir(&shown)?,
            EntryName::Metadata => {
                grammar.read_own(&mut entry, &name)?;
                let mut metadata = grammar.metadata().cloned().expect("just read");
                metadata.part_size = None;
                w.add_file(&shown, metadata.to_yaml()?.as_bytes())?;
            }
            EntryName::Checksums => {
                // Ours anew: metadata.yml changed; the streams' lines are
                // the same, and the input's are compared at the end.
                grammar.read_own(&mut entry, &name)?;
                let lines = meta::checksums_to_yaml(w.checksums())?;
                w.add_file(&shown, lines.as_bytes())?;
            }
            EntryName::Snapshots => {
                grammar.read_own(&mut entry, &name)?;
                let names = grammar.snapshots().unwrap_or_default();
                w.add_file(&shown, meta::snapshots_to_yaml(names)?.as_bytes())?;
            }
            _ => {
                let mode = entry.mode();
                let body = entry.read_to_vec(meta::MAX_DOCUMENT.max(meta::MAX_HOOK_BYTES))?;
                w.add_file_with_mode(&shown, &body, mode)?;
            }
        }
        if entry.remaining() > 0 {
            return Err(Error::archive(format!(
                "archive entry '{shown}' was not read to its end"
            )));
        }
        grammar.keep_digest(&name, &entry);
    }
    grammar.finish(true)?;
    w.end()
}
