//! Our archives as vpsAdminOS's osctld reads them: `original_import.rb`
//! repeats its importer's steps (see there), and [`OriginalImport::seen`]
//! says what a container of the original would then see at a path, through
//! its dataset mounts.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const SCRIPT: &str = include_str!("original_import.rb");

pub fn have_ruby() -> bool {
    Command::new("ruby")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// What the original's import left: a zfs archive's datasets below
/// `root_ds` (mounted at `root_mnt`), a tar archive's files in `rootfs`.
pub struct OriginalImport {
    pub format: String,
    pub datasets: Vec<String>,
    /// `mounts` of config/container.yml.
    pub mounts: Vec<Value>,
    /// Hook scripts written, with their modes.
    pub hooks: Vec<(String, u32)>,
    /// The root dataset's directory, or for tar archives the parent of `rootfs`.
    root_mnt: PathBuf,
}

/// Imports `archive` as the original does; Err holds its error output.
/// `root_ds` is a dataset name under which nothing exists yet (mounted,
/// once created, at `root_mnt`); `work` a directory for a tar archive's
/// rootfs (`work/private`) and the hooks (`work/hooks`).
pub fn import(
    archive: &Path,
    root_ds: &str,
    root_mnt: &Path,
    work: &Path,
) -> Result<OriginalImport, String> {
    let hooks = work.join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let out = Command::new("ruby")
        .arg("-e")
        .arg(SCRIPT)
        .arg(archive)
        .arg(root_ds)
        .arg(work.join("private"))
        .arg(&hooks)
        .output()
        .expect("ruby runs");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let summary: Value = serde_json::from_slice(&out.stdout).expect("the script's JSON");
    let format = summary["format"].as_str().unwrap().to_string();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let root_mnt = if format == "tar" {
        work.to_path_buf()
    } else {
        root_mnt.to_path_buf()
    };
    let import = OriginalImport {
        datasets: strings(&summary["datasets"]),
        mounts: summary["mounts"].as_array().unwrap().clone(),
        hooks: summary["hooks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h[0].as_str().unwrap().to_string(),
                    h[1].as_u64().unwrap() as u32,
                )
            })
            .collect(),
        format,
        root_mnt,
    };
    if import.format == "zfs" {
        // canmount=noauto: the original mounts each dataset itself.
        for rel in std::iter::once("").chain(import.datasets.iter().map(String::as_str)) {
            let ds = if rel.is_empty() {
                root_ds.to_string()
            } else {
                format!("{root_ds}/{rel}")
            };
            let _ = Command::new("zfs").args(["mount", &ds]).output();
        }
    }
    Ok(import)
}

impl OriginalImport {
    /// Where the file a container of the original sees at `path` (absolute)
    /// is on the host: in the `private/` of the dataset whose `mounts` entry
    /// is the longest prefix of `path`, else in the root dataset's.
    pub fn seen(&self, path: &str) -> PathBuf {
        let mut best: Option<(&str, &str)> = None;
        for m in &self.mounts {
            let (Some(ds), Some(at)) = (m["dataset"].as_str(), m["mountpoint"].as_str()) else {
                continue;
            };
            let under = path == at || path.starts_with(&format!("{at}/"));
            if under && best.is_none_or(|(_, b)| at.len() > b.len()) {
                best = Some((ds, at));
            }
        }
        match best {
            Some((ds, at)) => self
                .root_mnt
                .join(ds)
                .join("private")
                .join(path[at.len()..].trim_start_matches('/')),
            None => self
                .root_mnt
                .join("private")
                .join(path.trim_start_matches('/')),
        }
    }

    /// The dataset mounts, as `(dataset, mountpoint)`.
    pub fn dataset_mounts(&self) -> Vec<(String, String)> {
        self.mounts
            .iter()
            .filter_map(|m| {
                Some((
                    m["dataset"].as_str()?.to_string(),
                    m["mountpoint"].as_str()?.to_string(),
                ))
            })
            .collect()
    }
}

/// Writes an archive as the original's exporter does, with Ruby's
/// `Gem::Package::TarWriter`: `entries` in order, each a path below `stage`
/// with the mode its header gets (directories end with '/'; a hook's mode
/// is its file's `st_mode`, file type bits included).
pub fn write_archive(stage: &Path, entries: &[(&str, u32)], out: &Path) {
    const WRITER: &str = r#"
require 'rubygems/package'
stage, out, *list = ARGV
File.open(out, 'wb') do |io|
  tar = Gem::Package::TarWriter.new(io)
  list.each_slice(2) do |name, mode|
    if name.end_with?('/')
      tar.mkdir(name.chomp('/'), mode.to_i(8))
    else
      tar.add_file(name, mode.to_i(8)) { |tf| tf.write(File.binread(File.join(stage, name))) }
    end
  end
  tar.close
end
"#;
    let mut cmd = Command::new("ruby");
    cmd.arg("-e").arg(WRITER).arg(stage).arg(out);
    for (name, mode) in entries {
        cmd.arg(name).arg(format!("{mode:o}"));
    }
    let status = cmd.status().expect("ruby runs");
    assert!(status.success(), "Ruby's TarWriter wrote the archive");
}
