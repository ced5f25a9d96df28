//! GEMM rates at MiniLM's shapes: burn (active backend) vs faer, median of 9, GFLOP/s.
//!
//! Run: `cargo run --release -p peftlab-linalg --example gemm_probe --features probes`
use std::time::Instant;

use burn::tensor::{DType, Device};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};
use peftlab_linalg::init::{Fill, SeededRng};

fn med(mut f: impl FnMut()) -> f64 {
    f();
    let mut v: Vec<f64> = (0..9)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[4]
}

fn main() {
    let dev = Device::default();
    println!("| m×k·k×n | burn | faer seq | faer 2 threads |\n|---|---|---|---|");
    for (m, k, n) in [
        (2048, 384, 384),
        (2048, 384, 1536),
        (2048, 1536, 384),
        (512, 576, 1536),
    ] {
        let gf = 2.0 * (m * k * n) as f64 / 1e9;
        let r = |rows, cols, s| {
            Fill::Normal { std: 0.05 }.tensor(rows, cols, &mut SeededRng::new(s), &dev, DType::F32)
        };
        let (a, b) = (r(m, k, 1), r(k, n, 2));
        let tb = med(|| {
            std::hint::black_box(a.clone().matmul(b.clone()).into_data());
        });
        let fa = Mat::<f32>::from_fn(m, k, |i, j| ((i * 7 + j) % 13) as f32 * 0.01);
        let fb = Mat::<f32>::from_fn(k, n, |i, j| ((i * 3 + j) % 11) as f32 * 0.01);
        let mut c = Mat::<f32>::zeros(m, n);
        let mut run = |par| {
            med(|| {
                matmul(
                    c.as_mut(),
                    Accum::Replace,
                    fa.as_ref(),
                    fb.as_ref(),
                    1.0,
                    par,
                );
                std::hint::black_box(&c);
            })
        };
        let ts = run(Par::Seq);
        let tp = run(Par::rayon(2));
        println!(
            "| {m}×{k}·{k}×{n} | {:.0} | {:.0} | {:.0} |",
            gf / tb,
            gf / ts,
            gf / tp
        );
    }
}
