//! Typed errors of the adapters crate.

use thiserror::Error;

/// Everything that can go wrong when attaching, merging, saving or loading adapters.
#[derive(Debug, Error)]
pub enum AdapterError {
    /// A target entry (list item or regex) matched no module. `available` lists the adaptable
    /// module paths of the model.
    #[error("target_modules entry {entry:?} matches no module (adaptable modules: {})", available.join(", "))]
    TargetNotFound {
        /// The entry as written in the config.
        entry: String,
        /// Every adaptable module path.
        available: Vec<String>,
    },
    /// A configuration value is invalid; `key` names it.
    #[error("config key {key}: {reason}")]
    Config {
        /// The offending key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Merging would write non-finite values into a weight (`safe` merge).
    #[error("{module}: merge refused, the merged weight has a non-finite value")]
    NonFiniteMerge {
        /// Module path.
        module: String,
    },
    /// The operation needs the opposite merge state.
    #[error("{module}: {reason}")]
    MergeState {
        /// Module path.
        module: String,
        /// Why.
        reason: String,
    },
    /// The method cannot be merged into the base weight.
    #[error("{method} adapters cannot be merged: {reason}")]
    NotMergeable {
        /// Method name.
        method: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A tensor has the wrong shape.
    #[error("{what}: expected shape {expected}, got {got}")]
    Shape {
        /// Which tensor.
        what: String,
        /// Expected shape.
        expected: String,
        /// Actual shape.
        got: String,
    },
    /// A file could not be read, written or parsed.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// An error from the math crate.
    #[error(transparent)]
    Linalg(#[from] peftlab_linalg::LinalgError),
}
