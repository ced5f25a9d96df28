//! AdaLoRA specifics: the cubic budget schedule and a real masked training run.

use burn::optim::{AdamWConfig, GradientsParams};
use peftlab_adapters::adalora::{AdaLoraAllocator, AdaLoraConfig, budget};
use peftlab_adapters::target::ModuleSelector;
use peftlab_adapters::{Adapter, AdapterConfig, AdapterHost, attach};

use super::model::TinyEncoder;
use super::{SIX, device, input, values};

#[test]
fn budget_follows_the_cubic_schedule() {
    // b0 = 100, b_T = 50, t_i = 10, t_f = 10, T = 110: the cubic runs over t ∈ [10, 100)
    let b = |t| budget(100, 50, t, 110, 10, 10);
    assert_eq!(b(0), 100);
    assert_eq!(b(9), 100);
    assert_eq!(b(10), 100);
    assert_eq!(b(55), 50 + (50.0 * 0.5f64.powi(3)).round() as usize); // 56
    assert_eq!(b(82), (50.0 + 50.0 * 0.2f64.powi(3)).round() as usize); // 50.4 → 50
    assert_eq!(b(100), 50);
    assert_eq!(b(109), 50);
    let series: Vec<usize> = (0..110).map(b).collect();
    assert!(series.windows(2).all(|w| w[0] >= w[1]), "non-increasing");
}

/// AdamW on the tiny encoder, importance updated after every backward and masking after every
/// optimizer step: the kept rank ends exactly at the target budget, masked λ are zero, and the
/// masked triplets are the lowest-scoring ones.
#[test]
fn masking_reaches_target_budget() {
    let dev = device().autodiff();
    let c = AdaLoraConfig::new(ModuleSelector::list(&SIX))
        .with_init_r(4)
        .with_target_r(2)
        .with_tinit(3)
        .with_tfinal(3)
        .with_delta_t(2);
    let mut m = TinyEncoder::new(1, 8, 8, &dev); // 6 matrices: b0 = 24, b_T = 12
    attach(&mut m, &AdapterConfig::Adalora(c.clone()), 0).unwrap();
    let total = 30;
    let mut alloc = AdaLoraAllocator::new(&m, &c, total).unwrap();
    let mut optim = AdamWConfig::new().init();
    let (x, y) = (input(2, 3, 8, 1, &dev), input(2, 3, 8, 2, &dev));
    let mut last = None;
    for step in 1..=total {
        let loss = (m.forward(x.clone()) - y.clone()).square().mean()
            + alloc.regularizer(&m).unwrap().unwrap();
        let grads = loss.backward();
        alloc.update(&m, &grads).unwrap();
        let grads = GradientsParams::from_grads(grads, &m);
        m = optim.step(1e-2, m, grads);
        if let Some(mk) = alloc.mask(&mut m, step).unwrap() {
            last = Some(mk);
        }
    }
    let last = last.expect("masked at least once");
    assert_eq!(last.step, total);
    assert_eq!(last.budget, 12);
    assert_eq!(last.ranks.iter().map(|(_, r)| r).sum::<usize>(), 12);
    // masked λ are exactly zero; the kept ones are not, and outrank the masked ones
    let mut kept_min = f64::INFINITY;
    let mut masked_max = f64::NEG_INFINITY;
    m.for_each_linear("", &mut |p, l| {
        let Some(Adapter::AdaLora(a)) = &l.adapter else {
            panic!()
        };
        let e = values(&a.lora_e.val());
        let scores = alloc.triplet_scores(p, 4, 8, 8);
        let (_, kept) = last.ranks.iter().find(|(q, _)| q == p).unwrap();
        assert_eq!(e.iter().filter(|v| **v != 0.0).count(), *kept, "{p}");
        for (v, s) in e.iter().zip(&scores) {
            if *v == 0.0 {
                masked_max = masked_max.max(*s)
            } else {
                kept_min = kept_min.min(*s)
            }
        }
    });
    assert!(
        masked_max <= kept_min,
        "masked {masked_max} > kept {kept_min}"
    );
}

/// The EMA and triplet score follow §1.1 exactly: recompute them on the host from the same
/// gradients over three updates (`1e-6` relative: the device keeps the EMAs in f32).
#[test]
fn importance_scores_follow_the_formulas() {
    use burn::module::Param;
    use peftlab_adapters::AdaptedLinear;
    let dev = device().autodiff();
    let (d_in, d_out, r) = (3, 2, 2);
    let c = AdaLoraConfig::new(ModuleSelector::Regex(String::new()))
        .with_init_r(r)
        .with_target_r(1)
        .with_beta1(0.7)
        .with_beta2(0.6);
    let mut l = AdaptedLinear::new(d_in, d_out, true, &dev);
    attach(&mut l, &AdapterConfig::Adalora(c.clone()), 0).unwrap();
    if let Some(Adapter::AdaLora(a)) = &mut l.adapter {
        let e = burn::tensor::Tensor::<2>::from_data([[0.5], [-0.25]], &dev);
        a.lora_e = Param::initialized(a.lora_e.id, e).set_require_grad(true);
    }
    let mut alloc = AdaLoraAllocator::new(&l, &c, 10).unwrap();
    let (b1, b2) = (0.7, 0.6);
    let mut host: Vec<(Vec<f64>, Vec<f64>)> = vec![
        (vec![0.0; r * d_in], vec![0.0; r * d_in]),
        (vec![0.0; r], vec![0.0; r]),
        (vec![0.0; d_out * r], vec![0.0; d_out * r]),
    ];
    for step in 0..3 {
        let x = input(1, 2, d_in, step, &dev).reshape([2, d_in]);
        let grads = l.forward(x).powf_scalar(2.0).sum().backward();
        alloc.update(&l, &grads).unwrap();
        let Some(Adapter::AdaLora(a)) = &l.adapter else {
            panic!()
        };
        for (k, p) in [&a.lora_a, &a.lora_e, &a.lora_b].into_iter().enumerate() {
            let w = values(&p.val());
            let g = values(&p.val().grad(&grads).unwrap());
            let (sens, unc) = &mut host[k];
            for i in 0..w.len() {
                let imp = (w[i] * g[i]).abs();
                sens[i] = b1 * sens[i] + (1.0 - b1) * imp;
                unc[i] = b2 * unc[i] + (1.0 - b2) * (imp - sens[i]).abs();
            }
        }
    }
    let s = |k: usize| {
        host[k]
            .0
            .iter()
            .zip(&host[k].1)
            .map(|(a, b)| a * b)
            .collect::<Vec<f64>>()
    };
    let (sa, se, sb) = (s(0), s(1), s(2));
    let want: Vec<f64> = (0..r)
        .map(|i| {
            se[i]
                + sa[i * d_in..(i + 1) * d_in].iter().sum::<f64>() / d_in as f64
                + (0..d_out).map(|j| sb[j * r + i]).sum::<f64>() / d_out as f64
        })
        .collect();
    let got = alloc.triplet_scores("", r, d_in, d_out);
    assert_eq!(got.len(), r);
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() <= 1e-6 * w.abs().max(1e-12),
            "score {g} vs {w}"
        );
        assert!(*w > 0.0);
    }
}

/// The orthogonality regularizer is normalized as PEFT's `AdaLoraModel.forward`: each `lora_A`
/// and each `lora_B` is one term, `γ · Σ_k (‖Q_k Q_kᵀ − I‖_F + ‖P_kᵀ P_k − I‖_F) / (2M)` over the
/// `M` adapted matrices. Reference in f64 from the tensors' values; f32 sums of 8×4 products,
/// relative tolerance 1e-5. Dividing by `M` (one term per matrix) gives twice the value.
#[test]
fn regularizer_is_normalized_like_peft() {
    let dev = device();
    let c = AdaLoraConfig::new(ModuleSelector::list(&SIX))
        .with_init_r(4)
        .with_target_r(2)
        .with_orth_reg_weight(0.3);
    let mut m = TinyEncoder::new(1, 8, 8, &dev);
    attach(&mut m, &AdapterConfig::Adalora(c.clone()), 3).unwrap();
    let alloc = AdaLoraAllocator::new(&m, &c, 10).unwrap();
    let got = values(&alloc.regularizer(&m).unwrap().unwrap())[0];
    // ‖X Xᵀ − I‖_F of a row-major [rows, cols] matrix (transpose = use the columns)
    let gram_dist = |v: &[f64], rows: usize, cols: usize, of_rows: bool| {
        let (n, len) = if of_rows { (rows, cols) } else { (cols, rows) };
        let at = |i: usize, k: usize| {
            if of_rows {
                v[i * cols + k]
            } else {
                v[k * cols + i]
            }
        };
        let mut s = 0.0;
        for i in 0..n {
            for j in 0..n {
                let dot: f64 = (0..len).map(|k| at(i, k) * at(j, k)).sum();
                let d = dot - if i == j { 1.0 } else { 0.0 };
                s += d * d;
            }
        }
        s.sqrt()
    };
    let (mut sum, mut matrices) = (0.0, 0usize);
    m.for_each_linear("", &mut |_, l| {
        let Some(Adapter::AdaLora(a)) = &l.adapter else {
            return;
        };
        let [r, d_in] = a.lora_a.val().dims();
        let [d_out, _] = a.lora_b.val().dims();
        sum += gram_dist(&values(&a.lora_a.val()), r, d_in, true);
        sum += gram_dist(&values(&a.lora_b.val()), d_out, r, false);
        matrices += 1;
    });
    assert_eq!(matrices, 6);
    let want = 0.3 * sum / (2.0 * matrices as f64);
    assert!(
        (got - want).abs() <= 1e-5 * want,
        "regularizer {got}, PEFT's normalization gives {want}"
    );
}
