//! Batching: tokenization with pair truncation, seeded and length-bucketed batch order,
//! dynamic padding with attention masks — for encoder classification and for decoder-only
//! training on `prompt + target` with the loss masked on the prompt.

use burn::tensor::{Device, Int, Tensor, TensorData};
use peftlab_models::tokenizer::Tokenizer;

use crate::DataError;
use crate::task::{Example, Label, shuffle, splitmix64};

/// A tokenized classification / regression example.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// Token ids (`[CLS] a [SEP] b [SEP]`), at most `max_len`.
    pub ids: Vec<u32>,
    /// Token type ids (0 for the first text, 1 for the second).
    pub types: Vec<u32>,
    /// Gold label.
    pub label: Option<Label>,
}

/// Tokenize examples, truncating pairs longest-first to `max_len` tokens.
pub fn encode_examples(
    tok: &Tokenizer,
    examples: &[Example],
    max_len: usize,
) -> Result<Vec<Encoded>, DataError> {
    examples
        .iter()
        .map(|e| {
            let (ids, types) = tok
                .encode_limited(&e.text_a, e.text_b.as_deref(), max_len)
                .map_err(|err| DataError::Tool(format!("example {}: {err}", e.id)))?;
            Ok(Encoded {
                ids,
                types,
                label: e.label.clone(),
            })
        })
        .collect()
}

/// The batches of one epoch as index lists: a seeded shuffle (seed and epoch mixed), then, with
/// `bucket`, windows of 50 batches sorted by length so each batch holds similar lengths (less
/// padding), and the batches shuffled again. Every index appears exactly once.
pub fn batch_order(
    lengths: &[usize],
    batch_size: usize,
    seed: u64,
    epoch: u64,
    bucket: bool,
) -> Vec<Vec<usize>> {
    let batch_size = batch_size.max(1);
    let s = splitmix64(seed ^ splitmix64(epoch));
    let mut idx: Vec<usize> = (0..lengths.len()).collect();
    shuffle(&mut idx, s);
    if bucket {
        for w in idx.chunks_mut(batch_size * 50) {
            w.sort_by_key(|&i| lengths[i]);
        }
    }
    let mut batches: Vec<Vec<usize>> = idx.chunks(batch_size).map(<[usize]>::to_vec).collect();
    if bucket {
        shuffle(&mut batches, splitmix64(s));
    }
    batches
}

/// A padded encoder batch.
#[derive(Debug, Clone)]
pub struct ClassificationBatch {
    /// Token ids `[B, T]` (right-padded with `pad_id`).
    pub ids: Tensor<2, Int>,
    /// Token types `[B, T]`.
    pub types: Tensor<2, Int>,
    /// Attention mask `[B, T]` (1 real, 0 padding).
    pub mask: Tensor<2>,
    /// Labels, one per row.
    pub labels: Vec<Option<Label>>,
}

fn pad_rows(rows: &[&[u32]], pad: u32, t: usize) -> (Vec<i64>, Vec<f32>) {
    let mut ids = Vec::with_capacity(rows.len() * t);
    let mut mask = Vec::with_capacity(rows.len() * t);
    for r in rows {
        for j in 0..t {
            ids.push(i64::from(*r.get(j).unwrap_or(&pad)));
            mask.push(f32::from(u8::from(j < r.len())));
        }
    }
    (ids, mask)
}

/// Pad `items` to the longest one.
pub fn classification_batch(
    items: &[&Encoded],
    pad_id: u32,
    device: &Device,
) -> ClassificationBatch {
    let b = items.len();
    let t = items.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    let ids: Vec<&[u32]> = items.iter().map(|e| e.ids.as_slice()).collect();
    let types: Vec<&[u32]> = items.iter().map(|e| e.types.as_slice()).collect();
    let (ids, mask) = pad_rows(&ids, pad_id, t);
    let (types, _) = pad_rows(&types, 0, t);
    ClassificationBatch {
        ids: Tensor::from_data(TensorData::new(ids, [b, t]), device),
        types: Tensor::from_data(TensorData::new(types, [b, t]), device),
        mask: Tensor::from_data(TensorData::new(mask, [b, t]), device),
        labels: items.iter().map(|e| e.label.clone()).collect(),
    }
}

/// A decoder-only training example: `prompt + target + EOS` and a loss mask that is 1 on the
/// target and EOS positions only.
#[derive(Debug, Clone, PartialEq)]
pub struct LmExample {
    /// Token ids.
    pub ids: Vec<u32>,
    /// 1 where the token is predicted in the loss (target and EOS), 0 on the prompt.
    pub loss_mask: Vec<u8>,
}

/// Build an [`LmExample`]; the prompt is cut from the left when the whole would exceed
/// `max_len` (the target is kept), and an error names the example when the target alone does
/// not fit.
pub fn lm_example(
    tok: &Tokenizer,
    prompt: &str,
    target: &str,
    eos: u32,
    max_len: usize,
) -> Result<LmExample, DataError> {
    let p = tok
        .encode(prompt)
        .map_err(|e| DataError::Tool(e.to_string()))?;
    let mut t = tok
        .encode(target)
        .map_err(|e| DataError::Tool(e.to_string()))?;
    t.push(eos);
    if t.len() >= max_len {
        return Err(DataError::Tool(format!(
            "target of {} tokens does not fit max_len {max_len} (prompt {prompt:?})",
            t.len()
        )));
    }
    let keep = (max_len - t.len()).min(p.len());
    let p = &p[p.len() - keep..];
    let mut ids = p.to_vec();
    ids.extend(&t);
    let mut loss_mask = vec![0u8; p.len()];
    loss_mask.extend(std::iter::repeat_n(1u8, t.len()));
    Ok(LmExample { ids, loss_mask })
}

/// A padded decoder batch.
#[derive(Debug, Clone)]
pub struct LmBatch {
    /// Token ids `[B, T]`, right-padded.
    pub ids: Tensor<2, Int>,
    /// Attention mask `[B, T]`.
    pub mask: Tensor<2>,
    /// Loss mask `[B, T]` (1 where the token is a training target).
    pub loss_mask: Tensor<2>,
}

/// Pad `items` to the longest one.
pub fn lm_batch(items: &[&LmExample], pad_id: u32, device: &Device) -> LmBatch {
    let b = items.len();
    let t = items.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    let ids: Vec<&[u32]> = items.iter().map(|e| e.ids.as_slice()).collect();
    let (flat, mask) = pad_rows(&ids, pad_id, t);
    let mut lm = Vec::with_capacity(b * t);
    for e in items {
        for j in 0..t {
            lm.push(f32::from(*e.loss_mask.get(j).unwrap_or(&0)));
        }
    }
    LmBatch {
        ids: Tensor::from_data(TensorData::new(flat, [b, t]), device),
        mask: Tensor::from_data(TensorData::new(mask, [b, t]), device),
        loss_mask: Tensor::from_data(TensorData::new(lm, [b, t]), device),
    }
}
