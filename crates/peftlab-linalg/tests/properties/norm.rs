//! Fused residual + LayerNorm (`norm`) against burn's add + `module::layer_norm`: value and the
//! gradients of both inputs under autodiff, with and without β and the residual.
//!
//! Tolerance: means and variances are sums of `d` f32 terms of O(1), so each side is within a
//! few `d·ε` of the exact value relative to the output's scale; held to
//! `16·(d + 1)·ε·(1 + max|reference|)`.

use burn::tensor::{Device, Tensor, TensorData};
use peftlab_linalg::norm::{add_layer_norm, add_rms_norm, reference, rms_reference};
use proptest::prelude::*;

use crate::common::{close_rel, lcg, values};

const EPS: f64 = f32::EPSILON as f64;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn fused_add_layer_norm_matches_burn_with_gradients(
        b in 1usize..3,
        t in 1usize..9,
        d in 1usize..70,
        with_residual in any::<bool>(),
        with_beta in any::<bool>(),
        eps in prop_oneof![Just(1e-12), Just(1e-5)],
        seed in any::<u64>(),
    ) {
        let dev = Device::flex().autodiff();
        let t3 = |s: u64| Tensor::<3>::from_data(TensorData::new(lcg(s, b * t * d), [b, t, d]), &dev);
        let gamma = Tensor::<1>::from_data(TensorData::new(lcg(seed ^ 7, d), [d]), &dev);
        let beta = with_beta.then(|| Tensor::<1>::from_data(TensorData::new(lcg(seed ^ 8, d), [d]), &dev));
        let w = t3(seed ^ 9);
        let run = |fused: bool| {
            let x = t3(seed).require_grad();
            let r = with_residual.then(|| t3(seed ^ 1).require_grad());
            let y = if fused {
                add_layer_norm(x.clone(), r.clone(), &gamma, beta.as_ref(), eps)
            } else {
                reference(x.clone(), r.clone(), &gamma, beta.as_ref(), eps)
            };
            let g = (y.clone() * w.clone()).sum().backward();
            let dx = values(&x.grad(&g).expect("dx"));
            let dr = r.map(|r| values(&r.grad(&g).expect("dr")));
            (values(&y), dx, dr)
        };
        let (y1, dx1, dr1) = run(true);
        let (y2, dx2, dr2) = run(false);
        let tol = 16.0 * (d + 1) as f64 * EPS;
        close_rel(&y1, &y2, tol, "y")?;
        close_rel(&dx1, &dx2, tol, "dx")?;
        if let (Some(a), Some(b)) = (dr1, dr2) {
            close_rel(&a, &b, tol, "dr")?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// RMSNorm (Llama's pre-norm): the same op without centring or β, against burn's
    /// `nn::RmsNorm` arithmetic; tolerance as above (`mean(z²)` is a sum of `d` terms).
    #[test]
    fn fused_add_rms_norm_matches_burn_with_gradients(
        b in 1usize..3,
        t in 1usize..9,
        d in 1usize..70,
        with_residual in any::<bool>(),
        eps in prop_oneof![Just(1e-6), Just(1e-5)],
        seed in any::<u64>(),
    ) {
        let dev = Device::flex().autodiff();
        let t3 = |s: u64| Tensor::<3>::from_data(TensorData::new(lcg(s, b * t * d), [b, t, d]), &dev);
        let gamma = Tensor::<1>::from_data(TensorData::new(lcg(seed ^ 7, d), [d]), &dev);
        let w = t3(seed ^ 9);
        let run = |fused: bool| {
            let x = t3(seed).require_grad();
            let r = with_residual.then(|| t3(seed ^ 1).require_grad());
            let y = if fused {
                add_rms_norm(x.clone(), r.clone(), &gamma, eps)
            } else {
                rms_reference(x.clone(), r.clone(), &gamma, eps)
            };
            let g = (y.clone() * w.clone()).sum().backward();
            let dx = values(&x.grad(&g).expect("dx"));
            let dr = r.map(|r| values(&r.grad(&g).expect("dr")));
            (values(&y), dx, dr)
        };
        let (y1, dx1, dr1) = run(true);
        let (y2, dx2, dr2) = run(false);
        let tol = 16.0 * (d + 1) as f64 * EPS;
        close_rel(&y1, &y2, tol, "y")?;
        close_rel(&dx1, &dx2, tol, "dx")?;
        if let (Some(a), Some(b)) = (dr1, dr2) {
            close_rel(&a, &b, tol, "dr")?;
        }
        // and without autodiff
        let plain = Device::flex();
        let x = Tensor::<3>::from_data(TensorData::new(lcg(seed, b * t * d), [b, t, d]), &plain);
        let gp = gamma.clone().inner();
        close_rel(
            &values(&add_rms_norm(x.clone(), None, &gp, eps)),
            &values(&rms_reference(x, None, &gp, eps)),
            tol,
            "inference y",
        )?;
    }
}

#[test]
fn trainable_gamma_takes_burns_layer_norm_and_gets_its_gradient() {
    let dev = Device::flex().autodiff();
    let x = Tensor::<2>::from_data(TensorData::new(lcg(1, 12), [3, 4]), &dev).require_grad();
    let gamma = Tensor::<1>::from_data(TensorData::new(lcg(2, 4), [4]), &dev).require_grad();
    let y = add_layer_norm(x, None, &gamma, None, 1e-5);
    let g = y.sum().backward();
    assert!(
        gamma.grad(&g).is_some(),
        "γ trains: its gradient must exist"
    );
}
