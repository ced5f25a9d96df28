//! Typed errors of the models crate.

use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong loading or running a model.
#[derive(Debug, Error)]
pub enum ModelError {
    /// A file is missing, unreadable or malformed.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A config value is missing or unsupported.
    #[error("{}: config key {key}: {reason}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A checkpoint tensor is missing, extra or mis-shaped.
    #[error("{}: tensor {name}: {reason}", path.display())]
    Tensor {
        /// The weights file.
        path: PathBuf,
        /// Tensor name in the checkpoint.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Bad input to a model call (empty prompt, token outside the vocabulary, too long).
    #[error("{0}")]
    Input(String),
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}
