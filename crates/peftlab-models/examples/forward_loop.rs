//! Run a model's forward pass in a loop, for profilers (`perf record`):
//! `cargo run --release -p peftlab-models --example forward_loop --features probes -- minilm|smollm2 [N]`.
use burn::tensor::{Device, Int, Tensor};
use peftlab_models::decoder::CausalLm;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map_or("minilm", String::as_str);
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let dev = Device::default();
    let models = peftlab_models::cache_dir().join("models");
    let t0 = std::time::Instant::now();
    match which {
        "minilm" => {
            let m = peftlab_models::bert::Bert::from_dir(&models.join("all-MiniLM-L6-v2"), &dev)
                .expect("run `cargo xtask fetch`");
            let ids = Tensor::<2, Int>::ones([32, 64], &dev) * 1037;
            let mask = Tensor::<2>::ones([32, 64], &dev);
            std::hint::black_box(m.forward(ids.clone(), mask.clone()).into_data());
            let t = std::time::Instant::now();
            for _ in 0..n {
                std::hint::black_box(m.forward(ids.clone(), mask.clone()).into_data());
            }
            println!("forward {:.3} s", t.elapsed().as_secs_f64() / n as f64);
        }
        _ => {
            let path = models.join("smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf");
            let g = peftlab_models::gguf::GgufFile::open(&path).expect("run `cargo xtask fetch`");
            let (m, _) = peftlab_models::llama::LlamaForCausalLm::from_gguf(&g, &dev).unwrap();
            let ids = Tensor::<2, Int>::ones([8, 64], &dev) * 1037;
            std::hint::black_box(m.logits(ids.clone(), None).into_data());
            let t = std::time::Instant::now();
            for _ in 0..n {
                std::hint::black_box(m.logits(ids.clone(), None).into_data());
            }
            println!("forward {:.3} s", t.elapsed().as_secs_f64() / n as f64);
        }
    }
    println!(
        "{which}: {:.3} s per forward (incl. load)",
        t0.elapsed().as_secs_f64() / n as f64
    );
}
