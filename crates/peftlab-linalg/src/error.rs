//! Typed errors for every fallible operation of the crate.

use thiserror::Error;

/// Result alias used throughout `peftlab-linalg`.
pub type Result<T> = std::result::Result<T, LinalgError>;

/// Everything that can go wrong in `peftlab-linalg`. Each variant names the operand
/// (`what`) so that a caller's error message says which matrix was bad.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum LinalgError {
    /// A matrix contained NaN or ±inf.
    #[error("{what}: non-finite value {value} at ({row}, {col})")]
    NonFinite {
        /// Name of the operand.
        what: String,
        /// Row of the first offending entry.
        row: usize,
        /// Column of the first offending entry.
        col: usize,
        /// The offending value (printed as f64).
        value: f64,
    },
    /// A matrix had a zero dimension where the operation needs at least one row and column.
    #[error("{what}: empty matrix of shape {rows}x{cols}")]
    Empty {
        /// Name of the operand.
        what: String,
        /// Number of rows.
        rows: usize,
        /// Number of columns.
        cols: usize,
    },
    /// Shapes do not fit the operation.
    #[error("{what}: expected shape {expected}, got {got}")]
    Shape {
        /// Name of the operand.
        what: String,
        /// What the operation expected, in words (e.g. `"[8, 8]"` or `"square"`).
        expected: String,
        /// What it received.
        got: String,
    },
    /// A requested rank exceeds what the matrix can provide, or is zero where it must not be.
    #[error("{what}: rank {rank} out of range 1..={max}")]
    Rank {
        /// Name of the operand.
        what: String,
        /// Requested rank.
        rank: usize,
        /// Largest admissible rank.
        max: usize,
    },
    /// A matrix that must be symmetric is not (relative asymmetry above the tolerance).
    #[error("{what}: not symmetric (max |a_ij - a_ji| = {max_asym:e} > tol {tol:e})")]
    NotSymmetric {
        /// Name of the operand.
        what: String,
        /// Largest absolute asymmetry found.
        max_asym: f64,
        /// Tolerance used.
        tol: f64,
    },
    /// The iterative decomposition did not converge.
    #[error("{what}: {algorithm} did not converge")]
    NoConvergence {
        /// Name of the operand.
        what: String,
        /// Which algorithm failed (`"svd"`, `"eigh"`).
        algorithm: &'static str,
    },
    /// The tensor's element type is not supported by the operation.
    #[error("{what}: unsupported dtype {dtype}")]
    DType {
        /// Name of the operand.
        what: String,
        /// The dtype found, as burn prints it.
        dtype: String,
    },
    /// Reading a tensor back from the device failed.
    #[error("{what}: could not read tensor data: {reason}")]
    Read {
        /// Name of the operand.
        what: String,
        /// The backend's message.
        reason: String,
    },
    /// A matrix is singular where the operation needs it invertible.
    #[error("{what}: matrix is singular (pivot {pivot:e} at step {step})")]
    Singular {
        /// Name of the operand.
        what: String,
        /// Step at which the tiny pivot appeared.
        step: usize,
        /// The pivot value.
        pivot: f64,
    },
    /// An argument is outside its domain (for example a Givens pair with `i == j`).
    #[error("{what}: {reason}")]
    InvalidArgument {
        /// Name of the argument.
        what: String,
        /// Why it is invalid.
        reason: String,
    },
}

impl LinalgError {
    /// Shorthand for [`LinalgError::Shape`].
    pub fn shape(what: &str, expected: impl Into<String>, got: impl Into<String>) -> Self {
        Self::Shape {
            what: what.to_string(),
            expected: expected.into(),
            got: got.into(),
        }
    }

    /// Shorthand for [`LinalgError::InvalidArgument`].
    pub fn invalid(what: &str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            what: what.to_string(),
            reason: reason.into(),
        }
    }
}
