//! Fused residual + LayerNorm and RMSNorm (`norm`) against burn's add + `module::layer_norm` /
//! `nn::RmsNorm` arithmetic: value and the gradients of both inputs under autodiff, with and
//! without β and the residual.
//!
//! Tolerance: means and variances are sums of `d` f32 terms of O(1), so each side is within a
//! few `d·ε` of the exact value relative to the output's scale; held to
//! `16·(d + 1)·ε·(1 + max|reference|)`.

use burn::tensor::{Device, Tensor, TensorData};
use peftlab_linalg::norm::{add_layer_norm, add_rms_norm, reference, rms_reference};
use proptest::prelude::*;

use crate::common::{close_rel, lcg, values};

const EPS: f64 = f32::EPSILON as f64;

/// `[B, T, d]` input and residual from `seed`, a norm `f(x, residual)` against its reference
/// `g`: output and both gradients (through a fixed random weighting of the output) within
/// `16·(d + 1)·ε`.
fn check<F, G>(
    b: usize,
    t: usize,
    d: usize,
    residual: bool,
    seed: u64,
    f: F,
    g: G,
) -> Result<(), TestCaseError>
where
    F: Fn(Tensor<3>, Option<Tensor<3>>) -> Tensor<3>,
    G: Fn(Tensor<3>, Option<Tensor<3>>) -> Tensor<3>,
{
    let dev = Device::flex().autodiff();
    let t3 = |s: u64| Tensor::<3>::from_data(TensorData::new(lcg(s, b * t * d), [b, t, d]), &dev);
    let w = t3(seed ^ 9);
    let run = |norm: &dyn Fn(Tensor<3>, Option<Tensor<3>>) -> Tensor<3>| {
        let x = t3(seed).require_grad();
        let r = residual.then(|| t3(seed ^ 1).require_grad());
        let y = norm(x.clone(), r.clone());
        let grads = (y.clone() * w.clone()).sum().backward();
        let dx = values(&x.grad(&grads).expect("dx"));
        let dr = r.map(|r| values(&r.grad(&grads).expect("dr")));
        (values(&y), dx, dr)
    };
    let (y1, dx1, dr1) = run(&f);
    let (y2, dx2, dr2) = run(&g);
    let tol = 16.0 * (d + 1) as f64 * EPS;
    close_rel(&y1, &y2, tol, "y")?;
    close_rel(&dx1, &dx2, tol, "dx")?;
    if let (Some(a), Some(b)) = (dr1, dr2) {
        close_rel(&a, &b, tol, "dr")?;
    }
    Ok(())
}

/// `[d]` vector from `seed` on the autodiff device.
fn vector(d: usize, seed: u64) -> Tensor<1> {
    Tensor::<1>::from_data(
        TensorData::new(lcg(seed, d), [d]),
        &Device::flex().autodiff(),
    )
}

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
        let gamma = vector(d, seed ^ 7);
        let beta = with_beta.then(|| vector(d, seed ^ 8));
        check(
            b, t, d, with_residual, seed,
            |x, r| add_layer_norm(x, r, &gamma, beta.as_ref(), eps),
            |x, r| reference(x, r, &gamma, beta.as_ref(), eps),
        )?;
    }

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
        let gamma = vector(d, seed ^ 7);
        check(
            b, t, d, with_residual, seed,
            |x, r| add_rms_norm(x, r, &gamma, eps),
            |x, r| rms_reference(x, r, &gamma, eps),
        )?;
        // and without autodiff
        let x = Tensor::<3>::from_data(TensorData::new(lcg(seed, b * t * d), [b, t, d]), &Device::flex());
        let gp = gamma.inner();
        close_rel(
            &values(&add_rms_norm(x.clone(), None, &gp, eps)),
            &values(&rms_reference(x, None, &gp, eps)),
            16.0 * (d + 1) as f64 * EPS,
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
