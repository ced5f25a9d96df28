//! Pieces shared by the causal decoders ([`crate::gpt2`], [`crate::llama`]): the key/value
//! cache, masked multi-head attention with grouped KV heads, rotary embeddings, and the
//! [`CausalLm`] interface that scoring and [`crate::generate`] run on.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::ModelError;

/// Per-layer cached keys and values `[B, KV, T_past, dh]` and the number of cached positions.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
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

    /// Append this step's `k`, `v` `[B, KV, t, dh]` for `layer`; returns the full `[B, KV, T, dh]`.
    pub fn append(&mut self, layer: usize, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let (k, v) = match self.layers[layer].take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
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

/// Additive attention bias `[B, 1, t, T]` for `t` new queries at positions `past..past + t`
/// over `T = past + t` keys: causal, plus `-1e9` on keys whose `key_mask` is 0 (`[B, T]`,
/// `None` = all real).
pub fn causal_bias(
    b: usize,
    t: usize,
    past: usize,
    key_mask: Option<Tensor<2>>,
    device: &Device,
) -> Tensor<4> {
    let total = past + t;
    let causal: Vec<f32> = (0..t)
        .flat_map(|i| (0..total).map(move |j| if j > past + i { -1e9 } else { 0.0 }))
        .collect();
    let causal = Tensor::<2>::from_data(TensorData::new(causal, [t, total]), device)
        .reshape([1, 1, t, total]);
    match key_mask {
        Some(m) => causal + (m.ones_like() - m).reshape([b, 1, 1, total]) * -1e9,
        None => causal,
    }
}

/// Softmax attention of `q` `[B, H, t, dh]` over `k`, `v` `[B, KV, T, dh]` (`H` a multiple of
/// `KV`: query head `h` reads KV head `h / (H / KV)`), scaled by `1/√dh`, plus `bias`
/// (broadcast to `[B, H, t, T]`). Returns `[B, t, H·dh]`.
pub fn attend(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, bias: Tensor<4>) -> Tensor<3> {
    let [b, h, t, dh] = q.dims();
    let [_, kv, total, _] = k.dims();
    let (k, v) = if kv == h {
        (k, v)
    } else {
        let g = h / kv;
        let rep = |x: Tensor<4>| {
            x.reshape([b, kv, 1, total, dh])
                .expand([b, kv, g, total, dh])
                .reshape([b, h, total, dh])
        };
        (rep(k), rep(v))
    };
    // burn's fused scaled-dot-product attention (flex: one pass per (batch, head); autodiff:
    // decomposed into differentiable ops); scale 1/√dh
    let ctx = burn::tensor::module::attention(q, k, v, None, Some(bias), Default::default());
    ctx.swap_dims(1, 2).reshape([b, t, h * dh])
}

/// Logits `[B, T, V]` of hidden states `x` `[B, T, d]` under an LM head stored `[V, d]` (tied to
/// the embedding or not).
pub fn lm_head(x: Tensor<3>, head: Tensor<2>) -> Tensor<3> {
    let [b, t, d] = x.dims();
    let v = head.dims()[0];
    x.reshape([b * t, d])
        .matmul(head.transpose())
        .reshape([b, t, v])
}

/// Rotary position embedding in Hugging Face's half-split layout: dimension `i < dh/2` pairs
/// with `i + dh/2`, angle `pos · θ^(−2i/dh)`. `x`: `[B, H, t, dh]` at positions `start..start+t`.
pub fn rope(x: Tensor<4>, start: usize, theta: f64) -> Tensor<4> {
    let [b, h, t, dh] = x.dims();
    let half = dh / 2;
    let device = x.device();
    let mut cos = Vec::with_capacity(t * dh);
    let mut sin = Vec::with_capacity(t * dh);
    for p in start..start + t {
        // as transformers: inv_freq in f32, then position · inv_freq in f32; the angle list
        // repeats for the second half
        let angles: Vec<f32> = (0..half)
            .map(|i| p as f32 * (1.0 / theta.powf((2 * i) as f64 / dh as f64)) as f32)
            .collect();
        for _ in 0..2 {
            cos.extend(angles.iter().map(|a| a.cos()));
            sin.extend(angles.iter().map(|a| a.sin()));
        }
    }
    let cos = Tensor::<2>::from_data(TensorData::new(cos, [t, dh]), &device).reshape([1, 1, t, dh]);
    let sin = Tensor::<2>::from_data(TensorData::new(sin, [t, dh]), &device).reshape([1, 1, t, dh]);
    let x1 = x.clone().slice([0..b, 0..h, 0..t, 0..half]);
    let x2 = x.clone().slice([0..b, 0..h, 0..t, half..dh]);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos + rotated * sin
}

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
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 0.0, 2.0], [1, 1, 1, 4]),
            &dev,
        );
        let y = rope(x, 3, 100.0).try_to_vec_as::<f64>().unwrap();
        let (a, b) = (3.0f64, 0.3f64);
        let want = [a.cos(), -2.0 * b.sin(), a.sin(), 2.0 * b.cos()];
        for (g, w) in y.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{y:?} vs {want:?}");
        }
    }

    #[test]
    fn causal_bias_masks_future_and_padding() {
        let dev = Device::default();
        let m = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 1.0, 0.0], [1, 3]), &dev);
        let bias = causal_bias(1, 2, 1, Some(m), &dev)
            .try_to_vec_as::<f64>()
            .unwrap();
        // query 0 (pos 1): keys 0,1 open, key 2 future+pad; query 1 (pos 2): key 2 padded
        assert_eq!(bias[0..3], [0.0, 0.0, -2e9]);
        assert_eq!(bias[3..6], [0.0, 0.0, -1e9]);
    }
}
