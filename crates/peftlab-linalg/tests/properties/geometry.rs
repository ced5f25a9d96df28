//! Rotations, scaling, translation and the polar decomposition.
//!
//! Orthogonality is checked as `max |QᵀQ − I| <= 1e-5·n` in f32 (`1e-12·n` in f64) and
//! determinants as `|det − 1| <= 1e-4` (f32) — a reflection is off by 2.

use super::common::*;
use burn::tensor::{DType, Tensor};
use faer::linalg::solvers::DenseSolveCore;
use peftlab_linalg::LinalgError;
use peftlab_linalg::geometry::{
    affine, all_pairs, apply_affine, cayley, givens, givens_sequence, polar, rotation_scaling,
    scaling, split_affine,
};
use proptest::prelude::*;

fn det(v: &[f64], n: usize) -> f64 {
    mat::<f64>(v, n, n).as_ref().determinant()
}

fn assert_rotation(v: &[f64], n: usize, tol: f64) -> Result<(), TestCaseError> {
    let q = mat::<f64>(v, n, n);
    prop_assert!(orthonormality_error(&q) <= tol * n as f64, "not orthogonal");
    prop_assert!((det(v, n) - 1.0).abs() <= 100.0 * tol, "det {}", det(v, n));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn givens_is_a_plane_rotation(n in 2usize..8, a in 0usize..8, b in 0usize..8, th in -3.2f64..3.2) {
        let (i, j) = (a % n, b % n);
        prop_assume!(i != j);
        let dev = device();
        let theta = Tensor::<1>::from_data([th], (&dev, precise_dtype(&dev)));
        let g = values(&givens(n, i, j, theta).unwrap());
        assert_rotation(&g, n, 1e-12_f64.max(eps(precise_dtype(&dev))))?;
        // it maps e_i to cos θ e_i + sin θ e_j (column i of G)
        for row in 0..n {
            let want = if row == i { th.cos() } else if row == j { th.sin() } else { 0.0 };
            prop_assert!((g[row * n + i] - want).abs() <= 1e-6);
        }
    }

    #[test]
    fn givens_product_over_all_pairs_is_special_orthogonal(n in 1usize..7, seed in any::<u64>()) {
        let dev = device();
        let pairs = all_pairs(n);
        prop_assert_eq!(pairs.len(), n * (n - 1) / 2);
        let mut rng = peftlab_linalg::init::SeededRng::new(seed);
        let th: Vec<f64> = pairs.iter().map(|_| rng.uniform(-3.0, 3.0)).collect();
        let thetas = Tensor::<1>::from_data(burn::tensor::TensorData::new(th, [pairs.len()]), &dev);
        let q = values(&givens_sequence(n, &pairs, thetas).unwrap());
        assert_rotation(&q, n, 1e-5)?;
    }

    #[test]
    fn cayley_is_special_orthogonal((n, v) in square(8, 2.0)) {
        let dev = device();
        let q = values(&cayley(tensor(&v, n, n, &dev, DType::F32)).unwrap());
        assert_rotation(&q, n, 1e-5)?;
        // and it matches the closed form (I + S)⁻¹(I − S) computed on the host in f64
        let x = mat::<f64>(&v, n, n);
        let s = &x - x.transpose();
        let eye = faer::Mat::<f64>::identity(n, n);
        let want = (&eye + &s).partial_piv_lu().inverse() * (&eye - &s);
        let want: Vec<f64> = (0..n * n).map(|k| want[(k / n, k % n)]).collect();
        prop_assert!(max_abs_diff(&q, &want) <= 1e-4);
    }

    #[test]
    fn polar_stretch_is_exactly_symmetric_in_f32((n, v) in square(8, 1.0)) {
        // f32 is what GPU backends compute in; V Σ Vᵀ formed by a product is symmetric only
        // up to rounding, which the symmetric eigensolver then refuses (seen on wgpu)
        let dev = device();
        let p = polar(&tensor(&v, n, n, &dev, DType::F32)).unwrap();
        let s = values(&p.stretch);
        for i in 0..n { for j in 0..i { prop_assert_eq!(s[i * n + j], s[j * n + i]); } }
        prop_assert!(peftlab_linalg::decomp::eigh(mat::<f64>(&s, n, n).as_ref()).is_ok());
        // still T = R P to f32 precision (tolerance: 100 ε_f32 · n on entries of size ≤ 1)
        let rp = values(&p.rotation.clone().matmul(p.stretch.clone()));
        prop_assert!(max_abs_diff(&rp, &v) <= 100.0 * f32::EPSILON as f64 * n as f64);
    }

    #[test]
    fn polar_reconstructs((n, v) in square(8, 1.0)) {
        let dev = device();
        let dtype = precise_dtype(&dev);
        let tol = 1e3 * eps(dtype) * n as f64;
        let t = tensor(&v, n, n, &dev, dtype);
        let p = polar(&t).unwrap();
        let r = values(&p.rotation);
        let s = values(&p.stretch);
        prop_assert!(orthonormality_error(&mat::<f64>(&r, n, n)) <= tol);
        prop_assert!(max_abs_diff(&values(&p.rotation.clone().matmul(p.stretch.clone())), &v) <= tol);
        for i in 0..n { for j in 0..n { prop_assert!((s[i * n + j] - s[j * n + i]).abs() <= tol); } }
        let ev = peftlab_linalg::decomp::eigh(mat::<f64>(&s, n, n).as_ref()).unwrap();
        prop_assert!(ev.values[0] >= -tol, "stretch not PSD");
        let d = det(&v, n);
        prop_assume!(d.abs() > 1e-6);
        prop_assert_eq!(p.det_sign, d.signum());
        let rs = rotation_scaling(&t).unwrap();
        assert_rotation(&values(&rs.rotation), n, tol)?;
        prop_assert!(max_abs_diff(&values(&rs.reconstruct()), &v) <= tol);
        let neg = values(&rs.scales).iter().filter(|x| **x < 0.0).count();
        prop_assert_eq!(neg, usize::from(d < 0.0));
    }

    #[test]
    fn affine_maps_points(n in 1usize..6, pts in 1usize..5, seed in any::<u64>()) {
        let dev = device();
        let mut rng = peftlab_linalg::init::SeededRng::new(seed);
        let m: Vec<f64> = (0..n * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let t: Vec<f64> = (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let p: Vec<f64> = (0..pts * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let h = affine(tensor(&m, n, n, &dev, DType::F32), Tensor::<1>::from_data(burn::tensor::TensorData::new(t.clone(), [n]), &dev)).unwrap();
        let hv = values(&h);
        prop_assert_eq!(hv[n * (n + 1) + n], 1.0);
        let out = values(&apply_affine(tensor(&p, pts, n, &dev, DType::F32), h.clone()).unwrap());
        for q in 0..pts { for i in 0..n {
            let want: f64 = (0..n).map(|j| m[i * n + j] * p[q * n + j]).sum::<f64>() + t[i];
            prop_assert!((out[q * n + i] - want).abs() <= 1e-5);
        }}
        let (lin, tr) = split_affine(h).unwrap();
        prop_assert!(max_abs_diff(&values(&lin), &m) <= 1e-7);
        prop_assert!(max_abs_diff(&values(&tr), &t) <= 1e-7);
    }
}

#[test]
fn cayley_gradient_matches_finite_differences() {
    let plain = device();
    let dtype = precise_dtype(&plain);
    let (h, tol) = fd_step_and_tol(dtype);
    let n = 4;
    let mut rng = peftlab_linalg::init::SeededRng::new(5);
    let x: Vec<f64> = (0..n * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let w: Vec<f64> = (0..n * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let dev = plain.clone().autodiff();
    let xt = tensor(&x, n, n, &dev, dtype).require_grad();
    let loss = (cayley(xt.clone()).unwrap() * tensor(&w, n, n, &dev, dtype)).sum();
    let g = values(&xt.grad(&loss.backward()).unwrap());
    let eval = |v: &[f64]| {
        values(
            &(cayley(tensor(v, n, n, &plain, dtype)).unwrap() * tensor(&w, n, n, &plain, dtype))
                .sum(),
        )[0]
    };
    let fd = central_differences(&x, n * n, h, eval);
    for (k, (fd, ad)) in fd.iter().zip(&g).enumerate() {
        assert!((fd - ad).abs() <= tol, "entry {k}: fd {fd} autodiff {ad}");
    }
}

#[test]
fn scaling_is_diagonal() {
    let dev = device();
    let s = scaling(Tensor::<1>::from_data([2.0, -3.0, 0.5], &dev));
    assert_eq!(
        values(&s),
        vec![2.0, 0.0, 0.0, 0.0, -3.0, 0.0, 0.0, 0.0, 0.5]
    );
}

#[test]
fn bad_arguments_are_typed_errors() {
    let dev = device();
    let th = Tensor::<1>::from_data([0.1], &dev);
    assert!(matches!(
        givens(3, 1, 1, th.clone()),
        Err(LinalgError::InvalidArgument { .. })
    ));
    assert!(matches!(
        givens(3, 0, 3, th.clone()),
        Err(LinalgError::InvalidArgument { .. })
    ));
    assert!(givens_sequence(3, &[(0, 1), (1, 2)], th).is_err());
    let rect = tensor(&[0.0; 6], 2, 3, &dev, DType::F32);
    assert!(matches!(
        cayley(rect.clone()),
        Err(LinalgError::Shape { .. })
    ));
    assert!(matches!(polar(&rect), Err(LinalgError::Shape { .. })));
    let sq = tensor(&[1.0, 0.0, 0.0, 1.0], 2, 2, &dev, DType::F32);
    assert!(affine(sq.clone(), Tensor::<1>::from_data([1.0, 2.0, 3.0], &dev)).is_err());
    let nan = tensor(&[1.0, f64::NAN, 0.0, 1.0], 2, 2, &dev, DType::F32);
    assert!(matches!(polar(&nan), Err(LinalgError::NonFinite { .. })));
}
