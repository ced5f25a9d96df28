//! # TriAdaptLoRA — triangular transformation strips with adaptive rank growth
//!
//! Paper: Liang, Wang, Zeng, *TriAdaptLoRA: Brain-Inspired Triangular Adaptive Low-Rank
//! Adaptation for Parameter-Efficient Fine-Tuning*, arXiv 2501.08008. Forward, storage, score and
//! allocator are confirmed from the authors' code (`DiverValue-Bench/peft/src/peft/tuners/
//! triadaptlora.py`, papers.md §4); the paper's scaling, init and hyperparameters are not known.
//!
//! Update: `ΔW = s · B_cat · C · A_cat` with `A_cat = [A_1; …; A_m]: [R, d_in]`,
//! `B_cat = [B_1, …, B_m]: [d_out, R]` and `C = L + U: [R, R]` held as triangular strips
//! (`peftlab_linalg::strips`). Growing by `k` appends `A_{m+1}: [k, d_in]`, `B_{m+1}: [d_out, k]`
//! and one row and one column strip; nothing existing is touched.
//!
//! Scale: `s = α / (R + 1e-5)` (default, the initial commit / IncreLoRA) or the constant `2`
//! (the updated HEAD) — [`TriScaling`]. With `α/R`, growth would shrink the existing update, so
//! the existing `B` blocks are multiplied by `s_old / s_new` at growth: the layer's output is
//! unchanged at the moment of growth (tested), at the cost of touching `B`'s values.
//!
//! Init (*inferred* default, papers.md §4.2): first block `A ~ N(0, 0.02²)`, `B = 0`,
//! `C_11 = 2I`; new blocks `A ~ N(0, 0.02²)`, `B = 0`, strips identity on their new diagonal
//! block ([`StripInit::DiagonalIdentity`]). With these, `ΔW` is unchanged by growth. Other strip
//! inits reproduce the author variants (`LeadingIdentity` = HEAD, `Normal{0.02}` = `_single`)
//! and do change the output at growth.
//!
//! Importance (§4.3): `n_k = ‖C_k‖_F / m_k`, score `S_k(t) = n_k(t) − n_k(t_prev)`; no gradients.
//! Ablation ([`TriImportance::Sensitivity`], *inferred*: papers.md §6 names the ablation, the
//! authors' code has no such mode): the IncreLoRA/AdaLoRA smoothed sensitivity
//! ([`crate::sensitivity`]) of every entry of `A_cat`, `B_cat` and the strips, `S_k` = the mean
//! of `Ī · Ū` over the matrix's entries; the loop feeds the gradients of each step
//! ([`TriAdaptAllocator::update`]).
//! Allocation (§4.4): see [`TriAdaptAllocator`].
//!
//! Parameters per matrix at rank `R`: `R (d_in + d_out) + 2 Σ_i k_i S_i` (§4.6).
//!
//! Ablation ([`TriTransform::Full`], papers.md §6 "triangular vs full T"): `C` held as one dense
//! `R×R` parameter, with the same values at init (`2I`) and at growth (the old `C` in the top-left
//! corner, `2I` on the new diagonal block, zeros elsewhere) — so the forward pass is the same
//! function, but each entry is one parameter instead of the diagonal blocks being two, a grown
//! `C` is a new, larger tensor (its AdamW moments restart; the strips' existing entries keep
//! theirs), and it has `R²` parameters instead of `R² + Σ k_i²`.
//!
//! Reproduce: `cargo xtask reproduce triadaptlora`.

use crate::lowrank::linear_rows;
use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::Dropout;
use burn::tensor::{DType, Device, Tensor};
use peftlab_linalg::init::{Fill, SeededRng};
use peftlab_linalg::regularize::{
    FrobeniusImportance, OrthNorm, normalized_frobenius, orthogonality_penalty,
};
use peftlab_linalg::strips::{StripInit, TriangularStrips};

use crate::linear::Adapter;
use crate::sensitivity::{EmaState, GradSource, SensitivityEma};
use crate::target::ModuleSelector;
use crate::{AdapterError, AdapterHost};

/// The scale rule.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum TriScaling {
    /// `s = α / (R + 1e-5)`.
    AlphaOverRank,
    /// `s = 2` (α ignored).
    Constant2,
}

/// How many matrices grow at each allocation step.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum Threshold {
    /// `K = top_k` every time (IncreLoRA-style fixed threshold).
    Fixed {
        /// Matrices grown per allocation.
        top_k: usize,
    },
    /// `K = ⌊(B_target − B_cur) · p⌋` (the paper's best).
    Linear,
    /// `K = ⌊(B_target − B_cur)^p⌋`.
    Exponential,
}

/// How `C` is stored.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum TriTransform {
    /// Lower and upper triangular strips; growth appends one of each (the paper).
    Triangular,
    /// One dense `R×R` parameter, enlarged at growth (ablation).
    Full,
}

/// How a matrix's importance is measured at an allocation step.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum TriImportance {
    /// Change of the normalized Frobenius norm of `C` since the last allocation (the paper).
    Frobenius,
    /// Mean smoothed sensitivity × uncertainty of the adapter's entries (ablation, inferred).
    Sensitivity,
}

/// TriAdaptLoRA configuration (the author code's names where they exist).
#[derive(Config, Debug)]
pub struct TriAdaptConfig {
    /// Target *average* rank per matrix (`reference_rank`).
    #[config(default = 8)]
    pub reference_rank: usize,
    /// Rank of the first block.
    #[config(default = 1)]
    pub init_rank: usize,
    /// Block size added per growth (`None` = `reference_rank / 2`, at least 1).
    #[config(default = "None")]
    pub incre_rank_num: Option<usize>,
    /// `α`.
    #[config(default = 8.0)]
    pub lora_alpha: f64,
    /// Scale rule.
    #[config(default = "TriScaling::AlphaOverRank")]
    pub scaling: TriScaling,
    /// Dropout on the adapter input.
    #[config(default = 0.0)]
    pub lora_dropout: f64,
    /// Threshold schedule.
    #[config(default = "Threshold::Linear")]
    pub threshold: Threshold,
    /// Steps before the first allocation.
    #[config(default = 0)]
    pub init_warmup: usize,
    /// Steps between allocations.
    #[config(default = 1)]
    pub incre_interval: usize,
    /// Orthogonality regularizer weight γ.
    #[config(default = 0.5)]
    pub orth_reg_weight: f64,
    /// Storage of `C`.
    #[config(default = "TriTransform::Triangular")]
    pub transform: TriTransform,
    /// Importance measure.
    #[config(default = "TriImportance::Frobenius")]
    pub importance: TriImportance,
    /// Sensitivity EMA factor `β₁` ([`TriImportance::Sensitivity`] only; AdaLoRA's default).
    #[config(default = 0.85)]
    pub beta1: f64,
    /// Uncertainty EMA factor `β₂` ([`TriImportance::Sensitivity`] only).
    #[config(default = 0.85)]
    pub beta2: f64,
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

impl TriAdaptConfig {
    /// Block size per growth.
    pub fn incre(&self) -> usize {
        self.incre_rank_num
            .unwrap_or((self.reference_rank / 2).max(1))
    }
}

/// A TriAdaptLoRA adapter on one linear layer.
#[derive(Module, Debug)]
pub struct TriAdaptAdapter {
    /// `A_i: [k_i, d_in]`.
    pub a_blocks: Vec<Param<Tensor<2>>>,
    /// `B_i: [d_out, k_i]`.
    pub b_blocks: Vec<Param<Tensor<2>>>,
    /// `C` as strips ([`TriTransform::Triangular`]; empty otherwise).
    pub strips: TriangularStrips,
    /// `C: [R, R]` as one tensor ([`TriTransform::Full`]).
    pub full: Option<Param<Tensor<2>>>,
    /// Dropout on the adapter input.
    pub dropout: Dropout,
    /// `α`.
    pub alpha: f64,
    /// `true` for `α/R`, `false` for the constant 2.
    pub alpha_over_rank: bool,
}

impl TriAdaptAdapter {
    /// First block of size `config.init_rank`: `A ~ N(0, 0.02²)`, `B = 0`, `C_11 = 2I`.
    pub fn new(
        config: &TriAdaptConfig,
        d_in: usize,
        d_out: usize,
        device: &Device,
        dtype: DType,
        rng: &mut SeededRng,
    ) -> Result<Self, AdapterError> {
        if config.init_rank == 0 {
            return Err(AdapterError::Config {
                key: "init_rank".into(),
                reason: "must be > 0".into(),
            });
        }
        let mut s = Self {
            a_blocks: Vec::new(),
            b_blocks: Vec::new(),
            strips: TriangularStrips::new(),
            full: (config.transform == TriTransform::Full)
                .then(|| Param::from_tensor(Tensor::<2>::zeros([0, 0], device))),
            dropout: crate::lowrank::dropout(config.lora_dropout)?,
            alpha: config.lora_alpha,
            alpha_over_rank: config.scaling == TriScaling::AlphaOverRank,
        };
        s.push_block(
            config.init_rank,
            d_in,
            d_out,
            StripInit::DiagonalIdentity,
            device,
            dtype,
            rng,
        )?;
        Ok(s)
    }

    /// Current rank `R`.
    pub fn rank(&self) -> usize {
        self.a_blocks.iter().map(|a| a.dims()[0]).sum()
    }

    /// The scale `s` at rank `r`.
    fn scale_at(&self, r: usize) -> f64 {
        if self.alpha_over_rank {
            self.alpha / (r as f64 + 1e-5)
        } else {
            2.0
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push_block(
        &mut self,
        k: usize,
        d_in: usize,
        d_out: usize,
        init: StripInit,
        device: &Device,
        dtype: DType,
        rng: &mut SeededRng,
    ) -> Result<(), AdapterError> {
        let a = Fill::Normal { std: 0.02 }.tensor(k, d_in, rng, device, dtype);
        let b = Fill::Zeros.tensor(d_out, k, rng, device, dtype);
        if let Some(c) = &mut self.full {
            // [[C, 0], [0, 2I_k]]: the value the strips give for the default init (r×r, small:
            // assembled on the host)
            let r = c.dims()[0];
            let n = r + k;
            let old = c
                .val()
                .try_to_vec_as::<f64>()
                .map_err(|e| AdapterError::Config {
                    key: "C".into(),
                    reason: format!("{e:?}"),
                })?;
            let mut v = vec![0.0f64; n * n];
            for i in 0..r {
                v[i * n..i * n + r].copy_from_slice(&old[i * r..(i + 1) * r]);
            }
            for i in r..n {
                v[i * n + i] = 2.0;
            }
            let grown = Tensor::<2>::from_data(burn::tensor::TensorData::new(v, [n, n]), device)
                .cast(dtype);
            *c = Param::initialized(c.id, grown).set_require_grad(true);
        } else {
            let strips = std::mem::take(&mut self.strips);
            self.strips = strips.grow(k, init, rng, device, dtype)?;
        }
        self.a_blocks.push(Param::from_tensor(a));
        self.b_blocks.push(Param::from_tensor(b));
        Ok(())
    }

    /// Rows of each `A` block (block 0 is the initial rank, one more per growth).
    pub fn block_sizes(&self) -> Vec<usize> {
        self.a_blocks.iter().map(|a| a.dims()[0]).collect()
    }

    /// Grow by `k`, keeping the layer's output unchanged (for the default strip init): existing
    /// `B` blocks are rescaled by `s_old / s_new` under `α/R` scaling.
    pub fn grow(
        &mut self,
        k: usize,
        init: StripInit,
        rng: &mut SeededRng,
    ) -> Result<(), AdapterError> {
        let a0 = self.a_blocks[0].val();
        let (device, dtype) = (a0.device(), a0.dtype());
        let d_in = a0.dims()[1];
        let d_out = self.b_blocks[0].dims()[0];
        let (old, new) = (self.rank(), self.rank() + k);
        let ratio = self.scale_at(old) / self.scale_at(new);
        if ratio != 1.0 {
            for b in &mut self.b_blocks {
                let v = (b.val() * ratio).detach();
                *b = Param::initialized(b.id, v).set_require_grad(true);
            }
        }
        self.push_block(k, d_in, d_out, init, &device, dtype, rng)
    }

    fn a_cat(&self) -> Tensor<2> {
        Tensor::cat(self.a_blocks.iter().map(Param::val).collect(), 0)
    }

    fn b_cat(&self) -> Tensor<2> {
        Tensor::cat(self.b_blocks.iter().map(Param::val).collect(), 1)
    }

    fn c(&self) -> Tensor<2> {
        match &self.full {
            Some(c) => c.val(),
            None => self
                .strips
                .assemble()
                .expect("a TriAdapt adapter always holds at least one block"),
        }
    }

    /// Factored update `s · ((dropout(x) A_catᵀ) Cᵀ) B_catᵀ` for `x: [..., d_in]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let x = peftlab_linalg::dropout::forward(&self.dropout, x);
        let u = linear_rows(x, self.a_cat());
        let u = linear_rows(u, self.c()) * self.scale_at(self.rank());
        linear_rows(u, self.b_cat())
    }

    /// Dense update in burn layout `[d_in, d_out]`.
    pub fn delta_weight(&self) -> Tensor<2> {
        let bca = self.b_cat().matmul(self.c()).matmul(self.a_cat());
        bca.transpose() * self.scale_at(self.rank())
    }

    /// `‖A_cat A_catᵀ − I‖_F + ‖B_catᵀ B_cat − I‖_F` (§4.5).
    pub fn orthogonality(&self) -> Result<Tensor<1>, AdapterError> {
        Ok(orthogonality_penalty(
            self.a_cat(),
            self.b_cat(),
            OrthNorm::Frobenius,
        )?)
    }

    /// Normalized Frobenius norm `‖C‖_F / m` (§4.3), read back to the host.
    pub fn importance(&self) -> Result<f64, AdapterError> {
        let n = normalized_frobenius(self.c(), self.a_blocks.len())?;
        n.try_into_scalar::<f64>()
            .map_err(|e| AdapterError::Config {
                key: "importance".into(),
                reason: format!("{e:?}"),
            })
    }

    /// Every trainable tensor with a name unique within the adapter: `A{i}`, `B{i}`, `L{i}`
    /// (row strips), `U{i}` (column strips), or `C` for the full transform.
    pub fn named_params(&self) -> Vec<(String, &Param<Tensor<2>>)> {
        let full = self.full.iter().map(|c| ("C".to_string(), c));
        [
            ("A", &self.a_blocks),
            ("B", &self.b_blocks),
            ("L", &self.strips.rows),
            ("U", &self.strips.cols),
        ]
        .into_iter()
        .flat_map(|(prefix, v)| {
            v.iter()
                .enumerate()
                .map(move |(i, p)| (format!("{prefix}{i}"), p))
        })
        .chain(full)
        .collect()
    }

    /// Trainable scalars `R (d_in + d_out) + 2 Σ k_i S_i`.
    pub fn num_trainable(&self) -> usize {
        let r = self.rank();
        let d_in = self.a_blocks[0].dims()[1];
        let d_out = self.b_blocks[0].dims()[0];
        let c = if self.full.is_some() {
            r * r
        } else {
            self.strips.num_params()
        };
        r * (d_in + d_out) + c
    }
}

/// One allocation decision, for logs and rank-growth curves.
#[derive(Debug, Clone, PartialEq)]
pub struct Growth {
    /// Optimizer step.
    pub step: usize,
    /// `K(t)` before ties.
    pub k: usize,
    /// `τ(t)`.
    pub threshold: f64,
    /// Modules grown.
    pub grown: Vec<String>,
    /// Total rank after growth.
    pub total_rank: usize,
}

/// TriAdaptLoRA's rank allocator (§4.4). Call [`TriAdaptAllocator::step`] once per optimizer
/// step (the training loop does this); new parameters get fresh optimizer state on their first
/// update, because burn's optimizers key their state by `ParamId` and existing ids are kept.
#[derive(Debug, Clone)]
pub struct TriAdaptAllocator {
    config: TriAdaptConfig,
    total_steps: usize,
    target_total: usize,
    current_total: usize,
    scores: Vec<(String, FrobeniusImportance)>,
    rng_seed: u64,
    sensitivity: SensitivityEma,
}

impl TriAdaptAllocator {
    /// Set up for `model` (adapters already attached) and a run of `total_steps` steps.
    /// `target_total_rank` defaults to `reference_rank × number of adapted matrices`.
    pub fn new<M: AdapterHost>(
        model: &M,
        config: &TriAdaptConfig,
        total_steps: usize,
        target_total_rank: Option<usize>,
        seed: u64,
    ) -> Result<Self, AdapterError> {
        let mut scores = Vec::new();
        let mut total = 0;
        let mut error = None;
        model.for_each_linear("", &mut |p, l| {
            if let Some(Adapter::TriAdapt(a)) = &l.adapter {
                total += a.rank();
                match a.importance() {
                    Ok(n) => scores.push((p.to_string(), FrobeniusImportance::new(n))),
                    Err(e) => error = Some(e),
                }
            }
        });
        if let Some(e) = error {
            return Err(e);
        }
        if scores.is_empty() {
            return Err(AdapterError::Config {
                key: "model".into(),
                reason: "has no TriAdaptLoRA adapter".into(),
            });
        }
        if total_steps <= config.init_warmup {
            return Err(AdapterError::Config {
                key: "total_step".into(),
                reason: format!("must exceed init_warmup = {}", config.init_warmup),
            });
        }
        Ok(Self {
            target_total: target_total_rank.unwrap_or(config.reference_rank * scores.len()),
            config: config.clone(),
            total_steps,
            current_total: total,
            scores,
            rng_seed: seed,
            sensitivity: SensitivityEma::new(config.beta1, config.beta2),
        })
    }

    /// Current total rank `B_cur`.
    pub fn total_rank(&self) -> usize {
        self.current_total
    }

    /// What a checkpoint must keep to continue: the current total rank and, per module, the
    /// normalized norm the next score is measured against.
    pub fn state(&self) -> (usize, Vec<(String, f64)>) {
        (
            self.current_total,
            self.scores
                .iter()
                .map(|(p, s)| (p.clone(), s.previous()))
                .collect(),
        )
    }

    /// Restore [`TriAdaptAllocator::state`] (same modules, in order); an error names a module
    /// the allocator does not have.
    pub fn set_state(
        &mut self,
        total: usize,
        previous: &[(String, f64)],
    ) -> Result<(), AdapterError> {
        if previous.len() != self.scores.len()
            || previous
                .iter()
                .zip(&self.scores)
                .any(|((a, _), (b, _))| a != b)
        {
            return Err(AdapterError::Config {
                key: "allocator state".into(),
                reason: "modules differ from the model's TriAdaptLoRA modules".into(),
            });
        }
        self.current_total = total;
        for ((_, s), (_, n)) in self.scores.iter_mut().zip(previous) {
            *s = FrobeniusImportance::new(*n);
        }
        Ok(())
    }

    /// Whether [`TriAdaptAllocator::update`] must see each step's gradients.
    pub fn needs_gradients(&self) -> bool {
        self.config.importance == TriImportance::Sensitivity
    }

    /// Fold `grads` and the parameters' current values into the sensitivity EMAs (a no-op for
    /// the Frobenius importance); `peftlab-train` calls it after the optimizer step, as PEFT's
    /// loop calls AdaLoRA's.
    pub fn update<M: AdapterHost, G: GradSource + ?Sized>(&mut self, model: &M, grads: &G) {
        if !self.needs_gradients() {
            return;
        }
        model.for_each_linear("", &mut |p, l| {
            if let Some(Adapter::TriAdapt(a)) = &l.adapter {
                for (name, param) in a.named_params() {
                    self.sensitivity
                        .observe(format!("{p}.{name}"), param, grads);
                }
            }
        });
    }

    /// The sensitivity EMAs, for a checkpoint (empty for the Frobenius importance).
    pub fn ema_state(&self) -> EmaState {
        self.sensitivity.state()
    }

    /// Restore [`TriAdaptAllocator::ema_state`] on `device`.
    pub fn set_ema_state(&mut self, state: &EmaState, device: &Device) {
        self.sensitivity.set_state(state, device);
    }

    /// Mean `Ī · Ū` over the entries of one adapter at `path` (0 before any observation).
    fn sensitivity_score(&self, path: &str, a: &TriAdaptAdapter) -> Result<f64, AdapterError> {
        let (mut sum, mut n) = (0.0, 0usize);
        for (name, param) in a.named_params() {
            if let Some(t) = self.sensitivity.score(&format!("{path}.{name}")) {
                n += param.shape().num_elements();
                sum += t
                    .sum()
                    .try_into_scalar::<f64>()
                    .map_err(|e| AdapterError::Config {
                        key: "importance".into(),
                        reason: format!("{e:?}"),
                    })?;
            }
        }
        Ok(if n == 0 { 0.0 } else { sum / n as f64 })
    }

    /// Target total rank `B_target`.
    pub fn target_rank(&self) -> usize {
        self.target_total
    }

    /// `K(t)` for progress `p ∈ [0, 1]` and remaining budget (§4.4), clamped to `[1, n]`.
    pub fn k_of(&self, p: f64, remaining: usize) -> usize {
        let n = self.scores.len();
        let k = match self.config.threshold {
            Threshold::Fixed { top_k } => top_k,
            Threshold::Linear => (remaining as f64 * p).floor() as usize,
            Threshold::Exponential => (remaining as f64).powf(p).floor() as usize,
        };
        k.clamp(1, n)
    }

    /// Run the allocation for optimizer step `step` (1-based): score every matrix and grow the
    /// top `K(t)` (ties included) by `incre_rank_num`. Returns what grew, if anything.
    pub fn step<M: AdapterHost>(
        &mut self,
        model: &mut M,
        step: usize,
    ) -> Result<Option<Growth>, AdapterError> {
        let c = &self.config;
        if step <= c.init_warmup
            || !(step - c.init_warmup).is_multiple_of(c.incre_interval.max(1))
            || self.current_total >= self.target_total
        {
            return Ok(None);
        }
        // Frobenius: S_k = n_k(t) − n_k(t_prev); sensitivity: mean Ī·Ū of the matrix
        let sensitivity = self.needs_gradients();
        let mut current = Vec::new();
        let mut error = None;
        model.for_each_linear("", &mut |p, l| {
            if let Some(Adapter::TriAdapt(a)) = &l.adapter {
                let value = if sensitivity {
                    self.sensitivity_score(p, a)
                } else {
                    a.importance()
                };
                match value {
                    Ok(n) => current.push((p.to_string(), n)),
                    Err(e) => error = Some(e),
                }
            }
        });
        if let Some(e) = error {
            return Err(e);
        }
        let mut s = Vec::with_capacity(current.len());
        for ((path, imp), (p2, n)) in self.scores.iter_mut().zip(&current) {
            debug_assert_eq!(path, p2);
            s.push(if sensitivity { *n } else { imp.score(*n)? });
        }
        let p = (step - c.init_warmup) as f64 / (self.total_steps - c.init_warmup) as f64;
        let k = self.k_of(p.clamp(0.0, 1.0), self.target_total - self.current_total);
        let mut sorted = s.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let tau = sorted[k - 1];
        let grow: Vec<String> = self
            .scores
            .iter()
            .zip(&s)
            .filter(|(_, sc)| **sc >= tau)
            .map(|((p, _), _)| p.clone())
            .collect();
        let incre = c.incre();
        let mut rng = SeededRng::new(crate::host::module_seed(
            self.rng_seed,
            &format!("grow@{step}"),
        ));
        let mut error = None;
        model.for_each_linear_mut("", &mut |p, l| {
            if error.is_some() || !grow.iter().any(|g| g == p) {
                return;
            }
            if let Some(Adapter::TriAdapt(a)) = &mut l.adapter {
                error = a.grow(incre, StripInit::DiagonalIdentity, &mut rng).err();
            }
        });
        if let Some(e) = error {
            return Err(e);
        }
        self.current_total += incre * grow.len();
        Ok(Some(Growth {
            step,
            k,
            threshold: tau,
            grown: grow,
            total_rank: self.current_total,
        }))
    }

    /// `γ · (1/(2n)) Σ_k (‖A Aᵀ − I‖ + ‖Bᵀ B − I‖)` over all TriAdapt matrices (§4.5), to add to
    /// the loss.
    pub fn regularizer<M: AdapterHost>(
        &self,
        model: &M,
    ) -> Result<Option<Tensor<1>>, AdapterError> {
        let sum = crate::host::sum_over_adapters(model, |a| match a {
            Adapter::TriAdapt(a) => Some(a.orthogonality()),
            _ => None,
        })?;
        Ok(sum.map(|(t, n)| t * (self.config.orth_reg_weight / (2.0 * n as f64))))
    }
}
