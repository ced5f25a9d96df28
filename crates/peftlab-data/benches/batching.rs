//! Batching throughput: tokenize 5,000 MR snippets with the MiniLM tokenizer (pair-capable
//! `encode_limited`, max 128), order them in bucketed batches of 32 and pad every batch into
//! tensors. Falls back to generated text when the fetched data is absent.
//!
//! Run: `cargo bench -p peftlab-data --bench batching` (data: `cargo xtask fetch`).

use std::hint::black_box;
use std::time::Duration;

use burn::tensor::Device;
use criterion::{Criterion, criterion_group, criterion_main};
use peftlab_data::batch::{batch_order, classification_batch, encode_examples};
use peftlab_data::task::{Example, Label};
use peftlab_models::tokenizer::Tokenizer;

fn batching(c: &mut Criterion) {
    let tok_path = peftlab_models::cache_dir().join("models/all-MiniLM-L6-v2/tokenizer.json");
    let Ok(tok) = Tokenizer::from_file(&tok_path) else {
        eprintln!("SKIPPED: no MiniLM tokenizer; run `cargo xtask fetch`");
        return;
    };
    let mut examples: Vec<Example> = match peftlab_data::loaders::load("mr2") {
        Ok(d) => d.train,
        Err(_) => (0..5000)
            .map(|i| Example {
                id: i.to_string(),
                text_a:
                    "a gorgeously elaborate continuation of the trilogy , so huge that words fail "
                        .repeat(1 + i % 3),
                text_b: None,
                label: Some(Label::Class(i % 2)),
            })
            .collect(),
    };
    examples.truncate(5000);
    let dev = Device::default();
    let mut g = c.benchmark_group("batching_5k");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.bench_function("tokenize", |b| {
        b.iter(|| black_box(encode_examples(&tok, &examples, 128).unwrap()))
    });
    let enc = encode_examples(&tok, &examples, 128).unwrap();
    let lengths: Vec<usize> = enc.iter().map(|e| e.ids.len()).collect();
    g.bench_function("order_and_pad_b32", |b| {
        b.iter(|| {
            for batch in batch_order(&lengths, 32, 0, 0, true) {
                let items: Vec<_> = batch.iter().map(|&i| &enc[i]).collect();
                black_box(classification_batch(&items, 0, &dev));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, batching);
criterion_main!(benches);
