//! `cargo xtask <command>`: peftlab's project automation.
//!
//! Commands:
//! - `bench-linalg [--quick]`: run `peftlab-linalg`'s criterion benches and numpy/scipy (LAPACK)
//!   on the same shapes in one go, and print the side-by-side table that docs/performance.md
//!   records (also written to `target/bench-linalg.md`).
//! - `fetch [--list] [--only NAME[,NAME…]]`: obtain the pinned models and datasets of
//!   `crates/peftlab-data/manifest.toml` into the cache (`peftlab_data::fetch`).
//! - `bench-models`: forward throughput of the real MiniLM and SmolLM2 checkpoints, peftlab
//!   (criterion) and PyTorch (`scripts/bench_torch_forward.py`) side by side in one run
//!   (`target/bench-models.md`).
//! - `bench-train`: one optimizer step of MiniLM with each adapter (criterion,
//!   `crates/peftlab-train/benches/train_step.rs`) against PyTorch + PEFT LoRA
//!   (`scripts/bench_torch_train.py`) in one run (`target/bench-train.md`).
//! - `reproduce <method> [--profile smoke|cpu|paper] [options]`: rebuild a paper's tables —
//!   builds the `peftlab` binary in release mode and runs `peftlab reproduce` with the same
//!   arguments (training needs optimized code; see `peftlab reproduce --help` for the options).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod bench;
mod bench_models;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  bench-linalg [--quick]   peftlab-linalg benches side by side with numpy/scipy (LAPACK)
  fetch [--list] [--only NAME[,NAME…]]
                           download the pinned models and datasets into the cache
  bench-models             MiniLM / SmolLM2 forward, peftlab vs PyTorch (PEFTLAB_PYTHON)
  bench-train              MiniLM + LoRA/MTLoRA/TriAdaptLoRA train step vs PyTorch + PEFT
  reproduce <method> [--profile smoke|cpu|paper] [--list] [--dry-run] [--force]
            [--tasks A,B] [--seeds 0,1] [--shard I/N] [--emit-slurm FILE --shards N] [--dev-build]
                           rebuild a paper's tables (mtlora, triadaptlora, loratrf, svda)
  help                     this text";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bench-linalg") => bench::bench_linalg(&workspace_root(), &args[1..]),
        Some("fetch") => fetch(&args[1..]),
        Some("bench-models") => bench_models::bench_models(&workspace_root(), &args[1..]),
        Some("bench-train") => bench_models::bench_train(&workspace_root(), &args[1..]),
        Some("reproduce") => reproduce(&workspace_root(), &args[1..]),
        Some("help" | "-h" | "--help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn fetch(args: &[String]) -> Result<(), String> {
    use peftlab_data::fetch::{cache_dir, is_present, manifest};
    let all = manifest();
    let mut only: Option<Vec<String>> = None;
    let mut list = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--list" => list = true,
            "--only" => {
                let v = it.next().ok_or("--only needs NAME[,NAME…]")?;
                only = Some(v.split(',').map(str::to_string).collect());
            }
            other => return Err(format!("fetch: unknown argument `{other}`")),
        }
    }
    if let Some(names) = &only
        && let Some(bad) = names.iter().find(|n| !all.iter().any(|a| &a.name == *n))
    {
        let known: Vec<&str> = all.iter().map(|a| a.name.as_str()).collect();
        return Err(format!(
            "fetch: no artifact `{bad}` (known: {})",
            known.join(", ")
        ));
    }
    let cache = cache_dir();
    let chosen: Vec<_> = all
        .iter()
        .filter(|a| only.as_ref().is_none_or(|o| o.contains(&a.name)))
        .collect();
    if list {
        println!("cache: {}", cache.display());
        for a in &chosen {
            println!(
                "{:<9} {}=={} {:>6.1} MB  {:<8} -> {}  ({})",
                a.name,
                a.package,
                a.version,
                a.size as f64 / 1e6,
                if is_present(a, &cache) {
                    "present"
                } else {
                    "missing"
                },
                a.dest,
                a.license
            );
        }
        return Ok(());
    }
    for (k, a) in chosen.iter().enumerate() {
        eprintln!(
            "[{}/{}] {} ({}=={}, {:.1} MB)",
            k + 1,
            chosen.len(),
            a.name,
            a.package,
            a.version,
            a.size as f64 / 1e6
        );
        let fetched = peftlab_data::fetch::fetch(a, &cache).map_err(|e| e.to_string())?;
        eprintln!(
            "      {} {}",
            if fetched {
                "fetched into"
            } else {
                "present in"
            },
            cache.join(&a.dest).display()
        );
    }
    Ok(())
}

/// Build `peftlab` in release mode (`--dev-build`: the dev profile, as CI's smoke run does
/// after the tests built it) and run `peftlab reproduce ARGS --root ROOT`.
fn reproduce(root: &Path, args: &[String]) -> Result<(), String> {
    if args.is_empty() || args[0].starts_with('-') {
        return Err("reproduce needs a method: mtlora, triadaptlora, loratrf or svda".into());
    }
    let dev = args.iter().any(|a| a == "--dev-build");
    let args: Vec<&String> = args.iter().filter(|a| *a != "--dev-build").collect();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let (profile_flag, dir) = if dev {
        (None, "debug")
    } else {
        (Some("--release"), "release")
    };
    eprintln!("building peftlab ({dir}) …");
    let status = Command::new(&cargo)
        .arg("build")
        .args(profile_flag)
        .args(["--quiet", "-p", "peftlab"])
        .current_dir(root)
        .status()
        .map_err(|e| format!("{cargo}: {e}"))?;
    if !status.success() {
        return Err("cargo build --release -p peftlab failed".into());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join(dir).join("peftlab");
    let status = Command::new(&bin)
        .arg("reproduce")
        .args(args)
        .arg("--root")
        .arg(root)
        .status()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("peftlab reproduce exited with {status}"))
    }
}

/// The workspace root (the parent of this crate's directory).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Run a command, inheriting stdio; an error names the command and its exit status.
fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("could not start `{cmd:?}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{cmd:?}` failed with {status}"))
    }
}
