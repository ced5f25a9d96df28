//! Properties of the faer-backed decompositions, for f32 and f64.
//!
//! Tolerances: with `k = max(m, n)` and `ε` the dtype's machine epsilon, reconstruction errors
//! are bounded by `C·k·ε·‖A‖` and orthogonality errors by `C·k·ε` with `C = 50` — backward-stable
//! algorithms give `O(k·ε)`; the constant absorbs the norm-equivalence factors. A wrong factor
//! (transposed `V`, unsorted `s`, a dropped sign) is off by `O(1)`.

use super::common::*;
use faer::Mat;
use peftlab_linalg::decomp::{
    eigh, eigh_tensor, qr, qr_tensor, singular_values, spectral_norm, svd, svd_tensor,
    svd_truncated,
};
use peftlab_linalg::{LinalgError, Real};
use proptest::prelude::*;

const C: f64 = 50.0;

fn check_svd<T: Real>(m: usize, n: usize, v: &[f64]) -> Result<(), TestCaseError> {
    let a = mat::<T>(v, m, n);
    let f = svd(a.as_ref()).unwrap();
    let k = m.max(n) as f64;
    let tol = C * k * T::EPSILON;
    prop_assert_eq!(f.s.len(), m.min(n));
    prop_assert_eq!((f.u.nrows(), f.u.ncols()), (m, m.min(n)));
    prop_assert_eq!((f.v.nrows(), f.v.ncols()), (n, m.min(n)));
    let resid = &a - f.reconstruct();
    prop_assert!(
        fro(&resid) <= tol * fro(&a).max(1e-300) + tol,
        "reconstruction {}",
        fro(&resid)
    );
    prop_assert!(orthonormality_error(&f.u) <= tol, "U not orthonormal");
    prop_assert!(orthonormality_error(&f.v) <= tol, "V not orthonormal");
    for w in f.s.windows(2) {
        prop_assert!(w[0] >= w[1], "singular values not sorted: {:?}", f.s);
    }
    prop_assert!(f.s.iter().all(|s| s.to_f64() >= 0.0));
    // the values-only path agrees
    let sv = singular_values(a.as_ref()).unwrap();
    for (x, y) in sv.iter().zip(&f.s) {
        prop_assert!((x.to_f64() - y.to_f64()).abs() <= tol * f.s[0].to_f64() + tol);
    }
    Ok(())
}

fn check_eckart_young<T: Real>(m: usize, n: usize, v: &[f64]) -> Result<(), TestCaseError> {
    let a = mat::<T>(v, m, n);
    let full = svd(a.as_ref()).unwrap();
    let k = m.min(n);
    let tol = C * m.max(n) as f64 * T::EPSILON * full.s[0].to_f64().max(1.0);
    for r in 1..k {
        let t = svd_truncated(a.as_ref(), r).unwrap();
        prop_assert_eq!(t.rank(), r);
        let resid = &a - t.reconstruct();
        let err = spectral_norm(resid.as_ref()).unwrap().to_f64();
        let want = full.s[r].to_f64();
        prop_assert!(
            (err - want).abs() <= tol,
            "r={}: ‖A−A_r‖₂={} σ_r+1={}",
            r,
            err,
            want
        );
    }
    Ok(())
}

fn check_qr<T: Real>(m: usize, n: usize, v: &[f64]) -> Result<(), TestCaseError> {
    let a = mat::<T>(v, m, n);
    let f = qr(a.as_ref()).unwrap();
    let k = m.min(n);
    let tol = C * m.max(n) as f64 * T::EPSILON;
    prop_assert_eq!(
        (f.q.nrows(), f.q.ncols(), f.r.nrows(), f.r.ncols()),
        (m, k, k, n)
    );
    let resid = &a - &f.q * &f.r;
    prop_assert!(fro(&resid) <= tol * fro(&a) + tol);
    prop_assert!(orthonormality_error(&f.q) <= tol);
    for i in 0..k {
        prop_assert!(f.r[(i, i)].to_f64() >= 0.0, "diag(R) negative");
        for j in 0..i.min(n) {
            prop_assert_eq!(f.r[(i, j)].to_f64(), 0.0, "R not upper triangular");
        }
    }
    Ok(())
}

fn check_eigh<T: Real>(n: usize, v: &[f64]) -> Result<(), TestCaseError> {
    // symmetrize: S = (X + Xᵀ)/2
    let x = mat::<f64>(v, n, n);
    let s = Mat::from_fn(n, n, |i, j| T::from_f64(0.5 * (x[(i, j)] + x[(j, i)])));
    let f = eigh(s.as_ref()).unwrap();
    let tol = C * n as f64 * T::EPSILON;
    prop_assert!(orthonormality_error(&f.vectors) <= tol);
    let wl = Mat::from_fn(n, n, |i, j| f.vectors[(i, j)] * f.values[j]);
    let resid = &s - &wl * f.vectors.transpose();
    prop_assert!(fro(&resid) <= tol * fro(&s).max(1.0));
    for w in f.values.windows(2) {
        prop_assert!(w[0] <= w[1], "eigenvalues not nondecreasing");
    }
    Ok(())
}

proptest! {
    #[test]
    fn svd_f64((m, n, v) in matrix(24)) { check_svd::<f64>(m, n, &v)?; }
    #[test]
    fn svd_f32((m, n, v) in matrix(24)) { check_svd::<f32>(m, n, &v)?; }
    #[test]
    fn eckart_young_f64((m, n, v) in matrix(16)) { check_eckart_young::<f64>(m, n, &v)?; }
    #[test]
    fn eckart_young_f32((m, n, v) in matrix(16)) { check_eckart_young::<f32>(m, n, &v)?; }
    #[test]
    fn qr_f64((m, n, v) in matrix(24)) { check_qr::<f64>(m, n, &v)?; }
    #[test]
    fn qr_f32((m, n, v) in matrix(24)) { check_qr::<f32>(m, n, &v)?; }
    #[test]
    fn eigh_f64((n, v) in square(20, 1.0)) { check_eigh::<f64>(n, &v)?; }
    #[test]
    fn eigh_f32((n, v) in square(20, 1.0)) { check_eigh::<f32>(n, &v)?; }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// The tensor front end returns the same factors as the host path, in the input's dtype.
    #[test]
    fn tensor_svd_matches_host((m, n, v) in matrix(12)) {
        let dev = device();
        for dtype in [burn::tensor::DType::F32, precise_dtype(&dev)] {
            let t = tensor(&v, m, n, &dev, dtype);
            let f = svd_tensor(&t, None).unwrap();
            prop_assert_eq!(f.u.dtype(), dtype);
            prop_assert_eq!(f.s.dims(), [m.min(n)]);
            let tol = C * m.max(n) as f64 * eps(dtype);
            prop_assert!(max_abs_diff(&values(&f.reconstruct()), &v) <= tol * 4.0);
            let q = qr_tensor(&t).unwrap();
            prop_assert!(max_abs_diff(&values(&q.q.matmul(q.r)), &v) <= tol * 4.0);
            if m >= 2 {
                let top = svd_tensor(&t, Some(1)).unwrap();
                prop_assert_eq!(top.u.dims(), [m, 1]);
                prop_assert!((values(&top.s)[0] - values(&f.s)[0]).abs() <= tol);
            }
        }
    }
}

#[test]
fn known_singular_values() {
    // diag(3, 2) embedded in a rotation: A = R · diag(3, 2), R a 30° rotation.
    let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
    let a = mat::<f64>(&[3.0 * c, -2.0 * s, 3.0 * s, 2.0 * c], 2, 2);
    let f = svd(a.as_ref()).unwrap();
    assert!(
        (f.s[0] - 3.0).abs() < 1e-14 && (f.s[1] - 2.0).abs() < 1e-14,
        "{:?}",
        f.s
    );
    let e = eigh(mat::<f64>(&[2.0, 1.0, 1.0, 2.0], 2, 2).as_ref()).unwrap();
    assert!((e.values[0] - 1.0).abs() < 1e-14 && (e.values[1] - 3.0).abs() < 1e-14);
}

#[test]
fn eigh_tensor_keeps_dtype_and_values() {
    let dev = device();
    let dtype = precise_dtype(&dev);
    let t = tensor(&[4.0, 1.0, 1.0, 3.0], 2, 2, &dev, dtype);
    let e = eigh_tensor(&t).unwrap();
    assert_eq!(e.values.dtype(), dtype);
    let want = [3.5 - 5f64.sqrt() / 2.0, 3.5 + 5f64.sqrt() / 2.0];
    assert!(max_abs_diff(&values(&e.values), &want) < 10.0 * eps(dtype));
}

#[test]
fn non_finite_input_is_a_typed_error() {
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let a = mat::<f64>(&[1.0, 2.0, 3.0, bad], 2, 2);
        for err in [
            svd(a.as_ref()).unwrap_err(),
            qr(a.as_ref()).unwrap_err(),
            eigh(a.as_ref()).unwrap_err(),
            singular_values(a.as_ref()).unwrap_err(),
        ] {
            match err {
                LinalgError::NonFinite { row, col, .. } => assert_eq!((row, col), (1, 1)),
                other => panic!("expected NonFinite, got {other:?}"),
            }
        }
    }
    let dev = device();
    let t = tensor(
        &[1.0, f64::NAN, 0.0, 1.0],
        2,
        2,
        &dev,
        burn::tensor::DType::F32,
    );
    let err = svd_tensor(&t, None).unwrap_err();
    assert!(
        matches!(err, LinalgError::NonFinite { row: 0, col: 1, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("svd input"),
        "error names the operand: {err}"
    );
}

#[test]
fn bad_shapes_are_typed_errors() {
    let empty = Mat::<f64>::zeros(0, 3);
    assert!(matches!(
        svd(empty.as_ref()),
        Err(LinalgError::Empty {
            rows: 0,
            cols: 3,
            ..
        })
    ));
    assert!(matches!(qr(empty.as_ref()), Err(LinalgError::Empty { .. })));
    let a = mat::<f64>(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3);
    assert!(matches!(eigh(a.as_ref()), Err(LinalgError::Shape { .. })));
    assert!(matches!(
        svd_truncated(a.as_ref(), 3),
        Err(LinalgError::Rank {
            rank: 3,
            max: 2,
            ..
        })
    ));
    assert!(matches!(
        svd_truncated(a.as_ref(), 0),
        Err(LinalgError::Rank { rank: 0, .. })
    ));
    let asym = mat::<f64>(&[1.0, 2.0, 0.0, 1.0], 2, 2);
    assert!(matches!(
        eigh(asym.as_ref()),
        Err(LinalgError::NotSymmetric { .. })
    ));
    let f = svd(a.as_ref()).unwrap();
    assert!(matches!(f.truncate(5), Err(LinalgError::Rank { .. })));
}

#[test]
fn sequential_and_parallel_paths_agree() {
    use peftlab_linalg::decomp::{Parallelism, parallelism, set_parallelism};
    let (m, n) = (40, 30);
    let mut rng = peftlab_linalg::init::SeededRng::new(2);
    let v: Vec<f64> = (0..m * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let a = mat::<f64>(&v, m, n);
    let run = |p| {
        set_parallelism(p);
        assert_eq!(parallelism(), p);
        let f = svd(a.as_ref()).unwrap();
        let q = qr(a.as_ref()).unwrap();
        (f.s, fro(&(&a - &q.q * &q.r)), orthonormality_error(&q.q))
    };
    let (s_seq, qr_seq, _) = run(Parallelism::Sequential);
    let (s_par, qr_par, orth_par) = run(Parallelism::Rayon(2));
    set_parallelism(Parallelism::Auto);
    assert!(max_abs_diff(&s_seq, &s_par) < 1e-12);
    assert!(qr_seq < 1e-12 && qr_par < 1e-12 && orth_par < 1e-12);
}
