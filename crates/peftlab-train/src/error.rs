//! Typed errors of the training crate.

use std::path::PathBuf;

use thiserror::Error;

/// What can go wrong in a run.
#[derive(Debug, Error)]
pub enum TrainError {
    /// A malformed or inconsistent configuration.
    #[error("config {file}: {reason}")]
    Config {
        /// File (or other source) of the config.
        file: String,
        /// What is wrong, naming the key.
        reason: String,
    },
    /// A file that cannot be read or written.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The loss became NaN or infinite.
    #[error("non-finite loss {loss} at optimizer step {step} (epoch {epoch}); the last good checkpoint is kept{}", checkpoint.as_ref().map(|p| format!(" at {}", p.display())).unwrap_or_default())]
    NonFinite {
        /// The loss value.
        loss: f64,
        /// Optimizer step (1-based) whose loss it was.
        step: usize,
        /// Epoch (1-based).
        epoch: usize,
        /// The last good checkpoint, if one was written.
        checkpoint: Option<PathBuf>,
    },
    /// The run stopped on request after `step` with a checkpoint (a simulated kill).
    #[error("stopped after optimizer step {step}; a checkpoint is written")]
    Stopped {
        /// Steps taken.
        step: usize,
    },
    /// From the models crate.
    #[error(transparent)]
    Model(#[from] peftlab_models::ModelError),
    /// From the adapters crate.
    #[error(transparent)]
    Adapter(#[from] peftlab_adapters::AdapterError),
    /// From the data crate.
    #[error(transparent)]
    Data(#[from] peftlab_data::DataError),
    /// From the eval crate.
    #[error(transparent)]
    Eval(#[from] peftlab_eval::EvalError),
    /// Anything else (named).
    #[error("{0}")]
    Other(String),
}
