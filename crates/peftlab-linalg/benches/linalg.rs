//! Criterion benches for `peftlab-linalg`.
//!
//! Run: `cargo bench -p peftlab-linalg` (all), or side by side with numpy/scipy (LAPACK) in one
//! go: `cargo xtask bench-linalg` (see docs/performance.md). Benchmark ids are
//! `<op>/<shape>/<dtype>`; `scripts/bench_lapack.py` measures the same ids.

use std::hint::black_box;
use std::time::Duration;

use burn::tensor::{DType, Device};
use criterion::{Criterion, criterion_group, criterion_main};
use faer::Mat;
use peftlab_linalg::Real;
use peftlab_linalg::decomp::{eigh, qr, singular_values, svd, svd_tensor};
use peftlab_linalg::init::{Fill, SeededRng};
use peftlab_linalg::strips::{StripInit, TriangularStrips};
use peftlab_linalg::transform::{TransformConfig, TransformKind};

/// `len` values of a small repeating pattern, `((i·mul) mod modulus − modulus/2)·0.01`: bench
/// operands that are the same on every run and need no RNG.
fn pattern(len: usize, mul: usize, modulus: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * mul % modulus) as f32 - (modulus / 2) as f32) * 0.01)
        .collect()
}

/// Uniform [-1, 1) matrix, the same distribution as the Python script.
fn random<T: Real>(m: usize, n: usize, seed: u64) -> Mat<T> {
    let mut rng = SeededRng::new(seed);
    Mat::from_fn(m, n, |_, _| T::from_f64(rng.uniform(-1.0, 1.0)))
}

fn symmetric<T: Real>(n: usize) -> Mat<T> {
    let a = random::<T>(n, n, 3);
    Mat::from_fn(n, n, |i, j| (a[(i, j)] + a[(j, i)]) * T::from_f64(0.5))
}

fn decompositions<T: Real>(c: &mut Criterion, dtype: &str) {
    let mut g = c.benchmark_group("decomp");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    for (m, n) in [(768, 768), (1024, 4096)] {
        let a = random::<T>(m, n, 1);
        g.bench_function(format!("svd_thin/{m}x{n}/{dtype}"), |b| {
            b.iter(|| svd(black_box(a.as_ref())).unwrap())
        });
        g.bench_function(format!("svd_values/{m}x{n}/{dtype}"), |b| {
            b.iter(|| singular_values(black_box(a.as_ref())).unwrap())
        });
        // QR of the tall orientation (the shape an adapter factor has).
        let tall = a.transpose().to_owned();
        g.bench_function(format!("qr/{n}x{m}/{dtype}"), |b| {
            b.iter(|| qr(black_box(tall.as_ref())).unwrap())
        });
    }
    let s = symmetric::<T>(768);
    g.bench_function(format!("eigh/768x768/{dtype}"), |b| {
        b.iter(|| eigh(black_box(s.as_ref())).unwrap())
    });
    g.finish();
}

fn decomp_f32(c: &mut Criterion) {
    decompositions::<f32>(c, "f32");
}

fn decomp_f64(c: &mut Criterion) {
    decompositions::<f64>(c, "f64");
}

/// burn tensor → host → SVD → burn tensors: what an adapter pays at attach time.
fn tensor_roundtrip(c: &mut Criterion) {
    let dev = Device::default();
    let mut rng = SeededRng::new(4);
    let w = Fill::Uniform { bound: 1.0 }.tensor(768, 768, &mut rng, &dev, DType::F32);
    let mut g = c.benchmark_group("decomp");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    g.bench_function("svd_tensor/768x768/f32", |b| {
        b.iter(|| svd_tensor(black_box(&w), None).unwrap())
    });
    g.finish();
}

/// Materializing T per step: every MTLoRA structure and the triangular strips.
fn assembly(c: &mut Criterion) {
    let dev = Device::default();
    let mut g = c.benchmark_group("assembly");
    for r in [8, 64] {
        for kind in TransformKind::ALL {
            let t = TransformConfig::new(r)
                .with_kind(kind)
                .init(&dev, 0)
                .unwrap();
            g.bench_function(format!("transform_{}/r{r}/f32", kind.name()), |b| {
                b.iter(|| black_box(t.matrix(&dev)).into_data())
            });
        }
        // author default growth: a block of 1, then blocks of 4 up to rank ≥ r
        let mut rng = SeededRng::new(0);
        let mut s = TriangularStrips::new()
            .grow(1, StripInit::DiagonalIdentity, &mut rng, &dev, DType::F32)
            .unwrap();
        while s.rank() < r {
            s = s
                .grow(
                    4,
                    StripInit::Normal { std: 0.02 },
                    &mut rng,
                    &dev,
                    DType::F32,
                )
                .unwrap();
        }
        g.bench_function(format!("strips/r{}/f32", s.rank()), |b| {
            b.iter(|| black_box(s.assemble().unwrap()).into_data())
        });
    }
    g.finish();
}

/// A frozen weight's product at MiniLM's shapes: the packed kernel (`gemm_packed`, `B` packed
/// once), the bf16 one (`gemm_bf16_packed`, the opt-in bf16 base; on a CPU without
/// `avx512_bf16` it is the slow portable kernel, so the row is skipped) and burn's `matmul` on
/// the same data (flex, which packs both operands per call).
fn frozen_gemm(c: &mut Criterion) {
    use burn::tensor::{Tensor, TensorData};
    use peftlab_linalg::gemm::{PackedMatrix, gemm_packed};
    use peftlab_linalg::gemm_bf16::{Bf16Kernel, PackedBf16, gemm_bf16_packed};
    let mut g = c.benchmark_group("gemm");
    let dev = burn::tensor::Device::default();
    for (m, k, n) in [(2048, 384, 384), (2048, 384, 1536), (2048, 1536, 384)] {
        let a = pattern(m * k, 7, 13);
        let w = pattern(k * n, 3, 11);
        let packed = PackedMatrix::pack(&w, k, n, n, 1);
        let mut out = vec![std::mem::MaybeUninit::<f32>::uninit(); m * n];
        g.bench_function(format!("packed/{m}x{k}x{n}"), |b| {
            b.iter(|| gemm_packed(&a, k, m, &packed, None, &mut out))
        });
        if Bf16Kernel::Avx512Bf16.is_available() {
            let packed = PackedBf16::pack(&w, k, n, n, 1);
            g.bench_function(format!("packed_bf16/{m}x{k}x{n}"), |b| {
                b.iter(|| gemm_bf16_packed(&a, k, m, &packed, None, &mut out))
            });
        }
        let ta = Tensor::<2>::from_data(TensorData::new(a.clone(), [m, k]), &dev);
        let tw = Tensor::<2>::from_data(TensorData::new(w.clone(), [k, n]), &dev);
        g.bench_function(format!("burn_matmul/{m}x{k}x{n}"), |b| {
            b.iter(|| std::hint::black_box(ta.clone().matmul(tw.clone()).into_data()))
        });
    }
}

/// The LoRA-family factor products at MiniLM's shape (`m = B·T = 2048` rows, `d = 384`, rank
/// `r = 8`): `x·Aᵀ` by [`skinny::dot_rows`](peftlab_linalg::skinny::dot_rows), `∂L/∂A = uᵀ·x`
/// by [`skinny::outer_sum`](peftlab_linalg::skinny::outer_sum), and burn's `matmul` of the same
/// operands (flex). Skipped on CPUs without AVX-512F (the kernels' requirement).
fn skinny_products(c: &mut Criterion) {
    use burn::tensor::{Tensor, TensorData};
    use peftlab_linalg::skinny;
    if !skinny::available() {
        return;
    }
    let mut g = c.benchmark_group("skinny");
    let dev = burn::tensor::Device::default();
    for (m, k, r) in [(2048, 384, 8), (2048, 384, 32)] {
        let x = pattern(m * k, 7, 13);
        let a = pattern(r * k, 3, 11);
        let u = pattern(m * r, 5, 9);
        g.bench_function(format!("dot_rows/{m}x{k}x{r}"), |b| {
            b.iter(|| skinny::dot_rows(black_box(&x), m, k, &a, r))
        });
        g.bench_function(format!("outer_sum/{r}x{m}x{k}"), |b| {
            b.iter(|| skinny::outer_sum(black_box(&u), r, &x, m, k))
        });
        let tx = Tensor::<2>::from_data(TensorData::new(x.clone(), [m, k]), &dev);
        let ta = Tensor::<2>::from_data(TensorData::new(a.clone(), [r, k]), &dev);
        let tu = Tensor::<2>::from_data(TensorData::new(u.clone(), [m, r]), &dev);
        g.bench_function(format!("burn_x_at/{m}x{k}x{r}"), |b| {
            b.iter(|| black_box(tx.clone().matmul(ta.clone().transpose()).into_data()))
        });
        g.bench_function(format!("burn_ut_x/{r}x{m}x{k}"), |b| {
            b.iter(|| black_box(tu.clone().transpose().matmul(tx.clone()).into_data()))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    decomp_f32,
    decomp_f64,
    tensor_roundtrip,
    assembly,
    frozen_gemm,
    skinny_products
);
criterion_main!(benches);
