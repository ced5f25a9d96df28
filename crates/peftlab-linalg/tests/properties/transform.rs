//! MTLoRA transformation structures (papers.md §2.1, §2.2, §2.4, §2.8).
//!
//! Gradient checks run in f64 where the backend has it: autodiff vs the closed forms of §2.8
//! agree to `1e-12·scale`, finite differences (central, `h = 1e-6`) to `1e-6·scale`; on an
//! f32-only backend the tolerances become `1e-5` and (with `h = 1e-2`) `2e-2`.

use super::common::*;
use burn::config::Config;
use burn::module::Param;
use burn::tensor::{DType, Device, Tensor};
use peftlab_linalg::decomp::eigh;
use peftlab_linalg::init::SeededRng;
use peftlab_linalg::transform::{
    TransformConfig, TransformInit, TransformKind, Transformation, closed_form_grads,
};
use proptest::prelude::*;

fn kind_strategy() -> impl Strategy<Value = TransformKind> {
    prop::sample::select(TransformKind::ALL.to_vec())
}

/// `L = Σ W ⊙ T ⊙ T`, so `G = ∂L/∂T = 2 W ⊙ T`.
fn loss(t: Tensor<2>, w: Tensor<2>) -> Tensor<1> {
    (t.clone() * t * w).sum()
}

fn factors(kind: TransformKind, r: usize, v: &[f64], dev: &Device, dtype: DType) -> Transformation {
    let c = tensor(&v[..r * r], r, r, dev, dtype);
    let d = (kind.num_factors() == 2).then(|| tensor(&v[r * r..2 * r * r], r, r, dev, dtype));
    Transformation::from_factors(kind, Some(c), d).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn gradients_match_closed_form_and_finite_differences(
        kind in kind_strategy().prop_filter("has factors", |k| *k != TransformKind::Identity),
        r in 1usize..6,
        v in prop::collection::vec(-1.0f64..1.0, 3 * 36),
    ) {
        let plain = device();
        let dtype = precise_dtype(&plain);
        let ad_tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
        let (fd_h, fd_tol) = fd_step_and_tol(dtype);
        let dev = plain.clone().autodiff();
        let t = factors(kind, r, &v, &dev, dtype);
        let w = tensor(&v[2 * r * r..3 * r * r], r, r, &dev, dtype);
        let grads = loss(t.matrix(&dev), w.clone()).backward();
        let gc = values(&t.c.as_ref().unwrap().val().grad(&grads).unwrap());
        let gd = t.d.as_ref().map(|d| values(&d.val().grad(&grads).unwrap()));

        // closed form with G = 2 W ⊙ T
        let tm = t.matrix(&dev).without_autodiff();
        let g = tm.clone() * w.clone().without_autodiff() * 2.0;
        let c0 = t.c.as_ref().map(|p| p.val().without_autodiff());
        let d0 = t.d.as_ref().map(|p| p.val().without_autodiff());
        let (cc, cd) = closed_form_grads(kind, c0, d0, g).unwrap();
        let scale = 1.0 + gc.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        prop_assert!(max_abs_diff(&gc, &values(&cc.unwrap())) <= ad_tol * scale);
        if let (Some(gd), Some(cd)) = (&gd, cd) {
            prop_assert!(max_abs_diff(gd, &values(&cd)) <= ad_tol * scale);
        }

        // central finite differences on every entry of C (and D)
        let eval = |vals: &[f64]| {
            let tp = factors(kind, r, vals, &plain, dtype);
            let wp = tensor(&vals[2 * r * r..3 * r * r], r, r, &plain, dtype);
            values(&loss(tp.matrix(&plain), wp))[0]
        };
        let fd = central_differences(&v, kind.num_factors() * r * r, fd_h, eval);
        let ad: Vec<f64> = gc.iter().chain(gd.iter().flatten()).copied().collect();
        prop_assert_eq!(fd.len(), ad.len());
        for (idx, (fd, ad)) in fd.iter().zip(&ad).enumerate() {
            prop_assert!((fd - ad).abs() <= fd_tol * scale, "{:?} idx {}: fd {} ad {}", kind, idx, fd, ad);
        }
    }

    /// ICFM's `T = C Cᵀ` is symmetric positive semi-definite for every `C`.
    #[test]
    fn icfm_is_symmetric_psd(r in 1usize..10, seed in any::<u64>()) {
        let dev = device();
        let t = TransformConfig::new(r).with_kind(TransformKind::Icfm).init(&dev, seed).unwrap();
        let m = values(&t.matrix(&dev));
        for i in 0..r { for j in 0..r {
            prop_assert!((m[i * r + j] - m[j * r + i]).abs() <= 1e-6);
        }}
        let e = eigh(mat::<f64>(&m, r, r).as_ref()).unwrap();
        let scale = e.values.last().unwrap().abs().max(1.0);
        prop_assert!(e.values[0] >= -1e-5 * scale, "negative eigenvalue {}", e.values[0]);
    }

    /// `apply(u) = u · Tᵀ` for batched `u: [b, n, r]`, and identity leaves `u` untouched.
    #[test]
    fn apply_is_right_multiplication_by_t_transpose(
        kind in kind_strategy(), r in 1usize..6, n in 1usize..5, seed in any::<u64>(),
    ) {
        let dev = device();
        let t = TransformConfig::new(r).with_kind(kind).init(&dev, seed).unwrap();
        let mut rng = SeededRng::new(seed ^ 1);
        let u = peftlab_linalg::init::Fill::Normal { std: 1.0 }.tensor(2 * n, r, &mut rng, &dev, DType::F32);
        let out = t.apply(u.clone().reshape([2, n, r])).reshape([2 * n, r]);
        let want = u.matmul(t.matrix(&dev).transpose());
        prop_assert!(max_abs_diff(&values(&out), &values(&want)) <= 1e-5 * r as f64);
    }

    /// Parameter counts: `0`, `r²`, `2r²` (§2.4), both by formula and by tensors held.
    #[test]
    fn parameter_counts(kind in kind_strategy(), r in 1usize..20) {
        let dev = device();
        let t = TransformConfig::new(r).with_kind(kind).init(&dev, 0).unwrap();
        let held: usize = [&t.c, &t.d].iter().filter_map(|p| p.as_ref()).map(|p| p.dims()[0] * p.dims()[1]).sum();
        let want = match kind {
            TransformKind::Identity => 0,
            TransformKind::Shim | TransformKind::Icfm => r * r,
            TransformKind::Ctcm | TransformKind::Dtsm => 2 * r * r,
        };
        prop_assert_eq!(held, want);
        prop_assert_eq!(t.num_trainable(), want);
        prop_assert_eq!(kind.num_params(r), want);
    }
}

#[test]
fn digest_worked_totals() {
    // DeBERTaV3-base, r=8, 6 matrices × 12 layers (papers.md §2.4): LoRA 1,327,104;
    // SHIM/ICFM 1,331,712; CTCM/DTSM 1,336,320.
    let dims = [
        (768, 768),
        (768, 768),
        (768, 768),
        (768, 768),
        (768, 3072),
        (3072, 768),
    ];
    let lora: usize = dims.iter().map(|(i, o)| 8 * (i + o)).sum::<usize>() * 12;
    assert_eq!(lora, 1_327_104);
    let with = |k: TransformKind| lora + k.num_params(8) * 6 * 12;
    assert_eq!(with(TransformKind::Shim), 1_331_712);
    assert_eq!(with(TransformKind::Icfm), 1_331_712);
    assert_eq!(with(TransformKind::Ctcm), 1_336_320);
    assert_eq!(with(TransformKind::Dtsm), 1_336_320);
}

#[test]
fn initializations() {
    let dev = device();
    let r = 4;
    let eye: Vec<f64> = (0..r * r)
        .map(|i| f64::from(u8::from(i / r == i % r)))
        .collect();
    for kind in [
        TransformKind::Shim,
        TransformKind::Icfm,
        TransformKind::Ctcm,
    ] {
        let t = TransformConfig::new(r)
            .with_kind(kind)
            .with_init(TransformInit::Identity)
            .init(&dev, 1)
            .unwrap();
        assert_eq!(
            values(&t.matrix(&dev)),
            eye,
            "{kind:?} identity init gives T = I"
        );
    }
    let t = TransformConfig::new(r)
        .with_kind(TransformKind::Dtsm)
        .with_init(TransformInit::Identity)
        .init(&dev, 1)
        .unwrap();
    assert_eq!(
        values(&t.matrix(&dev)),
        eye.iter().map(|x| 2.0 * x).collect::<Vec<_>>()
    );
    let t = TransformConfig::new(r)
        .with_kind(TransformKind::Ctcm)
        .with_init(TransformInit::Zero)
        .init(&dev, 1)
        .unwrap();
    assert_eq!(values(&t.matrix(&dev)), vec![0.0; r * r]);
    // kaiming-uniform(a=√5) on [r, r]: bound 1/√r, and not degenerate
    let r = 16;
    let t = TransformConfig::new(r)
        .with_kind(TransformKind::Shim)
        .init(&dev, 9)
        .unwrap();
    let c = values(&t.c.as_ref().unwrap().val());
    let bound = 1.0 / (r as f64).sqrt();
    assert!(c.iter().all(|x| x.abs() <= bound + 1e-7));
    let max = c.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    assert!(
        max > 0.8 * bound,
        "256 draws should reach near the bound, got {max}"
    );
    let var = c.iter().map(|x| x * x).sum::<f64>() / c.len() as f64;
    assert!(
        (var - bound * bound / 3.0).abs() < 0.25 * bound * bound / 3.0,
        "variance {var}"
    );
    // identity structure is really the identity, and apply is a no-op
    let t = TransformConfig::new(3)
        .with_kind(TransformKind::Identity)
        .init(&dev, 0)
        .unwrap();
    assert!(t.c.is_none() && t.d.is_none());
    assert_eq!(
        values(&t.matrix(&dev)),
        vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    );
}

#[test]
fn same_seed_same_factors_other_seed_different() {
    let dev = device();
    let cfg = TransformConfig::new(6).with_kind(TransformKind::Ctcm);
    let a = cfg.init(&dev, 42).unwrap();
    let b = cfg.init(&dev, 42).unwrap();
    let c = cfg.init(&dev, 43).unwrap();
    let val = |t: &Transformation, p: fn(&Transformation) -> &Option<Param<Tensor<2>>>| {
        values(&p(t).as_ref().unwrap().val())
    };
    assert_eq!(val(&a, |t| &t.c), val(&b, |t| &t.c));
    assert_eq!(val(&a, |t| &t.d), val(&b, |t| &t.d));
    assert_ne!(val(&a, |t| &t.c), val(&c, |t| &t.c));
    assert_ne!(
        val(&a, |t| &t.c),
        val(&a, |t| &t.d),
        "C and D are drawn independently"
    );
}

#[test]
fn wrong_factors_are_typed_errors() {
    let dev = device();
    let c = tensor(&[0.0; 4], 2, 2, &dev, DType::F32);
    let bad = tensor(&[0.0; 6], 2, 3, &dev, DType::F32);
    assert!(Transformation::from_factors(TransformKind::Ctcm, Some(c.clone()), None).is_err());
    assert!(Transformation::from_factors(TransformKind::Shim, Some(bad.clone()), None).is_err());
    assert!(Transformation::from_factors(TransformKind::Dtsm, Some(c.clone()), Some(bad)).is_err());
    assert!(closed_form_grads(TransformKind::Icfm, None, None, c.clone()).is_err());
    assert!(TransformConfig::new(0).init(&dev, 0).is_err());
    // serde round trip of the config (burn Config)
    let cfg = TransformConfig::new(8)
        .with_kind(TransformKind::Icfm)
        .with_init(TransformInit::Identity);
    let path =
        std::env::temp_dir().join(format!("peftlab-linalg-tcfg-{}.json", std::process::id()));
    cfg.save(&path).unwrap();
    let back = TransformConfig::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        (back.rank, back.kind, back.init),
        (8, TransformKind::Icfm, TransformInit::Identity)
    );
}
