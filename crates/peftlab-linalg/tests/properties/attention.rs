//! The fused multi-head attention (`attention`) against burn's composition (split heads,
//! `module::attention`, merge): value and the gradients of q, k and v under autodiff.
//!
//! Tolerance: every entry is a sum of at most `T + dₕ` products of O(1) factors (softmax
//! weights ≤ 1, inputs in [−1, 1)), so each side's f32 error is a few `(T + dₕ)·ε` relative
//! to the largest entry; held to `8·(T + dₕ)·ε·(1 + max|reference|)`.

use burn::tensor::{Device, Tensor, TensorData};
use peftlab_linalg::attention::{multi_head_attention, reference};
use proptest::prelude::*;

use crate::common::{close_rel, lcg, values};

const EPS: f64 = f32::EPSILON as f64;

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
                .map(|x| values(&x.grad(&g).expect("a gradient")))
                .collect();
            (values(&o), grads)
        };
        let (o1, g1) = run(true);
        let (o2, g2) = run(false);
        let tol = 8.0 * (t + dh) as f64 * EPS;
        close_rel(&o1, &o2, tol, "output")?;
        for (name, (a, w)) in ["dq", "dk", "dv"].iter().zip(g1.iter().zip(&g2)) {
            close_rel(a, w, tol, name)?;
        }

        // and without autodiff
        let plain = Device::flex();
        let t3p = |s: u64| Tensor::<3>::from_data(TensorData::new(lcg(s, b * t * d), [b, t, d]), &plain);
        let bias_p = bias.map(|m| m.inner());
        let o3 = multi_head_attention(t3p(seed), t3p(seed ^ 1), t3p(seed ^ 2), bias_p.clone(), heads);
        let o4 = reference(t3p(seed), t3p(seed ^ 1), t3p(seed ^ 2), bias_p, heads);
        close_rel(&values(&o3), &values(&o4), tol, "inference output")?;
    }
}
