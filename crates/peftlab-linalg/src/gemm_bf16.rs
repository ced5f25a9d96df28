//! GEMM on bf16 operands with f32 accumulation: `C = bf16(A)·bf16(B) (+ bias)`, `B` packed once.
//!
//! The opt-in bf16 frozen base of [`crate::frozen`] ([`crate::frozen::Precision::Bf16`]): the
//! frozen weight is rounded to bf16 once, at packing, and each product rounds its `A` operand
//! (the activations, or `∂L/∂y` for the input gradient) to bf16 on the fly; every product of two
//! bf16 numbers is exact in f32, and the sums are kept in f32. AVX-512 BF16's `vdpbf16ps`
//! multiplies 32 bf16 pairs per instruction where an f32 FMA multiplies 16, so on a CPU with
//! `avx512_bf16` (Zen 4, Sapphire Rapids) a product takes about half the time of
//! [`crate::gemm`]'s f32 kernel. Rounding is to nearest, ties to even, as PyTorch's
//! `torch.bfloat16` conversion.
//!
//! Layout: [`PackedBf16`] holds `B: [k, n]` as `⌈n/32⌉` panels; within a panel, row pair `q`
//! (`B[2q, ·]` and `B[2q+1, ·]`, zero past `k`) is 64 bf16: columns 0–15 as interleaved pairs
//! `(B[2q, j], B[2q+1, j])`, then columns 16–31 — the operand order of `vdpbf16ps`. Each task
//! converts its rows of `A` once into a private bf16 buffer (even row length), then runs 8 × 32
//! tiles over all its panels. Row blocks and panel groups are split over rayon's pool as in
//! [`crate::gemm`]; every output element is computed by one thread in a fixed order, so results
//! are bit-identical between runs on one machine.
//!
//! The portable kernel computes the same bf16 products in plain Rust (tests, and CPUs without
//! `avx512_bf16`; it is slow, so [`crate::frozen::Precision::check`] refuses bf16 there).

// Raw-pointer kernels, as in `gemm`; each `unsafe fn` states its contract and the one driver
// (`gemm_bf16_packed_with`) checks every bound.
#![allow(unsafe_op_in_unsafe_fn)]

use std::mem::MaybeUninit;

use crate::gemm::{KC, MC, NR, SendPtr, aligned_buffer, check_operands, for_each_block};

/// `x` rounded to bf16 (round to nearest, ties to even; NaN stays NaN), as its 16 bits.
#[inline]
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        // keep sign and payload's top bits, force a quiet NaN
        return ((bits >> 16) as u16) | 0x40;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// The f32 value of a bf16 number (exact).
#[inline]
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// `x` rounded to the nearest bf16 value, as an f32 (the reference the tests compare with).
#[inline]
pub fn round_bf16(x: f32) -> f32 {
    from_bf16(to_bf16(x))
}

/// `B: [k, n]` rounded to bf16 and packed in the pair-interleaved panels of the module docs.
pub struct PackedBf16 {
    k: usize,
    n: usize,
    buf: Vec<u16>,
    offset: usize,
}

impl std::fmt::Debug for PackedBf16 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedBf16")
            .field("k", &self.k)
            .field("n", &self.n)
            .finish_non_exhaustive()
    }
}

/// bf16 numbers per row pair of one panel.
const PAIR: usize = 2 * NR;

impl PackedBf16 {
    /// Round and pack `B: [k, n]` whose element `(i, j)` is `src[i·row_stride + j·col_stride]`.
    ///
    /// # Panics
    /// If `src` is too short for the strides.
    pub fn pack(src: &[f32], k: usize, n: usize, row_stride: usize, col_stride: usize) -> Self {
        if k > 0 && n > 0 {
            assert!(
                (k - 1) * row_stride + (n - 1) * col_stride < src.len(),
                "PackedBf16::pack: a [{k}, {n}] matrix with strides ({row_stride}, {col_stride}) \
                 does not fit in {} elements",
                src.len()
            );
        }
        let pairs = k.div_ceil(2);
        let panel_len = pairs * PAIR;
        let len = n.div_ceil(NR) * panel_len;
        let (mut buf, offset) = aligned_buffer::<u16>(len);
        let dst = &mut buf[offset..offset + len];
        for j in 0..n {
            let (p, jj) = (j / NR, j % NR);
            let col = p * panel_len + (jj / 16) * 32 + (jj % 16) * 2;
            for i in 0..k {
                dst[col + (i / 2) * PAIR + i % 2] = to_bf16(src[i * row_stride + j * col_stride]);
            }
        }
        Self { k, n, buf, offset }
    }

    /// Rows of `B`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns of `B`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Bytes held.
    pub fn size_bytes(&self) -> usize {
        self.buf.len() * 2
    }

    /// Panel `p`, from row pair `q0` on.
    fn panel_from(&self, p: usize, q0: usize) -> *const u16 {
        let panel_len = self.k.div_ceil(2) * PAIR;
        self.buf[self.offset + p * panel_len + q0 * PAIR..].as_ptr()
    }
}

/// A micro-kernel of [`gemm_bf16_packed_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Kernel {
    /// 8 × 32 tiles of `vdpbf16ps` (AVX-512F + AVX-512 BF16).
    Avx512Bf16,
    /// Plain Rust (any CPU; slow).
    Portable,
}

impl Bf16Kernel {
    /// Every kernel, fastest first.
    pub const ALL: [Bf16Kernel; 2] = [Bf16Kernel::Avx512Bf16, Bf16Kernel::Portable];

    /// The fastest kernel this CPU runs.
    pub fn detect() -> Self {
        if Self::Avx512Bf16.is_available() {
            Self::Avx512Bf16
        } else {
            Self::Portable
        }
    }

    /// Whether this CPU runs `self`.
    pub fn is_available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Bf16Kernel::Avx512Bf16 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bf16")
            }
            Bf16Kernel::Portable => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}

/// `C[m, n] = bf16(A[m, k])·B (+ bias[n] on every row)` with f32 sums; `A` row-major f32 with
/// row stride `lda`, `C` row-major contiguous. Every element of `c` is written, none is read.
///
/// # Panics
/// If the slices are shorter than the shapes say.
pub fn gemm_bf16_packed(
    a: &[f32],
    lda: usize,
    m: usize,
    b: &PackedBf16,
    bias: Option<&[f32]>,
    c: &mut [MaybeUninit<f32>],
) {
    gemm_bf16_packed_with(Bf16Kernel::detect(), a, lda, m, b, bias, c);
}

/// [`gemm_bf16_packed`] with a chosen micro-kernel (tests run every kernel the CPU has).
///
/// # Panics
/// If the slices are shorter than the shapes say, or `kernel` is not available on this CPU.
pub fn gemm_bf16_packed_with(
    kernel: Bf16Kernel,
    a: &[f32],
    lda: usize,
    m: usize,
    b: &PackedBf16,
    bias: Option<&[f32]>,
    c: &mut [MaybeUninit<f32>],
) {
    assert!(
        kernel.is_available(),
        "gemm_bf16_packed: {kernel:?} is not available on this CPU"
    );
    let (k, n) = (b.k, b.n);
    check_operands("gemm_bf16_packed", (a.len(), lda, m, k), n, bias, c.len());
    if m == 0 || n == 0 {
        return;
    }
    let parallel = 2 * m * n * k >= 1 << 20;
    let cptr = SendPtr(c.as_mut_ptr().cast());
    for_each_block(m, MC, n.div_ceil(NR), parallel, |r0, rows, panels| {
        let cp = cptr;
        let a_rows = &a[r0 * lda..];
        // SAFETY: this task owns rows r0..r0+rows × these panels of C; bounds checked above.
        unsafe {
            row_block(
                kernel,
                a_rows,
                lda,
                rows,
                b,
                panels,
                bias,
                cp.0.add(r0 * n),
                n,
            )
        };
    });
}

/// Rows `0..rows` of `a` (stride `lda`, `k` wide) rounded to bf16 into a buffer of rows of
/// `2·⌈k/2⌉` (the padding element 0), 64-byte aligned; returns the buffer and its offset.
fn convert_rows(a: &[f32], lda: usize, rows: usize, k: usize) -> (Vec<u16>, usize) {
    let k2 = 2 * k.div_ceil(2);
    let (mut buf, offset) = aligned_buffer::<u16>(rows * k2);
    let vector = Bf16Kernel::Avx512Bf16.is_available();
    for i in 0..rows {
        let src = &a[i * lda..i * lda + k];
        let dst = &mut buf[offset + i * k2..offset + i * k2 + k];
        #[cfg(target_arch = "x86_64")]
        if vector {
            // SAFETY: the CPU has the features; both slices hold k elements.
            unsafe { x86::convert(src, dst) };
            continue;
        }
        for (d, s) in dst.iter_mut().zip(src) {
            *d = to_bf16(*s);
        }
    }
    (buf, offset)
}

/// One block of `rows ≤ MC` rows × panels `p0..p1`, all of `k`.
///
/// # Safety
/// `c` must be valid for writes of rows `0..rows` of `b.n()` elements at stride `ldc`, owned by
/// this task; `kernel` must be available.
#[allow(clippy::too_many_arguments)]
unsafe fn row_block(
    kernel: Bf16Kernel,
    a: &[f32],
    lda: usize,
    rows: usize,
    b: &PackedBf16,
    (p0, p1): (usize, usize),
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
) {
    let (k, n) = (b.k, b.n);
    let (abuf, aoff) = convert_rows(a, lda, rows, k);
    let a16 = abuf[aoff..].as_ptr();
    let lda2 = 2 * k.div_ceil(2);
    let pairs = k.div_ceil(2);
    // k blocks in pairs (KC floats deep), as the f32 kernel
    let kblocks = pairs.div_ceil(KC / 2).max(1);
    let kc_len = pairs.div_ceil(kblocks);
    for kb in 0..kblocks {
        let q0 = kb * kc_len;
        let kp = kc_len.min(pairs - q0.min(pairs));
        let accumulate = kb > 0;
        for p in p0..p1 {
            let j0 = p * NR;
            let w = NR.min(n - j0);
            let bias_p = if accumulate {
                None
            } else {
                bias.map(|s| s.as_ptr().add(j0))
            };
            let mut i = 0;
            while i < rows {
                let h = 8.min(rows - i);
                let t = Tile {
                    kp,
                    a: a16.add(i * lda2 + 2 * q0),
                    lda2,
                    b: b.panel_from(p, q0),
                    c: c.add(i * ldc + j0),
                    ldc,
                    w,
                    accumulate,
                    bias: bias_p,
                };
                dispatch(kernel, h, &t);
                i += h;
            }
        }
    }
}

/// One micro-tile: `h ≤ 8` rows × `w ≤ 32` columns over `kp` row pairs.
struct Tile {
    kp: usize,
    a: *const u16,
    lda2: usize,
    b: *const u16,
    c: *mut f32,
    ldc: usize,
    w: usize,
    accumulate: bool,
    bias: Option<*const f32>,
}

unsafe fn dispatch(kernel: Bf16Kernel, h: usize, t: &Tile) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Bf16Kernel::Avx512Bf16 => match h {
            8 => x86::tile::<8>(t),
            7 => x86::tile::<7>(t),
            6 => x86::tile::<6>(t),
            5 => x86::tile::<5>(t),
            4 => x86::tile::<4>(t),
            3 => x86::tile::<3>(t),
            2 => x86::tile::<2>(t),
            _ => x86::tile::<1>(t),
        },
        _ => portable(h, t),
    }
}

unsafe fn portable(h: usize, t: &Tile) {
    crate::gemm::portable_rows(h, (t.c, t.ldc, t.w), t.accumulate, t.bias, |i, acc| {
        for q in 0..t.kp {
            let a0 = from_bf16(*t.a.add(i * t.lda2 + 2 * q));
            let a1 = from_bf16(*t.a.add(i * t.lda2 + 2 * q + 1));
            let row = std::slice::from_raw_parts(t.b.add(q * PAIR), PAIR);
            for (j, v) in acc.iter_mut().enumerate() {
                let at = (j / 16) * 32 + (j % 16) * 2;
                *v += a0 * from_bf16(row[at]) + a1 * from_bf16(row[at + 1]);
            }
        }
    });
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{PAIR, Tile};
    use crate::gemm::x86::{edge_masks, tile_start, tile_store};
    use std::arch::x86_64::*;

    /// `src` rounded to bf16 into `dst` (same length), 16 at a time.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn convert(src: &[f32], dst: &mut [u16]) {
        let n = src.len();
        let mut i = 0;
        while i < n {
            let w = 16.min(n - i);
            let mask = ((1u32 << w) - 1) as u16;
            let v = _mm512_maskz_loadu_ps(mask, src.as_ptr().add(i));
            let h: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
            _mm256_mask_storeu_epi16(dst.as_mut_ptr().add(i).cast(), mask, h);
            i += 16;
        }
    }

    /// `MR × w` tile: two `zmm` accumulators per row, one `vdpbf16ps` per row per half-panel
    /// per row pair of `k`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn tile<const MR: usize>(t: &Tile) {
        let masks = edge_masks(t.w);
        let (mut c0, mut c1) = tile_start::<MR>(t.c, t.ldc, t.accumulate, t.bias, masks);
        let mut a = [t.a; MR];
        for (i, ai) in a.iter_mut().enumerate() {
            *ai = t.a.add(i * t.lda2);
        }
        let mut b = t.b;
        for q in 0..t.kp {
            let b0: __m512bh = std::mem::transmute(_mm512_load_si512(b.cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_load_si512(b.add(32).cast()));
            for i in 0..MR {
                // the pair (A[i, 2q], A[i, 2q+1]) in every 32-bit lane
                let pair = a[i].add(2 * q).cast::<i32>().read_unaligned();
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                c0[i] = _mm512_dpbf16_ps(c0[i], av, b0);
                c1[i] = _mm512_dpbf16_ps(c1[i], av, b1);
            }
            b = b.add(PAIR);
        }
        tile_store::<MR>(t.c, t.ldc, masks, (&c0, &c1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even() {
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0)
        assert_eq!(round_bf16(1.0 + 2f32.powi(-8)), 1.0);
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: even is 1 + 2^-6
        assert_eq!(round_bf16(1.0 + 3.0 * 2f32.powi(-8)), 1.0 + 2f32.powi(-6));
        // just above the tie rounds up
        assert_eq!(
            round_bf16(1.0 + 2f32.powi(-8) + 2f32.powi(-20)),
            1.0 + 2f32.powi(-7)
        );
        assert!(round_bf16(f32::NAN).is_nan());
        assert_eq!(round_bf16(f32::INFINITY), f32::INFINITY);
        assert_eq!(round_bf16(-0.0).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn vector_conversion_matches_scalar() {
        if !Bf16Kernel::Avx512Bf16.is_available() {
            eprintln!("SKIPPED: no avx512_bf16 on this CPU (the scalar path is the one used)");
            return;
        }
        let src: Vec<f32> = (0..37)
            .map(|i| (i as f32 * 0.737).sin() * 10f32.powi(i % 7 - 3))
            .collect();
        let mut v = vec![0u16; src.len()];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: features checked above; equal lengths.
        unsafe {
            x86::convert(&src, &mut v)
        };
        let s: Vec<u16> = src.iter().map(|x| to_bf16(*x)).collect();
        assert_eq!(v, s);
    }
}
