//! The run configuration: one TOML file (`peftlab train --config FILE.toml`; the example with
//! every key is `experiments/example.toml`). Unknown keys are errors that name the key.

use std::path::{Path, PathBuf};

use peftlab_adapters::AdapterConfig;
pub use peftlab_linalg::frozen::Precision;
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::optim::{AdamWConfig, Schedule};

/// Everything a training run needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The pretrained model.
    pub model: ModelConfig,
    /// The task and its data.
    pub task: TaskConfig,
    /// The adapter method and its settings; absent = full fine-tuning (every parameter
    /// trains).
    #[serde(default, deserialize_with = "partial_adapter")]
    pub adapter: Option<AdapterConfig>,
    /// Linear layers trained in full next to the adapter (the task head; PEFT's
    /// `modules_to_save`): names or dotted suffixes. Default: `["classifier"]` for classifiers,
    /// none for language models.
    #[serde(default)]
    pub train_modules: Option<Vec<String>>,
    /// Optimizer and schedule.
    #[serde(default)]
    pub optim: OptimConfig,
    /// The loop.
    #[serde(default)]
    pub train: LoopConfig,
}

/// The `[adapter]` table: `method` and any of its keys, the rest defaulted
/// ([`AdapterConfig::from_value`]).
fn partial_adapter<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<AdapterConfig>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    AdapterConfig::from_value(&v)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// Which pretrained model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// A fetched model by name (`minilm`, `smollm2`; fetched on first use), a Hugging Face
    /// directory or a `.gguf` file.
    pub path: String,
    /// BERT: classify the mean-pooled hidden states (sentence-transformers checkpoints such as
    /// MiniLM have no trained pooler).
    #[serde(default)]
    pub mean_pooling: bool,
    /// Arithmetic of the frozen base's products: `"f32"` (default) or `"bf16"` (opt-in: the
    /// frozen weights and the inputs of their products rounded to bf16, f32 sums, adapters and
    /// heads in f32; needs a CPU with `avx512_bf16`; docs/performance.md measures its speed and
    /// its accuracy against f32 on a table row). Left out of the serialized config while f32.
    #[serde(default, skip_serializing_if = "is_f32")]
    pub base_precision: Precision,
}

fn is_f32(p: &Precision) -> bool {
    *p == Precision::F32
}

/// The task and how much of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// A fetched task (`mr2`, `mr-score`, `boolq`, `vitaminc`, `trec`, `e2e`, `webnlg`),
    /// `glue-<task>` with `glue_dir`, or the papers' NLG data `e2e-official` / `dart` with
    /// `data_dir`.
    pub name: String,
    /// GLUE data directory for `glue-<task>`.
    #[serde(default)]
    pub glue_dir: Option<PathBuf>,
    /// Directory of the official E2E CSVs (`e2e-official`) or DART JSON files (`dart`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Tokens per example (pairs truncated longest-first).
    #[serde(default = "d_max_len")]
    pub max_length: usize,
    /// Use only the first N training examples (after the task's seeded split).
    #[serde(default)]
    pub train_limit: Option<usize>,
    /// Use only the first N evaluation examples.
    #[serde(default)]
    pub eval_limit: Option<usize>,
    /// The split model selection evaluates on (`dev`; empty = none: the evaluation points
    /// keep only the training loss, and the model after the last step is the one tested —
    /// with one epoch, selection has nothing to choose from).
    #[serde(default = "d_dev")]
    pub eval_split: String,
    /// The split reported at the best epoch.
    #[serde(default = "d_test")]
    pub test_split: String,
    /// Generation tasks: the prompt, `{input}` replaced by the example's data.
    ///
    /// Keys added after records were written are left out of the serialized config (and so of
    /// the config hash) while they hold their default, so the older records still match.
    #[serde(default = "d_template", skip_serializing_if = "is_d_template")]
    pub template: String,
    /// Generation tasks: tokens generated per evaluation example (greedy).
    #[serde(default = "d_new_tokens", skip_serializing_if = "is_d_new_tokens")]
    pub max_new_tokens: usize,
    /// Generation tasks: beams at evaluation (1 = greedy; the papers' E2E decoding uses 10).
    #[serde(default = "d_one", skip_serializing_if = "is_one")]
    pub num_beams: usize,
    /// Generation tasks: length penalty of finished beams (the papers: 0.9 on E2E).
    #[serde(
        default = "d_length_penalty",
        skip_serializing_if = "is_d_length_penalty"
    )]
    pub length_penalty: f64,
    /// Generation tasks: forbid repeating n-grams of this size (0 = off; the papers: 4).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub no_repeat_ngram_size: usize,
}

fn d_template() -> String {
    "{input}\n".into()
}
fn d_new_tokens() -> usize {
    64
}
fn is_d_template(t: &str) -> bool {
    t == d_template()
}
fn is_d_new_tokens(n: &usize) -> bool {
    *n == d_new_tokens()
}
fn is_one(n: &usize) -> bool {
    *n == 1
}
fn d_length_penalty() -> f64 {
    1.0
}
fn is_d_length_penalty(x: &f64) -> bool {
    *x == 1.0
}
fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn d_max_len() -> usize {
    128
}
fn d_dev() -> String {
    "dev".into()
}
fn d_test() -> String {
    "test".into()
}

/// Optimizer, schedule and loss settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    /// Peak learning rate.
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Peak learning rate of `train_modules` (the head); default: `lr`.
    #[serde(default)]
    pub head_lr: Option<f64>,
    /// AdamW's β1, β2, ε, weight decay.
    #[serde(default, flatten)]
    pub adamw: AdamWConfig,
    /// Decay after warm-up.
    #[serde(default)]
    pub schedule: Schedule,
    /// Warm-up as a fraction of all optimizer steps (ignored when `warmup_steps` is set).
    #[serde(default = "d_warmup")]
    pub warmup_ratio: f64,
    /// Warm-up steps.
    #[serde(default)]
    pub warmup_steps: Option<usize>,
    /// Clip the global gradient norm to this (PyTorch `clip_grad_norm_`); 0 = no clipping.
    #[serde(default = "d_clip")]
    pub max_grad_norm: Option<f64>,
    /// Micro-batches per optimizer step.
    #[serde(default = "d_one")]
    pub grad_accum: usize,
    /// Label smoothing ε of the cross-entropy (classification).
    #[serde(default)]
    pub label_smoothing: f64,
}

fn d_lr() -> f64 {
    5e-4
}
fn d_warmup() -> f64 {
    0.06
}
fn d_clip() -> Option<f64> {
    Some(1.0)
}
fn d_one() -> usize {
    1
}

impl Default for OptimConfig {
    fn default() -> Self {
        toml::from_str("").expect("every optimizer key has a default")
    }
}

/// The loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopConfig {
    /// Passes over the training data.
    #[serde(default = "d_epochs")]
    pub epochs: usize,
    /// Examples per micro-batch.
    #[serde(default = "d_bs")]
    pub batch_size: usize,
    /// Examples per evaluation batch.
    #[serde(default = "d_ebs")]
    pub eval_batch_size: usize,
    /// Evaluate every N optimizer steps as well as after each epoch (0 = epochs only).
    #[serde(default)]
    pub eval_every: usize,
    /// Stop after this many optimizer steps (schedules still span all epochs).
    #[serde(default)]
    pub max_steps: Option<usize>,
    /// The one seed: adapter init, head init, data order and dropout.
    #[serde(default)]
    pub seed: u64,
    /// Group examples of similar length into batches (less padding).
    #[serde(default = "d_true")]
    pub bucket_by_length: bool,
    /// Write a checkpoint every N optimizer steps (0 = at epoch ends only).
    #[serde(default)]
    pub checkpoint_every: usize,
    /// Start the adapter from a saved one (a run's `adapter/` directory) instead of its init:
    /// the recipe of MRPC, RTE and STS-B starting from the MNLI adapter. The saved adapter's
    /// config must equal `[adapter]` (its trained heads are not loaded: the new task has its own
    /// head). In table specs, `{run:TASK}` stands for the directory of the same row and seed on
    /// `TASK`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_adapter: Option<String>,
}

fn d_epochs() -> usize {
    3
}
fn d_bs() -> usize {
    32
}
fn d_ebs() -> usize {
    64
}
fn d_true() -> bool {
    true
}

impl Default for LoopConfig {
    fn default() -> Self {
        toml::from_str("").expect("every loop key has a default")
    }
}

impl TrainConfig {
    /// A copy whose relative paths (`model.path` unless it is a zoo name, `task.data_dir`,
    /// `task.glue_dir`, `train.init_adapter`) are joined onto `base`; absolute paths and zoo
    /// names are kept.
    pub fn resolved_in(&self, base: &Path) -> Self {
        let join = |p: &Path| -> PathBuf {
            if p.is_relative() {
                base.join(p)
            } else {
                p.to_path_buf()
            }
        };
        let mut c = self.clone();
        if !crate::trainer::ZOO.contains(&c.model.path.as_str()) {
            c.model.path = join(Path::new(&c.model.path)).display().to_string();
        }
        c.task.data_dir = c.task.data_dir.as_deref().map(join);
        c.task.glue_dir = c.task.glue_dir.as_deref().map(join);
        c.train.init_adapter = c
            .train
            .init_adapter
            .as_deref()
            .map(|p| join(Path::new(p)).display().to_string());
        c
    }

    /// Parse a TOML text; `source` names it in errors.
    pub fn from_toml(text: &str, source: &str) -> Result<Self, TrainError> {
        let c: Self = toml::from_str(text).map_err(|e| TrainError::Config {
            file: source.to_string(),
            reason: e.to_string(),
        })?;
        c.validate(source)?;
        Ok(c)
    }

    /// Read and parse a config file.
    pub fn from_file(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The config as TOML (what run records store).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a parsed config serializes")
    }

    fn validate(&self, source: &str) -> Result<(), TrainError> {
        let bad = |key: &str, reason: String| TrainError::Config {
            file: source.to_string(),
            reason: format!("{key}: {reason}"),
        };
        let o = &self.optim;
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            return Err(bad(
                "optim.lr",
                format!("must be a positive number, got {}", o.lr),
            ));
        }
        if !(0.0..1.0).contains(&o.warmup_ratio) {
            return Err(bad(
                "optim.warmup_ratio",
                format!("must be in [0, 1), got {}", o.warmup_ratio),
            ));
        }
        if !(0.0..1.0).contains(&o.label_smoothing) {
            return Err(bad(
                "optim.label_smoothing",
                format!("must be in [0, 1), got {}", o.label_smoothing),
            ));
        }
        if self.train.init_adapter.is_some() && self.adapter.is_none() {
            return Err(bad(
                "train.init_adapter",
                "starts an adapter, but the config has no [adapter] (full fine-tuning)".into(),
            ));
        }
        if o.grad_accum == 0 {
            return Err(bad("optim.grad_accum", "must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&o.adamw.beta1) || !(0.0..1.0).contains(&o.adamw.beta2) {
            return Err(bad("optim.beta1/beta2", "must be in [0, 1)".into()));
        }
        if o.max_grad_norm.is_some_and(|n| n.is_nan() || n < 0.0) {
            return Err(bad(
                "optim.max_grad_norm",
                "must be ≥ 0 (0 = no clipping)".into(),
            ));
        }
        let l = &self.train;
        if l.epochs == 0 || l.batch_size == 0 || l.eval_batch_size == 0 {
            return Err(bad(
                "train.epochs/batch_size/eval_batch_size",
                "must be at least 1".into(),
            ));
        }
        if self.task.max_length < 4 {
            return Err(bad(
                "task.max_length",
                format!("{} is too short", self.task.max_length),
            ));
        }
        if self.task.num_beams == 0 {
            return Err(bad(
                "task.num_beams",
                "must be at least 1 (1 = greedy)".into(),
            ));
        }
        if !self.task.length_penalty.is_finite() {
            return Err(bad(
                "task.length_penalty",
                format!("must be a number, got {}", self.task.length_penalty),
            ));
        }
        Ok(())
    }
}
