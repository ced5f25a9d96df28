//! Llama decoders (SmolLM2, Llama 2/3 layout) from a Hugging Face directory or a `.gguf` file.
//!
//! Architecture as transformers' `LlamaForCausalLM`: token embedding; pre-norm blocks of RMSNorm
//! → grouped-query self-attention with rotary embeddings (half-split layout) → residual, RMSNorm
//! → SwiGLU MLP (`down(silu(gate(x)) ⊙ up(x))`) → residual; final RMSNorm; LM head (tied to the
//! embedding when the checkpoint has no `lm_head.weight` / GGUF `output.weight`).
//!
//! Module paths are transformers' (`model.layers.0.self_attn.q_proj`, `…k_proj`, `…v_proj`,
//! `…o_proj`, `…mlp.gate_proj`, `…up_proj`, `…down_proj`), so PEFT adapters for the Hugging Face
//! model load onto a GGUF-loaded one. GGUF files store Q and K rows permuted for GGML's
//! adjacent-pair RoPE; the loader un-permutes them (row `h·dh + 2i + j` of the file is row
//! `h·dh + j·dh/2 + i` of the Hugging Face matrix), so one RoPE serves both sources and the
//! projections' output dimensions mean the same as in transformers.
//!
//! GGUF tensors are dequantized to f32 at load (Q4_0/Q4_1/Q8_0/F16/BF16/F32): the quantized base
//! stays frozen under an adapter, the QLoRA setting with an f32 compute copy.

use std::collections::BTreeSet;
use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, RmsNorm, RmsNormConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use peftlab_adapters::{AdaptedLinear, AdapterHost, child_path};
use serde::Deserialize;

use crate::ModelError;
use crate::act::{self, Activation};
use crate::decoder::{CausalLm, KvCache, attend, key_bias, lm_head, rope};
use crate::gguf::GgufFile;
use crate::safetensors_dir::{Checkpoint, linear_weight};
use peftlab_linalg::frozen::FrozenPack;
use peftlab_linalg::norm::add_rms_norm;

/// The hyperparameters of a Llama model (transformers' `LlamaConfig` names).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct LlamaConfig {
    /// Must be `"llama"` in a `config.json`.
    #[serde(default)]
    pub model_type: String,
    /// Vocabulary size `V`.
    pub vocab_size: usize,
    /// Width `d`.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Blocks.
    pub num_hidden_layers: usize,
    /// Query heads `H`.
    pub num_attention_heads: usize,
    /// Key/value heads (GQA; `H` must be a multiple).
    pub num_key_value_heads: Option<usize>,
    /// RMSNorm ε.
    pub rms_norm_eps: f64,
    /// RoPE base θ (transformers 4.x: top-level `rope_theta`; 5.x: `rope_parameters.rope_theta`,
    /// moved here when the config is read).
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// transformers 5.x RoPE settings; only `rope_type: "default"` is supported.
    #[serde(default)]
    pub rope_parameters: Option<serde_json::Value>,
    /// transformers 4.x RoPE scaling; must be absent (`null`).
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// Head width; must be `hidden_size / num_attention_heads` when given.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Biases on the attention projections (unsupported: must be false).
    #[serde(default)]
    pub attention_bias: bool,
    /// Biases on the MLP projections (unsupported: must be false).
    #[serde(default)]
    pub mlp_bias: bool,
    /// Context length.
    #[serde(default = "default_ctx")]
    pub max_position_embeddings: usize,
    /// LM head tied to the embedding.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// `silu` only.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Beginning-of-sequence id.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence id (the first, when the config lists several).
    #[serde(default, deserialize_with = "one_or_first")]
    pub eos_token_id: Option<u32>,
}

fn one_or_first<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Ids {
        One(u32),
        Many(Vec<u32>),
    }
    Ok(match Option::<Ids>::deserialize(d)? {
        Some(Ids::One(i)) => Some(i),
        Some(Ids::Many(v)) => v.first().copied(),
        None => None,
    })
}

fn default_theta() -> f64 {
    10_000.0
}
fn default_ctx() -> usize {
    2048
}
fn default_act() -> String {
    "silu".into()
}

impl LlamaConfig {
    /// Key/value heads (defaults to the query heads).
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    fn check(mut self, path: &Path) -> Result<Self, ModelError> {
        let bad = |key: &str, reason: String| ModelError::config(path, key, reason);
        if let Some(p) = &self.rope_parameters {
            let ty = p
                .get("rope_type")
                .and_then(|t| t.as_str())
                .unwrap_or("default");
            if ty != "default" {
                return Err(bad(
                    "rope_parameters.rope_type",
                    format!("{ty:?} is not supported (default)"),
                ));
            }
            if let Some(theta) = p.get("rope_theta").and_then(serde_json::Value::as_f64) {
                self.rope_theta = theta;
            }
        }
        if self.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(bad("rope_scaling", "RoPE scaling is not supported".into()));
        }
        if self.attention_bias || self.mlp_bias {
            return Err(bad(
                if self.attention_bias {
                    "attention_bias"
                } else {
                    "mlp_bias"
                },
                "projection biases are not supported".into(),
            ));
        }
        if let Some(hd) = self.head_dim
            && self.num_attention_heads * hd != self.hidden_size
        {
            return Err(bad(
                "head_dim",
                format!("{hd} × {} heads ≠ hidden_size", self.num_attention_heads),
            ));
        }
        if self.hidden_act != "silu" {
            return Err(bad(
                "hidden_act",
                format!("{:?} is not supported (silu)", self.hidden_act),
            ));
        }
        let h = self.num_attention_heads;
        if h == 0
            || !self.hidden_size.is_multiple_of(h)
            || !(self.hidden_size / h).is_multiple_of(2)
        {
            return Err(bad(
                "num_attention_heads",
                "must divide hidden_size into even head widths".into(),
            ));
        }
        if self.kv_heads() == 0 || !h.is_multiple_of(self.kv_heads()) {
            return Err(bad(
                "num_key_value_heads",
                format!("{} does not divide {h} query heads", self.kv_heads()),
            ));
        }
        Ok(self)
    }

    /// Read and check a Hugging Face `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let c: Self = crate::safetensors_dir::read_json(path)?;
        ModelError::check_model_type(path, &c.model_type, &["llama"])?;
        c.check(path)
    }

    /// From GGUF metadata (`general.architecture = "llama"`, `llama.*` keys).
    pub fn from_gguf(g: &GgufFile) -> Result<Self, ModelError> {
        let arch = g.meta_str("general.architecture")?;
        if arch != "llama" {
            return Err(ModelError::Config {
                path: g.path().to_path_buf(),
                key: "general.architecture".into(),
                reason: format!("{arch:?} is not \"llama\""),
            });
        }
        let u = |k: &str| g.meta_u64(&format!("llama.{k}")).map(|v| v as usize);
        let vocab = g.meta_strings("tokenizer.ggml.tokens")?.len();
        let c = Self {
            model_type: "llama".into(),
            vocab_size: vocab,
            hidden_size: u("embedding_length")?,
            intermediate_size: u("feed_forward_length")?,
            num_hidden_layers: u("block_count")?,
            num_attention_heads: u("attention.head_count")?,
            num_key_value_heads: Some(u("attention.head_count_kv")?),
            rms_norm_eps: g.meta_f64("llama.attention.layer_norm_rms_epsilon")?,
            rope_theta: g.meta_f64("llama.rope.freq_base").unwrap_or(10_000.0),
            max_position_embeddings: u("context_length")?,
            tie_word_embeddings: !g.tensors.contains_key("output.weight"),
            hidden_act: "silu".into(),
            rope_parameters: None,
            rope_scaling: None,
            head_dim: None,
            attention_bias: false,
            mlp_bias: false,
            bos_token_id: g
                .meta_u64("tokenizer.ggml.bos_token_id")
                .ok()
                .map(|v| v as u32),
            eos_token_id: g
                .meta_u64("tokenizer.ggml.eos_token_id")
                .ok()
                .map(|v| v as u32),
        };
        c.check(g.path())
    }
}

/// One decoder block.
#[derive(Module, Debug)]
pub struct LlamaLayer {
    /// `input_layernorm`.
    pub input_layernorm: RmsNorm,
    /// `self_attn.q_proj`: `d → H·dh`.
    pub q_proj: AdaptedLinear,
    /// `self_attn.k_proj`: `d → KV·dh`.
    pub k_proj: AdaptedLinear,
    /// `self_attn.v_proj`: `d → KV·dh`.
    pub v_proj: AdaptedLinear,
    /// `self_attn.o_proj`: `H·dh → d`.
    pub o_proj: AdaptedLinear,
    /// `post_attention_layernorm`.
    pub post_attention_layernorm: RmsNorm,
    /// `mlp.gate_proj`.
    pub gate_proj: AdaptedLinear,
    /// `mlp.up_proj`.
    pub up_proj: AdaptedLinear,
    /// `mlp.down_proj`.
    pub down_proj: AdaptedLinear,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// RoPE θ.
    pub rope_theta: f64,
}

/// `RMSNorm(x)` with `norm`'s γ and ε (fused on the CPU fast path).
fn rms(norm: &RmsNorm, x: Tensor<3>) -> Tensor<3> {
    add_rms_norm(x, None, &norm.gamma.val(), norm.epsilon)
}

impl LlamaLayer {
    /// `x: [B, t, d]` at positions `cache.len()..` (0 without a cache), `key_bias: [B, T]`.
    fn forward(
        &self,
        x: Tensor<3>,
        key_bias: Option<Tensor<2>>,
        cache: Option<(&mut KvCache, usize)>,
    ) -> Tensor<3> {
        let h = rms(&self.input_layernorm, x.clone());
        let start = cache.as_ref().map_or(0, |(c, _)| c.len());
        let q = rope(
            self.q_proj.forward(h.clone()),
            self.heads,
            start,
            self.rope_theta,
        );
        let k = rope(
            self.k_proj.forward(h.clone()),
            self.kv_heads,
            start,
            self.rope_theta,
        );
        let v = self.v_proj.forward(h);
        let (k, v) = match cache {
            Some((c, layer)) => c.append(layer, k, v),
            None => (k, v),
        };
        let ctx = attend(q, k, v, key_bias, self.heads, self.kv_heads);
        let x = x + self.o_proj.forward(ctx);
        let h = rms(&self.post_attention_layernorm, x.clone());
        let mlp = self.down_proj.forward(
            act::apply(Activation::Silu, self.gate_proj.forward(h.clone()))
                * self.up_proj.forward(h),
        );
        x + mlp
    }
}

/// transformers' `LlamaForCausalLM`.
#[derive(Module, Debug)]
pub struct LlamaForCausalLm {
    /// `model.embed_tokens`: `[V, d]`.
    pub embed_tokens: Embedding,
    /// `model.layers.*`.
    pub layers: Vec<LlamaLayer>,
    /// `model.norm`.
    pub norm: RmsNorm,
    /// `lm_head.weight` `[V, d]` when not tied to the embedding.
    pub lm_head: Option<Param<Tensor<2>>>,
    /// The frozen LM head packed for the CPU fast path (`peftlab_linalg::frozen`).
    #[module(skip)]
    pub head_pack: FrozenPack,
}

/// Where the tensors come from: transformers names are the keys either way.
enum Source<'a> {
    Safetensors(&'a mut Checkpoint),
    Gguf {
        file: &'a GgufFile,
        heads: usize,
        kv_heads: usize,
        used: BTreeSet<String>,
    },
}

fn gguf_name(hf: &str) -> String {
    if let Some(rest) = hf.strip_prefix("model.layers.") {
        let (i, what) = rest.split_once('.').unwrap_or((rest, ""));
        let g = match what {
            "input_layernorm.weight" => "attn_norm.weight",
            "self_attn.q_proj.weight" => "attn_q.weight",
            "self_attn.k_proj.weight" => "attn_k.weight",
            "self_attn.v_proj.weight" => "attn_v.weight",
            "self_attn.o_proj.weight" => "attn_output.weight",
            "post_attention_layernorm.weight" => "ffn_norm.weight",
            "mlp.gate_proj.weight" => "ffn_gate.weight",
            "mlp.up_proj.weight" => "ffn_up.weight",
            "mlp.down_proj.weight" => "ffn_down.weight",
            other => other,
        };
        return format!("blk.{i}.{g}");
    }
    match hf {
        "model.embed_tokens.weight" => "token_embd.weight".into(),
        "model.norm.weight" => "output_norm.weight".into(),
        "lm_head.weight" => "output.weight".into(),
        other => other.into(),
    }
}

/// Undo llama.cpp's Q/K row permutation (`n_head` heads of `rows / n_head` rows each).
fn unpermute_rows(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    let dh = rows / n_head;
    let half = dh / 2;
    let mut out = vec![0.0; w.len()];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let src = h * dh + 2 * i + j;
                let dst = h * dh + j * half + i;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

impl Source<'_> {
    fn contains(&self, name: &str) -> bool {
        match self {
            Self::Safetensors(ck) => ck.contains(name),
            Self::Gguf { file, .. } => file.tensors.contains_key(&gguf_name(name)),
        }
    }

    fn take<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Result<Tensor<D>, ModelError> {
        match self {
            Self::Safetensors(ck) => ck.take(name, shape, device),
            Self::Gguf {
                file,
                heads,
                kv_heads,
                used,
            } => {
                let g = gguf_name(name);
                let mut data = file.dequantize(&g, &shape)?;
                if name.ends_with("q_proj.weight") {
                    data = unpermute_rows(&data, shape[0], shape[1], *heads);
                } else if name.ends_with("k_proj.weight") {
                    data = unpermute_rows(&data, shape[0], shape[1], *kv_heads);
                }
                used.insert(g);
                Ok(Tensor::from_data(TensorData::new(data, shape), device))
            }
        }
    }
}

impl LlamaForCausalLm {
    /// Load from a `.gguf` file (architecture `llama`).
    pub fn from_gguf(file: &GgufFile, device: &Device) -> Result<(Self, LlamaConfig), ModelError> {
        let c = LlamaConfig::from_gguf(file)?;
        let mut src = Source::Gguf {
            file,
            heads: c.num_attention_heads,
            kv_heads: c.kv_heads(),
            used: BTreeSet::new(),
        };
        let model = Self::build(&c, &mut src, device)?;
        if let Source::Gguf { used, .. } = src
            && let Some(extra) = file.tensors.keys().find(|n| !used.contains(*n))
        {
            return Err(ModelError::Tensor {
                path: file.path().to_path_buf(),
                name: extra.clone(),
                reason: "unexpected tensor for a llama model".into(),
            });
        }
        Ok((model, c))
    }

    /// Load from a Hugging Face directory (`config.json`, `model.safetensors`).
    pub fn from_dir(dir: &Path, device: &Device) -> Result<(Self, LlamaConfig), ModelError> {
        let c = LlamaConfig::from_file(&dir.join("config.json"))?;
        let mut ck = Checkpoint::open_dir(dir)?;
        let model = Self::build(&c, &mut Source::Safetensors(&mut ck), device)?;
        ck.finish(|n| n.ends_with("rotary_emb.inv_freq"))?;
        Ok((model, c))
    }

    fn build(c: &LlamaConfig, src: &mut Source<'_>, device: &Device) -> Result<Self, ModelError> {
        let d = c.hidden_size;
        let dh = d / c.num_attention_heads;
        let kvd = c.kv_heads() * dh;
        let mut embed_tokens = EmbeddingConfig::new(c.vocab_size, d).init(device);
        embed_tokens.weight =
            Param::from_tensor(src.take("model.embed_tokens.weight", [c.vocab_size, d], device)?);
        let norm = |src: &mut Source<'_>, name: &str| -> Result<RmsNorm, ModelError> {
            let mut n = RmsNormConfig::new(d)
                .with_epsilon(c.rms_norm_eps)
                .init(device);
            n.gamma = Param::from_tensor(src.take(name, [d], device)?);
            Ok(n)
        };
        let linear = |src: &mut Source<'_>,
                      name: &str,
                      d_in: usize,
                      d_out: usize|
         -> Result<AdaptedLinear, ModelError> {
            let w = src.take(&format!("{name}.weight"), [d_out, d_in], device)?;
            let mut l = AdaptedLinear::new(d_in, d_out, false, device);
            l.weight = Param::from_tensor(linear_weight(w));
            Ok(l)
        };
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("model.layers.{i}");
            layers.push(LlamaLayer {
                input_layernorm: norm(src, &format!("{p}.input_layernorm.weight"))?,
                q_proj: linear(src, &format!("{p}.self_attn.q_proj"), d, d)?,
                k_proj: linear(src, &format!("{p}.self_attn.k_proj"), d, kvd)?,
                v_proj: linear(src, &format!("{p}.self_attn.v_proj"), d, kvd)?,
                o_proj: linear(src, &format!("{p}.self_attn.o_proj"), d, d)?,
                post_attention_layernorm: norm(
                    src,
                    &format!("{p}.post_attention_layernorm.weight"),
                )?,
                gate_proj: linear(src, &format!("{p}.mlp.gate_proj"), d, c.intermediate_size)?,
                up_proj: linear(src, &format!("{p}.mlp.up_proj"), d, c.intermediate_size)?,
                down_proj: linear(src, &format!("{p}.mlp.down_proj"), c.intermediate_size, d)?,
                heads: c.num_attention_heads,
                kv_heads: c.kv_heads(),
                rope_theta: c.rope_theta,
            });
        }
        let norm = norm(src, "model.norm.weight")?;
        let lm_head = if src.contains("lm_head.weight") {
            Some(Param::from_tensor(src.take(
                "lm_head.weight",
                [c.vocab_size, d],
                device,
            )?))
        } else {
            None
        };
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            head_pack: FrozenPack::new(),
        })
    }

    fn run(
        &self,
        ids: Tensor<2, Int>,
        mask: Option<Tensor<2>>,
        mut cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let t = ids.dims()[1];
        let bias = key_bias(mask);
        let mut x = self.embed_tokens.forward(ids);
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x, bias.clone(), cache.as_deref_mut().map(|c| (c, i)));
        }
        if let Some(c) = cache {
            c.advance(t);
        }
        let head = match &self.lm_head {
            Some(w) => w.val(),
            None => self.embed_tokens.weight.val(),
        };
        lm_head(rms(&self.norm, x), head, &self.head_pack)
    }
}

impl CausalLm for LlamaForCausalLm {
    fn logits(&self, ids: Tensor<2, Int>, mask: Option<Tensor<2>>) -> Tensor<3> {
        self.run(ids, mask, None)
    }
    fn logits_cached(&self, ids: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<3> {
        self.run(ids, None, Some(cache))
    }
    fn new_cache(&self) -> KvCache {
        KvCache::new(self.layers.len())
    }
    fn vocab_size(&self) -> usize {
        self.embed_tokens.weight.dims()[0]
    }
    fn device(&self) -> Device {
        self.embed_tokens.weight.device()
    }
}

peftlab_adapters::adapter_host!(LlamaLayer {
    "self_attn.q_proj" => q_proj,
    "self_attn.k_proj" => k_proj,
    "self_attn.v_proj" => v_proj,
    "self_attn.o_proj" => o_proj,
    "mlp.gate_proj" => gate_proj,
    "mlp.up_proj" => up_proj,
    "mlp.down_proj" => down_proj,
});

impl AdapterHost for LlamaForCausalLm {
    fn for_each_linear(&self, prefix: &str, f: &mut dyn FnMut(&str, &AdaptedLinear)) {
        for (i, l) in self.layers.iter().enumerate() {
            l.for_each_linear(&child_path(prefix, &format!("model.layers.{i}")), f);
        }
    }
    fn for_each_linear_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut AdaptedLinear)) {
        for (i, l) in self.layers.iter_mut().enumerate() {
            l.for_each_linear_mut(&child_path(prefix, &format!("model.layers.{i}")), f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: w.reshape(n_head, 2, dh/2, cols).swapaxes(1, 2): file row h·dh + 2i + j
        // holds HF row h·dh + j·dh/2 + i
        let (n_head, dh, cols) = (2, 4, 3);
        let rows = n_head * dh;
        let hf: Vec<f32> = (0..rows * cols).map(|x| x as f32).collect();
        let mut file = vec![0.0; hf.len()];
        for h in 0..n_head {
            for j in 0..2 {
                for i in 0..dh / 2 {
                    let (src, dst) = (h * dh + j * dh / 2 + i, h * dh + 2 * i + j);
                    file[dst * cols..(dst + 1) * cols]
                        .copy_from_slice(&hf[src * cols..(src + 1) * cols]);
                }
            }
        }
        assert_ne!(file, hf);
        assert_eq!(unpermute_rows(&file, rows, cols, n_head), hf);
    }

    #[test]
    fn gguf_names() {
        assert_eq!(
            gguf_name("model.layers.7.self_attn.k_proj.weight"),
            "blk.7.attn_k.weight"
        );
        assert_eq!(
            gguf_name("model.layers.0.mlp.down_proj.weight"),
            "blk.0.ffn_down.weight"
        );
        assert_eq!(gguf_name("model.embed_tokens.weight"), "token_embd.weight");
        assert_eq!(gguf_name("lm_head.weight"), "output.weight");
    }
}
