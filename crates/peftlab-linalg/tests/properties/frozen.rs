//! The packed GEMM (`gemm`) and the frozen-linear fast path (`frozen`) against references.
//!
//! Tolerances: a length-`k` f32 dot product has error at most `k·ε·Σ|a_p||b_p|` (ε = 2⁻²³);
//! against an f64 reference each element is held to `2·(k+1)·ε·(Σ|a||b| + |bias|)`. Against
//! burn's own f32 `linear` (whose error has the same bound), to twice that. The bf16 GEMM
//! (`gemm_bf16`) is held to the same bound against the f64 product of the bf16-rounded operands:
//! each bf16 product is exact in f32, so only the f32 sums round.

use std::mem::MaybeUninit;

use burn::tensor::{DType, Device, Distribution, Tensor, TensorData};
use peftlab_linalg::frozen::{FrozenPack, Precision};
use peftlab_linalg::gemm::{Kernel, PackedMatrix, gemm_packed, gemm_packed_with};
use peftlab_linalg::gemm_bf16::{Bf16Kernel, PackedBf16, gemm_bf16_packed_with, round_bf16};
use proptest::prelude::*;

use crate::common::{burn_rng, lcg, values};

const EPS: f64 = f32::EPSILON as f64;

/// The output of `product` on a poisoned buffer of `len` (the GEMMs must write every element
/// without reading it).
fn poisoned(len: usize, product: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut c = vec![MaybeUninit::new(f32::NAN); len];
    product(&mut c);
    c.into_iter().map(|v| unsafe { v.assume_init() }).collect()
}

fn run(
    kernel: Kernel,
    a: &[f32],
    lda: usize,
    m: usize,
    b: &PackedMatrix,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    poisoned(m * b.n(), |c| {
        gemm_packed_with(kernel, a, lda, m, b, bias, c)
    })
}

fn run_bf16(
    kernel: Bf16Kernel,
    a: &[f32],
    lda: usize,
    m: usize,
    b: &PackedBf16,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    poisoned(m * b.n(), |c| {
        gemm_bf16_packed_with(kernel, a, lda, m, b, bias, c)
    })
}

/// `B: [k, n]` row-major, and the same `B` stored transposed (`[n, k]`, read with strides
/// `(1, k)`) when `transposed`: the source and strides to pack from.
fn packing_source(w: &[f32], k: usize, n: usize, transposed: bool) -> (Vec<f32>, usize, usize) {
    if !transposed {
        return (w.to_vec(), n, 1);
    }
    let mut bt = vec![0.0f32; n * k];
    for i in 0..k {
        for j in 0..n {
            bt[j * k + i] = w[i * n + j];
        }
    }
    (bt, 1, k)
}

/// `c` against the f64 product of `round(a)` and `round(w)` (+ bias), to the bound of the
/// module docs.
#[allow(clippy::too_many_arguments)]
fn check_product(
    c: &[f32],
    (a, lda, m): (&[f32], usize, usize),
    (w, k, n): (&[f32], usize, usize),
    bias: Option<&[f32]>,
    round: fn(f32) -> f32,
    what: &str,
) -> Result<(), TestCaseError> {
    for i in 0..m {
        for j in 0..n {
            let (mut exact, mut scale) = (0.0f64, 0.0f64);
            for p in 0..k {
                let t = round(a[i * lda + p]) as f64 * round(w[p * n + j]) as f64;
                exact += t;
                scale += t.abs();
            }
            if let Some(b) = bias {
                exact += b[j] as f64;
                scale += (b[j] as f64).abs();
            }
            let tol = 2.0 * (k as f64 + 1.0) * EPS * scale + 1e-30;
            let got = c[i * n + j] as f64;
            prop_assert!(
                (got - exact).abs() <= tol,
                "{what} m={m} k={k} n={n} ({i},{j}): {got} vs {exact} (tol {tol:e})"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every kernel this CPU has, odd shapes, padded rows, both packing orientations, with and
    /// without bias, `k` across the `KC` block boundary (and odd, for bf16's row pairs).
    #[test]
    fn packed_gemm_matches_an_f64_reference(
        m in 1usize..70,
        k in prop_oneof![0usize..40, 380usize..800],
        n in 1usize..75,
        pad in 0usize..3,
        transposed in any::<bool>(),
        with_bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let lda = k + pad;
        let a = lcg(seed, m * lda);
        let w = lcg(seed ^ 1, k * n); // B: [k, n] row-major
        let bias = with_bias.then(|| lcg(seed ^ 2, n));
        let (src, rs, cs) = packing_source(&w, k, n, transposed);
        let packed = PackedMatrix::pack(&src, k, n, rs, cs);
        for kernel in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
            let c = run(kernel, &a, lda, m, &packed, bias.as_deref());
            check_product(&c, (&a, lda, m), (&w, k, n), bias.as_deref(), |x| x, &format!("{kernel:?}"))?;
        }
        let packed = PackedBf16::pack(&src, k, n, rs, cs);
        for kernel in Bf16Kernel::ALL.into_iter().filter(|k| k.is_available()) {
            let c = run_bf16(kernel, &a, lda, m, &packed, bias.as_deref());
            check_product(&c, (&a, lda, m), (&w, k, n), bias.as_deref(), round_bf16, &format!("{kernel:?}"))?;
        }
    }
}

#[test]
fn the_bf16_gemm_rounds_both_operands() {
    // 1 + 2⁻¹⁰ is 1 in bf16 (7 mantissa bits): an f32 product would give k·(1 + 2⁻¹⁰)²
    let (m, k, n) = (9, 40, 33);
    let a = vec![1.0 + 2f32.powi(-10); m * k];
    let w = vec![1.0 - 2f32.powi(-11); k * n];
    let packed = PackedBf16::pack(&w, k, n, n, 1);
    for kernel in Bf16Kernel::ALL.into_iter().filter(|k| k.is_available()) {
        let c = run_bf16(kernel, &a, k, m, &packed, None);
        assert!(
            c.iter().all(|v| *v == k as f32),
            "{kernel:?}: {} instead of {k}",
            c[0]
        );
    }
}

#[test]
fn packed_gemm_is_bit_identical_across_runs_and_packs() {
    // large enough to run in parallel (several row blocks and panel groups)
    let (m, k, n) = (300, 500, 200);
    let a = lcg(7, m * k);
    let w = lcg(8, k * n);
    let p1 = PackedMatrix::pack(&w, k, n, n, 1);
    let p2 = p1.clone();
    let first = run(Kernel::detect(), &a, k, m, &p1, None);
    for packed in [&p1, &p2, &PackedMatrix::pack(&w, k, n, n, 1)] {
        let again = run(Kernel::detect(), &a, k, m, packed, None);
        assert!(
            first
                .iter()
                .zip(&again)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "a repeated product differs in some bit"
        );
    }
    // and the short-input path (one row block, panels split across threads) agrees with the
    // sequential kernel on each row
    let short = run(Kernel::detect(), &a, k, 3, &p1, None);
    let mut one = vec![MaybeUninit::new(f32::NAN); n];
    for i in 0..3 {
        gemm_packed(&a[i * k..], k, 1, &p1, None, &mut one);
        for j in 0..n {
            assert_eq!(
                short[i * n + j].to_bits(),
                unsafe { one[j].assume_init() }.to_bits()
            );
        }
    }
}

fn flex() -> Device {
    Device::flex()
}

fn t3(v: Vec<f32>, dims: [usize; 3], device: &Device) -> Tensor<3> {
    Tensor::from_data(TensorData::new(v, dims), device)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Value and `∂L/∂x` of the packed layer equal burn's `linear` (the unfused composition),
    /// for 3-D inputs with 1-row edges, odd widths and an optional bias, under autodiff. With
    /// the bf16 base, burn's `linear` runs on the bf16-rounded input and weight, and its input
    /// gradient on the rounded `∂L/∂y` (here `r`).
    #[test]
    fn frozen_linear_matches_burn_linear_value_and_input_gradient(
        b in 1usize..4,
        t in 1usize..9,
        d_in in 1usize..70,
        d_out in 1usize..70,
        with_bias in any::<bool>(),
        bf16 in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let dev = flex().autodiff();
        let round = |v: Vec<f32>| if bf16 { v.into_iter().map(round_bf16).collect() } else { v };
        let xv = lcg(seed, b * t * d_in);
        let wv = lcg(seed ^ 3, d_in * d_out);
        let rv = lcg(seed ^ 5, b * t * d_out);
        let w = Tensor::<2>::from_data(TensorData::new(wv.clone(), [d_in, d_out]), &dev);
        let bias = with_bias.then(|| Tensor::<1>::from_data(TensorData::new(lcg(seed ^ 4, d_out), [d_out]), &dev));
        let r = t3(rv.clone(), [b, t, d_out], &dev);

        let mut pack = FrozenPack::new();
        if bf16 {
            pack.set_precision(Precision::Bf16);
        }
        let x1 = t3(xv.clone(), [b, t, d_in], &dev).require_grad();
        prop_assert!(FrozenPack::applies(&x1, &w, bias.as_ref()));
        let y1 = pack.linear(x1.clone(), &w, bias.as_ref());
        prop_assert!(pack.is_packed());
        let g1 = (y1.clone() * r.clone()).sum().backward();
        let dx1 = x1.grad(&g1).expect("x receives a gradient");

        let x2 = t3(round(xv.clone()), [b, t, d_in], &dev).require_grad();
        let w2 = Tensor::<2>::from_data(TensorData::new(round(wv), [d_in, d_out]), &dev);
        let r2 = t3(round(rv), [b, t, d_out], &dev);
        let y2 = burn::tensor::module::linear(x2.clone(), w2.clone(), bias.clone());
        let g2 = (y2.clone() * r2).sum().backward();
        let dx2 = x2.grad(&g2).expect("x receives a gradient");
        let w = w2;

        // bounds from |x|·|W| (+|b|) and |r|·|W|ᵀ
        let xa = t3(round(xv), [b, t, d_in], &flex()).abs();
        let wa = w.clone().inner().abs();
        let mut scale_y = xa.matmul(wa.clone().unsqueeze::<3>());
        if let Some(bias) = &bias {
            scale_y = scale_y + bias.clone().inner().abs().unsqueeze::<3>();
        }
        let scale_dx = r.inner().abs().matmul(wa.transpose().unsqueeze::<3>());
        let check = |got: Vec<f64>, want: Vec<f64>, scale: Vec<f64>, k: usize, what: &str| {
            for ((g, w), s) in got.iter().zip(&want).zip(&scale) {
                let tol = 4.0 * (k as f64 + 1.0) * EPS * s + 1e-30;
                if (g - w).abs() > tol {
                    return Err(TestCaseError::fail(format!("{what}: {g} vs {w} (tol {tol:e})")));
                }
            }
            Ok(())
        };
        check(values(&y1), values(&y2), values(&scale_y), d_in, "y")?;
        check(values(&dx1), values(&dx2), values(&scale_dx), d_out, "dx")?;
    }
}

#[test]
fn a_replaced_weight_is_repacked_never_served_stale() {
    let _rng = burn_rng();
    let dev = flex();
    let x = Tensor::<2>::random([5, 6], Distribution::Uniform(-1.0, 1.0), &dev);
    let w1 = Tensor::<2>::random([6, 4], Distribution::Uniform(-1.0, 1.0), &dev);
    let w2 = w1.clone() + 1.0; // another tensor with other values
    let pack = FrozenPack::new();
    let close = |a: &Tensor<2>, b: &Tensor<2>| {
        values(a)
            .iter()
            .zip(values(b))
            .all(|(x, y)| (x - y).abs() < 1e-5)
    };

    let y1 = pack.linear(x.clone(), &w1, None);
    assert!(close(&y1, &x.clone().matmul(w1.clone())));
    assert_eq!(pack.generation(), 1);
    let _ = pack.linear(x.clone(), &w1, None);
    assert_eq!(pack.generation(), 1, "the same weight must reuse its pack");

    let y2 = pack.linear(x.clone(), &w2, None);
    assert!(
        close(&y2, &x.clone().matmul(w2.clone())),
        "the pack of the old weight was used for a new one"
    );
    assert_eq!(pack.generation(), 2);

    // a transposed view of the same storage is another matrix
    let square = Tensor::<2>::random([6, 6], Distribution::Uniform(-1.0, 1.0), &dev);
    let _ = pack.linear(x.clone(), &square, None);
    let yt = pack.linear(x.clone(), &square.clone().transpose(), None);
    assert!(close(&yt, &x.clone().matmul(square.transpose())));

    pack.invalidate();
    assert!(!pack.is_packed());
}

#[test]
fn a_precision_change_repacks() {
    let dev = flex();
    // values where bf16 rounding shows: 1 + 2⁻¹⁰ is 1 in bf16
    let x = Tensor::<2>::full([3, 8], 1.0 + 2f32.powi(-10), &dev);
    let w = Tensor::<2>::full([8, 5], 1.0, &dev);
    let mut pack = FrozenPack::new();
    let exact = 8.0 * (1.0 + 2f64.powi(-10));
    assert!(
        values(&pack.linear(x.clone(), &w, None))
            .iter()
            .all(|v| (v - exact).abs() < 1e-5)
    );
    assert_eq!(pack.generation(), 1);
    pack.set_precision(Precision::Bf16);
    assert!(
        !pack.is_packed(),
        "a precision change must drop the f32 pack"
    );
    assert!(
        values(&pack.linear(x.clone(), &w, None))
            .iter()
            .all(|v| *v == 8.0)
    );
    assert_eq!(pack.generation(), 1, "the dropped pack's count restarts");
    pack.set_precision(Precision::Bf16);
    assert!(
        pack.is_packed(),
        "setting the same precision keeps the pack"
    );
    pack.set_precision(Precision::F32);
    assert!(
        values(&pack.linear(x, &w, None))
            .iter()
            .all(|v| (v - exact).abs() < 1e-5)
    );
}

#[test]
fn tracked_weights_and_other_dtypes_take_burns_linear() {
    let _rng = burn_rng();
    let dev = flex().autodiff();
    let x = Tensor::<2>::random([3, 4], Distribution::Default, &dev).require_grad();
    let w = Tensor::<2>::random([4, 2], Distribution::Default, &dev).require_grad();
    assert!(
        !FrozenPack::applies(&x, &w, None),
        "a trainable weight needs ∂L/∂W"
    );
    let pack = FrozenPack::new();
    let y = pack.linear(x.clone(), &w, None);
    let g = y.sum().backward();
    assert!(
        w.grad(&g).is_some(),
        "the weight must still receive its gradient"
    );
    assert!(!pack.is_packed());

    let dev = flex();
    if dev.supports_dtype(DType::F64) {
        let x = Tensor::<2>::random([3, 4], Distribution::Default, (&dev, DType::F64));
        let w = Tensor::<2>::random([4, 2], Distribution::Default, (&dev, DType::F64));
        assert!(!FrozenPack::applies(&x, &w, None));
        let y = pack.linear(x.clone(), &w, None);
        assert_eq!(y.dtype(), DType::F64);
        assert_eq!(values(&y), values(&x.matmul(w)));
    }
}
