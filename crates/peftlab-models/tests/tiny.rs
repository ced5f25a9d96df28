//! Parity with Hugging Face transformers on a small random-initialized checkpoint made by
//! `scripts/transformers_fixtures.py` (torch 2.15.0, transformers 5.24.0, peft 0.21.2):
//! `BertForSequenceClassification` and `RobertaForSequenceClassification` (2 layers, d = 16,
//! 3 labels, padded batch) — last hidden state and logits within 1e-5 — and a PEFT LoRA adapter
//! with the saved classifier on top — logits within 1e-5 of PEFT's. Runs everywhere (the fixture is committed, 30 KB).

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use peftlab_adapters::load_adapter;
use peftlab_models::bert::BertForSequenceClassification;
use safetensors::SafeTensors;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read(st: &SafeTensors<'_>, name: &str) -> (Vec<usize>, Vec<u8>) {
    let v = st.tensor(name).unwrap();
    (v.shape().to_vec(), v.data().to_vec())
}

fn f32s(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(4)
        .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .collect()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn bert_classifier_and_peft_lora_match_transformers() {
    check(&fixture("tiny_bert"));
}

/// RoBERTa: positions numbered from `pad_token_id + 1` over non-pad ids, no pooler, the
/// `classifier.dense` → tanh → `classifier.out_proj` head.
#[test]
fn roberta_classifier_and_peft_lora_match_transformers() {
    check(&fixture("tiny_roberta"));
}

fn check(dir: &Path) {
    let dir = || dir.to_path_buf();
    let dev = Device::default();
    let bytes = std::fs::read(dir().join("io.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (shape, ids) = read(&st, "ids");
    let ids: Vec<i64> = ids
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [shape[0], shape[1]]), &dev);
    let (_, mask) = read(&st, "mask");
    let mask = Tensor::<2>::from_data(TensorData::new(f32s(&mask), [shape[0], shape[1]]), &dev);

    let mut model = BertForSequenceClassification::from_dir(&dir(), 3, 0, &dev).unwrap();
    let hidden = model
        .bert
        .forward(ids.clone(), mask.clone())
        .try_to_vec_as::<f64>()
        .unwrap();
    let want_hidden = f32s(&read(&st, "hidden").1);
    // padded positions of the second sentence are garbage in both implementations but compare
    // the same; all positions are checked
    assert!(
        max_diff(&hidden, &want_hidden) <= 1e-5,
        "hidden {}",
        max_diff(&hidden, &want_hidden)
    );
    let logits = model
        .forward(ids.clone(), mask.clone())
        .try_to_vec_as::<f64>()
        .unwrap();
    let want = f32s(&read(&st, "logits").1);
    assert!(
        max_diff(&logits, &want) <= 1e-5,
        "logits {logits:?} vs {want:?}"
    );

    let report = load_adapter(&mut model, &dir().join("lora")).unwrap();
    assert!(report.unknown_keys.is_empty(), "{:?}", report.unknown_keys);
    let lora = model.forward(ids, mask).try_to_vec_as::<f64>().unwrap();
    let want = f32s(&read(&st, "lora_logits").1);
    assert!(
        max_diff(&lora, &want) <= 1e-5,
        "LoRA logits {lora:?} vs PEFT {want:?}"
    );
    assert!(
        max_diff(&lora, &logits) > 1e-3,
        "the adapter changes the logits"
    );
}
