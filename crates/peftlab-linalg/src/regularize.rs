//! Regularizers and importance scores.
//!
//! - [`orthogonality_penalty`]: `‖A Aᵀ − I‖_F + ‖Bᵀ B − I‖_F` for `A: [r, d_in]`, `B: [d_out, r]`,
//!   the AdaLoRA / TriAdaptLoRA regularizer (papers.md §1.1, §4.5). PEFT's AdaLoRA and the
//!   TriAdaptLoRA code use the plain Frobenius norm ([`OrthNorm::Frobenius`], default); the
//!   AdaLoRA paper writes the squared norm ([`OrthNorm::SquaredFrobenius`]). Differentiable.
//! - [`frobenius_norm`]: `‖X‖_F` with a gradient that stays finite at `X = 0`.
//! - [`normalized_frobenius`] and [`FrobeniusImportance`]: TriAdaptLoRA's importance
//!   `n_k = ‖C_k‖_F / m_k` and score `S_k(t) = n_k(t) − n_k(t_prev)` (§4.3).

use burn::config::Config;
use burn::tensor::Tensor;

use crate::LinalgError;

/// Below this squared norm, [`frobenius_norm`] is linear in `‖X‖²` instead of `√·`, so that its
/// gradient is `0` (not NaN) at `X = 0`. The value differs from the true norm only where
/// `‖X‖_F < 1e-6`.
pub const FROBENIUS_FLOOR_SQ: f64 = 1e-12;

/// Which norm the orthogonality penalty uses.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum OrthNorm {
    /// `‖·‖_F` (PEFT AdaLoRA, TriAdaptLoRA code).
    Frobenius,
    /// `‖·‖_F²` (AdaLoRA paper).
    SquaredFrobenius,
}

/// `‖X‖_F` as a `[1]` tensor, differentiable with a finite gradient everywhere.
///
/// Computed as `q / √max(q, FROBENIUS_FLOOR_SQ)` with `q = Σ x²`: equal to `√q` when
/// `q ≥ FROBENIUS_FLOOR_SQ`; burn's `sqrt` alone would give `0 · ∞ = NaN` gradients at zero.
pub fn frobenius_norm<const D: usize>(x: Tensor<D>) -> Tensor<1> {
    let q = x.square().sum();
    q.clone() / q.clamp_min(FROBENIUS_FLOOR_SQ).sqrt()
}

/// `‖X‖_F²` as a `[1]` tensor.
pub fn frobenius_norm_sq<const D: usize>(x: Tensor<D>) -> Tensor<1> {
    x.square().sum()
}

/// `‖A Aᵀ − I_r‖ + ‖Bᵀ B − I_r‖` for `A: [r, d_in]` and `B: [d_out, r]`, as a `[1]` tensor.
pub fn orthogonality_penalty(
    a: Tensor<2>,
    b: Tensor<2>,
    norm: OrthNorm,
) -> crate::Result<Tensor<1>> {
    let [r, _] = a.dims();
    let [_, rb] = b.dims();
    if r != rb || r == 0 {
        return Err(LinalgError::shape(
            "orthogonality_penalty B",
            format!("[d_out, {r}] (r = rows of A, > 0)"),
            format!("{:?}", b.dims()),
        ));
    }
    let eye = Tensor::<2>::eye(r, &a.device()).cast(a.dtype());
    let aat = a.clone().matmul(a.transpose()) - eye.clone();
    let btb = b.clone().transpose().matmul(b) - eye;
    Ok(match norm {
        OrthNorm::Frobenius => frobenius_norm(aat) + frobenius_norm(btb),
        OrthNorm::SquaredFrobenius => frobenius_norm_sq(aat) + frobenius_norm_sq(btb),
    })
}

/// `n = ‖C‖_F / m` as a `[1]` tensor, for `C: [R, R]` built from `m` blocks (§4.3).
pub fn normalized_frobenius(c: Tensor<2>, num_blocks: usize) -> crate::Result<Tensor<1>> {
    if num_blocks == 0 {
        return Err(LinalgError::invalid(
            "normalized_frobenius num_blocks",
            "must be > 0",
        ));
    }
    Ok(frobenius_norm(c) / num_blocks as f64)
}

/// TriAdaptLoRA's per-matrix importance tracker: `S(t) = n(t) − n(t_prev)` (§4.3).
///
/// Create it with the normalized norm at layer creation; each [`FrobeniusImportance::score`]
/// returns the change since the previous call and stores the new value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrobeniusImportance {
    previous: f64,
}

impl FrobeniusImportance {
    /// Start from the normalized norm `n(t_0)` measured when the layer was created.
    pub fn new(initial: f64) -> Self {
        Self { previous: initial }
    }

    /// The last stored `n`.
    pub fn previous(&self) -> f64 {
        self.previous
    }

    /// `S = current − previous`; stores `current`. Errors on a non-finite `current`.
    pub fn score(&mut self, current: f64) -> crate::Result<f64> {
        if !current.is_finite() {
            return Err(LinalgError::NonFinite {
                what: "normalized Frobenius norm".into(),
                row: 0,
                col: 0,
                value: current,
            });
        }
        let s = current - self.previous;
        self.previous = current;
        Ok(s)
    }
}
