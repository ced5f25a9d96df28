//! Paired step-time ratios against LoRA, robust to this machine's drift: the variants run
//! interleaved (LoRA, X, LoRA, X, …) in one process and the median of per-pair ratios is
//! reported. One step = forward + backward of one adapted `d → d` layer, N = 2048, r = 8, flex.
//!
//! Run: `cargo run --release -p peftlab-adapters --example method_ratio --features probes`
use std::time::Instant;

use burn::module::Param;
use burn::tensor::{DType, Device, Tensor};
use peftlab_adapters::lora::LoraConfig;
use peftlab_adapters::mtlora::MtLoraConfig;
use peftlab_adapters::target::ModuleSelector;
use peftlab_adapters::triadapt::TriAdaptConfig;
use peftlab_adapters::{AdaptedLinear, AdapterConfig, attach};
use peftlab_linalg::init::{Fill, SeededRng};
use peftlab_linalg::transform::TransformKind;

fn random(rows: usize, cols: usize, seed: u64, dev: &Device) -> Tensor<2> {
    Fill::Normal { std: 1.0 }.tensor(rows, cols, &mut SeededRng::new(seed), dev, DType::F32)
}

fn layer(d: usize, cfg: AdapterConfig, dev: &Device) -> AdaptedLinear {
    let mut l = AdaptedLinear::new(d, d, true, dev);
    attach(&mut l, &cfg, 0).unwrap();
    if let Some(a) = &mut l.adapter {
        for (i, n) in a.named_params_mut().into_iter().enumerate() {
            let [r, c] = n.param.dims();
            let v = (n.param.val() + random(r, c, 10 + i as u64, dev) * 0.01).detach();
            *n.param = Param::initialized(n.param.id, v).set_require_grad(true);
        }
    }
    l
}

fn step(l: &AdaptedLinear, x: &Tensor<2>, w: &Tensor<2>) -> f64 {
    let t = Instant::now();
    let xg = x.clone().require_grad();
    let grads = (l.forward(xg.clone()) * w.clone()).sum().backward();
    xg.grad(&grads).unwrap().into_data();
    t.elapsed().as_secs_f64()
}

fn main() {
    let dev = Device::default().autodiff();
    let root = ModuleSelector::Regex(String::new());
    println!("| variant | d | median time / LoRA's (40 interleaved pairs) |\n|---|---|---|");
    for d in [384, 768] {
        let (x, w) = (random(2048, d, 1, &dev), random(2048, d, 2, &dev));
        let lora = layer(
            d,
            AdapterConfig::Lora(LoraConfig::new(8, root.clone())),
            &dev,
        );
        let mut others: Vec<(String, AdaptedLinear)> = [
            TransformKind::Shim,
            TransformKind::Icfm,
            TransformKind::Ctcm,
            TransformKind::Dtsm,
        ]
        .into_iter()
        .map(|k| {
            (
                format!("mtlora_{}", k.name()),
                layer(
                    d,
                    AdapterConfig::Mtlora(MtLoraConfig::new(8, k, root.clone())),
                    &dev,
                ),
            )
        })
        .collect();
        let tri = TriAdaptConfig::new(root.clone()).with_init_rank(8);
        others.push((
            "triadaptlora".into(),
            layer(d, AdapterConfig::Triadaptlora(tri), &dev),
        ));
        for (name, other) in &others {
            step(&lora, &x, &w);
            step(other, &x, &w);
            let mut ratios: Vec<f64> = (0..40)
                .map(|_| {
                    let a = step(&lora, &x, &w);
                    let b = step(other, &x, &w);
                    b / a
                })
                .collect();
            ratios.sort_by(f64::total_cmp);
            println!("| {name} | {d} | {:.3} |", ratios[20]);
        }
    }
}
