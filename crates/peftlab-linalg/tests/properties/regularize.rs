//! Orthogonality penalty, safe Frobenius norm, normalized-Frobenius importance.
//! Values are compared with an f64 host computation to `1e-4` relative (f32 tensors);
//! gradients in f64 to finite differences (`h = 1e-6`) within `1e-6`.

use super::common::*;
use burn::tensor::{DType, Tensor};
use peftlab_linalg::decomp::qr;
use peftlab_linalg::regularize::{
    FrobeniusImportance, OrthNorm, frobenius_norm, normalized_frobenius, orthogonality_penalty,
};
use proptest::prelude::*;

/// `‖A Aᵀ − I‖ + ‖Bᵀ B − I‖` on the host.
fn host_penalty(a: &[f64], b: &[f64], r: usize, d_in: usize, d_out: usize, squared: bool) -> f64 {
    let mut pa = 0.0;
    for i in 0..r {
        for j in 0..r {
            let dot: f64 = (0..d_in).map(|k| a[i * d_in + k] * a[j * d_in + k]).sum();
            pa += (dot - f64::from(u8::from(i == j))).powi(2);
        }
    }
    let mut pb = 0.0;
    for i in 0..r {
        for j in 0..r {
            let dot: f64 = (0..d_out).map(|k| b[k * r + i] * b[k * r + j]).sum();
            pb += (dot - f64::from(u8::from(i == j))).powi(2);
        }
    }
    if squared {
        pa + pb
    } else {
        pa.sqrt() + pb.sqrt()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn penalty_matches_host(
        r in 1usize..5, d_in in 1usize..8, d_out in 1usize..8,
        v in prop::collection::vec(-1.0f64..1.0, 2 * 5 * 8),
        squared in any::<bool>(),
    ) {
        let dev = device();
        let a = &v[..r * d_in];
        let b = &v[40..40 + d_out * r];
        let norm = if squared { OrthNorm::SquaredFrobenius } else { OrthNorm::Frobenius };
        let got = values(&orthogonality_penalty(
            tensor(a, r, d_in, &dev, DType::F32), tensor(b, d_out, r, &dev, DType::F32), norm).unwrap())[0];
        let want = host_penalty(a, b, r, d_in, d_out, squared);
        prop_assert!((got - want).abs() <= 1e-4 * want.max(1.0), "got {} want {}", got, want);
    }

    /// With orthonormal rows of `A` and columns of `B` the penalty vanishes and its gradient
    /// is finite (zero), not NaN.
    #[test]
    fn penalty_is_zero_with_finite_gradient_at_orthonormal_factors(
        r in 1usize..5, extra in 0usize..5, v in prop::collection::vec(-1.0f64..1.0, 9 * 9),
    ) {
        let d = r + extra;
        let q = qr(mat::<f64>(&v[..d * r], d, r).as_ref()).unwrap().q; // [d, r]
        prop_assume!(orthonormality_error(&q) < 1e-10);
        let b: Vec<f64> = (0..d * r).map(|k| q[(k / r, k % r)]).collect();
        let a: Vec<f64> = (0..r * d).map(|k| q[(k % d, k / d)]).collect(); // Qᵀ
        let dev = device().autodiff();
        let dtype = precise_dtype(&dev);
        let at = tensor(&a, r, d, &dev, dtype).require_grad();
        let bt = tensor(&b, d, r, &dev, dtype).require_grad();
        let p = orthogonality_penalty(at.clone(), bt.clone(), OrthNorm::Frobenius).unwrap();
        prop_assert!(values(&p)[0].abs() <= 1e-5);
        let grads = p.backward();
        // In f64 the residual A Aᵀ − I (~1e-16) is under the floor, so the gradient is ~0. In
        // f32 (GPU backends) the residual is rounding noise (~1e-7 per entry, squared norm
        // above FROBENIUS_FLOOR_SQ), and the norm's gradient is that noise's unit direction
        // times the factors: finite and at most 2‖A‖₂ = 2 per entry, not small (seen on wgpu).
        let bound = if dtype == DType::F64 { 1e-3 } else { 2.0 + 1e-3 };
        for g in [values(&at.grad(&grads).unwrap()), values(&bt.grad(&grads).unwrap())] {
            prop_assert!(g.iter().all(|x| x.is_finite() && x.abs() <= bound), "{:?}", g);
        }
    }
}

#[test]
fn penalty_gradient_matches_finite_differences() {
    let plain = device();
    let dtype = precise_dtype(&plain);
    let (h, tol) = fd_step_and_tol(dtype);
    let (r, d_in, d_out) = (3, 5, 4);
    let mut rng = peftlab_linalg::init::SeededRng::new(11);
    let x: Vec<f64> = (0..r * d_in + d_out * r)
        .map(|_| rng.uniform(-1.0, 1.0))
        .collect();
    let eval = |v: &[f64], dev: &burn::tensor::Device| {
        let a = tensor(&v[..r * d_in], r, d_in, dev, dtype);
        let b = tensor(&v[r * d_in..], d_out, r, dev, dtype);
        (
            a.clone(),
            b.clone(),
            orthogonality_penalty(a, b, OrthNorm::Frobenius).unwrap(),
        )
    };
    let dev = plain.clone().autodiff();
    let a = tensor(&x[..r * d_in], r, d_in, &dev, dtype).require_grad();
    let b = tensor(&x[r * d_in..], d_out, r, &dev, dtype).require_grad();
    let grads = orthogonality_penalty(a.clone(), b.clone(), OrthNorm::Frobenius)
        .unwrap()
        .backward();
    let mut g = values(&a.grad(&grads).unwrap());
    g.extend(values(&b.grad(&grads).unwrap()));
    let fd = central_differences(&x, x.len(), h, |v| values(&eval(v, &plain).2)[0]);
    for (k, (fd, ad)) in fd.iter().zip(&g).enumerate() {
        assert!((fd - ad).abs() <= tol, "entry {k}: fd {fd} autodiff {ad}");
    }
}

#[test]
fn frobenius_norm_value_and_zero_gradient() {
    let dev = device();
    let x = tensor(&[3.0, 4.0, 0.0, 12.0], 2, 2, &dev, DType::F32);
    assert!((values(&frobenius_norm(x.clone()))[0] - 13.0).abs() < 1e-5);
    // normalized: ‖C‖_F / m
    assert!((values(&normalized_frobenius(x, 4).unwrap())[0] - 3.25).abs() < 1e-5);
    let ad = dev.autodiff();
    let z = Tensor::<2>::zeros([3, 3], &ad).require_grad();
    let g = values(&z.grad(&frobenius_norm(z.clone()).backward()).unwrap());
    assert!(
        g.iter().all(|x| *x == 0.0),
        "gradient at 0 must be 0, got {g:?}"
    );
    assert!(normalized_frobenius(z, 0).is_err());
}

#[test]
fn importance_is_change_since_previous_check() {
    let mut imp = FrobeniusImportance::new(1.0);
    assert_eq!(imp.score(1.5).unwrap(), 0.5);
    assert_eq!(imp.score(1.25).unwrap(), -0.25);
    assert_eq!(imp.previous(), 1.25);
    assert!(imp.score(f64::NAN).is_err());
    assert_eq!(imp.previous(), 1.25, "a rejected value is not stored");
}

#[test]
fn mismatched_factors_are_typed_errors() {
    let dev = device();
    let a = tensor(&[0.0; 6], 2, 3, &dev, DType::F32);
    let b = tensor(&[0.0; 12], 4, 3, &dev, DType::F32);
    let err = orthogonality_penalty(a, b, OrthNorm::Frobenius).unwrap_err();
    assert!(err.to_string().contains("orthogonality_penalty B"), "{err}");
}
