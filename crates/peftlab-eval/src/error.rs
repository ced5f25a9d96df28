//! Typed errors of the eval crate.

use thiserror::Error;

/// What can go wrong computing a metric.
#[derive(Debug, Error, PartialEq)]
pub enum EvalError {
    /// Predictions and labels (or hypotheses and references) differ in length.
    #[error("{what}: {left} predictions/hypotheses but {right} labels/references")]
    LengthMismatch {
        /// The metric.
        what: &'static str,
        /// Number of predictions or hypotheses.
        left: usize,
        /// Number of labels or reference sets.
        right: usize,
    },
    /// No items to score.
    #[error("{0}: nothing to score (empty input)")]
    Empty(&'static str),
    /// A value the metric cannot take (NaN score, unknown task or metric, …).
    #[error("{0}")]
    Invalid(String),
}

impl EvalError {
    /// `Ok` when `left == right > 0`; else [`EvalError::LengthMismatch`] or
    /// [`EvalError::Empty`] for metric `what` — every metric's first check.
    pub fn check_lengths(what: &'static str, left: usize, right: usize) -> Result<(), EvalError> {
        if left != right {
            return Err(EvalError::LengthMismatch { what, left, right });
        }
        if left == 0 {
            return Err(EvalError::Empty(what));
        }
        Ok(())
    }
}
