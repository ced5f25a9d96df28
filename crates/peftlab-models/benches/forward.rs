//! Forward throughput on the CPU of the real checkpoints, the shapes of issue 4:
//! all-MiniLM-L6-v2 (`Bert`, B = 32, T = 64, full mask) and SmolLM2-135M-Instruct (Llama from the
//! Q4_1 GGUF dequantized to f32, B = 8, T = 64, logits). Token ids are drawn from 1000..21000.
//! Decoding (issue 16): SmolLM2 continuing a 32-token prompt by 32 tokens with the KV cache,
//! greedy and beam search (4 beams), no EOS, so every run decodes exactly 32 tokens
//! (tokens/s = 32 / time).
//! `cargo xtask bench-models` runs this and `scripts/bench_torch_forward.py` (PyTorch on the same
//! models and shapes) side by side.
//!
//! Run: `cargo bench -p peftlab-models --bench forward` (needs `cargo xtask fetch`).

use std::hint::black_box;
use std::time::Duration;

use burn::tensor::{Device, Int, Tensor, TensorData};
use criterion::{Criterion, criterion_group, criterion_main};
use peftlab_linalg::init::SeededRng;
use peftlab_models::bert::Bert;
use peftlab_models::decoder::CausalLm;
use peftlab_models::generate::{GenerationConfig, generate};
use peftlab_models::gguf::GgufFile;
use peftlab_models::llama::LlamaForCausalLm;

fn ids(b: usize, t: usize, dev: &Device) -> Tensor<2, Int> {
    let mut rng = SeededRng::new(0);
    let v: Vec<i64> = (0..b * t)
        .map(|_| 1000 + (rng.unit() * 20000.0) as i64)
        .collect();
    Tensor::from_data(TensorData::new(v, [b, t]), dev)
}

fn forward(c: &mut Criterion) {
    let dev = Device::default();
    let models = peftlab_models::cache_dir().join("models");
    let mut g = c.benchmark_group("minilm");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    match Bert::from_dir(&models.join("all-MiniLM-L6-v2"), &dev) {
        Ok(model) => {
            let (x, mask) = (ids(32, 64, &dev), Tensor::<2>::ones([32, 64], &dev));
            g.bench_function("forward/b32_t64", |bch| {
                bch.iter(|| black_box(model.forward(x.clone(), mask.clone()).into_data()))
            });
        }
        Err(e) => eprintln!("SKIPPED minilm ({e}); run `cargo xtask fetch`"),
    }
    g.finish();
    let mut g = c.benchmark_group("smollm2");
    g.sample_size(10).measurement_time(Duration::from_secs(15));
    let path = models.join("smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf");
    match GgufFile::open(&path).and_then(|f| LlamaForCausalLm::from_gguf(&f, &dev)) {
        Ok((model, _)) => {
            let x = ids(8, 64, &dev);
            g.bench_function("forward/b8_t64", |bch| {
                bch.iter(|| black_box(model.logits(x.clone(), None).into_data()))
            });
            let prompt: Vec<u32> = ids(1, 32, &dev)
                .try_to_vec_as::<i64>()
                .expect("ids")
                .into_iter()
                .map(|i| i as u32)
                .collect();
            for beams in [1, 4] {
                let cfg = GenerationConfig {
                    max_new_tokens: 32,
                    num_beams: beams,
                    ..GenerationConfig::default()
                };
                let name = if beams == 1 { "greedy" } else { "beam4" };
                g.bench_function(format!("{name}/p32_n32"), |bch| {
                    bch.iter(|| black_box(generate(&model, &prompt, &cfg).expect("decodes")))
                });
            }
        }
        Err(e) => eprintln!("SKIPPED smollm2 ({e}); run `cargo xtask fetch`"),
    }
    g.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
