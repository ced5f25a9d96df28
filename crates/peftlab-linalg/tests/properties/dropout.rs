//! The fast dropout (`dropout`): burn's semantics (keep rate, scale, identity off training),
//! a backward that uses the forward's mask, and masks decided by the device seed.

use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Tensor, TensorData};

use crate::common::{burn_rng, lcg, values};

fn layer(p: f64) -> Dropout {
    DropoutConfig::new(p).init()
}

#[test]
fn keeps_one_minus_p_scales_by_its_inverse_and_the_gradient_uses_the_same_mask() {
    let _rng = burn_rng();
    let dev = Device::flex().autodiff();
    let n = 200_000;
    let xv: Vec<f32> = lcg(3, n).into_iter().map(|v| v + 2.0).collect(); // never 0
    let rv = lcg(4, n);
    for p in [0.1, 0.5] {
        dev.seed(7);
        let x = Tensor::<2>::from_data(TensorData::new(xv.clone(), [n / 100, 100]), &dev)
            .require_grad();
        let r = Tensor::<2>::from_data(TensorData::new(rv.clone(), [n / 100, 100]), &dev);
        let y = peftlab_linalg::dropout::forward(&layer(p), x.clone());
        let g = (y.clone() * r).sum().backward();
        let (y, dx) = (values(&y), values(&x.grad(&g).unwrap()));
        let scale = (1.0 / (1.0 - p)) as f32;
        let mut kept = 0usize;
        for i in 0..n {
            if y[i] != 0.0 {
                kept += 1;
                assert_eq!(y[i] as f32, xv[i] * scale, "a kept value is x/(1-p)");
                assert_eq!(dx[i] as f32, rv[i] * scale, "its gradient is r/(1-p)");
            } else {
                assert_eq!(dx[i], 0.0, "a dropped element gets no gradient");
            }
        }
        // binomial: |kept − n(1−p)| within 5 standard deviations
        let (mean, sd) = (n as f64 * (1.0 - p), (n as f64 * p * (1.0 - p)).sqrt());
        assert!(
            (kept as f64 - mean).abs() < 5.0 * sd,
            "p = {p}: kept {kept} of {n}, expected {mean:.0} ± {sd:.0}"
        );
    }
}

#[test]
fn the_device_seed_decides_the_mask() {
    let _rng = burn_rng();
    let dev = Device::flex().autodiff();
    let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32; 4096], [64, 64]), &dev);
    let mask = |seed: u64| {
        dev.seed(seed);
        values(&peftlab_linalg::dropout::forward(&layer(0.3), x.clone()))
    };
    assert_eq!(mask(11), mask(11), "same seed, same mask");
    assert_ne!(mask(11), mask(12), "another seed, another mask");
    // two calls after one seeding draw two different masks (each draws its own seed)
    dev.seed(11);
    let a = values(&peftlab_linalg::dropout::forward(&layer(0.3), x.clone()));
    let b = values(&peftlab_linalg::dropout::forward(&layer(0.3), x.clone()));
    assert_ne!(a, b);
}

#[test]
fn identity_when_not_training_off_autodiff_or_at_p_zero() {
    let x = lcg(5, 600);
    let ad = Device::flex().autodiff();
    let t = |dev: &Device| Tensor::<2>::from_data(TensorData::new(x.clone(), [6, 100]), dev);
    let mut eval = layer(0.5);
    eval.training = Param::from_bool(false);
    let same = |y: Tensor<2>| values(&y) == x.iter().map(|v| *v as f64).collect::<Vec<_>>();
    assert!(same(peftlab_linalg::dropout::forward(&eval, t(&ad))));
    assert!(same(peftlab_linalg::dropout::forward(
        &layer(0.5),
        t(&Device::flex())
    )));
    assert!(same(peftlab_linalg::dropout::forward(&layer(0.0), t(&ad))));
}
