//! BERT and RoBERTa encoders (MiniLM, BERT-base, RoBERTa-base) loaded from a Hugging Face
//! directory. RoBERTa (`model_type: "roberta"`) differs only in its position ids (numbered from
//! `pad_token_id + 1` over non-pad tokens), its missing pooler, and its classification head
//! (`classifier.dense` → tanh → `classifier.out_proj`).
//!
//! Architecture as transformers' `BertModel`: word + position + token-type embeddings and
//! LayerNorm; post-norm layers of multi-head self-attention and a GELU (exact, erf) MLP. Module
//! paths are the checkpoint's (`encoder.layer.0.attention.self.query`, `…attention.output.dense`,
//! `…intermediate.dense`, `…output.dense`), so PEFT `target_modules` lists work unchanged.
//! [`Bert::mean_pooled`] is sentence-transformers' mean pooling (all-MiniLM-L6-v2).
//!
//! [`Bert::pooled`] is transformers' pooler (`tanh(W_p · h[CLS] + b_p)`);
//! [`BertForSequenceClassification`] adds the classifier (`classifier`, one output for
//! regression) as transformers' `BertForSequenceClassification` defines it.

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::{Embedding, LayerNorm};
use burn::tensor::{Device, Int, Tensor, TensorData};
use peftlab_adapters::{AdaptedLinear, AdapterHost, child_path};
use peftlab_linalg::attention::multi_head_attention;
use peftlab_linalg::norm::add_layer_norm;
use serde::Deserialize;

use crate::ModelError;
use crate::act::{self, Activation};
use crate::safetensors_dir::{Checkpoint, linear_weight};

/// The `config.json` fields a BERT needs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct BertConfig {
    /// Must be `"bert"`.
    pub model_type: String,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width `d`.
    pub hidden_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Positions.
    pub max_position_embeddings: usize,
    /// Token types.
    pub type_vocab_size: usize,
    /// LayerNorm ε.
    pub layer_norm_eps: f64,
    /// Must be `"gelu"`.
    #[serde(default = "gelu_name")]
    pub hidden_act: String,
    /// Padding id (RoBERTa numbers positions from `pad_token_id + 1`).
    #[serde(default)]
    pub pad_token_id: usize,
}

fn gelu_name() -> String {
    "gelu".into()
}

impl BertConfig {
    /// Read and check `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let c: BertConfig = crate::safetensors_dir::read_json(path)?;
        let bad = |key: &str, reason: String| ModelError::config(path, key, reason);
        ModelError::check_model_type(path, &c.model_type, &["bert", "roberta"])?;
        if c.hidden_act != "gelu" {
            return Err(bad(
                "hidden_act",
                format!("{:?} is not supported (gelu)", c.hidden_act),
            ));
        }
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(bad("num_attention_heads", "must divide hidden_size".into()));
        }
        Ok(c)
    }
}

/// One encoder layer.
#[derive(Module, Debug)]
pub struct BertLayer {
    /// `attention.self.query`.
    pub query: AdaptedLinear,
    /// `attention.self.key`.
    pub key: AdaptedLinear,
    /// `attention.self.value`.
    pub value: AdaptedLinear,
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
    /// LayerNorm ε of both norms (`layer_norm_eps`; burn's `LayerNorm` keeps its own private).
    pub norm_eps: f64,
}

/// A BERT encoder.
#[derive(Module, Debug)]
pub struct Bert {
    /// `embeddings.word_embeddings`.
    pub word_embeddings: Embedding,
    /// `embeddings.position_embeddings`.
    pub position_embeddings: Embedding,
    /// `embeddings.token_type_embeddings`.
    pub token_type_embeddings: Embedding,
    /// `embeddings.LayerNorm`.
    pub embeddings_norm: LayerNorm,
    /// `encoder.layer.*`.
    pub layers: Vec<BertLayer>,
    /// `pooler.dense` (absent when the checkpoint has no pooler).
    pub pooler: Option<AdaptedLinear>,
    /// RoBERTa position numbering: positions `pad + 1, pad + 2, …` over non-pad tokens.
    pub roberta: bool,
    /// Padding token id.
    pub pad_token_id: usize,
}

impl BertLayer {
    fn forward(&self, h: Tensor<3>, key_bias: Tensor<2>) -> Tensor<3> {
        let q = self.query.forward(h.clone());
        let k = self.key.forward(h.clone());
        let v = self.value.forward(h.clone());
        // scaled-dot-product attention (scale 1/√dh) over the interleaved heads, additive
        // padding bias per key; fused on flex (peftlab_linalg::attention)
        let ctx = multi_head_attention(q, k, v, Some(key_bias), self.heads);
        // residual add + LayerNorm, fused on flex (peftlab_linalg::norm)
        let norm = |n: &LayerNorm, x: Tensor<3>, residual: Tensor<3>| {
            let beta = n.beta.as_ref().map(Param::val);
            add_layer_norm(
                x,
                Some(residual),
                &n.gamma.val(),
                beta.as_ref(),
                self.norm_eps,
            )
        };
        let h1 = norm(&self.attention_norm, self.attention_output.forward(ctx), h);
        let ff = self.output.forward(act::apply(
            Activation::GeluErf,
            self.intermediate.forward(h1.clone()),
        ));
        norm(&self.output_norm, ff, h1)
    }
}

impl Bert {
    /// Last hidden states `[B, T, d]` for token ids `[B, T]` and a 0/1 attention mask `[B, T]`
    /// (token type 0 everywhere).
    pub fn forward(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<3> {
        self.forward_typed(ids, None, mask)
    }

    /// [`Bert::forward`] with token type ids `[B, T]` (1 on the second sentence of a pair;
    /// `None` = all 0).
    pub fn forward_typed(
        &self,
        ids: Tensor<2, Int>,
        types: Option<Tensor<2, Int>>,
        mask: Tensor<2>,
    ) -> Tensor<3> {
        let [b, t] = ids.dims();
        let device = ids.device();
        let pos = if self.roberta {
            // transformers' create_position_ids_from_input_ids
            let pad = self.pad_token_id as i64;
            let not_pad = ids.clone().not_equal_elem(pad).int();
            not_pad.clone().cumsum(1) * not_pad + pad
        } else {
            Tensor::<1, Int>::arange(0..t as i64, &device)
                .reshape([1, t])
                .expand([b, t])
        };
        let types = types.unwrap_or_else(|| Tensor::<2, Int>::zeros([b, t], &device));
        let e = self.word_embeddings.forward(ids)
            + self.position_embeddings.forward(pos)
            + self.token_type_embeddings.forward(types);
        let mut h = self.embeddings_norm.forward(e);
        // 0 where attended, −1e9 where padded, per key: [B, T]
        let bias = (mask.ones_like() - mask) * -1e9;
        for layer in &self.layers {
            h = layer.forward(h, bias.clone());
        }
        h
    }

    /// transformers' pooler output `tanh(W_p · h[:, 0] + b_p)`: `[B, d]`. `None` without a
    /// pooler in the checkpoint.
    pub fn pooled(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Option<Tensor<2>> {
        self.pool(self.forward(ids, mask))
    }

    /// The pooler applied to hidden states `[B, T, d]` → `[B, d]`.
    fn pool(&self, h: Tensor<3>) -> Option<Tensor<2>> {
        let pooler = self.pooler.as_ref()?;
        let [b, _, d] = h.dims();
        let cls = h.slice([0..b, 0..1, 0..d]).reshape([b, d]);
        Some(pooler.forward(cls).tanh())
    }

    /// sentence-transformers mean pooling, L2-normalized: `[B, d]`.
    pub fn mean_pooled(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        let h = self.forward(ids, mask.clone());
        let [b, t, d] = h.dims();
        let m = mask.reshape([b, t, 1]);
        let summed = (h * m.clone()).sum_dim(1).reshape([b, d]);
        let count = m.sum_dim(1).reshape([b, 1]).clamp_min(1e-9);
        let mean = summed / count;
        let norm = mean.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
        mean / norm
    }

    /// Load `config.json` + `model.safetensors` from a Hugging Face model directory. Every
    /// tensor must be present with the shape the config implies (the pooler is optional);
    /// only `embeddings.position_ids` may stay unused.
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        let mut ck = Checkpoint::open_dir(dir)?;
        let bert = Self::from_checkpoint(dir, &mut ck, "", device)?;
        ck.finish(|n| n == "embeddings.position_ids")?;
        Ok(bert)
    }

    /// Build from an open checkpoint whose BERT tensors carry `prefix` (e.g. `"bert."` inside a
    /// `BertForSequenceClassification` checkpoint).
    pub fn from_checkpoint(
        dir: &Path,
        ck: &mut Checkpoint,
        prefix: &str,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let c = BertConfig::from_file(&dir.join("config.json"))?;
        let d = c.hidden_size;
        let mut emb = |name: &str, n: usize| {
            ck.embedding(&format!("{prefix}embeddings.{name}"), n, d, device)
        };
        let word = emb("word_embeddings", c.vocab_size)?;
        let position = emb("position_embeddings", c.max_position_embeddings)?;
        let token_type = emb("token_type_embeddings", c.type_vocab_size)?;
        let eps = c.layer_norm_eps;
        let norm = |ck: &mut Checkpoint, name: &str| ck.layer_norm(name, d, eps, device);
        let embeddings_norm = norm(ck, &format!("{prefix}embeddings.LayerNorm"))?;
        let linear = |ck: &mut Checkpoint, name: &str, d_in: usize, d_out: usize| {
            ck.linear(name, d_in, d_out, device)
        };
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("{prefix}encoder.layer.{i}");
            layers.push(BertLayer {
                query: linear(ck, &format!("{p}.attention.self.query"), d, d)?,
                key: linear(ck, &format!("{p}.attention.self.key"), d, d)?,
                value: linear(ck, &format!("{p}.attention.self.value"), d, d)?,
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
                norm_eps: c.layer_norm_eps,
            });
        }
        let pooler = if ck.contains(&format!("{prefix}pooler.dense.weight")) {
            Some(linear(ck, &format!("{prefix}pooler.dense"), d, d)?)
        } else {
            None
        };
        Ok(Self {
            word_embeddings: word,
            position_embeddings: position,
            token_type_embeddings: token_type,
            embeddings_norm,
            layers,
            pooler,
            roberta: c.model_type == "roberta",
            pad_token_id: c.pad_token_id,
        })
    }
}

/// `[B, T]` id and mask tensors from token id lists, right-padded with `pad_id`.
pub fn batch(ids: &[Vec<u32>], pad_id: u32, device: &Device) -> (Tensor<2, Int>, Tensor<2>) {
    let t = ids.iter().map(Vec::len).max().unwrap_or(0);
    let b = ids.len();
    let mut flat = Vec::with_capacity(b * t);
    let mut mask = Vec::with_capacity(b * t);
    for row in ids {
        for j in 0..t {
            flat.push(i64::from(*row.get(j).unwrap_or(&pad_id)));
            mask.push(f32::from(u8::from(j < row.len())));
        }
    }
    (
        Tensor::from_data(TensorData::new(flat, [b, t]), device),
        Tensor::from_data(TensorData::new(mask, [b, t]), device),
    )
}

peftlab_adapters::adapter_host!(BertLayer {
    "attention.self.query" => query,
    "attention.self.key" => key,
    "attention.self.value" => value,
    "attention.output.dense" => attention_output,
    "intermediate.dense" => intermediate,
    "output.dense" => output,
});

impl AdapterHost for Bert {
    fn for_each_linear(&self, prefix: &str, f: &mut dyn FnMut(&str, &AdaptedLinear)) {
        for (i, l) in self.layers.iter().enumerate() {
            l.for_each_linear(&child_path(prefix, &format!("encoder.layer.{i}")), f);
        }
        if let Some(p) = &self.pooler {
            f(&child_path(prefix, "pooler.dense"), p);
        }
    }
    fn for_each_linear_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut AdaptedLinear)) {
        for (i, l) in self.layers.iter_mut().enumerate() {
            l.for_each_linear_mut(&child_path(prefix, &format!("encoder.layer.{i}")), f);
        }
        if let Some(p) = &mut self.pooler {
            f(&child_path(prefix, "pooler.dense"), p);
        }
    }
}

/// transformers' `BertForSequenceClassification`: `logits = classifier(pooler(h[CLS]))`;
/// `num_labels = 1` is regression. Paths: `bert.…` and `classifier` (so PEFT's
/// `modules_to_save = ["classifier"]` works).
#[derive(Module, Debug)]
pub struct BertForSequenceClassification {
    /// The encoder (with its pooler).
    pub bert: Bert,
    /// `classifier` (BERT) or `classifier.out_proj` (RoBERTa): `d → num_labels`.
    pub classifier: AdaptedLinear,
    /// RoBERTa's `classifier.dense` (`tanh(dense(h[CLS]))` replaces the pooler).
    pub head_dense: Option<AdaptedLinear>,
    /// Classify the masked mean of the last hidden states instead of the pooled `[CLS]`
    /// (sentence-transformers style, for checkpoints such as all-MiniLM-L6-v2 whose pooler was
    /// never trained). Set with [`BertForSequenceClassification::with_mean_pooling`].
    pub mean_pooling: bool,
}

impl BertForSequenceClassification {
    /// Load the encoder from a BERT directory (plain `BertModel` tensors, or a classification
    /// checkpoint's `bert.`-prefixed ones). The classifier is read from the checkpoint when it
    /// is there with `num_labels` outputs; otherwise it starts as transformers initializes it
    /// (`N(0, 0.02²)` weights, zero bias), drawn from `seed`.
    pub fn from_dir(
        dir: &Path,
        num_labels: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let mut ck = Checkpoint::open_dir(dir)?;
        let prefix = if ck.contains("roberta.embeddings.word_embeddings.weight") {
            "roberta."
        } else if ck.contains("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        let bert = Bert::from_checkpoint(dir, &mut ck, prefix, device)?;
        let d = bert.word_embeddings.weight.dims()[1];
        if bert.roberta {
            // RobertaClassificationHead: out_proj(tanh(dense(h[CLS])))
            let lin =
                |ck: &mut Checkpoint, name: &str, d_out: usize| ck.linear(name, d, d_out, device);
            let head_dense = lin(&mut ck, "classifier.dense", d)?;
            let classifier = lin(&mut ck, "classifier.out_proj", num_labels)?;
            ck.finish(|n| n.ends_with("embeddings.position_ids"))?;
            let _ = seed;
            return Ok(Self {
                bert,
                classifier,
                head_dense: Some(head_dense),
                mean_pooling: false,
            });
        }
        if bert.pooler.is_none() {
            return Err(ModelError::Tensor {
                path: dir.join("model.safetensors"),
                name: format!("{prefix}pooler.dense.weight"),
                reason: "missing: sequence classification needs the pooler".into(),
            });
        }
        let mut classifier = AdaptedLinear::new(d, num_labels, true, device);
        if ck.contains("classifier.weight") {
            let w = ck.take("classifier.weight", [num_labels, d], device)?;
            let b = ck.take("classifier.bias", [num_labels], device)?;
            classifier.weight = Param::from_tensor(linear_weight(w));
            classifier.bias = Some(Param::from_tensor(b));
        } else {
            let mut rng = peftlab_linalg::init::SeededRng::new(seed);
            let w = peftlab_linalg::init::Fill::Normal { std: 0.02 }.tensor(
                d,
                num_labels,
                &mut rng,
                device,
                burn::tensor::DType::F32,
            );
            classifier.weight = Param::from_tensor(w);
            classifier.bias = Some(Param::from_tensor(Tensor::zeros([num_labels], device)));
        }
        ck.finish(|n| n.ends_with("embeddings.position_ids"))?;
        Ok(Self {
            bert,
            classifier,
            head_dense: None,
            mean_pooling: false,
        })
    }

    /// Use mean pooling (`Σ_t m_t h_t / Σ_t m_t`, not normalized) before the classifier
    /// instead of the pooler / RoBERTa head (which then stay unused).
    pub fn with_mean_pooling(mut self, on: bool) -> Self {
        self.mean_pooling = on;
        self
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
        let h = self.bert.forward_typed(ids, types, mask.clone());
        let [b, t, d] = h.dims();
        let pooled = if self.mean_pooling {
            let m = mask.reshape([b, t, 1]);
            let count = m.clone().sum_dim(1).reshape([b, 1]).clamp_min(1e-9);
            (h * m).sum_dim(1).reshape([b, d]) / count
        } else {
            match &self.head_dense {
                Some(dense) => dense
                    .forward(h.slice([0..b, 0..1, 0..d]).reshape([b, d]))
                    .tanh(),
                None => self
                    .bert
                    .pool(h)
                    .expect("checked at load: the pooler is present"),
            }
        };
        self.classifier.forward(pooled)
    }
}

impl AdapterHost for BertForSequenceClassification {
    fn for_each_linear(&self, prefix: &str, f: &mut dyn FnMut(&str, &AdaptedLinear)) {
        let base = if self.bert.roberta { "roberta" } else { "bert" };
        self.bert.for_each_linear(&child_path(prefix, base), f);
        match &self.head_dense {
            Some(dense) => {
                f(&child_path(prefix, "classifier.dense"), dense);
                f(&child_path(prefix, "classifier.out_proj"), &self.classifier);
            }
            None => f(&child_path(prefix, "classifier"), &self.classifier),
        }
    }
    fn for_each_linear_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut AdaptedLinear)) {
        let base = if self.bert.roberta { "roberta" } else { "bert" };
        self.bert.for_each_linear_mut(&child_path(prefix, base), f);
        match &mut self.head_dense {
            Some(dense) => {
                f(&child_path(prefix, "classifier.dense"), dense);
                f(
                    &child_path(prefix, "classifier.out_proj"),
                    &mut self.classifier,
                );
            }
            None => f(&child_path(prefix, "classifier"), &mut self.classifier),
        }
    }
}
