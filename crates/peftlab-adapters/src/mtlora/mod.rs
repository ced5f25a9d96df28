//! # MTLoRA — Matrix-Transformation based LoRA
//!
//! Paper: Liang, Wang, Li, Zeng, *MTLoRA: A Low-Rank Adaptation Approach for Efficient
//! Fine-Tuning of Large Language Models*, arXiv 2403.07440 (Neural Networks 199:108642, 2026).
//!
//! Update: `h = W0 x + s · B · T · A · dropout(x)` with a trainable `r × r` transformation `T`:
//! SHIM `T = C`, ICFM `T = C Cᵀ`, CTCM `T = C D`, DTSM `T = C + D` (identity = LoRA).
//! Init (default, the authors' NLU/NLG code): `A`, `C`, `D` kaiming-uniform (`a = √5`), `B = 0`
//! (`ΔW = 0` at attach time, `T` random). Options: `t_init = identity` with `a_init = normal 0.02`
//! (the authors' README tip), `t_init = zero` (multimodal code; ICFM/CTCM cannot train from it).
//! Scale: `s = α / r`. Parameters per adapted matrix: `r (d_in + d_out) + r²` (SHIM, ICFM) or
//! `+ 2r²` (CTCM, DTSM) (papers.md §2.4).
//!
//! Confirmed from the authors' code (`transformation_matrix/*/xtuning_layers.py`): the four
//! structures, the forward, the inits, the target modules. Not known: which init produced the
//! published numbers (papers.md §7.4). The fused-QKV shared `3r × 3r` T of the released GPT-2
//! code is the option `fused_qkv_modules`; otherwise every adapted projection has its own `T`.
//!
//! Reproduce: `cargo xtask reproduce mtlora`.

use burn::config::Config;
use peftlab_linalg::transform::{TransformInit, TransformKind};

use crate::lowrank::{AInit, LowRankSpec};
use crate::target::ModuleSelector;

/// MTLoRA configuration.
#[derive(Config, Debug)]
pub struct MtLoraConfig {
    /// Rank `r`.
    pub r: usize,
    /// Structure of `T`.
    pub structure: TransformKind,
    /// `α` (scale numerator), `s = α / r`.
    #[config(default = 16.0)]
    pub lora_alpha: f64,
    /// Dropout on the adapter input.
    #[config(default = 0.0)]
    pub lora_dropout: f64,
    /// Initialization of `T`'s factors.
    #[config(default = "TransformInit::KaimingUniform")]
    pub t_init: TransformInit,
    /// Initialization of `A`.
    #[config(default = "AInit::KaimingUniform")]
    pub a_init: AInit,
    /// Which linear layers to adapt.
    pub target_modules: ModuleSelector,
    /// Layers to skip even if targeted.
    #[config(default = "None")]
    pub exclude_modules: Option<ModuleSelector>,
    /// Targeted layers that are fused q/k/v projections (GPT-2 `c_attn`, names or dotted
    /// suffixes): they get `A: [3r, d_in]`, one shared `3r × 3r` T and a block-diagonal `B`, as
    /// the released GPT-2 code. Other layers get their own `r × r` T.
    #[config(default = "None")]
    pub fused_qkv_modules: Option<Vec<String>>,
    /// Linear layers trained in full and saved with the adapter (e.g. a classification head),
    /// PEFT's `modules_to_save`: names or dotted suffixes.
    #[config(default = "None")]
    pub modules_to_save: Option<Vec<String>>,
}

impl MtLoraConfig {
    /// The low-rank adapter this config builds for the layer at `path`.
    pub fn spec_for(&self, path: &str) -> LowRankSpec {
        let fused = self
            .fused_qkv_modules
            .iter()
            .flatten()
            .any(|m| crate::target::suffix_match(path, m));
        LowRankSpec {
            groups: if fused { 3 } else { 1 },
            ..self.spec()
        }
    }

    /// The low-rank adapter this config builds (unfused).
    pub fn spec(&self) -> LowRankSpec {
        LowRankSpec {
            rank: self.r,
            scale: self.lora_alpha / self.r as f64,
            dropout: self.lora_dropout,
            kind: self.structure,
            t_init: self.t_init,
            a_init: self.a_init,
            groups: 1,
        }
    }
}
