//! Residual add + LayerNorm, fused forward and backward: `y = LN(x + r)·γ + β`.
//!
//! Post-norm transformers (BERT, MiniLM) end each sub-layer with `LayerNorm(h + f(h))`; under
//! burn's autodiff that is an add, a mean, a subtraction, a square, a second mean, a square
//! root, a division, a multiply and an add — and twice as many passes backward — over
//! `[B, T, d]` (2.6 ms fwd + bwd per MiniLM norm at B = 32, T = 64: `examples/train_probe` in
//! peftlab-models). Here it is one pass forward (per row: sum, centred sum of squares, then
//! `x̂ = (z − μ)/√(σ² + ε)` and `y = x̂γ + β`, keeping `x̂` and `1/√(σ² + ε)`) and one backward:
//!
//! `g = ∂L/∂y ⊙ γ`, `∂L/∂z = (g − mean(g) − x̂·mean(g ⊙ x̂)) / √(σ² + ε)`, which is both `∂L/∂x`
//! and `∂L/∂r`.
//!
//! The variance is the biased one (divide by `d`), as burn's and PyTorch's LayerNorm. It
//! applies to f32 on `flex` with `γ`, `β` untracked (frozen); elsewhere it is burn's
//! `module::layer_norm` after the add, equal to f32 rounding (tests: `tests/properties/norm.rs`).
//!
//! [`add_rms_norm`] is the same op for pre-norm decoders (Llama/SmolLM2): RMSNorm
//! `y = z / √(mean(z²) + ε) · γ`, i.e. no centring and no `β`; its backward is the formula above
//! without the `mean(g)` term. Its fallback is burn's `nn::RmsNorm` arithmetic.

use burn::tensor::Tensor;

/// `LayerNorm(x + residual)` over the last dim with `γ: [d]`, `β: [d]`, `eps`; see the module
/// docs. Without `residual`, `LayerNorm(x)`.
///
/// # Panics
/// If the shapes disagree (as burn's ops would).
pub fn add_layer_norm<const D: usize>(
    x: Tensor<D>,
    residual: Option<Tensor<D>>,
    gamma: &Tensor<1>,
    beta: Option<&Tensor<1>>,
    eps: f64,
) -> Tensor<D> {
    if let Some(r) = &residual {
        assert_eq!(x.dims(), r.dims(), "add_layer_norm: residual's shape");
    }
    #[cfg(feature = "flex")]
    if let Some(y) = flex::try_fused(&x, residual.as_ref(), gamma, beta, eps) {
        return y;
    }
    reference(x, residual, gamma, beta, eps)
}

/// `RMSNorm(x + residual)` over the last dim with `γ: [d]` and `eps`; see the module docs.
/// Without `residual`, `RMSNorm(x)`.
///
/// # Panics
/// If the shapes disagree (as burn's ops would).
pub fn add_rms_norm<const D: usize>(
    x: Tensor<D>,
    residual: Option<Tensor<D>>,
    gamma: &Tensor<1>,
    eps: f64,
) -> Tensor<D> {
    if let Some(r) = &residual {
        assert_eq!(x.dims(), r.dims(), "add_rms_norm: residual's shape");
    }
    #[cfg(feature = "flex")]
    if let Some(y) = flex::try_fused_kind(flex::Kind::Rms, &x, residual.as_ref(), gamma, None, eps)
    {
        return y;
    }
    rms_reference(x, residual, gamma, eps)
}

/// `x + residual`, or `x`.
fn with_residual<const D: usize>(x: Tensor<D>, residual: Option<Tensor<D>>) -> Tensor<D> {
    match residual {
        Some(r) => x + r,
        None => x,
    }
}

/// burn's composition of [`add_rms_norm`] (the fallback and the tests' reference): the
/// arithmetic of `burn::nn::RmsNorm`.
pub fn rms_reference<const D: usize>(
    x: Tensor<D>,
    residual: Option<Tensor<D>>,
    gamma: &Tensor<1>,
    eps: f64,
) -> Tensor<D> {
    let z = with_residual(x, residual);
    let rms = (z.clone().square().mean_dim(D - 1) + eps).sqrt();
    (z / rms) * gamma.clone().unsqueeze()
}

/// burn's composition (the fallback and the tests' reference).
pub fn reference<const D: usize>(
    x: Tensor<D>,
    residual: Option<Tensor<D>>,
    gamma: &Tensor<1>,
    beta: Option<&Tensor<1>>,
    eps: f64,
) -> Tensor<D> {
    let z = with_residual(x, residual);
    burn::tensor::module::layer_norm(z, gamma.clone(), beta.cloned(), eps)
}

#[cfg(feature = "flex")]
mod flex {
    use std::sync::Arc;

    use super::*;
    use crate::simd;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::DType;
    use burn_flex::FlexTensor;

    use crate::fastpath::{contiguous, f32s as slice, from_vec, like};
    use rayon::prelude::*;

    const ROWS: usize = 64;

    /// Which normalization: LayerNorm (centred) or RMSNorm.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) enum Kind {
        Layer,
        Rms,
    }

    pub(super) fn try_fused<const D: usize>(
        x: &Tensor<D>,
        residual: Option<&Tensor<D>>,
        gamma: &Tensor<1>,
        beta: Option<&Tensor<1>>,
        eps: f64,
    ) -> Option<Tensor<D>> {
        try_fused_kind(Kind::Layer, x, residual, gamma, beta, eps)
    }

    pub(super) fn try_fused_kind<const D: usize>(
        kind: Kind,
        x: &Tensor<D>,
        residual: Option<&Tensor<D>>,
        gamma: &Tensor<1>,
        beta: Option<&Tensor<1>>,
        eps: f64,
    ) -> Option<Tensor<D>> {
        let f32s = x.dtype() == DType::F32
            && residual.is_none_or(|r| r.dtype() == DType::F32)
            && gamma.dtype() == DType::F32
            && beta.is_none_or(|b| b.dtype() == DType::F32);
        let d = x.dims()[D - 1];
        if !f32s || gamma.dims()[0] != d || beta.is_some_and(|b| b.dims()[0] != d) || d == 0 {
            return None;
        }
        let autodiff = x.device().is_autodiff();
        let param = |p: &Tensor<1>| -> Option<FlexTensor> {
            if autodiff {
                let p = p.clone().try_into_primitive::<Autodiff<Flex>>().ok()?;
                (!p.is_tracked()).then(|| contiguous(&p.into_primitive()))
            } else {
                Some(contiguous(&p.clone().try_into_primitive::<Flex>().ok()?))
            }
        };
        let g = param(gamma)?;
        let b = match beta {
            Some(b) => Some(param(b)?),
            None => None,
        };
        if !autodiff {
            let xf = contiguous(&x.clone().try_into_primitive::<Flex>().ok()?);
            let rf = match residual {
                Some(r) => Some(contiguous(&r.clone().try_into_primitive::<Flex>().ok()?)),
                None => None,
            };
            let (y, _) = forward(kind, &xf, rf.as_ref(), &g, b.as_ref(), eps, false);
            return Some(Tensor::from_primitive::<Flex>(y));
        }
        let xa = x.clone().try_into_primitive::<Autodiff<Flex>>().ok()?;
        let ra = match residual {
            Some(r) => Some(r.clone().try_into_primitive::<Autodiff<Flex>>().ok()?),
            None => None,
        };
        let xf = contiguous(xa.primitive());
        let rf = ra.as_ref().map(|r| contiguous(r.primitive()));
        let run = |keep| forward(kind, &xf, rf.as_ref(), &g, b.as_ref(), eps, keep);
        let out = match &ra {
            Some(ra) => tracked([xa.node(), ra.node()], run),
            None => tracked([xa.node()], run),
        };
        Some(Tensor::from_primitive::<Autodiff<Flex>>(out))
    }

    /// What the backward needs: `x̂`, `1/√(σ² + ε)` per row, `γ`, the kind.
    #[derive(Clone)]
    struct Saved {
        kind: Kind,
        xhat: Arc<Vec<f32>>,
        rstd: Arc<Vec<f32>>,
        gamma: FlexTensor,
        shape: burn::tensor::Shape,
    }

    impl std::fmt::Debug for Saved {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "LayerNormState({} rows)", self.rstd.len())
        }
    }

    /// One block of rows of the forward's inputs: `x` (and the residual `r`), `[rows, d]`
    /// each, and the affine parameters `[d]`.
    #[derive(Clone, Copy)]
    struct Rows<'a> {
        x: &'a [f32],
        r: Option<&'a [f32]>,
        gamma: &'a [f32],
        beta: Option<&'a [f32]>,
    }

    crate::vectorized! {
        /// The forward of a block of rows: `y` `[rows, d]`, `x̂` (when `xhat` is not empty) and
        /// `1/√(σ² + ε)` per row (`rstd`).
        fn forward_rows(
            kind: Kind,
            rows: Rows<'_>,
            eps: f32,
            y: &mut [f32],
            xhat: &mut [f32],
            rstd: &mut [f32],
        ) {
            let d = rows.gamma.len();
            let mut z = vec![0.0f32; d];
            for (i, (yr, sr)) in y.chunks_exact_mut(d).zip(rstd.iter_mut()).enumerate() {
                let xr = &rows.x[i * d..(i + 1) * d];
                match rows.r {
                    Some(rs) => {
                        for ((z, a), b) in z.iter_mut().zip(xr).zip(&rs[i * d..(i + 1) * d]) {
                            *z = a + b;
                        }
                    }
                    None => z.copy_from_slice(xr),
                }
                let mean = match kind {
                    Kind::Layer => simd::sum(&z) / d as f32,
                    Kind::Rms => 0.0,
                };
                let var = simd::sum_by(&z, |v| (v - mean) * (v - mean)) / d as f32;
                let s = 1.0 / (var + eps).sqrt();
                *sr = s;
                for ((y, z), g) in yr.iter_mut().zip(z.iter_mut()).zip(rows.gamma) {
                    *z = (*z - mean) * s;
                    *y = *z * g;
                }
                if let Some(bs) = rows.beta {
                    for (y, b) in yr.iter_mut().zip(bs) {
                        *y += b;
                    }
                }
                if !xhat.is_empty() {
                    xhat[i * d..(i + 1) * d].copy_from_slice(&z);
                }
            }
        }
    }

    crate::vectorized! {
        /// `∂L/∂z` `[rows, d]` of a block of rows from `∂L/∂y` (`dy`) and the saved `(x̂, rstd)`.
        fn backward_rows(
            kind: Kind,
            dy: &[f32],
            saved: (&[f32], &[f32]),
            gamma: &[f32],
            out: &mut [f32],
        ) {
            let (xhat, rstd) = saved;
            let d = gamma.len();
            let mut g = vec![0.0f32; d];
            for (i, o) in out.chunks_exact_mut(d).enumerate() {
                let (dy, xh) = (&dy[i * d..(i + 1) * d], &xhat[i * d..(i + 1) * d]);
                for ((g, dy), gm) in g.iter_mut().zip(dy).zip(gamma) {
                    *g = dy * gm;
                }
                let mg = match kind {
                    Kind::Layer => simd::sum(&g) / d as f32,
                    Kind::Rms => 0.0,
                };
                let mgx = simd::dot(&g, xh) / d as f32;
                let sr = rstd[i];
                for ((o, g), xh) in o.iter_mut().zip(&g).zip(xh) {
                    *o = (g - mg - xh * mgx) * sr;
                }
            }
        }
    }

    fn forward(
        kind: Kind,
        x: &FlexTensor,
        r: Option<&FlexTensor>,
        gamma: &FlexTensor,
        beta: Option<&FlexTensor>,
        eps: f64,
        keep: bool,
    ) -> (FlexTensor, Option<Saved>) {
        let xs = slice(x);
        let rs = r.map(slice);
        let (gs, bs) = (slice(gamma), beta.map(slice));
        let d = gs.len();
        let rows = xs.len() / d;
        let mut y = vec![0.0f32; xs.len()];
        let mut xhat = if keep {
            vec![0.0f32; xs.len()]
        } else {
            Vec::new()
        };
        let mut rstd = vec![0.0f32; rows];
        let eps = eps as f32;
        // (block index, ((output rows, x̂ rows or empty), 1/σ of the rows))
        type Block<'a> = (usize, ((&'a mut [f32], &'a mut [f32]), &'a mut [f32]));
        let body = |(blk, ((yb, xb), rb)): Block<'_>| {
            let (r0, r1) = (blk * ROWS * d, blk * ROWS * d + yb.len());
            let rows = Rows {
                x: &xs[r0..r1],
                r: rs.map(|r| &r[r0..r1]),
                gamma: gs,
                beta: bs,
            };
            forward_rows(kind, rows, eps, yb, xb, rb);
        };
        let chunk = ROWS * d;
        if keep {
            y.par_chunks_mut(chunk)
                .zip(xhat.par_chunks_mut(chunk))
                .zip(rstd.par_chunks_mut(ROWS))
                .enumerate()
                .for_each(body);
        } else {
            y.par_chunks_mut(chunk)
                .zip(rstd.par_chunks_mut(ROWS))
                .enumerate()
                .for_each(|(blk, (yb, rb))| body((blk, ((yb, &mut []), rb))));
        }
        let saved = keep.then(|| Saved {
            kind,
            xhat: Arc::new(xhat),
            rstd: Arc::new(rstd),
            gamma: gamma.clone(),
            shape: x.layout().shape().clone(),
        });
        (like(x, y), saved)
    }

    fn backward(s: &Saved, grad: &FlexTensor) -> FlexTensor {
        let gr = slice(grad);
        let gs = slice(&s.gamma);
        let d = gs.len();
        let mut dz = vec![0.0f32; gr.len()];
        dz.par_chunks_mut(ROWS * d)
            .enumerate()
            .for_each(|(blk, out)| {
                let (r0, r1) = (blk * ROWS * d, blk * ROWS * d + out.len());
                let rstd = &s.rstd[blk * ROWS..blk * ROWS + out.len() / d];
                let saved = (&s.xhat[r0..r1], rstd);
                backward_rows(s.kind, &gr[r0..r1], saved, gs, out);
            });
        from_vec(dz, s.shape.clone())
    }

    /// The backward of the norm over `N` inputs (`x`, or `x` and `r`): each receives `∂L/∂z`.
    #[derive(Debug)]
    struct NormBackward<const N: usize>;

    impl<const N: usize> Backward<Flex, N> for NormBackward<N> {
        type State = Saved;

        fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
            let grad = contiguous(&grads.consume::<Flex>(&ops.node));
            let dz = backward(&ops.state, &grad);
            for n in ops.parents.into_iter().flatten() {
                grads.register::<Flex>(n.id, dz.clone());
            }
        }
    }

    /// Run the op with its backward over the inputs behind `nodes`.
    fn tracked<const N: usize>(
        nodes: [burn::backend::autodiff::ops::NodeGuard; N],
        run: impl Fn(bool) -> (FlexTensor, Option<Saved>),
    ) -> burn::backend::tensor::FloatTensor<Autodiff<Flex>> {
        match NormBackward::<N>
            .prepare::<NoCheckpointing>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (y, saved) = run(true);
                prep.finish(saved.expect("kept"), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(run(false).0),
        }
    }
}
