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
    /// No source of an artifact could be fetched.
    #[error(
        "artifact {artifact} could not be fetched{}:\n{}\n  needed by: {}\n  what to do: {remedy}",
        withdrawn.as_ref().map(|w| format!(" (declared withdrawn: {w})")).unwrap_or_default(),
        attempts.iter().map(|a| format!("  - {a}")).collect::<Vec<_>>().join("\n"),
        if needed_by.is_empty() { "nothing listed".to_string() } else { needed_by.join("; ") }
    )]
    Unobtainable {
        /// The artifact's name.
        artifact: String,
        /// What each source answered, in order.
        attempts: Vec<String>,
        /// The tasks, tables and tests that need it.
        needed_by: Vec<String>,
        /// The manifest's withdrawal note, if a maintainer declared the loss.
        withdrawn: Option<String>,
        /// What a user can do.
        remedy: String,
    },
    /// An external tool (python3, pip) is missing or failed.
    #[error("{0}")]
    Tool(String),
}
