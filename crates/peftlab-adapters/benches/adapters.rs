//! One training step (forward + backward) of a single adapted linear layer.
//!
//! `N = 2048` tokens, `d_in = d_out = d ∈ {384, 768}`, `r = 8`, f32, flex backend with autodiff.
//! The input requires a gradient in every variant (as inside a network, where `dx` feeds the
//! layers below), so "base" is the frozen layer's own cost. Variants:
//! - `base`: frozen `x W0 + b` alone;
//! - `lora`, `mtlora_*`: peftlab's factored adapters;
//! - `triadaptlora`, `adalora`, `svda`, `loratrf`: the other methods at rank 8;
//! - `burn_lora`: burn 0.22's built-in `Module::apply_lora` (dense `ΔW` reparameterization).
//!
//! A second group times the inference forward of the base, LoRA unmerged and LoRA merged.
//!
//! Run: `cargo bench -p peftlab-adapters --bench adapters` (results in docs/performance.md).

use std::hint::black_box;
use std::time::Duration;

use burn::module::{Lora, Module, Param, ParamGroup};
use burn::nn::LinearConfig;
use burn::tensor::{DType, Device, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use peftlab_adapters::adalora::AdaLoraConfig;
use peftlab_adapters::lora::LoraConfig;
use peftlab_adapters::loratrf::LoraTrfConfig;
use peftlab_adapters::mtlora::MtLoraConfig;
use peftlab_adapters::svd_adapt::SvdAdaptConfig;
use peftlab_adapters::target::ModuleSelector;
use peftlab_adapters::triadapt::TriAdaptConfig;
use peftlab_adapters::{AdaptedLinear, AdapterConfig, attach};
use peftlab_linalg::init::{Fill, SeededRng};
use peftlab_linalg::transform::TransformKind;

const N: usize = 2048;
const R: usize = 8;

fn random(rows: usize, cols: usize, seed: u64, dev: &Device) -> Tensor<2> {
    Fill::Normal { std: 1.0 }.tensor(rows, cols, &mut SeededRng::new(seed), dev, DType::F32)
}

fn adapted(d: usize, cfg: Option<AdapterConfig>, dev: &Device) -> AdaptedLinear {
    let mut l = AdaptedLinear::new(d, d, true, dev);
    if let Some(cfg) = cfg {
        attach(&mut l, &cfg, 0).unwrap();
        // move every trainable tensor off its init (zero B, zero λ …), as during training
        if let Some(adapter) = &mut l.adapter {
            for (i, n) in adapter.named_params_mut().into_iter().enumerate() {
                if n.trainable {
                    let [r, c] = n.param.dims();
                    let v = (n.param.val() + random(r, c, 10 + i as u64, dev) * 0.01).detach();
                    *n.param = Param::initialized(n.param.id, v).set_require_grad(true);
                }
            }
        }
    } else {
        l.freeze_base();
    }
    l
}

fn step(c: &mut Criterion) {
    let dev = Device::default().autodiff();
    let root = ModuleSelector::Regex(String::new());
    let mut g = c.benchmark_group("adapted_linear_step");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    for d in [384, 768] {
        let x = random(N, d, 2, &dev);
        let w = random(N, d, 3, &dev);
        let mut variants: Vec<(String, AdaptedLinear)> = vec![
            ("base".into(), adapted(d, None, &dev)),
            (
                "lora".into(),
                adapted(
                    d,
                    Some(AdapterConfig::Lora(LoraConfig::new(R, root.clone()))),
                    &dev,
                ),
            ),
        ];
        for k in [
            TransformKind::Shim,
            TransformKind::Icfm,
            TransformKind::Ctcm,
            TransformKind::Dtsm,
        ] {
            let cfg = AdapterConfig::Mtlora(MtLoraConfig::new(R, k, root.clone()));
            variants.push((format!("mtlora_{}", k.name()), adapted(d, Some(cfg), &dev)));
        }
        let tri = TriAdaptConfig::new(root.clone()).with_init_rank(R);
        variants.push((
            "triadaptlora".into(),
            adapted(d, Some(AdapterConfig::Triadaptlora(tri)), &dev),
        ));
        let ada = AdaLoraConfig::new(root.clone())
            .with_init_r(R)
            .with_target_r(R);
        variants.push((
            "adalora".into(),
            adapted(d, Some(AdapterConfig::Adalora(ada)), &dev),
        ));
        let svd = SvdAdaptConfig::new(root.clone()).with_r(Some(R));
        variants.push((
            "svda".into(),
            adapted(d, Some(AdapterConfig::Svda(svd)), &dev),
        ));
        let trf = LoraTrfConfig::new(R, root.clone());
        variants.push((
            "loratrf".into(),
            adapted(d, Some(AdapterConfig::Loratrf(trf)), &dev),
        ));
        for (name, layer) in &variants {
            g.bench_function(format!("{name}/d{d}"), |b| {
                b.iter(|| {
                    let xg = x.clone().require_grad();
                    let loss = (layer.forward(xg.clone()) * w.clone()).sum();
                    let grads = loss.backward();
                    black_box(xg.grad(&grads).unwrap().into_data());
                })
            });
        }
        // burn's built-in LoRA on a stock nn::Linear (dense ΔW per forward)
        let lin = LinearConfig::new(d, d)
            .init(&dev)
            .apply_lora(Lora::new(R, 16.0).set_param_group(ParamGroup::from_paths(vec!["weight"])));
        g.bench_function(format!("burn_lora/d{d}"), |b| {
            b.iter(|| {
                let xg = x.clone().require_grad();
                let loss = (lin.forward(xg.clone()) * w.clone()).sum();
                let grads = loss.backward();
                black_box(xg.grad(&grads).unwrap().into_data());
            })
        });
    }
    g.finish();
}

/// Inference forward: frozen base vs LoRA unmerged vs LoRA merged (should equal the base).
fn inference(c: &mut Criterion) {
    let dev = Device::default();
    let root = ModuleSelector::Regex(String::new());
    let mut g = c.benchmark_group("adapted_linear_forward");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    for d in [384, 768] {
        let x = random(N, d, 2, &dev);
        let base = adapted(d, None, &dev);
        let lora = adapted(
            d,
            Some(AdapterConfig::Lora(LoraConfig::new(R, root.clone()))),
            &dev,
        );
        let mut merged = lora.clone();
        merged.merge(true, "").unwrap();
        for (name, layer) in [
            ("base", &base),
            ("lora_unmerged", &lora),
            ("lora_merged", &merged),
        ] {
            g.bench_function(format!("{name}/d{d}"), |b| {
                b.iter(|| black_box(layer.forward(x.clone()).into_data()))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, step, inference);
criterion_main!(benches);
