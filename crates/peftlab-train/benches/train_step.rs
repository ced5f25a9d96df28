//! One optimizer step of the real all-MiniLM-L6-v2 with an adapter on the six matrices per
//! layer (query, key, value, attention output, intermediate, output) and a trained head:
//! B = 32, T = 64 (deterministic ids, full mask), mean pooling, cross-entropy, backward,
//! global-norm clipping, AdamW — what the training loop does per step. Variants: LoRA r = 8,
//! the four MTLoRA structures at r = 8, TriAdaptLoRA at rank 8 (no growth during the bench), and
//! `lora_bf16base`: LoRA on the opt-in bf16 frozen base (`model.base_precision = "bf16"`; only
//! on CPUs with `avx512_bf16`).
//!
//! A second group, `smollm2_train_step`: SmolLM2-135M-Instruct (the pinned Q4_1 GGUF, dequantized
//! to f32) with LoRA r = 8 on its seven projections per layer, B = 8, T = 128, next-token
//! cross-entropy over all positions, same optimizer; `lora_bf16base` as above.
//!
//! Run: `cargo bench -p peftlab-train --bench train_step`; side by side with PyTorch + PEFT
//! (`scripts/bench_torch_train.py`): `PEFTLAB_PYTHON=… cargo xtask bench-train`. Needs the
//! fetched MiniLM (`cargo xtask fetch --only minilm`); skipped with a message without it.

use std::hint::black_box;
use std::time::Duration;

use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use criterion::{Criterion, criterion_group, criterion_main};
use peftlab_adapters::{AdapterConfig, AdapterHost, attach};
use peftlab_data::task::Label;
use peftlab_models::zoo::{LoadOptions, Model, load};
use peftlab_train::config::Precision;
use peftlab_train::optim::{AdamW, AdamWConfig, global_grad_norm};
use peftlab_train::trainer::classification_loss;

const B: usize = 32;
const T: usize = 64;
const TARGETS: &str =
    r#"["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]"#;

fn adapter(toml_table: &str) -> AdapterConfig {
    let v: toml::Value = toml::from_str(toml_table).unwrap();
    AdapterConfig::from_value(&serde_json::to_value(v).unwrap()).unwrap()
}

fn model(dir: &std::path::Path, cfg: &AdapterConfig, dev: &Device) -> Model {
    let opts = LoadOptions {
        num_labels: Some(2),
        seed: 0,
        mean_pooling: true,
    };
    let mut m = load(dir, &opts, dev).unwrap().model;
    attach(&mut m, cfg, 0).unwrap();
    m.for_each_linear_mut("", &mut |p, l| {
        if p == "classifier" {
            l.unfreeze_base();
        }
    });
    m
}

/// Backward, global-norm clipping at 1.0 and one AdamW step (lr 1e-4), as the trainer does;
/// returns the updated model and the gradient norm.
fn optimizer_step<M: burn::module::Module>(model: M, loss: Tensor<1>, opt: &mut AdamW) -> (M, f64) {
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let norm = global_grad_norm(&model, &grads);
    let scale = if norm > 1.0 { 1.0 / (norm + 1e-6) } else { 1.0 };
    (opt.step(model, grads, 1e-4, scale), norm)
}

fn step(c: &mut Criterion) {
    let dir = peftlab_data::fetch::cache_dir().join("models/all-MiniLM-L6-v2");
    if !dir.join("model.safetensors").exists() {
        eprintln!(
            "train_step: {} missing (cargo xtask fetch --only minilm); skipped",
            dir.display()
        );
        return;
    }
    // as `Trainer::new` does: freed activations are reused instead of faulted in again
    peftlab_train::alloc::retain_freed_memory();
    let dev = Device::default().autodiff();
    let ids: Vec<i64> = (0..B * T)
        .map(|k| 1000 + ((k * 7919) % 20000) as i64)
        .collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [B, T]), &dev);
    let types = Tensor::<2, Int>::zeros([B, T], &dev);
    let mask = Tensor::<2>::ones([B, T], &dev);
    let labels: Vec<Option<Label>> = (0..B).map(|i| Some(Label::Class(i % 2))).collect();
    let lora = format!("method = \"lora\"\nr = 8\nlora_alpha = 16.0\ntarget_modules = {TARGETS}");
    let mut variants = vec![("lora".to_string(), lora.clone(), Precision::F32)];
    for s in ["Shim", "Icfm", "Ctcm", "Dtsm"] {
        variants.push((
            format!("mtlora_{}", s.to_lowercase()),
            format!("method = \"mtlora\"\nstructure = \"{s}\"\nr = 8\nlora_alpha = 16.0\ntarget_modules = {TARGETS}"),
            Precision::F32,
        ));
    }
    variants.push((
        "triadaptlora".into(),
        format!("method = \"triadaptlora\"\nreference_rank = 8\ninit_rank = 8\ntarget_modules = {TARGETS}"),
        Precision::F32,
    ));
    variants.extend(bf16_variant("lora", &lora));
    let mut g = c.benchmark_group("minilm_train_step");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    for (name, table, precision) in variants {
        let cfg = adapter(&table);
        let mut model = model(&dir, &cfg, &dev);
        model.set_base_precision(precision).unwrap();
        let mut m = Some(model);
        let mut opt = AdamW::new(AdamWConfig {
            weight_decay: 0.01,
            ..AdamWConfig::default()
        });
        g.bench_function(format!("{name}/b{B}_t{T}"), |b| {
            b.iter(|| {
                let model = m.take().unwrap();
                let logits = model
                    .classify(ids.clone(), Some(types.clone()), mask.clone())
                    .unwrap();
                let loss = classification_loss(logits, &labels, 0.0).unwrap();
                let (model, norm) = optimizer_step(model, loss, &mut opt);
                m = Some(model);
                black_box(norm)
            })
        });
    }
    g.finish();
}

/// The `<name>_bf16base` variant (the opt-in bf16 frozen base), where this CPU runs it.
fn bf16_variant(name: &str, table: &str) -> Option<(String, String, Precision)> {
    match Precision::Bf16.check() {
        Ok(()) => Some((
            format!("{name}_bf16base"),
            table.to_string(),
            Precision::Bf16,
        )),
        Err(e) => {
            eprintln!("train_step: {name}_bf16base skipped: {e}");
            None
        }
    }
}

fn smollm2_step(c: &mut Criterion) {
    use peftlab_models::gguf::GgufFile;
    use peftlab_models::llama::LlamaForCausalLm;
    use peftlab_train::trainer::lm_loss;
    const SB: usize = 8;
    const ST: usize = 128;
    let path = peftlab_data::fetch::cache_dir()
        .join("models/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf");
    peftlab_train::alloc::retain_freed_memory();
    let dev = Device::default().autodiff();
    let model = match GgufFile::open(&path).and_then(|f| LlamaForCausalLm::from_gguf(&f, &dev)) {
        Ok((m, _)) => m,
        Err(e) => {
            eprintln!("train_step: SmolLM2 unavailable ({e}; cargo xtask fetch); skipped");
            return;
        }
    };
    let targets =
        r#"["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]"#;
    let lora = format!("method = \"lora\"\nr = 8\nlora_alpha = 16.0\ntarget_modules = {targets}");
    let ids: Vec<i64> = (0..SB * ST)
        .map(|k| 1000 + ((k * 7919) % 20000) as i64)
        .collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [SB, ST]), &dev);
    let loss_mask = Tensor::<2>::ones([SB, ST], &dev);
    let mut g = c.benchmark_group("smollm2_train_step");
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    let variants = std::iter::once(("lora".to_string(), lora.clone(), Precision::F32))
        .chain(bf16_variant("lora", &lora));
    for (name, table, precision) in variants {
        let mut model = Model::Llama(model.clone());
        attach(&mut model, &adapter(&table), 0).unwrap();
        model.set_base_precision(precision).unwrap();
        let mut opt = AdamW::new(AdamWConfig {
            weight_decay: 0.01,
            ..AdamWConfig::default()
        });
        let mut m = Some(model);
        g.bench_function(format!("{name}/b{SB}_t{ST}"), |b| {
            b.iter(|| {
                let model = m.take().unwrap();
                let lm = model.causal_lm().expect("a causal LM");
                let logits = lm.logits(ids.clone(), None);
                let loss = lm_loss(logits, ids.clone(), loss_mask.clone(), 0.0);
                let (model, norm) = optimizer_step(model, loss, &mut opt);
                m = Some(model);
                black_box(norm)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, step, smollm2_step);
criterion_main!(benches);
