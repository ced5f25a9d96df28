//! DeBERTa-v2/v3 (the MTLoRA / AdaLoRA GLUE backbone) from a Hugging Face directory.
//!
//! Architecture as transformers' `DebertaV2Model` and `DebertaV2ForSequenceClassification`:
//! word (+ absolute position when `position_biased_input`) (+ token type) embeddings →
//! LayerNorm → × mask; post-norm layers of *disentangled* self-attention and a GELU MLP. The
//! attention score of query `i` and key `j` adds to content-to-content `q_i·k_j` the
//! content-to-position `q_i·k^r_{δ(i,j)}` (`c2p`) and position-to-content `k_j·q^r_{δ(i,j)}`
//! (`p2c`) terms, all divided by `√(dh · (1 + #pos_att_type))`, where `δ(i,j)` is the relative
//! distance `i − j`, log-bucketed when `position_buckets > 0`
//! (`sign·(⌈ln(|δ|/m)/ln((P−1)/m)·(m−1)⌉ + m)` beyond `m = buckets/2`), shifted by the span
//! and clamped into `[0, 2·span)`. `k^r`, `q^r` are the relative embeddings
//! (`encoder.rel_embeddings`, LayerNorm-ed when `norm_rel_ebd` says `layer_norm`) projected by
//! the layer's own `key_proj`/`query_proj` (`share_att_key`, v3) or by `pos_key_proj`/
//! `pos_query_proj` (v2). Masked scores are set to the f32 minimum, as transformers does.
//!
//! The classification head is transformers': `ContextPooler` (`pooler.dense` on the first
//! token, then `pooler_hidden_act`) and `classifier`. `DebertaV2ForSequenceClassification` does
//! not use the enhanced mask decoder (that belongs to the MLM head); neither does this.
//!
//! Module paths are the checkpoint's (`deberta.encoder.layer.0.attention.self.query_proj`,
//! `…key_proj`, `…value_proj`, `…attention.output.dense`, `…intermediate.dense`,
//! `…output.dense`, `pooler.dense`, `classifier`), so the AdaLoRA/MTLoRA target lists work.
//! The v2-xlarge convolution layer (`conv_kernel_size > 0`) is not implemented and is an error.

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::{Embedding, LayerNorm};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use peftlab_adapters::{AdaptedLinear, AdapterHost, child_path};
use serde::Deserialize;

use crate::ModelError;
use crate::act::{self, Activation};
use crate::safetensors_dir::Checkpoint;

/// The `config.json` fields DeBERTa-v2/v3 needs (transformers' `DebertaV2Config` names and
/// defaults).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct DebertaV2Config {
    /// Must be `"deberta-v2"`.
    pub model_type: String,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width `d`.
    pub hidden_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Heads.
    pub num_attention_heads: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Absolute positions (table size; also the default relative range).
    #[serde(default = "d512")]
    pub max_position_embeddings: usize,
    /// Token types (0 = none, v3).
    #[serde(default)]
    pub type_vocab_size: usize,
    /// LayerNorm ε.
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
    /// `gelu` only.
    #[serde(default = "gelu_name")]
    pub hidden_act: String,
    /// Relative (disentangled) attention on.
    #[serde(default)]
    pub relative_attention: bool,
    /// Relative range (`< 1` = `max_position_embeddings`).
    #[serde(default = "minus_one")]
    pub max_relative_positions: i64,
    /// Log buckets (`≤ 0` = none; v3: 256).
    #[serde(default = "minus_one")]
    pub position_buckets: i64,
    /// `"layer_norm"` to LayerNorm the relative embeddings (v3).
    #[serde(default = "none_name")]
    pub norm_rel_ebd: String,
    /// Project relative embeddings with the content `query_proj`/`key_proj` (v3).
    #[serde(default)]
    pub share_att_key: bool,
    /// `["p2c", "c2p"]`, or the string `"p2c|c2p"`.
    #[serde(default)]
    pub pos_att_type: Option<serde_json::Value>,
    /// Add absolute position embeddings to the input (v2: true, v3: false).
    #[serde(default = "yes")]
    pub position_biased_input: bool,
    /// Embedding width when it differs from `hidden_size` (then `embeddings.embed_proj`).
    #[serde(default)]
    pub embedding_size: Option<usize>,
    /// Pooler width (must equal `hidden_size`).
    #[serde(default)]
    pub pooler_hidden_size: Option<usize>,
    /// Pooler activation (`gelu` or `tanh`).
    #[serde(default = "gelu_name")]
    pub pooler_hidden_act: String,
    /// v2-xlarge convolution (unsupported unless 0).
    #[serde(default)]
    pub conv_kernel_size: usize,
}

fn d512() -> usize {
    512
}
fn eps() -> f64 {
    1e-7
}
fn gelu_name() -> String {
    "gelu".into()
}
fn none_name() -> String {
    "none".into()
}
fn minus_one() -> i64 {
    -1
}
fn yes() -> bool {
    true
}

impl DebertaV2Config {
    /// Read and check `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let c: Self = crate::safetensors_dir::read_json(path)?;
        let bad = |key: &str, reason: String| ModelError::config(path, key, reason);
        ModelError::check_model_type(path, &c.model_type, &["deberta-v2"])?;
        if c.hidden_act != "gelu" {
            return Err(bad(
                "hidden_act",
                format!("{:?} is not supported (gelu)", c.hidden_act),
            ));
        }
        if !matches!(c.pooler_hidden_act.as_str(), "gelu" | "tanh") {
            return Err(bad(
                "pooler_hidden_act",
                format!("{:?} is not supported (gelu, tanh)", c.pooler_hidden_act),
            ));
        }
        if c.conv_kernel_size != 0 {
            return Err(bad(
                "conv_kernel_size",
                "the convolution layer is not implemented".into(),
            ));
        }
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(bad("num_attention_heads", "must divide hidden_size".into()));
        }
        if c.pooler_hidden_size.is_some_and(|p| p != c.hidden_size) {
            return Err(bad("pooler_hidden_size", "must equal hidden_size".into()));
        }
        for t in c.pos_att_types().map_err(|r| bad("pos_att_type", r))? {
            if t != "p2c" && t != "c2p" {
                return Err(bad("pos_att_type", format!("{t:?} is not p2c or c2p")));
            }
        }
        Ok(c)
    }

    /// `pos_att_type` as a list (`"p2c|c2p"` strings split as transformers does).
    pub fn pos_att_types(&self) -> Result<Vec<String>, String> {
        match &self.pos_att_type {
            None | Some(serde_json::Value::Null) => Ok(Vec::new()),
            Some(serde_json::Value::String(s)) => Ok(s
                .to_lowercase()
                .split('|')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect()),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| "list holds a non-string".to_string())
                })
                .collect(),
            Some(other) => Err(format!("{other} is not a list or string")),
        }
    }

    /// The relative range: `max_relative_positions`, or `max_position_embeddings` when `< 1`.
    pub fn max_relative(&self) -> i64 {
        if self.max_relative_positions < 1 {
            self.max_position_embeddings as i64
        } else {
            self.max_relative_positions
        }
    }

    /// Relative embedding rows per direction: the buckets when bucketed, else the range.
    pub fn span(&self) -> i64 {
        if self.position_buckets > 0 {
            self.position_buckets
        } else {
            self.max_relative()
        }
    }
}

/// transformers' `make_log_bucket_position` for one distance (computed in f32 as torch does).
pub fn log_bucket(rel: i64, bucket_size: i64, max_position: i64) -> i64 {
    let mid = bucket_size / 2;
    let abs = if rel < mid && rel > -mid {
        mid - 1
    } else {
        rel.abs()
    };
    if abs <= mid {
        return rel;
    }
    let log_pos = ((abs as f32 / mid as f32).ln() / ((max_position - 1) as f32 / mid as f32).ln()
        * (mid - 1) as f32)
        .ceil()
        + mid as f32;
    (log_pos * rel.signum() as f32) as i64
}

/// One DeBERTa layer.
#[derive(Module, Debug)]
pub struct DebertaLayer {
    /// `attention.self.query_proj`.
    pub query_proj: AdaptedLinear,
    /// `attention.self.key_proj`.
    pub key_proj: AdaptedLinear,
    /// `attention.self.value_proj`.
    pub value_proj: AdaptedLinear,
    /// `attention.self.pos_key_proj` (v2 with `c2p`, not shared).
    pub pos_key_proj: Option<AdaptedLinear>,
    /// `attention.self.pos_query_proj` (v2 with `p2c`, not shared).
    pub pos_query_proj: Option<AdaptedLinear>,
    /// `attention.output.dense`.
    pub attention_output: AdaptedLinear,
    /// `attention.output.LayerNorm`.
    pub attention_norm: LayerNorm,
    /// `intermediate.dense`.
    pub intermediate: AdaptedLinear,
    /// `output.dense`.
    pub output: AdaptedLinear,
    /// `output.LayerNorm`.
    pub output_norm: LayerNorm,
    /// Heads.
    pub heads: usize,
    /// Content-to-position term on.
    pub c2p: bool,
    /// Position-to-content term on.
    pub p2c: bool,
}

/// Relative-position inputs shared by all layers of one forward pass.
struct Relative {
    /// LayerNorm-ed relative embeddings `[1, 2·span, d]`.
    emb: Tensor<3>,
    /// `clamp(δ(i,j) + span)` as gather indices `[B, H, T, T]`.
    c2p_idx: Tensor<4, Int>,
    /// `clamp(−δ(i,j) + span)` transposed (the rows of `K·Q_rᵀ` are keys) `[B, H, T, T]`.
    p2c_idx: Tensor<4, Int>,
}

impl DebertaLayer {
    fn forward(&self, h: Tensor<3>, keep: Tensor<4, Bool>, rel: Option<&Relative>) -> Tensor<3> {
        let [b, t, d] = h.dims();
        let (nh, dh) = (self.heads, d / self.heads);
        let split = |x: Tensor<3>| {
            let [bb, tt, _] = x.dims();
            x.reshape([bb, tt, nh, dh]).swap_dims(1, 2)
        };
        let q = split(self.query_proj.forward(h.clone()));
        let k = split(self.key_proj.forward(h.clone()));
        let v = split(self.value_proj.forward(h.clone()));
        let factor = 1 + usize::from(self.c2p) + usize::from(self.p2c);
        let scale = ((dh * factor) as f64).sqrt();
        let mut scores = q.clone().matmul(k.clone().swap_dims(2, 3)) / scale;
        if let Some(rel) = rel {
            let n = rel.emb.dims()[1];
            if self.c2p {
                let pk = match &self.pos_key_proj {
                    Some(p) => p.forward(rel.emb.clone()),
                    None => self.key_proj.forward(rel.emb.clone()),
                };
                let pk = split(pk).expand([b, nh, n, dh]);
                let c2p = q.matmul(pk.swap_dims(2, 3)).gather(3, rel.c2p_idx.clone());
                scores = scores + c2p / scale;
            }
            if self.p2c {
                let pq = match &self.pos_query_proj {
                    Some(p) => p.forward(rel.emb.clone()),
                    None => self.query_proj.forward(rel.emb.clone()),
                };
                let pq = split(pq).expand([b, nh, n, dh]);
                let p2c = k
                    .matmul(pq.swap_dims(2, 3))
                    .gather(3, rel.p2c_idx.clone())
                    .swap_dims(2, 3);
                scores = scores + p2c / scale;
            }
        }
        let scores = scores.mask_fill(keep.bool_not(), f32::MIN);
        let ctx = softmax(scores, 3)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([b, t, d]);
        let h1 = self
            .attention_norm
            .forward(self.attention_output.forward(ctx) + h);
        let ff = self.output.forward(act::apply(
            Activation::GeluErf,
            self.intermediate.forward(h1.clone()),
        ));
        self.output_norm.forward(ff + h1)
    }
}

/// transformers' `DebertaV2Model`.
#[derive(Module, Debug)]
pub struct DebertaV2 {
    /// `embeddings.word_embeddings`.
    pub word_embeddings: Embedding,
    /// `embeddings.position_embeddings` (used when `position_biased_input`).
    pub position_embeddings: Option<Embedding>,
    /// `embeddings.token_type_embeddings` (when `type_vocab_size > 0`).
    pub token_type_embeddings: Option<Embedding>,
    /// `embeddings.embed_proj.weight` `[d, e]` (when `embedding_size ≠ hidden_size`).
    pub embed_proj: Option<Param<Tensor<2>>>,
    /// `embeddings.LayerNorm`.
    pub embeddings_norm: LayerNorm,
    /// `encoder.layer.*`.
    pub layers: Vec<DebertaLayer>,
    /// `encoder.rel_embeddings.weight` `[2·span, d]` (relative attention).
    pub rel_embeddings: Option<Param<Tensor<2>>>,
    /// `encoder.LayerNorm` (when `norm_rel_ebd` has `layer_norm`).
    pub rel_norm: Option<LayerNorm>,
    /// Log buckets (`≤ 0` = none).
    pub position_buckets: i64,
    /// Relative range.
    pub max_relative: i64,
    /// Whether absolute positions are added to the input.
    pub position_biased_input: bool,
}

impl DebertaV2 {
    /// Last hidden states `[B, T, d]` for ids `[B, T]` and a 0/1 mask `[B, T]` (token type 0).
    pub fn forward(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<3> {
        self.forward_typed(ids, None, mask)
    }

    /// [`DebertaV2::forward`] with token type ids `[B, T]` (used when `type_vocab_size > 0`;
    /// `None` = all 0).
    pub fn forward_typed(
        &self,
        ids: Tensor<2, Int>,
        types: Option<Tensor<2, Int>>,
        mask: Tensor<2>,
    ) -> Tensor<3> {
        let [b, t] = ids.dims();
        let device = ids.device();
        let mut e = self.word_embeddings.forward(ids);
        if self.position_biased_input
            && let Some(pe) = &self.position_embeddings
        {
            let pos = Tensor::<1, Int>::arange(0..t as i64, &device)
                .reshape([1, t])
                .expand([b, t]);
            e = e + pe.forward(pos);
        }
        if let Some(tt) = &self.token_type_embeddings {
            e = e + tt.forward(types.unwrap_or_else(|| Tensor::<2, Int>::zeros([b, t], &device)));
        }
        if let Some(w) = &self.embed_proj {
            let [_, _, de] = e.dims();
            let w = w.val();
            let d = w.dims()[0];
            e = e
                .reshape([b * t, de])
                .matmul(w.transpose())
                .reshape([b, t, d]);
        }
        let mut h = self.embeddings_norm.forward(e) * mask.clone().reshape([b, t, 1]);
        // attend where both query and key are real tokens: [B, 1, T, T]
        let m = mask.greater_elem(0.5);
        let keep = m
            .clone()
            .reshape([b, 1, t, 1])
            .expand([b, 1, t, t])
            .bool_and(m.reshape([b, 1, 1, t]).expand([b, 1, t, t]));
        let heads = self.layers.first().map_or(1, |l| l.heads);
        let keep = keep.expand([b, heads, t, t]);
        let rel = self.relative(b, heads, t, &device);
        for layer in &self.layers {
            h = layer.forward(h, keep.clone(), rel.as_ref());
        }
        h
    }

    fn relative(&self, b: usize, heads: usize, t: usize, device: &Device) -> Option<Relative> {
        let w = self.rel_embeddings.as_ref()?.val();
        let emb = match &self.rel_norm {
            Some(n) => n.forward(w),
            None => w,
        };
        let [n, d] = emb.dims();
        let span = (n / 2) as i64;
        let delta = |i: usize, j: usize| {
            let r = i as i64 - j as i64;
            if self.position_buckets > 0 {
                log_bucket(r, self.position_buckets, self.max_relative)
            } else {
                r
            }
        };
        let idx = |f: &dyn Fn(usize, usize) -> i64| {
            let v: Vec<i64> = (0..t)
                .flat_map(|i| (0..t).map(move |j| (i, j)))
                .map(|(i, j)| f(i, j).clamp(0, 2 * span - 1))
                .collect();
            Tensor::<2, Int>::from_data(TensorData::new(v, [t, t]), device)
                .reshape([1, 1, t, t])
                .expand([b, heads, t, t])
        };
        Some(Relative {
            emb: emb.reshape([1, n, d]),
            c2p_idx: idx(&|i, j| delta(i, j) + span),
            // row a of K·Q_rᵀ is key a; entry [a][b] reads −δ(a, b) + span
            p2c_idx: idx(&|a, bb| -delta(a, bb) + span),
        })
    }

    /// Build from an open checkpoint whose tensors carry `prefix` (`"deberta."` inside a
    /// classification checkpoint).
    pub fn from_checkpoint(
        c: &DebertaV2Config,
        ck: &mut Checkpoint,
        prefix: &str,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let d = c.hidden_size;
        let de = c.embedding_size.unwrap_or(d);
        let emb = |ck: &mut Checkpoint, name: &str, n: usize| {
            ck.embedding(&format!("{prefix}embeddings.{name}"), n, de, device)
        };
        let word_embeddings = emb(ck, "word_embeddings", c.vocab_size)?;
        let position_embeddings = if c.position_biased_input {
            Some(emb(ck, "position_embeddings", c.max_position_embeddings)?)
        } else {
            None
        };
        let token_type_embeddings = if c.type_vocab_size > 0 {
            Some(emb(ck, "token_type_embeddings", c.type_vocab_size)?)
        } else {
            None
        };
        let embed_proj = if de != d {
            Some(Param::from_tensor(ck.take(
                &format!("{prefix}embeddings.embed_proj.weight"),
                [d, de],
                device,
            )?))
        } else {
            None
        };
        let eps = c.layer_norm_eps;
        let norm = |ck: &mut Checkpoint, name: &str| ck.layer_norm(name, d, eps, device);
        let linear = |ck: &mut Checkpoint, name: &str, d_in: usize, d_out: usize| {
            ck.linear(name, d_in, d_out, device)
        };
        let embeddings_norm = norm(ck, &format!("{prefix}embeddings.LayerNorm"))?;
        let types = c.pos_att_types().unwrap_or_default();
        let (c2p, p2c) = if c.relative_attention {
            (
                types.iter().any(|t| t == "c2p"),
                types.iter().any(|t| t == "p2c"),
            )
        } else {
            (false, false)
        };
        let separate = c.relative_attention && !c.share_att_key;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("{prefix}encoder.layer.{i}");
            let a = format!("{p}.attention.self");
            layers.push(DebertaLayer {
                query_proj: linear(ck, &format!("{a}.query_proj"), d, d)?,
                key_proj: linear(ck, &format!("{a}.key_proj"), d, d)?,
                value_proj: linear(ck, &format!("{a}.value_proj"), d, d)?,
                pos_key_proj: if separate && c2p {
                    Some(linear(ck, &format!("{a}.pos_key_proj"), d, d)?)
                } else {
                    None
                },
                pos_query_proj: if separate && p2c {
                    Some(linear(ck, &format!("{a}.pos_query_proj"), d, d)?)
                } else {
                    None
                },
                attention_output: linear(ck, &format!("{p}.attention.output.dense"), d, d)?,
                attention_norm: norm(ck, &format!("{p}.attention.output.LayerNorm"))?,
                intermediate: linear(
                    ck,
                    &format!("{p}.intermediate.dense"),
                    d,
                    c.intermediate_size,
                )?,
                output: linear(ck, &format!("{p}.output.dense"), c.intermediate_size, d)?,
                output_norm: norm(ck, &format!("{p}.output.LayerNorm"))?,
                heads: c.num_attention_heads,
                c2p,
                p2c,
            });
        }
        let (rel_embeddings, rel_norm) = if c.relative_attention {
            let n = 2 * c.span() as usize;
            let w = ck.take(
                &format!("{prefix}encoder.rel_embeddings.weight"),
                [n, d],
                device,
            )?;
            let rel_norm = if c
                .norm_rel_ebd
                .to_lowercase()
                .split('|')
                .any(|x| x.trim() == "layer_norm")
            {
                Some(norm(ck, &format!("{prefix}encoder.LayerNorm"))?)
            } else {
                None
            };
            (Some(Param::from_tensor(w)), rel_norm)
        } else {
            (None, None)
        };
        Ok(Self {
            word_embeddings,
            position_embeddings,
            token_type_embeddings,
            embed_proj,
            embeddings_norm,
            layers,
            rel_embeddings,
            rel_norm,
            position_buckets: c.position_buckets,
            max_relative: c.max_relative(),
            position_biased_input: c.position_biased_input,
        })
    }
}

peftlab_adapters::adapter_host!(DebertaLayer {
    "attention.self.query_proj" => query_proj,
    "attention.self.key_proj" => key_proj,
    "attention.self.value_proj" => value_proj,
    "attention.output.dense" => attention_output,
    "intermediate.dense" => intermediate,
    "output.dense" => output,
});

impl AdapterHost for DebertaV2 {
    fn for_each_linear(&self, prefix: &str, f: &mut dyn FnMut(&str, &AdaptedLinear)) {
        for (i, l) in self.layers.iter().enumerate() {
            let p = child_path(prefix, &format!("encoder.layer.{i}"));
            l.for_each_linear(&p, f);
            if let Some(x) = &l.pos_key_proj {
                f(&child_path(&p, "attention.self.pos_key_proj"), x);
            }
            if let Some(x) = &l.pos_query_proj {
                f(&child_path(&p, "attention.self.pos_query_proj"), x);
            }
        }
    }
    fn for_each_linear_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut AdaptedLinear)) {
        for (i, l) in self.layers.iter_mut().enumerate() {
            let p = child_path(prefix, &format!("encoder.layer.{i}"));
            l.for_each_linear_mut(&p, f);
            if let Some(x) = &mut l.pos_key_proj {
                f(&child_path(&p, "attention.self.pos_key_proj"), x);
            }
            if let Some(x) = &mut l.pos_query_proj {
                f(&child_path(&p, "attention.self.pos_query_proj"), x);
            }
        }
    }
}

/// transformers' `DebertaV2ForSequenceClassification`: `classifier(act(pooler.dense(h[:, 0])))`;
/// `num_labels = 1` is regression.
#[derive(Module, Debug)]
pub struct DebertaV2ForSequenceClassification {
    /// The encoder (`deberta.…`).
    pub deberta: DebertaV2,
    /// `pooler.dense`.
    pub pooler: AdaptedLinear,
    /// `classifier`.
    pub classifier: AdaptedLinear,
    /// Pooler activation is tanh (else GELU).
    pub pooler_tanh: bool,
}

impl DebertaV2ForSequenceClassification {
    /// Load from a DeBERTa-v2/v3 directory (a `DebertaV2Model` checkpoint or a classification
    /// one with `deberta.`-prefixed names). The pooler and classifier are read when present
    /// (the classifier must have `num_labels` outputs); otherwise they start as transformers
    /// initializes them (`N(0, 0.02²)` weights, zero bias), drawn from `seed`.
    pub fn from_dir(
        dir: &Path,
        num_labels: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let c = DebertaV2Config::from_file(&dir.join("config.json"))?;
        let mut ck = Checkpoint::open_dir(dir)?;
        let prefix = if ck.contains("deberta.embeddings.word_embeddings.weight") {
            "deberta."
        } else {
            ""
        };
        let deberta = DebertaV2::from_checkpoint(&c, &mut ck, prefix, device)?;
        let d = c.hidden_size;
        let mut rng = peftlab_linalg::init::SeededRng::new(seed);
        let mut head =
            |ck: &mut Checkpoint, name: &str, d_out: usize| -> Result<AdaptedLinear, ModelError> {
                if ck.contains(&format!("{name}.weight")) {
                    return ck.linear(name, d, d_out, device);
                }
                let mut l = AdaptedLinear::new(d, d_out, true, device);
                let w = peftlab_linalg::init::Fill::Normal { std: 0.02 }.tensor(
                    d,
                    d_out,
                    &mut rng,
                    device,
                    burn::tensor::DType::F32,
                );
                l.weight = Param::from_tensor(w);
                l.bias = Some(Param::from_tensor(Tensor::zeros([d_out], device)));
                Ok(l)
            };
        let pooler = head(&mut ck, "pooler.dense", d)?;
        let classifier = head(&mut ck, "classifier", num_labels)?;
        // pretraining heads (lm_predictions, mask_predictions) are not part of this model
        ck.finish(|n| {
            n.ends_with("embeddings.position_ids")
                || n.starts_with("lm_predictions.")
                || n.starts_with("mask_predictions.")
                || (!c.position_biased_input
                    && n.ends_with("embeddings.position_embeddings.weight"))
        })?;
        Ok(Self {
            deberta,
            pooler,
            classifier,
            pooler_tanh: c.pooler_hidden_act == "tanh",
        })
    }

    /// Logits `[B, num_labels]` (eval mode: no dropout).
    pub fn forward(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        self.forward_typed(ids, None, mask)
    }

    /// Logits with token type ids `[B, T]` (sentence pairs; `None` = all 0).
    pub fn forward_typed(
        &self,
        ids: Tensor<2, Int>,
        types: Option<Tensor<2, Int>>,
        mask: Tensor<2>,
    ) -> Tensor<2> {
        let h = self.deberta.forward_typed(ids, types, mask);
        let [b, _, d] = h.dims();
        let cls = h.slice([0..b, 0..1, 0..d]).reshape([b, d]);
        let pooled = self.pooler.forward(cls);
        let pooled = if self.pooler_tanh {
            pooled.tanh()
        } else {
            act::apply(Activation::GeluErf, pooled)
        };
        self.classifier.forward(pooled)
    }
}

impl AdapterHost for DebertaV2ForSequenceClassification {
    fn for_each_linear(&self, prefix: &str, f: &mut dyn FnMut(&str, &AdaptedLinear)) {
        self.deberta
            .for_each_linear(&child_path(prefix, "deberta"), f);
        f(&child_path(prefix, "pooler.dense"), &self.pooler);
        f(&child_path(prefix, "classifier"), &self.classifier);
    }
    fn for_each_linear_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut AdaptedLinear)) {
        self.deberta
            .for_each_linear_mut(&child_path(prefix, "deberta"), f);
        f(&child_path(prefix, "pooler.dense"), &mut self.pooler);
        f(&child_path(prefix, "classifier"), &mut self.classifier);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_buckets_match_transformers() {
        // torch: make_log_bucket_position(torch.arange(-20, 21), 8, 32)
        let got: Vec<i64> = (-20..=20).map(|r| log_bucket(r, 8, 32)).collect();
        let want = [
            -7, -7, -7, -7, -7, -6, -6, -6, -6, -6, -6, -6, -6, -5, -5, -5, -4, -3, -2, -1, 0, 1,
            2, 3, 4, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7,
        ];
        assert_eq!(got, want);
        // DeBERTa-v3-base settings: make_log_bucket_position(torch.arange(-300, 301, 7), 256, 512)
        let got: Vec<i64> = (-300..=300)
            .step_by(7)
            .map(|r| log_bucket(r, 256, 512))
            .collect();
        let want = [
            -207, -204, -202, -200, -198, -195, -193, -190, -188, -185, -182, -179, -177, -173,
            -170, -167, -164, -160, -157, -153, -149, -145, -141, -136, -131, -125, -118, -111,
            -104, -97, -90, -83, -76, -69, -62, -55, -48, -41, -34, -27, -20, -13, -6, 1, 8, 15,
            22, 29, 36, 43, 50, 57, 64, 71, 78, 85, 92, 99, 106, 113, 120, 127, 133, 137, 142, 146,
            150, 154, 158, 161, 165, 168, 171, 174, 177, 180, 183, 186, 188, 191, 194, 196, 198,
            201, 203, 205,
        ];
        assert_eq!(got, want);
    }
}
