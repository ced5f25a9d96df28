//! MTLoRA's transformation structures: the trainable `r × r` matrix `T` in `ΔW = s · B · T · A`.
//!
//! Source: Liang et al., *MTLoRA: A Low-Rank Adaptation Approach for Efficient Fine-Tuning of Large
//! Language Models*, arXiv 2403.07440 (papers.md §2). The structures are confirmed from the
//! authors' code (`transformation_matrix/{SHIM,ICFM,CTCM,DTSM}/xtuning_layers.py`):
//!
//! | kind | `T` | trainable | params |
//! |---|---|---|---|
//! | [`TransformKind::Identity`] | `I` (plain LoRA) | — | 0 |
//! | [`TransformKind::Shim`] | `C` | `C` | `r²` |
//! | [`TransformKind::Icfm`] | `C Cᵀ` (symmetric PSD) | `C` | `r²` |
//! | [`TransformKind::Ctcm`] | `C D` | `C`, `D` | `2r²` |
//! | [`TransformKind::Dtsm`] | `C + D` | `C`, `D` | `2r²` |
//!
//! Initialization ([`TransformInit`], papers.md §2.2): `KaimingUniform` (`a = √5`, the NLU/NLG
//! code, default), `Identity` (`C = D = I`, the authors' README tip) or `Zero` (`C = D = 0`, the
//! multimodal peft code; ICFM and CTCM cannot train from it since their gradients vanish at zero).
//!
//! Gradients (§2.8), with `G = ∂L/∂T`: SHIM `∂C = G`; ICFM `∂C = (G + Gᵀ) C`;
//! CTCM `∂C = G Dᵀ`, `∂D = Cᵀ G`; DTSM `∂C = ∂D = G`. The forward is built from burn ops, so
//! autodiff produces these; [`closed_form_grads`] computes them directly for checks.
//!
//! Orientation: the paper's column-vector `h = B T A x` is, for a row-major batch `X: [N, d_in]`,
//! `Y = X Aᵀ Tᵀ Bᵀ`; [`Transformation::apply`] therefore maps `u: [..., r] ↦ u Tᵀ`.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{DType, Device, Tensor};

use crate::LinalgError;
use crate::init::{Fill, SeededRng};

/// Which structure `T` has.
#[derive(Config, Debug, Copy, PartialEq, Eq, Hash)]
pub enum TransformKind {
    /// `T = I`: plain LoRA.
    Identity,
    /// `T = C`.
    Shim,
    /// `T = C Cᵀ`.
    Icfm,
    /// `T = C D`.
    Ctcm,
    /// `T = C + D`.
    Dtsm,
}

impl TransformKind {
    /// All kinds, identity first.
    pub const ALL: [TransformKind; 5] = [
        TransformKind::Identity,
        TransformKind::Shim,
        TransformKind::Icfm,
        TransformKind::Ctcm,
        TransformKind::Dtsm,
    ];

    /// How many `r × r` factors the structure trains (0, 1 or 2).
    pub fn num_factors(self) -> usize {
        match self {
            TransformKind::Identity => 0,
            TransformKind::Shim | TransformKind::Icfm => 1,
            TransformKind::Ctcm | TransformKind::Dtsm => 2,
        }
    }

    /// Trainable parameters of `T` at rank `r` (papers.md §2.4): `0`, `r²` or `2r²`.
    pub fn num_params(self, rank: usize) -> usize {
        self.num_factors() * rank * rank
    }

    /// Lower-case name as used in configs and tables (`"identity"`, `"shim"`, …).
    pub fn name(self) -> &'static str {
        match self {
            TransformKind::Identity => "identity",
            TransformKind::Shim => "shim",
            TransformKind::Icfm => "icfm",
            TransformKind::Ctcm => "ctcm",
            TransformKind::Dtsm => "dtsm",
        }
    }
}

/// How the factors `C` (and `D`) start.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum TransformInit {
    /// `kaiming_uniform_(a = √5)`, i.e. `U(−1/√r, 1/√r)`: the MTLoRA NLU/NLG code.
    KaimingUniform,
    /// `C = D = I` (so SHIM/ICFM/CTCM start at `T = I`, DTSM at `T = 2I`): the README tip.
    Identity,
    /// `C = D = 0`.
    Zero,
}

impl TransformInit {
    fn fill(self, rank: usize) -> crate::Result<Fill> {
        match self {
            TransformInit::KaimingUniform => Fill::kaiming_uniform(rank, 5f64.sqrt()),
            TransformInit::Identity => Ok(Fill::Eye),
            TransformInit::Zero => Ok(Fill::Zeros),
        }
    }
}

/// Configuration of a [`Transformation`].
#[derive(Config, Debug)]
pub struct TransformConfig {
    /// Rank `r` (size of `T`).
    pub rank: usize,
    /// Structure of `T`.
    #[config(default = "TransformKind::Shim")]
    pub kind: TransformKind,
    /// Initialization of the factors.
    #[config(default = "TransformInit::KaimingUniform")]
    pub init: TransformInit,
}

impl TransformConfig {
    /// Build the transformation with factors in the device's default float dtype, drawing
    /// from `seed`.
    pub fn init(&self, device: &Device, seed: u64) -> crate::Result<Transformation> {
        self.init_with(device, DType::F32, &mut SeededRng::new(seed))
    }

    /// Build the transformation with factors of `dtype`, drawing from `rng` (`C` first, then `D`).
    pub fn init_with(
        &self,
        device: &Device,
        dtype: DType,
        rng: &mut SeededRng,
    ) -> crate::Result<Transformation> {
        if self.rank == 0 {
            return Err(LinalgError::invalid("TransformConfig.rank", "must be > 0"));
        }
        let fill = self.init.fill(self.rank)?;
        let r = self.rank;
        let mut factor = || Param::from_tensor(fill.tensor(r, r, rng, device, dtype));
        let (c, d) = match self.kind.num_factors() {
            0 => (None, None),
            1 => (Some(factor()), None),
            _ => {
                let c = factor();
                (Some(c), Some(factor()))
            }
        };
        Ok(Transformation {
            c,
            d,
            kind: self.kind,
            rank: r,
        })
    }
}

/// A trainable `r × r` transformation `T(C, D)`.
#[derive(Module, Debug)]
pub struct Transformation {
    /// First factor `C: [r, r]` (absent for identity).
    pub c: Option<Param<Tensor<2>>>,
    /// Second factor `D: [r, r]` (CTCM and DTSM only).
    pub d: Option<Param<Tensor<2>>>,
    /// The structure.
    #[module(skip)]
    pub kind: TransformKind,
    /// The rank `r`.
    pub rank: usize,
}

impl Transformation {
    /// Wrap existing factors, checking that they fit `kind` and are `[r, r]`.
    pub fn from_factors(
        kind: TransformKind,
        c: Option<Tensor<2>>,
        d: Option<Tensor<2>>,
    ) -> crate::Result<Self> {
        let given = usize::from(c.is_some()) + usize::from(d.is_some());
        if given != kind.num_factors() || (c.is_none() && d.is_some()) {
            return Err(LinalgError::invalid(
                "Transformation factors",
                format!(
                    "{} takes {} factor(s) (C then D), got C={} D={}",
                    kind.name(),
                    kind.num_factors(),
                    c.is_some(),
                    d.is_some()
                ),
            ));
        }
        let rank = c.as_ref().map_or(0, |c| c.dims()[0]);
        for (name, t) in [("C", &c), ("D", &d)] {
            if let Some(t) = t {
                let [a, b] = t.dims();
                if a != b || a != rank {
                    return Err(LinalgError::shape(
                        &format!("Transformation factor {name}"),
                        format!("[{rank}, {rank}]"),
                        format!("[{a}, {b}]"),
                    ));
                }
            }
        }
        if kind == TransformKind::Identity {
            return Err(LinalgError::invalid(
                "Transformation::from_factors",
                "identity has no factors; use TransformConfig with kind Identity",
            ));
        }
        Ok(Self {
            c: c.map(Param::from_tensor),
            d: d.map(Param::from_tensor),
            kind,
            rank,
        })
    }

    /// The dense `T: [r, r]` (differentiable in `C`, `D`). For identity, `I` on `device`.
    pub fn matrix(&self, device: &Device) -> Tensor<2> {
        let c = self.c.as_ref().map(Param::val);
        let d = self.d.as_ref().map(Param::val);
        match (self.kind, c, d) {
            (TransformKind::Shim, Some(c), _) => c,
            (TransformKind::Icfm, Some(c), _) => c.clone().matmul(c.transpose()),
            (TransformKind::Ctcm, Some(c), Some(d)) => c.matmul(d),
            (TransformKind::Dtsm, Some(c), Some(d)) => c + d,
            _ => Tensor::eye(self.rank, device),
        }
    }

    /// `u: [..., r] ↦ u Tᵀ` (the `A → T` step of the factored forward). Identity returns `u`
    /// unchanged; other kinds form `T` once (`O(r³)`) and do one `[.., r] × [r, r]` product.
    ///
    /// # Panics
    /// Like burn's own layers in `forward`, if the last dimension of `u` is not `r`.
    pub fn apply<const D: usize>(&self, u: Tensor<D>) -> Tensor<D> {
        if self.kind == TransformKind::Identity {
            return u;
        }
        // u·Tᵀ over all leading rows as one 2-D product (`skinny::linear_t`)
        let t = self.matrix(&u.device());
        let dims = u.dims();
        let m: usize = dims[..D - 1].iter().product();
        crate::skinny::linear_t(u.reshape([m, dims[D - 1]]), t).reshape(dims)
    }

    /// Trainable parameters held (`TransformKind::num_params`).
    pub fn num_trainable(&self) -> usize {
        self.kind.num_params(self.rank)
    }
}

/// The closed-form gradients `(∂L/∂C, ∂L/∂D)` of papers.md §2.8 given `G = ∂L/∂T: [r, r]`.
///
/// Errors if a factor the structure needs is missing.
pub fn closed_form_grads(
    kind: TransformKind,
    c: Option<Tensor<2>>,
    d: Option<Tensor<2>>,
    g: Tensor<2>,
) -> crate::Result<(Option<Tensor<2>>, Option<Tensor<2>>)> {
    let missing = |name: &str| {
        LinalgError::invalid(
            "closed_form_grads",
            format!("{} needs factor {name}", kind.name()),
        )
    };
    Ok(match kind {
        TransformKind::Identity => (None, None),
        TransformKind::Shim => (Some(g), None),
        TransformKind::Icfm => {
            let c = c.ok_or_else(|| missing("C"))?;
            (Some((g.clone() + g.transpose()).matmul(c)), None)
        }
        TransformKind::Ctcm => {
            let c = c.ok_or_else(|| missing("C"))?;
            let d = d.ok_or_else(|| missing("D"))?;
            (
                Some(g.clone().matmul(d.transpose())),
                Some(c.transpose().matmul(g)),
            )
        }
        TransformKind::Dtsm => (Some(g.clone()), Some(g)),
    })
}
