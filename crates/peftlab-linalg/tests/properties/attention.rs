//! The fused multi-head attention (`attention`) against burn's composition (split heads,
//! `module::attention`, merge): value and the gradients of q, k and v under autodiff.
//!
//! Tolerance: every entry is a sum of at most `T + dₕ` products of O(1) factors (softmax
//! weights ≤ 1, inputs in [−1, 1)), so each side's f32 error is a few `(T + dₕ)·ε` relative
//! to the largest entry; held to `8·(T + dₕ)·ε·(1 + max|reference|)`.

use burn::tensor::{Device, Tensor, TensorData};
use peftlab_linalg::attention::{
    causal_attention, causal_reference, multi_head_attention, reference,
};
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Causal grouped-query attention (Llama/SmolLM2: `KV < H`, queries after `past` cached
    /// keys) against burn's composition with repeated KV heads and a causal bias; tolerance as
    /// above with `T` the number of keys.
    #[test]
    fn fused_causal_gqa_attention_matches_burns_composition_with_gradients(
        b in 1usize..3,
        tq in 1usize..10,
        past in 0usize..4,
        kv in 1usize..3,
        group in 1usize..4,
        dh in 1usize..9,
        masked in prop::collection::vec(any::<bool>(), 16),
        with_bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let (heads, tk) = (kv * group, past + tq);
        let dev = Device::flex().autodiff();
        let t3 = |s: u64, t: usize, w: usize| {
            Tensor::<3>::from_data(TensorData::new(lcg(s, b * t * w), [b, t, w]), &dev)
        };
        // padding bias: −1e9 on masked keys; key 0 stays a token so every query sees one
        let bias = with_bias.then(|| {
            let v: Vec<f32> = (0..b * tk)
                .map(|i| if masked[i % 16] && i % tk != 0 { -1e9 } else { 0.0 })
                .collect();
            Tensor::<2>::from_data(TensorData::new(v, [b, tk]), &dev)
        });
        let r = t3(seed ^ 9, tq, heads * dh);
        let run = |fused: bool| {
            let q = t3(seed, tq, heads * dh).require_grad();
            let k = t3(seed ^ 1, tk, kv * dh).require_grad();
            let v = t3(seed ^ 2, tk, kv * dh).require_grad();
            let o = if fused {
                causal_attention(q.clone(), k.clone(), v.clone(), bias.clone(), heads, kv)
            } else {
                causal_reference(q.clone(), k.clone(), v.clone(), bias.clone(), heads, kv)
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
        let tol = 8.0 * (tk + dh) as f64 * EPS;
        close_rel(&o1, &o2, tol, "output")?;
        for (name, (a, w)) in ["dq", "dk", "dv"].iter().zip(g1.iter().zip(&g2)) {
            close_rel(a, w, tol, name)?;
        }
    }
}

/// The future is invisible exactly: changing the last key and value changes no output row but
/// the last query's (the masked weights are 0, not merely small).
#[test]
fn causal_attention_ignores_future_keys_exactly() {
    let (b, t, heads, kv, dh) = (2, 5, 4, 2, 3);
    let dev = Device::flex();
    let t3 = |s: u64, w: usize| {
        Tensor::<3>::from_data(TensorData::new(lcg(s, b * t * w), [b, t, w]), &dev)
    };
    let (q, k, v) = (t3(1, heads * dh), t3(2, kv * dh), t3(3, kv * dh));
    let bump = |x: Tensor<3>| {
        let mut vals = x.try_to_vec_as::<f32>().unwrap();
        for bi in 0..b {
            for c in 0..kv * dh {
                vals[(bi * t + t - 1) * kv * dh + c] += 10.0;
            }
        }
        Tensor::<3>::from_data(TensorData::new(vals, [b, t, kv * dh]), &dev)
    };
    let a = values(&causal_attention(
        q.clone(),
        k.clone(),
        v.clone(),
        None,
        heads,
        kv,
    ));
    let c = values(&causal_attention(q, bump(k), bump(v), None, heads, kv));
    let d = heads * dh;
    for bi in 0..b {
        for i in 0..t {
            let row = |x: &[f64]| x[(bi * t + i) * d..(bi * t + i + 1) * d].to_vec();
            if i < t - 1 {
                assert_eq!(row(&a), row(&c), "query {i} of row {bi} saw the future");
            } else {
                assert_ne!(row(&a), row(&c), "the last query must see the last key");
            }
        }
    }
}
