//! Fused softmax cross-entropy (`xent`) against burn's `log_softmax` + `gather` (+ `mean_dim`
//! for label smoothing): per-row losses and the logits' gradient under autodiff, with some rows
//! weighted 0 (padding and the last position of a language-model batch).
//!
//! Tolerance: `lse` is a sum of `V` exponentials, so each side's loss is within a few `V·ε` of
//! the exact value relative to the logits' scale; held to `8·(V + 1)·ε·(1 + max|reference|)`.

use burn::tensor::{Device, Int, Tensor, TensorData};
use peftlab_linalg::xent::{cross_entropy, reference};
use proptest::prelude::*;

use crate::common::{close_rel, lcg, values};

const EPS: f64 = f32::EPSILON as f64;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn fused_cross_entropy_matches_burn_with_gradients(
        n in 1usize..12,
        v in 1usize..80,
        scale in prop_oneof![Just(1.0f32), Just(30.0f32)],
        smoothing in prop_oneof![Just(0.0), Just(0.1)],
        zero_rows in prop::collection::vec(any::<bool>(), 12),
        seed in any::<u64>(),
    ) {
        let dev = Device::flex().autodiff();
        let x0: Vec<f32> = lcg(seed, n * v).into_iter().map(|x| x * scale).collect();
        let targets: Vec<i64> = (0..n).map(|i| ((seed as usize).wrapping_add(i * 7) % v) as i64).collect();
        let w: Vec<f32> = (0..n).map(|i| if zero_rows[i] { 0.0 } else { 0.5 + i as f32 }).collect();
        let w = Tensor::<1>::from_data(TensorData::new(w, [n]), &dev);
        let run = |fused: bool| {
            let x = Tensor::<2>::from_data(TensorData::new(x0.clone(), [n, v]), &dev).require_grad();
            let t = Tensor::<1, Int>::from_data(TensorData::new(targets.clone(), [n]), &dev);
            let l = if fused {
                cross_entropy(x.clone(), t, smoothing)
            } else {
                reference(x.clone(), t, smoothing)
            };
            let g = (l.clone() * w.clone()).sum().backward();
            (values(&l), values(&x.grad(&g).expect("dx")))
        };
        let (l1, g1) = run(true);
        let (l2, g2) = run(false);
        let tol = 8.0 * (v + 1) as f64 * EPS;
        close_rel(&l1, &l2, tol, "loss")?;
        close_rel(&g1, &g2, tol, "dx")?;
        // a row weighted 0 gets exactly 0
        for (i, &z) in zero_rows.iter().take(n).enumerate() {
            if z {
                prop_assert!(g1[i * v..(i + 1) * v].iter().all(|&g| g == 0.0), "row {} weighted 0", i);
            }
        }
    }
}

/// A uniform row's loss is `log V` whatever the target and the smoothing.
#[test]
fn uniform_logits_cost_log_v() {
    let dev = Device::flex();
    let v = 50;
    let x = Tensor::<2>::from_data(TensorData::new(vec![0.25f32; 2 * v], [2, v]), &dev);
    let t = Tensor::<1, Int>::from_data(TensorData::new(vec![3i64, 49], [2]), &dev);
    for eps in [0.0, 0.1] {
        for l in values(&cross_entropy(x.clone(), t.clone(), eps)) {
            assert!((l - (v as f64).ln()).abs() < 1e-5, "{l} vs ln {v}");
        }
    }
}
