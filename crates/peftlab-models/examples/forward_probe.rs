//! Where MiniLM's forward time goes on the active backend (B = 32, T = 64, d = 384, 12 heads):
//! each piece of one layer timed alone on precomputed inputs, median of 7 runs, in ms.
//!
//! Run: `cargo run --release -p peftlab-models --example forward_probe --features probes`
use std::time::Instant;

use burn::nn::LayerNormConfig;
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::{DType, Device, Tensor};
use peftlab_adapters::AdaptedLinear;
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
    println!("| {name} | {:.2} |", v[3]);
}

fn main() {
    let dev = Device::default();
    let (b, tt, d, h, ff) = (32, 64, 384, 12, 1536);
    let r = |rows, cols, s| {
        Fill::Normal { std: 0.05 }.tensor(rows, cols, &mut SeededRng::new(s), &dev, DType::F32)
    };
    let x = r(b * tt, d, 1).reshape([b, tt, d]);
    let x4 = r(b * tt, ff, 6).reshape([b, tt, ff]);
    let w1 = r(d, ff, 3);
    let mut lin = AdaptedLinear::new(d, ff, true, &dev);
    lin.weight = burn::module::Param::from_tensor(w1.clone());
    let q = r(b * tt, d, 5).reshape([b, tt, h, d / h]).swap_dims(1, 2);
    let scores = q.clone().matmul(q.clone().swap_dims(2, 3));
    let probs = softmax(scores.clone(), 3);
    let bias = Tensor::<2>::zeros([b, tt], &dev).reshape([b, 1, 1, tt]);
    let ln = LayerNormConfig::new(d).init(&dev);
    println!("| piece (one layer) | ms |\n|---|---|");
    t("x·W1 d→4d (3-D matmul)", || {
        x.clone().matmul(w1.clone().unsqueeze())
    });
    t("AdaptedLinear d→4d (matmul + bias)", || {
        lin.forward(x.clone())
    });
    t("bias add [B,T,4d]", || {
        x4.clone() + lin.bias.as_ref().unwrap().val().unsqueeze()
    });
    t("gelu (erf) [B,T,4d], burn", || gelu(x4.clone()));
    t("gelu (erf) [B,T,4d], peftlab act::apply", || {
        peftlab_models::act::apply(peftlab_models::act::Activation::GeluErf, x4.clone())
    });
    t("residual add [B,T,d]", || x.clone() + x.clone());
    t("LayerNorm [B,T,d]", || ln.forward(x.clone()));
    t(
        "split heads: reshape+swap_dims [B,T,d]→[B,H,T,dh]",
        || x.clone().reshape([b, tt, h, d / h]).swap_dims(1, 2),
    );
    t("merge heads: swap_dims+reshape (copy)", || {
        q.clone().swap_dims(1, 2).reshape([b, tt, d])
    });
    t("scores q·kᵀ [B,H,T,T]", || {
        q.clone().matmul(q.clone().swap_dims(2, 3))
    });
    t("scores / √dh + mask bias", || {
        scores.clone() / 8.0 + bias.clone()
    });
    t("softmax [B,H,T,T]", || softmax(scores.clone(), 3));
    t("probs·v", || probs.clone().matmul(q.clone()));
    let bias4 = bias.clone().expand([b, 1, tt, tt]) + Tensor::<4>::zeros([1, 1, tt, tt], &dev);
    let mut raw: Vec<f32> = (0..b * tt * ff)
        .map(|i| (i % 1000) as f32 * 0.004 - 2.0)
        .collect();
    t("gelu kernel alone on a Vec (2 threads)", || {
        peftlab_models::act::apply_slice(peftlab_models::act::Activation::GeluErf, &mut raw)
    });
    t("x4 into_data + from_data (round trip)", || {
        Tensor::<3>::from_data(x4.clone().into_data(), &dev)
    });
    t(
        "fused attention (q, k, v head views, [B,1,T,T] bias)",
        || {
            burn::tensor::module::attention(
                q.clone(),
                q.clone(),
                q.clone(),
                None,
                Some(bias4.clone()),
                Default::default(),
            )
        },
    );
    t("fused attention + merge heads", || {
        burn::tensor::module::attention(
            q.clone(),
            q.clone(),
            q.clone(),
            None,
            Some(bias4.clone()),
            Default::default(),
        )
        .swap_dims(1, 2)
        .reshape([b, tt, d])
    });
    let w = r(d, d, 7);
    t("x·W d→d (3-D matmul)", || {
        x.clone().matmul(w.clone().unsqueeze())
    });
    let w2 = r(ff, d, 8);
    t("h·W2 4d→d (3-D matmul)", || {
        x4.clone().matmul(w2.clone().unsqueeze())
    });

    let dir = peftlab_models::cache_dir().join("models/all-MiniLM-L6-v2");
    if let Ok(model) = peftlab_models::bert::Bert::from_dir(&dir, &dev) {
        let ids = Tensor::<2, burn::tensor::Int>::ones([b, tt], &dev) * 1037;
        let mask = Tensor::<2>::ones([b, tt], &dev);
        t("MiniLM forward (6 layers)", || {
            model.forward(ids.clone(), mask.clone()).into_data()
        });
    }
}
