//! Typed errors of the data crate.

use std::path::PathBuf;

use thiserror::Error;

/// What can go wrong fetching or reading data.
#[derive(Debug, Error)]
pub enum DataError {
    /// A file is missing, unreadable or malformed as a whole.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// One row (line) of a data file is bad.
    #[error("{}:{line}: {reason}", path.display())]
    Row {
        /// The file.
        path: PathBuf,
        /// 1-based line (or example) number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A download or extracted file does not match its pin.
    #[error("{}: checksum mismatch: expected {expected}, got {got}", path.display())]
    Checksum {
        /// The file checked.
        path: PathBuf,
        /// What the manifest pins.
        expected: String,
        /// What arrived.
        got: String,
    },
    /// The manifest is malformed or names something unknown.
    #[error("manifest: {0}")]
    Manifest(String),
    /// An external tool (python3, pip) is missing or failed.
    #[error("{0}")]
    Tool(String),
}
