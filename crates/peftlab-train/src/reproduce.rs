//! `cargo xtask reproduce <method>`: run every table of `experiments/<method>/*.toml` for a
//! profile, skipping runs whose record holds the same config hash, then aggregate all records
//! of the table (from every shard, and of every task and seed, also when `--tasks` or
//! `--seeds` chose which to run) into `table.md`, `table.csv`, `table.json` and plots.
//!
//! Results: `docs/results/<method>/<table>/<profile>/` for the `cpu` and `paper` profiles (meant
//! to be committed), `target/results/…` for `smoke`; `--out` overrides. Each run keeps
//! `record.json` and `log.jsonl`; its checkpoint is deleted once the record is written. A run
//! whose config already finished in another table of the same profile (the LoRA baseline rows
//! several methods share) is not trained again: its record and log are copied.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::record::write_atomic;
use crate::table::{self, PlannedRun, TableSpec};
use crate::{Event, RunOptions, TrainError, Trainer};

/// What to reproduce and how.
#[derive(Debug, Clone, Default)]
pub struct ReproduceArgs {
    /// `mtlora`, `triadaptlora`, `loratrf`, `svda`.
    pub method: String,
    /// `smoke`, `cpu` or `paper`.
    pub profile: String,
    /// The workspace root (holds `experiments/`).
    pub root: PathBuf,
    /// Results root instead of the default.
    pub out: Option<PathBuf>,
    /// Only these tasks.
    pub tasks: Option<Vec<String>>,
    /// Only these seeds.
    pub seeds: Option<Vec<u64>>,
    /// Run even when a record with the same config exists.
    pub force: bool,
    /// Print the plan, run nothing.
    pub dry_run: bool,
    /// List the tables and profiles.
    pub list: bool,
    /// `(i, n)`: run only shard i of n.
    pub shard: Option<(usize, usize)>,
    /// Write a SLURM array script with this many shards to this file instead of running.
    pub emit_slurm: Option<(PathBuf, usize)>,
}

/// The table specs of a method, sorted by file name.
pub fn specs(root: &Path, method: &str) -> Result<Vec<(PathBuf, TableSpec)>, TrainError> {
    let dir = root.join("experiments").join(method);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| TrainError::File {
            path: dir.clone(),
            reason: format!("{e} (methods: mtlora, triadaptlora, loratrf, svda)"),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| TableSpec::from_file(&f).map(|s| (f, s)))
        .collect()
}

/// The results root: `--out`, else `target/results` for smoke, `docs/results` otherwise.
fn results_base(a: &ReproduceArgs) -> PathBuf {
    a.out.clone().unwrap_or_else(|| {
        if a.profile == "smoke" {
            a.root.join("target/results")
        } else {
            a.root.join("docs/results")
        }
    })
}

fn results_dir(a: &ReproduceArgs, table: &str) -> PathBuf {
    results_base(a).join(&a.method).join(table).join(&a.profile)
}

/// Copy a finished run's record and log from `from` into `to` (each file atomically).
fn copy_run(from: &Path, to: &Path) -> Result<(), TrainError> {
    // the log first: a record marks the run finished
    for name in ["log.jsonl", "record.json"] {
        let src = from.join(name);
        if !src.exists() {
            continue;
        }
        let bytes = std::fs::read(&src).map_err(|e| TrainError::File {
            path: src.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&to.join(name), &bytes)?;
    }
    Ok(())
}

/// The runs of one table file under the results directory `out`, as `reproduce` trains them.
/// Paths in a run's config stay relative to the workspace root (the trainer joins them onto
/// it, [`Trainer::new_in`]), so the config hash, and with it the records, are the same in every
/// checkout: `{run:TASK}`, expanded under `out`, is taken back relative to the root.
pub fn plan_table(
    a: &ReproduceArgs,
    file: &Path,
    spec: &TableSpec,
    out: &Path,
) -> Result<Vec<PlannedRun>, TrainError> {
    let mut plan = spec.plan(
        file,
        &a.profile,
        out,
        a.tasks.as_deref(),
        a.seeds.as_deref(),
    )?;
    for r in &mut plan {
        let adapter = r.config.train.init_adapter.as_deref().map(Path::new);
        if let Some(rel) = adapter.and_then(|p| p.strip_prefix(&a.root).ok()) {
            r.config.train.init_adapter = Some(rel.display().to_string());
        }
    }
    Ok(plan)
}

/// Run (or plan, list, shard, emit) a method's tables; `log` receives progress lines.
pub fn reproduce(a: &ReproduceArgs, log: &mut dyn FnMut(&str)) -> Result<(), TrainError> {
    let all = specs(&a.root, &a.method)?;
    if a.list {
        for (f, s) in &all {
            log(&format!("{}: {}", f.display(), s.title));
            for (name, p) in &s.profiles {
                log(&format!(
                    "  profile {name}: {} rows × tasks {:?} × seeds {:?}{}",
                    s.rows.len(),
                    p.tasks,
                    p.seeds,
                    if p.note.is_empty() {
                        String::new()
                    } else {
                        format!(" — {}", p.note)
                    }
                ));
            }
        }
        return Ok(());
    }
    if let Some((file, n)) = &a.emit_slurm {
        let script = table::slurm_script(&a.method, &a.profile, *n, "");
        write_atomic(file, script.as_bytes())?;
        log(&format!("wrote {} ({n} shards)", file.display()));
        return Ok(());
    }
    for (file, spec) in &all {
        let stem = file
            .file_stem()
            .map_or("table".into(), |s| s.to_string_lossy().to_string());
        let out = results_dir(a, &stem);
        let plan = plan_table(a, file, spec, &out)?;
        if plan.is_empty() {
            log(&format!(
                "{stem} [{}]: no runs for these tasks/seeds",
                a.profile
            ));
            continue;
        }
        let mine = match a.shard {
            Some((i, n)) => table::shard(plan.clone(), i, n),
            None => plan.clone(),
        };
        let todo: Vec<&PlannedRun> = mine.iter().filter(|r| a.force || !table::done(r)).collect();
        log(&format!(
            "{} [{}]: {} runs planned, {} in this shard, {} to run",
            stem,
            a.profile,
            plan.len(),
            mine.len(),
            todo.len()
        ));
        for (k, run) in todo.iter().enumerate() {
            let tag = format!(
                "[{}/{}] {} · {} · seed {}",
                k + 1,
                todo.len(),
                run.row,
                run.task,
                run.seed
            );
            if a.dry_run {
                log(&format!("{tag} → {}", run.dir.display()));
                continue;
            }
            if !a.force
                && let Some(from) = table::finished_elsewhere(&results_base(a), &a.profile, run)
            {
                copy_run(&from, &run.dir)?;
                log(&format!(
                    "{tag}: same config finished in {}",
                    from.display()
                ));
                continue;
            }
            log(&format!("{tag}: training"));
            // model and data load first: a run that cannot start touches nothing on disk
            let trainer = Trainer::new_in(run.config.clone(), &a.root)?;
            // `--force`: the old run is set aside, dropped once the new one has finished, and
            // put back if it fails, so a failed retrain never costs a finished record
            let replaced = if a.force && run.dir.exists() {
                let aside = aside_of(&run.dir);
                let _ = std::fs::remove_dir_all(&aside);
                std::fs::rename(&run.dir, &aside).map_err(|e| TrainError::File {
                    path: run.dir.clone(),
                    reason: format!("cannot set the old run aside: {e}"),
                })?;
                Some(aside)
            } else {
                discard_stale_checkpoint(&run.dir, &run.config, log);
                None
            };
            let total = trainer.total_steps();
            let mut last = std::time::Instant::now();
            let opts = RunOptions {
                out_dir: Some(run.dir.clone()),
                resume: true,
                ..Default::default()
            };
            let result = trainer.run_with(&opts, &mut |e| match e {
                Event::Step {
                    step,
                    loss,
                    examples_per_s,
                    ..
                } if last.elapsed().as_secs() >= 30 || *step == total => {
                    last = std::time::Instant::now();
                    log(&format!(
                        "  step {step}/{total} loss {loss:.4} {examples_per_s:.1} ex/s"
                    ));
                }
                Event::Eval(p) => log(&format!("  eval epoch {}: {}", p.epoch, json!(p.metrics))),
                _ => {}
            });
            if let Some(aside) = replaced {
                if result.is_ok() {
                    let _ = std::fs::remove_dir_all(&aside);
                } else {
                    let _ = std::fs::remove_dir_all(&run.dir);
                    let _ = std::fs::rename(&aside, &run.dir);
                }
            }
            let done = result?;
            let _ = std::fs::remove_dir_all(crate::checkpoint::dir_of(&run.dir));
            log(&format!(
                "  test {} ({:.0} s)",
                json!(done.record.test_metrics),
                done.record.wall_s
            ));
        }
        if a.dry_run {
            continue;
        }
        // the table shows every record of the profile, whatever `--tasks`/`--seeds` ran now
        let whole = if a.tasks.is_none() && a.seeds.is_none() {
            plan
        } else {
            let unfiltered = ReproduceArgs {
                tasks: None,
                seeds: None,
                ..a.clone()
            };
            plan_table(&unfiltered, file, spec, &out)?
        };
        write_outputs(spec, &a.profile, &whole, &out)?;
        log(&format!("table: {}", out.join("table.md").display()));
    }
    Ok(())
}

/// Where `--force` keeps a run's old directory while it is retrained: beside it, `NAME.replaced`.
fn aside_of(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".replaced");
    dir.with_file_name(name)
}

/// A checkpoint left by an earlier version of this run's config (the spec changed since) cannot
/// be resumed: remove it so the run starts over instead of failing.
fn discard_stale_checkpoint(dir: &Path, config: &crate::TrainConfig, log: &mut dyn FnMut(&str)) {
    let ckpt = crate::checkpoint::dir_of(dir);
    let saved = std::fs::read_to_string(ckpt.join("state.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["config_hash"].as_str().map(str::to_string));
    if let Some(saved) = saved
        && saved != crate::record::hash_hex(&config.to_toml())
    {
        let _ = std::fs::remove_dir_all(&ckpt);
        log(&format!(
            "  discarded {} (a checkpoint of an earlier config of this run)",
            ckpt.display()
        ));
    }
}

/// Write a plot as SVG and, with the `png` feature, as PNG beside it (same name, `.png`).
fn write_plot(svg_path: &Path, svg: &str) -> Result<(), TrainError> {
    write_atomic(svg_path, svg.as_bytes())?;
    #[cfg(feature = "png")]
    {
        if !crate::png::fonts_available() {
            eprintln!(
                "warning: no system fonts found: {} has no text",
                svg_path.with_extension("png").display()
            );
        }
        write_atomic(
            &svg_path.with_extension("png"),
            &crate::png::svg_to_png(svg)?,
        )?;
    }
    Ok(())
}

/// Aggregate the records of `plan` and write the table and plots into `out`.
pub fn write_outputs(
    spec: &TableSpec,
    profile: &str,
    plan: &[PlannedRun],
    out: &Path,
) -> Result<(), TrainError> {
    let cells = table::aggregate(spec, plan)?;
    let n_records = cells.iter().map(|c| c.values.len()).sum::<usize>();
    let mut md = table::markdown(spec, profile, &cells);
    md += &format!("\n{n_records} run records of {} planned.\n", plan.len());
    write_atomic(&out.join("table.md"), md.as_bytes())?;
    write_atomic(&out.join("table.csv"), table::csv(&cells).as_bytes())?;
    let j = serde_json::to_vec_pretty(
        &json!({"title": spec.title, "profile": profile, "source": spec.source, "cells": cells}),
    )
    .map_err(|e| TrainError::Other(e.to_string()))?;
    write_atomic(&out.join("table.json"), &j)?;
    write_plot(&out.join("bars.svg"), &table::bars_svg(spec, &cells))?;
    // loss curves (first seed of each row, per task) and rank growth where there is any
    let mut loss = Vec::new();
    let mut ranks = Vec::new();
    let curve = |run: &PlannedRun, points| table::Curve {
        row: run.row.clone(),
        task: run.task.clone(),
        points,
    };
    for run in plan {
        let first_seed = plan
            .iter()
            .filter(|r| r.row == run.row && r.task == run.task)
            .map(|r| r.seed)
            .min();
        if Some(run.seed) != first_seed {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(run.dir.join("log.jsonl")) {
            let pts: Vec<(f64, f64)> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["event"] == "step")
                .filter_map(|v| Some((v["step"].as_f64()?, v["loss"].as_f64()?)))
                .collect();
            if !pts.is_empty() {
                loss.push(curve(run, pts));
            }
        }
        if let Ok(text) = std::fs::read_to_string(run.dir.join("record.json"))
            && let Ok(rec) = serde_json::from_str::<crate::record::RunRecord>(&text)
        {
            let pts: Vec<(f64, f64)> = rec
                .allocations
                .iter()
                .filter_map(|a| Some((a["step"].as_f64()?, a["total_rank"].as_f64()?)))
                .collect();
            if !pts.is_empty() {
                ranks.push(curve(run, pts));
            }
        }
    }
    if !loss.is_empty() {
        let svg = table::lines_svg(
            &format!("{}: training loss (first seed)", spec.title),
            "optimizer step",
            "loss",
            &loss,
        );
        write_plot(&out.join("loss.svg"), &svg)?;
    }
    if !ranks.is_empty() {
        let svg = table::lines_svg(
            &format!("{}: total rank (first seed)", spec.title),
            "optimizer step",
            "total rank",
            &ranks,
        );
        write_plot(&out.join("rank_growth.svg"), &svg)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint whose config hash is not the run's is removed (and said so); one of the
    /// same config is kept for resuming.
    #[test]
    fn stale_checkpoints_are_discarded_current_ones_kept() {
        let config = crate::TrainConfig::from_toml(
            "[model]\npath = \"m\"\n[task]\nname = \"mr2\"\n",
            "test",
        )
        .unwrap();
        let dir = std::env::temp_dir().join(format!("peftlab-stale-{}", std::process::id()));
        let ckpt = crate::checkpoint::dir_of(&dir);
        let mut lines = Vec::new();
        for (hash, kept) in [
            ("0123456789abcdef".to_string(), false),
            (crate::record::hash_hex(&config.to_toml()), true),
        ] {
            std::fs::create_dir_all(&ckpt).unwrap();
            std::fs::write(
                ckpt.join("state.json"),
                serde_json::json!({ "config_hash": hash }).to_string(),
            )
            .unwrap();
            discard_stale_checkpoint(&dir, &config, &mut |l| lines.push(l.to_string()));
            assert_eq!(ckpt.exists(), kept, "hash {hash}");
        }
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("earlier config"), "{lines:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
