//! The fused multi-head attention (`attention`) against burn's composition (split heads,
//! `module::attention`, merge): value and the gradients of q, k and v under autodiff.
//!
//! Tolerance: every entry is a sum of at most `T + dₕ` products of O(1) factors (softmax
//! weights ≤ 1, inputs in [−1, 1)), so each side's f32 error is a few `(T + dₕ)·ε` relative
//! to the largest entry; held to `8·(T + dₕ)·ε·(1 + max|reference|)`.

use burn::tensor::{Device, Tensor, TensorData};
use peftlab_linalg::attention::{multi_head_attention, reference};
use proptest::prelude::*;

const EPS: f64 = f32::EPSILON as f64;

fn lcg(seed: u64, len: usize) -> Vec<f32> {
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

fn host<const D: usize>(t: &Tensor<D>) -> Vec<f64> {
    t.try_to_vec_as::<f64>().unwrap()
}

fn close(got: &[f64], want: &[f64], tol_rel: f64, what: &str) -> Result<(), TestCaseError> {
    let scale = 1.0 + want.iter().fold(0.0f64, |a, x| a.max(x.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if (g - w).abs() > tol_rel * scale {
            return Err(TestCaseError::fail(format!(
                "{what}[{i}]: {g} vs {w} (tol {:e})",
                tol_rel * scale
            )));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn fused_attention_matches_burns_composition_with_gradients(
        b in 1usize..3,
        t in 1usize..12,
        heads in 1usize..4,
        dh in 1usize..10,
        masked in prop::collection::vec(any::<bool>(), 12),
        with_bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let d = heads * dh;
        let dev = Device::flex().autodiff();
        let t3 = |s: u64| Tensor::<3>::from_data(TensorData::new(lcg(s, b * t * d), [b, t, d]), &dev);
        // padding bias per key: −1e9 on masked keys (the last key of each row stays a token)
        let bias = with_bias.then(|| {
            let v: Vec<f32> = (0..b * t)
                .map(|i| if masked[i % 12] && i % t != t - 1 { -1e9 } else { 0.0 })
                .collect();
            Tensor::<2>::from_data(TensorData::new(v, [b, t]), &dev)
        });
        let r = t3(seed ^ 9);
        let run = |fused: bool| {
            let (q, k, v) = (
                t3(seed).require_grad(),
                t3(seed ^ 1).require_grad(),
                t3(seed ^ 2).require_grad(),
            );
            let o = if fused {
                multi_head_attention(q.clone(), k.clone(), v.clone(), bias.clone(), heads)
            } else {
                reference(q.clone(), k.clone(), v.clone(), bias.clone(), heads)
            };
            let g = (o.clone() * r.clone()).sum().backward();
            let grads: Vec<Vec<f64>> = [&q, &k, &v]
                .iter()
                .map(|x| host(&x.grad(&g).expect("a gradient")))
                .collect();
            (host(&o), grads)
        };
        let (o1, g1) = run(true);
        let (o2, g2) = run(false);
        let tol = 8.0 * (t + dh) as f64 * EPS;
        close(&o1, &o2, tol, "output")?;
        for (name, (a, w)) in ["dq", "dk", "dv"].iter().zip(g1.iter().zip(&g2)) {
            close(a, w, tol, name)?;
        }

        // and without autodiff
        let plain = Device::flex();
        let t3p = |s: u64| Tensor::<3>::from_data(TensorData::new(lcg(s, b * t * d), [b, t, d]), &plain);
        let bias_p = bias.map(|m| m.inner());
        let o3 = multi_head_attention(t3p(seed), t3p(seed ^ 1), t3p(seed ^ 2), bias_p.clone(), heads);
        let o4 = reference(t3p(seed), t3p(seed ^ 1), t3p(seed ^ 2), bias_p, heads);
        close(&host(&o3), &host(&o4), tol, "inference output")?;
    }
}
