//! `y = x·Wᵀ` where one side of `W` is a rank: the LoRA-family factor products.
//!
//! An adapter's forward is `x·Aᵀ` (`A: [r, d_in]`) then `u·Bᵀ` (`B: [d_out, r]`), with `r` of
//! 4–64 against `d` of hundreds. burn's `matmul` runs each through the general `gemm` crate,
//! which packs both operands on every call and copies the transposed views first (7 % and
//! another 5–7 % of a MiniLM LoRA step, docs/performance.md). [`linear_t`] is one operation,
//! forward and backward, whose products each take the kernel that fits their shape:
//!
//! | product | shape | kernel |
//! |---|---|---|
//! | `x·Wᵀ` with few outputs | `[m, k]·[k, r]` | [`dot_rows`]: `r` dot products per row, no packing |
//! | `u·Wᵀ` with few inputs | `[m, r]·[r, n]` | [`crate::gemm`] with the small `Wᵀ` packed per call |
//! | `∂L/∂W = ∂L/∂yᵀ·x` | `[r, m]·[m, k]` | [`outer_sum`]: `Σᵢ uᵢᵀ xᵢ` in registers, no transpose |
//!
//! When it applies: f32 on the `flex` device, with or without autodiff, `min(rows of W, cols
//! of W) ≤` [`SMALL`], on a CPU with AVX-512F. Elsewhere it is burn's `x.matmul(w.transpose())`,
//! with the same values to f32 rounding (tests: `tests/properties/skinny.rs`). Every output
//! element is summed by one thread in a fixed order, so results are bit-identical across runs.

// Raw-pointer kernels; each `unsafe fn` states its contract, the safe wrappers check bounds.
#![allow(unsafe_op_in_unsafe_fn)]

use burn::tensor::Tensor;

/// The largest rank side (rows or columns of `W`) that takes the fast path.
pub const SMALL: usize = 64;

/// `x: [m, k]` · `w: [n, k]`ᵀ → `[m, n]` (burn's `x.matmul(w.transpose())`), on the fast path
/// of the module docs where it applies, differentiable in both operands.
pub fn linear_t(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    #[cfg(feature = "flex")]
    if let Some(y) = flex::try_fast(&x, &w) {
        return y;
    }
    x.matmul(w.transpose())
}

/// Whether this CPU runs the kernels of this module.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `y[i, j] = Σ_p x[i, p]·w[j, p]` for `x: [m, k]`, `w: [r, k]` (both row-major, contiguous):
/// `[m, r]`, rows split over rayon's pool.
///
/// # Panics
/// If the slices do not hold the shapes, or the CPU lacks AVX-512F ([`available`]).
pub fn dot_rows(x: &[f32], m: usize, k: usize, w: &[f32], r: usize) -> Vec<f32> {
    assert!(available(), "skinny::dot_rows needs AVX-512F");
    assert!(
        x.len() >= m * k && w.len() >= r * k,
        "dot_rows: short input"
    );
    let mut y = vec![0.0f32; m * r];
    if m == 0 || r == 0 {
        return y;
    }
    const ROWS: usize = 32;
    let run = |(blk, out): (usize, &mut [f32])| {
        let i0 = blk * ROWS;
        let rows = out.len() / r;
        // SAFETY: AVX-512F checked; rows i0..i0+rows of x, all of w, `out` holds rows × r.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            x86::dot_rows(
                x[i0 * k..].as_ptr(),
                k,
                rows,
                w.as_ptr(),
                r,
                out.as_mut_ptr(),
            )
        };
    };
    if m * k * r >= 1 << 16 {
        use rayon::prelude::*;
        y.par_chunks_mut(ROWS * r).enumerate().for_each(run);
    } else {
        y.chunks_mut(ROWS * r).enumerate().for_each(run);
    }
    y
}

/// `out[j, c] = Σ_i u[i, j]·x[i, c]` (`uᵀ·x`) for `u: [m, r]`, `x: [m, k]` (row-major,
/// contiguous): `[r, k]`, column chunks split over rayon's pool.
///
/// # Panics
/// If the slices do not hold the shapes, or the CPU lacks AVX-512F ([`available`]).
pub fn outer_sum(u: &[f32], r: usize, x: &[f32], m: usize, k: usize) -> Vec<f32> {
    assert!(available(), "skinny::outer_sum needs AVX-512F");
    assert!(
        u.len() >= m * r && x.len() >= m * k,
        "outer_sum: short input"
    );
    let mut out = vec![0.0f32; r * k];
    if r == 0 || k == 0 {
        return out;
    }
    const COLS: usize = 32;
    let chunks = k.div_ceil(COLS);
    let ptr = crate::gemm::SendPtr(out.as_mut_ptr());
    let run = |c: usize| {
        let p = ptr;
        let c0 = c * COLS;
        // SAFETY: AVX-512F checked; chunk c owns columns c0..c0+w of every row of `out`.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            x86::outer_sum(u.as_ptr(), r, x.as_ptr(), m, k, c0, COLS.min(k - c0), p.0)
        };
    };
    if m * k * r >= 1 << 16 && chunks > 1 {
        use rayon::prelude::*;
        (0..chunks).into_par_iter().for_each(run);
    } else {
        (0..chunks).for_each(run);
    }
    out
}

/// `w: [rows, cols]` (row-major) transposed: `[cols, rows]`.
fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0f32; rows * cols];
    for i in 0..rows {
        for j in 0..cols {
            t[j * rows + i] = w[i * cols + j];
        }
    }
    t
}

/// The three products of the module table on host slices (for the op and its tests).
mod products {
    use super::{dot_rows, outer_sum, transpose};
    use crate::gemm::{PackedMatrix, gemm_packed};

    /// `[m, k]` · packed `b: [k, n]` → `[m, n]`.
    fn gemm(a: &[f32], m: usize, b: &PackedMatrix) -> Vec<f32> {
        let n = b.n();
        let mut out: Vec<f32> = Vec::with_capacity(m * n);
        gemm_packed(a, b.k(), m, b, None, out.spare_capacity_mut());
        // SAFETY: gemm_packed wrote all m·n elements.
        unsafe { out.set_len(m * n) };
        out
    }

    /// `y = x·wᵀ`: `x: [m, k]`, `w: [n, k]` → `[m, n]`.
    pub(super) fn forward(x: &[f32], m: usize, k: usize, w: &[f32], n: usize) -> Vec<f32> {
        if n <= k {
            dot_rows(x, m, k, w, n)
        } else {
            // few inputs: Wᵀ [k, n] packed from w's storage with strides (1, k)
            gemm(x, m, &PackedMatrix::pack(w, k, n, 1, k))
        }
    }

    /// `∂L/∂x = dy·w`: `dy: [m, n]`, `w: [n, k]` → `[m, k]`.
    pub(super) fn grad_x(dy: &[f32], m: usize, n: usize, w: &[f32], k: usize) -> Vec<f32> {
        if n <= k {
            gemm(dy, m, &PackedMatrix::pack(w, n, k, k, 1))
        } else {
            dot_rows(dy, m, n, &transpose(w, n, k), k)
        }
    }

    /// `∂L/∂w = dyᵀ·x`: `dy: [m, n]`, `x: [m, k]` → `[n, k]`.
    pub(super) fn grad_w(dy: &[f32], m: usize, n: usize, x: &[f32], k: usize) -> Vec<f32> {
        if n <= k {
            outer_sum(dy, n, x, m, k)
        } else {
            transpose(&outer_sum(x, k, dy, m, n), k, n)
        }
    }
}

#[cfg(feature = "flex")]
mod flex {
    use super::*;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary};
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::DType;
    use burn_flex::FlexTensor;

    use crate::fastpath::{contiguous, f32s, from_vec};

    fn dims(t: &FlexTensor) -> (usize, usize) {
        let s = t.layout().shape();
        (s[0], s[1])
    }

    fn forward(x: &FlexTensor, w: &FlexTensor) -> FlexTensor {
        let ((m, k), (n, _)) = (dims(x), dims(w));
        from_vec(products::forward(f32s(x), m, k, f32s(w), n), [m, n])
    }

    pub(super) fn try_fast(x: &Tensor<2>, w: &Tensor<2>) -> Option<Tensor<2>> {
        let ([_, k], [n, kw]) = (x.dims(), w.dims());
        if x.dtype() != DType::F32 || w.dtype() != DType::F32 || k != kw {
            return None;
        }
        if n.min(k) > SMALL || n == 0 || k == 0 || !available() {
            return None;
        }
        if !x.device().is_autodiff() {
            let xf = contiguous(&x.clone().try_into_primitive::<Flex>().ok()?);
            let wf = contiguous(&w.clone().try_into_primitive::<Flex>().ok()?);
            return Some(Tensor::from_primitive::<Flex>(forward(&xf, &wf)));
        }
        let xa = x.clone().try_into_primitive::<Autodiff<Flex>>().ok()?;
        let wa = w.clone().try_into_primitive::<Autodiff<Flex>>().ok()?;
        let xf = contiguous(xa.primitive());
        let wf = contiguous(wa.primitive());
        let out = match LinearTBackward
            .prepare::<NoCheckpointing>([xa.node(), wa.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = forward(&xf, &wf);
                prep.finish((xf, wf), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(&xf, &wf)),
        };
        Some(Tensor::from_primitive::<Autodiff<Flex>>(out))
    }

    /// Backward of `x·wᵀ`: the input and weight gradients, each only where tracked.
    #[derive(Debug)]
    struct LinearTBackward;

    impl Backward<Flex, 2> for LinearTBackward {
        type State = (FlexTensor, FlexTensor);

        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            let (x, w) = ops.state;
            let ((m, k), (n, _)) = (dims(&x), dims(&w));
            binary::<Flex, _, _>(
                ops.parents,
                ops.node,
                grads,
                |dy| {
                    let dy = contiguous(&dy);
                    from_vec(products::grad_x(f32s(&dy), m, n, f32s(&w), k), [m, k])
                },
                |dy| {
                    let dy = contiguous(&dy);
                    from_vec(products::grad_w(f32s(&dy), m, n, f32s(&x), k), [n, k])
                },
            );
        }
    }
}

#[cfg(target_arch = "x86_64")]
// tiles index several register arrays by the same counters
#[allow(clippy::needless_range_loop)]
mod x86 {
    use std::arch::x86_64::*;

    /// Lanes of `len ≤ 16` elements from `p` (zero past `len`).
    #[inline(always)]
    unsafe fn load(p: *const f32, mask: u16) -> __m512 {
        _mm512_maskz_loadu_ps(mask, p)
    }

    /// [`super::dot_rows`] on `rows` rows: tiles of `H` rows × `J` rows of `w`, `k` walked 16
    /// at a time (the tail masked), each sum reduced once at the end.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dot_rows(
        x: *const f32,
        k: usize,
        rows: usize,
        w: *const f32,
        r: usize,
        y: *mut f32,
    ) {
        let mut i = 0;
        while i < rows {
            let h = 4.min(rows - i);
            let mut j = 0;
            while j < r {
                let left = r - j;
                let xi = x.add(i * k);
                let wj = w.add(j * k);
                let yi = y.add(i * r + j);
                let jb = match (h, left) {
                    (4, 4..) => tile::<4, 4>(xi, k, wj, yi, r),
                    (4, 2..) => tile::<4, 2>(xi, k, wj, yi, r),
                    (4, _) => tile::<4, 1>(xi, k, wj, yi, r),
                    (_, 4..) => tile::<1, 4>(xi, k, wj, yi, r),
                    (_, 2..) => tile::<1, 2>(xi, k, wj, yi, r),
                    _ => tile::<1, 1>(xi, k, wj, yi, r),
                };
                j += jb;
            }
            // short row blocks run one row at a time
            i += if h == 4 { 4 } else { 1 };
        }
    }

    #[inline(always)]
    unsafe fn tile<const H: usize, const J: usize>(
        x: *const f32,
        k: usize,
        w: *const f32,
        y: *mut f32,
        ldy: usize,
    ) -> usize {
        let mut acc = [[_mm512_setzero_ps(); J]; H];
        let mut p = 0;
        while p < k {
            let mask = if k - p >= 16 {
                0xffff
            } else {
                ((1u32 << (k - p)) - 1) as u16
            };
            let mut xv = [_mm512_setzero_ps(); H];
            for (a, v) in xv.iter_mut().enumerate() {
                *v = load(x.add(a * k + p), mask);
            }
            for b in 0..J {
                let wv = load(w.add(b * k + p), mask);
                for a in 0..H {
                    acc[a][b] = _mm512_fmadd_ps(xv[a], wv, acc[a][b]);
                }
            }
            p += 16;
        }
        for (a, row) in acc.iter().enumerate() {
            for (b, v) in row.iter().enumerate() {
                *y.add(a * ldy + b) = _mm512_reduce_add_ps(*v);
            }
        }
        J
    }

    /// [`super::outer_sum`] for columns `c0..c0+w` (`w ≤ 32`): tiles of `J` rows of the
    /// output × 32 columns, held in registers over all `m` rows of `u` and `x`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn outer_sum(
        u: *const f32,
        r: usize,
        x: *const f32,
        m: usize,
        k: usize,
        c0: usize,
        w: usize,
        out: *mut f32,
    ) {
        let (m0, m1) = crate::gemm::x86::edge_masks(w);
        let mut j = 0;
        while j < r {
            let args = (u.add(j), r, x.add(c0), m, k, (m0, m1), out.add(j * k + c0));
            j += match r - j {
                8.. => outer_tile::<8>(args),
                4.. => outer_tile::<4>(args),
                2.. => outer_tile::<2>(args),
                _ => outer_tile::<1>(args),
            };
        }
    }

    type OuterArgs = (
        *const f32,
        usize,
        *const f32,
        usize,
        usize,
        (u16, u16),
        *mut f32,
    );

    #[inline(always)]
    unsafe fn outer_tile<const J: usize>((u, ldu, x, m, ldx, (m0, m1), out): OuterArgs) -> usize {
        let mut a0 = [_mm512_setzero_ps(); J];
        let mut a1 = [_mm512_setzero_ps(); J];
        for i in 0..m {
            let xr = x.add(i * ldx);
            let x0 = load(xr, m0);
            let x1 = load(xr.add(16), m1);
            let ur = u.add(i * ldu);
            for b in 0..J {
                let s = _mm512_set1_ps(*ur.add(b));
                a0[b] = _mm512_fmadd_ps(s, x0, a0[b]);
                a1[b] = _mm512_fmadd_ps(s, x1, a1[b]);
            }
        }
        for b in 0..J {
            let row = out.add(b * ldx);
            _mm512_mask_storeu_ps(row, m0, a0[b]);
            _mm512_mask_storeu_ps(row.add(16), m1, a1[b]);
        }
        J
    }
}
