//! The low-rank update shared by LoRA and MTLoRA: `ΔW = s · B · T · A` with `T = I` for LoRA.
//!
//! Shapes follow PEFT: `A: [r, d_in]` (`lora_A.weight`), `B: [d_out, r]` (`lora_B.weight`),
//! `T: [r, r]` (MTLoRA's transformation, see `peftlab_linalg::transform`). The training forward
//! is factored, `x ↦ s · ((dropout(x) Aᵀ) Tᵀ) Bᵀ`, costing `O(N·r·(d_in + d_out) + N·r²)`; the
//! dense `ΔW` is formed only by [`LowRankAdapter::delta_weight`] (merge, export).
//!
//! Grouped (fused-QKV) form, the released MTLoRA GPT-2 code's `c_attn`: with `g` groups (3 for
//! q/k/v) and per-projection rank `r`, `A = [A_q; A_k; A_v]: [g·r, d_in]`, one shared
//! `T: [g·r, g·r]`, and `B = blockdiag(B_q, B_k, B_v)` stored as its blocks stacked,
//! `[d_out, r]` (loralib's `MergedLinear` layout): `ΔW = s · blockdiag(B) · T · A`.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{DType, Device, Tensor};
use peftlab_linalg::init::{Fill, SeededRng};
use peftlab_linalg::skinny::linear_t;
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
    /// Output groups sharing one `T` (1 = plain; 3 = fused q/k/v with a `3r × 3r` T).
    pub groups: usize,
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
    /// Output groups (1, or 3 for fused q/k/v); `B` is block-diagonal over them.
    pub groups: usize,
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
        let dropout = dropout(spec.dropout)?;
        let g = spec.groups.max(1);
        if !d_out.is_multiple_of(g) {
            return Err(AdapterError::Config {
                key: "fused_qkv_modules".into(),
                reason: format!("a layer with {d_out} outputs cannot be split into {g} groups"),
            });
        }
        let r = spec.rank * g;
        let a_fill = match spec.a_init {
            AInit::KaimingUniform => Fill::kaiming_uniform(d_in, 5f64.sqrt())?,
            AInit::Normal { std } => Fill::Normal { std },
        };
        let a = a_fill.tensor(r, d_in, rng, device, dtype);
        let transform = TransformConfig::new(r)
            .with_kind(spec.kind)
            .with_init(spec.t_init)
            .init_with(device, dtype, rng)?;
        let b = Fill::Zeros.tensor(d_out, spec.rank, rng, device, dtype);
        Ok(Self {
            lora_a: Param::from_tensor(a),
            lora_b: Param::from_tensor(b),
            transform,
            dropout,
            scale: spec.scale,
            groups: g,
        })
    }

    /// Rank of `A` and `T` (`g · r` for grouped adapters).
    pub fn rank(&self) -> usize {
        self.lora_a.dims()[0]
    }

    /// The factored update `s · ((dropout(x) Aᵀ) Tᵀ) Bᵀ` for `x: [..., d_in]` → `[..., d_out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let x = peftlab_linalg::dropout::forward(&self.dropout, x);
        let dims = x.dims();
        let [d_out, _] = self.lora_b.dims();
        let m: usize = dims[..D - 1].iter().product();
        // one 2-D product over all rows (see `linear_rows`)
        let x2 = x.reshape([m, dims[D - 1]]);
        let u2 = self.transform.apply(linear_t(x2, self.lora_a.val()));
        if self.groups == 1 {
            // the scale folded into B ([d_out, r]) instead of a pass over the [m, d_out] output
            let mut out = dims;
            out[D - 1] = d_out;
            return linear_t(u2, self.lora_b.val() * self.scale).reshape(out);
        }
        // block-diagonal B: group i of u ([m, r]) meets B_i ([d_g, r])
        let (g, r_total) = (self.groups, u2.dims()[1]);
        let r = r_total / g;
        let u3 = u2.reshape([m, g, r]).swap_dims(0, 1); // [g, m, r]
        let b3 = self.lora_b.val().reshape([g, d_out / g, r]).swap_dims(1, 2); // [g, r, d_g]
        let y = u3.matmul(b3).swap_dims(0, 1).reshape([m, d_out]) * self.scale;
        let mut out = dims;
        out[D - 1] = d_out;
        y.reshape(out)
    }

    /// `B` as a dense `[d_out, g·r]` matrix (block-diagonal for grouped adapters).
    fn b_dense(&self) -> Tensor<2> {
        let b = self.lora_b.val();
        if self.groups == 1 {
            return b;
        }
        let [d_out, r] = b.dims();
        let (g, d_g) = (self.groups, d_out / self.groups);
        let rows = (0..g)
            .map(|i| {
                let block = b.clone().slice([i * d_g..(i + 1) * d_g, 0..r]);
                let mut parts = Vec::new();
                if i > 0 {
                    parts.push(Tensor::zeros([d_g, i * r], (&b.device(), b.dtype())));
                }
                parts.push(block);
                if i + 1 < g {
                    parts.push(Tensor::zeros(
                        [d_g, (g - i - 1) * r],
                        (&b.device(), b.dtype()),
                    ));
                }
                Tensor::cat(parts, 1)
            })
            .collect();
        Tensor::cat(rows, 0)
    }

    /// The dense update in burn's `Linear` layout, `s · (B T A)ᵀ: [d_in, d_out]`.
    pub fn delta_weight(&self) -> Tensor<2> {
        let a = self.lora_a.val();
        let t = self.transform.matrix(&a.device());
        let bta = self.b_dense().matmul(t).matmul(a);
        bta.transpose() * self.scale
    }

    /// Trainable scalars: `r (d_in + d_out)` plus `T`'s `0 / r² / 2r²`; grouped (fused QKV,
    /// `g = 3`): `g·r·d_in + d_out·r + (g·r)²` (×2 for the `r²` part of CTCM/DTSM), papers.md §2.4.
    pub fn num_trainable(&self) -> usize {
        let [r_total, d_in] = self.lora_a.dims();
        let [d_out, r] = self.lora_b.dims();
        r_total * d_in + d_out * r + self.transform.num_trainable()
    }
}

/// Adapter-input dropout with probability `p`, which must lie in `[0, 1)` (config key
/// `lora_dropout`).
pub(crate) fn dropout(p: f64) -> Result<Dropout, AdapterError> {
    if !(0.0..1.0).contains(&p) {
        return Err(AdapterError::Config {
            key: "lora_dropout".into(),
            reason: format!("must be in [0, 1), got {p}"),
        });
    }
    Ok(DropoutConfig::new(p).init())
}

/// `x: [..., k]` · `wᵀ` (`w: [n, k]`, PyTorch's weight layout) → `[..., n]` as one 2-D product
/// over all `∏ leading dims` rows, on `peftlab_linalg::skinny`'s fast path for rank-sized
/// factors (a broadcast batched matmul would run, and pack `w`, once per leading index;
/// docs/performance.md, issue 16).
pub(crate) fn linear_rows<const D: usize>(x: Tensor<D>, w: Tensor<2>) -> Tensor<D> {
    let mut dims = x.dims();
    let m: usize = dims[..D - 1].iter().product();
    let y = linear_t(x.reshape([m, dims[D - 1]]), w);
    dims[D - 1] = y.dims()[1];
    y.reshape(dims)
}
