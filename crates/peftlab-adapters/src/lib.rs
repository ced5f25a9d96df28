//! # peftlab-adapters — PEFT adapters for burn models
//!
//! Attach an adapter method to the linear layers of a model by path, train only the adapter,
//! merge it into the weights for inference and take it back out.
//!
//! | method | module | update |
//! |---|---|---|
//! | AdaLoRA | [`adalora`] | `ΔW = P diag(λ) Q · α/r`, budget masking |
//! | LoRA | [`lora`] | `ΔW = (α/r) · B A` |
//! | MTLoRA | [`mtlora`] | `ΔW = (α/r) · B T A`, `T` ∈ {SHIM, ICFM, CTCM, DTSM} |
//! | LoRATRF (inferred) | [`loratrf`] | LoRA + `β · D C (g · h0)`, `g = clamp(cos(h0, t), 0, 1)` (not mergeable) |
//! | TriAdaptLoRA | [`triadapt`] | `ΔW = (α/R) · B_cat C A_cat`, `C` in growing triangular strips |
//! | SVD adaptation (inferred) | [`svd_adapt`] | `W0 − U_r Σ_r V_rᵀ + diag(b) U_r diag(σ') V_rᵀ` |
//!
//! Shared machinery lives once: [`AdaptedLinear`] (frozen base + adapter, factored forward,
//! merge/unmerge), [`AdapterHost`] (reaching layers by path), [`target`] (PEFT's
//! `target_modules` semantics), [`attach`] / [`merge_all`] / [`param_report`].
//!
//! **Your own burn model**: replace each `burn::nn::Linear` field you want adaptable by
//! [`AdaptedLinear`] (`AdaptedLinear::from_linear(linear)` keeps its weights; `forward` has the
//! same signature) and implement [`AdapterHost`] with the [`adapter_host!`] macro (Hugging Face path → field),
//! or by hand for nested structs (see `tests/matrix/model.rs`). Every method then attaches
//! by path. peftlab does not use burn's built-in `Reparameterizer`, which forms the dense `ΔW`
//! on every forward (docs/decisions.md).
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use peftlab_adapters::lora::LoraConfig;
//! use peftlab_adapters::target::ModuleSelector;
//! use peftlab_adapters::{AdaptedLinear, AdapterConfig, attach, merge_all, param_report};
//!
//! let device = Device::default();
//! // A lone layer is a model whose only module path is "" (a model exposes its layers by
//! // Hugging Face paths through `AdapterHost`).
//! let mut layer = AdaptedLinear::new(16, 16, true, &device);
//! let config = AdapterConfig::Lora(LoraConfig::new(4, ModuleSelector::Regex(String::new())));
//! let report = attach(&mut layer, &config, 42)?;
//! assert_eq!(report.modules[0].1, 4 * (16 + 16)); // r (d_in + d_out)
//! assert_eq!(param_report(&layer).trainable, 128);
//! let y = layer.forward(Tensor::<2>::ones([2, 16], &device)); // base + factored update
//! assert_eq!(y.dims(), [2, 16]);
//! merge_all(&mut layer, true)?; // fold ΔW into the weight for inference
//! # Ok::<(), peftlab_adapters::AdapterError>(())
//! ```
#![warn(missing_docs)]

pub mod adalora;
pub mod error;
pub mod host;
pub mod io;
pub mod linear;
pub mod lora;
pub mod loratrf;
pub mod lowrank;
pub mod mtlora;
pub mod sensitivity;
pub mod svd_adapt;
pub mod target;
pub mod triadapt;

pub use error::AdapterError;
pub use host::{
    AdapterConfig, AdapterHost, AttachReport, ParamReport, attach, child_path, merge_all,
    module_seed, param_report, set_adapters_enabled, sum_over_adapters, unmerge_all,
};
pub use io::{LoadReport, load_adapter, load_adapter_without_heads, save_adapter};
pub use linear::{AdaptedLinear, Adapter, NamedParam};
