//! Branch-free scalar math written to vectorize: called from loops inside functions compiled
//! with `#[target_feature(enable = "avx512f")]` (or AVX2+FMA), LLVM turns each into SIMD code.
//!
//! Accuracy (tested against f64 in `peftlab-models::act` and `tests/properties/attention.rs`):
//! [`exp`] has relative error < 2e-7 on `[-87, 88]` and clamps outside it.

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
