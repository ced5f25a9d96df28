//! The low-rank update shared by LoRA and MTLoRA: `ΔW = s · B · T · A` with `T = I` for LoRA.
//!
//! Shapes follow PEFT: `A: [r, d_in]` (`lora_A.weight`), `B: [d_out, r]` (`lora_B.weight`),
//! `T: [r, r]` (MTLoRA's transformation, see `peftlab_linalg::transform`). The training forward
//! is factored, `x ↦ s · ((dropout(x) Aᵀ) Tᵀ) Bᵀ`, costing `O(N·r·(d_in + d_out) + N·r²)`; the
//! dense `ΔW` is formed only by [`LowRankAdapter::delta_weight`] (merge, export).

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{DType, Device, Tensor};
use peftlab_linalg::init::{Fill, SeededRng};
use peftlab_linalg::transform::{TransformConfig, TransformInit, TransformKind, Transformation};

use crate::AdapterError;

/// How `A` is initialized.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AInit {
    /// loralib / PEFT default: `kaiming_uniform_(A, a = √5)`, i.e. `U(−1/√d_in, 1/√d_in)`.
    KaimingUniform,
    /// `N(0, std²)` (the MTLoRA README tip uses `std = 0.02`).
    Normal {
        /// Standard deviation.
        std: f64,
    },
}

/// Everything needed to build one [`LowRankAdapter`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LowRankSpec {
    /// Rank `r`.
    pub rank: usize,
    /// Scale `s` applied to the update (`α/r`, or `α/√r` for rsLoRA).
    pub scale: f64,
    /// Dropout probability on the adapter input.
    pub dropout: f64,
    /// Structure of `T` (`Identity` = LoRA).
    pub kind: TransformKind,
    /// Initialization of `T`'s factors.
    pub t_init: TransformInit,
    /// Initialization of `A` (`B` always starts at zero, so `ΔW = 0` at attach time).
    pub a_init: AInit,
}

/// A low-rank adapter on one linear layer.
#[derive(Module, Debug)]
pub struct LowRankAdapter {
    /// `A: [r, d_in]`.
    pub lora_a: Param<Tensor<2>>,
    /// `B: [d_out, r]`.
    pub lora_b: Param<Tensor<2>>,
    /// `T: [r, r]` (identity for LoRA: no parameters).
    pub transform: Transformation,
    /// Dropout on the adapter input.
    pub dropout: Dropout,
    /// Scale `s`.
    pub scale: f64,
}

impl LowRankAdapter {
    /// Build an adapter for a `d_in → d_out` layer on `device` with factors of `dtype`, drawing
    /// `A` then `T`'s factors from `rng`.
    pub fn new(
        spec: &LowRankSpec,
        d_in: usize,
        d_out: usize,
        device: &Device,
        dtype: DType,
        rng: &mut SeededRng,
    ) -> Result<Self, AdapterError> {
        if spec.rank == 0 {
            return Err(AdapterError::Config {
                key: "r".into(),
                reason: "rank must be > 0".into(),
            });
        }
        if !(0.0..1.0).contains(&spec.dropout) {
            return Err(AdapterError::Config {
                key: "lora_dropout".into(),
                reason: format!("must be in [0, 1), got {}", spec.dropout),
            });
        }
        let r = spec.rank;
        let a_fill = match spec.a_init {
            AInit::KaimingUniform => Fill::kaiming_uniform(d_in, 5f64.sqrt())?,
            AInit::Normal { std } => Fill::Normal { std },
        };
        let a = a_fill.tensor(r, d_in, rng, device, dtype);
        let transform = TransformConfig::new(r)
            .with_kind(spec.kind)
            .with_init(spec.t_init)
            .init_with(device, dtype, rng)?;
        let b = Fill::Zeros.tensor(d_out, r, rng, device, dtype);
        Ok(Self {
            lora_a: Param::from_tensor(a),
            lora_b: Param::from_tensor(b),
            transform,
            dropout: DropoutConfig::new(spec.dropout).init(),
            scale: spec.scale,
        })
    }

    /// Rank `r`.
    pub fn rank(&self) -> usize {
        self.lora_a.dims()[0]
    }

    /// The factored update `s · ((dropout(x) Aᵀ) Tᵀ) Bᵀ` for `x: [..., d_in]` → `[..., d_out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let x = self.dropout.forward(x);
        let a_t = self.lora_a.val().transpose().unsqueeze::<D>();
        let u = self.transform.apply(x.matmul(a_t));
        let b_t = self.lora_b.val().transpose().unsqueeze::<D>();
        u.matmul(b_t) * self.scale
    }

    /// The dense update in burn's `Linear` layout, `s · (B T A)ᵀ: [d_in, d_out]`.
    pub fn delta_weight(&self) -> Tensor<2> {
        let a = self.lora_a.val();
        let t = self.transform.matrix(&a.device());
        let bta = self.lora_b.val().matmul(t).matmul(a);
        bta.transpose() * self.scale
    }

    /// Trainable scalars: `r (d_in + d_out)` plus `T`'s `0 / r² / 2r²`.
    pub fn num_trainable(&self) -> usize {
        let [r, d_in] = self.lora_a.dims();
        let d_out = self.lora_b.dims()[0];
        r * (d_in + d_out) + self.transform.num_trainable()
    }
}
