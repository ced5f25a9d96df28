//! Sequential vs rayon timings of the decompositions, the measurement behind
//! `decomp::Parallelism::Auto` (docs/performance.md).
//!
//! Run: `cargo run --release -p peftlab-linalg --example parallelism --features probes`

use std::time::Instant;

use faer::Mat;
use peftlab_linalg::decomp::{Parallelism, eigh, qr, set_parallelism, singular_values, svd};
use peftlab_linalg::init::SeededRng;

/// Best of four runs, in seconds.
fn best<F: FnMut()>(mut f: F) -> f64 {
    (0..4)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    let mut rng = SeededRng::new(1);
    println!(
        "| shape | threads | svd f32 | svd f64 | values f32 | qr (tall) f32 | qr (tall) f64 | eigh f32 | eigh f64 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (m, n) in [(256, 256), (512, 512), (768, 768), (1024, 4096)] {
        let a = Mat::<f32>::from_fn(m, n, |_, _| rng.uniform(-1.0, 1.0) as f32);
        let a64 = Mat::<f64>::from_fn(m, n, |i, j| f64::from(a[(i, j)]));
        let (t, t64) = (a.transpose().to_owned(), a64.transpose().to_owned());
        for (name, p) in [
            ("1", Parallelism::Sequential),
            ("2 (rayon)", Parallelism::Rayon(2)),
        ] {
            set_parallelism(p);
            let (e32, e64) = if m == n {
                let s = &a + a.transpose();
                let s64 = &a64 + a64.transpose();
                (
                    format!("{:.1} ms", 1e3 * best(|| drop(eigh(s.as_ref()).unwrap()))),
                    format!("{:.1} ms", 1e3 * best(|| drop(eigh(s64.as_ref()).unwrap()))),
                )
            } else {
                ("—".into(), "—".into())
            };
            println!(
                "| {m}x{n} | {name} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {e32} | {e64} |",
                1e3 * best(|| drop(svd(a.as_ref()).unwrap())),
                1e3 * best(|| drop(svd(a64.as_ref()).unwrap())),
                1e3 * best(|| drop(singular_values(a.as_ref()).unwrap())),
                1e3 * best(|| drop(qr(t.as_ref()).unwrap())),
                1e3 * best(|| drop(qr(t64.as_ref()).unwrap())),
            );
        }
    }
    set_parallelism(Parallelism::Auto);
}
