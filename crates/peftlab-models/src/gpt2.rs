//! GPT-2 (the LoRA/MTLoRA NLG backbone) from a Hugging Face directory.
//!
//! Architecture as transformers' `GPT2LMHeadModel`: token + learned position embeddings;
//! pre-norm blocks of LayerNorm → causal self-attention through the fused `attn.c_attn`
//! (`d → 3d`, query | key | value) and `attn.c_proj` → residual, LayerNorm → MLP
//! (`mlp.c_fc`, `gelu_new` = tanh approximation, `mlp.c_proj`) → residual; final `ln_f`; LM
//! head tied to `wte`.
//!
//! GPT-2's `Conv1D` stores weights `[d_in, d_out]`, which is [`AdaptedLinear`]'s layout: they
//! load untransposed. PEFT adapters made with `fan_in_fan_out=True` on `c_attn` load as they
//! are (LoRA A/B shapes do not depend on the base layout). Module paths:
//! `transformer.h.0.attn.c_attn`, `…attn.c_proj`, `…mlp.c_fc`, `…mlp.c_proj`.

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::{Embedding, LayerNorm};
use burn::tensor::{Device, Int, Tensor};
use peftlab_adapters::{AdaptedLinear, AdapterHost, child_path};
use serde::Deserialize;

use crate::ModelError;
use crate::decoder::{CausalLm, KvCache, attend, key_bias, lm_head};
use crate::safetensors_dir::Checkpoint;
use peftlab_linalg::frozen::FrozenPack;

/// The `config.json` fields GPT-2 needs (transformers' `GPT2Config` names).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Gpt2Config {
    /// Must be `"gpt2"`.
    pub model_type: String,
    /// Vocabulary size `V`.
    pub vocab_size: usize,
    /// Context length.
    pub n_positions: usize,
    /// Width `d`.
    pub n_embd: usize,
    /// Blocks.
    pub n_layer: usize,
    /// Heads.
    pub n_head: usize,
    /// MLP width (default `4d`).
    #[serde(default)]
    pub n_inner: Option<usize>,
    /// `gelu_new` (or its aliases `gelu_pytorch_tanh`).
    #[serde(default = "default_act")]
    pub activation_function: String,
    /// LayerNorm ε.
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    /// End-of-text id.
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

fn default_act() -> String {
    "gelu_new".into()
}
fn default_eps() -> f64 {
    1e-5
}

impl Gpt2Config {
    /// Read and check `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let c: Self = crate::safetensors_dir::read_json(path)?;
        let bad = |key: &str, reason: String| ModelError::config(path, key, reason);
        ModelError::check_model_type(path, &c.model_type, &["gpt2"])?;
        if !matches!(
            c.activation_function.as_str(),
            "gelu_new" | "gelu_pytorch_tanh"
        ) {
            return Err(bad(
                "activation_function",
                format!("{:?} is not supported (gelu_new)", c.activation_function),
            ));
        }
        if c.n_head == 0 || !c.n_embd.is_multiple_of(c.n_head) {
            return Err(bad("n_head", "must divide n_embd".into()));
        }
        Ok(c)
    }
}

/// `gelu_new`: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
pub fn gelu_new(x: Tensor<3>) -> Tensor<3> {
    crate::act::apply(crate::act::Activation::GeluTanh, x)
}

/// One GPT-2 block.
#[derive(Module, Debug)]
pub struct Gpt2Block {
    /// `ln_1`.
    pub ln_1: LayerNorm,
    /// `attn.c_attn`: `d → 3d` (query | key | value).
    pub c_attn: AdaptedLinear,
    /// `attn.c_proj`.
    pub attn_proj: AdaptedLinear,
    /// `ln_2`.
    pub ln_2: LayerNorm,
    /// `mlp.c_fc`.
    pub c_fc: AdaptedLinear,
    /// `mlp.c_proj`.
    pub mlp_proj: AdaptedLinear,
    /// Heads.
    pub heads: usize,
}

impl Gpt2Block {
    /// `x: [B, t, d]`, `key_bias: [B, T]`.
    fn forward(
        &self,
        x: Tensor<3>,
        key_bias: Option<Tensor<2>>,
        cache: Option<(&mut KvCache, usize)>,
    ) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let qkv = self.c_attn.forward(self.ln_1.forward(x.clone()));
        let part = |i: usize| qkv.clone().slice([0..b, 0..t, i * d..(i + 1) * d]);
        let (q, k, v) = (part(0), part(1), part(2));
        let (k, v) = match cache {
            Some((c, layer)) => c.append(layer, k, v),
            None => (k, v),
        };
        let ctx = attend(q, k, v, key_bias, self.heads, self.heads);
        let x = x + self.attn_proj.forward(ctx);
        let h = self.c_fc.forward(self.ln_2.forward(x.clone()));
        x.clone() + self.mlp_proj.forward(gelu_new(h))
    }
}

/// transformers' `GPT2LMHeadModel` (tied head).
#[derive(Module, Debug)]
pub struct Gpt2LmHeadModel {
    /// `transformer.wte`: `[V, d]`, also the LM head.
    pub wte: Embedding,
    /// `transformer.wpe`: `[n_positions, d]`.
    pub wpe: Embedding,
    /// `transformer.h.*`.
    pub h: Vec<Gpt2Block>,
    /// `transformer.ln_f`.
    pub ln_f: LayerNorm,
    /// The frozen (tied) LM head packed for the CPU fast path (`peftlab_linalg::frozen`).
    #[module(skip)]
    pub head_pack: FrozenPack,
}

impl Gpt2LmHeadModel {
    /// Load from a Hugging Face directory: `config.json` and `model.safetensors` of a
    /// `GPT2LMHeadModel` (`transformer.`-prefixed names) or a `GPT2Model`. The attention-mask
    /// buffers of old checkpoints (`attn.bias`, `attn.masked_bias`) are ignored; `lm_head.weight`
    /// must equal the tied `wte` if present.
    pub fn from_dir(dir: &Path, device: &Device) -> Result<(Self, Gpt2Config), ModelError> {
        let c = Gpt2Config::from_file(&dir.join("config.json"))?;
        let mut ck = Checkpoint::open_dir(dir)?;
        let pre = if ck.contains("transformer.wte.weight") {
            "transformer."
        } else {
            ""
        };
        let d = c.n_embd;
        let inner = c.n_inner.unwrap_or(4 * d);
        let emb = |ck: &mut Checkpoint, name: &str, n: usize| {
            ck.embedding(&format!("{pre}{name}"), n, d, device)
        };
        let wte = emb(&mut ck, "wte", c.vocab_size)?;
        let wpe = emb(&mut ck, "wpe", c.n_positions)?;
        let eps = c.layer_norm_epsilon;
        let norm = |ck: &mut Checkpoint, name: &str| ck.layer_norm(name, d, eps, device);
        let conv1d = |ck: &mut Checkpoint,
                      name: &str,
                      d_in: usize,
                      d_out: usize|
         -> Result<AdaptedLinear, ModelError> {
            let mut l = AdaptedLinear::new(d_in, d_out, true, device);
            l.weight =
                Param::from_tensor(ck.take(&format!("{name}.weight"), [d_in, d_out], device)?);
            l.bias = Some(Param::from_tensor(ck.take(
                &format!("{name}.bias"),
                [d_out],
                device,
            )?));
            Ok(l)
        };
        let mut h = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let p = format!("{pre}h.{i}");
            h.push(Gpt2Block {
                ln_1: norm(&mut ck, &format!("{p}.ln_1"))?,
                c_attn: conv1d(&mut ck, &format!("{p}.attn.c_attn"), d, 3 * d)?,
                attn_proj: conv1d(&mut ck, &format!("{p}.attn.c_proj"), d, d)?,
                ln_2: norm(&mut ck, &format!("{p}.ln_2"))?,
                c_fc: conv1d(&mut ck, &format!("{p}.mlp.c_fc"), d, inner)?,
                mlp_proj: conv1d(&mut ck, &format!("{p}.mlp.c_proj"), inner, d)?,
                heads: c.n_head,
            });
        }
        let ln_f = norm(&mut ck, &format!("{pre}ln_f"))?;
        if ck.contains("lm_head.weight") {
            let head = ck.take("lm_head.weight", [c.vocab_size, d], device)?;
            let diff = (head - wte.weight.val()).abs().max().into_scalar::<f32>();
            if diff > 0.0 {
                return Err(ModelError::Tensor {
                    path: ck.path().to_path_buf(),
                    name: "lm_head.weight".into(),
                    reason: format!(
                        "differs from the tied wte (max |Δ| {diff}): untied heads are not supported"
                    ),
                });
            }
        }
        ck.finish(|n| n.ends_with(".attn.bias") || n.ends_with(".attn.masked_bias"))?;
        let head_pack = FrozenPack::new();
        Ok((
            Self {
                wte,
                wpe,
                h,
                ln_f,
                head_pack,
            },
            c,
        ))
    }

    fn run(
        &self,
        ids: Tensor<2, Int>,
        mask: Option<Tensor<2>>,
        mut cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let [b, t] = ids.dims();
        let device = ids.device();
        let past = cache.as_ref().map_or(0, |c| c.len());
        let pos = Tensor::<1, Int>::arange(past as i64..(past + t) as i64, &device)
            .reshape([1, t])
            .expand([b, t]);
        let bias = key_bias(mask);
        let mut x = self.wte.forward(ids) + self.wpe.forward(pos);
        for (i, block) in self.h.iter().enumerate() {
            x = block.forward(x, bias.clone(), cache.as_deref_mut().map(|c| (c, i)));
        }
        if let Some(c) = cache {
            c.advance(t);
        }
        lm_head(self.ln_f.forward(x), self.wte.weight.val(), &self.head_pack)
    }
}

impl CausalLm for Gpt2LmHeadModel {
    fn logits(&self, ids: Tensor<2, Int>, mask: Option<Tensor<2>>) -> Tensor<3> {
        self.run(ids, mask, None)
    }
    fn logits_cached(&self, ids: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<3> {
        self.run(ids, None, Some(cache))
    }
    fn new_cache(&self) -> KvCache {
        KvCache::new(self.h.len())
    }
    fn vocab_size(&self) -> usize {
        self.wte.weight.dims()[0]
    }
    fn device(&self) -> Device {
        self.wte.weight.device()
    }
    fn max_positions(&self) -> Option<usize> {
        Some(self.wpe.weight.dims()[0])
    }
}

peftlab_adapters::adapter_host!(Gpt2Block {
    "attn.c_attn" => c_attn,
    "attn.c_proj" => attn_proj,
    "mlp.c_fc" => c_fc,
    "mlp.c_proj" => mlp_proj,
});

impl AdapterHost for Gpt2LmHeadModel {
    fn for_each_linear(&self, prefix: &str, f: &mut dyn FnMut(&str, &AdaptedLinear)) {
        for (i, l) in self.h.iter().enumerate() {
            l.for_each_linear(&child_path(prefix, &format!("transformer.h.{i}")), f);
        }
    }
    fn for_each_linear_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut AdaptedLinear)) {
        for (i, l) in self.h.iter_mut().enumerate() {
            l.for_each_linear_mut(&child_path(prefix, &format!("transformer.h.{i}")), f);
        }
    }
}
