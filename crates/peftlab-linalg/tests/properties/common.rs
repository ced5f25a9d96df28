#![allow(dead_code)]
//! Shared helpers for the integration tests.

use burn::tensor::{DType, Device, Tensor, TensorData};
use faer::Mat;
use proptest::prelude::*;

/// The backend under test: burn's default device for the enabled features (`flex` by default).
pub fn device() -> Device {
    Device::default()
}

/// f64 on the CPU backends, f32 on GPU backends.
///
/// On wgpu (NVIDIA H200, Vulkan) burn reports f64 as supported, but the driver fails to compile
/// some f64 kernels ("NVVM compilation failed", after which the device is poisoned) and f64
/// `sin`/`cos` are only f32-accurate (Vulkan's GLSL.std.450 defines them for 16/32-bit floats),
/// so the GPU runs of these tests use f32 with f32 tolerances (docs/performance.md, GPU check).
pub fn precise_dtype(device: &Device) -> DType {
    if !cfg!(any(feature = "wgpu", feature = "cuda")) && device.supports_dtype(DType::F64) {
        DType::F64
    } else {
        DType::F32
    }
}

/// Machine epsilon of a float dtype.
pub fn eps(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => f64::EPSILON,
        _ => f32::EPSILON as f64,
    }
}

/// Row-major values → tensor of `dtype`.
pub fn tensor(
    values: &[f64],
    rows: usize,
    cols: usize,
    device: &Device,
    dtype: DType,
) -> Tensor<2> {
    Tensor::from_data(
        TensorData::new(values.to_vec(), [rows, cols]),
        (device, dtype),
    )
}

/// Tensor → row-major f64 values.
pub fn values<const D: usize>(t: &Tensor<D>) -> Vec<f64> {
    t.try_to_vec_as::<f64>().unwrap()
}

/// Largest absolute entry difference.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Row-major values → faer matrix.
pub fn mat<T: peftlab_linalg::Real>(values: &[f64], rows: usize, cols: usize) -> Mat<T> {
    Mat::from_fn(rows, cols, |i, j| T::from_f64(values[i * cols + j]))
}

/// Largest absolute entry of `QᵀQ − I` for a matrix with (supposedly) orthonormal columns.
pub fn orthonormality_error<T: peftlab_linalg::Real>(q: &Mat<T>) -> f64 {
    let g = q.transpose() * q;
    let mut worst = 0.0f64;
    for i in 0..g.nrows() {
        for j in 0..g.ncols() {
            let target = if i == j { 1.0 } else { 0.0 };
            worst = worst.max((g[(i, j)].to_f64() - target).abs());
        }
    }
    worst
}

/// Largest absolute entry of a matrix.
pub fn max_abs<T: peftlab_linalg::Real>(m: &Mat<T>) -> f64 {
    let mut worst = 0.0f64;
    for j in 0..m.ncols() {
        for i in 0..m.nrows() {
            worst = worst.max(m[(i, j)].to_f64().abs());
        }
    }
    worst
}

/// Frobenius norm of a matrix (in f64).
pub fn fro<T: peftlab_linalg::Real>(m: &Mat<T>) -> f64 {
    let mut s = 0.0;
    for j in 0..m.ncols() {
        for i in 0..m.nrows() {
            s += m[(i, j)].to_f64().powi(2);
        }
    }
    s.sqrt()
}

/// A random `[m, n]` matrix (row-major) with `m, n` in `1..=max_dim`, entries in `[-1, 1]`;
/// one case in four is rank-deficient (an outer product of rank ≤ 2) to stress zero singular
/// values.
pub fn matrix(max_dim: usize) -> impl Strategy<Value = (usize, usize, Vec<f64>)> {
    (1..=max_dim, 1..=max_dim, 0u8..4).prop_flat_map(|(m, n, kind)| {
        let dense = prop::collection::vec(-1.0f64..1.0, m * n);
        let factors = (
            prop::collection::vec(-1.0f64..1.0, m * 2),
            prop::collection::vec(-1.0f64..1.0, 2 * n),
        );
        (Just((m, n, kind)), dense, factors).prop_map(|((m, n, kind), dense, (x, y))| {
            if kind == 0 {
                let mut v = vec![0.0; m * n];
                for i in 0..m {
                    for j in 0..n {
                        v[i * n + j] = x[i * 2] * y[j] + x[i * 2 + 1] * y[n + j];
                    }
                }
                (m, n, v)
            } else {
                (m, n, dense)
            }
        })
    })
}

/// A random square `[n, n]` matrix, `n` in `1..=max_dim`, entries in `[-scale, scale]`.
pub fn square(max_dim: usize, scale: f64) -> impl Strategy<Value = (usize, Vec<f64>)> {
    (1..=max_dim).prop_flat_map(move |n| (Just(n), prop::collection::vec(-scale..scale, n * n)))
}

/// Central finite difference `(f(x + h e_k) − f(x − h e_k)) / 2h` of a scalar function for each
/// of the first `n` coordinates.
pub fn central_differences(x: &[f64], n: usize, h: f64, f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    (0..n)
        .map(|k| {
            let (mut up, mut dn) = (x.to_vec(), x.to_vec());
            up[k] += h;
            dn[k] -= h;
            (f(&up) - f(&dn)) / (2.0 * h)
        })
        .collect()
}

/// Central-difference step and absolute tolerance for gradient checks in `dtype`:
/// `(1e-6, 1e-6)` in f64 (truncation O(h²) and rounding O(ε/h) both ≈ 1e-10 relative),
/// `(1e-2, 2e-2)` in f32 (rounding ε/h ≈ 1e-5 dominates at smaller steps).
pub fn fd_step_and_tol(dtype: DType) -> (f64, f64) {
    if dtype == DType::F64 {
        (1e-6, 1e-6)
    } else {
        (1e-2, 2e-2)
    }
}

/// `len` values uniform in [−1, 1) from a 64-bit LCG seeded with `seed` (host data for the
/// fast-path tests: cheap, and any seed proptest draws is a valid one).
pub fn lcg(seed: u64, len: usize) -> Vec<f32> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Every `|got − want| ≤ tol · (1 + max|want|)`, else a failure naming `what` and the index.
pub fn close_rel(got: &[f64], want: &[f64], tol: f64, what: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len(), "{}: length", what);
    let scale = 1.0 + want.iter().fold(0.0f64, |a, x| a.max(x.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        prop_assert!(
            (g - w).abs() <= tol * scale,
            "{}[{}]: {} vs {} (tol {:e})",
            what,
            i,
            g,
            w,
            tol * scale
        );
    }
    Ok(())
}

/// Held by every test that seeds or draws from burn's RNG (one per process, shared by the
/// test threads), so a seeded draw is not interleaved with another test's.
pub static BURN_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Take [`BURN_RNG`] (a test that panicked while holding it does not poison the others).
pub fn burn_rng() -> std::sync::MutexGuard<'static, ()> {
    BURN_RNG.lock().unwrap_or_else(|e| e.into_inner())
}
