//! Saving and loading adapters on their own, in PEFT's two-file layout (docs/formats.md).
//!
//! `adapter_config.json` + `adapter_model.safetensors`. LoRA uses PEFT's exact format: config
//! `peft_type: "LORA"` with PEFT's field names, tensors
//! `base_model.model.<path>.lora_A.weight: [r, d_in]` and `.lora_B.weight: [d_out, r]`, so that an
//! adapter trained here loads in Python PEFT and one trained there loads here. MTLoRA uses
//! `peft_type: "MTLORA"` (a peftlab type: PEFT has none) with the same keys plus
//! `.mtlora_C.weight` / `.mtlora_D.weight: [r, r]`. Both configs carry a `peftlab` object
//! (version, git commit, method).
//!
//! Files are written to temporary names and renamed, so a failed save leaves no half-written
//! adapter; a failed load leaves the model untouched.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use burn::module::{Module, Param};
use burn::tensor::{DType, Tensor, TensorData};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::{Map, Value, json};

use crate::adalora::AdaLoraConfig;
use crate::linear::Adapter;
use crate::lora::LoraConfig;
use crate::loratrf::LoraTrfConfig;
use crate::mtlora::MtLoraConfig;
use crate::svd_adapt::{SvdAdaptConfig, SvdOption};
use crate::target::ModuleSelector;
use crate::triadapt::TriAdaptConfig;
use crate::{AdapterConfig, AdapterError, AdapterHost, attach};

/// Config file name.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// Weights file name.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// Prefix PEFT puts before module paths.
pub const KEY_PREFIX: &str = "base_model.model.";

/// What [`load_adapter`] found besides the weights. Unknown keys are also logged at `warn`
/// level (the `log` crate; the CLI prints them).
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// The configuration read.
    pub config: AdapterConfig,
    /// Config keys that were not understood and were ignored.
    pub unknown_keys: Vec<String>,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> AdapterError {
    AdapterError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// PEFT-style config JSON for `config`.
pub fn config_json(config: &AdapterConfig) -> Value {
    let provenance = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "git_commit": env!("PEFTLAB_GIT_COMMIT"),
        "method": config.method(),
    });
    let targets = |s: &ModuleSelector| serde_json::to_value(s).unwrap_or(Value::Null);
    match config {
        AdapterConfig::Lora(c) => json!({
            "peft_type": "LORA",
            "task_type": null,
            "r": c.r,
            "lora_alpha": c.lora_alpha,
            "lora_dropout": c.lora_dropout,
            "use_rslora": c.use_rslora,
            "target_modules": targets(&c.target_modules),
            "exclude_modules": c.exclude_modules.as_ref().map(targets),
            "bias": "none",
            "fan_in_fan_out": false,
            "modules_to_save": c.modules_to_save,
            "init_lora_weights": true,
            "rank_pattern": c.rank_pattern.clone().unwrap_or_default(),
            "alpha_pattern": c.alpha_pattern.clone().unwrap_or_default(),
            "use_dora": false,
            "inference_mode": true,
            "peftlab": provenance,
        }),
        AdapterConfig::Adalora(c) => json!({
            "peft_type": "ADALORA",
            "modules_to_save": config.modules_to_save(),
            "target_modules": targets(&c.target_modules),
            "exclude_modules": c.exclude_modules.as_ref().map(targets),
            "config": serde_json::to_value(c).unwrap_or(Value::Null),
            "peftlab": provenance,
        }),
        AdapterConfig::Triadaptlora(c) => json!({
            "peft_type": "TRIADAPTLORA",
            "modules_to_save": config.modules_to_save(),
            "target_modules": targets(&c.target_modules),
            "exclude_modules": c.exclude_modules.as_ref().map(targets),
            "config": serde_json::to_value(c).unwrap_or(Value::Null),
            "peftlab": provenance,
        }),
        AdapterConfig::Loratrf(c) => json!({
            "peft_type": "LORATRF",
            "modules_to_save": config.modules_to_save(),
            "r": c.r,
            "lora_alpha": c.lora_alpha,
            "lora_dropout": c.lora_dropout,
            "filter_rank": c.filter_rank,
            "beta": c.beta,
            "target_modules": targets(&c.target_modules),
            "exclude_modules": c.exclude_modules.as_ref().map(targets),
            "peftlab": provenance,
        }),
        AdapterConfig::Svda(c) => json!({
            "peft_type": "SVDA",
            "modules_to_save": config.modules_to_save(),
            "r": c.r,
            "option": c.option,
            "target_modules": targets(&c.target_modules),
            "exclude_modules": c.exclude_modules.as_ref().map(targets),
            "peftlab": provenance,
        }),
        AdapterConfig::Mtlora(c) => json!({
            "peft_type": "MTLORA",
            "modules_to_save": config.modules_to_save(),
            "r": c.r,
            "structure": c.structure.name(),
            "lora_alpha": c.lora_alpha,
            "lora_dropout": c.lora_dropout,
            "t_init": c.t_init,
            "a_init": c.a_init,
            "fused_qkv_modules": c.fused_qkv_modules,
            "target_modules": targets(&c.target_modules),
            "exclude_modules": c.exclude_modules.as_ref().map(targets),
            "peftlab": provenance,
        }),
    }
}

/// Write `dir/adapter_config.json` and `dir/adapter_model.safetensors` for every adapter in
/// `model`, as f32. The directory is created if needed, once everything to write is ready (a
/// failed save leaves no directory behind; each file goes to a temporary name, then is renamed).
pub fn save_adapter<M: AdapterHost>(
    model: &M,
    config: &AdapterConfig,
    dir: &Path,
) -> Result<(), AdapterError> {
    let mut entries: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut error = None;
    model.for_each_linear("", &mut |p, layer| {
        let Some(adapter) = &layer.adapter else {
            return;
        };
        for (suffix, t) in adapter.named_tensors() {
            match t.try_to_vec_as::<f32>() {
                Ok(v) => entries.push((
                    format!("{KEY_PREFIX}{p}.{suffix}"),
                    t.dims().to_vec(),
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                )),
                Err(e) => error = Some(format!("{p}.{suffix}: {e:?}")),
            }
        }
    });
    let heads = config.modules_to_save();
    model.for_each_linear("", &mut |p, layer| {
        if !heads.iter().any(|h| crate::target::suffix_match(p, h)) {
            return;
        }
        // PEFT stores a saved module's own tensors, torch layout: weight [out, in], bias [out]
        let w = layer.weight.val().transpose();
        let mut tensors = vec![("weight", w)];
        if let Some(b) = &layer.bias {
            let b = b.val();
            let n = b.dims()[0];
            tensors.push(("bias", b.reshape([1, n])));
        }
        for (name, t) in tensors {
            let shape = if name == "bias" {
                vec![t.dims()[1]]
            } else {
                t.dims().to_vec()
            };
            match t.try_to_vec_as::<f32>() {
                Ok(v) => entries.push((
                    format!("{KEY_PREFIX}{p}.{name}"),
                    shape,
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                )),
                Err(e) => error = Some(format!("{p}.{name}: {e:?}")),
            }
        }
    });
    if let Some(e) = error {
        return Err(io_err(dir, e));
    }
    if entries.is_empty() {
        return Err(AdapterError::Config {
            key: "model".into(),
            reason: "has no adapter to save".into(),
        });
    }
    let views = entries
        .iter()
        .map(|(k, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (k.clone(), v))
                .map_err(|e| io_err(dir, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let weights = safetensors::serialize(views, Some(metadata)).map_err(|e| io_err(dir, e))?;
    let mut cfg = config_json(config);
    if matches!(config, AdapterConfig::Triadaptlora(_)) {
        let mut sizes = Map::new();
        model.for_each_linear("", &mut |p, l| {
            if let Some(Adapter::TriAdapt(a)) = &l.adapter {
                sizes.insert(p.to_string(), json!(a.block_sizes()));
            }
        });
        cfg["block_sizes"] = Value::Object(sizes);
    }
    let config_text = serde_json::to_string_pretty(&cfg).map_err(|e| io_err(dir, e))?;
    // created only now: a save that fails above leaves no directory behind
    fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    write_atomic(&dir.join(WEIGHTS_FILE), &weights)?;
    write_atomic(&dir.join(CONFIG_FILE), config_text.as_bytes())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AdapterError> {
    let tmp: PathBuf = path.with_extension("tmp-peftlab");
    fs::write(&tmp, bytes).map_err(|e| io_err(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err(path, e)
    })
}

/// Known config keys per peft_type; anything else is reported in `unknown_keys`.
const LORA_KEYS: &[&str] = &[
    "peft_type",
    "task_type",
    "r",
    "lora_alpha",
    "lora_dropout",
    "use_rslora",
    "target_modules",
    "exclude_modules",
    "bias",
    "fan_in_fan_out",
    "modules_to_save",
    "init_lora_weights",
    "rank_pattern",
    "alpha_pattern",
    "use_dora",
    "inference_mode",
    "peftlab",
    "base_model_name_or_path",
    "revision",
    "layers_to_transform",
    "layers_pattern",
    "megatron_config",
    "megatron_core",
    "loftq_config",
    "layer_replication",
    "runtime_config",
    "lora_bias",
    "auto_mapping",
    "eva_config",
    "corda_config",
    "trainable_token_indices",
    "target_parameters",
    "qalora_group_size",
    "use_qalora",
    "arrow_config",
    "ensure_weight_tying",
    "alora_invocation_tokens",
    "peft_version",
];
const ADALORA_KEYS: &[&str] = &[
    "peft_type",
    "modules_to_save",
    "target_modules",
    "exclude_modules",
    "config",
    "peftlab",
];
const TRIADAPT_KEYS: &[&str] = &[
    "peft_type",
    "modules_to_save",
    "target_modules",
    "exclude_modules",
    "config",
    "block_sizes",
    "peftlab",
];
const LORATRF_KEYS: &[&str] = &[
    "peft_type",
    "modules_to_save",
    "r",
    "lora_alpha",
    "lora_dropout",
    "filter_rank",
    "beta",
    "target_modules",
    "exclude_modules",
    "peftlab",
];
const SVDA_KEYS: &[&str] = &[
    "peft_type",
    "modules_to_save",
    "r",
    "option",
    "target_modules",
    "exclude_modules",
    "peftlab",
];
const MTLORA_KEYS: &[&str] = &[
    "peft_type",
    "modules_to_save",
    "r",
    "structure",
    "lora_alpha",
    "lora_dropout",
    "t_init",
    "a_init",
    "target_modules",
    "exclude_modules",
    "peftlab",
    "fused_qkv_modules",
];

/// Parse an `adapter_config.json` value. Features peftlab does not implement are rejected with
/// an error naming the key; unknown keys are returned for the caller to warn about.
pub fn parse_config(v: &Value, file: &Path) -> Result<(AdapterConfig, Vec<String>), AdapterError> {
    let obj = v
        .as_object()
        .ok_or_else(|| io_err(file, "not a JSON object"))?;
    let key_err = |key: &str, reason: String| AdapterError::Config {
        key: format!("{}: {key}", file.display()),
        reason,
    };
    let get = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let num = |k: &str| get(k).and_then(Value::as_f64);
    let peft_type = get("peft_type").and_then(Value::as_str).unwrap_or("");
    let r_opt = get("r").map(|v| v.as_u64().map(|r| r as usize));
    let r_required = || match r_opt {
        Some(Some(r)) => Ok(r),
        _ => Err(key_err("r", "missing or not a positive integer".into())),
    };
    let targets: ModuleSelector = serde_json::from_value(
        get("target_modules")
            .cloned()
            .ok_or_else(|| key_err("target_modules", "missing".into()))?,
    )
    .map_err(|e| key_err("target_modules", e.to_string()))?;
    let exclude: Option<ModuleSelector> = get("exclude_modules")
        .map(|v| serde_json::from_value(v.clone()))
        .transpose()
        .map_err(|e| key_err("exclude_modules", e.to_string()))?;
    let unsupported = |k: &str, ok: &dyn Fn(&Value) -> bool, what: &str| match get(k) {
        Some(v) if !ok(v) => Err(key_err(k, format!("{v} is not supported ({what})"))),
        _ => Ok(()),
    };
    // A method config stored whole under one key (the peftlab-only formats).
    fn nested_in<C: serde::de::DeserializeOwned>(
        obj: &Map<String, Value>,
        key: &str,
        file: &Path,
    ) -> Result<C, AdapterError> {
        let err = |reason: String| AdapterError::Config {
            key: format!("{}: {key}", file.display()),
            reason,
        };
        let v = obj.get(key).cloned().ok_or_else(|| err("missing".into()))?;
        serde_json::from_value(v).map_err(|e| err(e.to_string()))
    }
    let (config, known) = match peft_type {
        "LORA" => {
            unsupported(
                "use_dora",
                &|v| v == &json!(false),
                "DoRA is not implemented",
            )?;
            unsupported(
                "bias",
                &|v| v == "none",
                "only bias = \"none\" is implemented",
            )?;
            // `fan_in_fan_out` only says how the base weight is stored (GPT-2's Conv1D keeps
            // [d_in, d_out]); LoRA's A [r, d_in] and B [d_out, r] are the same either way, and
            // every host hands its layers over in AdaptedLinear's [d_in, d_out] layout.
            unsupported(
                "fan_in_fan_out",
                &|v| v.is_boolean(),
                "must be true or false",
            )?;
            unsupported(
                "layers_to_transform",
                &|_| false,
                "layer selection is not implemented",
            )?;
            let c = LoraConfig::new(r_required()?, targets)
                .with_lora_alpha(num("lora_alpha").unwrap_or(8.0))
                .with_lora_dropout(num("lora_dropout").unwrap_or(0.0))
                .with_use_rslora(get("use_rslora").and_then(Value::as_bool).unwrap_or(false))
                .with_rank_pattern(
                    get("rank_pattern")
                        .filter(|v| v.as_object().is_some_and(|m| !m.is_empty()))
                        .map(|v| serde_json::from_value(v.clone()))
                        .transpose()
                        .map_err(|e| key_err("rank_pattern", e.to_string()))?,
                )
                .with_alpha_pattern(
                    get("alpha_pattern")
                        .filter(|v| v.as_object().is_some_and(|m| !m.is_empty()))
                        .map(|v| serde_json::from_value(v.clone()))
                        .transpose()
                        .map_err(|e| key_err("alpha_pattern", e.to_string()))?,
                )
                .with_exclude_modules(exclude);
            (AdapterConfig::Lora(c), LORA_KEYS)
        }
        "MTLORA" => {
            let field = |k: &str| get(k).cloned().ok_or_else(|| key_err(k, "missing".into()));
            let structure = match field("structure")?.as_str() {
                Some("shim") => peftlab_linalg::transform::TransformKind::Shim,
                Some("icfm") => peftlab_linalg::transform::TransformKind::Icfm,
                Some("ctcm") => peftlab_linalg::transform::TransformKind::Ctcm,
                Some("dtsm") => peftlab_linalg::transform::TransformKind::Dtsm,
                Some("identity") => peftlab_linalg::transform::TransformKind::Identity,
                other => return Err(key_err("structure", format!("unknown structure {other:?}"))),
            };
            let mut c = MtLoraConfig::new(r_required()?, structure, targets)
                .with_lora_alpha(num("lora_alpha").unwrap_or(16.0))
                .with_lora_dropout(num("lora_dropout").unwrap_or(0.0))
                .with_exclude_modules(exclude);
            if let Some(v) = get("t_init") {
                c.t_init = serde_json::from_value(v.clone())
                    .map_err(|e| key_err("t_init", e.to_string()))?;
            }
            if let Some(v) = get("fused_qkv_modules") {
                c.fused_qkv_modules = Some(
                    serde_json::from_value(v.clone())
                        .map_err(|e| key_err("fused_qkv_modules", e.to_string()))?,
                );
            }
            if let Some(v) = get("a_init") {
                c.a_init = serde_json::from_value(v.clone())
                    .map_err(|e| key_err("a_init", e.to_string()))?;
            }
            (AdapterConfig::Mtlora(c), MTLORA_KEYS)
        }
        "ADALORA" => {
            let mut c: AdaLoraConfig = nested_in(obj, "config", file)?;
            c.target_modules = targets;
            c.exclude_modules = exclude;
            (AdapterConfig::Adalora(c), ADALORA_KEYS)
        }
        "TRIADAPTLORA" => {
            let mut c: TriAdaptConfig = nested_in(obj, "config", file)?;
            // the top-level selectors are authoritative, as for the other methods
            c.target_modules = targets;
            c.exclude_modules = exclude;
            (AdapterConfig::Triadaptlora(c), TRIADAPT_KEYS)
        }
        "LORATRF" => {
            let filter_rank = match get("filter_rank") {
                None => None,
                Some(v) => Some(
                    v.as_u64()
                        .ok_or_else(|| key_err("filter_rank", "not a positive integer".into()))?
                        as usize,
                ),
            };
            let c = LoraTrfConfig::new(r_required()?, targets)
                .with_lora_alpha(num("lora_alpha").unwrap_or(8.0))
                .with_lora_dropout(num("lora_dropout").unwrap_or(0.0))
                .with_filter_rank(filter_rank)
                .with_beta(num("beta").unwrap_or(1.0))
                .with_exclude_modules(exclude);
            (AdapterConfig::Loratrf(c), LORATRF_KEYS)
        }
        "SVDA" => {
            let r = match r_opt {
                None => None,
                Some(Some(r)) => Some(r),
                Some(None) => return Err(key_err("r", "not a positive integer".into())),
            };
            let option = match get("option") {
                Some(v) => serde_json::from_value(v.clone())
                    .map_err(|e| key_err("option", e.to_string()))?,
                None => SvdOption::A,
            };
            let c = SvdAdaptConfig::new(targets)
                .with_r(r)
                .with_option(option)
                .with_exclude_modules(exclude);
            (AdapterConfig::Svda(c), SVDA_KEYS)
        }
        other => {
            return Err(key_err(
                "peft_type",
                format!(
                    "{other:?} is not supported (LORA, MTLORA, SVDA, LORATRF, TRIADAPTLORA, ADALORA)"
                ),
            ));
        }
    };
    // `modules_to_save` is a top-level key for every method (PEFT's place for it)
    let heads: Vec<String> = get("modules_to_save")
        .map(|v| serde_json::from_value(v.clone()))
        .transpose()
        .map_err(|e| key_err("modules_to_save", e.to_string()))?
        .unwrap_or_default();
    let config = config.with_modules_to_save(&heads);
    // Keys this version does not know are harmless while they hold their "off" value (newer PEFT
    // versions add a null/false field per feature); with any other value they are reported.
    let is_off = |v: &Value| match v {
        Value::Null | Value::Bool(false) => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    let unknown = obj
        .iter()
        .filter(|(k, v)| !known.contains(&k.as_str()) && !is_off(v))
        .map(|(k, _)| k.clone())
        .collect();
    Ok((config, unknown))
}

/// Attach the adapter saved in `dir` to `model` and load its weights.
///
/// Every tensor the config implies must be present with the right shape, and every tensor in
/// the file must belong to an adapted module; otherwise an error names the file and key and the
/// model is left untouched. f16/bf16/f64 tensors are converted to the layer's dtype.
pub fn load_adapter<M: Module + AdapterHost>(
    model: &mut M,
    dir: &Path,
) -> Result<LoadReport, AdapterError> {
    load(model, dir, true)
}

/// [`load_adapter`] without the saved `modules_to_save` layers: the adapter starts another task
/// whose head differs (MRPC from the MNLI adapter). The heads' tensors in the file are skipped,
/// the model's own heads are left as they are, and the reported config has no
/// `modules_to_save`.
pub fn load_adapter_without_heads<M: Module + AdapterHost>(
    model: &mut M,
    dir: &Path,
) -> Result<LoadReport, AdapterError> {
    load(model, dir, false)
}

fn load<M: Module + AdapterHost>(
    model: &mut M,
    dir: &Path,
    with_heads: bool,
) -> Result<LoadReport, AdapterError> {
    let cfg_path = dir.join(CONFIG_FILE);
    let text = fs::read_to_string(&cfg_path).map_err(|e| io_err(&cfg_path, e))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| io_err(&cfg_path, e))?;
    let (config, unknown_keys) = parse_config(&value, &cfg_path)?;
    let saved_heads = config.modules_to_save().to_vec();
    let config = if with_heads {
        config
    } else {
        config.with_modules_to_save(&[])
    };
    // a tensor of a saved head that is deliberately not loaded
    let skipped_head = |key: &str| {
        !with_heads
            && key
                .strip_prefix(KEY_PREFIX)
                .and_then(|k| k.rsplit_once('.'))
                .is_some_and(|(p, _)| {
                    saved_heads
                        .iter()
                        .any(|h| crate::target::suffix_match(p, h))
                })
    };
    let w_path = dir.join(WEIGHTS_FILE);
    let bytes = fs::read(&w_path).map_err(|e| io_err(&w_path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| io_err(&w_path, e))?;

    let mut candidate = model.clone();
    attach(&mut candidate, &config, 0)?;
    if matches!(config, AdapterConfig::Triadaptlora(_)) {
        grow_to_saved_blocks(&mut candidate, &value, &cfg_path)?;
    }
    let mut used = std::collections::HashSet::new();
    let mut error: Option<AdapterError> = None;
    candidate.for_each_linear_mut("", &mut |p, layer| {
        let Some(adapter) = &mut layer.adapter else {
            return;
        };
        for named in adapter.named_params_mut() {
            if error.is_some() {
                return;
            }
            let (param, trainable) = (named.param, named.trainable);
            let key = format!("{KEY_PREFIX}{p}.{}", named.name);
            let result = read_tensor(&st, &key, &w_path, param);
            match result {
                Ok(t) => {
                    *param = Param::initialized(param.id, t).set_require_grad(trainable);
                    used.insert(key);
                }
                Err(e) => error = Some(e),
            }
        }
    });
    if let Some(e) = error {
        return Err(e);
    }
    let heads = config.modules_to_save().to_vec();
    candidate.for_each_linear_mut("", &mut |p, layer| {
        if error.is_some() || !heads.iter().any(|h| crate::target::suffix_match(p, h)) {
            return;
        }
        let key = format!("{KEY_PREFIX}{p}.weight");
        let like = Param::from_tensor(layer.weight.val().transpose());
        match read_tensor(&st, &key, &w_path, &like) {
            Ok(w) => {
                layer.weight =
                    Param::initialized(layer.weight.id, w.transpose()).set_require_grad(true);
                used.insert(key);
            }
            Err(e) => error = Some(e),
        }
        if let Some(b) = &mut layer.bias {
            let key = format!("{KEY_PREFIX}{p}.bias");
            let n = b.dims()[0];
            let like = Param::from_tensor(b.val().reshape([1, n]));
            match st.tensor(&key) {
                Ok(v) if v.shape() == [n] => {
                    let data = TensorData::from_bytes_vec(v.data().to_vec(), [n], DType::F32);
                    let t = Tensor::<1>::from_data(data, (&like.val().device(), DType::F32))
                        .cast(like.val().dtype());
                    *b = Param::initialized(b.id, t).set_require_grad(true);
                    used.insert(key);
                }
                _ => {
                    error = Some(AdapterError::File {
                        path: w_path.clone(),
                        reason: format!("missing or mis-shaped tensor {key:?} (want [{n}] f32)"),
                    })
                }
            }
        }
    });
    if let Some(e) = error {
        return Err(e);
    }
    if let Some(extra) = st
        .names()
        .into_iter()
        .find(|n| !used.contains(*n) && !skipped_head(n))
    {
        return Err(AdapterError::File {
            path: w_path,
            reason: format!("tensor {extra:?} belongs to no adapted module of this model"),
        });
    }
    for key in &unknown_keys {
        log::warn!(
            "{}: ignoring unknown config key {key:?} (set by a newer PEFT or peftlab?)",
            cfg_path.display()
        );
    }
    *model = candidate;
    Ok(LoadReport {
        config,
        unknown_keys,
    })
}

fn read_tensor(
    st: &SafeTensors<'_>,
    key: &str,
    file: &Path,
    like: &Param<Tensor<2>>,
) -> Result<Tensor<2>, AdapterError> {
    let view = st.tensor(key).map_err(|_| AdapterError::File {
        path: file.to_path_buf(),
        reason: format!("missing tensor {key:?}"),
    })?;
    let want = like.dims();
    if view.shape() != want.as_slice() {
        return Err(AdapterError::Shape {
            what: format!("{}: {key}", file.display()),
            expected: format!("{want:?}"),
            got: format!("{:?}", view.shape()),
        });
    }
    let dtype = match view.dtype() {
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::F64 => DType::F64,
        other => {
            return Err(AdapterError::File {
                path: file.to_path_buf(),
                reason: format!("tensor {key:?} has unsupported dtype {other:?}"),
            });
        }
    };
    let current = like.val();
    let data = TensorData::from_bytes_vec(view.data().to_vec(), want, dtype);
    let t = Tensor::<2>::from_data(data, (&current.device(), dtype)).cast(current.dtype());
    Ok(t)
}

/// Grow every TriAdaptLoRA adapter of a freshly attached model to the block sizes recorded in
/// the config (`block_sizes: {path: [k_1, …]}`), so that the saved strips fit.
fn grow_to_saved_blocks<M: AdapterHost>(
    model: &mut M,
    config: &Value,
    file: &Path,
) -> Result<(), AdapterError> {
    let sizes = config
        .get("block_sizes")
        .and_then(Value::as_object)
        .ok_or_else(|| AdapterError::Config {
            key: format!("{}: block_sizes", file.display()),
            reason: "missing".into(),
        })?;
    let mut rng = peftlab_linalg::init::SeededRng::new(0);
    let mut error = None;
    model.for_each_linear_mut("", &mut |p, l| {
        let Some(Adapter::TriAdapt(a)) = &mut l.adapter else {
            return;
        };
        if error.is_some() {
            return;
        }
        let want: Option<Vec<usize>> = sizes
            .get(p)
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        let Some(want) = want else {
            error = Some(AdapterError::Config {
                key: format!("{}: block_sizes.{p}", file.display()),
                reason: "missing or not a list of block sizes".into(),
            });
            return;
        };
        if want.first() != a.block_sizes().first() {
            error = Some(AdapterError::Config {
                key: format!("{}: block_sizes.{p}", file.display()),
                reason: format!("first block {:?} disagrees with init_rank", want.first()),
            });
            return;
        }
        for &k in &want[1..] {
            if let Err(e) = a.grow(k, peftlab_linalg::strips::StripInit::Zeros, &mut rng) {
                error = Some(e);
                return;
            }
        }
    });
    error.map_or(Ok(()), Err)
}
