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

impl ModelError {
    /// A `Config` error for `key` of the config file at `path`.
    pub fn config(path: &std::path::Path, key: &str, reason: impl Into<String>) -> Self {
        Self::Config {
            path: path.to_path_buf(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// Check that `config.json`'s `model_type` is one of `allowed`.
    pub fn check_model_type(
        path: &std::path::Path,
        got: &str,
        allowed: &[&str],
    ) -> Result<(), Self> {
        if allowed.contains(&got) {
            return Ok(());
        }
        let names: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
        Err(Self::config(
            path,
            "model_type",
            format!("{got:?} is not {}", names.join(" or ")),
        ))
    }
}
