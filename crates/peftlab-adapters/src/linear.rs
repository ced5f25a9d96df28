//! The adapted linear layer: a frozen base `y = x W0 + b` plus an optional adapter.
//!
//! Models in peftlab build their projections from [`AdaptedLinear`] (it behaves exactly like
//! burn's `nn::Linear` while no adapter is attached) and expose them through
//! [`AdapterHost`](crate::AdapterHost), so any adapter method can be attached by path.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use peftlab_linalg::frozen::FrozenPack;

use crate::AdapterError;
use crate::adalora::AdaLoraAdapter;
use crate::loratrf::LoraTrfAdapter;
use crate::lowrank::LowRankAdapter;
use crate::svd_adapt::SvdAdapter;
use crate::triadapt::TriAdaptAdapter;

/// One adapter of any method. New methods are new variants; the config enum picks them.
#[derive(Module, Debug)]
// One adapter per layer: the enum's size is irrelevant, and burn's Module derive wants the
// variants unboxed.
#[allow(clippy::large_enum_variant)]
pub enum Adapter {
    /// LoRA and MTLoRA (`ΔW = s·B·T·A`).
    LowRank(LowRankAdapter),
    /// SVD adaptation (singular values and a scaling vector).
    Svd(SvdAdapter),
    /// LoRATRF (LoRA + task-aware filter; not mergeable).
    LoraTrf(LoraTrfAdapter),
    /// TriAdaptLoRA (triangular strips, growing rank).
    TriAdapt(TriAdaptAdapter),
    /// AdaLoRA (`P Λ Q` with budget masking).
    AdaLora(AdaLoraAdapter),
}

/// A named adapter tensor: its key suffix in saved files (docs/formats.md), the parameter, and
/// whether it trains (frozen ones, like SVD bases, are saved too).
pub struct NamedParam<'a> {
    /// Key suffix, e.g. `"lora_A.weight"`.
    pub name: String,
    /// The parameter.
    pub param: &'a mut Param<Tensor<2>>,
    /// Whether it receives gradients.
    pub trainable: bool,
}

impl Adapter {
    /// Short name of the adapter kind (`"low-rank"` covers LoRA and MTLoRA).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::LowRank(_) => "low-rank",
            Self::Svd(_) => "svd",
            Self::LoraTrf(_) => "loratrf",
            Self::TriAdapt(_) => "triadaptlora",
            Self::AdaLora(_) => "adalora",
        }
    }

    /// Factored update for `x: [..., d_in]` → `[..., d_out]`; `base` is the frozen layer's
    /// output `x W0 + b` (used by input-dependent methods such as LoRATRF).
    pub fn forward<const D: usize>(&self, x: Tensor<D>, base: &Tensor<D>) -> Tensor<D> {
        match self {
            Adapter::LowRank(a) => a.forward(x),
            Adapter::Svd(a) => a.forward(x),
            Adapter::LoraTrf(a) => a.forward(x, base.clone()),
            Adapter::TriAdapt(a) => a.forward(x),
            Adapter::AdaLora(a) => a.forward(x),
        }
    }

    /// Dense update in burn layout `[d_in, d_out]`, or an error for methods that cannot merge.
    pub fn delta_weight(&self) -> Result<Tensor<2>, AdapterError> {
        match self {
            Adapter::LowRank(a) => Ok(a.delta_weight()),
            Adapter::Svd(a) => Ok(a.delta_weight()),
            Adapter::LoraTrf(_) => Err(AdapterError::NotMergeable {
                method: "loratrf",
                reason: "its filter gate depends on the input, so it is no fixed weight update",
            }),
            Adapter::TriAdapt(a) => Ok(a.delta_weight()),
            Adapter::AdaLora(a) => Ok(a.delta_weight()),
        }
    }

    /// Trainable scalars held by the adapter.
    pub fn num_trainable(&self) -> usize {
        match self {
            Adapter::LowRank(a) => a.num_trainable(),
            Adapter::Svd(a) => a.num_trainable(),
            Adapter::LoraTrf(a) => a.num_trainable(),
            Adapter::TriAdapt(a) => a.num_trainable(),
            Adapter::AdaLora(a) => a.num_trainable(),
        }
    }

    /// Every tensor of the adapter with its saved name, in a fixed order.
    pub fn named_params_mut(&mut self) -> Vec<NamedParam<'_>> {
        let p = |name: &str, param, trainable| NamedParam {
            name: name.to_string(),
            param,
            trainable,
        };
        match self {
            Adapter::LowRank(a) => {
                let mut v = vec![
                    p("lora_A.weight", &mut a.lora_a, true),
                    p("lora_B.weight", &mut a.lora_b, true),
                ];
                if let Some(c) = &mut a.transform.c {
                    v.push(p("mtlora_C.weight", c, true));
                }
                if let Some(d) = &mut a.transform.d {
                    v.push(p("mtlora_D.weight", d, true));
                }
                v
            }
            Adapter::Svd(a) => vec![
                p("svda_U.weight", &mut a.u, false),
                p("svda_V.weight", &mut a.v, false),
                p("svda_sigma0.weight", &mut a.sigma0, false),
                p("svda_sigma.weight", &mut a.sigma, true),
                p("svda_scale.weight", &mut a.scale, true),
            ],
            Adapter::LoraTrf(a) => vec![
                p("lora_A.weight", &mut a.lora.lora_a, true),
                p("lora_B.weight", &mut a.lora.lora_b, true),
                p("loratrf_task.weight", &mut a.task, true),
                p("loratrf_C.weight", &mut a.filter_c, true),
                p("loratrf_D.weight", &mut a.filter_d, true),
            ],
            Adapter::AdaLora(a) => vec![
                p("lora_A.weight", &mut a.lora_a, true),
                p("lora_B.weight", &mut a.lora_b, true),
                p("lora_E.weight", &mut a.lora_e, true),
            ],
            Adapter::TriAdapt(a) => {
                let mut v = Vec::new();
                let blocks = a.a_blocks.iter_mut().zip(a.b_blocks.iter_mut());
                for (i, (pa, pb)) in blocks.enumerate() {
                    v.push(p(&format!("triadapt_A.{i}.weight"), pa, true));
                    v.push(p(&format!("triadapt_B.{i}.weight"), pb, true));
                }
                let strips = a.strips.rows.iter_mut().zip(a.strips.cols.iter_mut());
                for (i, (pr, pc)) in strips.enumerate() {
                    v.push(p(&format!("triadapt_Crow.{i}.weight"), pr, true));
                    v.push(p(&format!("triadapt_Ccol.{i}.weight"), pc, true));
                }
                if let Some(c) = &mut a.full {
                    v.push(p("triadapt_C.weight", c, true));
                }
                v
            }
        }
    }

    /// `(name, value)` of every tensor, the order of [`Adapter::named_params_mut`].
    pub fn named_tensors(&self) -> Vec<(String, Tensor<2>)> {
        // Cloning a module clones tensor handles only (no data copy).
        let mut copy = self.clone();
        copy.named_params_mut()
            .into_iter()
            .map(|n| (n.name, n.param.val()))
            .collect()
    }
}

/// A linear layer `y = x W0 + b` (`W0: [d_in, d_out]`, burn layout) with an optional adapter.
///
/// The base weight and bias are frozen once an adapter is attached; only adapter parameters
/// receive gradients. `merged` means `ΔW` has been folded into the stored weight, so the
/// forward skips the adapter; `enabled = false` runs the base alone.
#[derive(Module, Debug)]
pub struct AdaptedLinear {
    /// `W0: [d_in, d_out]` (or `W0 + ΔW` while merged).
    pub weight: Param<Tensor<2>>,
    /// `b: [d_out]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// The attached adapter, if any.
    pub adapter: Option<Adapter>,
    /// Whether `ΔW` is folded into `weight`.
    pub merged: bool,
    /// Whether the adapter contributes to the forward.
    pub enabled: bool,
    /// Whether the base weight and bias are trainable (set by [`Self::freeze_base`] /
    /// [`Self::unfreeze_base`]; burn does not expose a parameter's gradient setting on a
    /// device without autodiff, so the layer keeps it for reports).
    pub base_trainable: bool,
    /// The frozen base packed for the CPU fast path (`peftlab_linalg::frozen`): made on first
    /// use, re-made whenever `weight` is another tensor, dropped by merge/unmerge.
    #[module(skip)]
    pub packed: FrozenPack,
}

impl AdaptedLinear {
    /// A new layer initialized as burn's `nn::Linear` (`d_in → d_out`, with bias).
    pub fn new(d_in: usize, d_out: usize, bias: bool, device: &Device) -> Self {
        Self::from_linear(LinearConfig::new(d_in, d_out).with_bias(bias).init(device))
    }

    /// Wrap an existing burn `Linear` (row layout, `weight: [d_in, d_out]`).
    pub fn from_linear(linear: Linear) -> Self {
        Self {
            weight: linear.weight,
            bias: linear.bias,
            adapter: None,
            merged: false,
            enabled: true,
            base_trainable: true,
            packed: FrozenPack::new(),
        }
    }

    /// `(d_in, d_out)`.
    pub fn dims(&self) -> (usize, usize) {
        let [d_in, d_out] = self.weight.dims();
        (d_in, d_out)
    }

    /// `x: [..., d_in]` → `[..., d_out]`: base plus the factored adapter update.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let bias = self.bias.as_ref().map(Param::val);
        let base = self
            .packed
            .linear(x.clone(), &self.weight.val(), bias.as_ref());
        match &self.adapter {
            Some(adapter) if self.enabled && !self.merged => {
                let delta = adapter.forward(x, &base);
                base + delta
            }
            _ => base,
        }
    }

    /// Attach `adapter`, freezing the base weight and bias. Errors if one is attached already.
    pub fn attach(&mut self, adapter: Adapter, path: &str) -> Result<(), AdapterError> {
        if self.adapter.is_some() {
            return Err(AdapterError::MergeState {
                module: path.to_string(),
                reason: "an adapter is already attached".into(),
            });
        }
        self.freeze_base();
        self.adapter = Some(adapter);
        self.merged = false;
        self.enabled = true;
        Ok(())
    }

    /// Stop gradients to the base weight and bias.
    pub fn freeze_base(&mut self) {
        self.weight = self.weight.clone().set_require_grad(false);
        self.bias = self.bias.take().map(|b| b.set_require_grad(false));
        self.base_trainable = false;
    }

    /// Let the base weight and bias train (full fine-tuning, `modules_to_save` heads).
    pub fn unfreeze_base(&mut self) {
        self.weight = self.weight.clone().set_require_grad(true);
        self.bias = self.bias.take().map(|b| b.set_require_grad(true));
        self.base_trainable = true;
    }

    /// Fold `ΔW` into the weight. `safe` reads the result back and refuses (leaving the layer
    /// unchanged) if it contains NaN or ±inf. Merging twice is a no-op.
    pub fn merge(&mut self, safe: bool, path: &str) -> Result<(), AdapterError> {
        let Some(adapter) = &self.adapter else {
            return Ok(());
        };
        if self.merged {
            return Ok(());
        }
        let delta = adapter.delta_weight()?.detach();
        let merged = (self.weight.val() + delta).detach();
        if safe && !all_finite(&merged) {
            return Err(AdapterError::NonFiniteMerge {
                module: path.to_string(),
            });
        }
        self.set_weight(merged);
        self.merged = true;
        Ok(())
    }

    /// Take `ΔW` back out of the weight. Unmerging an unmerged layer is a no-op.
    pub fn unmerge(&mut self) -> Result<(), AdapterError> {
        let Some(adapter) = &self.adapter else {
            return Ok(());
        };
        if !self.merged {
            return Ok(());
        }
        let delta = adapter.delta_weight()?.detach();
        let restored = (self.weight.val() - delta).detach();
        self.set_weight(restored);
        self.merged = false;
        Ok(())
    }

    fn set_weight(&mut self, value: Tensor<2>) {
        self.packed.invalidate();
        self.weight =
            Param::initialized(self.weight.id, value).set_require_grad(self.base_trainable);
    }

    /// Trainable scalars of the adapter (0 without one).
    pub fn num_adapter_params(&self) -> usize {
        self.adapter.as_ref().map_or(0, Adapter::num_trainable)
    }

    /// Scalars of the base weight and bias.
    pub fn num_base_params(&self) -> usize {
        let (i, o) = self.dims();
        i * o + self.bias.as_ref().map_or(0, |b| b.dims()[0])
    }
}

fn all_finite(t: &Tensor<2>) -> bool {
    t.clone()
        .is_finite()
        .all()
        .into_data()
        .try_to_vec::<bool>()
        .is_ok_and(|v| v.iter().all(|b| *b))
}
