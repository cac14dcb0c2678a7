//! Steps: one command or a shell-like pipeline (`zfs send X | gzip -6 > F`),
//! run without a shell so that nothing but the tools themselves is timed.
//!
//! std::process is used directly here, not the library's command wrapper: a
//! measured pipeline must connect its children to each other and to files
//! exactly as a shell would, which the wrapper (made for reading a child's
//! output in-process) does not do.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

const TIME: &str = "/usr/bin/time";

#[derive(Debug, Clone)]
pub struct Step {
    stages: Vec<Vec<OsString>>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<PathBuf>,
    stdout: Option<PathBuf>,
    may_fail: bool,
    measure_rss: bool,
}

/// What a step reported besides its time.
#[derive(Debug, Default, Clone, Copy)]
pub struct StepReport {
    /// Peak RSS of the first stage (and of its children), from `time -v`.
    pub peak_rss_kib: Option<u64>,
    /// User + system CPU seconds of every stage and the children they waited
    /// for (not of daemons working for them, such as zfs-fuse).
    pub cpu_secs: f64,
}

fn argv<I, S>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    args.into_iter().map(|a| a.as_ref().to_owned()).collect()
}

impl Step {
    pub fn cmd<I, S>(args: I) -> Step
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Step {
            stages: vec![argv(args)],
            env: Vec::new(),
            stdin: None,
            stdout: None,
            may_fail: false,
            measure_rss: false,
        }
    }

    /// Adds a stage reading the previous one's stdout.
    pub fn pipe<I, S>(mut self, args: I) -> Step
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.stages.push(argv(args));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Step {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn stdin(mut self, path: impl Into<PathBuf>) -> Step {
        self.stdin = Some(path.into());
        self
    }

    pub fn stdout(mut self, path: impl Into<PathBuf>) -> Step {
        self.stdout = Some(path.into());
        self
    }

    /// A clean-up step whose failure (nothing to clean) is fine.
    pub fn may_fail(mut self) -> Step {
        self.may_fail = true;
        self
    }

    /// Runs the first stage under `/usr/bin/time -v` for its peak RSS.
    pub fn measure_rss(mut self) -> Step {
        self.measure_rss = true;
        self
    }

    /// The step as a shell would spell it, for logs and the report.
    pub fn describe(&self) -> String {
        let mut s = self
            .stages
            .iter()
            .map(|stage| {
                stage
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect::<Vec<_>>()
            .join(" | ");
        if let Some(p) = &self.stdin {
            s.push_str(&format!(" < {}", p.display()));
        }
        if let Some(p) = &self.stdout {
            s.push_str(&format!(" > {}", p.display()));
        }
        s
    }

    /// Runs the step to completion; stderr of every stage goes to `log`.
    pub fn execute(&self, log: &Path) -> Result<StepReport> {
        let mut log_file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        use std::io::Write;
        writeln!(log_file, "$ {}", self.describe())?;
        let rss_file = log.with_extension("rss");
        let mut children: Vec<Child> = Vec::new();
        let mut previous = None;
        let last = self.stages.len() - 1;
        for (i, stage) in self.stages.iter().enumerate() {
            let mut args: Vec<OsString> = stage.clone();
            if i == 0 && self.measure_rss {
                let mut wrapped = argv([TIME, "-v", "-o"]);
                wrapped.push(rss_file.clone().into_os_string());
                wrapped.extend(args);
                args = wrapped;
            }
            let mut cmd = Command::new(&args[0]);
            cmd.args(&args[1..])
                .envs(self.env.iter().map(|(k, v)| (k, v)));
            cmd.stdin(match (i, previous.take()) {
                (0, _) => match &self.stdin {
                    Some(p) => Stdio::from(
                        File::open(p).with_context(|| format!("opening {}", p.display()))?,
                    ),
                    None => Stdio::null(),
                },
                (_, Some(out)) => Stdio::from(out),
                (_, None) => Stdio::null(),
            });
            if i == last {
                cmd.stdout(match &self.stdout {
                    Some(p) => Stdio::from(
                        File::create(p).with_context(|| format!("creating {}", p.display()))?,
                    ),
                    None => Stdio::from(log_file.try_clone()?),
                });
            } else {
                cmd.stdout(Stdio::piped());
            }
            cmd.stderr(Stdio::from(log_file.try_clone()?));
            let mut child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    reap(&mut children);
                    return Err(e)
                        .with_context(|| format!("starting {}", args[0].to_string_lossy()));
                }
            };
            previous = child.stdout.take();
            children.push(child);
        }
        let mut failed = Vec::new();
        let mut cpu_secs = 0.0;
        for (child, stage) in children.iter_mut().zip(&self.stages) {
            let (status, cpu) = wait_with_cpu(child)?;
            cpu_secs += cpu;
            if !status.success() {
                failed.push(format!("{} ({status})", stage[0].to_string_lossy()));
            }
        }
        crate::sys::check_interrupted()?;
        if !failed.is_empty() && !self.may_fail {
            bail!(
                "`{}` failed: {}; see {}{}",
                self.describe(),
                failed.join(", "),
                log.display(),
                log_tail(log)
            );
        }
        let peak_rss_kib = if self.measure_rss {
            let text = fs::read_to_string(&rss_file).unwrap_or_default();
            parse_max_rss(&text)
        } else {
            None
        };
        Ok(StepReport {
            peak_rss_kib,
            cpu_secs,
        })
    }
}

/// Waits for a child with wait4(2), which also gives its CPU time (with its
/// waited-for descendants'); `Child::wait` does not.
fn wait_with_cpu(child: &mut Child) -> Result<(std::process::ExitStatus, f64)> {
    use std::os::unix::process::ExitStatusExt;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own unwaited child; status and usage are valid pointers.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).context("wait4");
        }
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok((
        std::process::ExitStatus::from_raw(status),
        secs(usage.ru_utime) + secs(usage.ru_stime),
    ))
}

fn reap(children: &mut [Child]) {
    for child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!(
            "\n  {}",
            lines.into_iter().rev().collect::<Vec<_>>().join("\n  ")
        )
    }
}

/// The peak RSS from GNU time's `-v` report.
pub fn parse_max_rss(report: &str) -> Option<u64> {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gnu_time_report() {
        let report = "\tCommand being timed: \"true\"\n\tUser time (seconds): 0.00\n\
                      \tMaximum resident set size (kbytes): 1536\n\tExit status: 0\n";
        assert_eq!(parse_max_rss(report), Some(1536));
        assert_eq!(parse_max_rss("garbage"), None);
    }

    #[test]
    fn pipeline_connects_stages_and_files() {
        let dir = std::env::temp_dir().join(format!("osctl-bench-run-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let input = dir.join("in");
        fs::write(&input, "b\na\nb\n").unwrap();
        let output = dir.join("out");
        let log = dir.join("log");
        let step = Step::cmd(["sort"])
            .pipe(["uniq", "-c"])
            .stdin(&input)
            .stdout(&output);
        assert!(step.describe().starts_with("sort | uniq -c < "));
        step.execute(&log).unwrap();
        let out = fs::read_to_string(&output).unwrap();
        assert_eq!(
            out.lines().map(str::trim).collect::<Vec<_>>(),
            vec!["1 a", "2 b"]
        );
        let failing = Step::cmd(["false"]);
        assert!(failing.execute(&log).is_err());
        assert!(failing.clone().may_fail().execute(&log).is_ok());
        if Path::new(TIME).exists() {
            let report = Step::cmd(["true"]).measure_rss().execute(&log).unwrap();
            assert!(report.peak_rss_kib.unwrap_or(0) > 0);
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
