//! Softmax cross-entropy per row with label smoothing, fused forward and backward.
//!
//! For logits `x: [N, V]` and targets `c: [N]`, row `i`'s loss is
//!
//! `ℓᵢ = −(1 − ε)·log pᵢ,cᵢ − ε·mean_j log pᵢⱼ`, `log pᵢⱼ = xᵢⱼ − lseᵢ`, `lseᵢ = log Σⱼ exp xᵢⱼ`,
//!
//! and `∂ℓᵢ/∂xᵢⱼ = pᵢⱼ − (1 − ε)·[j = cᵢ] − ε/V`. A language model's head has `V` in the tens of
//! thousands (SmolLM2: 49,152), so burn's composition (`log_softmax`, `gather`, `mean_dim`:
//! several passes over `[N, V]`, each with a full-size intermediate, and as many backward) costs
//! a large share of a decoder step. Here the forward is one pass per row that keeps only
//! `lseᵢ`, and the backward one pass that recomputes `pᵢⱼ = exp(xᵢⱼ − lseᵢ)` from the logits.
//!
//! It applies to f32 logits on `flex` (with or without autodiff) whose targets are all `< V`;
//! elsewhere it is [`reference`], burn's composition, equal to f32 rounding (tests:
//! `tests/properties/xent.rs`). `exp` is [`crate::simd::exp`].

use burn::tensor::{Int, Tensor};

/// Per-row loss `[N]` of `logits: [N, V]` against `targets: [N]` with label smoothing `eps`;
/// see the module docs.
///
/// # Panics
/// If the shapes disagree, or (burn's `gather`) a target is out of range.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>, eps: f64) -> Tensor<1> {
    assert_eq!(
        logits.dims()[0],
        targets.dims()[0],
        "cross_entropy: one target per row"
    );
    #[cfg(feature = "flex")]
    if let Some(loss) = flex::try_fused(&logits, &targets, eps) {
        return loss;
    }
    reference(logits, targets, eps)
}

/// burn's composition of [`cross_entropy`] (the fallback and the tests' reference).
pub fn reference(logits: Tensor<2>, targets: Tensor<1, Int>, eps: f64) -> Tensor<1> {
    let [n, _] = logits.dims();
    let logp = burn::tensor::activation::log_softmax(logits, 1);
    let nll = logp
        .clone()
        .gather(1, targets.reshape([n, 1]))
        .reshape([n])
        .neg();
    if eps > 0.0 {
        let smooth = logp.mean_dim(1).reshape([n]).neg();
        nll.mul_scalar(1.0 - eps) + smooth.mul_scalar(eps)
    } else {
        nll
    }
}

#[cfg(feature = "flex")]
mod flex {
    use std::sync::Arc;

    use super::*;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::DType;
    use burn_flex::FlexTensor;
    use rayon::prelude::*;

    use crate::fastpath::{contiguous, f32s, from_vec, like};
    use crate::simd::{self, exp};

    pub(super) fn try_fused(
        logits: &Tensor<2>,
        targets: &Tensor<1, Int>,
        eps: f64,
    ) -> Option<Tensor<1>> {
        if logits.dtype() != DType::F32 {
            return None;
        }
        let v = logits.dims()[1];
        let c: Vec<usize> = targets
            .clone()
            .try_to_vec_as::<i64>()
            .ok()?
            .into_iter()
            .map(|t| usize::try_from(t).ok().filter(|&t| t < v))
            .collect::<Option<_>>()?;
        let c = Arc::new(c);
        if !logits.device().is_autodiff() {
            let x = contiguous(&logits.clone().try_into_primitive::<Flex>().ok()?);
            return Some(Tensor::from_primitive::<Flex>(forward(&x, &c, eps).0));
        }
        let xa = logits.clone().try_into_primitive::<Autodiff<Flex>>().ok()?;
        let x = contiguous(xa.primitive());
        let out = match XentBackward
            .prepare::<NoCheckpointing>([xa.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (loss, lse) = forward(&x, &c, eps);
                let state = State {
                    x,
                    targets: c,
                    lse: Arc::new(lse),
                    eps,
                };
                prep.finish(state, loss)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(&x, &c, eps).0),
        };
        Some(Tensor::from_primitive::<Autodiff<Flex>>(out))
    }

    /// Rows per parallel task.
    const ROWS: usize = 8;

    crate::vectorized! {
        /// `(m, log Σⱼ exp(xⱼ − m))` of one row, `m` its maximum: `lse = m + log s`, kept apart so
        /// that `xⱼ − lse` is formed as `(xⱼ − m) − log s` without the rounding of a large `lse`.
        fn lse_dispatch(row: &[f32]) -> (f32, f32) {
            let m = simd::max(row);
            let s = simd::sum_by(row, |x| exp(x - m));
            (m, s.ln())
        }
    }

    /// Per-row losses `[N]` and `(m, log s)` per row.
    fn forward(x: &FlexTensor, c: &[usize], eps: f64) -> (FlexTensor, Vec<(f32, f32)>) {
        let xs = f32s(x);
        let n = c.len();
        let v = xs.len().checked_div(n).unwrap_or(0);
        let mut loss = vec![0.0f32; n];
        let mut lses = vec![(0.0f32, 0.0f32); n];
        let eps = eps as f32;
        loss.par_chunks_mut(ROWS)
            .zip(lses.par_chunks_mut(ROWS))
            .enumerate()
            .for_each(|(blk, (lb, sb))| {
                for (j, (l, s)) in lb.iter_mut().zip(sb.iter_mut()).enumerate() {
                    let i = blk * ROWS + j;
                    let row = &xs[i * v..(i + 1) * v];
                    let (m, ls) = lse_dispatch(row);
                    *s = (m, ls);
                    let nll = (m - row[c[i]]) + ls;
                    *l = if eps > 0.0 {
                        let mean = row.iter().map(|&x| x - m).sum::<f32>() / v as f32;
                        (1.0 - eps) * nll + eps * (ls - mean)
                    } else {
                        nll
                    };
                }
            });
        (from_vec(loss, [n]), lses)
    }

    /// `∂L/∂x = up_i · (p − (1 − ε)·onehot(cᵢ) − ε/V)`.
    #[inline(always)]
    fn grad_row(out: &mut [f32], row: &[f32], (m, ls): (f32, f32), c: usize, up: f32, eps: f32) {
        let off = eps / row.len() as f32;
        for (o, &x) in out.iter_mut().zip(row) {
            *o = up * (exp((x - m) - ls) - off);
        }
        out[c] -= up * (1.0 - eps);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn grad_row_avx2(out: &mut [f32], row: &[f32], lse: (f32, f32), c: usize, up: f32, eps: f32) {
        grad_row(out, row, lse, c, up, eps)
    }

    fn backward(s: &State, grad: &FlexTensor) -> FlexTensor {
        let (xs, up) = (f32s(&s.x), f32s(grad));
        let n = s.targets.len();
        let v = xs.len().checked_div(n).unwrap_or(0);
        let eps = s.eps as f32;
        let mut dx = vec![0.0f32; xs.len()];
        #[cfg(target_arch = "x86_64")]
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        dx.par_chunks_mut(v.max(1))
            .enumerate()
            .for_each(|(i, out)| {
                let (row, c, u) = (&xs[i * v..(i + 1) * v], s.targets[i], up[i]);
                if u == 0.0 {
                    out.fill(0.0);
                    return;
                }
                #[cfg(target_arch = "x86_64")]
                if avx2 {
                    // SAFETY: the CPU has AVX2 and FMA (checked above).
                    return unsafe { grad_row_avx2(out, row, s.lse[i], c, u, eps) };
                }
                grad_row(out, row, s.lse[i], c, u, eps)
            });
        like(&s.x, dx)
    }

    #[derive(Clone)]
    struct State {
        x: FlexTensor,
        targets: Arc<Vec<usize>>,
        lse: Arc<Vec<(f32, f32)>>,
        eps: f64,
    }

    impl std::fmt::Debug for State {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "CrossEntropyState({} rows)", self.targets.len())
        }
    }

    #[derive(Debug)]
    struct XentBackward;

    impl Backward<Flex, 1> for XentBackward {
        type State = State;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let grad = contiguous(&grads.consume::<Flex>(&ops.node));
            let [parent] = ops.parents;
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, backward(&ops.state, &grad));
            }
        }
    }
}
