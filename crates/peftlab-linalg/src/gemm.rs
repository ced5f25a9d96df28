//! GEMM against a matrix packed once: `C = A·B (+ bias)` with `B` stored in column panels.
//!
//! Frozen weights never change between training steps, yet a general GEMM (burn-flex's `gemm`
//! crate) re-packs both operands on every call. [`PackedMatrix`] holds `B: [k, n]` as
//! `⌈n/32⌉` panels of `k × 32` floats (the last one zero-padded), 64-byte aligned, which is the
//! order the micro-kernel reads it in; `A` is read in place (row-major, any row stride), so a
//! product costs no packing at all. The same type packs `Wᵀ` for the input gradient `dY·Wᵀ`.
//!
//! Kernels: an 8 × 32 AVX-512F micro-kernel (16 `zmm` accumulators), a 6 × 16 AVX2+FMA one
//! (12 `ymm` accumulators + 2 for `B` + 1 broadcast = 15 of the 16 registers; it walks each
//! 32-wide panel as two 16-wide halves so a half-panel slab stays in L1, `k` unrolled by 4),
//! and a portable one, chosen at run time. Rows are split into blocks of [`MC`] (AVX2:
//! [`MC_AVX2`], a multiple of its 6 rows) run in parallel on rayon's pool; `k` is split into
//! blocks of at most [`KC`] so a panel slab stays in L1/L2.
//! Every output element is computed by one thread in a fixed order, so results are
//! bit-identical between runs on one machine.

// The micro-kernels and their drivers are raw-pointer code end to end; each `unsafe fn` states
// its contract, and the one caller that upholds it (`gemm_packed_with`) checks every bound.
#![allow(unsafe_op_in_unsafe_fn)]

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Panel width (columns of `B` per panel).
pub const NR: usize = 32;
/// Rows of `C` per parallel task (AVX-512 and portable kernels).
pub const MC: usize = 64;
/// Rows of `C` per parallel task for the AVX2 kernel (12 tiles of its 6 rows).
pub const MC_AVX2: usize = 72;
/// Depth of one `k` block.
pub const KC: usize = 384;

/// `B: [k, n]` packed into 64-byte-aligned column panels of [`NR`] columns.
pub struct PackedMatrix {
    k: usize,
    n: usize,
    buf: Vec<f32>,
    offset: usize,
}

impl Clone for PackedMatrix {
    // Not derived: the copy's allocation has its own alignment, so its offset differs.
    fn clone(&self) -> Self {
        let len = self.panels_len();
        let (mut buf, offset) = aligned_buffer(len);
        buf[offset..offset + len].copy_from_slice(&self.buf[self.offset..self.offset + len]);
        Self {
            k: self.k,
            n: self.n,
            buf,
            offset,
        }
    }
}

/// A zeroed buffer holding `len` elements of `T` (a 1-, 2- or 4-byte number) from a
/// 64-byte-aligned `offset`.
pub(crate) fn aligned_buffer<T: Copy + Default>(len: usize) -> (Vec<T>, usize) {
    let size = std::mem::size_of::<T>();
    let per_line = 64 / size;
    let buf = vec![T::default(); len + per_line];
    let offset = (per_line - (buf.as_ptr() as usize / size) % per_line) % per_line;
    (buf, offset)
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedMatrix")
            .field("k", &self.k)
            .field("n", &self.n)
            .finish_non_exhaustive()
    }
}

impl PackedMatrix {
    /// Pack `B: [k, n]` whose element `(i, j)` is `src[i·row_stride + j·col_stride]`.
    ///
    /// # Panics
    /// If `src` is too short for the strides.
    pub fn pack(src: &[f32], k: usize, n: usize, row_stride: usize, col_stride: usize) -> Self {
        if k > 0 && n > 0 {
            assert!(
                (k - 1) * row_stride + (n - 1) * col_stride < src.len(),
                "PackedMatrix::pack: a [{k}, {n}] matrix with strides ({row_stride}, {col_stride}) \
                 does not fit in {} elements",
                src.len()
            );
        }
        let panels = n.div_ceil(NR);
        let len = panels * k * NR;
        let (mut buf, offset) = aligned_buffer(len);
        let dst = &mut buf[offset..offset + len];
        for p in 0..panels {
            let j0 = p * NR;
            let w = NR.min(n - j0);
            let panel = &mut dst[p * k * NR..(p + 1) * k * NR];
            for i in 0..k {
                let row = &mut panel[i * NR..i * NR + w];
                let base = i * row_stride + j0 * col_stride;
                if col_stride == 1 {
                    row.copy_from_slice(&src[base..base + w]);
                } else {
                    for (jj, v) in row.iter_mut().enumerate() {
                        *v = src[base + jj * col_stride];
                    }
                }
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

    fn panels_len(&self) -> usize {
        self.n.div_ceil(NR) * self.k * NR
    }

    /// Multiply every element by `factor` (a scale folded into the operand).
    pub fn scale(&mut self, factor: f32) {
        let len = self.panels_len();
        for v in &mut self.buf[self.offset..self.offset + len] {
            *v *= factor;
        }
    }

    /// Bytes held.
    pub fn size_bytes(&self) -> usize {
        self.buf.len() * 4
    }

    fn panel(&self, p: usize) -> &[f32] {
        let len = self.k * NR;
        &self.buf[self.offset + p * len..self.offset + (p + 1) * len]
    }
}

/// A raw output pointer handed to parallel tasks that write disjoint elements (here: row
/// blocks × panel groups; in `attention`: rows × head columns).
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: every user hands each task a disjoint set of elements to write.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// `C[m, n] = A[m, k]·B (+ bias[n] on every row)`, `A` row-major with row stride `lda`, `C`
/// row-major contiguous (`ldc = n`). Every element of `c` is written; its prior contents are
/// never read, so it may be uninitialized.
///
/// # Panics
/// If the slices are shorter than the shapes say.
pub fn gemm_packed(
    a: &[f32],
    lda: usize,
    m: usize,
    b: &PackedMatrix,
    bias: Option<&[f32]>,
    c: &mut [MaybeUninit<f32>],
) {
    gemm_packed_with(Kernel::detect(), a, lda, m, b, bias, c);
}

/// [`gemm_packed`] with a chosen micro-kernel (tests run every kernel the CPU has).
///
/// # Panics
/// If the slices are shorter than the shapes say, or `kernel` is not available on this CPU.
pub fn gemm_packed_with(
    kernel: Kernel,
    a: &[f32],
    lda: usize,
    m: usize,
    b: &PackedMatrix,
    bias: Option<&[f32]>,
    c: &mut [MaybeUninit<f32>],
) {
    assert!(
        kernel.is_available(),
        "gemm_packed: {kernel:?} is not available on this CPU"
    );
    let n = b.n;
    check_operands("gemm_packed", (a.len(), lda, m, b.k), n, bias, c.len());
    let parallel = 2 * m * n * b.k >= 1 << 20;
    // SAFETY: bounds checked above; `c` holds m rows of n.
    unsafe {
        gemm_packed_raw(
            kernel,
            a.as_ptr(),
            lda,
            m,
            b,
            bias,
            c.as_mut_ptr().cast(),
            n,
            parallel,
        )
    };
}

/// The bounds both packed GEMMs check: `A` (`a_len` elements) holds `m` rows of `k` at stride
/// `lda`, the bias `n` elements, the output `m·n`.
///
/// # Panics
/// If any is too short, naming `what`.
pub(crate) fn check_operands(
    what: &str,
    (a_len, lda, m, k): (usize, usize, usize, usize),
    n: usize,
    bias: Option<&[f32]>,
    c_len: usize,
) {
    assert!(c_len >= m * n, "{what}: output too short");
    if m > 0 && k > 0 {
        assert!((m - 1) * lda + k <= a_len, "{what}: A too short");
    }
    if let Some(bias) = bias {
        assert!(bias.len() >= n, "{what}: bias too short");
    }
}

/// [`gemm_packed_with`] on raw pointers: `C` has row stride `ldc ≥ n` (so a block of a larger
/// matrix can be written in place), and `parallel` says whether to split the rows over rayon's
/// pool (callers already inside a parallel task pass `false`).
///
/// # Safety
/// `a` must be valid for reads of rows `0..m` of `b.k()` elements at stride `lda`, `c` for
/// writes of rows `0..m` of `b.n()` elements at stride `ldc`, `bias` (if any) must hold `b.n()`
/// elements, no other thread may access those elements of `c` meanwhile, and `kernel` must be
/// available on this CPU.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_packed_raw(
    kernel: Kernel,
    a: *const f32,
    lda: usize,
    m: usize,
    b: &PackedMatrix,
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    parallel: bool,
) {
    let n = b.n;
    if m == 0 || n == 0 {
        return;
    }
    let cptr = SendPtr(c);
    let aptr = SendPtr(a as *mut f32);
    for_each_block(
        m,
        kernel.mc(),
        n.div_ceil(NR),
        parallel,
        |r0, rows, panels| {
            let (cp, ap) = (cptr, aptr);
            // SAFETY: this task owns rows r0..r0+rows × these panels of C; the caller guarantees
            // the bounds.
            unsafe {
                row_block(
                    kernel,
                    ap.0.add(r0 * lda),
                    lda,
                    rows,
                    b,
                    panels,
                    bias,
                    cp.0.add(r0 * ldc),
                    ldc,
                )
            };
        },
    );
}

/// Split `m` rows × `panels` column panels into tasks and run `task(r0, rows, (p0, p1))` for
/// each: row blocks of `mc`, and — when there are fewer blocks than twice the pool's threads
/// (short inputs) — the panels split into groups too, so both cores work. The tasks cover every
/// (row, panel) pair exactly once; with `parallel` they run on rayon's pool.
pub(crate) fn for_each_block(
    m: usize,
    mc: usize,
    panels: usize,
    parallel: bool,
    task: impl Fn(usize, usize, (usize, usize)) + Sync + Send,
) {
    if m == 0 || panels == 0 {
        return;
    }
    let blocks = m.div_ceil(mc);
    let target = if parallel {
        2 * rayon::current_num_threads()
    } else {
        1
    };
    let groups = target.div_ceil(blocks).clamp(1, panels);
    let per_group = panels.div_ceil(groups);
    let groups = panels.div_ceil(per_group);
    let run = |t: usize| {
        let (blk, g) = (t / groups, t % groups);
        let r0 = blk * mc;
        let p0 = g * per_group;
        task(r0, mc.min(m - r0), (p0, (p0 + per_group).min(panels)));
    };
    let tasks = blocks * groups;
    if parallel && tasks > 1 {
        (0..tasks).into_par_iter().for_each(run);
    } else {
        (0..tasks).for_each(run);
    }
}

/// A micro-kernel of [`gemm_packed_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// 8 × 32 tiles, AVX-512F.
    Avx512,
    /// 6 × 16 tiles, AVX2 + FMA.
    Avx2,
    /// Plain Rust (any CPU).
    Portable,
}

impl Kernel {
    /// Every kernel, fastest first.
    pub const ALL: [Kernel; 3] = [Kernel::Avx512, Kernel::Avx2, Kernel::Portable];

    /// The fastest kernel this CPU runs.
    pub fn detect() -> Self {
        Self::ALL
            .into_iter()
            .find(|k| k.is_available())
            .unwrap_or(Kernel::Portable)
    }

    /// Whether this CPU runs `self`.
    pub fn is_available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            Kernel::Portable => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Rows of one micro-tile.
    fn mr(self) -> usize {
        match self {
            Kernel::Avx512 => 8,
            Kernel::Avx2 => 6,
            Kernel::Portable => 4,
        }
    }

    /// Columns of one micro-tile (a whole panel or half of one).
    fn nr(self) -> usize {
        match self {
            Kernel::Avx2 => 16,
            _ => NR,
        }
    }

    /// Rows of one parallel task.
    fn mc(self) -> usize {
        match self {
            Kernel::Avx2 => MC_AVX2,
            _ => MC,
        }
    }
}

/// One block of `rows ≤ MC` rows × panels `p0..p1`, all of `k`.
#[allow(clippy::too_many_arguments)]
unsafe fn row_block(
    kernel: Kernel,
    a: *const f32,
    lda: usize,
    rows: usize,
    b: &PackedMatrix,
    (p0, p1): (usize, usize),
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
) {
    let (k, n) = (b.k, b.n);
    let (mr, nr) = (kernel.mr(), kernel.nr());
    let kblocks = k.div_ceil(KC).max(1);
    let kc_len = k.div_ceil(kblocks);
    for kb in 0..kblocks {
        let k0 = kb * kc_len;
        let kc = kc_len.min(k - k0.min(k));
        let accumulate = kb > 0;
        for p in p0..p1 {
            // Sub-panels of `nr` columns (the whole panel, or AVX2's halves).
            let mut j0 = p * NR;
            let panel_end = (j0 + NR).min(n);
            let mut bp = b.panel(p).as_ptr().add(k0 * NR);
            while j0 < panel_end {
                let w = nr.min(panel_end - j0);
                let bias_p = if accumulate {
                    None
                } else {
                    bias.map(|s| s.as_ptr().add(j0))
                };
                let mut i = 0;
                while i < rows {
                    let h = mr.min(rows - i);
                    let args = Tile {
                        kc,
                        a: a.add(i * lda + k0),
                        lda,
                        b: bp,
                        c: c.add(i * ldc + j0),
                        ldc,
                        w,
                        accumulate,
                        bias: bias_p,
                    };
                    dispatch(kernel, h, &args);
                    i += h;
                }
                j0 += nr;
                bp = bp.add(nr);
            }
        }
    }
}

/// One micro-tile: `h ≤ MR` rows × `w ≤ NR` columns over a `kc`-deep slab.
struct Tile {
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    w: usize,
    accumulate: bool,
    bias: Option<*const f32>,
}

unsafe fn dispatch(kernel: Kernel, h: usize, t: &Tile) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => match h {
            8 => x86::avx512::<8>(t),
            7 => x86::avx512::<7>(t),
            6 => x86::avx512::<6>(t),
            5 => x86::avx512::<5>(t),
            4 => x86::avx512::<4>(t),
            3 => x86::avx512::<3>(t),
            2 => x86::avx512::<2>(t),
            _ => x86::avx512::<1>(t),
        },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => match h {
            6 => x86::avx2::<6>(t),
            5 => x86::avx2::<5>(t),
            4 => x86::avx2::<4>(t),
            3 => x86::avx2::<3>(t),
            2 => x86::avx2::<2>(t),
            _ => x86::avx2::<1>(t),
        },
        _ => portable(h, t),
    }
}

unsafe fn portable(h: usize, t: &Tile) {
    portable_rows(h, (t.c, t.ldc, t.w), t.accumulate, t.bias, |i, acc| {
        for p in 0..t.kc {
            let av = *t.a.add(i * t.lda + p);
            let brow = std::slice::from_raw_parts(t.b.add(p * NR), NR);
            for (v, bv) in acc.iter_mut().zip(brow) {
                *v += av * bv;
            }
        }
    });
}

/// The row loop of the portable kernels (f32 and bf16): each of the `h` rows of a tile
/// starts from `C` (`accumulate`), the bias or 0, gets `add(row, &mut sums)`, and its first
/// `w` columns are stored to `C` at row stride `ldc`.
///
/// # Safety
/// `c` holds `h` rows of `w` at stride `ldc` (read too when `accumulate`); `bias` holds `w`.
pub(crate) unsafe fn portable_rows(
    h: usize,
    (c, ldc, w): (*mut f32, usize, usize),
    accumulate: bool,
    bias: Option<*const f32>,
    mut add: impl FnMut(usize, &mut [f32; NR]),
) {
    for i in 0..h {
        let mut acc = [0.0f32; NR];
        if accumulate {
            for (j, v) in acc.iter_mut().enumerate().take(w) {
                *v = *c.add(i * ldc + j);
            }
        } else if let Some(bias) = bias {
            for (j, v) in acc.iter_mut().enumerate().take(w) {
                *v = *bias.add(j);
            }
        }
        add(i, &mut acc);
        for (j, v) in acc.iter().enumerate().take(w) {
            *c.add(i * ldc + j) = *v;
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use super::{NR, Tile};
    use std::arch::x86_64::*;

    /// Lane masks of a tile `w ≤ 32` columns wide: its first and second 16 columns.
    pub(crate) fn edge_masks(w: usize) -> (u16, u16) {
        if w >= 32 {
            (0xffff, 0xffff)
        } else if w >= 16 {
            (0xffff, ((1u32 << (w - 16)) - 1) as u16)
        } else {
            (((1u32 << w) - 1) as u16, 0)
        }
    }

    /// The two accumulator rows of an `MR × 32` AVX-512 tile at its start: `C`'s current values
    /// (`accumulate`, a later `k` block), else the bias, else zero.
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn tile_start<const MR: usize>(
        c: *const f32,
        ldc: usize,
        accumulate: bool,
        bias: Option<*const f32>,
        (m0, m1): (u16, u16),
    ) -> ([__m512; MR], [__m512; MR]) {
        let mut c0 = [_mm512_setzero_ps(); MR];
        let mut c1 = [_mm512_setzero_ps(); MR];
        if accumulate {
            for i in 0..MR {
                let row = c.add(i * ldc);
                c0[i] = _mm512_maskz_loadu_ps(m0, row);
                c1[i] = _mm512_maskz_loadu_ps(m1, row.add(16));
            }
        } else if let Some(bias) = bias {
            let b0 = _mm512_maskz_loadu_ps(m0, bias);
            let b1 = _mm512_maskz_loadu_ps(m1, bias.add(16));
            c0 = [b0; MR];
            c1 = [b1; MR];
        }
        (c0, c1)
    }

    /// Store an `MR × 32` AVX-512 tile's accumulators, masked to its width.
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn tile_store<const MR: usize>(
        c: *mut f32,
        ldc: usize,
        (m0, m1): (u16, u16),
        (c0, c1): (&[__m512; MR], &[__m512; MR]),
    ) {
        for i in 0..MR {
            let row = c.add(i * ldc);
            _mm512_mask_storeu_ps(row, m0, c0[i]);
            _mm512_mask_storeu_ps(row.add(16), m1, c1[i]);
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn avx512<const MR: usize>(t: &Tile) {
        let masks = edge_masks(t.w);
        let (mut c0, mut c1) = tile_start::<MR>(t.c, t.ldc, t.accumulate, t.bias, masks);
        let mut a = [t.a; MR];
        for (i, ai) in a.iter_mut().enumerate() {
            *ai = t.a.add(i * t.lda);
        }
        let mut b = t.b;
        for p in 0..t.kc {
            let b0 = _mm512_load_ps(b);
            let b1 = _mm512_load_ps(b.add(16));
            for i in 0..MR {
                let av = _mm512_set1_ps(*a[i].add(p));
                c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
                c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
            }
            b = b.add(NR);
        }
        tile_store::<MR>(t.c, t.ldc, masks, (&c0, &c1));
    }

    /// `MR × w` (`w ≤ 16`) tile: two `ymm` accumulators per row; `B` rows are read at the
    /// panel stride [`NR`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2<const MR: usize>(t: &Tile) {
        let full = t.w == 16;
        let mut c0 = [_mm256_setzero_ps(); MR];
        let mut c1 = [_mm256_setzero_ps(); MR];
        let mut tmp = [0.0f32; 16];
        for i in 0..MR {
            let src: Option<*const f32> = if t.accumulate {
                Some(t.c.add(i * t.ldc))
            } else {
                t.bias
            };
            if let Some(src) = src {
                let src = if full {
                    src
                } else {
                    tmp[..t.w].copy_from_slice(std::slice::from_raw_parts(src, t.w));
                    tmp[t.w..].fill(0.0);
                    tmp.as_ptr()
                };
                c0[i] = _mm256_loadu_ps(src);
                c1[i] = _mm256_loadu_ps(src.add(8));
            }
        }
        let mut a = [t.a; MR];
        for (i, ai) in a.iter_mut().enumerate() {
            *ai = t.a.add(i * t.lda);
        }
        let mut b = t.b;
        // k unrolled by 4: the loop's bookkeeping would otherwise cost about as many
        // instructions as its 12 FMAs, and the front end, not the FMA pipes, set the pace
        let mut p = 0;
        while p + 4 <= t.kc {
            for u in 0..4 {
                let b0 = _mm256_load_ps(b.add(u * NR));
                let b1 = _mm256_load_ps(b.add(u * NR + 8));
                for i in 0..MR {
                    let av = _mm256_broadcast_ss(&*a[i].add(p + u));
                    c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
                    c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
                }
            }
            b = b.add(4 * NR);
            p += 4;
        }
        while p < t.kc {
            let b0 = _mm256_load_ps(b);
            let b1 = _mm256_load_ps(b.add(8));
            for i in 0..MR {
                let av = _mm256_broadcast_ss(&*a[i].add(p));
                c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
                c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
            }
            b = b.add(NR);
            p += 1;
        }
        for i in 0..MR {
            let row = t.c.add(i * t.ldc);
            if full {
                _mm256_storeu_ps(row, c0[i]);
                _mm256_storeu_ps(row.add(8), c1[i]);
            } else {
                _mm256_storeu_ps(tmp.as_mut_ptr(), c0[i]);
                _mm256_storeu_ps(tmp.as_mut_ptr().add(8), c1[i]);
                std::ptr::copy_nonoverlapping(tmp.as_ptr(), row, t.w);
            }
        }
    }
}
