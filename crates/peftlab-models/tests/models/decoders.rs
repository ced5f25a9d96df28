//! GPT-2 and Llama against Hugging Face transformers on small random-initialized checkpoints made
//! by `scripts/transformers_fixtures.py` (torch 2.15.0, transformers 5.24.0, peft 0.21.2; weights
//! perturbed by N(0, 0.3²) so that every parameter matters and decoding choices are clear-cut):
//! - logits of a right-padded batch `[2, 9, 64]` within 1e-4 (f32; values are O(10), so this is
//!   ~1e-5 relative) at every position;
//! - a PEFT LoRA adapter (GPT-2: `c_attn`, `c_fc` with `fan_in_fan_out=True`; Llama: `q_proj`,
//!   `v_proj`, `down_proj`) loaded from PEFT's files: logits within 1e-4 of PEFT's;
//! - `generate` token for token equal to transformers' `generate` for greedy and beam search
//!   with no-repeat-n-gram sizes 0/2/3, length penalties 0.8/0.9/1.0, and an EOS the model
//!   produces (so beams finish early);
//! - the KV-cached step-by-step logits equal the uncached ones.

use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use peftlab_adapters::load_adapter;
use peftlab_models::decoder::{CausalLm, score};
use peftlab_models::generate::{GenerationConfig, generate};
use peftlab_models::gpt2::Gpt2LmHeadModel;
use peftlab_models::llama::LlamaForCausalLm;
use safetensors::SafeTensors;
use serde::Deserialize;

use crate::common::{f32s, fixture, max_diff};

#[derive(Deserialize)]
struct Run {
    num_beams: usize,
    max_new_tokens: usize,
    no_repeat_ngram_size: usize,
    length_penalty: f64,
    eos_token_id: Option<u32>,
    prompt: Vec<u32>,
    output: Vec<u32>,
}

fn check<M: CausalLm + peftlab_adapters::AdapterHost + burn::module::Module>(
    dir: &Path,
    mut model: M,
) {
    let dev = Device::default();
    let bytes = std::fs::read(dir.join("io.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let v = st.tensor("ids").unwrap();
    let shape = [v.shape()[0], v.shape()[1]];
    let ids: Vec<i64> = v
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let ids_t = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), shape), &dev);
    let mask = f32s(st.tensor("mask").unwrap().data());
    let mask = Tensor::<2>::from_data(TensorData::new(mask, shape), &dev);

    let logits = model
        .logits(ids_t.clone(), Some(mask.clone()))
        .try_to_vec_as::<f64>()
        .unwrap();
    let want = f32s(st.tensor("logits").unwrap().data());
    let d = max_diff(&logits, &want);
    assert!(d <= 1e-4, "logits differ by {d}");

    // the cache: prefix of 4 tokens, then 1, then the rest, for the first (unpadded) row
    let row: Vec<u32> = ids[..shape[1]].iter().map(|&i| i as u32).collect();
    let mut cache = model.new_cache();
    let mut cached = Vec::new();
    for part in [&row[..4], &row[4..5], &row[5..]] {
        let x = Tensor::<2, Int>::from_data(
            TensorData::new(
                part.iter().map(|&i| i64::from(i)).collect(),
                [1, part.len()],
            ),
            &dev,
        );
        cached.extend(
            model
                .logits_cached(x, &mut cache)
                .try_to_vec_as::<f64>()
                .unwrap(),
        );
    }
    let d = max_diff(&cached, &want[..cached.len()]);
    assert!(d <= 1e-4, "cached logits differ by {d}");
    assert_eq!(cache.len(), shape[1]);

    // scoring = log-softmax of the same logits
    let (per, nll) = score(&model, &row).unwrap();
    assert_eq!(per.len(), row.len() - 1);
    assert!((nll + per.iter().sum::<f64>()).abs() < 1e-9 && nll > 0.0);

    let runs: Vec<Run> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("generate.json")).unwrap()).unwrap();
    for r in &runs {
        let cfg = GenerationConfig {
            max_new_tokens: r.max_new_tokens,
            num_beams: r.num_beams,
            length_penalty: r.length_penalty,
            no_repeat_ngram_size: r.no_repeat_ngram_size,
            eos_token_id: r.eos_token_id,
        };
        let out = generate(&model, &r.prompt, &cfg).unwrap();
        assert_eq!(out, r.output, "{cfg:?}");
    }

    let report = load_adapter(&mut model, &dir.join("lora")).unwrap();
    assert!(report.unknown_keys.is_empty(), "{:?}", report.unknown_keys);
    let lora = model
        .logits(ids_t, Some(mask))
        .try_to_vec_as::<f64>()
        .unwrap();
    let want_lora = f32s(st.tensor("lora_logits").unwrap().data());
    let d = max_diff(&lora, &want_lora);
    assert!(d <= 1e-4, "LoRA logits differ from PEFT's by {d}");
    assert!(
        max_diff(&lora, &want) > 1e-2,
        "the adapter changes the logits"
    );
}

#[test]
fn gpt2_matches_transformers_and_peft() {
    let dir = fixture("tiny_gpt2");
    let (model, cfg) = Gpt2LmHeadModel::from_dir(&dir, &Device::default()).unwrap();
    assert_eq!((cfg.n_layer, cfg.n_embd, cfg.n_head), (2, 16, 4));
    check(&dir, model);
}

#[test]
fn llama_matches_transformers_and_peft() {
    let dir = fixture("tiny_llama");
    let (model, cfg) = LlamaForCausalLm::from_dir(&dir, &Device::default()).unwrap();
    assert_eq!((cfg.num_attention_heads, cfg.kv_heads()), (4, 2));
    check(&dir, model);
}

#[test]
fn generation_rejects_bad_input() {
    let dir = fixture("tiny_gpt2");
    let (model, _) = Gpt2LmHeadModel::from_dir(&dir, &Device::default()).unwrap();
    let cfg = GenerationConfig::default();
    let e = generate(&model, &[], &cfg).unwrap_err().to_string();
    assert!(e.contains("non-empty"), "{e}");
    let e = generate(&model, &[64], &cfg).unwrap_err().to_string();
    assert!(e.contains("64") && e.contains("vocabulary"), "{e}");
    let long = GenerationConfig {
        max_new_tokens: 48,
        ..cfg
    };
    let e = generate(&model, &[1, 2], &long).unwrap_err().to_string();
    assert!(e.contains("48 positions"), "{e}");
    let e = score(&model, &[1; 49]).unwrap_err().to_string();
    assert!(e.contains("49 tokens"), "{e}");
}
