//! # SVD adaptation — singular values and a scaling vector (*inferred*)
//!
//! Paper: 林志鹏, 郭峥嵘, 张伟志, 郭躬德, *基于奇异值分解的适应微调* (Adaptation Fine-tuning
//! Based on Singular Value Decomposition), 计算机系统应用 (Computer Systems & Applications),
//! article 9731, 2024. Only the abstract could be read (papers.md §5): the pretrained weight is
//! decomposed by SVD and **only the singular values and a scaling vector train**. The equations
//! below are **inferred** (papers.md §5.2); both options are implemented and chosen by config.
//!
//! With the thin SVD `W0 = U Σ Vᵀ` (computed once at attach time with `peftlab-linalg`, kept
//! frozen) and its top-`r` part `U_r Σ_r V_rᵀ`:
//!
//! - **Option A** (default, PiSSA/SVFit-like split + VeRA-like vector):
//!   `W = W0 − U_r Σ_r V_rᵀ + diag(b) · U_r · diag(σ') · V_rᵀ`, trainable `σ' ∈ R^r`
//!   (init `σ_1..σ_r`) and `b ∈ R^{d_out}` (init 1), so `ΔW = 0` at attach time.
//! - **Option B** (additive, VeRA-shaped with SVD bases):
//!   `ΔW = diag(b) · U_r · diag(λ) · V_rᵀ`, trainable `λ` (init 0) and `b` (init 1).
//!
//! Parameters per matrix: `r + d_out` trainable (plus the frozen `U_r`, `V_r`, `Σ_r`). The
//! forward is factored: `u = x V_r`, then `((u ⊙ σ') U_rᵀ) ⊙ b − (u ⊙ σ) U_rᵀ` (A) or
//! `((u ⊙ λ) U_rᵀ) ⊙ b` (B). Mergeable.
//!
//! Reproduce: `cargo xtask reproduce svda`.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::Tensor;
use peftlab_linalg::decomp::svd_tensor;

use crate::AdapterError;
use crate::target::ModuleSelector;

/// Which parameterization (papers.md §5.2; both inferred).
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum SvdOption {
    /// Re-scaled principal part: `σ'` replaces `Σ_r`, output scaled by `b`.
    A,
    /// Additive update `diag(b) U_r diag(λ) V_rᵀ` with `λ = 0` at start.
    B,
}

/// SVD adaptation configuration.
#[derive(Config, Debug)]
pub struct SvdAdaptConfig {
    /// Number of singular triplets adapted (`None` = all, `min(d_in, d_out)`).
    #[config(default = "None")]
    pub r: Option<usize>,
    /// Parameterization.
    #[config(default = "SvdOption::A")]
    pub option: SvdOption,
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

/// SVD adaptation on one linear layer. Vectors are held as `[1, n]` rows.
#[derive(Module, Debug)]
pub struct SvdAdapter {
    /// Frozen `U_r: [d_out, r]`.
    pub u: Param<Tensor<2>>,
    /// Frozen `V_r: [d_in, r]`.
    pub v: Param<Tensor<2>>,
    /// Frozen `σ_1..σ_r: [1, r]`.
    pub sigma0: Param<Tensor<2>>,
    /// Trainable `σ'` (A) or `λ` (B): `[1, r]`.
    pub sigma: Param<Tensor<2>>,
    /// Trainable output scaling `b: [1, d_out]`.
    pub scale: Param<Tensor<2>>,
    /// Option A subtracts the original principal part; option B does not.
    pub replace_principal: bool,
}

impl SvdAdapter {
    /// Decompose `weight: [d_in, d_out]` (burn layout) and build the adapter.
    pub fn new(weight: &Tensor<2>, config: &SvdAdaptConfig) -> Result<Self, AdapterError> {
        let [d_in, d_out] = weight.dims();
        let k = d_in.min(d_out);
        let r = config.r.unwrap_or(k);
        if r == 0 || r > k {
            return Err(AdapterError::Config {
                key: "r".into(),
                reason: format!("must be in 1..={k} for a {d_out}x{d_in} weight, got {r}"),
            });
        }
        // W0 (paper layout [d_out, d_in]) = U Σ Vᵀ
        let f = svd_tensor(&weight.clone().detach().transpose(), Some(r))?;
        let sigma0 = f.s.reshape([1, r]);
        let frozen = |t: Tensor<2>| Param::from_tensor(t).set_require_grad(false);
        let trainable = |t: Tensor<2>| Param::from_tensor(t).set_require_grad(true);
        let sigma = match config.option {
            SvdOption::A => sigma0.clone(),
            SvdOption::B => sigma0.zeros_like(),
        };
        let scale = Tensor::ones([1, d_out], (&weight.device(), weight.dtype()));
        Ok(Self {
            u: frozen(f.u),
            v: frozen(f.v),
            sigma0: frozen(sigma0),
            sigma: trainable(sigma),
            scale: trainable(scale),
            replace_principal: config.option == SvdOption::A,
        })
    }

    /// Adapted rank `r`.
    pub fn rank(&self) -> usize {
        self.sigma.dims()[1]
    }

    /// Factored update for `x: [..., d_in]` → `[..., d_out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let u = x.matmul(self.v.val().unsqueeze::<D>());
        let u_t = self.u.val().transpose().unsqueeze::<D>();
        let new = (u.clone() * self.sigma.val().unsqueeze::<D>()).matmul(u_t.clone())
            * self.scale.val().unsqueeze::<D>();
        if self.replace_principal {
            new - (u * self.sigma0.val().unsqueeze::<D>()).matmul(u_t)
        } else {
            new
        }
    }

    /// Dense update in burn layout `[d_in, d_out]`.
    pub fn delta_weight(&self) -> Tensor<2> {
        // (diag(b) U diag(σ') Vᵀ)ᵀ = V diag(σ') Uᵀ diag(b)
        let v = self.v.val();
        let u_t = self.u.val().transpose();
        let new = (v.clone() * self.sigma.val()).matmul(u_t.clone()) * self.scale.val();
        if self.replace_principal {
            new - (v * self.sigma0.val()).matmul(u_t)
        } else {
            new
        }
    }

    /// Trainable scalars: `r + d_out`.
    pub fn num_trainable(&self) -> usize {
        self.rank() + self.scale.dims()[1]
    }
}
