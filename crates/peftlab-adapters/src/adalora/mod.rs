//! # AdaLoRA — adaptive budget allocation (baseline)
//!
//! Paper: Zhang et al., *Adaptive Budget Allocation for Parameter-Efficient Fine-Tuning*,
//! arXiv 2303.10512 (ICLR 2023); behaviour as in huggingface/peft `tuners/adalora`
//! (papers.md §1.1, confirmed).
//!
//! Update: `ΔW = P · diag(λ) · Q · s / (r + 1e-5)` with `P = lora_B: [d_out, r]`,
//! `λ = lora_E: [r, 1]`, `Q = lora_A: [r, d_in]`, `s = α` (or `r` when `α ≤ 0`), `r` the initial
//! rank. Init: `λ = 0`, `P, Q ~ N(0, 0.02²)`. Parameters per matrix: `r (d_in + d_out) + r`.
//!
//! Importance (per entry): `I = |w · ∂L/∂w|`, `Ī ← β₁ Ī + (1−β₁) I`,
//! `Ū ← β₂ Ū + (1−β₂) |I − Ī|`, `s(w) = Ī · Ū`; triplet score
//! `S_i = s(λ_i) + mean_j s(P_ji) + mean_j s(Q_ij)`; `w` is the weight after the optimizer step
//! and `∂L/∂w` the gradient that step applied (accumulated, clipped), as PEFT's loop calls
//! `update_and_allocate` after `optimizer.step()` ([`AdaLoraAllocator::update`] takes either).
//! Budget (total rank): `b(t) = b₀` for `t < t_i`;
//! `b_T + (b₀ − b_T)(1 − (t − t_i)/(T − t_i − t_f))³` for `t_i ≤ t < T − t_f`; `b_T` after
//! (peft's form). Every `ΔT` steps the `b₀ − b(t)` lowest-scoring triplets get `λ = 0`; masked
//! triplets keep training and can come back. Regularizer:
//! `γ · Σ_k (‖P_kᵀP_k − I‖ + ‖Q_kQ_kᵀ − I‖) / (2M)` over the `M` adapted matrices (PEFT's
//! normalization: one term per `lora_A` and per `lora_B`).
//!
//! Reproduce: baseline rows of `cargo xtask reproduce triadaptlora`.

use crate::lowrank::linear_rows;
use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::Dropout;
use burn::tensor::{DType, Device, Tensor};
use peftlab_linalg::init::{Fill, SeededRng};
use peftlab_linalg::regularize::{OrthNorm, orthogonality_penalty};

use crate::linear::Adapter;
use crate::target::ModuleSelector;
use crate::{AdapterError, AdapterHost};

/// AdaLoRA configuration (PEFT's `AdaLoraConfig` names).
#[derive(Config, Debug)]
pub struct AdaLoraConfig {
    /// Initial rank per matrix.
    #[config(default = 12)]
    pub init_r: usize,
    /// Target average rank per matrix.
    #[config(default = 8)]
    pub target_r: usize,
    /// `α` (`s = α`, or `r` when `α ≤ 0`).
    #[config(default = 32.0)]
    pub lora_alpha: f64,
    /// Dropout on the adapter input.
    #[config(default = 0.0)]
    pub lora_dropout: f64,
    /// Warm-up steps `t_i` before masking starts.
    #[config(default = 0)]
    pub tinit: usize,
    /// Final steps `t_f` at the target budget.
    #[config(default = 0)]
    pub tfinal: usize,
    /// Steps between maskings `ΔT`.
    #[config(default = 1)]
    pub delta_t: usize,
    /// EMA factor of the sensitivity.
    #[config(default = 0.85)]
    pub beta1: f64,
    /// EMA factor of the uncertainty.
    #[config(default = 0.85)]
    pub beta2: f64,
    /// Orthogonality regularizer weight γ.
    #[config(default = 0.5)]
    pub orth_reg_weight: f64,
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

/// One AdaLoRA adapter.
#[derive(Module, Debug)]
pub struct AdaLoraAdapter {
    /// `Q: [r, d_in]`.
    pub lora_a: Param<Tensor<2>>,
    /// `λ: [r, 1]`.
    pub lora_e: Param<Tensor<2>>,
    /// `P: [d_out, r]`.
    pub lora_b: Param<Tensor<2>>,
    /// Dropout on the adapter input.
    pub dropout: Dropout,
    /// `s / (r + 1e-5)`.
    pub scale: f64,
}

impl AdaLoraAdapter {
    /// Build for a `d_in → d_out` layer: `Q`, then `P` drawn from `rng`; `λ = 0`.
    pub fn new(
        c: &AdaLoraConfig,
        d_in: usize,
        d_out: usize,
        device: &Device,
        dtype: DType,
        rng: &mut SeededRng,
    ) -> Result<Self, AdapterError> {
        if c.init_r == 0 || c.target_r > c.init_r {
            return Err(AdapterError::Config {
                key: "init_r / target_r".into(),
                reason: format!(
                    "need 0 < target_r <= init_r, got {} / {}",
                    c.target_r, c.init_r
                ),
            });
        }
        let r = c.init_r;
        let n = Fill::Normal { std: 0.02 };
        let a = n.tensor(r, d_in, rng, device, dtype);
        let b = n.tensor(d_out, r, rng, device, dtype);
        let e = Fill::Zeros.tensor(r, 1, rng, device, dtype);
        let s = if c.lora_alpha > 0.0 {
            c.lora_alpha
        } else {
            r as f64
        };
        Ok(Self {
            lora_a: Param::from_tensor(a),
            lora_e: Param::from_tensor(e),
            lora_b: Param::from_tensor(b),
            dropout: crate::lowrank::dropout(c.lora_dropout)?,
            scale: s / (r as f64 + 1e-5),
        })
    }

    /// Factored update `s/(r+ε) · ((x (Q ⊙ λ)ᵀ) Pᵀ)` for `x: [..., d_in]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let qe = self.lora_a.val() * self.lora_e.val();
        let u = linear_rows(peftlab_linalg::dropout::forward(&self.dropout, x), qe) * self.scale;
        linear_rows(u, self.lora_b.val())
    }

    /// Dense update in burn layout `[d_in, d_out]`.
    pub fn delta_weight(&self) -> Tensor<2> {
        let qe = self.lora_a.val() * self.lora_e.val();
        self.lora_b.val().matmul(qe).transpose() * self.scale
    }

    /// Trainable scalars: `r (d_in + d_out) + r`.
    pub fn num_trainable(&self) -> usize {
        let [r, d_in] = self.lora_a.dims();
        r * (d_in + self.lora_b.dims()[0]) + r
    }
}

/// The cubic budget schedule `b(t)` of peft's AdaLoRA.
pub fn budget(
    b0: usize,
    b_target: usize,
    step: usize,
    total: usize,
    tinit: usize,
    tfinal: usize,
) -> usize {
    if step < tinit {
        return b0;
    }
    let end = total.saturating_sub(tfinal);
    if step >= end || end <= tinit {
        return b_target;
    }
    let frac = 1.0 - (step - tinit) as f64 / (end - tinit) as f64;
    let b = b_target as f64 + (b0 - b_target) as f64 * frac.powi(3);
    b.round() as usize
}

pub use crate::sensitivity::EmaState;
use crate::sensitivity::{GradSource, SensitivityEma};

/// AdaLoRA's rank allocator: [`AdaLoraAllocator::update`] after every backward (needs the
/// gradients), [`AdaLoraAllocator::mask`] after every optimizer step.
#[derive(Debug, Clone)]
pub struct AdaLoraAllocator {
    config: AdaLoraConfig,
    total_steps: usize,
    b0: usize,
    b_target: usize,
    ema: SensitivityEma,
}

/// What one masking did.
#[derive(Debug, Clone, PartialEq)]
pub struct Masking {
    /// Optimizer step.
    pub step: usize,
    /// Budget `b(t)`.
    pub budget: usize,
    /// Triplets kept per module path.
    pub ranks: Vec<(String, usize)>,
}

impl AdaLoraAllocator {
    /// Set up for `model` (AdaLoRA attached) and `total_steps` steps. `b₀ = init_r · n`,
    /// `b_T = target_r · n`.
    pub fn new<M: AdapterHost>(
        model: &M,
        config: &AdaLoraConfig,
        total_steps: usize,
    ) -> Result<Self, AdapterError> {
        let mut n = 0;
        model.for_each_linear("", &mut |_, l| {
            n += usize::from(matches!(l.adapter, Some(Adapter::AdaLora(_))))
        });
        if n == 0 {
            return Err(AdapterError::Config {
                key: "model".into(),
                reason: "has no AdaLoRA adapter".into(),
            });
        }
        if total_steps <= config.tinit + config.tfinal {
            return Err(AdapterError::Config {
                key: "total_step".into(),
                reason: format!(
                    "must exceed tinit + tfinal = {}",
                    config.tinit + config.tfinal
                ),
            });
        }
        Ok(Self {
            config: config.clone(),
            total_steps,
            b0: config.init_r * n,
            b_target: config.target_r * n,
            ema: SensitivityEma::new(config.beta1, config.beta2),
        })
    }

    /// The sensitivity and uncertainty EMAs by key (`path.A|E|B`): `(shape, sens, unc)`, for a
    /// checkpoint.
    pub fn ema_state(&self) -> EmaState {
        self.ema.state()
    }

    /// Restore [`AdaLoraAllocator::ema_state`] on `device`.
    pub fn set_ema_state(&mut self, state: &EmaState, device: &Device) {
        self.ema.set_state(state, device);
    }

    /// `b(t)` for this run.
    pub fn budget_at(&self, step: usize) -> usize {
        let c = &self.config;
        budget(
            self.b0,
            self.b_target,
            step,
            self.total_steps,
            c.tinit,
            c.tfinal,
        )
    }

    /// Update the sensitivity/uncertainty EMAs from `grads` and the parameters' current values.
    /// PEFT's loop calls `update_and_allocate` after `optimizer.step()`, with the step's
    /// accumulated, clipped `.grad` and the updated weights; `peftlab-train` does the same.
    pub fn update<M: AdapterHost, G: GradSource + ?Sized>(
        &mut self,
        model: &M,
        grads: &G,
    ) -> Result<(), AdapterError> {
        model.for_each_linear("", &mut |p, l| {
            let Some(Adapter::AdaLora(a)) = &l.adapter else {
                return;
            };
            for (name, param) in [("A", &a.lora_a), ("E", &a.lora_e), ("B", &a.lora_b)] {
                self.ema.observe(format!("{p}.{name}"), param, grads);
            }
        });
        Ok(())
    }

    /// Triplet scores `S_i` of one module (empty before the first [`Self::update`]).
    pub fn triplet_scores(&self, path: &str, r: usize, d_in: usize, d_out: usize) -> Vec<f64> {
        let s = |name: &str| {
            self.ema
                .score(&format!("{path}.{name}"))?
                .try_to_vec_as::<f64>()
                .ok()
        };
        let (Some(sa), Some(se), Some(sb)) = (s("A"), s("E"), s("B")) else {
            return Vec::new();
        };
        (0..r)
            .map(|i| {
                let row_a: f64 = sa[i * d_in..(i + 1) * d_in].iter().sum::<f64>() / d_in as f64;
                let col_b: f64 = (0..d_out).map(|j| sb[j * r + i]).sum::<f64>() / d_out as f64;
                se[i] + row_a + col_b
            })
            .collect()
    }

    /// Mask (set `λ = 0`) the `b₀ − b(t)` lowest-scoring triplets across all modules, every `ΔT`
    /// steps after `t_i` (and at the final budget). Returns the kept rank per module.
    pub fn mask<M: AdapterHost>(
        &mut self,
        model: &mut M,
        step: usize,
    ) -> Result<Option<Masking>, AdapterError> {
        let c = &self.config;
        if step < c.tinit
            || (step < self.total_steps - c.tfinal
                && !(step - c.tinit).is_multiple_of(c.delta_t.max(1)))
        {
            return Ok(None);
        }
        let b = self.budget_at(step);
        let mut all = Vec::new();
        model.for_each_linear("", &mut |p, l| {
            if let Some(Adapter::AdaLora(a)) = &l.adapter {
                let [r, d_in] = a.lora_a.dims();
                let d_out = a.lora_b.dims()[0];
                for (i, s) in self
                    .triplet_scores(p, r, d_in, d_out)
                    .into_iter()
                    .enumerate()
                {
                    all.push((s, p.to_string(), i));
                }
            }
        });
        if all.is_empty() {
            return Ok(None);
        }
        all.sort_by(|x, y| x.0.total_cmp(&y.0));
        let n_mask = self.b0.saturating_sub(b).min(all.len());
        let masked: std::collections::HashSet<(String, usize)> = all[..n_mask]
            .iter()
            .map(|(_, p, i)| (p.clone(), *i))
            .collect();
        let mut ranks = Vec::new();
        model.for_each_linear_mut("", &mut |p, l| {
            let Some(Adapter::AdaLora(a)) = &mut l.adapter else {
                return;
            };
            let r = a.lora_e.dims()[0];
            let keep: Vec<f64> = (0..r)
                .map(|i| f64::from(u8::from(!masked.contains(&(p.to_string(), i)))))
                .collect();
            let e = a.lora_e.val();
            let mask = Tensor::<2>::from_data(
                burn::tensor::TensorData::new(keep.clone(), [r, 1]),
                (&e.device(), e.dtype()),
            );
            let v = (e * mask).detach();
            a.lora_e = Param::initialized(a.lora_e.id, v).set_require_grad(true);
            ranks.push((p.to_string(), keep.iter().filter(|k| **k > 0.0).count()));
        });
        Ok(Some(Masking {
            step,
            budget: b,
            ranks,
        }))
    }

    /// `γ · Σ_k (‖Q_k Q_kᵀ − I‖_F + ‖P_kᵀ P_k − I‖_F) / (2M)` over the `M` AdaLoRA matrices, to
    /// add to the loss: PEFT's normalization, where each `lora_A` and each `lora_B` is one term.
    pub fn regularizer<M: AdapterHost>(
        &self,
        model: &M,
    ) -> Result<Option<Tensor<1>>, AdapterError> {
        let sum = crate::host::sum_over_adapters(model, |a| match a {
            Adapter::AdaLora(a) => Some(
                orthogonality_penalty(a.lora_a.val(), a.lora_b.val(), OrthNorm::Frobenius)
                    .map_err(AdapterError::from),
            ),
            _ => None,
        })?;
        Ok(sum.map(|(t, n)| t * (self.config.orth_reg_weight / (2.0 * n as f64))))
    }
}
