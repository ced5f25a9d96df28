//! Where the factored adapter's time goes: one forward+backward of variants of
//! `y = x W + s·(x Aᵀ) Bᵀ` at N = 2048, r = 8 (flex, f32). Prints median ms of 15 runs.
//!
//! Run: `cargo run --release -p peftlab-adapters --example step_probe --features probes`
use std::time::Instant;

use burn::tensor::{DType, Device, Tensor};
use peftlab_linalg::init::{Fill, SeededRng};

fn random(rows: usize, cols: usize, seed: u64, dev: &Device) -> Tensor<2> {
    Fill::Normal { std: 0.1 }.tensor(rows, cols, &mut SeededRng::new(seed), dev, DType::F32)
}

fn time(name: &str, mut f: impl FnMut()) {
    f();
    let mut t: Vec<f64> = (0..15)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    println!("| {name} | {:.2} ms |", t[7]);
}

fn main() {
    let dev = Device::default().autodiff();
    let (n, r) = (2048, 8);
    for d in [384, 768] {
        println!("\nd = {d}\n| variant | median |\n|---|---|");
        let x = random(n, d, 1, &dev);
        let g = random(n, d, 2, &dev);
        let w = random(d, d, 3, &dev); // frozen, burn layout [d_in, d_out]
        let a = random(r, d, 4, &dev).require_grad(); // PEFT layout [r, d_in]
        let b = random(d, r, 5, &dev).require_grad(); // [d_out, r]
        let a_t = random(d, r, 4, &dev).require_grad(); // burn layout [d_in, r]
        let b_t = random(r, d, 5, &dev).require_grad(); // [r, d_out]
        let run = |y: Tensor<2>, xg: &Tensor<2>| {
            let grads = (y * g.clone()).sum().backward();
            xg.grad(&grads).unwrap().into_data();
        };
        time("base only: x W", || {
            let xg = x.clone().require_grad();
            run(xg.clone().matmul(w.clone()), &xg)
        });
        time("adapter only, PEFT layout: (x Aᵀ) Bᵀ", || {
            let xg = x.clone().require_grad();
            run(
                xg.clone()
                    .matmul(a.clone().transpose())
                    .matmul(b.clone().transpose()),
                &xg,
            )
        });
        time("adapter only, burn layout: (x A') B'", || {
            let xg = x.clone().require_grad();
            run(xg.clone().matmul(a_t.clone()).matmul(b_t.clone()), &xg)
        });
        time("base + adapter, scale on [N, d]", || {
            let xg = x.clone().require_grad();
            let y = xg.clone().matmul(w.clone())
                + xg.clone().matmul(a_t.clone()).matmul(b_t.clone()) * 2.0;
            run(y, &xg)
        });
        time("base + adapter, scale on [N, r]", || {
            let xg = x.clone().require_grad();
            let y = xg.clone().matmul(w.clone())
                + (xg.clone().matmul(a_t.clone()) * 2.0).matmul(b_t.clone());
            run(y, &xg)
        });
        time("dense: x (W + s A'B')", || {
            let xg = x.clone().require_grad();
            let wd = w.clone() + a_t.clone().matmul(b_t.clone()) * 2.0;
            run(xg.clone().matmul(wd), &xg)
        });
        time("elementwise only: x * 2 + x", || {
            let xg = x.clone().require_grad();
            run(xg.clone() * 2.0 + xg.clone(), &xg)
        });
    }
}
