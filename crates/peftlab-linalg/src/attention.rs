//! Multi-head scaled-dot-product attention over interleaved heads, fused forward and backward.
//!
//! `q: [B, t, H·dₕ]`, `k, v: [B, T, KV·dₕ]` hold their heads side by side along the last dim
//! (head `h` is columns `h·dₕ .. (h+1)·dₕ`, as the projections write them); the result is
//! `[B, t, H·dₕ]` in the same layout:
//!
//! `Oₕ = softmax(Qₕ K_gᵀ / √dₕ + bias) V_g`, `g = h / (H / KV)` (grouped-query attention; `KV = H`
//! is plain multi-head attention), with an additive per-key `bias: [B, T]` (0 for a token, a
//! large negative number for padding). [`causal_attention`] also masks the future: query `i`
//! sits at position `T − t + i` (the `T − t` keys before it come from a KV cache) and sees keys
//! `j ≤ T − t + i`; masked weights are exactly 0.
//!
//! burn's version (split heads with `reshape` + `swap_dims`, `module::attention`, merge back)
//! costs 27 ms forward + backward per MiniLM layer at B = 32, T = 64 on 2 cores, mostly copies
//! and per-op bookkeeping (`examples/train_probe` in peftlab-models; docs/performance.md).
//! Here each `(batch, KV head)` pair is one task on rayon's pool that reads its slices in place,
//! runs the `H / KV` query heads of its group, and keeps the softmax `P` for the backward:
//!
//! `dV = Pᵀ dO`, `dP = dO Vᵀ`, `dS = P ⊙ (dP − rowsum(dP ⊙ P)) / √dₕ`, `dQ = dS K`, `dK = dSᵀ Q`,
//! with `dK`, `dV` summed over the group's query heads.
//!
//! It applies to f32 on the `flex` device (with or without autodiff, bias untracked); elsewhere
//! it is burn's composition ([`reference`], [`causal_reference`]), equal to f32 rounding (tests:
//! `tests/properties/attention.rs`). `exp` is [`crate::simd::exp`] (relative error < 2e-7).

use burn::tensor::Tensor;

/// `softmax(Q Kᵀ/√dₕ + bias) V` per head, `q, k, v: [B, T, d]`, `key_bias: [B, T]`; see the
/// module docs.
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
    let spec = Spec::new(&q, &k, key_bias.as_ref(), heads, heads, false);
    #[cfg(feature = "flex")]
    if let Some(out) = flex::try_fused(spec, &q, &k, &v, key_bias.as_ref()) {
        return out;
    }
    let _ = spec;
    reference(q, k, v, key_bias, heads)
}

/// Causal grouped-query attention: `q: [B, t, H·dₕ]`, `k, v: [B, T, KV·dₕ]` (`T ≥ t`; the first
/// `T − t` keys are cached positions), `key_bias: [B, T]` → `[B, t, H·dₕ]`; see the module docs.
///
/// # Panics
/// If the shapes disagree, `kv_heads` does not divide `heads`, or `T < t`.
pub fn causal_attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    key_bias: Option<Tensor<2>>,
    heads: usize,
    kv_heads: usize,
) -> Tensor<3> {
    assert_eq!(
        k.dims(),
        v.dims(),
        "causal_attention: k and v differ in shape"
    );
    let spec = Spec::new(&q, &k, key_bias.as_ref(), heads, kv_heads, true);
    #[cfg(feature = "flex")]
    if let Some(out) = flex::try_fused(spec, &q, &k, &v, key_bias.as_ref()) {
        return out;
    }
    let _ = spec;
    causal_reference(q, k, v, key_bias, heads, kv_heads)
}

/// The shapes of one attention call (checked).
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "flex"), allow(dead_code))]
struct Spec {
    b: usize,
    /// Queries per row.
    tq: usize,
    /// Keys per row.
    tk: usize,
    heads: usize,
    kv: usize,
    dh: usize,
    causal: bool,
}

impl Spec {
    fn new(
        q: &Tensor<3>,
        k: &Tensor<3>,
        key_bias: Option<&Tensor<2>>,
        heads: usize,
        kv: usize,
        causal: bool,
    ) -> Self {
        let [b, tq, dq] = q.dims();
        let [bk, tk, dk] = k.dims();
        assert!(
            heads > 0 && dq.is_multiple_of(heads),
            "attention: {heads} heads do not divide d = {dq}"
        );
        assert!(
            kv > 0 && heads.is_multiple_of(kv),
            "attention: {kv} KV heads do not divide {heads} heads"
        );
        let dh = dq / heads;
        assert_eq!([bk, dk], [b, kv * dh], "attention: k's shape");
        assert!(
            tk >= tq || !causal,
            "attention: {tk} keys for {tq} causal queries"
        );
        if let Some(m) = key_bias {
            assert_eq!(m.dims(), [b, tk], "attention: key_bias's shape");
        }
        Spec {
            b,
            tq,
            tk,
            heads,
            kv,
            dh,
            causal,
        }
    }
}

/// burn's composition of [`multi_head_attention`] (the fallback, and the tests' reference).
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

/// burn's composition of [`causal_attention`]: KV heads repeated to `H` with `expand`, an
/// additive causal bias (`-1e9` on future keys) plus `key_bias`, `module::attention`.
pub fn causal_reference(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    key_bias: Option<Tensor<2>>,
    heads: usize,
    kv_heads: usize,
) -> Tensor<3> {
    let [b, t, d] = q.dims();
    let total = k.dims()[1];
    let dh = d / heads;
    let device = q.device();
    let q = q.reshape([b, t, heads, dh]).swap_dims(1, 2);
    let g = heads / kv_heads;
    let rep = |x: Tensor<3>| {
        x.reshape([b, total, kv_heads, dh])
            .swap_dims(1, 2)
            .reshape([b, kv_heads, 1, total, dh])
            .expand([b, kv_heads, g, total, dh])
            .reshape([b, heads, total, dh])
    };
    let past = total - t;
    let causal: Vec<f32> = (0..t)
        .flat_map(|i| (0..total).map(move |j| if j > past + i { -1e9 } else { 0.0 }))
        .collect();
    let mut bias =
        Tensor::<2>::from_data(burn::tensor::TensorData::new(causal, [t, total]), &device)
            .reshape([1, 1, t, total])
            .expand([b, 1, t, total]);
    if let Some(m) = key_bias {
        bias = bias + m.reshape([b, 1, 1, total]);
    }
    burn::tensor::module::attention(q, rep(k), rep(v), None, Some(bias), Default::default())
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
    use crate::simd::{self, exp};

    fn is_f32<const D: usize>(t: &Tensor<D>) -> bool {
        t.dtype() == DType::F32
    }

    impl Spec {
        /// Width of a query row (`H·dₕ`).
        fn dq(self) -> usize {
            self.heads * self.dh
        }
        /// Width of a key/value row (`KV·dₕ`).
        fn dk(self) -> usize {
            self.kv * self.dh
        }
        /// Query heads per KV head.
        fn group(self) -> usize {
            self.heads / self.kv
        }
        /// Keys query `i` sees.
        fn visible(self, i: usize) -> usize {
            if self.causal {
                self.tk - self.tq + i + 1
            } else {
                self.tk
            }
        }
    }

    pub(super) fn try_fused(
        spec: Spec,
        q: &Tensor<3>,
        k: &Tensor<3>,
        v: &Tensor<3>,
        key_bias: Option<&Tensor<2>>,
    ) -> Option<Tensor<3>> {
        if !(is_f32(q) && is_f32(k) && is_f32(v)) || key_bias.is_some_and(|m| !is_f32(m)) {
            return None;
        }
        let autodiff = q.device().is_autodiff();
        if !autodiff {
            let get = |x: &Tensor<3>| x.clone().try_into_primitive::<Flex>().ok();
            let (q, k, v) = (get(q)?, get(k)?, get(v)?);
            let bias = match key_bias {
                Some(m) => Some(contiguous(&m.clone().try_into_primitive::<Flex>().ok()?)),
                None => None,
            };
            let (q, k, v) = (contiguous(&q), contiguous(&k), contiguous(&v));
            let (out, _) = forward(spec, &q, &k, &v, bias.as_ref(), false);
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
                let (out, p) = forward(spec, &qf, &kf, &vf, bias.as_ref(), true);
                let state = State {
                    spec,
                    q: qf,
                    k: kf,
                    v: vf,
                    p: Arc::new(p),
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(forward(spec, &qf, &kf, &vf, bias.as_ref(), false).0)
            }
        };
        Some(Tensor::from_primitive::<Autodiff<Flex>>(out))
    }

    #[derive(Clone)]
    struct State {
        spec: Spec,
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        p: Arc<Vec<f32>>,
    }

    impl std::fmt::Debug for State {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "AttentionState({:?})", self.spec)
        }
    }

    #[derive(Debug)]
    struct AttentionBackward;

    impl Backward<Flex, 3> for AttentionBackward {
        type State = State;

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let grad = contiguous(&grads.consume::<Flex>(&ops.node));
            let s = ops.state;
            let [gq, gk, gv] = backward(s.spec, &s.q, &s.k, &s.v, &s.p, &grad);
            for (node, g) in ops.parents.into_iter().zip([gq, gk, gv]) {
                if let Some(node) = node {
                    grads.register::<Flex>(node.id, g);
                }
            }
        }
    }

    /// Output `[B, t, H·dₕ]` and, when `keep`, the softmax `P: [B, H, t, T]`.
    fn forward(
        spec: Spec,
        q: &FlexTensor,
        k: &FlexTensor,
        v: &FlexTensor,
        bias: Option<&FlexTensor>,
        keep: bool,
    ) -> (FlexTensor, Vec<f32>) {
        let Spec {
            b, tq, tk, heads, ..
        } = spec;
        let (qs, ks, vs) = (slice(q), slice(k), slice(v));
        let bias = bias.map(slice);
        let mut out = vec![0.0f32; b * tq * spec.dq()];
        let mut p = if keep {
            vec![0.0f32; b * heads * tq * tk]
        } else {
            Vec::new()
        };
        let (op, pp) = (SendPtr(out.as_mut_ptr()), SendPtr(p.as_mut_ptr()));
        (0..b * spec.kv).into_par_iter().for_each(|task| {
            let (bi, g) = (task / spec.kv, task % spec.kv);
            let (op, pp) = (op, pp);
            let row_bias = bias.map(|m| &m[bi * tk..(bi + 1) * tk]);
            // SAFETY: task (bi, g) writes rows bi·t.. of the group's head columns of `out`,
            // and the t×T blocks of `p` of those heads.
            unsafe { group_forward(spec, bi, g, qs, ks, vs, row_bias, op, keep.then_some(pp)) };
        });
        (from_vec(out, [b, tq, spec.dq()]), p)
    }

    /// KV head `g` of batch row `bi` and its query heads: `S = (Qₕ/√dₕ) K_gᵀ + bias`, the
    /// (causal) softmax, and `Oₕ = P V_g`, as small products on the packed GEMM (operands packed
    /// straight from the rows).
    #[allow(clippy::too_many_arguments)]
    unsafe fn group_forward(
        spec: Spec,
        bi: usize,
        g: usize,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        bias: Option<&[f32]>,
        out: SendPtr,
        p: Option<SendPtr>,
    ) {
        let Spec { tq, tk, dh, .. } = spec;
        let (dq, dk) = (spec.dq(), spec.dk());
        let kbase = bi * tk * dk + g * dh;
        // K_gᵀ: [dh, T], element (p, j) = k[kbase + j·dk + p]; the 1/√dₕ folded into it
        let mut kt = PackedMatrix::pack(&k[kbase..], dh, tk, 1, dk);
        kt.scale(1.0 / (dh as f32).sqrt());
        let vp = PackedMatrix::pack(&v[kbase..], tk, dh, dk, 1);
        let mut scratch = Vec::new();
        for h in g * spec.group()..(g + 1) * spec.group() {
            let qbase = bi * tq * dq + h * dh;
            let s: &mut [f32] = match p {
                // SAFETY: this task owns head h's t×T block of `p`.
                Some(pp) => unsafe {
                    std::slice::from_raw_parts_mut(
                        pp.0.add((bi * spec.heads + h) * tq * tk),
                        tq * tk,
                    )
                },
                None => {
                    scratch.resize(tq * tk, 0.0);
                    &mut scratch
                }
            };
            // SAFETY: rows i < t of Q at stride dq lie in `q`; `s` holds t×T.
            unsafe { mm(q[qbase..].as_ptr(), dq, tq, &kt, bias, s.as_mut_ptr(), tk) };
            softmax_rows(spec, s);
            // SAFETY: the caller owns rows bi·t.. × columns h·dh.. of `out` (stride dq).
            unsafe { mm(s.as_ptr(), tk, tq, &vp, None, out.0.add(qbase), dq) };
        }
    }

    /// Softmax of the first `n` entries of `row` in place; the rest (masked keys) set to 0.
    #[inline(always)]
    fn softmax_prefix(row: &mut [f32], n: usize) {
        let (live, dead) = row.split_at_mut(n);
        let m = simd::max(live);
        for x in live.iter_mut() {
            *x = exp(*x - m);
        }
        let inv = 1.0 / simd::sum(live);
        for x in live.iter_mut() {
            *x *= inv;
        }
        dead.fill(0.0);
    }

    crate::vectorized! {
        fn softmax_rows(spec: Spec, s: &mut [f32]) {
            for (i, row) in s.chunks_exact_mut(spec.tk).enumerate() {
                softmax_prefix(row, spec.visible(i));
            }
        }
    }

    crate::vectorized! {
        /// `dS = P ⊙ (dP − ⟨dP_i, P_i⟩)·scale` in place of `dP`, rows of `tk` (0 where `P` is).
        fn softmax_grad(ds: &mut [f32], p: &[f32], tk: usize, scale: f32) {
            for (dsr, pr) in ds.chunks_exact_mut(tk).zip(p.chunks_exact(tk)) {
                let c = simd::dot(dsr, pr);
                for (x, &pij) in dsr.iter_mut().zip(pr) {
                    *x = pij * (*x - c) * scale;
                }
            }
        }
    }

    /// `[dQ, dK, dV]`: `[B, t, H·dₕ]`, `[B, T, KV·dₕ]`, `[B, T, KV·dₕ]`.
    fn backward(
        spec: Spec,
        q: &FlexTensor,
        k: &FlexTensor,
        v: &FlexTensor,
        p: &[f32],
        grad: &FlexTensor,
    ) -> [FlexTensor; 3] {
        let Spec { b, tq, tk, .. } = spec;
        let (qs, ks, vs, gs) = (slice(q), slice(k), slice(v), slice(grad));
        let (nq, nk) = (b * tq * spec.dq(), b * tk * spec.dk());
        let (mut dq, mut dk, mut dv) = (vec![0.0f32; nq], vec![0.0f32; nk], vec![0.0f32; nk]);
        let ptrs = [
            SendPtr(dq.as_mut_ptr()),
            SendPtr(dk.as_mut_ptr()),
            SendPtr(dv.as_mut_ptr()),
        ];
        (0..b * spec.kv).into_par_iter().for_each(|task| {
            let (bi, g) = (task / spec.kv, task % spec.kv);
            // SAFETY: as in the forward, each task writes only its rows × its heads' columns.
            unsafe { group_backward(spec, bi, g, qs, ks, vs, gs, p, ptrs) };
        });
        [
            from_vec(dq, [b, tq, spec.dq()]),
            from_vec(dk, [b, tk, spec.dk()]),
            from_vec(dv, [b, tk, spec.dk()]),
        ]
    }

    /// `m: [r, c]` → `mᵀ: [c, r]`.
    fn transpose(m: &[f32], r: usize, c: usize) -> Vec<f32> {
        let mut mt = vec![0.0f32; r * c];
        for i in 0..r {
            for j in 0..c {
                mt[j * r + i] = m[i * c + j];
            }
        }
        mt
    }

    /// `C[m, n] = A[m, k]·B (+ bias)` on the calling thread, `A` at row stride `lda`, `C` at
    /// `ldc`.
    ///
    /// # Safety
    /// As [`gemm_packed_raw`]: `a` holds `m` rows of `b.k()` at stride `lda`, `c` `m` rows of
    /// `b.n()` at stride `ldc`, written by no one else meanwhile.
    #[allow(clippy::too_many_arguments)]
    unsafe fn mm(
        a: *const f32,
        lda: usize,
        m: usize,
        b: &PackedMatrix,
        bias: Option<&[f32]>,
        c: *mut f32,
        ldc: usize,
    ) {
        // SAFETY: the caller's contract.
        unsafe { gemm_packed_raw(Kernel::detect(), a, lda, m, b, bias, c, ldc, false) }
    }

    /// `acc = A·B` for the first head of a group, `acc += A·B` (through `part`) for the others;
    /// `acc`, `part`: `m × b.n()` contiguous.
    ///
    /// # Safety
    /// `a` holds `m` rows of `b.k()` at stride `lda`.
    unsafe fn mm_sum(
        first: bool,
        a: *const f32,
        lda: usize,
        m: usize,
        b: &PackedMatrix,
        acc: &mut [f32],
        part: &mut [f32],
    ) {
        let n = b.n();
        if first {
            // SAFETY: `acc` holds m × n; the caller vouches for `a`.
            unsafe { mm(a, lda, m, b, None, acc.as_mut_ptr(), n) };
        } else {
            // SAFETY: as above, into `part`.
            unsafe { mm(a, lda, m, b, None, part.as_mut_ptr(), n) };
            acc.iter_mut().zip(&*part).for_each(|(x, y)| *x += y);
        }
    }

    /// KV head `g` of batch row `bi` backward: four small products per query head on the
    /// packed GEMM, `dK`, `dV` summed over the group.
    #[allow(clippy::too_many_arguments)]
    unsafe fn group_backward(
        spec: Spec,
        bi: usize,
        g: usize,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        grad: &[f32],
        p: &[f32],
        out: [SendPtr; 3],
    ) {
        let Spec { tq, tk, dh, .. } = spec;
        let (dq, dk) = (spec.dq(), spec.dk());
        let scale = 1.0 / (dh as f32).sqrt();
        let kbase = bi * tk * dk + g * dh;
        let [dq_out, dk_out, dv_out] = out;
        // SAFETY (all products): operands are scratch buffers or rows inside their slices at
        // their strides; the caller owns rows bi·t.. × this group's columns of each output.
        let vt = PackedMatrix::pack(&v[kbase..], dh, tk, 1, dk); // Vᵀ: [dh, T]
        let kp = PackedMatrix::pack(&k[kbase..], tk, dh, dk, 1); // K: [T, dh]
        // dK, dV of the group: [T, dh] each, summed over its query heads
        let (mut dk_acc, mut dv_acc) = (vec![0.0f32; tk * dh], vec![0.0f32; tk * dh]);
        let mut part = vec![0.0f32; tk * dh];
        let mut ds = vec![0.0f32; tq * tk];
        let heads = g * spec.group()..(g + 1) * spec.group();
        let first = heads.start;
        for h in heads {
            let qbase = bi * tq * dq + h * dh;
            let ph = &p[(bi * spec.heads + h) * tq * tk..(bi * spec.heads + h + 1) * tq * tk];
            // dV += Pᵀ dO
            let go = PackedMatrix::pack(&grad[qbase..], tq, dh, dq, 1); // dO: [t, dh]
            let pt = transpose(ph, tq, tk);
            unsafe { mm_sum(h == first, pt.as_ptr(), tq, tk, &go, &mut dv_acc, &mut part) };
            // dP = dO Vᵀ
            unsafe {
                mm(
                    grad[qbase..].as_ptr(),
                    dq,
                    tq,
                    &vt,
                    None,
                    ds.as_mut_ptr(),
                    tk,
                )
            };
            // dS = P ⊙ (dP − ⟨dP_i, P_i⟩) / √dₕ (0 where P is: masked keys)
            softmax_grad(&mut ds, ph, tk, scale);
            // dQ = dS K
            unsafe { mm(ds.as_ptr(), tk, tq, &kp, None, dq_out.0.add(qbase), dq) };
            // dK += dSᵀ Q
            let dst = transpose(&ds, tq, tk);
            let qp = PackedMatrix::pack(&q[qbase..], tq, dh, dq, 1); // Q: [t, dh]
            unsafe {
                mm_sum(
                    h == first,
                    dst.as_ptr(),
                    tq,
                    tk,
                    &qp,
                    &mut dk_acc,
                    &mut part,
                )
            };
        }
        for j in 0..tk {
            let (src, dst) = (j * dh, kbase + j * dk);
            // SAFETY: row j of this group's columns in dK / dV.
            unsafe {
                std::ptr::copy_nonoverlapping(dk_acc.as_ptr().add(src), dk_out.0.add(dst), dh);
                std::ptr::copy_nonoverlapping(dv_acc.as_ptr().add(src), dv_out.0.add(dst), dh);
            }
        }
    }
}
