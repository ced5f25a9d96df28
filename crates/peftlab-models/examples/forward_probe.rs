//! Where MiniLM's forward time goes on flex (B = 32, T = 64, d = 384, 12 heads): each piece of
//! one layer timed alone, median of 7 runs, in ms.
//!
//! Run: `cargo run --release -p peftlab-models --example forward_probe`
use std::time::Instant;

use burn::tensor::activation::{gelu, softmax};
use burn::tensor::{DType, Device, Tensor};
use peftlab_linalg::init::{Fill, SeededRng};

fn t<O>(name: &str, mut f: impl FnMut() -> O) {
    f();
    let mut v: Vec<f64> = (0..7)
        .map(|_| {
            let s = Instant::now();
            std::hint::black_box(f());
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(f64::total_cmp);
    println!("| {name} | {:.1} ms |", v[3]);
}

fn main() {
    let dev = Device::default();
    let (b, tt, d, h, ff) = (32, 64, 384, 12, 1536);
    let r = |rows, cols, s| {
        Fill::Normal { std: 0.05 }.tensor(rows, cols, &mut SeededRng::new(s), &dev, DType::F32)
    };
    let x = r(b * tt, d, 1).reshape([b, tt, d]);
    let w = r(d, d, 2);
    let w1 = r(d, ff, 3);
    let w2 = r(ff, d, 4);
    let q = r(b * tt, d, 5).reshape([b, tt, h, d / h]).swap_dims(1, 2);
    let sync = |y: Tensor<3>| y.into_data();
    println!("| piece (one layer) | median |\n|---|---|");
    t("x·W, d→d (×4 per layer)", || {
        sync(x.clone().matmul(w.clone().unsqueeze()))
    });
    t("x·W1, d→4d", || {
        sync(x.clone().matmul(w1.clone().unsqueeze()))
    });
    let x2 = x.clone().reshape([b * tt, d]);
    t("x·W1, d→4d, flattened to 2-D", || {
        x2.clone().matmul(w1.clone()).into_data()
    });
    t("x·W, d→d, flattened to 2-D", || {
        x2.clone().matmul(w.clone()).into_data()
    });
    t("burn linear() d→4d on [B,T,d]", || {
        sync(burn::tensor::module::linear(x.clone(), w1.clone(), None))
    });
    t("h·W2, 4d→d", || {
        sync(gelu(x.clone().matmul(w1.clone().unsqueeze())).matmul(w2.clone().unsqueeze()))
    });
    t("gelu on [B,T,4d]", || {
        sync(gelu(x.clone().matmul(w1.clone().unsqueeze())))
    });
    t("reshape+swap q to heads (copy)", || {
        q.clone().swap_dims(1, 2).reshape([b, tt, d]).into_data()
    });
    t("scores q·kᵀ [B,H,T,T]", || {
        q.clone().matmul(q.clone().swap_dims(2, 3)).into_data()
    });
    t("softmax scores", || {
        softmax(q.clone().matmul(q.clone().swap_dims(2, 3)), 3).into_data()
    });
    t("probs·v", || {
        softmax(q.clone().matmul(q.clone().swap_dims(2, 3)), 3)
            .matmul(q.clone())
            .into_data()
    });
}
