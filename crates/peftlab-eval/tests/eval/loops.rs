#![cfg(feature = "loops")]
//! Evaluation loops on the models crate's tiny transformers fixtures (word-level tokenizers):
//! batched, padded classification gives the same predictions as one example at a time, and the
//! generation loop's outputs are the models crate's `generate` outputs, scored by the metrics.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use peftlab_data::task::{Example, InputKind, Label, LabelKind, TaskSpec};
use peftlab_eval::loops::{evaluate_classifier, evaluate_generator, generation_metrics};
use peftlab_models::generate::{GenerationConfig, generate};
use peftlab_models::zoo::{LoadOptions, load};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../peftlab-models/tests/fixtures")
        .join(name)
}

fn task(labels: LabelKind, metrics: &[&str]) -> TaskSpec {
    TaskSpec {
        name: "t".into(),
        input: InputKind::Pair,
        labels,
        metrics: metrics.iter().map(|m| m.to_string()).collect(),
        split_seed: 0,
        description: String::new(),
    }
}

#[test]
fn classifier_loop_batches_like_single_examples() {
    let dev = Device::default();
    let l = load(&fixture("tiny_bert"), &LoadOptions::default(), &dev).unwrap();
    let tok = l.tokenizer.as_ref().unwrap();
    let texts = [
        ("w5 w6 w7", Some("w9")),
        ("w11", None),
        ("w12 w13 w14 w15 w16", Some("w3 w4")),
        ("w20 w21", None),
        ("w8", Some("w8 w8")),
    ];
    let examples: Vec<Example> = texts
        .iter()
        .enumerate()
        .map(|(i, (a, b))| Example {
            id: i.to_string(),
            text_a: a.to_string(),
            text_b: b.map(str::to_string),
            label: Some(Label::Class(i % 3)),
        })
        .collect();
    let spec = task(
        LabelKind::Classes(vec!["a".into(), "b".into(), "c".into()]),
        &["accuracy", "f1_macro"],
    );
    let (metrics, pred) =
        evaluate_classifier(&l.model, tok, &spec, &examples, 2, 64, &dev).unwrap();
    // one at a time, no padding
    let mut hits = 0;
    for (e, p) in examples.iter().zip(&pred) {
        let (ids, types) = tok
            .encode_limited(&e.text_a, e.text_b.as_deref(), 64)
            .unwrap();
        let t = ids.len();
        let row = |v: &[u32]| {
            Tensor::<2, Int>::from_data(
                TensorData::new(v.iter().map(|&x| i64::from(x)).collect(), [1, t]),
                &dev,
            )
        };
        let logits = l
            .model
            .classify(row(&ids), Some(row(&types)), Tensor::ones([1, t], &dev))
            .unwrap()
            .try_to_vec_as::<f64>()
            .unwrap();
        let best = (0..3)
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap();
        assert_eq!(*p as usize, best, "example {}", e.id);
        hits += usize::from(Some(Label::Class(best)) == e.label);
    }
    assert!((metrics["accuracy"] - 100.0 * hits as f64 / 5.0).abs() < 1e-9);
    assert!(metrics.contains_key("f1_macro"));
    // regression needs score labels: a class-labelled set is an error naming the example
    let reg = load(
        &fixture("tiny_bert"),
        &LoadOptions {
            num_labels: Some(1),
            ..Default::default()
        },
        &dev,
    );
    assert!(
        reg.is_err(),
        "the fixture's classifier has 3 outputs: loading 1 is a shape error"
    );
}

#[test]
fn generation_loop_scores_generate_outputs() {
    let dev = Device::default();
    let l = load(&fixture("tiny_gpt2"), &LoadOptions::default(), &dev).unwrap();
    let tok = l.tokenizer.as_ref().unwrap();
    let lm = l.model.causal_lm().unwrap();
    let cfg = GenerationConfig {
        max_new_tokens: 6,
        num_beams: 3,
        length_penalty: 0.9,
        no_repeat_ngram_size: 2,
        eos_token_id: Some(0),
    };
    let inputs = ["w50 w60 w19", "w7 w8", "w33"];
    let prompt = |s: &str| format!("{s} w1");
    let expected: Vec<String> = inputs
        .iter()
        .map(|s| {
            let ids = tok.encode(&prompt(s)).unwrap();
            let mut out = generate(lm, &ids, &cfg).unwrap();
            if out.last() == Some(&0) {
                out.pop();
            }
            tok.decode(&out).unwrap().trim().to_string()
        })
        .collect();
    let examples: Vec<Example> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| Example {
            id: i.to_string(),
            text_a: s.to_string(),
            text_b: None,
            // the first reference is the output itself, so BLEU > 0
            label: Some(Label::Refs(vec![expected[i].clone(), "w2 w3 w4".into()])),
        })
        .collect();
    let spec = task(
        LabelKind::References,
        &["bleu", "rouge_l", "cider_d", "ter"],
    );
    let (m, out) = evaluate_generator(lm, tok, &spec, &examples, &prompt, &cfg).unwrap();
    assert_eq!(out, expected);
    let refs: Vec<Vec<String>> = examples
        .iter()
        .map(|e| match &e.label {
            Some(Label::Refs(r)) => r.clone(),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(m, generation_metrics(&spec.metrics, &out, &refs).unwrap());
    assert!(m["ter"] < 1e-9 && m["bleu"] > 0.0, "{m:?}");
}
