//! Dropout on the CPU fast path: the mask from a counter-based hash, never stored.
//!
//! burn's `Dropout` draws a Bernoulli tensor element by element from its ChaCha RNG and then
//! multiplies twice; with `lora_dropout = 0.1` on every adapter input that was 21 % of a
//! cpu-profile MiniLM LoRA run (`perf record` of `peftlab train`, docs/performance.md). Here one
//! 48-bit seed is drawn from the device's RNG per call — so the trainer's per-batch
//! `device.seed(…)` still decides every mask, and runs stay reproducible — and element `i` is
//! kept iff `fmix32(fmix32(i ⊕ s₁) ⊕ s₂) >> 8 < (1 − p)·2²⁴` (MurmurHash3's finalizer, SIMD on
//! AVX-512/AVX2). Kept elements are scaled by `1/(1 − p)`, as burn's. The backward recomputes
//! the mask from the seed: `∂L/∂x = ∂L/∂y ⊙ mask/(1 − p)`, no mask tensor is kept.
//!
//! Same semantics as burn's `Dropout::forward` (identity when the layer is not training, off
//! autodiff, or `p = 0`); on anything but f32 flex under burn's default checkpointing it *is*
//! burn's. The masks differ from burn's RNG stream, so a run is reproducible against itself, not
//! bit for bit against a run made before this path existed (docs/performance.md lists the three
//! retrained records).

use burn::nn::Dropout;
use burn::tensor::Tensor;

/// `layer.forward(x)` with the fast mask where it applies (module docs).
pub fn forward<const D: usize>(layer: &Dropout, x: Tensor<D>) -> Tensor<D> {
    if !layer.training.is_enabled() || !x.device().is_autodiff() || layer.prob == 0.0 {
        return x;
    }
    #[cfg(feature = "flex")]
    if x.dtype() == burn::tensor::DType::F32
        && let Some(y) = flex::try_dropout(&x, layer.prob)
    {
        return y;
    }
    layer.forward(x)
}

/// Whether element `index` is kept under `seed` with keep probability `keep` (the mask the fast
/// path applies; exposed for tests).
pub fn kept(seed: u64, index: usize, keep: f64) -> bool {
    keep_bits(seed, index as u32) < threshold(keep)
}

fn threshold(keep: f64) -> u32 {
    (keep * (1u32 << 24) as f64).round() as u32
}

#[inline(always)]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[inline(always)]
fn keep_bits(seed: u64, i: u32) -> u32 {
    fmix32(fmix32(i ^ seed as u32) ^ (seed >> 32) as u32) >> 8
}

crate::vectorized! {
    /// `out[j] = x[j]·scale` where element `offset + j` is kept, else 0.
    fn apply_rows(x: &[f32], out: &mut [f32], offset: usize, seed: u64, thr: u32, scale: f32) {
        for (j, (o, &v)) in out.iter_mut().zip(x).enumerate() {
            let keep = keep_bits(seed, (offset + j) as u32) < thr;
            *o = if keep { v * scale } else { 0.0 };
        }
    }
}

/// The masked, scaled copy of `x` (element `i` of `x` is element `i` of the mask), on both cores.
pub fn apply_slice(x: &[f32], seed: u64, keep: f64) -> Vec<f32> {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 15;
    let (thr, scale) = (threshold(keep), (1.0 / keep) as f32);
    let mut out = vec![0.0f32; x.len()];
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .enumerate()
        .for_each(|(c, (o, x))| {
            let offset = c * CHUNK;
            apply_rows(x, o, offset, seed, thr, scale)
        });
    out
}

#[cfg(feature = "flex")]
mod flex {
    use super::*;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::Distribution;
    use burn_flex::FlexTensor;

    use crate::fastpath::{contiguous, f32s, like};

    /// One 48-bit seed from the device's RNG (what `device.seed(…)` set).
    fn draw_seed(device: &burn::tensor::Device) -> u64 {
        let v: Vec<f32> = Tensor::<1>::random([2], Distribution::Uniform(0.0, 1.0), device)
            .try_to_vec_as::<f32>()
            .unwrap_or_default();
        let bits = |x: f32| ((x.clamp(0.0, 1.0) * (1u32 << 24) as f32) as u64) & 0xff_ffff;
        bits(v.first().copied().unwrap_or(0.0)) | (bits(v.get(1).copied().unwrap_or(0.0)) << 24)
    }

    fn masked(x: &FlexTensor, seed: u64, keep: f64) -> FlexTensor {
        let x = contiguous(x);
        like(&x, apply_slice(f32s(&x), seed, keep))
    }

    #[derive(Debug)]
    struct DropoutBackward;

    impl Backward<Flex, 1> for DropoutBackward {
        /// `(seed, keep probability)`: the mask is recomputed, not stored.
        type State = (u64, f64);

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let (seed, keep) = ops.state;
            unary::<Flex, _>(ops.parents, ops.node, grads, |g| masked(&g, seed, keep));
        }
    }

    pub(super) fn try_dropout<const D: usize>(x: &Tensor<D>, p: f64) -> Option<Tensor<D>> {
        let xa = x.clone().try_into_primitive::<Autodiff<Flex>>().ok()?;
        let keep = 1.0 - p;
        let seed = draw_seed(&x.device());
        let out = match DropoutBackward
            .prepare::<NoCheckpointing>([xa.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((seed, keep), masked(xa.primitive(), seed, keep)),
            OpsKind::UnTracked(prep) => prep.finish(masked(xa.primitive(), seed, keep)),
        };
        Some(Tensor::from_primitive::<Autodiff<Flex>>(out))
    }
}
