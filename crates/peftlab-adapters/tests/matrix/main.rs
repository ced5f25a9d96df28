//! The same behaviour matrix for every adapter method, on a tiny transformer block.
//!
//! Tolerances (f32 on the default backend, activations O(1), d ≤ 24, 2 layers): merged vs
//! unmerged outputs within `1e-4` absolute; unmerge restores weights within `1e-6 · (1 + |W|max)`;
//! identity at init and disabled adapters are exact (the update adds exact zeros / is skipped).
//! Finite-difference checks run in f64 where the backend has it (`h = 1e-6`, `1e-6` relative).

mod adalora;
mod fused;
mod io;
mod model;
mod peft;
mod triadapt;

use burn::module::{Module, Param};
use burn::tensor::{DType, Device, Tensor, TensorData};
use model::TinyEncoder;
use peftlab_adapters::adalora::AdaLoraConfig;
use peftlab_adapters::lora::LoraConfig;
use peftlab_adapters::loratrf::LoraTrfConfig;
use peftlab_adapters::mtlora::MtLoraConfig;
use peftlab_adapters::svd_adapt::{SvdAdaptConfig, SvdOption};
use peftlab_adapters::target::ModuleSelector;
use peftlab_adapters::triadapt::{TriAdaptConfig, TriTransform};
use peftlab_adapters::{
    AdaptedLinear, Adapter, AdapterConfig, AdapterError, AdapterHost, attach, merge_all,
    param_report, set_adapters_enabled, unmerge_all,
};
use peftlab_linalg::init::{Fill, SeededRng};
use peftlab_linalg::transform::TransformKind;
use proptest::prelude::*;

const SIX: [&str; 6] = [
    "query",
    "key",
    "value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
];

fn device() -> Device {
    Device::default()
}

fn values<const D: usize>(t: &Tensor<D>) -> Vec<f64> {
    t.try_to_vec_as::<f64>().unwrap()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Every method under test, configured at rank `r` on `targets`.
fn methods(r: usize, targets: &[&str]) -> Vec<AdapterConfig> {
    let sel = ModuleSelector::list(targets);
    let mut v = vec![AdapterConfig::Lora(
        LoraConfig::new(r, sel.clone()).with_lora_alpha(16.0),
    )];
    for kind in [
        TransformKind::Shim,
        TransformKind::Icfm,
        TransformKind::Ctcm,
        TransformKind::Dtsm,
    ] {
        v.push(AdapterConfig::Mtlora(MtLoraConfig::new(
            r,
            kind,
            sel.clone(),
        )));
    }
    for option in [SvdOption::A, SvdOption::B] {
        v.push(AdapterConfig::Svda(
            SvdAdaptConfig::new(sel.clone())
                .with_r(Some(r))
                .with_option(option),
        ));
    }
    v.push(AdapterConfig::Loratrf(LoraTrfConfig::new(r, sel.clone())));
    for transform in [TriTransform::Triangular, TriTransform::Full] {
        v.push(AdapterConfig::Triadaptlora(
            TriAdaptConfig::new(sel.clone())
                .with_init_rank(r)
                .with_reference_rank(2 * r)
                .with_transform(transform),
        ));
    }
    v.push(AdapterConfig::Adalora(
        AdaLoraConfig::new(sel.clone())
            .with_init_r(r)
            .with_target_r(r.div_ceil(2)),
    ));
    v
}

/// Trainable scalars the config's formula gives for a `d_in → d_out` layer.
fn formula(cfg: &AdapterConfig, d_in: usize, d_out: usize) -> usize {
    match cfg {
        AdapterConfig::Lora(c) => c.r * (d_in + d_out),
        AdapterConfig::Mtlora(c) => c.r * (d_in + d_out) + c.structure.num_params(c.r),
        AdapterConfig::Svda(c) => c.r.unwrap_or(d_in.min(d_out)) + d_out,
        AdapterConfig::Loratrf(c) => {
            c.r * (d_in + d_out) + d_out + 2 * c.filter_rank.unwrap_or(c.r) * d_out
        }
        // one block of init_rank k: R(d_in + d_out) + 2k² (papers.md §4.6); a full T has k²
        AdapterConfig::Triadaptlora(c) => {
            let t = match c.transform {
                TriTransform::Triangular => 2 * c.init_rank * c.init_rank,
                TriTransform::Full => c.init_rank * c.init_rank,
            };
            c.init_rank * (d_in + d_out) + t
        }
        AdapterConfig::Adalora(c) => c.init_r * (d_in + d_out) + c.init_r,
    }
}

fn input(b: usize, t: usize, d: usize, seed: u64, device: &Device) -> Tensor<3> {
    let mut rng = SeededRng::new(seed);
    let v = Fill::Normal { std: 1.0 }.sample(b * t, d, &mut rng);
    Tensor::from_data(TensorData::new(v, [b, t, d]), device)
}

/// Add N(0, 0.1²) noise to every trainable adapter tensor so that `ΔW ≠ 0` (as after some
/// training).
fn perturb<M: AdapterHost>(model: &mut M, seed: u64) {
    let mut rng = SeededRng::new(seed);
    model.for_each_linear_mut("", &mut |_, layer| {
        let Some(adapter) = &mut layer.adapter else {
            return;
        };
        for n in adapter
            .named_params_mut()
            .into_iter()
            .filter(|n| n.trainable)
        {
            let [r, c] = n.param.dims();
            let v = n.param.val();
            let noise = Fill::Normal { std: 0.1 }.tensor(r, c, &mut rng, &v.device(), v.dtype());
            let moved = (v + noise).detach();
            *n.param = Param::initialized(n.param.id, moved).set_require_grad(true);
        }
    });
}

fn weights<M: AdapterHost>(model: &M) -> Vec<Vec<f64>> {
    let mut out = Vec::new();
    model.for_each_linear("", &mut |_, l| out.push(values(&l.weight.val())));
    out
}

#[test]
fn identity_at_init_and_disabled_equals_base() {
    let dev = device();
    for cfg in methods(4, &SIX) {
        let mut m = TinyEncoder::new(2, 16, 24, &dev);
        let x = input(2, 5, 16, 1, &dev);
        let base = values(&m.forward(x.clone()));
        attach(&mut m, &cfg, 7).unwrap();
        assert_eq!(
            values(&m.forward(x.clone())),
            base,
            "{}: ΔW = 0 at init",
            cfg.method()
        );
        perturb(&mut m, 3);
        assert_ne!(
            values(&m.forward(x.clone())),
            base,
            "{}: perturbed B changes the output",
            cfg.method()
        );
        set_adapters_enabled(&mut m, false);
        assert_eq!(
            values(&m.forward(x.clone())),
            base,
            "{}: disabled = base",
            cfg.method()
        );
    }
}

#[test]
fn merge_is_equivalent_idempotent_and_reversible() {
    let dev = device();
    for cfg in methods(4, &SIX) {
        let mut m = TinyEncoder::new(2, 16, 24, &dev);
        let w0 = weights(&m);
        attach(&mut m, &cfg, 11).unwrap();
        if !cfg.mergeable() {
            let err = merge_all(&mut m, true).unwrap_err();
            assert!(matches!(err, AdapterError::NotMergeable { .. }), "{err}");
            assert!(
                weights(&m) == w0,
                "{}: a refused merge changes nothing",
                cfg.method()
            );
            continue;
        }
        perturb(&mut m, 5);
        let x = input(2, 5, 16, 2, &dev);
        let unmerged = values(&m.forward(x.clone()));
        merge_all(&mut m, true).unwrap();
        let merged = values(&m.forward(x.clone()));
        assert!(
            max_abs_diff(&merged, &unmerged) <= 1e-4,
            "{}: merged ≠ unmerged ({})",
            cfg.method(),
            max_abs_diff(&merged, &unmerged)
        );
        let w_merged = weights(&m);
        assert_ne!(w_merged, w0, "{}: merge changed the weights", cfg.method());
        merge_all(&mut m, true).unwrap();
        assert_eq!(
            weights(&m),
            w_merged,
            "{}: merging twice = once",
            cfg.method()
        );
        unmerge_all(&mut m).unwrap();
        for (w, w0) in weights(&m).iter().zip(&w0) {
            let scale = 1.0 + w0.iter().fold(0.0f64, |a, x| a.max(x.abs()));
            assert!(
                max_abs_diff(w, w0) <= 1e-6 * scale,
                "{}: unmerge restores W0",
                cfg.method()
            );
        }
        assert!(
            max_abs_diff(&values(&m.forward(x)), &unmerged) <= 1e-4,
            "{}: merge+unmerge round trip",
            cfg.method()
        );
    }
}

/// The frozen base is packed once for the CPU fast path (`peftlab_linalg::frozen`); a merge,
/// an unmerge or a weight replaced behind the layer's back must never be served from the old
/// pack. Each forward below is compared with the same product computed from `weight.val()`.
#[test]
fn a_merged_unmerged_or_replaced_weight_is_never_served_from_a_stale_pack() {
    let dev = device();
    let mut m = TinyEncoder::new(1, 16, 24, &dev);
    attach(&mut m, &methods(4, &["query"])[0], 3).unwrap();
    perturb(&mut m, 9);
    let x = input(2, 5, 16, 4, &dev);
    let mut query = None;
    m.for_each_linear("", &mut |path, l| {
        if path.ends_with("query") {
            query = Some(l.clone());
        }
    });
    let mut layer = query.expect("a query layer");
    let reference = |l: &AdaptedLinear| {
        let base = x.clone().matmul(l.weight.val().unsqueeze::<3>())
            + l.bias.as_ref().unwrap().val().unsqueeze::<3>();
        match (&l.adapter, l.merged) {
            (Some(a), false) => values(&(base.clone() + a.forward(x.clone(), &base))),
            _ => values(&base),
        }
    };
    let unmerged = values(&layer.forward(x.clone()));
    assert!(max_abs_diff(&unmerged, &reference(&layer)) <= 1e-5);
    if cfg!(feature = "flex") {
        assert!(
            layer.packed.is_packed(),
            "the flex forward packs the frozen base"
        );
    }
    layer.merge(true, "query").unwrap();
    assert!(!layer.packed.is_packed(), "merge drops the pack");
    let merged = values(&layer.forward(x.clone()));
    assert!(
        max_abs_diff(&merged, &unmerged) <= 1e-4,
        "merged forward used the unmerged base ({})",
        max_abs_diff(&merged, &unmerged)
    );
    layer.unmerge().unwrap();
    assert!(max_abs_diff(&values(&layer.forward(x.clone())), &unmerged) <= 1e-4);

    // replaced without merge/unmerge (as a loaded record would): still the new weight
    let replaced = layer.weight.val() * 2.0;
    layer.weight = Param::initialized(layer.weight.id, replaced).set_require_grad(false);
    let got = values(&layer.forward(x.clone()));
    assert!(
        max_abs_diff(&got, &reference(&layer)) <= 1e-5,
        "a replaced weight was served from the old pack"
    );
}

#[test]
fn safe_merge_rejects_non_finite_and_leaves_weights() {
    let dev = device();
    for cfg in methods(2, &["query"])
        .into_iter()
        .filter(AdapterConfig::mergeable)
    {
        let mut m = TinyEncoder::new(1, 8, 8, &dev);
        attach(&mut m, &cfg, 1).unwrap();
        let before = weights(&m);
        m.for_each_linear_mut("", &mut |_, l| {
            let Some(adapter) = &mut l.adapter else {
                return;
            };
            let n = adapter
                .named_params_mut()
                .into_iter()
                .rfind(|n| n.trainable)
                .unwrap();
            let nan = Tensor::<2>::full(n.param.dims(), f32::NAN, &dev);
            *n.param = Param::initialized(n.param.id, nan);
        });
        let err = merge_all(&mut m, true).unwrap_err();
        assert!(
            matches!(&err, AdapterError::NonFiniteMerge { module } if module == "encoder.layer.0.attention.self.query"),
            "{err}"
        );
        assert_eq!(weights(&m), before);
        assert!(!m.layers[0].query.merged);
    }
}

#[test]
fn only_adapter_parameters_get_gradients() {
    let dev = device().autodiff();
    for cfg in methods(3, &SIX) {
        let mut m = TinyEncoder::new(1, 8, 12, &dev);
        attach(&mut m, &cfg, 2).unwrap();
        perturb(&mut m, 9);
        let loss = m.forward(input(2, 3, 8, 4, &dev)).square().sum();
        let grads = loss.backward();
        m.for_each_linear("", &mut |p, l| {
            assert!(
                l.weight.val().grad(&grads).is_none(),
                "{p}: base weight got a gradient"
            );
            assert!(
                l.bias.as_ref().unwrap().val().grad(&grads).is_none(),
                "{p}: bias got a gradient"
            );
            let mut adapter = l.adapter.clone().expect("adapted");
            for n in adapter.named_params_mut() {
                let g = n.param.val().grad(&grads);
                if n.trainable {
                    let g = g.unwrap_or_else(|| panic!("{p}.{}: no gradient", n.name));
                    // LoRATRF's filter sits behind the gate clamp(cos(h0, t), 0, 1): when the gate
                    // is closed for every token its tensors get an exact zero gradient.
                    assert!(
                        n.name.starts_with("loratrf_") || values(&g).iter().any(|v| *v != 0.0),
                        "{p}.{}: zero gradient",
                        n.name
                    );
                } else {
                    assert!(g.is_none(), "{p}.{}: frozen tensor got a gradient", n.name);
                }
            }
        });
        let report = param_report(&m);
        let adapters: usize = {
            let mut n = 0;
            m.for_each_linear("", &mut |_, l| n += l.num_adapter_params());
            n
        };
        assert_eq!(
            report.trainable,
            adapters,
            "{}: trainable = adapter params",
            cfg.method()
        );
    }
}

/// `∂L/∂A`, `∂L/∂B`, `∂L/∂C`, `∂L/∂D` of one adapted layer against central differences.
#[test]
fn adapter_gradients_match_finite_differences() {
    let plain = device();
    let dtype = if plain.supports_dtype(DType::F64) {
        DType::F64
    } else {
        DType::F32
    };
    let (h, tol) = if dtype == DType::F64 {
        (1e-6, 1e-6)
    } else {
        (1e-2, 3e-2)
    };
    let (d_in, d_out, r) = (5, 4, 3);
    for cfg in methods(r, &["lin"]) {
        // flatten all adapter parameters into one vector, rebuild the layer from it
        let build = |vals: &[f64], dev: &Device| -> (AdaptedLinear, Vec<Tensor<2>>) {
            let mut l = AdaptedLinear::new(d_in, d_out, true, dev);
            let mut rng = SeededRng::new(0);
            let w = Fill::Normal { std: 1.0 }.tensor(d_in, d_out, &mut rng, dev, dtype);
            l.weight = Param::from_tensor(w);
            l.bias = Some(Param::from_tensor(Tensor::zeros([d_out], (dev, dtype))));
            attach(&mut l, &cfg_for(&cfg), 0).unwrap();
            let adapter = l.adapter.as_mut().unwrap();
            let mut off = 0;
            let mut leaves = Vec::new();
            let mut take = |p: &mut Param<Tensor<2>>| {
                let [m, n] = p.dims();
                let mut t = Tensor::<2>::from_data(
                    TensorData::new(vals[off..off + m * n].to_vec(), [m, n]),
                    (dev, dtype),
                );
                if dev.is_autodiff() {
                    t = t.require_grad();
                }
                off += m * n;
                leaves.push(t.clone());
                *p = Param::initialized(p.id, t);
            };
            for n in adapter
                .named_params_mut()
                .into_iter()
                .filter(|n| n.trainable)
            {
                take(n.param);
            }
            (l, leaves)
        };
        let n_params = formula(&cfg, d_in, d_out);
        let mut rng = SeededRng::new(42);
        let theta: Vec<f64> = (0..n_params).map(|_| rng.uniform(-0.5, 0.5)).collect();
        let xv: Vec<f64> = (0..3 * d_in).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let loss = |l: &AdaptedLinear, dev: &Device| {
            let x = Tensor::<2>::from_data(TensorData::new(xv.clone(), [3, d_in]), (dev, dtype));
            l.forward(x).powf_scalar(2.0).sum()
        };
        let ad = plain.clone().autodiff();
        let (l, leaves) = build(&theta, &ad);
        let grads = loss(&l, &ad).backward();
        let g: Vec<f64> = leaves
            .iter()
            .flat_map(|t| values(&t.grad(&grads).unwrap()))
            .collect();
        assert_eq!(g.len(), n_params);
        for k in 0..n_params {
            let (mut up, mut dn) = (theta.clone(), theta.clone());
            up[k] += h;
            dn[k] -= h;
            let f = |v: &[f64]| values(&loss(&build(v, &plain).0, &plain))[0];
            let fd = (f(&up) - f(&dn)) / (2.0 * h);
            assert!(
                (fd - g[k]).abs() <= tol * (1.0 + g[k].abs()),
                "{} param {k}: fd {fd} ad {}",
                cfg.method(),
                g[k]
            );
        }
    }
}

/// The same config, targeting the root layer (path "") of a lone `AdaptedLinear`.
fn cfg_for(cfg: &AdapterConfig) -> AdapterConfig {
    let root = ModuleSelector::Regex(String::new());
    match cfg.clone() {
        AdapterConfig::Lora(c) => AdapterConfig::Lora(LoraConfig {
            target_modules: root,
            ..c
        }),
        AdapterConfig::Mtlora(c) => AdapterConfig::Mtlora(MtLoraConfig {
            target_modules: root,
            ..c
        }),
        AdapterConfig::Svda(c) => AdapterConfig::Svda(SvdAdaptConfig {
            target_modules: root,
            ..c
        }),
        AdapterConfig::Loratrf(c) => AdapterConfig::Loratrf(LoraTrfConfig {
            target_modules: root,
            ..c
        }),
        AdapterConfig::Triadaptlora(c) => AdapterConfig::Triadaptlora(TriAdaptConfig {
            target_modules: root,
            ..c
        }),
        AdapterConfig::Adalora(c) => AdapterConfig::Adalora(AdaLoraConfig {
            target_modules: root,
            ..c
        }),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Over shapes and ranks: parameter counts follow the formulas, init is the identity, merge
    /// is equivalent.
    #[test]
    fn shapes_and_ranks(d_in in 1usize..20, d_out in 1usize..20, r in 1usize..6, which in 0usize..10, seed in any::<u64>()) {
        let dev = device();
        let r = if which >= 5 { r.min(d_in).min(d_out) } else { r };
        let cfg = cfg_for(&methods(r, &["x"])[which]);
        let mut l = AdaptedLinear::new(d_in, d_out, true, &dev);
        let x = Tensor::<2>::from_data(TensorData::new(Fill::Normal { std: 1.0 }.sample(3, d_in, &mut SeededRng::new(seed)), [3, d_in]), &dev);
        let base = values(&l.forward(x.clone()));
        attach(&mut l, &cfg, seed).unwrap();
        let want = formula(&cfg, d_in, d_out);
        prop_assert_eq!(l.num_adapter_params(), want);
        prop_assert_eq!(param_report(&l).trainable, want);
        let held: usize = l.adapter.as_ref().unwrap().named_tensors().iter().map(|(_, t)| t.dims()[0] * t.dims()[1]).sum();
        prop_assert_eq!(param_report(&l).total, d_in * d_out + d_out + held);
        prop_assert_eq!(values(&l.forward(x.clone())), base);
        perturb(&mut l, seed ^ 1);
        prop_assume!(cfg.mergeable());
        let unmerged = values(&l.forward(x.clone()));
        l.merge(true, "").unwrap();
        prop_assert!(max_abs_diff(&values(&l.forward(x)), &unmerged) <= 1e-4);
    }
}

#[test]
fn same_seed_same_adapters() {
    let dev = device();
    let base = TinyEncoder::new(1, 8, 8, &dev);
    for cfg in methods(4, &SIX) {
        let snapshot = |seed| {
            let mut m = base.clone();
            attach(&mut m, &cfg, seed).unwrap();
            let mut v = Vec::new();
            m.for_each_linear("", &mut |_, l| {
                for (_, t) in l
                    .adapter
                    .as_ref()
                    .map(Adapter::named_tensors)
                    .unwrap_or_default()
                {
                    v.push(values(&t));
                }
            });
            v
        };
        assert_eq!(snapshot(5), snapshot(5), "{}", cfg.method());
        if cfg.method() != "svda" {
            // SVD adaptation has no random init: it is a function of W0 alone.
            assert_ne!(snapshot(5), snapshot(6), "{}", cfg.method());
        }
    }
}

#[test]
fn targeting_follows_peft_semantics() {
    let dev = device();
    let report = |targets: ModuleSelector, exclude: Option<ModuleSelector>| {
        let mut m = TinyEncoder::new(2, 8, 8, &dev);
        let cfg = AdapterConfig::Lora(LoraConfig::new(2, targets).with_exclude_modules(exclude));
        attach(&mut m, &cfg, 0).map(|r| r.modules.into_iter().map(|(p, _)| p).collect::<Vec<_>>())
    };
    // list: exact names or dotted suffixes; "output.dense" also matches attention.output.dense
    let got = report(ModuleSelector::list(&["query", "output.dense"]), None).unwrap();
    assert_eq!(
        got,
        vec![
            "encoder.layer.0.attention.self.query",
            "encoder.layer.0.attention.output.dense",
            "encoder.layer.0.output.dense",
            "encoder.layer.1.attention.self.query",
            "encoder.layer.1.attention.output.dense",
            "encoder.layer.1.output.dense",
        ]
    );
    // a suffix must end at a dot: "uery" matches nothing
    let err = report(ModuleSelector::list(&["query", "uery"]), None).unwrap_err();
    assert!(
        matches!(&err, AdapterError::TargetNotFound { entry, .. } if entry == "uery"),
        "{err}"
    );
    // regex: full match only
    let got = report(
        ModuleSelector::Regex(r".*layer\.1\.attention\.self\.(query|value)".into()),
        None,
    )
    .unwrap();
    assert_eq!(
        got,
        vec![
            "encoder.layer.1.attention.self.query",
            "encoder.layer.1.attention.self.value"
        ]
    );
    assert!(
        report(ModuleSelector::Regex("query".into()), None).is_err(),
        "partial regex match is no match"
    );
    // exclusion
    let got = report(
        ModuleSelector::list(&["query"]),
        Some(ModuleSelector::list(&[
            "encoder.layer.0.attention.self.query",
        ])),
    )
    .unwrap();
    assert_eq!(got, vec!["encoder.layer.1.attention.self.query"]);
    // a bad regex names the key
    let err = report(ModuleSelector::Regex("(".into()), None).unwrap_err();
    assert!(err.to_string().contains("target_modules"), "{err}");
}

#[test]
fn attaching_twice_or_bad_config_is_an_error() {
    let dev = device();
    let mut m = TinyEncoder::new(1, 8, 8, &dev);
    let cfg = AdapterConfig::Lora(LoraConfig::new(2, ModuleSelector::list(&["query"])));
    attach(&mut m, &cfg, 0).unwrap();
    assert!(matches!(
        attach(&mut m, &cfg, 0),
        Err(AdapterError::MergeState { .. })
    ));
    let mut m = TinyEncoder::new(1, 8, 8, &dev);
    let bad = AdapterConfig::Lora(LoraConfig::new(0, ModuleSelector::list(&["query"])));
    assert!(matches!(
        attach(&mut m, &bad, 0),
        Err(AdapterError::Config { .. })
    ));
    assert!(
        m.layers[0].query.adapter.is_none(),
        "a failed attach leaves the model untouched"
    );
    let bad = AdapterConfig::Lora(
        LoraConfig::new(2, ModuleSelector::list(&["query"])).with_lora_dropout(1.5),
    );
    let err = attach(&mut m, &bad, 0).unwrap_err();
    assert!(err.to_string().contains("lora_dropout"), "{err}");
}

#[test]
fn config_round_trips_through_json_with_method_tag() {
    let cfg = AdapterConfig::Mtlora(MtLoraConfig::new(
        8,
        TransformKind::Icfm,
        ModuleSelector::list(&SIX),
    ));
    let json = serde_json::to_string(&cfg).unwrap();
    assert!(json.contains("\"method\":\"mtlora\""), "{json}");
    assert!(json.contains("\"structure\":\"Icfm\""), "{json}");
    let back: AdapterConfig = serde_json::from_str(&json).unwrap();
    let AdapterConfig::Mtlora(c) = back else {
        panic!("method tag lost")
    };
    assert_eq!(
        (c.r, c.structure, c.lora_alpha),
        (8, TransformKind::Icfm, 16.0)
    );
    // rsLoRA scale
    let c = LoraConfig::new(16, ModuleSelector::list(&["q"]))
        .with_lora_alpha(8.0)
        .with_use_rslora(true);
    assert_eq!(c.scale(), 2.0);
    assert_eq!(
        LoraConfig::new(16, ModuleSelector::list(&["q"]))
            .with_lora_alpha(8.0)
            .scale(),
        0.5
    );
}

#[allow(dead_code)]
fn assert_module<M: Module>() {}

/// SVD adaptation: the frozen bases reconstruct W0 (full rank), and at attach time the merged
/// weight is W0 to f32 precision (`1e-5 · (1 + |W0|max)`), for both options.
#[test]
fn svd_adaptation_reproduces_w0_at_init() {
    let dev = device();
    for option in [SvdOption::A, SvdOption::B] {
        let mut l = AdaptedLinear::new(6, 5, true, &dev);
        let w0 = values(&l.weight.val());
        let cfg = AdapterConfig::Svda(
            SvdAdaptConfig::new(ModuleSelector::Regex(String::new())).with_option(option),
        );
        attach(&mut l, &cfg, 0).unwrap();
        let Some(Adapter::Svd(a)) = &l.adapter else {
            panic!("not svd")
        };
        assert_eq!(a.rank(), 5, "r = None adapts all min(d_in, d_out) triplets");
        // U diag(σ) Vᵀ = W0ᵀ (paper layout)
        let usv = (a.u.val() * a.sigma0.val()).matmul(a.v.val().transpose());
        let tol = 1e-5 * (1.0 + w0.iter().fold(0.0f64, |m, x| m.max(x.abs())));
        assert!(max_abs_diff(&values(&usv.transpose()), &w0) <= tol);
        l.merge(true, "").unwrap();
        assert!(
            max_abs_diff(&values(&l.weight.val()), &w0) <= tol,
            "{option:?}"
        );
    }
    let mut l = AdaptedLinear::new(6, 5, true, &dev);
    let bad = AdapterConfig::Svda(
        SvdAdaptConfig::new(ModuleSelector::Regex(String::new())).with_r(Some(6)),
    );
    let err = attach(&mut l, &bad, 0).unwrap_err();
    assert!(err.to_string().contains("1..=5"), "{err}");
}
