//! Save / load round trips and bad adapter files.

use std::fs;
use std::path::{Path, PathBuf};

use peftlab_adapters::io::{CONFIG_FILE, WEIGHTS_FILE};
use peftlab_adapters::{AdapterError, attach, load_adapter, save_adapter};

use super::model::TinyEncoder;
use super::{SIX, device, input, methods, perturb, values};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("peftlab-io-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    d
}

#[test]
fn save_load_round_trip_gives_identical_outputs() {
    let dev = device();
    for cfg in methods(3, &SIX) {
        let base = TinyEncoder::new(2, 8, 12, &dev);
        let mut trained = base.clone();
        attach(&mut trained, &cfg, 4).unwrap();
        perturb(&mut trained, 8);
        let dir = tmp(cfg.method());
        save_adapter(&trained, &cfg, &dir).unwrap();
        let mut loaded = base.clone();
        let report = load_adapter(&mut loaded, &dir).unwrap();
        assert!(report.unknown_keys.is_empty(), "{:?}", report.unknown_keys);
        assert_eq!(report.config.method(), cfg.method());
        let x = input(2, 4, 8, 3, &dev);
        assert_eq!(
            values(&loaded.forward(x.clone())),
            values(&trained.forward(x)),
            "{}",
            cfg.method()
        );
        let text = fs::read_to_string(dir.join(CONFIG_FILE)).unwrap();
        assert!(text.contains("\"git_commit\""), "provenance recorded");
        fs::remove_dir_all(&dir).unwrap();
    }
}

/// Corrupt a saved LoRA adapter with `edit`, then expect `load_adapter` to fail with a message
/// containing `needle`, leaving the model without adapters.
fn expect_load_error(name: &str, edit: impl Fn(&Path), needle: &str) {
    let dev = device();
    let cfg = methods(2, &["query"]).remove(0);
    let base = TinyEncoder::new(1, 8, 8, &dev);
    let mut trained = base.clone();
    attach(&mut trained, &cfg, 1).unwrap();
    let dir = tmp(name);
    save_adapter(&trained, &cfg, &dir).unwrap();
    edit(&dir);
    let mut target = base.clone();
    let err = load_adapter(&mut target, &dir).unwrap_err();
    assert!(err.to_string().contains(needle), "{name}: {err}");
    assert!(
        target.layers[0].query.adapter.is_none(),
        "{name}: model untouched"
    );
    fs::remove_dir_all(&dir).unwrap();
}

fn edit_config(dir: &Path, f: impl Fn(&mut serde_json::Value)) {
    let p = dir.join(CONFIG_FILE);
    let mut v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    fs::write(p, v.to_string()).unwrap();
}

#[test]
fn bad_adapter_files_are_clear_errors() {
    expect_load_error(
        "truncated",
        |d| {
            let p = d.join(WEIGHTS_FILE);
            let b = fs::read(&p).unwrap();
            fs::write(&p, &b[..b.len() / 2]).unwrap();
        },
        WEIGHTS_FILE,
    );
    expect_load_error(
        "missing-weights",
        |d| fs::remove_file(d.join(WEIGHTS_FILE)).unwrap(),
        WEIGHTS_FILE,
    );
    expect_load_error(
        "bad-json",
        |d| fs::write(d.join(CONFIG_FILE), "{ not json").unwrap(),
        CONFIG_FILE,
    );
    expect_load_error(
        "dora",
        |d| edit_config(d, |v| v["use_dora"] = true.into()),
        "use_dora",
    );
    expect_load_error(
        "type",
        |d| edit_config(d, |v| v["peft_type"] = "IA3".into()),
        "peft_type",
    );
    // rank 3 in the config but rank-2 tensors in the file: the shape error names the key
    expect_load_error(
        "rank",
        |d| edit_config(d, |v| v["r"] = 3.into()),
        "lora_A.weight",
    );
    // targets that do not exist in this model
    expect_load_error(
        "target",
        |d| edit_config(d, |v| v["target_modules"] = serde_json::json!(["nope"])),
        "nope",
    );
    // the config adapts a module the file has no tensors for
    expect_load_error(
        "missing",
        |d| edit_config(d, |v| v["target_modules"] = serde_json::json!(["key"])),
        "missing tensor",
    );
}

#[test]
fn tensors_for_unadapted_modules_are_rejected() {
    let dev = device();
    let cfg = methods(2, &["query", "value"]).remove(0);
    let base = TinyEncoder::new(1, 8, 8, &dev);
    let mut trained = base.clone();
    attach(&mut trained, &cfg, 1).unwrap();
    let dir = tmp("extra");
    save_adapter(&trained, &cfg, &dir).unwrap();
    edit_config(&dir, |v| v["target_modules"] = serde_json::json!(["query"]));
    let mut target = base.clone();
    let err = load_adapter(&mut target, &dir).unwrap_err();
    assert!(
        err.to_string().contains("value.lora_A.weight")
            || err.to_string().contains("value.lora_B.weight"),
        "{err}"
    );
    assert!(
        err.to_string().contains("belongs to no adapted module"),
        "{err}"
    );
    assert!(target.layers[0].query.adapter.is_none());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_config_keys_are_reported_not_fatal() {
    let dev = device();
    let cfg = methods(2, &["value"]).remove(0);
    let base = TinyEncoder::new(1, 8, 8, &dev);
    let mut trained = base.clone();
    attach(&mut trained, &cfg, 1).unwrap();
    let dir = tmp("unknown");
    save_adapter(&trained, &cfg, &dir).unwrap();
    edit_config(&dir, |v| v["shiny_new_option"] = 1.into());
    let mut target = base.clone();
    let report = load_adapter(&mut target, &dir).unwrap();
    assert_eq!(report.unknown_keys, vec!["shiny_new_option".to_string()]);
    fs::remove_dir_all(&dir).unwrap();
    let none = tmp("none");
    let err = save_adapter(&base, &cfg, &none).unwrap_err();
    assert!(matches!(err, AdapterError::Config { .. }), "{err}");
    assert!(!none.exists(), "a failed save leaves nothing behind");
}

/// PEFT's `rank_pattern` / `alpha_pattern`: `value` layers get r = 2 and α = 6 (scale 3), the
/// others r = 4 and α = 8 (scale 2); the patterns survive a save/load round trip.
#[test]
fn rank_and_alpha_patterns_apply_per_module() {
    use peftlab_adapters::lora::LoraConfig;
    use peftlab_adapters::target::ModuleSelector;
    use peftlab_adapters::{Adapter, AdapterConfig, AdapterHost};
    let dev = device();
    let cfg = AdapterConfig::Lora(
        LoraConfig::new(4, ModuleSelector::list(&["query", "value"]))
            .with_rank_pattern(Some([("value".to_string(), 2)].into()))
            .with_alpha_pattern(Some(
                [("layer\\.1\\.attention\\.self\\.value".to_string(), 6.0)].into(),
            )),
    );
    let base = TinyEncoder::new(2, 8, 8, &dev);
    let mut m = base.clone();
    attach(&mut m, &cfg, 0).unwrap();
    let mut seen = Vec::new();
    m.for_each_linear("", &mut |p, l| {
        if let Some(Adapter::LowRank(a)) = &l.adapter {
            seen.push((p.to_string(), a.rank(), a.scale));
        }
    });
    assert_eq!(
        seen,
        vec![
            ("encoder.layer.0.attention.self.query".to_string(), 4, 2.0),
            ("encoder.layer.0.attention.self.value".to_string(), 2, 4.0), // α 8 / r 2
            ("encoder.layer.1.attention.self.query".to_string(), 4, 2.0),
            ("encoder.layer.1.attention.self.value".to_string(), 2, 3.0), // α 6 / r 2
        ]
    );
    perturb(&mut m, 1);
    let dir = tmp("patterns");
    save_adapter(&m, &cfg, &dir).unwrap();
    let mut loaded = base.clone();
    load_adapter(&mut loaded, &dir).unwrap();
    let x = input(1, 3, 8, 0, &dev);
    assert_eq!(values(&loaded.forward(x.clone())), values(&m.forward(x)));
    fs::remove_dir_all(&dir).unwrap();
}
