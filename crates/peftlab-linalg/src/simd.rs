//! Branch-free scalar math written to vectorize: called from loops inside functions compiled
//! with `#[target_feature(enable = "avx512f")]` (or AVX2+FMA), LLVM turns each into SIMD code.
//!
//! Accuracy (tested against f64 in `peftlab-models::act` and `tests/properties/attention.rs`):
//! [`exp`] has relative error < 2e-7 on `[-87, 88]` and clamps outside it.
//!
//! The reductions ([`sum`], [`max`], [`dot`], [`sum_by`]) keep [`LANES`] partial results and
//! combine them by a fixed pairwise tree: a plain `iter().sum()` is one serial chain of f32
//! adds (the compiler may not reorder it), 4 cycles an element. The order is fixed, so results
//! are the same on every run; they differ from the serial sum by rounding only.
//! [`vectorized!`](crate::vectorized) compiles a body for AVX-512F, AVX2+FMA and the baseline
//! and picks one at run time.

/// Partial results a reduction keeps (two AVX-512 or four AVX2 registers).
pub const LANES: usize = 32;

/// Folds `x` into [`LANES`] partial results by `op` (element `i` into partial `i mod LANES`,
/// in order), then combines them pairwise.
#[inline(always)]
fn fold(x: &[f32], init: f32, op: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = op(*a, v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        *a = op(*a, v);
    }
    tree(acc, op)
}

/// Pairwise combination of the partial results: `LANES → 1` in `log₂ LANES` steps.
#[inline(always)]
fn tree(mut acc: [f32; LANES], op: impl Fn(f32, f32) -> f32) -> f32 {
    let mut w = LANES / 2;
    while w > 0 {
        for i in 0..w {
            acc[i] = op(acc[i], acc[i + w]);
        }
        w /= 2;
    }
    acc[0]
}

/// `Σ xᵢ` (0 for an empty slice).
#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    fold(x, 0.0, |a, v| a + v)
}

/// `maxᵢ xᵢ` as `f32::max` takes it (NaNs ignored; `-∞` for an empty slice).
#[inline(always)]
pub fn max(x: &[f32]) -> f32 {
    fold(x, f32::NEG_INFINITY, f32::max)
}

/// `Σ f(xᵢ)`.
#[inline(always)]
pub fn sum_by(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        *a += f(v);
    }
    tree(acc, |a, b| a + b)
}

/// `Σ xᵢ·yᵢ` over the shorter of the two slices.
#[inline(always)]
pub fn dot(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    let mut acc = [0.0f32; LANES];
    let (mut cx, mut cy) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    for (a, b) in (&mut cx).zip(&mut cy) {
        for ((s, &u), &v) in acc.iter_mut().zip(a).zip(b) {
            *s += u * v;
        }
    }
    for ((s, &u), &v) in acc.iter_mut().zip(cx.remainder()).zip(cy.remainder()) {
        *s += u * v;
    }
    tree(acc, |a, b| a + b)
}

/// `$vis fn $name(args) -> R { body }`: the body (written with the `#[inline(always)]`
/// helpers of [`simd`](crate::simd)) compiled for AVX-512F where the CPU has it, else for
/// AVX2+FMA, else for the baseline target, chosen at run time on every call. The body sees the
/// items of the enclosing module, not the enclosing function's generics.
///
/// ```
/// peftlab_linalg::vectorized!(fn total(x: &[f32]) -> f32 { peftlab_linalg::simd::sum(x) });
/// assert_eq!(total(&[1.0, 2.0, 3.5]), 6.5);
/// ```
#[macro_export]
macro_rules! vectorized {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if ::std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked just above).
                    return unsafe { avx512($($arg),*) };
                }
                if ::std::arch::is_x86_feature_detected!("avx2")
                    && ::std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has AVX2 and FMA (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

const LOG2E: f32 = std::f32::consts::LOG2_E;
// ln 2 split so that n·LN2_HI is exact for |n| < 2^9
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;

/// `e^x` for f32 without branches: `2^n · p(z)`, `n = round(x·log2 e)`, `|z| ≤ ln2/2`,
/// degree-7 Taylor polynomial (truncation error < 3e-9).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // max/min, not clamp: a NaN input must map to a finite value here (the integer conversion
    // below would be undefined on NaN); the callers' outer `x·…` still propagates the NaN
    #[allow(clippy::manual_clamp)]
    let x = x.max(-87.0).min(88.0);
    // round to nearest by the 1.5·2^23 trick (exact for |y| < 2^22, vectorizes without SSE4.1)
    let n = (x * LOG2E + 12_582_912.0) - 12_582_912.0;
    let z = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + z * (1.0
            + z * (0.5
                + z * (1.0 / 6.0
                    + z * (1.0 / 24.0
                        + z * (1.0 / 120.0 + z * (1.0 / 720.0 + z * (1.0 / 5040.0)))))));
    // SAFETY: x is finite in [-87, 88], so n is an integer in [-126, 127]: the conversion is exact
    let n = unsafe { n.to_int_unchecked::<i32>() };
    p * f32::from_bits(((n + 127) << 23) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::vectorized!(
        fn sum_fast(x: &[f32]) -> f32 {
            sum(x)
        }
    );
    crate::vectorized!(
        fn dot_fast(x: &[f32], y: &[f32]) -> f32 {
            dot(x, y)
        }
    );

    /// Integer values below 2^24 in total: every order of summation is exact, so a lane that is
    /// dropped, counted twice or left out of the tree changes the result.
    #[test]
    fn reductions_are_exact_on_integers_for_every_tail() {
        for n in 0..=3 * LANES + 5 {
            let x: Vec<f32> = (0..n).map(|i| ((i * 37) % 101) as f32 - 50.0).collect();
            let y: Vec<f32> = (0..n).map(|i| ((i * 11) % 7) as f32 - 3.0).collect();
            let want: f32 = x.iter().map(|&v| v as f64).sum::<f64>() as f32;
            assert_eq!(sum(&x), want, "sum, n = {n}");
            assert_eq!(sum_fast(&x), want, "dispatched sum, n = {n}");
            let want_dot = x
                .iter()
                .zip(&y)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>();
            assert_eq!(dot(&x, &y), want_dot as f32, "dot, n = {n}");
            assert_eq!(dot_fast(&x, &y), want_dot as f32, "dispatched dot, n = {n}");
            let want_sq = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>();
            assert_eq!(sum_by(&x, |v| v * v), want_sq as f32, "sum_by, n = {n}");
            let want_max = x.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
            assert_eq!(max(&x), want_max, "max, n = {n}");
        }
    }

    /// On arbitrary floats the pairwise sum stays within the serial sum's error bound,
    /// `n·ε·Σ|xᵢ|` (f32 `ε` = 2^-24), of the f64 sum.
    #[test]
    fn sum_is_within_the_rounding_bound() {
        for n in [1usize, 31, 64, 384, 1000] {
            let x: Vec<f32> = (0..n)
                .map(|i| (((i * 7919) % 1000) as f32 / 997.0 - 0.5) * 1e3)
                .collect();
            let exact: f64 = x.iter().map(|&v| v as f64).sum();
            let abs: f64 = x.iter().map(|&v| (v as f64).abs()).sum();
            let bound = n as f64 * f32::EPSILON as f64 / 2.0 * abs;
            assert!(
                (sum(&x) as f64 - exact).abs() <= bound,
                "n = {n}: {} vs {exact}",
                sum(&x)
            );
        }
    }
}
