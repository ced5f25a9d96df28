//! # LoRATRF — LoRA with a task-aware filter (*inferred*)
//!
//! Paper: Li, Ding, Luan, Di, *Low-Rank Adaptation with Task-Relevant Feature Enhancement for
//! Fine-tuning Language Models*, arXiv 2412.09827 (AAAI-25 workshop CoLoRAI). Only the abstract
//! could be read (papers.md §3): a **task-aware filter** selectively extracts task-relevant
//! information from **hidden representations**, on top of LoRA, with 33.71 % fewer parameters
//! than the compared low-rank methods. No code, equations or tables are public.
//!
//! Implemented form — papers.md §3.2 (a), **inferred**, the form a third-party re-implementation
//! uses (an interpretation, not the authors'):
//!
//! ```text
//! h0 = W0 x + b0
//! g  = clamp(cos(h0, t), 0, 1)                       t ∈ R^{d_out}: learned task vector
//! h  = h0 + (α/r)·B A x + β · D C (g · h0)           C: d_out → r_f,  D: r_f → d_out
//! ```
//!
//! Init: `A` kaiming-uniform, `B = 0` (LoRA), `t ~ N(0, 0.02²)`, `C` kaiming-uniform
//! (`fan_in = d_out`), `D = 0`, so the layer equals its base at attach time. `β` is a fixed
//! hyperparameter (default 1). Parameters per matrix: `r (d_in + d_out) + d_out + 2·r_f·d_out`.
//! **Not mergeable**: `g` depends on the input, so `merge` returns an error. The ReFT-style
//! form (b) of §3.2 is not implemented.
//!
//! Reproduce: `cargo xtask reproduce loratrf`.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{DType, Device, Tensor};
use peftlab_linalg::init::{Fill, SeededRng};
use peftlab_linalg::transform::{TransformInit, TransformKind};

use crate::AdapterError;
use crate::lowrank::{AInit, LowRankAdapter, LowRankSpec};
use crate::target::ModuleSelector;

/// LoRATRF configuration.
#[derive(Config, Debug)]
pub struct LoraTrfConfig {
    /// LoRA rank `r`.
    pub r: usize,
    /// LoRA `α` (`s = α/r`).
    #[config(default = 8.0)]
    pub lora_alpha: f64,
    /// Dropout on the LoRA input.
    #[config(default = 0.0)]
    pub lora_dropout: f64,
    /// Rank `r_f` of the filter's projection (`None` = `r`).
    #[config(default = "None")]
    pub filter_rank: Option<usize>,
    /// Weight `β` of the filtered branch.
    #[config(default = 1.0)]
    pub beta: f64,
    /// Which linear layers to adapt.
    pub target_modules: ModuleSelector,
    /// Layers to skip even if targeted.
    #[config(default = "None")]
    pub exclude_modules: Option<ModuleSelector>,
    /// Linear layers trained in full and saved with the adapter (e.g. a classification head),
    /// PEFT's `modules_to_save`: names or dotted suffixes.
    #[config(default = "None")]
    pub modules_to_save: Option<Vec<String>>,
}

/// LoRA branch plus task-aware filter on one linear layer.
#[derive(Module, Debug)]
pub struct LoraTrfAdapter {
    /// The LoRA branch (`T = I`).
    pub lora: LowRankAdapter,
    /// Task vector `t: [1, d_out]`.
    pub task: Param<Tensor<2>>,
    /// Filter down-projection `C: [r_f, d_out]`.
    pub filter_c: Param<Tensor<2>>,
    /// Filter up-projection `D: [d_out, r_f]` (zero at init).
    pub filter_d: Param<Tensor<2>>,
    /// `β`.
    pub beta: f64,
}

impl LoraTrfAdapter {
    /// Build for a `d_in → d_out` layer, drawing `A`, then `t`, then `C` from `rng`.
    pub fn new(
        config: &LoraTrfConfig,
        d_in: usize,
        d_out: usize,
        device: &Device,
        dtype: DType,
        rng: &mut SeededRng,
    ) -> Result<Self, AdapterError> {
        let spec = LowRankSpec {
            rank: config.r,
            scale: config.lora_alpha / config.r.max(1) as f64,
            dropout: config.lora_dropout,
            kind: TransformKind::Identity,
            t_init: TransformInit::Identity,
            a_init: AInit::KaimingUniform,
            groups: 1,
        };
        let lora = LowRankAdapter::new(&spec, d_in, d_out, device, dtype, rng)?;
        let r_f = config.filter_rank.unwrap_or(config.r);
        if r_f == 0 {
            return Err(AdapterError::Config {
                key: "filter_rank".into(),
                reason: "must be > 0".into(),
            });
        }
        let p = |t: Tensor<2>| Param::from_tensor(t);
        let task = Fill::Normal { std: 0.02 }.tensor(1, d_out, rng, device, dtype);
        let c = Fill::kaiming_uniform(d_out, 5f64.sqrt())?.tensor(r_f, d_out, rng, device, dtype);
        let d = Fill::Zeros.tensor(d_out, r_f, rng, device, dtype);
        Ok(Self {
            lora,
            task: p(task),
            filter_c: p(c),
            filter_d: p(d),
            beta: config.beta,
        })
    }

    /// The update for input `x: [..., d_in]` given the base output `h0: [..., d_out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>, h0: Tensor<D>) -> Tensor<D> {
        let t = self.task.val().unsqueeze::<D>();
        let dot = (h0.clone() * t.clone()).sum_dim(D - 1);
        let h_norm = (h0.clone().square().sum_dim(D - 1) + 1e-12).sqrt();
        let t_norm = (t.square().sum_dim(D - 1) + 1e-12).sqrt();
        let gate = (dot / (h_norm * t_norm)).clamp(0.0, 1.0);
        let c_t = self.filter_c.val().transpose().unsqueeze::<D>();
        let d_t = self.filter_d.val().transpose().unsqueeze::<D>();
        let filtered = (h0 * gate).matmul(c_t).matmul(d_t) * self.beta;
        self.lora.forward(x) + filtered
    }

    /// Trainable scalars: `r (d_in + d_out) + d_out + 2·r_f·d_out`.
    pub fn num_trainable(&self) -> usize {
        let [r_f, d_out] = self.filter_c.dims();
        self.lora.num_trainable() + d_out + 2 * r_f * d_out
    }
}
