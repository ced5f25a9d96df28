//! Fused rotary embedding (`rope`) against burn's composition (slices, negation, concatenation,
//! products): values bit for bit (the same f32 operations in the same order), and the input
//! gradient under autodiff.
//!
//! Tolerance of the gradient: each entry is `dy_i cos ± dy_j sin`, two products, so the two
//! sides differ by a few ε relative to the entry; held to `4ε·(1 + max|reference|)`.

use burn::tensor::{Device, Tensor, TensorData};
use peftlab_linalg::rope::{reference, rotary};
use proptest::prelude::*;

use crate::common::{close_rel, lcg, values};

const EPS: f64 = f32::EPSILON as f64;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn fused_rope_matches_burns_composition(
        b in 1usize..3,
        t in 1usize..9,
        heads in 1usize..4,
        half in 1usize..6,
        start in 0usize..40,
        theta in prop_oneof![Just(10_000.0), Just(100_000.0), Just(100.0)],
        seed in any::<u64>(),
    ) {
        let d = heads * 2 * half;
        let dev = Device::flex().autodiff();
        let x0 = Tensor::<3>::from_data(TensorData::new(lcg(seed, b * t * d), [b, t, d]), &dev);
        let w = Tensor::<3>::from_data(TensorData::new(lcg(seed ^ 3, b * t * d), [b, t, d]), &dev);
        let run = |fused: bool| {
            let x = x0.clone().require_grad();
            let y = if fused {
                rotary(x.clone(), heads, start, theta)
            } else {
                reference(x.clone(), heads, start, theta)
            };
            let g = (y.clone() * w.clone()).sum().backward();
            (values(&y), values(&x.grad(&g).expect("dx")))
        };
        let (y1, dx1) = run(true);
        let (y2, dx2) = run(false);
        prop_assert_eq!(&y1, &y2, "values differ");
        close_rel(&dx1, &dx2, 4.0 * EPS, "dx")?;
        let xp = x0.inner();
        prop_assert_eq!(
            values(&rotary(xp.clone(), heads, start, theta)),
            values(&reference(xp, heads, start, theta)),
            "inference values differ"
        );
    }
}

/// One pair by hand: `dₕ = 4`, θ = 100, position 3: pair (0, 2) turns by 3 rad, pair (1, 3) by
/// 0.3 rad.
#[test]
fn rope_turns_each_pair_by_its_position_angle() {
    let dev = Device::flex();
    let x = Tensor::<3>::from_data(
        TensorData::new(vec![1.0f32, 0.0, 0.0, 2.0], [1, 1, 4]),
        &dev,
    );
    let y = values(&rotary(x, 1, 3, 100.0));
    let (a, b) = (3.0f64, 0.3f64);
    let want = [a.cos(), -2.0 * b.sin(), a.sin(), 2.0 * b.cos()];
    for (g, w) in y.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{y:?} vs {want:?}");
    }
}
