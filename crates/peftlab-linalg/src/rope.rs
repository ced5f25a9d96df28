//! Rotary position embedding over interleaved heads, one fused op forward and backward.
//!
//! `x: [B, t, n·dₕ]` holds `n` heads side by side (as a projection writes them) at positions
//! `start .. start + t`. Hugging Face's half-split layout: dimension `i < dₕ/2` of each head
//! pairs with `i + dₕ/2`, turned by the angle `a = p·θ^(−2i/dₕ)`:
//!
//! `y_i = x_i cos a − x_{i+dₕ/2} sin a`, `y_{i+dₕ/2} = x_{i+dₕ/2} cos a + x_i sin a`.
//!
//! The rotation is orthogonal, so the backward turns `∂L/∂y` by `−a`. The angle is computed as
//! transformers does (`inv_freq` in f32, then `p · inv_freq` in f32), so the values equal the
//! decomposed version bit for bit.
//!
//! burn's composition (two slices, a negation, a concatenation, two products and a sum, each
//! with its own backward, around a split-heads copy) is [`reference`]; it is also the fallback
//! off `flex` or off f32 (tests: `tests/properties/rope.rs`).

use burn::tensor::{Tensor, TensorData};

/// `cos a`, `sin a` for positions `start .. start + t` and pair index `i < dₕ/2`, row-major
/// `[t, dₕ/2]`.
fn tables(t: usize, dh: usize, start: usize, theta: f64) -> (Vec<f32>, Vec<f32>) {
    let half = dh / 2;
    let inv: Vec<f32> = (0..half)
        .map(|i| (1.0 / theta.powf((2 * i) as f64 / dh as f64)) as f32)
        .collect();
    let mut cos = Vec::with_capacity(t * half);
    let mut sin = Vec::with_capacity(t * half);
    for p in start..start + t {
        for f in &inv {
            let a = p as f32 * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    (cos, sin)
}

/// RoPE of `x: [B, t, heads·dₕ]` at positions `start..start + t` with base `theta`; see the
/// module docs.
///
/// # Panics
/// If `heads` does not divide the last dim into even head widths.
pub fn rotary(x: Tensor<3>, heads: usize, start: usize, theta: f64) -> Tensor<3> {
    let d = x.dims()[2];
    assert!(
        heads > 0 && d.is_multiple_of(heads) && (d / heads).is_multiple_of(2),
        "rotary: {heads} heads do not split d = {d} into even head widths"
    );
    #[cfg(feature = "flex")]
    if let Some(y) = flex::try_fused(&x, heads, start, theta) {
        return y;
    }
    reference(x, heads, start, theta)
}

/// burn's composition of [`rotary`] (the fallback and the tests' reference).
pub fn reference(x: Tensor<3>, heads: usize, start: usize, theta: f64) -> Tensor<3> {
    let [b, t, d] = x.dims();
    let dh = d / heads;
    let half = dh / 2;
    let device = x.device();
    let (c, s) = tables(t, dh, start, theta);
    let full = |v: Vec<f32>| {
        let v: Vec<f32> = v
            .chunks_exact(half)
            .flat_map(|r| r.iter().chain(r))
            .copied()
            .collect();
        Tensor::<2>::from_data(TensorData::new(v, [t, dh]), &device).reshape([1, t, 1, dh])
    };
    let (cos, sin) = (full(c), full(s));
    let x = x.reshape([b, t, heads, dh]);
    let x1 = x.clone().slice([0..b, 0..t, 0..heads, 0..half]);
    let x2 = x.clone().slice([0..b, 0..t, 0..heads, half..dh]);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    (x * cos + rotated * sin).reshape([b, t, d])
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

    use crate::fastpath::{contiguous, f32s, like};

    /// The angle tables of one call.
    #[derive(Clone)]
    struct Angles {
        t: usize,
        dh: usize,
        cos: Arc<Vec<f32>>,
        sin: Arc<Vec<f32>>,
    }

    impl std::fmt::Debug for Angles {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "RopeAngles(t = {}, dh = {})", self.t, self.dh)
        }
    }

    pub(super) fn try_fused(
        x: &Tensor<3>,
        heads: usize,
        start: usize,
        theta: f64,
    ) -> Option<Tensor<3>> {
        if x.dtype() != DType::F32 {
            return None;
        }
        let [_, t, d] = x.dims();
        let dh = d / heads;
        let (cos, sin) = tables(t, dh, start, theta);
        let angles = Angles {
            t,
            dh,
            cos: Arc::new(cos),
            sin: Arc::new(sin),
        };
        if !x.device().is_autodiff() {
            let xf = contiguous(&x.clone().try_into_primitive::<Flex>().ok()?);
            return Some(Tensor::from_primitive::<Flex>(turn(&angles, &xf, 1.0)));
        }
        let xa = x.clone().try_into_primitive::<Autodiff<Flex>>().ok()?;
        let xf = contiguous(xa.primitive());
        let out = match RopeBackward
            .prepare::<NoCheckpointing>([xa.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = turn(&angles, &xf, 1.0);
                prep.finish(angles, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(turn(&angles, &xf, 1.0)),
        };
        Some(Tensor::from_primitive::<Autodiff<Flex>>(out))
    }

    /// Turn every head of `x` by `sign · a` (`sign = −1`: the inverse rotation).
    fn turn(a: &Angles, x: &FlexTensor, sign: f32) -> FlexTensor {
        let xs = f32s(x);
        let (t, dh) = (a.t, a.dh);
        let half = dh / 2;
        let d = x.layout().shape()[2];
        let mut y = vec![0.0f32; xs.len()];
        y.par_chunks_mut(t * d)
            .zip(xs.par_chunks(t * d))
            .for_each(|(yb, xb)| {
                for (pos, (yr, xr)) in yb.chunks_exact_mut(d).zip(xb.chunks_exact(d)).enumerate() {
                    let (c, s) = (
                        &a.cos[pos * half..(pos + 1) * half],
                        &a.sin[pos * half..(pos + 1) * half],
                    );
                    for (yh, xh) in yr.chunks_exact_mut(dh).zip(xr.chunks_exact(dh)) {
                        let (x1, x2) = xh.split_at(half);
                        let (y1, y2) = yh.split_at_mut(half);
                        for i in 0..half {
                            let si = sign * s[i];
                            y1[i] = x1[i] * c[i] - x2[i] * si;
                            y2[i] = x2[i] * c[i] + x1[i] * si;
                        }
                    }
                }
            });
        like(x, y)
    }

    #[derive(Debug)]
    struct RopeBackward;

    impl Backward<Flex, 1> for RopeBackward {
        type State = Angles;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let grad = contiguous(&grads.consume::<Flex>(&ops.node));
            let [parent] = ops.parents;
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, turn(&ops.state, &grad, -1.0));
            }
        }
    }
}
