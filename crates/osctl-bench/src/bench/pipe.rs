//! `ct export ID - | ct import -` against an export to a file followed by
//! an import of it (issue 13): the time of the whole move, and the peak RSS
//! of each end. Both ends run under their own `time -v`, since a pipe's
//! stages are separate processes.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{export_args, os, Backend, Ct, Runner, IMPORTED_CT, RSS_LIMIT_MIB, SAME_SPEED};
use crate::measure::Contender;
use crate::report::{mib, Verdict};
use crate::run::{parse_max_rss, Step};

/// Where one end of a move reports its peak RSS.
struct Ends {
    export: PathBuf,
    import: PathBuf,
}

impl Ends {
    fn new(dir: &Path, name: &str) -> Ends {
        Ends {
            export: dir.join(format!("{name}-export.rss")),
            import: dir.join(format!("{name}-import.rss")),
        }
    }

    /// "export X, import Y" of the last run, and the larger of the two.
    fn peaks(&self) -> (String, Option<u64>) {
        let read = |p: &Path| parse_max_rss(&fs::read_to_string(p).unwrap_or_default());
        let (e, i) = (read(&self.export), read(&self.import));
        let show = |k: Option<u64>| k.map_or("—".to_string(), mib);
        (format!("export {}, import {}", show(e), show(i)), e.max(i))
    }
}

/// `argv` under GNU time, its report in `rss`.
fn timed(rss: &Path, argv: Vec<OsString>) -> Vec<OsString> {
    let mut v = os(&[&"/usr/bin/time", &"-v", &"-o", &rss]);
    v.extend(argv);
    v
}

impl Runner<'_> {
    /// The import of either route, into `IMPORTED_CT`.
    fn import_argv(&self, b: &Backend, from: &Path) -> Vec<OsString> {
        self.osctl.argv(
            Some(&b.pool),
            os(&[
                &"ct",
                &"import",
                &"--trusted",
                &"--as-id",
                &IMPORTED_CT,
                &from,
            ]),
        )
    }

    fn move_contender(&self, b: &Backend, name: &str, timed_steps: Vec<Step>) -> Contender {
        Contender {
            name: name.into(),
            reset: vec![self
                .osctl
                .step(&b.pool, ["ct", "del", "--force", IMPORTED_CT])
                .may_fail()],
            timed: timed_steps,
            sync: b.fs_root.clone(),
            output: None,
        }
    }

    /// The two rows: time of the move (file route / pipe), and peak RSS.
    pub(super) fn pipe_rows(&mut self, b: &Backend, ct: &Ct) -> Result<()> {
        let name = b.kind.name();
        let out = self.cfg.workdir.out();
        let logs = self.bench.logs.clone();
        let archive = out.join(format!("{name}-move.tar"));
        let (piped, filed) = (Ends::new(&logs, "pipe"), Ends::new(&logs, "file"));
        let export = |to: &Path| {
            self.osctl.argv(
                Some(&b.pool),
                export_args(&ct.id, to, "--consistent", "gzip"),
            )
        };
        let pipe = Step::cmd(timed(&piped.export, export(Path::new("-"))))
            .pipe(timed(&piped.import, self.import_argv(b, Path::new("-"))))
            .env("OSCTL_ROOT", &self.osctl.root);
        let file = vec![
            Step::cmd(timed(&filed.export, export(&archive))).env("OSCTL_ROOT", &self.osctl.root),
            Step::cmd(timed(&filed.import, self.import_argv(b, &archive)))
                .env("OSCTL_ROOT", &self.osctl.root),
        ];
        let mut file_route = self.move_contender(b, "export to a file, import it", file);
        file_route
            .reset
            .push(Step::cmd(os(&[&"rm", &"-f", &archive])));
        let contenders = vec![
            self.move_contender(b, "export - | import -", vec![pipe]),
            file_route,
        ];
        let mut stats = self
            .bench
            .compare(&format!("{name} move gzip"), &contenders)?;
        let file_stats = stats.remove(1);
        self.report.throughput(
            name,
            "move (gzip): `export - | import -` vs export to a file, then import".into(),
            ct.data.data_bytes,
            Some(&stats[0]),
            &file_stats,
            SAME_SPEED,
        );
        let (pipe_rss, pipe_peak) = piped.peaks();
        let (file_rss, _) = filed.peaks();
        let under = pipe_peak.is_some_and(|k| (k as f64 / 1024.0) < RSS_LIMIT_MIB);
        self.report.push(
            name,
            "peak RSS of a move: pipe vs file (last run)".into(),
            [
                pipe_rss,
                file_rss,
                "—".into(),
                format!("< {RSS_LIMIT_MIB} MiB"),
            ],
            if under { Verdict::Pass } else { Verdict::Fail },
        );
        self.osctl
            .run(Some(&b.pool), ["ct", "del", "--force", IMPORTED_CT])
            .ok();
        let _ = fs::remove_file(&archive);
        Ok(())
    }
}
