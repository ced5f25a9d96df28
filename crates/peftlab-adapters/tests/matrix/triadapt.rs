//! TriAdaptLoRA specifics: growth preserves the output and existing entries, thresholds follow
//! the schedules, the total rank reaches the target, and new parameters train with AdamW.

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::Tensor;
use peftlab_adapters::target::ModuleSelector;
use peftlab_adapters::triadapt::{Threshold, TriAdaptAllocator, TriAdaptConfig, TriScaling};
use peftlab_adapters::{Adapter, AdapterConfig, AdapterHost, attach};
use peftlab_linalg::init::SeededRng;
use peftlab_linalg::strips::StripInit;

use super::model::TinyEncoder;
use super::{SIX, device, input, max_abs_diff, perturb, values};

fn cfg(threshold: Threshold) -> TriAdaptConfig {
    TriAdaptConfig::new(ModuleSelector::list(&SIX))
        .with_reference_rank(4)
        .with_incre_rank_num(Some(2))
        .with_threshold(threshold)
}

/// A 2-layer tiny encoder with `c` attached and perturbed (so `B ≠ 0`), an input, and the
/// output before growth.
fn adapted(c: &AdapterConfig) -> (TinyEncoder, TinyEncoder, Tensor<3>, Vec<f64>) {
    let dev = device();
    let base = TinyEncoder::new(2, 8, 12, &dev);
    let mut m = base.clone();
    attach(&mut m, c, 3).unwrap();
    perturb(&mut m, 4);
    let x = input(2, 4, 8, 5, &dev);
    let before = values(&m.forward(x.clone()));
    (base, m, x, before)
}

/// After growth: the output equals `before` to f32 rounding (`1e-5 · (1 + |y|max)`), and a save /
/// load round trip of the grown model onto `base` gives identical outputs (block sizes are in
/// the saved config).
fn assert_grown_output_kept(
    (base, m, x, before): (&TinyEncoder, &TinyEncoder, &Tensor<3>, &[f64]),
    c: &AdapterConfig,
    tag: &str,
) {
    let after = values(&m.forward(x.clone()));
    let tol = 1e-5 * (1.0 + before.iter().fold(0.0f64, |a, v| a.max(v.abs())));
    let d = max_abs_diff(before, &after);
    assert!(d <= tol, "{tag}: output moved by {d}");
    let dir = std::env::temp_dir().join(format!("peftlab-tri-{}-{tag}", std::process::id()));
    peftlab_adapters::save_adapter(m, c, &dir).unwrap();
    let mut loaded = base.clone();
    peftlab_adapters::load_adapter(&mut loaded, &dir).unwrap();
    assert_eq!(
        values(&loaded.forward(x.clone())),
        after,
        "{tag}: reloaded grown adapter"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Growth (both scale rules) leaves the output unchanged to f32 rounding
/// (`1e-5 · (1 + |y|max)`) and every existing A block and strip bit-identical.
#[test]
fn growth_preserves_output_and_existing_entries() {
    for scaling in [TriScaling::AlphaOverRank, TriScaling::Constant2] {
        let c = AdapterConfig::Triadaptlora(cfg(Threshold::Linear).with_scaling(scaling));
        let (base, mut m, x, before) = adapted(&c);
        let mut old = Vec::new();
        m.for_each_linear("", &mut |_, l| {
            let Some(Adapter::TriAdapt(a)) = &l.adapter else {
                panic!()
            };
            old.push((
                values(&a.a_blocks[0].val()),
                values(&a.strips.rows[0].val()),
            ));
        });
        let mut rng = SeededRng::new(1);
        m.for_each_linear_mut("", &mut |_, l| {
            let Some(Adapter::TriAdapt(a)) = &mut l.adapter else {
                panic!()
            };
            a.grow(3, StripInit::DiagonalIdentity, &mut rng).unwrap();
            assert_eq!(a.rank(), 4);
            assert_eq!(a.strips.block_sizes(), vec![1, 3]);
        });
        assert_grown_output_kept((&base, &m, &x, &before), &c, &format!("{scaling:?}"));
        let mut i = 0;
        m.for_each_linear("", &mut |_, l| {
            let Some(Adapter::TriAdapt(a)) = &l.adapter else {
                panic!()
            };
            assert_eq!(values(&a.a_blocks[0].val()), old[i].0);
            assert_eq!(values(&a.strips.rows[0].val()), old[i].1);
            i += 1;
        });
    }
}

#[test]
fn thresholds_follow_their_schedules() {
    let dev = device();
    let mut m = TinyEncoder::new(2, 8, 8, &dev); // 12 matrices
    attach(
        &mut m,
        &AdapterConfig::Triadaptlora(cfg(Threshold::Linear)),
        0,
    )
    .unwrap();
    for (threshold, cases) in [
        // (progress p, remaining budget, K) — K clamped to [1, 12]
        (
            Threshold::Linear,
            vec![(0.0, 36, 1), (0.25, 36, 9), (0.5, 10, 5), (1.0, 36, 12)],
        ),
        (
            Threshold::Exponential,
            vec![(0.0, 36, 1), (0.5, 36, 6), (0.5, 100, 10), (1.0, 36, 12)],
        ),
        (
            Threshold::Fixed { top_k: 3 },
            vec![(0.0, 36, 3), (0.9, 2, 3)],
        ),
    ] {
        let alloc = TriAdaptAllocator::new(&m, &cfg(threshold), 100, None, 0).unwrap();
        assert_eq!(alloc.total_rank(), 12);
        assert_eq!(alloc.target_rank(), 48, "reference_rank 4 × 12 matrices");
        for (p, remaining, k) in cases {
            assert_eq!(
                alloc.k_of(p, remaining),
                k,
                "{threshold:?} p={p} remaining={remaining}"
            );
        }
    }
}

/// A real training run: AdamW on the tiny encoder, the allocator driven once per step. The total
/// rank reaches the target (overshooting by less than one round), grown blocks receive
/// optimizer updates, and old parameters keep training.
#[test]
fn allocator_reaches_target_and_new_parameters_train() {
    let dev = device().autodiff();
    for threshold in [
        Threshold::Linear,
        Threshold::Exponential,
        Threshold::Fixed { top_k: 2 },
    ] {
        let mut m = TinyEncoder::new(1, 8, 8, &dev); // 6 matrices
        let c = cfg(threshold).with_init_warmup(2).with_incre_interval(2);
        attach(&mut m, &AdapterConfig::Triadaptlora(c.clone()), 0).unwrap();
        let total_steps = 40;
        let mut alloc = TriAdaptAllocator::new(&m, &c, total_steps, None, 7).unwrap();
        let mut optim = AdamWConfig::new().init();
        let x = input(2, 3, 8, 1, &dev);
        let target = input(2, 3, 8, 2, &dev);
        let mut grown_blocks_start = None;
        let mut growths = 0;
        for step in 1..=total_steps {
            let loss = (m.forward(x.clone()) - target.clone()).square().mean()
                + alloc.regularizer(&m).unwrap().unwrap();
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            m = optim.step(1e-2, m, grads);
            if let Some(g) = alloc.step(&mut m, step).unwrap() {
                growths += 1;
                assert!(!g.grown.is_empty() && g.grown.len() >= g.k.min(6));
                if grown_blocks_start.is_none() {
                    // remember a freshly grown block's A to check that it trains afterwards
                    let path = g.grown[0].clone();
                    m.for_each_linear("", &mut |p, l| {
                        if p == path {
                            let Some(Adapter::TriAdapt(a)) = &l.adapter else {
                                panic!()
                            };
                            grown_blocks_start =
                                Some((path.clone(), values(&a.a_blocks.last().unwrap().val())));
                        }
                    });
                }
            }
        }
        assert!(growths > 0, "{threshold:?}: never grew");
        let (target_rank, incre) = (alloc.target_rank(), c.incre());
        assert!(
            alloc.total_rank() >= target_rank,
            "{threshold:?}: {} < {target_rank}",
            alloc.total_rank()
        );
        assert!(
            alloc.total_rank() < target_rank + incre * 6,
            "{threshold:?}: overshoot"
        );
        let mut held = 0;
        m.for_each_linear("", &mut |_, l| {
            if let Some(Adapter::TriAdapt(a)) = &l.adapter {
                held += a.rank();
            }
        });
        assert_eq!(held, alloc.total_rank());
        let (path, start) = grown_blocks_start.unwrap();
        m.for_each_linear("", &mut |p, l| {
            if p == path {
                let Some(Adapter::TriAdapt(a)) = &l.adapter else {
                    panic!()
                };
                let now = values(&a.a_blocks[1].val());
                assert_ne!(
                    now, start,
                    "{threshold:?}: grown block A was not updated by AdamW"
                );
            }
        });
        let _ = m.num_params();
    }
}

/// The EMA recurrence on known numbers: `w = [1, −2, 3]`, loss `Σ c·w` with `c = [0.5, 1, −2]`
/// gives `I = |w·c| = [0.5, 2, 6]`; after one observation `Ī = (1−β₁)I`,
/// `Ū = (1−β₂)|I − Ī|`; after a second with the same gradient `Ī' = β₁Ī + (1−β₁)I`,
/// `Ū' = β₂Ū + (1−β₂)|I − Ī'|`. Exact to f32 rounding (1e-6 relative).
#[test]
fn sensitivity_ema_follows_the_recurrence() {
    use burn::module::Param;
    use burn::tensor::{Tensor, TensorData};
    use peftlab_adapters::sensitivity::SensitivityEma;
    let dev = device().autodiff();
    let w = Param::from_tensor(Tensor::<2>::from_data(
        TensorData::new(vec![1.0f32, -2.0, 3.0], [1, 3]),
        &dev,
    ));
    let c = Tensor::<2>::from_data(TensorData::new(vec![0.5f32, 1.0, -2.0], [1, 3]), &dev);
    let grads = (w.val() * c).sum().backward();
    let (b1, b2) = (0.85, 0.7);
    let mut ema = SensitivityEma::new(b1, b2);
    assert!(ema.score("w").is_none());
    let imp = [0.5, 2.0, 6.0];
    let (mut sens, mut unc) = ([0.0f64; 3], [0.0f64; 3]);
    for round in 0..2 {
        assert!(ema.observe("w".into(), &w, &grads));
        for i in 0..3 {
            sens[i] = b1 * sens[i] + (1.0 - b1) * imp[i];
            unc[i] = b2 * unc[i] + (1.0 - b2) * (imp[i] - sens[i]).abs();
        }
        let got = values(&ema.score("w").unwrap());
        for i in 0..3 {
            let want = sens[i] * unc[i];
            assert!(
                (got[i] - want).abs() <= 1e-6 * want.abs().max(1e-6),
                "round {round} entry {i}: {} vs {want}",
                got[i]
            );
        }
    }
    // a parameter without a gradient is not observed
    let other = Param::from_tensor(Tensor::<2>::zeros([1, 3], &dev));
    assert!(!ema.observe("other".into(), &other, &grads));
    assert!(ema.score("other").is_none());
}

/// With the sensitivity importance, an allocation grows exactly the `top_k` matrices whose mean
/// `Ī·Ū` over all their entries is largest, recomputed here from the gradients independently
/// (after one observation `Ī·Ū = (1−β₁)·β₁·(1−β₂)·I²`, so the ranking is that of mean `I²`).
/// The Frobenius allocator on the same model and gradients is not asked for gradients.
#[test]
fn sensitivity_importance_grows_the_most_sensitive_matrices() {
    use peftlab_adapters::triadapt::TriImportance;
    let dev = device().autodiff();
    let mut m = TinyEncoder::new(1, 8, 8, &dev);
    let c = cfg(Threshold::Fixed { top_k: 2 })
        .with_importance(TriImportance::Sensitivity)
        .with_init_warmup(0)
        .with_incre_interval(1);
    attach(&mut m, &AdapterConfig::Triadaptlora(c.clone()), 0).unwrap();
    perturb(&mut m, 3);
    let mut alloc = TriAdaptAllocator::new(&m, &c, 10, None, 7).unwrap();
    assert!(alloc.needs_gradients());
    let frobenius = TriAdaptAllocator::new(&m, &cfg(Threshold::Linear), 10, None, 7).unwrap();
    assert!(!frobenius.needs_gradients());
    let x = input(2, 3, 8, 1, &dev);
    let grads = m.forward(x).square().mean().backward();
    alloc.update(&m, &grads);
    assert!(!alloc.ema_state().is_empty());
    let mut expected: Vec<(String, f64)> = Vec::new();
    m.for_each_linear("", &mut |p, l| {
        if let Some(Adapter::TriAdapt(a)) = &l.adapter {
            let (mut sum, mut n) = (0.0, 0);
            for (_, param) in a.named_params() {
                let w = values(&param.val());
                let g = values(&param.val().grad(&grads).unwrap());
                sum += w.iter().zip(&g).map(|(w, g)| (w * g).powi(2)).sum::<f64>();
                n += w.len();
            }
            expected.push((p.to_string(), sum / n as f64));
        }
    });
    expected.sort_by(|a, b| b.1.total_cmp(&a.1));
    assert!(
        expected[1].1 > expected[2].1 * 1.001,
        "a near tie: {expected:?}"
    );
    let g = alloc.step(&mut m, 1).unwrap().expect("step 1 allocates");
    let mut grown = g.grown.clone();
    grown.sort();
    let mut want: Vec<String> = expected[..2].iter().map(|(p, _)| p.clone()).collect();
    want.sort();
    assert_eq!(grown, want, "scores {expected:?}");
    // τ is the 2nd largest score itself (f32 sums of ~100 entries: 1e-4 relative)
    let factor = (1.0 - c.beta1) * c.beta1 * (1.0 - c.beta2);
    let tau = expected[1].1 * factor;
    assert!(
        (g.threshold - tau).abs() <= 1e-4 * tau,
        "τ {} vs {tau}",
        g.threshold
    );
}

/// The full-T ablation grows `C` to `[[C, 0], [0, 2I]]`: the old entries stay in the top-left
/// corner bit for bit, the layer output is unchanged (f32 rounding, as for the strips), the
/// parameter count goes from `R(d_in+d_out) + R²` at `R = 2` to the same at `R = 4`, and a save /
/// load round trip of the grown model gives identical outputs.
#[test]
fn full_transform_grows_by_embedding() {
    use peftlab_adapters::triadapt::TriTransform;
    let c = AdapterConfig::Triadaptlora(
        cfg(Threshold::Linear)
            .with_init_rank(2)
            .with_transform(TriTransform::Full),
    );
    let (base, mut m, x, before) = adapted(&c);
    let mut old = Vec::new();
    m.for_each_linear("", &mut |_, l| {
        let Some(Adapter::TriAdapt(a)) = &l.adapter else {
            panic!()
        };
        assert!(a.strips.rows.is_empty(), "no strips with a full T");
        old.push(values(&a.full.as_ref().unwrap().val()));
    });
    let mut rng = SeededRng::new(1);
    let mut i = 0;
    m.for_each_linear_mut("", &mut |_, l| {
        let Some(Adapter::TriAdapt(a)) = &mut l.adapter else {
            panic!()
        };
        let (d_in, d_out) = (a.a_blocks[0].dims()[1], a.b_blocks[0].dims()[0]);
        assert_eq!(a.num_trainable(), 2 * (d_in + d_out) + 4);
        a.grow(2, StripInit::DiagonalIdentity, &mut rng).unwrap();
        assert_eq!((a.rank(), a.block_sizes()), (4, vec![2, 2]));
        assert_eq!(a.num_trainable(), 4 * (d_in + d_out) + 16);
        let c = values(&a.full.as_ref().unwrap().val());
        for r in 0..4 {
            for col in 0..4 {
                let want = match (r < 2, col < 2) {
                    (true, true) => old[i][r * 2 + col],
                    (false, false) if r == col => 2.0,
                    _ => 0.0,
                };
                assert_eq!(c[r * 4 + col], want, "C[{r}][{col}]");
            }
        }
        i += 1;
    });
    assert_grown_output_kept((&base, &m, &x, &before), &c, "full");
}
