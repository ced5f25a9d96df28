//! `cargo xtask bench-linalg`: faer (through peftlab-linalg) vs numpy/scipy LAPACK, same run.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::run;

/// Pinned reference stack, installed into `target/xtask-venv` on first use.
const PY_PACKAGES: [&str; 3] = ["numpy==2.4.6", "scipy==1.17.1", "threadpoolctl==3.8.0"];

pub fn bench_linalg(root: &Path, args: &[String]) -> Result<(), String> {
    let quick = args.iter().any(|a| a == "--quick");
    if let Some(bad) = args.iter().find(|a| *a != "--quick") {
        return Err(format!(
            "bench-linalg: unknown argument `{bad}` (only --quick)"
        ));
    }
    let python = ensure_venv(root)?;
    let target = root.join("target");
    let lapack_json = target.join("bench-lapack.json");

    eprintln!("[1/2] numpy/scipy (LAPACK) timings …");
    let repeats = if quick { "3" } else { "7" };
    run(Command::new(&python)
        .arg(root.join("scripts/bench_lapack.py"))
        .args(["--repeats", repeats, "--out"])
        .arg(&lapack_json))?;

    eprintln!("[2/2] criterion benches of peftlab-linalg …");
    let criterion_dir = target.join("criterion");
    let mut cargo = Command::new(env!("CARGO"));
    cargo.current_dir(root).args([
        "bench",
        "-p",
        "peftlab-linalg",
        "--bench",
        "linalg",
        "--",
        "decomp/",
    ]);
    if quick {
        cargo.arg("--quick");
    }
    run(&mut cargo)?;

    let lapack: Value = serde_json::from_str(
        &fs::read_to_string(&lapack_json).map_err(|e| format!("{}: {e}", lapack_json.display()))?,
    )
    .map_err(|e| format!("{}: {e}", lapack_json.display()))?;
    let ours = read_criterion(&criterion_dir)?;
    let table = render(&ours, &lapack);
    println!("{table}");
    let out = target.join("bench-linalg.md");
    fs::write(&out, &table).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!("written to {}", out.display());
    Ok(())
}

/// Create `target/xtask-venv` with the pinned packages unless it already has them.
fn ensure_venv(root: &Path) -> Result<PathBuf, String> {
    let venv = root.join("target/xtask-venv");
    let python = venv.join("bin/python");
    let have = Command::new(&python)
        .args(["-c", "import numpy, scipy, threadpoolctl"])
        .output()
        .is_ok_and(|o| o.status.success());
    if have {
        return Ok(python);
    }
    eprintln!(
        "setting up {} with {} …",
        venv.display(),
        PY_PACKAGES.join(" ")
    );
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv)).map_err(|e| {
        format!(
            "{e}\npython3 with the venv module is needed for the LAPACK reference \
             (Debian/Ubuntu: `apt-get install python3 python3-venv`)"
        )
    })?;
    run(Command::new(&python)
        .args(["-m", "pip", "install", "--quiet"])
        .args(PY_PACKAGES))?;
    Ok(python)
}

/// `full_id → median seconds` for every criterion benchmark that has a result.
pub(crate) fn read_criterion(dir: &Path) -> Result<BTreeMap<String, f64>, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "benchmark.json")
                && p.parent().is_some_and(|q| q.ends_with("new"))
            {
                let read = |f: &Path| -> Result<Value, String> {
                    let text =
                        fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
                    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", f.display()))
                };
                let bench = read(&p)?;
                let est = read(&p.with_file_name("estimates.json"))?;
                if let (Some(id), Some(ns)) = (
                    bench["full_id"].as_str(),
                    est["median"]["point_estimate"].as_f64(),
                ) {
                    out.insert(id.to_string(), ns * 1e-9);
                }
            }
        }
    }
    Ok(out)
}

fn render(ours: &BTreeMap<String, f64>, lapack: &Value) -> String {
    let mut s = String::from(
        "| benchmark | peftlab-linalg (faer) | numpy | scipy | faer / best LAPACK |\n|---|---|---|---|---|\n",
    );
    let Some(map) = lapack.as_object() else {
        return s;
    };
    for (id, refs) in map.iter().filter(|(k, _)| !k.starts_with('_')) {
        let np = refs["numpy"].as_f64();
        let sp = refs["scipy"].as_f64();
        let best = np.into_iter().chain(sp).fold(f64::INFINITY, f64::min);
        let fmt = |x: Option<f64>| x.map_or("—".into(), |v| format!("{:.1} ms", v * 1e3));
        let mine = ours.get(id).copied();
        let ratio = mine.map_or("—".into(), |m| format!("{:.2}×", m / best));
        s.push_str(&format!(
            "| {id} | {} | {} | {} | {ratio} |\n",
            fmt(mine),
            fmt(np),
            fmt(sp)
        ));
    }
    if let Some(meta) = map.get("_meta") {
        s.push_str(&format!(
            "\nreference: numpy {} / scipy {} (python {}), BLAS: {}\n",
            meta["numpy"].as_str().unwrap_or("?"),
            meta["scipy"].as_str().unwrap_or("?"),
            meta["python"].as_str().unwrap_or("?"),
            blas_summary(&meta["blas"]),
        ));
    }
    s
}

fn blas_summary(v: &Value) -> String {
    v.as_array()
        .map(|libs| {
            libs.iter()
                .map(|l| {
                    format!(
                        "{} {} ({} threads, {})",
                        l["internal_api"].as_str().unwrap_or("?"),
                        l["version"].as_str().unwrap_or("?"),
                        l["num_threads"],
                        l["architecture"].as_str().unwrap_or("?")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_else(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, text: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    #[test]
    fn reads_criterion_medians_and_renders_ratios() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let b = dir.join("decomp/svd_thin_768x768_f32");
        write(
            &b.join("new/benchmark.json"),
            r#"{"full_id":"decomp/svd_thin/768x768/f32"}"#,
        );
        write(
            &b.join("new/estimates.json"),
            r#"{"median":{"point_estimate":80000000.0}}"#,
        );
        // a stale "base" result must be ignored
        write(
            &b.join("base/benchmark.json"),
            r#"{"full_id":"decomp/svd_thin/768x768/f32"}"#,
        );
        write(
            &b.join("base/estimates.json"),
            r#"{"median":{"point_estimate":1.0}}"#,
        );
        let ours = read_criterion(&dir).unwrap();
        assert_eq!(ours.len(), 1);
        assert!((ours["decomp/svd_thin/768x768/f32"] - 0.08).abs() < 1e-12);
        let lapack: Value = serde_json::from_str(
            r#"{"decomp/svd_thin/768x768/f32":{"numpy":0.1,"scipy":0.064},
                "decomp/qr/768x768/f32":{"numpy":0.02,"scipy":0.03},"_meta":{"numpy":"2"}}"#,
        )
        .unwrap();
        let table = render(&ours, &lapack);
        assert!(
            table
                .contains("| decomp/svd_thin/768x768/f32 | 80.0 ms | 100.0 ms | 64.0 ms | 1.25× |"),
            "{table}"
        );
        assert!(
            table.contains("| decomp/qr/768x768/f32 | — | 20.0 ms | 30.0 ms | — |"),
            "{table}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
