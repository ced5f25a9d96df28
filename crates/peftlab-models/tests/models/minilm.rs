//! Real all-MiniLM-L6-v2 against the golden values of ../shared/data-and-models.md §8 (a numpy
//! BERT forward pass): token ids exact, embedding within 1e-4 (golden values carry 5 decimals),
//! cosine similarities within 1e-3 (3 decimals). Needs the fetched checkpoint:
//! `cargo xtask fetch` (CI runs it). Without it the tests are skipped with a message,
//! except under `CI=true`, where a missing checkpoint fails.

use std::path::PathBuf;

use burn::tensor::Device;
use peftlab_adapters::lora::LoraConfig;
use peftlab_adapters::target::ModuleSelector;
use peftlab_adapters::{AdapterConfig, attach, param_report};
use peftlab_models::ModelError;
use peftlab_models::bert::{Bert, BertForSequenceClassification, batch};
use peftlab_models::tokenizer::Tokenizer;

fn model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("PEFTLAB_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("PEFTLAB_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache/peftlab")
                });
            cache.join("models/all-MiniLM-L6-v2")
        });
    if dir.join("model.safetensors").exists() {
        return Some(dir);
    }
    let msg = format!(
        "{} has no checkpoint: run `cargo xtask fetch`",
        dir.display()
    );
    assert!(std::env::var("CI").is_err(), "{msg}");
    eprintln!("SKIPPED: {msg}");
    None
}

fn values<const D: usize>(t: &burn::tensor::Tensor<D>) -> Vec<f64> {
    t.try_to_vec_as::<f64>().unwrap()
}

fn cos(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>()
}

#[test]
fn minilm_matches_the_numpy_reference() {
    let Some(dir) = model_dir() else { return };
    let dev = Device::default();
    let tok = Tokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let model = Bert::from_dir(&dir, &dev).unwrap();
    let sents = [
        "A man is playing a guitar.",
        "Someone is playing an instrument.",
        "The stock market fell sharply today.",
    ];
    let ids: Vec<Vec<u32>> = sents.iter().map(|s| tok.encode(s).unwrap()).collect();
    assert_eq!(
        ids[0],
        vec![101, 1037, 2158, 2003, 2652, 1037, 2858, 1012, 102]
    );
    // one padded batch: the shorter sentences are padded, the mask must hide the padding
    let (x, m) = batch(&ids, 0, &dev);
    let emb = values(&model.mean_pooled(x, m));
    let d = 384;
    let (g, i, s) = (&emb[..d], &emb[d..2 * d], &emb[2 * d..]);
    let golden = [0.02166, -0.00486, -0.00965, -0.0634, -0.16749, 0.00468];
    for (k, (got, want)) in g.iter().zip(golden).enumerate() {
        assert!(
            (got - want).abs() <= 1e-4,
            "embedding[{k}] = {got}, numpy {want}"
        );
    }
    assert!(
        (cos(g, i) - 0.675).abs() <= 1e-3,
        "cos(guitar, instrument) = {}",
        cos(g, i)
    );
    assert!(
        (cos(g, s) + 0.054).abs() <= 1e-3,
        "cos(guitar, stock) = {}",
        cos(g, s)
    );
    // the same sentence alone (no padding) gives the same embedding
    let (x1, m1) = batch(&ids[1..2], 0, &dev);
    let alone = values(&model.mean_pooled(x1, m1));
    let diff = alone
        .iter()
        .zip(i)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(diff <= 1e-5, "padding changed the embedding by {diff}");
}

#[test]
fn lora_attaches_by_peft_names_on_real_minilm() {
    let Some(dir) = model_dir() else { return };
    let dev = Device::default();
    let mut model = Bert::from_dir(&dir, &dev).unwrap();
    let cfg = AdapterConfig::Lora(LoraConfig::new(
        8,
        ModuleSelector::list(&["query", "value"]),
    ));
    let report = attach(&mut model, &cfg, 0).unwrap();
    assert_eq!(report.modules.len(), 12, "q and v in 6 layers");
    let p = param_report(&model);
    assert_eq!(p.trainable, 12 * 8 * (384 + 384));
    // the checkpoint's 22,713,216 float parameters (pooler included) plus the adapters
    assert_eq!(p.total, 22_713_216 + p.trainable);
}

#[test]
fn bad_checkpoints_are_clear_errors() {
    let Some(dir) = model_dir() else { return };
    let dev = Device::default();
    let tmp = std::env::temp_dir().join(format!("peftlab-minilm-bad-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    // truncated weights
    let w = std::fs::read(dir.join("model.safetensors")).unwrap();
    std::fs::write(tmp.join("model.safetensors"), &w[..w.len() / 3]).unwrap();
    std::fs::write(tmp.join("config.json"), &config).unwrap();
    let err = Bert::from_dir(&tmp, &dev).unwrap_err();
    assert!(
        matches!(&err, ModelError::File { path, .. } if path.ends_with("model.safetensors")),
        "{err}"
    );
    // a config that disagrees with the tensors names the tensor
    std::fs::write(tmp.join("model.safetensors"), &w).unwrap();
    std::fs::write(
        tmp.join("config.json"),
        config.replace("\"intermediate_size\": 1536", "\"intermediate_size\": 1024"),
    )
    .unwrap();
    let err = Bert::from_dir(&tmp, &dev).unwrap_err();
    assert!(
        err.to_string()
            .contains("encoder.layer.0.intermediate.dense.weight"),
        "{err}"
    );
    // an unknown model type names the key
    std::fs::write(
        tmp.join("config.json"),
        config.replace("\"model_type\": \"bert\"", "\"model_type\": \"gpt2\""),
    )
    .unwrap();
    let err = Bert::from_dir(&tmp, &dev).unwrap_err();
    assert!(err.to_string().contains("model_type"), "{err}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// The pooler and the last hidden state against Hugging Face transformers 5.24.0 on the same
/// padded batch (`BertModel.from_pretrained(dir)(**tokenizer([guitar, instrument],
/// padding=True))`), within 1e-4.
#[test]
fn pooler_and_hidden_states_match_transformers() {
    let Some(dir) = model_dir() else { return };
    let dev = Device::default();
    let tok = Tokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let model = Bert::from_dir(&dir, &dev).unwrap();
    let ids: Vec<Vec<u32>> = [
        "A man is playing a guitar.",
        "Someone is playing an instrument.",
    ]
    .iter()
    .map(|s| tok.encode(s).unwrap())
    .collect();
    let (x, m) = batch(&ids, 0, &dev);
    let pooled = values(&model.pooled(x.clone(), m.clone()).unwrap());
    let want = [
        (
            0,
            [
                0.012011849,
                -0.040315911,
                0.028556086,
                0.022250755,
                -0.038639829,
                -0.022813611,
            ],
        ),
        (
            1,
            [
                -0.004065270,
                -0.012149932,
                0.060905181,
                0.044862956,
                -0.031300858,
                0.031016296,
            ],
        ),
    ];
    for (row, w) in want {
        for (k, w) in w.iter().enumerate() {
            let got = pooled[row * 384 + k];
            assert!(
                (got - w).abs() <= 1e-4,
                "pooled[{row}][{k}] = {got}, transformers {w}"
            );
        }
    }
    let h = values(&model.forward(x, m));
    let t = ids.iter().map(Vec::len).max().unwrap();
    for (k, w) in [0.14085278, 0.04942850, 0.05355257, -0.68771070]
        .iter()
        .enumerate()
    {
        let got = h[t * 384 + k]; // sentence 1, token 0
        assert!(
            (got - w).abs() <= 1e-4,
            "h[1][0][{k}] = {got}, transformers {w}"
        );
    }
}

/// A classification head on MiniLM: seeded classifier, logits `[B, labels]`, and PEFT's
/// `modules_to_save = ["classifier"]` makes it trainable next to the LoRA adapters.
#[test]
fn sequence_classification_head() {
    let Some(dir) = model_dir() else { return };
    let dev = Device::default();
    let tok = Tokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let a = BertForSequenceClassification::from_dir(&dir, 3, 7, &dev).unwrap();
    let b = BertForSequenceClassification::from_dir(&dir, 3, 7, &dev).unwrap();
    let ids = vec![tok.encode("A man is playing a guitar.").unwrap()];
    let (x, m) = batch(&ids, 0, &dev);
    let la = values(&a.forward(x.clone(), m.clone()));
    assert_eq!(la.len(), 3);
    assert_eq!(la, values(&b.forward(x, m)), "same seed, same head");
    let mut model = a;
    let cfg = AdapterConfig::Lora(
        LoraConfig::new(8, ModuleSelector::list(&["query", "value"]))
            .with_modules_to_save(Some(vec!["classifier".into()])),
    );
    attach(&mut model, &cfg, 0).unwrap();
    assert_eq!(param_report(&model).trainable, 12 * 8 * 768 + 384 * 3 + 3);
}
