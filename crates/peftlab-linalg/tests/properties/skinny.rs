//! `skinny::linear_t` (the LoRA-family factor products) against burn's
//! `x.matmul(w.transpose())`: value and both gradients under autodiff.
//!
//! Tolerance: each output of a length-`k` f32 dot product is within `k·ε·Σ|a_p||b_p|` of the
//! exact value (ε = 2⁻²³), and burn's reference within the same bound, so the two are held to
//! `2·(k+1)·ε·Σ|a||b|`, with `Σ|a||b|` computed from the absolute operands (`k` = the summed
//! length of each product: `k` for `y`, `n` for `∂L/∂x`, `m` for `∂L/∂w`).

use burn::tensor::{Device, Tensor, TensorData};
use peftlab_linalg::skinny::{SMALL, available, linear_t};
use proptest::prelude::*;

use crate::common::{lcg, values};

const EPS: f64 = f32::EPSILON as f64;

fn t2(v: Vec<f32>, dims: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v, dims), device)
}

fn check(
    got: &[f64],
    want: &[f64],
    scale: &[f64],
    k: usize,
    what: &str,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (i, ((g, w), s)) in got.iter().zip(want).zip(scale).enumerate() {
        let tol = 2.0 * (k as f64 + 1.0) * EPS * s + 1e-30;
        prop_assert!(
            (g - w).abs() <= tol,
            "{what}[{i}]: {g} vs {w} (tol {tol:e})"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Both shapes of the fast path (few outputs `n ≤ SMALL`, few inputs `k ≤ SMALL`), 1-row
    /// inputs, widths that are not multiples of 16 or 32, and each operand untracked in turn.
    #[test]
    fn linear_t_matches_burn_value_and_gradients(
        m in 1usize..90,
        small in 1usize..=SMALL,
        wide in 1usize..200,
        few_outputs in any::<bool>(),
        tracked in 0usize..3,
        seed in any::<u64>(),
    ) {
        let (k, n) = if few_outputs { (wide, small) } else { (small, wide) };
        let dev = Device::flex().autodiff();
        let (xv, wv, rv) = (lcg(seed, m * k), lcg(seed ^ 1, n * k), lcg(seed ^ 2, m * n));
        let track_x = tracked != 1;
        let track_w = tracked != 2;
        let make = |v: &Vec<f32>, d: [usize; 2], t: bool| {
            let x = t2(v.clone(), d, &dev);
            if t { x.require_grad() } else { x }
        };
        let r = t2(rv.clone(), [m, n], &dev);

        let (x1, w1) = (make(&xv, [m, k], track_x), make(&wv, [n, k], track_w));
        let y1 = linear_t(x1.clone(), w1.clone());
        let g1 = (y1.clone() * r.clone()).sum().backward();
        let (x2, w2) = (make(&xv, [m, k], track_x), make(&wv, [n, k], track_w));
        let y2 = x2.clone().matmul(w2.clone().transpose());
        let g2 = (y2.clone() * r.clone()).sum().backward();

        let plain = Device::flex();
        let (xa, wa, ra) = (
            t2(xv, [m, k], &plain).abs(),
            t2(wv, [n, k], &plain).abs(),
            t2(rv, [m, n], &plain).abs(),
        );
        check(&values(&y1), &values(&y2), &values(&xa.clone().matmul(wa.clone().transpose())), k, "y")?;
        if track_x {
            let (d1, d2) = (x1.grad(&g1).expect("dx"), x2.grad(&g2).expect("dx"));
            check(&values(&d1), &values(&d2), &values(&ra.clone().matmul(wa)), n, "dx")?;
        } else {
            prop_assert!(x1.grad(&g1).is_none());
        }
        if track_w {
            let (d1, d2) = (w1.grad(&g1).expect("dw"), w2.grad(&g2).expect("dw"));
            check(&values(&d1), &values(&d2), &values(&ra.transpose().matmul(xa)), m, "dw")?;
        }
    }
}

#[test]
fn linear_t_is_exact_where_the_sums_are() {
    // integers: every product and partial sum is exact in f32, so any wrong index or missed
    // tail element shows as an exact mismatch
    let dev = Device::flex();
    let (m, k, n) = (37, 45, 7);
    let xv: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
    let wv: Vec<f32> = (0..n * k).map(|i| ((i * 5) % 9) as f32 - 4.0).collect();
    let x = t2(xv.clone(), [m, k], &dev);
    let w = t2(wv.clone(), [n, k], &dev);
    let got = values(&linear_t(x, w));
    for i in 0..m {
        for j in 0..n {
            let want: f64 = (0..k)
                .map(|p| xv[i * k + p] as f64 * wv[j * k + p] as f64)
                .sum();
            assert_eq!(got[i * n + j], want, "({i}, {j})");
        }
    }
    if !available() {
        eprintln!("note: no AVX-512F here, so linear_t ran burn's matmul");
    }
}
