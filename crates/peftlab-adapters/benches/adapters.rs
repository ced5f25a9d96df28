//! One training step (forward + backward) of a single adapted linear layer.
//!
//! `N = 2048` tokens, `d_in = d_out = d ∈ {384, 768}`, `r = 8`, f32, flex backend with autodiff.
//! The input requires a gradient in every variant (as inside a network, where `dx` feeds the
//! layers below), so "base" is the frozen layer's own cost. Variants:
//! - `base`: frozen `x W0 + b` alone;
//! - `lora`, `mtlora_*`: peftlab's factored adapters;
//! - `burn_lora`: burn 0.22's built-in `Module::apply_lora` (dense `ΔW` reparameterization).
//!
//! Run: `cargo bench -p peftlab-adapters --bench adapters` (results in docs/performance.md).

use std::hint::black_box;
use std::time::Duration;

use burn::module::{Lora, Module, Param, ParamGroup};
use burn::nn::LinearConfig;
use burn::tensor::{DType, Device, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use peftlab_adapters::lora::LoraConfig;
use peftlab_adapters::mtlora::MtLoraConfig;
use peftlab_adapters::target::ModuleSelector;
use peftlab_adapters::{AdaptedLinear, Adapter, AdapterConfig, attach};
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
        // non-zero B, as during training
        if let Some(Adapter::LowRank(a)) = &mut l.adapter {
            let b = random(d, R, 1, dev) * 0.01;
            a.lora_b = Param::initialized(a.lora_b.id, b).set_require_grad(true);
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

criterion_group!(benches, step);
criterion_main!(benches);
