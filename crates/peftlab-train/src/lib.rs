//! # peftlab-train — the training loop
//!
//! - [`config`]: the run configuration (one TOML file; `experiments/example.toml`);
//! - [`optim`]: AdamW (PyTorch semantics, state by parameter path), warm-up + linear / cosine /
//!   constant schedules, global-norm clipping;
//! - [`trainer`]: the loop — gradient accumulation, label smoothing, seeded dropout, the rank
//!   allocators and orthogonality regularizers of TriAdaptLoRA and AdaLoRA driven from the
//!   adapter config, evaluation with best-epoch selection, full fine-tuning when no adapter is
//!   configured;
//! - [`record`]: the JSON run record and the JSONL log;
//! - [`checkpoint`]: checkpoints and bit-identical resume;
//! - [`table`], [`reproduce`]: paper tables as data (`experiments/<method>/*.toml`), their runs,
//!   aggregation over seeds and the Markdown / CSV / JSON / SVG outputs.
#![warn(missing_docs)]

pub mod alloc;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod optim;
#[cfg(feature = "png")]
pub mod png;
pub mod record;
pub mod reproduce;
pub mod table;
pub mod trainer;

pub use config::TrainConfig;
pub use error::TrainError;
pub use trainer::{Event, RunOptions, Trained, Trainer};
