//! Batching with the word-level tokenizer of the models crate's tiny BERT / Llama fixtures
//! ("w0 … wN" → ids): pair truncation longest-first, padding and masks, seeded bucketed order,
//! and the decoder loss mask.

use std::collections::BTreeSet;
use std::path::Path;

use burn::tensor::Device;
use peftlab_data::batch::{
    batch_order, classification_batch, encode_examples, lm_batch, lm_example,
};
use peftlab_data::task::{Example, Label};
use peftlab_models::tokenizer::Tokenizer;

fn tok(name: &str) -> Tokenizer {
    Tokenizer::from_file(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../peftlab-models/tests/fixtures")
            .join(name)
            .join("tokenizer.json"),
    )
    .unwrap()
}

#[test]
fn pairs_truncate_longest_first_and_pad_with_masks() {
    let t = tok("tiny_bert");
    let ex = vec![
        Example {
            id: "a".into(),
            text_a: "w5 w6 w7 w8 w9 w10".into(),
            text_b: Some("w11 w12".into()),
            label: Some(Label::Class(1)),
        },
        Example {
            id: "b".into(),
            text_a: "w5".into(),
            text_b: None,
            label: Some(Label::Class(0)),
        },
    ];
    let enc = encode_examples(&t, &ex, 8).unwrap();
    // 8 = [CLS] + 3 + [SEP] + 2 + [SEP]: the longer first text loses words
    assert_eq!(enc[0].ids, [1, 5, 6, 7, 2, 11, 12, 2]);
    assert_eq!(enc[0].types, [0, 0, 0, 0, 0, 1, 1, 1]);
    assert_eq!(enc[1].ids, [1, 5, 2]);
    let dev = Device::default();
    let b = classification_batch(&[&enc[0], &enc[1]], 0, &dev);
    assert_eq!(b.ids.dims(), [2, 8]);
    let ids = b.ids.try_to_vec_as::<i64>().unwrap();
    assert_eq!(ids[8..], [1, 5, 2, 0, 0, 0, 0, 0]);
    let mask = b.mask.try_to_vec_as::<f64>().unwrap();
    assert_eq!(mask[8..], [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    assert_eq!(
        b.types.try_to_vec_as::<i64>().unwrap()[..8],
        [0, 0, 0, 0, 0, 1, 1, 1]
    );
    assert_eq!(b.labels[0], Some(Label::Class(1)));
}

#[test]
fn batch_order_is_a_seeded_bucketed_permutation() {
    let lengths: Vec<usize> = (0..1000).map(|i| 5 + (i * 37) % 120).collect();
    let order = batch_order(&lengths, 16, 42, 0, true);
    let all: BTreeSet<usize> = order.iter().flatten().copied().collect();
    assert_eq!(all.len(), 1000);
    assert_eq!(order.iter().map(Vec::len).sum::<usize>(), 1000);
    assert_eq!(
        order,
        batch_order(&lengths, 16, 42, 0, true),
        "same seed and epoch"
    );
    assert_ne!(
        order,
        batch_order(&lengths, 16, 42, 1, true),
        "another epoch reshuffles"
    );
    // bucketing cuts padding: Σ (max − len) over batches
    let padding = |o: &[Vec<usize>]| -> usize {
        o.iter()
            .map(|b| {
                let m = b.iter().map(|&i| lengths[i]).max().unwrap();
                b.iter().map(|&i| m - lengths[i]).sum::<usize>()
            })
            .sum()
    };
    let plain = batch_order(&lengths, 16, 42, 0, false);
    assert!(
        padding(&order) * 5 < padding(&plain),
        "{} vs {}",
        padding(&order),
        padding(&plain)
    );
}

#[test]
fn decoder_examples_mask_the_prompt() {
    let t = tok("tiny_llama");
    let e = lm_example(&t, "w3 w4 w5", "w9 w8", 0, 16).unwrap();
    assert_eq!(e.ids, [3, 4, 5, 9, 8, 0]);
    assert_eq!(e.loss_mask, [0, 0, 0, 1, 1, 1]);
    // too long: the prompt is cut from the left, the target kept
    let e = lm_example(&t, "w3 w4 w5", "w9 w8", 0, 5).unwrap();
    assert_eq!(e.ids, [4, 5, 9, 8, 0]);
    assert!(lm_example(&t, "w3", "w9 w8 w7 w6", 0, 4).is_err());
    let short = lm_example(&t, "w1", "w2", 0, 8).unwrap();
    let long = lm_example(&t, "w3 w4 w5", "w9 w8", 0, 16).unwrap();
    let b = lm_batch(&[&short, &long], 0, &Device::default());
    assert_eq!(b.ids.dims(), [2, 6]);
    assert_eq!(
        b.loss_mask.try_to_vec_as::<f64>().unwrap()[..6],
        [0.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    );
    assert_eq!(
        b.mask.try_to_vec_as::<f64>().unwrap()[..6],
        [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    );
}
