//! What a run leaves behind: a JSON record (config, its hash, git commit, versions, backend,
//! seed, per-epoch metrics, best epoch, parameter counts, wall time, peak memory) and a JSONL
//! log of training events. Files are written to a temporary name and renamed, so a reader never
//! sees half a file.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::TrainError;

/// Metrics of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    /// Epoch (1-based) just finished, or the epoch the step falls in.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub step: usize,
    /// Mean training loss since the previous evaluation.
    pub train_loss: f64,
    /// Metrics on the evaluation split (×100 for classification, as in the papers).
    pub metrics: BTreeMap<String, f64>,
}

/// The record of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The config, as TOML text.
    pub config: String,
    /// FNV-1a hash (hex) of the config text: a run with the same hash is the same run.
    pub config_hash: String,
    /// `git rev-parse HEAD` of the working directory, if it is a git checkout.
    pub git_commit: Option<String>,
    /// Whether the checkout had uncommitted changes.
    pub git_dirty: Option<bool>,
    /// peftlab, burn and data-split versions.
    pub versions: BTreeMap<String, String>,
    /// The burn device the run trained on.
    pub backend: String,
    /// The run's seed.
    pub seed: u64,
    /// Adapter method (`full` for full fine-tuning).
    pub method: String,
    /// Evaluations on the evaluation split, in order.
    pub evals: Vec<EvalPoint>,
    /// Index into `evals` of the best one (by the task's first metric).
    pub best: Option<usize>,
    /// Metrics on the test split with the weights of the best evaluation.
    pub test_metrics: BTreeMap<String, f64>,
    /// Trainable parameters at the start and at the end (rank growth changes it).
    pub trainable_params: (usize, usize),
    /// All parameters.
    pub total_params: usize,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Training examples seen per second (forward + backward + update).
    pub examples_per_s: f64,
    /// Wall time in seconds.
    pub wall_s: f64,
    /// Peak resident memory of the process in MiB (`VmHWM`), where the OS reports it.
    pub peak_rss_mib: Option<f64>,
    /// Rank-allocation events (TriAdaptLoRA growth, AdaLoRA budgets): free-form JSON values.
    pub allocations: Vec<serde_json::Value>,
    /// Where the task's data came from (the manifest source or directory) and the sha256 of
    /// each file read; `None` for a user's GLUE or NLG directory and for records written before
    /// data provenance was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<peftlab_data::fetch::Provenance>,
}

/// The revision of the implementation of `config`'s method
/// ([`peftlab_adapters::AdapterConfig::revision`]; full fine-tuning: 1), stored in each record as
/// `versions.method_revision`.
pub fn method_revision(config: &crate::config::TrainConfig) -> u32 {
    config
        .adapter
        .as_ref()
        .map_or(1, peftlab_adapters::AdapterConfig::revision)
}

/// FNV-1a of a string, hex.
pub fn hash_hex(s: &str) -> String {
    format!("{:016x}", peftlab_data::task::fnv1a(s))
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`).
pub fn peak_rss_mib() -> Option<f64> {
    let s = fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// `(commit, dirty)` of the git checkout containing the current directory, as it was the first
/// time this process asked ([`crate::Trainer::new`] asks): a long `reproduce` writes records for
/// hours, and commits made meanwhile are not the code the running binary was built from.
pub fn git_state() -> (Option<String>, Option<bool>) {
    static STATE: std::sync::OnceLock<(Option<String>, Option<bool>)> = std::sync::OnceLock::new();
    STATE.get_or_init(read_git_state).clone()
}

fn read_git_state() -> (Option<String>, Option<bool>) {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "HEAD"]) {
        Some(c) => (
            Some(c),
            run(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty()),
        ),
        None => (None, None),
    }
}

/// Write `bytes` to `path` atomically (temporary file in the same directory, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let err = |p: &Path, e: std::io::Error| TrainError::File {
        path: p.to_path_buf(),
        reason: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    }
    let tmp = PathBuf::from(format!("{}.tmp-{}", path.display(), std::process::id()));
    fs::write(&tmp, bytes).map_err(|e| err(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        err(path, e)
    })
}

/// Appends one JSON value per line to the run's log.
pub struct JsonlLog {
    file: Option<fs::File>,
    path: PathBuf,
}

impl JsonlLog {
    /// Open `path` (appending when `append`, else truncating); `None` logs nowhere.
    pub fn open(path: Option<&Path>, append: bool) -> Result<Self, TrainError> {
        let file = match path {
            Some(p) => {
                if let Some(dir) = p.parent() {
                    fs::create_dir_all(dir).map_err(|e| TrainError::File {
                        path: dir.to_path_buf(),
                        reason: e.to_string(),
                    })?;
                }
                Some(
                    fs::OpenOptions::new()
                        .create(true)
                        .append(append)
                        .write(true)
                        .truncate(!append)
                        .open(p)
                        .map_err(|e| TrainError::File {
                            path: p.to_path_buf(),
                            reason: e.to_string(),
                        })?,
                )
            }
            None => None,
        };
        Ok(Self {
            file,
            path: path.map(Path::to_path_buf).unwrap_or_default(),
        })
    }

    /// Append `v` as one line.
    pub fn write(&mut self, v: &serde_json::Value) -> Result<(), TrainError> {
        if let Some(f) = &mut self.file {
            writeln!(f, "{v}").map_err(|e| TrainError::File {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }
}
