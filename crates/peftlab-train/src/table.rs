//! Paper tables as data: `experiments/<method>/<table>.toml` lists the rows (method variants),
//! the profiles (`smoke`, `cpu`, `paper`: model, tasks, seeds, overrides), the base training
//! config, and the paper's values with their source. [`plan`] expands a spec into runs,
//! [`aggregate`] turns the run records into the table (mean ± std and median over seeds, n
//! stated) as Markdown, CSV, JSON and SVG.
//!
//! A spec:
//! ```toml
//! title = "…"            # the table's caption
//! source = "…"           # where the paper's numbers come from
//! protocol = "…"         # written under the table
//! [base]                 # a TrainConfig without [adapter] (see experiments/example.toml)
//! [profiles.cpu]
//! tasks = ["mr2", "trec"]
//! seeds = [0, 1, 2]
//! set = { "model.path" = "minilm", "task.train_limit" = 2000 }   # dotted-key overrides
//! # `adapter.*` keys override every row's adapter (rows without one, full FT, ignore them):
//! # set = { "adapter.target_modules" = ["c_attn"] }   # another backbone's module names
//! task_set.trec = { "train.epochs" = 5 }   # per-task overrides (after `set`, before the row's)
//! # `{run:TASK}` in a string: the run directory of the same row and seed on an earlier task
//! # task_set.glue-mrpc = { "train.init_adapter" = "{run:glue-mnli}/adapter" }
//! [[rows]]
//! name = "LoRA"
//! adapter = { method = "lora", r = 8, target_modules = ["query"] }   # absent = full FT
//! set = { "optim.lr" = 4e-4 }                                       # optional per-row overrides
//! paper = { mr2 = 91.2 }   # the paper's value per task; absent = none published
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Value;

use crate::TrainError;
use crate::config::TrainConfig;
use crate::record::RunRecord;

/// The plots' font list: common installed sans faces first, then the generic family.
pub(crate) const FONTS: &str = "DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif";

/// One row of a table: a method variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    /// Row label.
    pub name: String,
    /// The `[adapter]` table of the run configs; absent = full fine-tuning.
    #[serde(default)]
    pub adapter: Option<Value>,
    /// Dotted-key overrides for this row.
    #[serde(default)]
    pub set: BTreeMap<String, Value>,
    /// The paper's value per task (absent = none published).
    #[serde(default)]
    pub paper: BTreeMap<String, f64>,
}

/// A profile: which model, tasks, seeds and sizes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Tasks (columns).
    pub tasks: Vec<String>,
    /// Seeds per cell.
    pub seeds: Vec<u64>,
    /// Dotted-key overrides of the base config; `adapter.*` keys override the rows' adapters
    /// (applied after the row's `adapter`, skipped for rows without one).
    #[serde(default)]
    pub set: BTreeMap<String, Value>,
    /// Per-task dotted-key overrides (a paper's per-task epochs and learning rates), applied
    /// after `set` and before the row's own `set`. Keys must be tasks of this profile.
    #[serde(default)]
    pub task_set: BTreeMap<String, BTreeMap<String, Value>>,
    /// What the profile is for, printed under the table.
    #[serde(default)]
    pub note: String,
}

/// A table spec.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// Caption.
    pub title: String,
    /// Where the paper's values come from.
    pub source: String,
    /// The protocol, written under the table.
    #[serde(default)]
    pub protocol: String,
    /// Another spec (path relative to this file) whose `base` and `profiles` this one uses
    /// where it has none of its own.
    #[serde(default)]
    pub extends: Option<String>,
    /// The base training config (TOML table).
    #[serde(default = "empty_table")]
    pub base: Value,
    /// Profiles by name.
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
    /// Rows.
    pub rows: Vec<Row>,
}

fn empty_table() -> Value {
    Value::Table(Default::default())
}

/// One planned run.
#[derive(Debug, Clone)]
pub struct PlannedRun {
    /// Row name.
    pub row: String,
    /// Task.
    pub task: String,
    /// Seed.
    pub seed: u64,
    /// The run's config.
    pub config: TrainConfig,
    /// Output directory of the run.
    pub dir: PathBuf,
}

fn spec_err(file: &Path, reason: impl std::fmt::Display) -> TrainError {
    TrainError::Config {
        file: file.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Set `dotted` (e.g. `task.train_limit`) in a TOML table.
fn set_dotted(root: &mut Value, dotted: &str, v: Value) -> Result<(), String> {
    let mut cur = root;
    let parts: Vec<&str> = dotted.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        let table = cur
            .as_table_mut()
            .ok_or_else(|| format!("{dotted}: {} is not a table", parts[..i].join(".")))?;
        if i + 1 == parts.len() {
            table.insert((*p).to_string(), v);
            return Ok(());
        }
        cur = table
            .entry((*p).to_string())
            .or_insert_with(|| Value::Table(Default::default()));
    }
    Ok(())
}

/// Where the run of (`row`, `task`, `seed`) of a table whose output is `out` lives.
fn run_dir(out: &Path, row: &str, task: &str, seed: u64) -> PathBuf {
    out.join("runs")
        .join(format!("{}__{}__s{seed}", slug(row), slug(task)))
}

/// `{run:TASK}` in a string value → the directory of the run of the same row and seed on
/// `TASK`, which must be an earlier task of the profile (so it is planned, and trained, first).
fn expand_run_refs(
    val: &Value,
    out: &Path,
    row: &str,
    task: &str,
    seed: u64,
    tasks: &[String],
) -> Result<Value, String> {
    let Some(text) = val.as_str() else {
        return Ok(val.clone());
    };
    let mut result = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{run:") {
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| format!("unterminated {{run:…}} in {text:?}"))?;
        let other = &rest[start + 5..start + end];
        let (at, here) = (
            tasks.iter().position(|t| t == other),
            tasks.iter().position(|t| t == task),
        );
        if !matches!((at, here), (Some(a), Some(h)) if a < h) {
            return Err(format!(
                "{{run:{other}}} must name a task listed before {task} in the profile ({tasks:?})"
            ));
        }
        let dir = run_dir(out, row, other, seed);
        result.push_str(&rest[..start]);
        result.push_str(&dir.to_string_lossy());
        rest = &rest[start + end + 1..];
    }
    result.push_str(rest);
    Ok(Value::String(result))
}

/// A file-system-safe name.
pub fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

impl TableSpec {
    /// Read a spec file.
    pub fn from_file(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| spec_err(path, e))?;
        let mut spec: Self = toml::from_str(&text).map_err(|e| spec_err(path, e))?;
        if let Some(parent) = spec.extends.clone() {
            let pp = path.parent().unwrap_or(Path::new(".")).join(&parent);
            if pp == path {
                return Err(spec_err(path, "extends itself"));
            }
            let p = Self::from_file(&pp)?;
            if spec.base.as_table().is_none_or(|t| t.is_empty()) {
                spec.base = p.base;
            }
            for (k, v) in p.profiles {
                spec.profiles.entry(k).or_insert(v);
            }
        }
        if spec.base.as_table().is_none() {
            return Err(spec_err(path, "no [base] table (and no `extends`)"));
        }
        Ok(spec)
    }

    /// Every run of `profile` (filtered by `tasks` / `seeds` when given), in a fixed order
    /// (row, task, seed), with its config and output directory under `out`.
    pub fn plan(
        &self,
        file: &Path,
        profile: &str,
        out: &Path,
        tasks: Option<&[String]>,
        seeds: Option<&[u64]>,
    ) -> Result<Vec<PlannedRun>, TrainError> {
        let p = self.profiles.get(profile).ok_or_else(|| {
            spec_err(
                file,
                format!(
                    "no profile {profile:?} (has: {:?})",
                    self.profiles.keys().collect::<Vec<_>>()
                ),
            )
        })?;
        if let Some(t) = p.task_set.keys().find(|t| !p.tasks.contains(t)) {
            return Err(spec_err(
                file,
                format!(
                    "profiles.{profile}.task_set.{t}: not a task of the profile ({:?})",
                    p.tasks
                ),
            ));
        }
        let mut runs = Vec::new();
        for row in &self.rows {
            for task in &p.tasks {
                if tasks.is_some_and(|t| !t.contains(task)) {
                    continue;
                }
                for &seed in &p.seeds {
                    if seeds.is_some_and(|s| !s.contains(&seed)) {
                        continue;
                    }
                    let mut v = self.base.clone();
                    if let Some(a) = &row.adapter {
                        set_dotted(&mut v, "adapter", a.clone()).map_err(|e| spec_err(file, e))?;
                    }
                    let sets = p
                        .set
                        .iter()
                        .chain(p.task_set.get(task).into_iter().flatten())
                        .chain(&row.set);
                    for (k, val) in sets {
                        // `adapter.*` overrides (e.g. another backbone's module names) and a
                        // starting adapter apply to the rows that have an adapter; full
                        // fine-tuning has none.
                        if row.adapter.is_none()
                            && (k.starts_with("adapter.") || k == "train.init_adapter")
                        {
                            continue;
                        }
                        let val = expand_run_refs(val, out, &row.name, task, seed, &p.tasks)
                            .map_err(|e| spec_err(file, format!("{k}: {e}")))?;
                        set_dotted(&mut v, k, val).map_err(|e| spec_err(file, e))?;
                    }
                    set_dotted(&mut v, "task.name", Value::String(task.clone()))
                        .map_err(|e| spec_err(file, e))?;
                    set_dotted(&mut v, "train.seed", Value::Integer(seed as i64))
                        .map_err(|e| spec_err(file, e))?;
                    let text = toml::to_string(&v).map_err(|e| spec_err(file, e))?;
                    let source = format!(
                        "{} (row {:?}, task {task}, seed {seed})",
                        file.display(),
                        row.name
                    );
                    let config = TrainConfig::from_toml(&text, &source)?;
                    let dir = run_dir(out, &row.name, task, seed);
                    runs.push(PlannedRun {
                        row: row.name.clone(),
                        task: task.clone(),
                        seed,
                        config,
                        dir,
                    });
                }
            }
        }
        Ok(runs)
    }
}

/// Whether `dir` holds a finished record of exactly this config, made with the current
/// definition of the data splits.
pub fn done(run: &PlannedRun) -> bool {
    finished_in(&run.dir, &run.config)
}

/// Whether `dir` holds the record of a finished run of `config` (same config hash, same split
/// version, same revision of the method's implementation — records written before revisions
/// were stored count as revision 1).
pub fn finished_in(dir: &Path, config: &TrainConfig) -> bool {
    let hash = crate::record::hash_hex(&config.to_toml());
    let splits = peftlab_data::loaders::SPLITS_VERSION.to_string();
    let revision = crate::record::method_revision(config).to_string();
    std::fs::read_to_string(dir.join("record.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<RunRecord>(&t).ok())
        .is_some_and(|r| {
            r.config_hash == hash
                && r.versions.get("splits") == Some(&splits)
                && r.versions
                    .get("method_revision")
                    .map_or("1", String::as_str)
                    == revision
        })
}

/// A finished run of the same config in another table of the same profile under the results
/// root `base` (`base/<method>/<table>/<profile>/runs/<run>/`), e.g. the LoRA baseline that
/// several methods' tables share. Runs are deterministic functions of their config, so its
/// record stands for this run.
pub fn finished_elsewhere(base: &Path, profile: &str, run: &PlannedRun) -> Option<PathBuf> {
    let subdirs = |d: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .map(|it| it.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.retain(|p| p.is_dir());
        v.sort();
        v
    };
    for method in subdirs(base) {
        for table in subdirs(&method) {
            for dir in subdirs(&table.join(profile).join("runs")) {
                if dir != run.dir && finished_in(&dir, &run.config) {
                    return Some(dir);
                }
            }
        }
    }
    None
}

/// The runs of shard `i` of `n` (1-based): every n-th run starting at the i-th, in plan order.
pub fn shard(runs: Vec<PlannedRun>, i: usize, n: usize) -> Vec<PlannedRun> {
    runs.into_iter()
        .enumerate()
        .filter(|(k, _)| k % n.max(1) == (i.max(1) - 1) % n.max(1))
        .map(|(_, r)| r)
        .collect()
}

/// Summary of one cell (row × task) over seeds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cell {
    /// Row.
    pub row: String,
    /// Task.
    pub task: String,
    /// The metric (the task's first).
    pub metric: String,
    /// Per-seed values (test split at the best dev evaluation), by seed.
    pub values: BTreeMap<u64, f64>,
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 for one seed.
    pub std: f64,
    /// Median.
    pub median: f64,
    /// The paper's value, if published.
    pub paper: Option<f64>,
    /// Trainable parameters (first seed's record, at the end of training).
    pub trainable_params: usize,
    /// What the cell's records say they were trained on ([`data_description`]), with how many
    /// records say it.
    #[serde(default)]
    pub data: BTreeMap<String, usize>,
}

/// One line naming a record's data: its source and the sha256 (first 12 hex digits) of each
/// file read; for records written before runs stored their data, where to look instead (one
/// line for all of them, so a table does not list every commit).
pub fn data_description(rec: &RunRecord) -> String {
    match &rec.data {
        Some(d) => {
            let files: Vec<String> = d
                .files
                .iter()
                .map(|(f, h)| format!("{f} sha256 {}…", &h[..h.len().min(12)]))
                .collect();
            format!("{}: {}", d.source, files.join(", "))
        }
        None => "not recorded (written before records named their data: the manifest at each \
                 record's git_commit pins the one source it was trained on)"
            .to_string(),
    }
}

/// Mean, sample std and median of `v` (non-empty).
pub fn summary(v: &[f64]) -> (f64, f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let std = if v.len() > 1 {
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let median = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    (mean, std, median)
}

/// Read the records of `runs` (missing ones are skipped) and summarize each cell.
pub fn aggregate(spec: &TableSpec, runs: &[PlannedRun]) -> Result<Vec<Cell>, TrainError> {
    let mut cells: BTreeMap<(usize, String), Cell> = BTreeMap::new();
    let row_index = |name: &str| {
        spec.rows
            .iter()
            .position(|r| r.name == name)
            .unwrap_or(usize::MAX)
    };
    for run in runs {
        let path = run.dir.join("record.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let rec: RunRecord = serde_json::from_str(&text).map_err(|e| TrainError::File {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let metrics = if rec.test_metrics.is_empty() {
            rec.best
                .and_then(|b| rec.evals.get(b))
                .map(|e| e.metrics.clone())
                .unwrap_or_default()
        } else {
            rec.test_metrics.clone()
        };
        let Some((metric, value)) = metrics.iter().next().map(|(k, v)| (k.clone(), *v)) else {
            continue;
        };
        let row = spec.rows.iter().find(|r| r.name == run.row);
        let cell = cells
            .entry((row_index(&run.row), run.task.clone()))
            .or_insert_with(|| Cell {
                row: run.row.clone(),
                task: run.task.clone(),
                metric: metric.clone(),
                values: BTreeMap::new(),
                mean: 0.0,
                std: 0.0,
                median: 0.0,
                paper: row.and_then(|r| r.paper.get(&run.task).copied()),
                trainable_params: rec.trainable_params.1,
                data: BTreeMap::new(),
            });
        cell.values.insert(run.seed, value);
        *cell.data.entry(data_description(&rec)).or_insert(0) += 1;
    }
    let mut out: Vec<Cell> = cells.into_values().collect();
    for c in &mut out {
        let v: Vec<f64> = c.values.values().copied().collect();
        (c.mean, c.std, c.median) = summary(&v);
    }
    Ok(out)
}

/// The table as Markdown: rows × tasks, `mean ± std (median, n)` with the paper's value beside,
/// then the caption, the profile and the protocol.
pub fn markdown(spec: &TableSpec, profile: &str, cells: &[Cell]) -> String {
    let p = &spec.profiles[profile];
    let tasks: Vec<&String> = p
        .tasks
        .iter()
        .filter(|t| cells.iter().any(|c| &c.task == *t))
        .collect();
    let mut s = format!("## {}\n\nProfile `{profile}`. ", spec.title);
    let _ = writeln!(
        s,
        "Each cell: test-split metric at the best dev evaluation, mean ± sample std over seeds (median; n seeds); paper value in brackets where published.\n"
    );
    s += "| method | trainable params |";
    for t in &tasks {
        let metric = cells
            .iter()
            .find(|c| &c.task == *t)
            .map_or("", |c| c.metric.as_str());
        let _ = write!(s, " {t} ({metric}) |");
    }
    s += "\n|---|---|";
    s += &"---|".repeat(tasks.len());
    s += "\n";
    for row in &spec.rows {
        let mine: Vec<&Cell> = cells.iter().filter(|c| c.row == row.name).collect();
        if mine.is_empty() {
            continue;
        }
        let _ = write!(s, "| {} | {} |", row.name, mine[0].trainable_params);
        for t in &tasks {
            match mine.iter().find(|c| &c.task == *t) {
                Some(c) => {
                    let paper = c.paper.map_or(String::new(), |v| format!(" [{v:.1}]"));
                    let _ = write!(
                        s,
                        " {:.2} ± {:.2} ({:.2}; n={}){paper} |",
                        c.mean,
                        c.std,
                        c.median,
                        c.values.len()
                    );
                }
                None => s += " – |",
            }
        }
        s += "\n";
    }
    s += &paired_section(spec, cells, &tasks);
    s += &data_section(cells, &tasks);
    let _ = write!(s, "\nPaper values: {}\n", spec.source);
    if !p.note.is_empty() {
        let _ = write!(s, "\nProfile: {}\n", p.note);
    }
    if !spec.protocol.is_empty() {
        let _ = write!(s, "\nProtocol: {}\n", spec.protocol);
    }
    s
}

/// Per task, what its records say they were trained on (every distinct description, with the
/// number of records), so a table names exactly its data.
fn data_section(cells: &[Cell], tasks: &[&String]) -> String {
    let mut s = String::from("\nData (from the run records):\n");
    for t in tasks {
        let mut all: BTreeMap<&str, usize> = BTreeMap::new();
        for c in cells.iter().filter(|c| &c.task == *t) {
            for (d, n) in &c.data {
                *all.entry(d.as_str()).or_insert(0) += n;
            }
        }
        for (d, n) in all {
            let _ = writeln!(
                s,
                "- {t}: {d} ({n} record{})",
                if n == 1 { "" } else { "s" }
            );
        }
    }
    s
}

/// Each row against the table's first row (its baseline) on the seeds both have: the mean of
/// the per-seed differences and on how many of those seeds the row is above the baseline. Same
/// seed = same data order, head init and dropout draws, so the paired difference is less noisy
/// than the difference of means. Empty when the first row has no cells or there is one row.
fn paired_section(spec: &TableSpec, cells: &[Cell], tasks: &[&String]) -> String {
    let Some(base) = spec.rows.first() else {
        return String::new();
    };
    let cell = |row: &str, task: &str| cells.iter().find(|c| c.row == row && c.task == task);
    let mut lines = String::new();
    for row in spec.rows.iter().skip(1) {
        let mut line = format!("| {} |", row.name);
        let mut any = false;
        for t in tasks {
            let (Some(b), Some(c)) = (cell(&base.name, t), cell(&row.name, t)) else {
                line += " – |";
                continue;
            };
            let diffs: Vec<f64> = c
                .values
                .iter()
                .filter_map(|(seed, v)| b.values.get(seed).map(|bv| v - bv))
                .collect();
            if diffs.is_empty() {
                line += " – |";
                continue;
            }
            any = true;
            let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
            let above = diffs.iter().filter(|d| **d > 0.0).count();
            let _ = write!(line, " {mean:+.2} ({above}/{} above) |", diffs.len());
        }
        if any {
            lines += &line;
            lines += "\n";
        }
    }
    if lines.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "\nAgainst {}, seed by seed (same data order, head init and dropout): mean difference in points, and on how many of the common seeds the row is above.\n\n| method |",
        base.name
    );
    for t in tasks {
        let _ = write!(s, " {t} |");
    }
    s += "\n|---|";
    s += &"---|".repeat(tasks.len());
    s += "\n";
    s + &lines
}

/// The cells as CSV (`row,task,metric,n,mean,std,median,paper,seed values…`).
pub fn csv(cells: &[Cell]) -> String {
    let mut s = String::from("row,task,metric,n,mean,std,median,paper,trainable_params,values\n");
    for c in cells {
        let vals: Vec<String> = c.values.iter().map(|(k, v)| format!("s{k}={v}")).collect();
        let _ = writeln!(
            s,
            "\"{}\",{},{},{},{},{},{},{},{},\"{}\"",
            c.row.replace('"', "\"\""),
            c.task,
            c.metric,
            c.values.len(),
            c.mean,
            c.std,
            c.median,
            c.paper.map_or(String::new(), |v| v.to_string()),
            c.trainable_params,
            vals.join(" ")
        );
    }
    s
}

/// The plot title at 13 px from `left`, squeezed (`textLength`) when its estimated width
/// (7 px per character) would run past the right edge of a plot `w` wide.
fn title_svg(title: &str, left: f64, w: f64) -> String {
    let room = w - left - 10.0;
    let fit = if title.chars().count() as f64 * 7.0 > room {
        format!(" textLength=\"{room:.0}\" lengthAdjust=\"spacingAndGlyphs\"")
    } else {
        String::new()
    };
    format!(
        "<text x=\"{left}\" y=\"18\" font-size=\"13\"{fit}>{}</text>\n",
        xml(title)
    )
}

/// Per-task grouped bars (one per row) with the seed range as error bars, as SVG.
pub fn bars_svg(spec: &TableSpec, cells: &[Cell]) -> String {
    let tasks: Vec<String> = {
        let mut t: Vec<String> = Vec::new();
        for c in cells {
            if !t.contains(&c.task) {
                t.push(c.task.clone());
            }
        }
        t
    };
    let rows: Vec<&str> = spec
        .rows
        .iter()
        .map(|r| r.name.as_str())
        .filter(|r| cells.iter().any(|c| c.row == *r))
        .collect();
    let (w, h, left, bottom, top) = (
        // left margin, one 160-wide group per task, 20 of slack, 200 for the legend
        50.0 + 160.0 * tasks.len().max(1) as f64 + 20.0 + 200.0,
        360.0,
        50.0,
        60.0,
        30.0,
    );
    let lo = cells
        .iter()
        .flat_map(|c| c.values.values())
        .copied()
        .fold(f64::INFINITY, f64::min);
    let hi = cells
        .iter()
        .flat_map(|c| c.values.values())
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() {
        (
            (lo - 0.1 * (hi - lo).max(1.0)).floor(),
            (hi + 0.05 * (hi - lo).max(1.0)).ceil(),
        )
    } else {
        (0.0, 1.0)
    };
    let y = |v: f64| top + (h - top - bottom) * (1.0 - (v - lo) / (hi - lo).max(1e-9));
    let palette = [
        "#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb", "#000000",
    ];
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"{FONTS}\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    s += &title_svg(&spec.title, left, w);
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        let (x2, yv, xt, yt) = (w - 200.0, y(v), left - 4.0, y(v) + 4.0);
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" x2=\"{x2}\" y1=\"{yv:.1}\" y2=\"{yv:.1}\" stroke=\"#ddd\"/><text x=\"{xt}\" y=\"{yt:.1}\" text-anchor=\"end\">{v:.1}</text>"
        );
    }
    let group = 160.0;
    let bw = (group - 20.0) / rows.len().max(1) as f64;
    for (ti, t) in tasks.iter().enumerate() {
        let x0 = left + 10.0 + group * ti as f64;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x0 + (group - 20.0) / 2.0,
            h - bottom + 16.0,
            xml(t)
        );
        for (ri, r) in rows.iter().enumerate() {
            let Some(c) = cells.iter().find(|c| c.row == *r && &c.task == t) else {
                continue;
            };
            let x = x0 + bw * ri as f64;
            let _ = writeln!(
                s,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} {}: {:.2} ± {:.2}</title></rect>",
                y(c.mean),
                bw - 2.0,
                (h - bottom - y(c.mean)).max(0.0),
                palette[ri % palette.len()],
                xml(r),
                xml(t),
                c.mean,
                c.std
            );
            let (mn, mx) = c
                .values
                .values()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                    (a.min(*v), b.max(*v))
                });
            let xc = x + (bw - 2.0) / 2.0;
            let _ = writeln!(
                s,
                "<line x1=\"{xc:.1}\" x2=\"{xc:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>",
                y(mn),
                y(mx)
            );
        }
    }
    for (ri, r) in rows.iter().enumerate() {
        let yy = top + 16.0 * ri as f64;
        let _ = writeln!(
            s,
            "<rect x=\"{}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{:.1}\">{}</text>",
            w - 190.0,
            yy,
            palette[ri % palette.len()],
            w - 175.0,
            yy + 9.0,
            xml(r)
        );
    }
    s += "</svg>\n";
    s
}

/// One curve of a line plot: its table row (the colour) and task (the dash pattern).
#[derive(Debug, Clone)]
pub struct Curve {
    /// Row (method variant).
    pub row: String,
    /// Task.
    pub task: String,
    /// `(x, y)` points in order.
    pub points: Vec<(f64, f64)>,
}

/// A line plot as SVG: one colour per row, one dash pattern per task, a legend of rows (and of
/// tasks when there are several) as wide as its longest label, y labels with as many decimals
/// as the range needs.
pub fn lines_svg(title: &str, x_label: &str, y_label: &str, curves: &[Curve]) -> String {
    let mut rows: Vec<&str> = Vec::new();
    let mut tasks: Vec<&str> = Vec::new();
    for c in curves {
        if !rows.contains(&c.row.as_str()) {
            rows.push(&c.row);
        }
        if !tasks.contains(&c.task.as_str()) {
            tasks.push(&c.task);
        }
    }
    let show_tasks = tasks.len() > 1;
    let longest = rows
        .iter()
        .chain(if show_tasks { tasks.iter() } else { [].iter() })
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0);
    // 11 px sans text: ~6.5 px per character, plus the legend swatch and margins
    let right = (longest as f64 * 6.5 + 45.0).max(120.0);
    let (w, h, left, bottom, top) = (520.0 + right, 360.0, 60.0, 45.0, 30.0);
    let pts = curves.iter().flat_map(|c| c.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for (x, y) in pts {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let sx = |x: f64| left + (w - left - right) * (x - x0) / (x1 - x0).max(1e-9);
    let sy = |y: f64| top + (h - top - bottom) * (1.0 - (y - y0) / (y1 - y0).max(1e-9));
    let palette = [
        "#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#000000", "#bbbbbb",
    ];
    let dashes = ["", "6,3", "2,2", "8,3,2,3"];
    let color = |row: &str| palette[rows.iter().position(|r| *r == row).unwrap_or(0) % 8];
    let dash = |task: &str| {
        let d = dashes[tasks.iter().position(|t| *t == task).unwrap_or(0) % dashes.len()];
        if d.is_empty() {
            String::new()
        } else {
            format!(" stroke-dasharray=\"{d}\"")
        }
    };
    let range = y1 - y0;
    let decimals = if range >= 20.0 {
        0
    } else if range >= 2.0 {
        1
    } else if range >= 0.2 {
        2
    } else {
        3
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"{FONTS}\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{}",
        title_svg(title, left, w)
    );
    for k in 0..=4 {
        let v = y0 + (y1 - y0) * k as f64 / 4.0;
        let (x2, yv, xt, yt) = (w - right, sy(v), left - 4.0, sy(v) + 4.0);
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" x2=\"{x2}\" y1=\"{yv:.1}\" y2=\"{yv:.1}\" stroke=\"#ddd\"/><text x=\"{xt}\" y=\"{yt:.1}\" text-anchor=\"end\">{v:.decimals$}</text>"
        );
        let xv = x0 + (x1 - x0) * k as f64 / 4.0;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{xv:.0}</text>",
            sx(xv),
            h - bottom + 14.0
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text><text x=\"12\" y=\"{:.1}\" transform=\"rotate(-90 12 {:.1})\" text-anchor=\"middle\">{}</text>",
        (left + w - right) / 2.0,
        h - 8.0,
        xml(x_label),
        h / 2.0,
        h / 2.0,
        xml(y_label)
    );
    for c in curves {
        let d: Vec<String> = c
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.4\"{} points=\"{}\"/>",
            color(&c.row),
            dash(&c.task),
            d.join(" ")
        );
    }
    let lx = w - right + 10.0;
    let mut yy = top;
    for row in &rows {
        let _ = writeln!(
            s,
            "<rect x=\"{lx}\" y=\"{yy:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{:.1}\">{}</text>",
            color(row),
            lx + 15.0,
            yy + 9.0,
            xml(row)
        );
        yy += 14.0;
    }
    if show_tasks {
        yy += 8.0;
        for task in &tasks {
            let _ = writeln!(
                s,
                "<line x1=\"{lx}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#444\" stroke-width=\"1.4\"{}/><text x=\"{}\" y=\"{:.1}\">{}</text>",
                lx + 22.0,
                yy + 5.0,
                yy + 5.0,
                dash(task),
                lx + 27.0,
                yy + 9.0,
                xml(task)
            );
            yy += 14.0;
        }
    }
    s += "</svg>\n";
    s
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A SLURM job-array script running every shard of a table.
pub fn slurm_script(method: &str, profile: &str, shards: usize, extra: &str) -> String {
    format!(
        "#!/bin/bash\n#SBATCH --job-name=peftlab-{method}-{profile}\n#SBATCH --array=1-{shards}\n#SBATCH --cpus-per-task=2\n#SBATCH --time=04:00:00\n# Each array task runs a deterministic share of the table's runs; records land in the same\n# results directory, and any later `cargo xtask reproduce` call aggregates all of them.\nset -euo pipefail\ncd \"${{SLURM_SUBMIT_DIR}}\"\ncargo xtask reproduce {method} --profile {profile} --shard \"${{SLURM_ARRAY_TASK_ID}}/{shards}\"{extra}\n"
    )
}
