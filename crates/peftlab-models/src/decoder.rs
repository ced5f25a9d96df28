//! Pieces shared by the causal decoders ([`crate::gpt2`], [`crate::llama`]): the key/value
//! cache, causal attention with grouped KV heads, rotary embeddings, the LM head, and the
//! [`CausalLm`] interface that scoring and [`crate::generate`] run on.
//!
//! Heads stay interleaved (`[B, T, H·dₕ]`, as the projections write them) from projection to
//! projection: attention ([`peftlab_linalg::attention::causal_attention`]) and RoPE
//! ([`peftlab_linalg::rope::rotary`]) read that layout in place, fused on the CPU fast path, and
//! the cache keeps it.

use burn::tensor::{Device, Int, Tensor, TensorData};
use peftlab_linalg::frozen::FrozenPack;

use crate::ModelError;

/// Per-layer cached keys and values `[B, T_past, KV·dₕ]` and the number of cached positions.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<3>, Tensor<3>)>>,
    len: usize,
}

impl KvCache {
    /// An empty cache for `n_layers` layers.
    pub fn new(n_layers: usize) -> Self {
        Self {
            layers: vec![None; n_layers],
            len: 0,
        }
    }

    /// Cached positions (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Append this step's `k`, `v` `[B, t, KV·dₕ]` for `layer`; returns the full `[B, T, KV·dₕ]`.
    pub fn append(&mut self, layer: usize, k: Tensor<3>, v: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let (k, v) = match self.layers[layer].take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 1), Tensor::cat(vec![pv, v], 1)),
            None => (k, v),
        };
        self.layers[layer] = Some((k.clone(), v.clone()));
        (k, v)
    }

    /// Advance the position after all layers have appended `t` tokens.
    pub fn advance(&mut self, t: usize) {
        self.len += t;
    }

    /// Keep batch rows `rows` (beam search reordering; rows may repeat).
    pub fn select(&mut self, rows: &[usize]) {
        for (k, v) in self.layers.iter_mut().flatten() {
            let device = k.device();
            let idx = Tensor::<1, Int>::from_data(
                TensorData::new(rows.iter().map(|&r| r as i64).collect(), [rows.len()]),
                &device,
            );
            *k = k.clone().select(0, idx.clone());
            *v = v.clone().select(0, idx);
        }
    }
}

/// Additive per-key bias `[B, T]` of a padding mask `[B, T]` (1 = token, 0 = padding): 0 on
/// tokens, `-1e9` on padding; `None` without a mask.
pub fn key_bias(key_mask: Option<Tensor<2>>) -> Option<Tensor<2>> {
    key_mask.map(|m| (m.ones_like() - m) * -1e9)
}

/// Causal grouped-query attention over interleaved heads (`q: [B, t, H·dₕ]`, `k, v:
/// `[B, T, KV·dₕ]`, the first `T − t` keys cached; per-key bias `[B, T]`), fused on the CPU.
pub use peftlab_linalg::attention::causal_attention as attend;

/// Logits `[B, T, V]` of hidden states `x` `[B, T, d]` under an LM head stored `[V, d]` (tied to
/// the embedding or not), through `pack` (the frozen head packed once; burn's `linear` when the
/// head trains or off the CPU fast path).
pub fn lm_head(x: Tensor<3>, head: Tensor<2>, pack: &FrozenPack) -> Tensor<3> {
    pack.linear(x, &head.transpose(), None)
}

/// Rotary position embedding (Hugging Face's half-split layout) of `x: [B, t, heads·dₕ]` at
/// positions `start..start + t`, fused on the CPU.
pub use peftlab_linalg::rope::rotary as rope;

/// A causal language model: what scoring and generation need.
pub trait CausalLm {
    /// Logits `[B, T, V]` for `ids` `[B, T]` (right-padded; `mask` `[B, T]` 0 on padding,
    /// `None` = no padding), positions from 0, no cache.
    fn logits(&self, ids: Tensor<2, Int>, mask: Option<Tensor<2>>) -> Tensor<3>;
    /// Logits `[B, t, V]` for `t` new tokens `[B, t]` continuing `cache` (which grows by `t`).
    fn logits_cached(&self, ids: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<3>;
    /// An empty cache for this model.
    fn new_cache(&self) -> KvCache;
    /// Vocabulary size `V`.
    fn vocab_size(&self) -> usize;
    /// The device the weights live on.
    fn device(&self) -> Device;
    /// The longest sequence the model can position (learned position tables), if limited.
    fn max_positions(&self) -> Option<usize> {
        None
    }
}

/// Per-token log-probabilities of `ids[1..]` given their prefixes, and the total negative
/// log-likelihood (one sequence, no padding). Errors on a token outside the vocabulary or a
/// sequence longer than the model's positions.
pub fn score<M: CausalLm + ?Sized>(model: &M, ids: &[u32]) -> Result<(Vec<f64>, f64), ModelError> {
    let v = model.vocab_size();
    if let Some(&bad) = ids.iter().find(|&&i| i as usize >= v) {
        return Err(ModelError::Input(format!(
            "token {bad} is outside the vocabulary ({v})"
        )));
    }
    if let Some(max) = model.max_positions()
        && ids.len() > max
    {
        return Err(ModelError::Input(format!(
            "{} tokens exceed the model's {max} positions",
            ids.len()
        )));
    }
    if ids.len() < 2 {
        return Ok((Vec::new(), 0.0));
    }
    let device = model.device();
    let t = ids.len();
    let x = Tensor::<2, Int>::from_data(
        TensorData::new(ids.iter().map(|&i| i64::from(i)).collect(), [1, t]),
        &device,
    );
    let logits = model.logits(x, None);
    let lp = burn::tensor::activation::log_softmax(logits.reshape([t, v]), 1);
    let lp = lp
        .try_to_vec_as::<f32>()
        .map_err(|e| ModelError::Input(format!("reading log-probabilities: {e:?}")))?;
    let per: Vec<f64> = (1..t)
        .map(|i| f64::from(lp[(i - 1) * v + ids[i] as usize]))
        .collect();
    let nll = -per.iter().sum::<f64>();
    Ok((per, nll))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_rotates_pairs_by_position_angle() {
        // dh = 4, θ = 100: pair (0, 2) turns by p·1, pair (1, 3) by p·0.1
        let dev = Device::default();
        let x = Tensor::<3>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 0.0, 2.0], [1, 1, 4]),
            &dev,
        );
        let y = rope(x, 1, 3, 100.0).try_to_vec_as::<f64>().unwrap();
        let (a, b) = (3.0f64, 0.3f64);
        let want = [a.cos(), -2.0 * b.sin(), a.sin(), 2.0 * b.cos()];
        for (g, w) in y.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{y:?} vs {want:?}");
        }
    }

    #[test]
    fn key_bias_masks_padding_only() {
        let dev = Device::default();
        let m = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 1.0, 0.0], [1, 3]), &dev);
        let bias = key_bias(Some(m)).unwrap().try_to_vec_as::<f64>().unwrap();
        assert_eq!(bias, [0.0, 0.0, -1e9]);
        assert!(key_bias(None).is_none());
    }
}
