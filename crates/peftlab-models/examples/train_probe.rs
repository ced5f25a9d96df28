//! Forward + backward time of the pieces of a MiniLM training step under autodiff (flex, f32),
//! at the bench's shapes (B = 32, T = 64, d = 384, 12 heads, FFN 1536); median of 15.
//!
//! Run: `cargo run --release -p peftlab-models --example train_probe --features probes`
use std::time::Instant;

use burn::nn::LayerNormConfig;
use burn::tensor::{Device, Distribution, Tensor};
use peftlab_models::act::{self, Activation};

fn med(mut f: impl FnMut()) -> f64 {
    f();
    let mut v: Vec<f64> = (0..15)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[7]
}

unsafe extern "C" {
    fn mallopt(param: i32, value: i32) -> i32;
}

fn main() {
    // as the trainer does (peftlab_train::alloc): keep freed memory, so no step faults it in again
    unsafe {
        mallopt(-3, 512 << 20); // M_MMAP_THRESHOLD
        mallopt(-1, 2 << 30); // M_TRIM_THRESHOLD
    }
    let dev = Device::flex().autodiff();
    let (b, t, d, nh, ff) = (32, 64, 384, 12, 1536);
    let dh = d / nh;
    let r = |dims: [usize; 3]| Tensor::<3>::random(dims, Distribution::Normal(0.0, 1.0), &dev);
    let ln = LayerNormConfig::new(d).init(&dev);
    let x = r([b, t, d]);
    let res = r([b, t, d]);
    let tm = med(|| {
        let xg = x.clone().require_grad();
        let y = ln.forward(xg.clone() + res.clone());
        let g = (y * res.clone()).sum().backward();
        std::hint::black_box(xg.grad(&g));
    });
    println!(
        "residual + LayerNorm [32,64,384] fwd+bwd: {:.2} ms (×13 per step)",
        tm * 1e3
    );

    let h = r([b, t, ff]);
    let hr = r([b, t, ff]);
    let tg = med(|| {
        let xg = h.clone().require_grad();
        let y = act::apply(Activation::GeluErf, xg.clone());
        let g = (y * hr.clone()).sum().backward();
        std::hint::black_box(xg.grad(&g));
    });
    println!("GELU [32,64,1536] fwd+bwd: {:.2} ms (×6)", tg * 1e3);

    let q = r([b, t, d]);
    let mask = Tensor::<4>::zeros([b, 1, t, t], &dev);
    let ta = med(|| {
        let qg = q.clone().require_grad();
        let split = |x: Tensor<3>| x.reshape([b, t, nh, dh]).swap_dims(1, 2);
        let ctx = burn::tensor::module::attention(
            split(qg.clone()),
            split(qg.clone() * 0.5),
            split(qg.clone() * 0.25),
            None,
            Some(mask.clone()),
            Default::default(),
        )
        .swap_dims(1, 2)
        .reshape([b, t, d]);
        let g = (ctx * res.clone()).sum().backward();
        std::hint::black_box(qg.grad(&g));
    });
    println!(
        "attention (split, sdpa, merge) fwd+bwd: {:.2} ms (×6)",
        ta * 1e3
    );
    let bias = Tensor::<2>::zeros([b, t], &dev);
    let tf = med(|| {
        let qg = q.clone().require_grad();
        let ctx = peftlab_linalg::attention::multi_head_attention(
            qg.clone(),
            qg.clone() * 0.5,
            qg.clone() * 0.25,
            Some(bias.clone()),
            nh,
        );
        let g = (ctx * res.clone()).sum().backward();
        std::hint::black_box(qg.grad(&g));
    });
    println!(
        "attention fused (peftlab_linalg::attention) fwd+bwd: {:.2} ms (×6)",
        tf * 1e3
    );

    let ts = med(|| {
        let xg = x.clone().require_grad();
        let y = xg.clone() + res.clone();
        let g = (y * res.clone()).sum().backward();
        std::hint::black_box(xg.grad(&g));
    });
    println!(
        "one add + (mul, sum) fwd+bwd, [32,64,384]: {:.2} ms (the floor of any op)",
        ts * 1e3
    );
}
