//! Real SmolLM2-135M-Instruct (GGUF Q4_1, ../shared/data-and-models.md D1) against the golden
//! values of the numpy reference (`shared/verify/smollm_check.py`, §8): prompt token ids exact,
//! the top-5 next tokens in order with logits within 0.01 (the reference prints 3 decimals;
//! Q4_1 dequantization is exact, so only f32 summation order differs), and the mean NLL of the
//! test sentence and of its shuffled words within 2e-3, and the greedy continuation
//! (`"The capital of France is Paris.\n\nThe answer"`, KV-cached). Needs `cargo xtask fetch`
//! (CI runs it); skipped with a message without it, except under `CI=true`.

use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use peftlab_models::decoder::{CausalLm, score};
use peftlab_models::generate::{GenerationConfig, generate};
use peftlab_models::gguf::GgufFile;
use peftlab_models::llama::LlamaForCausalLm;
use peftlab_models::tokenizer::Tokenizer;

fn gguf_path() -> Option<PathBuf> {
    let p = peftlab_models::cache_dir()
        .join("models/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.exists() {
        return Some(p);
    }
    let msg = format!("{} missing: run `cargo xtask fetch`", p.display());
    assert!(std::env::var("CI").is_err(), "{msg}");
    eprintln!("SKIPPED: {msg}");
    None
}

#[test]
fn smollm2_matches_the_numpy_reference() {
    let Some(path) = gguf_path() else { return };
    let dev = Device::default();
    let g = GgufFile::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let (model, cfg) = LlamaForCausalLm::from_gguf(&g, &dev).unwrap();
    assert_eq!(
        (
            cfg.num_hidden_layers,
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.kv_heads()
        ),
        (30, 576, 9, 3)
    );
    assert_eq!((cfg.vocab_size, cfg.intermediate_size), (49152, 1536));
    assert!(cfg.tie_word_embeddings);
    assert_eq!((cfg.bos_token_id, cfg.eos_token_id), (Some(1), Some(2)));

    let ids = tok.encode("The capital of France is").unwrap();
    assert_eq!(ids, [504, 3575, 282, 4649, 314]);
    assert_eq!(
        tok.encode("<|im_start|>user").unwrap()[0],
        1,
        "control tokens are special"
    );

    let x = Tensor::<2, Int>::from_data(
        TensorData::new(ids.iter().map(|&i| i64::from(i)).collect(), [1, 5]),
        &dev,
    );
    let logits = model.logits(x, None).try_to_vec_as::<f32>().unwrap();
    let last = &logits[4 * 49152..];
    let mut order: Vec<usize> = (0..last.len()).collect();
    order.sort_by(|&a, &b| last[b].total_cmp(&last[a]));
    let want = [
        (7042, 17.371),
        (260, 14.889),
        (4528, 13.245),
        (2250, 13.009),
        (1315, 12.952),
    ];
    for (k, (id, logit)) in want.iter().enumerate() {
        assert_eq!(order[k], *id, "rank {k}: {:?}", &order[..5]);
        assert!(
            (f64::from(last[*id]) - logit).abs() < 0.01,
            "logit of {id}: {} vs {logit}",
            last[*id]
        );
    }
    assert_eq!(tok.id_to_token(7042).as_deref(), Some("ĠParis"));

    let s = "The capital of France is Paris. It is known for the Eiffel Tower and fine food.";
    let shuffled =
        "of Eiffel France the The is is Paris. fine Tower It for and known capital food.";
    for (text, want) in [(s, 2.856), (shuffled, 8.455)] {
        let ids = tok.encode(text).unwrap();
        let (per, nll) = score(&model, &ids).unwrap();
        assert_eq!(per.len(), ids.len() - 1);
        let mean = nll / per.len() as f64;
        assert!(
            (mean - want).abs() < 2e-3,
            "{text:?}: mean NLL {mean} vs {want}"
        );
    }
    assert_eq!(tok.encode(s).unwrap().len(), 19);

    // greedy decoding with the KV cache reproduces the reference's 6 uncached steps
    let prompt = tok.encode("The capital of France is").unwrap();
    let cfg = GenerationConfig {
        max_new_tokens: 6,
        eos_token_id: cfg.eos_token_id,
        ..GenerationConfig::default()
    };
    let new = generate(&model, &prompt, &cfg).unwrap();
    let text = tok.decode(&[prompt, new].concat()).unwrap();
    assert_eq!(text, "The capital of France is Paris.\n\nThe answer");
}
