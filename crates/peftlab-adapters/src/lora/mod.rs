//! # LoRA — Low-Rank Adaptation (baseline)
//!
//! Paper: Hu et al., *LoRA: Low-Rank Adaptation of Large Language Models*, arXiv 2106.09685.
//!
//! Update: `h = W0 x + s · B A dropout(x)`, `A ∈ R^{r×d_in}`, `B ∈ R^{d_out×r}`.
//! Init (loralib / PEFT): `A ~ kaiming_uniform(a = √5)` = `U(−1/√d_in, 1/√d_in)`, `B = 0`, so the
//! model is unchanged at attach time. Scale: `s = α / r`, or `α / √r` with `use_rslora`
//! (rsLoRA). Parameters per adapted matrix: `r (d_in + d_out)`.
//! Confirmed from microsoft/LoRA and huggingface/peft (papers.md §1); nothing inferred.
//!
//! Reproduce (baseline row of every table): `cargo xtask reproduce mtlora`.

use burn::config::Config;
use peftlab_linalg::transform::{TransformInit, TransformKind};

use crate::lowrank::{AInit, LowRankSpec};
use crate::target::ModuleSelector;

/// LoRA configuration (PEFT's `LoraConfig` names).
#[derive(Config, Debug)]
pub struct LoraConfig {
    /// Rank `r`.
    pub r: usize,
    /// `α` (scale numerator).
    #[config(default = 8.0)]
    pub lora_alpha: f64,
    /// Dropout on the adapter input.
    #[config(default = 0.0)]
    pub lora_dropout: f64,
    /// `s = α/√r` instead of `α/r`.
    #[config(default = false)]
    pub use_rslora: bool,
    /// Which linear layers to adapt.
    pub target_modules: ModuleSelector,
    /// Layers to skip even if targeted.
    #[config(default = "None")]
    pub exclude_modules: Option<ModuleSelector>,
    /// Per-module ranks, PEFT's `rank_pattern`: a module whose path full-matches
    /// `(.*\.)?(<key>)` gets that rank (first matching key in key order).
    #[config(default = "None")]
    pub rank_pattern: Option<std::collections::BTreeMap<String, usize>>,
    /// Per-module `α`, PEFT's `alpha_pattern`, matched like `rank_pattern`.
    #[config(default = "None")]
    pub alpha_pattern: Option<std::collections::BTreeMap<String, f64>>,
    /// Linear layers trained in full and saved with the adapter (e.g. a classification head),
    /// PEFT's `modules_to_save`: names or dotted suffixes.
    #[config(default = "None")]
    pub modules_to_save: Option<Vec<String>>,
}

impl LoraConfig {
    /// The scale `s`.
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }

    /// The low-rank adapter for the layer at `path`, honouring `rank_pattern` / `alpha_pattern`.
    pub fn spec_for(&self, path: &str) -> LowRankSpec {
        let r = pattern_value(self.rank_pattern.as_ref(), path).unwrap_or(self.r);
        let alpha = pattern_value(self.alpha_pattern.as_ref(), path).unwrap_or(self.lora_alpha);
        let c = LoraConfig {
            r,
            lora_alpha: alpha,
            ..self.clone()
        };
        c.spec()
    }

    /// The low-rank adapter this config builds (no patterns).
    pub fn spec(&self) -> LowRankSpec {
        LowRankSpec {
            rank: self.r,
            scale: self.scale(),
            dropout: self.lora_dropout,
            kind: TransformKind::Identity,
            t_init: TransformInit::Identity,
            a_init: AInit::KaimingUniform,
            groups: 1,
        }
    }
}

/// The value of the first key of `pattern` whose regex `(.*\.)?(key)` matches all of `path`.
fn pattern_value<V: Copy>(
    pattern: Option<&std::collections::BTreeMap<String, V>>,
    path: &str,
) -> Option<V> {
    pattern?.iter().find_map(|(k, v)| {
        regex::Regex::new(&format!("^(?:.*\\.)?(?:{k})$"))
            .ok()
            .filter(|re| re.is_match(path))
            .map(|_| *v)
    })
}
