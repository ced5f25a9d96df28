//! `cargo xtask bench-models`: forward throughput of the real checkpoints on the CPU, peftlab
//! (criterion, `crates/peftlab-models/benches/forward.rs`) and PyTorch
//! (`scripts/bench_torch_forward.py`) on the same models, shapes and machine in one run. PyTorch
//! runs before and after peftlab so the table shows the machine's drift.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::bench::read_criterion;
use crate::run;

/// `PEFTLAB_PYTHON` (default `python3`), checked to import `modules` (comma-separated);
/// `tested` names the versions the scripts were run with, for the error.
fn python(task: &str, modules: &str, tested: &str) -> Result<PathBuf, String> {
    let py = std::env::var_os("PEFTLAB_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    let ok = Command::new(&py)
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Ok(py)
    } else {
        Err(format!(
            "{task} needs a Python with {modules} (tested: {tested}); point PEFTLAB_PYTHON at \
             it ({} lacks them)",
            py.display()
        ))
    }
}

/// Run the comparison and print / write `target/bench-models.md`.
pub fn bench_models(root: &Path, args: &[String]) -> Result<(), String> {
    if let Some(bad) = args.first() {
        return Err(format!("bench-models: unknown argument `{bad}`"));
    }
    let py = python(
        "bench-models",
        "torch, transformers, gguf",
        "torch==2.15.0 transformers==5.24.0 gguf==0.19.0",
    )?;
    let models = std::env::var_os("PEFTLAB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/peftlab")
        })
        .join("models");
    let minilm = models.join("all-MiniLM-L6-v2");
    let smollm2 = models.join("smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !minilm.join("model.safetensors").exists() || !smollm2.exists() {
        for name in ["minilm", "smollm2"] {
            let a = peftlab_data::fetch::manifest()
                .into_iter()
                .find(|a| a.name == name)
                .expect("in the manifest");
            peftlab_data::fetch::fetch(&a, &peftlab_data::fetch::cache_dir())
                .map_err(|e| e.to_string())?;
        }
    }
    let args = [
        "--minilm".into(),
        minilm.into_os_string(),
        "--smollm2".into(),
        smollm2.into_os_string(),
    ];
    let ids = [
        "minilm/forward/b32_t64",
        "smollm2/forward/b8_t64",
        "smollm2/greedy/p32_n32",
        "smollm2/beam4/p32_n32",
    ];
    let table = side_by_side(
        root,
        &py,
        "scripts/bench_torch_forward.py",
        &args,
        ("peftlab-models", "forward", "flex"),
        &ids,
        "forward",
    )?;
    let out = root.join("target/bench-models.md");
    fs::write(&out, &table).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!("written to {}", out.display());
    Ok(())
}

/// `cargo xtask bench-train [--gpu]`: one optimizer step of MiniLM with LoRA (and the other
/// adapters) and of SmolLM2-135M with LoRA (B = 8, T = 128), peftlab's criterion bench against PyTorch + PEFT (`scripts/bench_torch_train.py`)
/// in one run. `--gpu`: peftlab on wgpu (`--features wgpu`, `BURN_DEVICE=wgpu`) against PyTorch
/// on CUDA.
pub fn bench_train(root: &Path, args: &[String]) -> Result<(), String> {
    let gpu = match args {
        [] => false,
        [a] if a == "--gpu" => true,
        [a] => return Err(format!("bench-train: unknown argument `{a}`")),
        _ => return Err(format!("bench-train: unknown arguments {args:?}")),
    };
    let py = python(
        "bench-train",
        "torch, transformers, peft",
        "torch==2.15.0 transformers==5.24.0 peft==0.21.2",
    )?;
    let fetched = |name: &str| -> Result<PathBuf, String> {
        let a = peftlab_data::fetch::manifest()
            .into_iter()
            .find(|a| a.name == name)
            .expect("in the manifest");
        let cache = peftlab_data::fetch::cache_dir();
        peftlab_data::fetch::fetch(&a, &cache).map_err(|e| e.to_string())?;
        Ok(cache.join(&a.dest))
    };
    let minilm = fetched("minilm")?;
    let smollm2 = fetched("smollm2")?.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let ids = [
        "minilm_train_step/lora/b32_t64",
        "minilm_train_step/mtlora_shim/b32_t64",
        "minilm_train_step/mtlora_icfm/b32_t64",
        "minilm_train_step/mtlora_ctcm/b32_t64",
        "minilm_train_step/mtlora_dtsm/b32_t64",
        "minilm_train_step/triadaptlora/b32_t64",
        "minilm_train_step/lora_bf16base/b32_t64",
        "smollm2_train_step/lora/b8_t128",
        "smollm2_train_step/lora_bf16base/b8_t128",
    ];
    let mut script_args = vec![
        "--minilm".into(),
        minilm.into_os_string(),
        "--smollm2".into(),
        smollm2.into_os_string(),
    ];
    if gpu {
        script_args.extend(["--device".into(), "cuda".into()]);
    }
    let table = side_by_side(
        root,
        &py,
        "scripts/bench_torch_train.py",
        &script_args,
        (
            "peftlab-train",
            "train_step",
            if gpu { "wgpu" } else { "flex" },
        ),
        &ids,
        "train step (PyTorch: PEFT LoRA)",
    )?;
    let out = root.join("target/bench-train.md");
    fs::write(&out, &table).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!("written to {}", out.display());
    Ok(())
}

/// PyTorch script, then the criterion bench, then the script again; the table of medians.
/// Rows whose id the script does not report are compared with its LoRA row of the same group
/// and shape (the PEFT LoRA step for the training bench, the reference for every adapter and
/// for the bf16 base). `backend`: `flex` (the
/// default CPU build) or `wgpu` (built with `--features wgpu`, selected by `BURN_DEVICE`).
fn side_by_side(
    root: &Path,
    py: &Path,
    script: &str,
    script_args: &[std::ffi::OsString],
    (package, bench, backend): (&str, &str, &str),
    ids: &[&str],
    what: &str,
) -> Result<String, String> {
    let target = root.join("target");
    let torch_run = |name: &str| -> Result<Value, String> {
        let out = target.join(name);
        run(Command::new(py)
            .arg(root.join(script))
            .args(script_args)
            .arg("--out")
            .arg(&out))?;
        let text = fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", out.display()))
    };
    eprintln!("[1/3] PyTorch …");
    let before = torch_run(&format!("{bench}-torch-before.json"))?;
    eprintln!("[2/3] peftlab (criterion) …");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(root)
        .args(["bench", "-p", package, "--bench", bench]);
    if backend != "flex" {
        cargo
            .args(["--features", backend])
            .env("BURN_DEVICE", backend);
    }
    run(&mut cargo)?;
    eprintln!("[3/3] PyTorch again …");
    let after = torch_run(&format!("{bench}-torch-after.json"))?;
    let ours = read_criterion(&target.join("criterion"))?;
    let table = render(
        &ours,
        &before,
        &after,
        ids,
        (what, backend),
        script.contains("train"),
    );
    println!("{table}");
    Ok(table)
}

fn render(
    ours: &std::collections::BTreeMap<String, f64>,
    before: &Value,
    after: &Value,
    ids: &[&str],
    (what, backend): (&str, &str),
    fallback_to_lora: bool,
) -> String {
    // the script reports `gpu` (the card's name) when it ran on CUDA
    let on = before["gpu"]
        .as_str()
        .map_or_else(|| format!("{} threads", before["threads"]), str::to_string);
    let mut s = format!(
        "PyTorch {} (transformers {}, {on}) vs peftlab ({backend}), medians in seconds\n\n\
         | {what} | PyTorch before | peftlab | PyTorch after | peftlab / PyTorch (mean) |\n\
         |---|---|---|---|---|\n",
        before["torch"].as_str().unwrap_or("?"),
        before["transformers"].as_str().unwrap_or("?"),
    );
    // `group/variant/shape` without a PyTorch figure: PyTorch's `group/lora/shape` (PEFT's
    // LoRA step is the reference for every adapter and precision of the group)
    let reference = |v: &Value, id: &str| {
        let parts: Vec<&str> = id.split('/').collect();
        let lora = match parts.as_slice() {
            [group, _, shape] => format!("{group}/lora/{shape}"),
            _ => return None,
        };
        v["results"][lora.as_str()]
            .as_f64()
            .filter(|_| fallback_to_lora)
    };
    for id in ids {
        let id = *id;
        let (b, a) = (
            before["results"][id]
                .as_f64()
                .or_else(|| reference(before, id)),
            after["results"][id]
                .as_f64()
                .or_else(|| reference(after, id)),
        );
        let o = ours.get(id).copied();
        let cell = |v: Option<f64>| v.map_or("–".into(), |x| format!("{x:.3}"));
        let ratio = match (o, b, a) {
            (Some(o), Some(b), Some(a)) => format!("{:.2}×", o / ((a + b) / 2.0)),
            _ => "–".into(),
        };
        s += &format!(
            "| {id} | {} | {} | {} | {ratio} |\n",
            cell(b),
            cell(o),
            cell(a)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_ratio_against_the_mean_pytorch_time() {
        let before = serde_json::json!({"torch": "2.15.0", "transformers": "5.24.0", "threads": 2,
            "results": {"minilm/forward/b32_t64": 0.3, "smollm2/forward/b8_t64": 0.5}});
        let after = serde_json::json!({"results": {"minilm/forward/b32_t64": 0.5}});
        let ours = [("minilm/forward/b32_t64".to_string(), 0.6)]
            .into_iter()
            .collect();
        let ids = [
            "minilm/forward/b32_t64",
            "smollm2/forward/b8_t64",
            "smollm2/greedy/p32_n32",
            "smollm2/beam4/p32_n32",
        ];
        let t = render(&ours, &before, &after, &ids, ("forward", "flex"), false);
        assert!(
            t.contains("(transformers 5.24.0, 2 threads) vs peftlab (flex)"),
            "{t}"
        );
        assert!(
            t.contains("| minilm/forward/b32_t64 | 0.300 | 0.600 | 0.500 | 1.50× |"),
            "{t}"
        );
        assert!(
            t.contains("| smollm2/forward/b8_t64 | 0.500 | – | – | – |"),
            "{t}"
        );
    }

    #[test]
    fn names_the_card_when_pytorch_ran_on_cuda() {
        let run = serde_json::json!({"torch": "2.11.0", "transformers": "5.17.0", "threads": 16,
            "gpu": "NVIDIA H200", "results": {"minilm_train_step/lora/b32_t64": 0.02,
            "smollm2_train_step/lora/b8_t128": 0.4}});
        let ours = [
            ("minilm_train_step/lora/b32_t64".to_string(), 0.03),
            ("minilm_train_step/mtlora_shim/b32_t64".to_string(), 0.05),
            ("smollm2_train_step/lora_bf16base/b8_t128".to_string(), 0.2),
        ]
        .into_iter()
        .collect();
        let ids = [
            "minilm_train_step/lora/b32_t64",
            "minilm_train_step/mtlora_shim/b32_t64",
            "smollm2_train_step/lora_bf16base/b8_t128",
        ];
        let t = render(&ours, &run, &run, &ids, ("train step", "wgpu"), true);
        assert!(
            t.contains("(transformers 5.17.0, NVIDIA H200) vs peftlab (wgpu)"),
            "{t}"
        );
        // the adapter rows without a PyTorch twin are set against PEFT's LoRA step
        assert!(
            t.contains("| minilm_train_step/mtlora_shim/b32_t64 | 0.020 | 0.050 | 0.020 | 2.50× |"),
            "{t}"
        );
        // … of their own group, not the first one the script reports
        assert!(
            t.contains(
                "| smollm2_train_step/lora_bf16base/b8_t128 | 0.400 | 0.200 | 0.400 | 0.50× |"
            ),
            "{t}"
        );
    }
}
