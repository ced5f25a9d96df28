//! Attaching adapters to a model by module path, merging, and the trainable-parameter report.

use std::fmt;

use burn::module::Module;
use peftlab_linalg::init::SeededRng;
use serde::{Deserialize, Serialize};

use crate::AdapterError;
use crate::adalora::{AdaLoraAdapter, AdaLoraConfig};
use crate::linear::{AdaptedLinear, Adapter};
use crate::lora::LoraConfig;
use crate::loratrf::{LoraTrfAdapter, LoraTrfConfig};
use crate::lowrank::LowRankAdapter;
use crate::mtlora::MtLoraConfig;
use crate::svd_adapt::{SvdAdaptConfig, SvdAdapter};
use crate::target::{ModuleSelector, Targeting};
use crate::triadapt::{TriAdaptAdapter, TriAdaptConfig};

/// A model (or part of one) whose adaptable linear layers can be reached by dotted path.
///
/// Implement it by calling the children with [`child_path`]; [`AdaptedLinear`] implements it as
/// a leaf. Paths follow the Hugging Face checkpoint names (`encoder.layer.0.attention.self.query`)
/// so that PEFT `target_modules` lists work unchanged.
pub trait AdapterHost {
    /// Call `f(path, layer)` on every adaptable linear layer, in a fixed order.
    fn for_each_linear(&self, prefix: &str, f: &mut dyn FnMut(&str, &AdaptedLinear));
    /// Call `f(path, layer)` mutably on every adaptable linear layer, in the same order.
    fn for_each_linear_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut AdaptedLinear));
}

impl AdapterHost for AdaptedLinear {
    fn for_each_linear(&self, prefix: &str, f: &mut dyn FnMut(&str, &AdaptedLinear)) {
        f(prefix, self)
    }
    fn for_each_linear_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut AdaptedLinear)) {
        f(prefix, self)
    }
}

/// `prefix.name`, or `name` at the root.
pub fn child_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Which method to attach, with its configuration. Serialized with a `method` tag.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum AdapterConfig {
    /// LoRA.
    Lora(LoraConfig),
    /// MTLoRA.
    Mtlora(MtLoraConfig),
    /// SVD adaptation (inferred parameterization).
    Svda(SvdAdaptConfig),
    /// LoRATRF (inferred form).
    Loratrf(LoraTrfConfig),
    /// TriAdaptLoRA.
    Triadaptlora(TriAdaptConfig),
    /// AdaLoRA.
    Adalora(AdaLoraConfig),
}

impl AdapterConfig {
    /// Method name as used in configs and tables.
    pub fn method(&self) -> &'static str {
        match self {
            AdapterConfig::Lora(_) => "lora",
            AdapterConfig::Mtlora(_) => "mtlora",
            AdapterConfig::Svda(_) => "svda",
            AdapterConfig::Loratrf(_) => "loratrf",
            AdapterConfig::Triadaptlora(_) => "triadaptlora",
            AdapterConfig::Adalora(_) => "adalora",
        }
    }

    /// Revision of this method's implementation, raised when a fix changes what training with
    /// an unchanged config produces, so that run records of the old code are not mistaken for
    /// runs of the current one (`peftlab-train` stores it in each record and retrains on a
    /// mismatch). History: AdaLoRA 2 — the orthogonality regularizer divided by `M` matrices
    /// instead of PEFT's `2M` tensors (twice PEFT's weight); AdaLoRA 3 and TriAdaptLoRA with
    /// sensitivity importance 2 — the sensitivity `|w · g|` is taken after the optimizer step
    /// from the step's accumulated, clipped gradient, as PEFT's loop does (before: the weights
    /// before the step and the last micro-batch's unclipped gradient). Every other method
    /// (and TriAdaptLoRA with Frobenius importance, which reads no gradient): 1.
    pub fn revision(&self) -> u32 {
        match self {
            AdapterConfig::Adalora(_) => 3,
            AdapterConfig::Triadaptlora(c)
                if c.importance == crate::triadapt::TriImportance::Sensitivity =>
            {
                2
            }
            _ => 1,
        }
    }

    /// A config from a partial description such as a TOML table: `method` plus any keys of that
    /// method's config (PEFT names); keys left out take the method's defaults (serde alone would
    /// demand every field). Unknown or mistyped keys are errors naming the key.
    pub fn from_value(v: &serde_json::Value) -> Result<Self, AdapterError> {
        use serde_json::Value;
        let bad = |key: &str, reason: String| AdapterError::Config {
            key: format!("adapter.{key}"),
            reason,
        };
        let obj = v
            .as_object()
            .ok_or_else(|| bad("", "must be a table".into()))?;
        let field = |k: &str| -> Result<Value, AdapterError> {
            obj.get(k)
                .cloned()
                .ok_or_else(|| bad(k, "missing (required for this method)".into()))
        };
        fn typed<T: serde::de::DeserializeOwned>(k: &str, v: Value) -> Result<T, AdapterError> {
            serde_json::from_value(v).map_err(|e| AdapterError::Config {
                key: format!("adapter.{k}"),
                reason: e.to_string(),
            })
        }
        let method = obj.get("method").and_then(Value::as_str).ok_or_else(|| {
            bad(
                "method",
                "missing: lora, mtlora, svda, loratrf, triadaptlora or adalora".into(),
            )
        })?;
        let targets = || typed::<ModuleSelector>("target_modules", field("target_modules")?);
        let r = || typed::<usize>("r", field("r")?);
        let template = match method {
            "lora" => AdapterConfig::Lora(LoraConfig::new(r()?, targets()?)),
            "mtlora" => AdapterConfig::Mtlora(MtLoraConfig::new(
                r()?,
                typed("structure", field("structure")?)?,
                targets()?,
            )),
            "svda" => AdapterConfig::Svda(SvdAdaptConfig::new(targets()?)),
            "loratrf" => AdapterConfig::Loratrf(LoraTrfConfig::new(r()?, targets()?)),
            "triadaptlora" => AdapterConfig::Triadaptlora(TriAdaptConfig::new(targets()?)),
            "adalora" => AdapterConfig::Adalora(AdaLoraConfig::new(targets()?)),
            other => {
                return Err(bad(
                    "method",
                    format!(
                        "unknown method {other:?}: lora, mtlora, svda, loratrf, triadaptlora, adalora"
                    ),
                ));
            }
        };
        let mut full = serde_json::to_value(&template).map_err(|e| bad("", e.to_string()))?;
        let slots = full.as_object_mut().expect("configs serialize as objects");
        for (k, val) in obj {
            match slots.get_mut(k) {
                Some(slot) => *slot = val.clone(),
                None => {
                    let mut known: Vec<&String> = slots.keys().collect();
                    known.sort();
                    return Err(bad(
                        k,
                        format!("unknown key for {method} (known: {known:?})"),
                    ));
                }
            }
        }
        serde_json::from_value(full).map_err(|e| bad("", e.to_string()))
    }

    /// PEFT's `modules_to_save`: linear layers trained in full and saved with the adapter.
    pub fn modules_to_save(&self) -> &[String] {
        let m = match self {
            AdapterConfig::Lora(c) => &c.modules_to_save,
            AdapterConfig::Mtlora(c) => &c.modules_to_save,
            AdapterConfig::Svda(c) => &c.modules_to_save,
            AdapterConfig::Loratrf(c) => &c.modules_to_save,
            AdapterConfig::Triadaptlora(c) => &c.modules_to_save,
            AdapterConfig::Adalora(c) => &c.modules_to_save,
        };
        m.as_deref().unwrap_or(&[])
    }

    /// This config with `modules_to_save` replaced (`None` when `modules` is empty).
    pub fn with_modules_to_save(&self, modules: &[String]) -> Self {
        let m = (!modules.is_empty()).then(|| modules.to_vec());
        let mut c = self.clone();
        match &mut c {
            AdapterConfig::Lora(c) => c.modules_to_save = m,
            AdapterConfig::Mtlora(c) => c.modules_to_save = m,
            AdapterConfig::Svda(c) => c.modules_to_save = m,
            AdapterConfig::Loratrf(c) => c.modules_to_save = m,
            AdapterConfig::Triadaptlora(c) => c.modules_to_save = m,
            AdapterConfig::Adalora(c) => c.modules_to_save = m,
        }
        c
    }

    /// Whether the method's update can be folded into the base weight.
    pub fn mergeable(&self) -> bool {
        !matches!(self, AdapterConfig::Loratrf(_))
    }

    fn selectors(&self) -> (&ModuleSelector, Option<&ModuleSelector>) {
        match self {
            AdapterConfig::Lora(c) => (&c.target_modules, c.exclude_modules.as_ref()),
            AdapterConfig::Mtlora(c) => (&c.target_modules, c.exclude_modules.as_ref()),
            AdapterConfig::Svda(c) => (&c.target_modules, c.exclude_modules.as_ref()),
            AdapterConfig::Loratrf(c) => (&c.target_modules, c.exclude_modules.as_ref()),
            AdapterConfig::Triadaptlora(c) => (&c.target_modules, c.exclude_modules.as_ref()),
            AdapterConfig::Adalora(c) => (&c.target_modules, c.exclude_modules.as_ref()),
        }
    }

    fn build(
        &self,
        layer: &AdaptedLinear,
        path: &str,
        rng: &mut SeededRng,
    ) -> Result<Adapter, AdapterError> {
        let (d_in, d_out) = layer.dims();
        let w = layer.weight.val();
        let (device, dtype) = (w.device(), w.dtype());
        let spec = match self {
            AdapterConfig::Lora(c) => c.spec_for(path),
            AdapterConfig::Mtlora(c) => c.spec_for(path),
            AdapterConfig::Svda(c) => return Ok(Adapter::Svd(SvdAdapter::new(&w, c)?)),
            AdapterConfig::Loratrf(c) => {
                return Ok(Adapter::LoraTrf(LoraTrfAdapter::new(
                    c, d_in, d_out, &device, dtype, rng,
                )?));
            }
            AdapterConfig::Triadaptlora(c) => {
                return Ok(Adapter::TriAdapt(TriAdaptAdapter::new(
                    c, d_in, d_out, &device, dtype, rng,
                )?));
            }
            AdapterConfig::Adalora(c) => {
                return Ok(Adapter::AdaLora(AdaLoraAdapter::new(
                    c, d_in, d_out, &device, dtype, rng,
                )?));
            }
        };
        Ok(Adapter::LowRank(LowRankAdapter::new(
            &spec, d_in, d_out, &device, dtype, rng,
        )?))
    }
}

/// A per-module seed: the run seed mixed with a hash of the module path (FNV-1a), so that a
/// module's adapter does not change when other modules are added or removed.
pub fn module_seed(seed: u64, path: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    seed ^ h
}

/// What [`attach`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct AttachReport {
    /// Method name.
    pub method: &'static str,
    /// `(path, trainable adapter params)` for every adapted module, in model order.
    pub modules: Vec<(String, usize)>,
}

/// Attach the configured adapter to every targeted linear layer of `model`.
///
/// Every existing parameter of the model is frozen first (`Module::no_grad`, as PEFT freezes the
/// base model); only the new adapter parameters train. Unfreeze heads afterwards with
/// [`AdaptedLinear::unfreeze_base`]. Each module's adapter is initialized from [`module_seed`]`(seed, path)`, so the same seed
/// gives bit-identical adapters. Targets that match nothing are an error naming them, and the
/// model is left untouched in that case.
pub fn attach<M: Module + AdapterHost>(
    model: &mut M,
    config: &AdapterConfig,
    seed: u64,
) -> Result<AttachReport, AdapterError> {
    let (targets, exclude) = config.selectors();
    let targeting = Targeting::new(targets, exclude)?;
    let mut paths = Vec::new();
    model.for_each_linear("", &mut |p, _| paths.push(p.to_string()));
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    let selected: Vec<String> = targeting
        .select(&refs)?
        .into_iter()
        .map(str::to_string)
        .collect();
    for entry in config.modules_to_save() {
        if !refs.iter().any(|p| crate::target::suffix_match(p, entry)) {
            return Err(AdapterError::TargetNotFound {
                entry: entry.clone(),
                available: paths.clone(),
            });
        }
    }
    // Build every adapter first so that an error leaves the model untouched.
    let mut built = Vec::new();
    let mut error = None;
    model.for_each_linear("", &mut |p, layer| {
        if error.is_some() || !selected.iter().any(|s| s == p) {
            return;
        }
        if layer.adapter.is_some() {
            error = Some(AdapterError::MergeState {
                module: p.to_string(),
                reason: "an adapter is already attached".into(),
            });
            return;
        }
        let mut rng = SeededRng::new(module_seed(seed, p));
        match config.build(layer, p, &mut rng) {
            Ok(a) => built.push((p.to_string(), a)),
            Err(e) => error = Some(e),
        }
    });
    if let Some(e) = error {
        return Err(e);
    }
    *model = model.clone().no_grad();
    model.for_each_linear_mut("", &mut |_, layer| layer.freeze_base());
    let mut report = AttachReport {
        method: config.method(),
        modules: Vec::new(),
    };
    let mut built = built.into_iter().peekable();
    let mut error = None;
    model.for_each_linear_mut("", &mut |p, layer| {
        if built.peek().is_some_and(|(q, _)| q == p) {
            let (q, adapter) = built.next().expect("peeked");
            let n = adapter.num_trainable();
            match layer.attach(adapter, &q) {
                Ok(()) => report.modules.push((q, n)),
                Err(e) => error = error.take().or(Some(e)),
            }
        }
    });
    let heads = config.modules_to_save();
    model.for_each_linear_mut("", &mut |p, layer| {
        if heads.iter().any(|h| crate::target::suffix_match(p, h)) {
            layer.unfreeze_base();
        }
    });
    match error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// Merge every adapter into its base weight (`safe`: refuse non-finite results). Stops at the
/// first error, naming the module; layers merged before it stay merged.
pub fn merge_all<M: AdapterHost>(model: &mut M, safe: bool) -> Result<(), AdapterError> {
    let mut error = None;
    model.for_each_linear_mut("", &mut |p, layer| {
        if error.is_none() {
            error = layer.merge(safe, p).err();
        }
    });
    error.map_or(Ok(()), Err)
}

/// Take every merged adapter back out of its base weight.
pub fn unmerge_all<M: AdapterHost>(model: &mut M) -> Result<(), AdapterError> {
    let mut error = None;
    model.for_each_linear_mut("", &mut |_, layer| {
        if error.is_none() {
            error = layer.unmerge().err();
        }
    });
    error.map_or(Ok(()), Err)
}

/// Turn every adapter's contribution on or off (the base runs alone when off).
pub fn set_adapters_enabled<M: AdapterHost>(model: &mut M, enabled: bool) {
    model.for_each_linear_mut("", &mut |_, layer| layer.enabled = enabled);
}

/// Trainable vs total parameters, like PEFT's `print_trainable_parameters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamReport {
    /// Scalars that receive gradients.
    pub trainable: usize,
    /// All scalars of the model, adapters included.
    pub total: usize,
}

impl fmt::Display for ParamReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trainable params: {} || all params: {} || trainable%: {:.4}",
            self.trainable,
            self.total,
            100.0 * self.trainable as f64 / self.total.max(1) as f64
        )
    }
}

/// Trainable and total parameters of `model`.
///
/// `total` counts every float parameter (`Module::num_params`). `trainable` counts adapter
/// parameters plus the base parameters of linear layers left or made trainable
/// ([`AdaptedLinear::base_trainable`]); after [`attach`] everything else is frozen, so this is
/// exactly what receives gradients.
pub fn param_report<M: Module + AdapterHost>(model: &M) -> ParamReport {
    let mut trainable = 0;
    model.for_each_linear("", &mut |_, l| {
        trainable += l.num_adapter_params();
        if l.base_trainable {
            trainable += l.num_base_params();
        }
    });
    ParamReport {
        trainable,
        total: model.num_params(),
    }
}

/// Sum `f(adapter)` over every adapter for which it returns `Some`, with the count of terms —
/// what the allocators' regularizers add up. `None` when no adapter contributed.
pub fn sum_over_adapters<M: AdapterHost>(
    model: &M,
    f: impl Fn(&Adapter) -> Option<Result<burn::tensor::Tensor<1>, AdapterError>>,
) -> Result<Option<(burn::tensor::Tensor<1>, usize)>, AdapterError> {
    let mut total: Option<burn::tensor::Tensor<1>> = None;
    let mut n = 0usize;
    let mut error = None;
    model.for_each_linear("", &mut |_, l| {
        let Some(term) = l.adapter.as_ref().and_then(&f) else {
            return;
        };
        match term {
            Ok(t) => {
                n += 1;
                total = Some(match total.take() {
                    Some(acc) => acc + t,
                    None => t,
                });
            }
            Err(e) => error = error.take().or(Some(e)),
        }
    });
    match error {
        Some(e) => Err(e),
        None => Ok(total.map(|t| (t, n))),
    }
}

/// Implement [`AdapterHost`] for a struct whose adaptable layers are `AdaptedLinear` fields,
/// mapping each Hugging Face path (relative to the struct) to its field:
///
/// ```
/// use burn::module::Module;
/// use peftlab_adapters::{AdaptedLinear, adapter_host};
///
/// #[derive(Module, Debug)]
/// struct Attention {
///     query: AdaptedLinear,
///     value: AdaptedLinear,
/// }
/// adapter_host!(Attention {
///     "self.query" => query,
///     "self.value" => value,
/// });
/// ```
#[macro_export]
macro_rules! adapter_host {
    ($ty:ty { $($path:literal => $field:ident),* $(,)? }) => {
        impl $crate::AdapterHost for $ty {
            fn for_each_linear(
                &self,
                prefix: &str,
                f: &mut dyn FnMut(&str, &$crate::AdaptedLinear),
            ) {
                $( f(&$crate::child_path(prefix, $path), &self.$field); )*
            }
            fn for_each_linear_mut(
                &mut self,
                prefix: &str,
                f: &mut dyn FnMut(&str, &mut $crate::AdaptedLinear),
            ) {
                $( f(&$crate::child_path(prefix, $path), &mut self.$field); )*
            }
        }
    };
}
