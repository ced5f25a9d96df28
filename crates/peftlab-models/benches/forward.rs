//! MiniLM-L6 forward throughput on the CPU (B = 32, T = 64, random token ids, full mask),
//! compared with PyTorch on the same machine by `scripts/bench_torch_minilm.py`.
//!
//! Run: `cargo bench -p peftlab-models --bench forward` (needs `scripts/fetch_models.sh`).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use burn::tensor::{Device, Int, Tensor, TensorData};
use criterion::{Criterion, criterion_group, criterion_main};
use peftlab_linalg::init::SeededRng;
use peftlab_models::bert::Bert;

fn forward(c: &mut Criterion) {
    let cache = std::env::var_os("PEFTLAB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/peftlab")
        });
    let dir = cache.join("models/all-MiniLM-L6-v2");
    if !dir.join("model.safetensors").exists() {
        eprintln!(
            "SKIPPED: no checkpoint in {}; run scripts/fetch_models.sh",
            dir.display()
        );
        return;
    }
    let dev = Device::default();
    let model = Bert::from_dir(&dir, &dev).unwrap();
    let (b, t) = (32, 64);
    let mut rng = SeededRng::new(0);
    let ids: Vec<i64> = (0..b * t)
        .map(|_| 1000 + (rng.unit() * 20000.0) as i64)
        .collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, t]), &dev);
    let mask = Tensor::<2>::ones([b, t], &dev);
    let mut g = c.benchmark_group("minilm");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.bench_function("forward/b32_t64", |bch| {
        bch.iter(|| black_box(model.forward(ids.clone(), mask.clone()).into_data()))
    });
    g.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
