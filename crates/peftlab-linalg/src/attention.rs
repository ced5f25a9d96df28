//! Multi-head scaled-dot-product attention over interleaved heads, fused forward and backward.
//!
//! `q, k, v: [B, T, d]` hold `heads` heads side by side along `d` (head `h` is columns
//! `h·dₕ .. (h+1)·dₕ`, as the projections write them); the result is `[B, T, d]` in the same
//! layout:
//!
//! `Oₕ = softmax(Qₕ Kₕᵀ / √dₕ + bias) Vₕ`, with an additive per-key `bias: [B, T]` (0 for a
//! token, a large negative number for padding).
//!
//! burn's version (split heads with `reshape` + `swap_dims`, `module::attention`, merge back)
//! costs 27 ms forward + backward per MiniLM layer at B = 32, T = 64 on 2 cores, mostly copies
//! and per-op bookkeeping (`examples/train_probe` in peftlab-models; docs/performance.md).
//! Here each `(batch, head)` pair is one task on rayon's pool that reads its slices in place
//! and keeps the softmax `P` for the backward:
//!
//! `dV = Pᵀ dO`, `dP = dO Vᵀ`, `dS = P ⊙ (dP − rowsum(dP ⊙ P)) / √dₕ`, `dQ = dS K`, `dK = dSᵀ Q`.
//!
//! It applies to f32 on the `flex` device (with or without autodiff, bias untracked); elsewhere
//! [`multi_head_attention`] is burn's composition, equal to f32 rounding (tests:
//! `tests/properties/attention.rs`). `exp` is [`crate::simd::exp`] (relative error < 2e-7).

use burn::tensor::Tensor;

/// `softmax(Q Kᵀ/√dₕ + bias) V` per head; see the module docs. `key_bias: [B, T]`.
///
/// # Panics
/// If the shapes disagree or `heads` does not divide `d` (as burn's ops would).
pub fn multi_head_attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    key_bias: Option<Tensor<2>>,
    heads: usize,
) -> Tensor<3> {
    let [b, t, d] = q.dims();
    assert!(
        heads > 0 && d % heads == 0,
        "multi_head_attention: {heads} heads do not divide d = {d}"
    );
    assert_eq!(k.dims(), [b, t, d], "multi_head_attention: k's shape");
    assert_eq!(v.dims(), [b, t, d], "multi_head_attention: v's shape");
    if let Some(bias) = &key_bias {
        assert_eq!(
            bias.dims(),
            [b, t],
            "multi_head_attention: key_bias's shape"
        );
    }
    #[cfg(feature = "flex")]
    if let Some(out) = flex::try_fused(&q, &k, &v, key_bias.as_ref(), heads) {
        return out;
    }
    reference(q, k, v, key_bias, heads)
}

/// burn's composition of the same attention (the fallback, and the tests' reference).
pub fn reference(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    key_bias: Option<Tensor<2>>,
    heads: usize,
) -> Tensor<3> {
    let [b, t, d] = q.dims();
    let dh = d / heads;
    let split = |x: Tensor<3>| x.reshape([b, t, heads, dh]).swap_dims(1, 2);
    let bias = key_bias.map(|m| m.reshape([b, 1, 1, t]).expand([b, 1, t, t]));
    burn::tensor::module::attention(split(q), split(k), split(v), None, bias, Default::default())
        .swap_dims(1, 2)
        .reshape([b, t, d])
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
    use burn_flex::FlexTensor;
    use rayon::prelude::*;

    use burn::tensor::DType;

    use crate::fastpath::{contiguous, f32s as slice, from_vec};
    use crate::gemm::{Kernel, PackedMatrix, SendPtr, gemm_packed_raw};
    use crate::simd::exp;

    fn is_f32<const D: usize>(t: &Tensor<D>) -> bool {
        t.dtype() == DType::F32
    }

    #[derive(Clone, Copy)]
    struct Dims {
        b: usize,
        t: usize,
        d: usize,
        heads: usize,
    }

    impl Dims {
        fn dh(self) -> usize {
            self.d / self.heads
        }
    }

    pub(super) fn try_fused(
        q: &Tensor<3>,
        k: &Tensor<3>,
        v: &Tensor<3>,
        key_bias: Option<&Tensor<2>>,
        heads: usize,
    ) -> Option<Tensor<3>> {
        if !(is_f32(q) && is_f32(k) && is_f32(v)) || key_bias.is_some_and(|m| !is_f32(m)) {
            return None;
        }
        let [b, t, d] = q.dims();
        let dims = Dims { b, t, d, heads };
        let autodiff = q.device().is_autodiff();
        if !autodiff {
            let get = |x: &Tensor<3>| x.clone().try_into_primitive::<Flex>().ok();
            let (q, k, v) = (get(q)?, get(k)?, get(v)?);
            let bias = match key_bias {
                Some(m) => Some(contiguous(&m.clone().try_into_primitive::<Flex>().ok()?)),
                None => None,
            };
            let (q, k, v) = (contiguous(&q), contiguous(&k), contiguous(&v));
            let (out, _) = forward(dims, &q, &k, &v, bias.as_ref(), false);
            return Some(Tensor::from_primitive::<Flex>(out));
        }
        let get = |x: &Tensor<3>| x.clone().try_into_primitive::<Autodiff<Flex>>().ok();
        let (qa, ka, va) = (get(q)?, get(k)?, get(v)?);
        let bias = match key_bias {
            Some(m) => {
                let m = m.clone().try_into_primitive::<Autodiff<Flex>>().ok()?;
                if m.is_tracked() {
                    return None;
                }
                Some(contiguous(&m.into_primitive()))
            }
            None => None,
        };
        let (qf, kf, vf) = (
            contiguous(qa.primitive()),
            contiguous(ka.primitive()),
            contiguous(va.primitive()),
        );
        let out = match AttentionBackward
            .prepare::<NoCheckpointing>([qa.node(), ka.node(), va.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, p) = forward(dims, &qf, &kf, &vf, bias.as_ref(), true);
                let state = State {
                    dims,
                    q: qf,
                    k: kf,
                    v: vf,
                    p: Arc::new(p),
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(forward(dims, &qf, &kf, &vf, bias.as_ref(), false).0)
            }
        };
        Some(Tensor::from_primitive::<Autodiff<Flex>>(out))
    }

    #[derive(Clone)]
    struct State {
        dims: Dims,
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        p: Arc<Vec<f32>>,
    }

    impl std::fmt::Debug for State {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let Dims { b, t, d, heads } = self.dims;
            write!(f, "AttentionState([{b}, {t}, {d}], {heads} heads)")
        }
    }

    #[derive(Debug)]
    struct AttentionBackward;

    impl Backward<Flex, 3> for AttentionBackward {
        type State = State;

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let grad = contiguous(&grads.consume::<Flex>(&ops.node));
            let s = ops.state;
            let [gq, gk, gv] = backward(s.dims, &s.q, &s.k, &s.v, &s.p, &grad);
            for (node, g) in ops.parents.into_iter().zip([gq, gk, gv]) {
                if let Some(node) = node {
                    grads.register::<Flex>(node.id, g);
                }
            }
        }
    }

    fn tensor(v: Vec<f32>, dims: Dims) -> FlexTensor {
        from_vec(v, [dims.b, dims.t, dims.d])
    }

    /// Output `[B, T, d]` and, when `keep`, the softmax `P: [B, heads, T, T]`.
    fn forward(
        dims: Dims,
        q: &FlexTensor,
        k: &FlexTensor,
        v: &FlexTensor,
        bias: Option<&FlexTensor>,
        keep: bool,
    ) -> (FlexTensor, Vec<f32>) {
        let Dims { b, t, d, heads } = dims;
        let (qs, ks, vs) = (slice(q), slice(k), slice(v));
        let bias = bias.map(slice);
        let mut out = vec![0.0f32; b * t * d];
        let mut p = if keep {
            vec![0.0f32; b * heads * t * t]
        } else {
            Vec::new()
        };
        let (op, pp) = (SendPtr(out.as_mut_ptr()), SendPtr(p.as_mut_ptr()));
        (0..b * heads).into_par_iter().for_each(|task| {
            let (bi, h) = (task / heads, task % heads);
            let (op, pp) = (op, pp);
            let row_bias = bias.map(|m| &m[bi * t..(bi + 1) * t]);
            // SAFETY: task (bi, h) writes rows bi·t.. of head h's columns of `out`, and its own
            // t×t block of `p`.
            let p_block = keep
                .then(|| unsafe { std::slice::from_raw_parts_mut(pp.0.add(task * t * t), t * t) });
            unsafe {
                head_forward(dims, bi, h, qs, ks, vs, row_bias, op.0, p_block);
            }
        });
        (tensor(out, dims), p)
    }

    /// Head `h` of batch `bi`: `S = (Qₕ/√dₕ) Kₕᵀ + bias` and `Oₕ = softmax(S) Vₕ` as two small
    /// products on the packed GEMM (operands packed straight from the `[B, T, d]` rows),
    /// the softmax vectorized in between.
    #[allow(clippy::too_many_arguments)]
    unsafe fn head_forward(
        dims: Dims,
        bi: usize,
        h: usize,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        bias: Option<&[f32]>,
        out: *mut f32,
        p_block: Option<&mut [f32]>,
    ) {
        let Dims { t, d, .. } = dims;
        let dh = dims.dh();
        let base = bi * t * d + h * dh;
        let kernel = Kernel::detect();
        let mut scratch = Vec::new();
        let s: &mut [f32] = match p_block {
            Some(pb) => pb,
            None => {
                scratch.resize(t * t, 0.0);
                &mut scratch
            }
        };
        // Kᵀ: [dh, t], element (p, j) = k[base + j·d + p]; the 1/√dₕ folded into it
        let mut kt = PackedMatrix::pack(&k[base..], dh, t, 1, d);
        kt.scale(1.0 / (dh as f32).sqrt());
        // SAFETY: rows i < t of Q at stride d lie in `q`; `s` holds t×t.
        unsafe {
            gemm_packed_raw(
                kernel,
                q[base..].as_ptr(),
                d,
                t,
                &kt,
                bias,
                s.as_mut_ptr(),
                t,
                false,
            )
        };
        softmax_rows(s, t);
        let vp = PackedMatrix::pack(&v[base..], t, dh, d, 1);
        // SAFETY: the caller owns rows bi·t.. × columns h·dh.. of `out` (stride d).
        unsafe { gemm_packed_raw(kernel, s.as_ptr(), t, t, &vp, None, out.add(base), d, false) };
    }

    /// Softmax of each length-`t` row of `s`, in place (exp: [`crate::simd::exp`]).
    #[inline(always)]
    fn softmax_rows_body(s: &mut [f32], t: usize) {
        for row in s.chunks_exact_mut(t) {
            let m = row.iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x));
            let mut sum = 0.0f32;
            for x in row.iter_mut() {
                *x = exp(*x - m);
                sum += *x;
            }
            let inv = 1.0 / sum;
            for x in row.iter_mut() {
                *x *= inv;
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn softmax_rows_avx512(s: &mut [f32], t: usize) {
        softmax_rows_body(s, t);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn softmax_rows_avx2(s: &mut [f32], t: usize) {
        softmax_rows_body(s, t);
    }

    fn softmax_rows(s: &mut [f32], t: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F (checked just above).
                return unsafe { softmax_rows_avx512(s, t) };
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU has AVX2 and FMA (checked just above).
                return unsafe { softmax_rows_avx2(s, t) };
            }
        }
        softmax_rows_body(s, t)
    }

    /// `[dQ, dK, dV]`, each `[B, T, d]`.
    fn backward(
        dims: Dims,
        q: &FlexTensor,
        k: &FlexTensor,
        v: &FlexTensor,
        p: &[f32],
        grad: &FlexTensor,
    ) -> [FlexTensor; 3] {
        let Dims { b, t, d, heads } = dims;
        let (qs, ks, vs, gs) = (slice(q), slice(k), slice(v), slice(grad));
        let n = b * t * d;
        let (mut dq, mut dk, mut dv) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
        let ptrs = [
            SendPtr(dq.as_mut_ptr()),
            SendPtr(dk.as_mut_ptr()),
            SendPtr(dv.as_mut_ptr()),
        ];
        (0..b * heads).into_par_iter().for_each(|task| {
            let (bi, h) = (task / heads, task % heads);
            let pb = &p[task * t * t..(task + 1) * t * t];
            // SAFETY: as in the forward, each task writes only its rows × head columns.
            unsafe { head_backward(dims, bi, h, qs, ks, vs, gs, pb, ptrs) };
        });
        [tensor(dq, dims), tensor(dk, dims), tensor(dv, dims)]
    }

    /// Head `h` of batch `bi` backward: four small products on the packed GEMM.
    #[allow(clippy::too_many_arguments)]
    unsafe fn head_backward(
        dims: Dims,
        bi: usize,
        h: usize,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        g: &[f32],
        p: &[f32],
        out: [SendPtr; 3],
    ) {
        let Dims { t, d, .. } = dims;
        let dh = dims.dh();
        let scale = 1.0 / (dh as f32).sqrt();
        let base = bi * t * d + h * dh;
        let kernel = Kernel::detect();
        let transpose = |m: &[f32]| {
            let mut mt = vec![0.0f32; t * t];
            for i in 0..t {
                for j in 0..t {
                    mt[j * t + i] = m[i * t + j];
                }
            }
            mt
        };
        let rows = |x: &[f32]| PackedMatrix::pack(&x[base..], t, dh, d, 1); // [t, dh]
        let [dq, dk, dv] = out;
        // SAFETY (all products): operands are t×t scratch or rows of [B, T, d] at stride d
        // inside their slices; the caller owns rows bi·t.. × columns h·dh.. of each output.
        // dV = Pᵀ dO
        let pt = transpose(p);
        unsafe {
            gemm_packed_raw(
                kernel,
                pt.as_ptr(),
                t,
                t,
                &rows(g),
                None,
                dv.0.add(base),
                d,
                false,
            )
        };
        // dP = dO Vᵀ
        let vt = PackedMatrix::pack(&v[base..], dh, t, 1, d);
        let mut ds = vec![0.0f32; t * t];
        unsafe {
            gemm_packed_raw(
                kernel,
                g[base..].as_ptr(),
                d,
                t,
                &vt,
                None,
                ds.as_mut_ptr(),
                t,
                false,
            )
        };
        // dS = P ⊙ (dP − ⟨dP_i, P_i⟩) / √dₕ
        for (dsr, pr) in ds.chunks_exact_mut(t).zip(p.chunks_exact(t)) {
            let c: f32 = dsr.iter().zip(pr).map(|(a, b)| a * b).sum();
            for (x, &pij) in dsr.iter_mut().zip(pr) {
                *x = pij * (*x - c) * scale;
            }
        }
        // dQ = dS K, dK = dSᵀ Q
        unsafe {
            gemm_packed_raw(
                kernel,
                ds.as_ptr(),
                t,
                t,
                &rows(k),
                None,
                dq.0.add(base),
                d,
                false,
            )
        };
        let dst = transpose(&ds);
        unsafe {
            gemm_packed_raw(
                kernel,
                dst.as_ptr(),
                t,
                t,
                &rows(q),
                None,
                dk.0.add(base),
                d,
                false,
            )
        };
    }
}
