//! Loaders: the GLUE tasks from a standard GLUE directory (the official TSV layouts), and the
//! fetched real sets (normalized JSONL under the cache) with their documented, seeded splits.
//!
//! | task | source | split |
//! |---|---|---|
//! | `glue-<task>` | `DIR/<Task>/train.tsv`, `dev.tsv` (MNLI: `dev_matched.tsv` as dev, `dev_mismatched.tsv` as `extra["dev_mismatched"]`), `test.tsv` unlabelled | the official files |
//! | `mr2` | VADER movie-review snippets, label = sign of the mean human score (the 37 zeros skipped) | 80/10/10 by id, seed 13 |
//! | `mr-score` | the same snippets, regression on the score (−4…4) | 80/10/10 by id, seed 13 |
//! | `boolq` | BoolQ: labelled rows of `combined.jsonl` not in `dev.jsonl` → train/dev 90/10; `dev.jsonl` → test | by question+passage, seed 17 |
//! | `vitaminc` | BIG-bench VitaminC, evidence/claim → True/False/Neither | 80/10/10 by example, seed 19 |
//! | `trec` | TREC questions, 6 coarse classes | 80/10/10 by question, seed 23 |
//! | `e2e` | GEM E2E sample: one example per meaning representation, all its references | by MR: 170 / 21 / 22 of the 213 MRs (the same proportions for fewer: [`e2e_split_sizes`]), seed 29 |
//! | `webnlg` | GEM WebNLG (en) sample: triples → text, all references | 80/10/10 by input, seed 31 |
//!
//! `vitaminc`, `e2e` and `webnlg` read the `bigbench` artifact, which the manifest declares
//! withdrawn (the registry no longer serves `bigbench==1.0.0`): they load from the cache only
//! where it was fetched before or from a copy of the pinned file (`cargo xtask fetch --only
//! bigbench --from FILE`). Any fetched task also loads from a directory of its normalized files
//! ([`load_dir`]; [`task_files`] names them), such as the slices committed under
//! `crates/peftlab-data/slices/`. Every loaded task records its [`Dataset::provenance`].
//!
//! For users who have the papers' data: [`e2e_csv`] (the official E2E challenge CSV),
//! [`dart_json`] (DART), [`boolq_jsonl`] (SuperGLUE BoolQ) and [`glue`].
//!
//! Errors name the file and line of a bad row; every row not used is counted in
//! [`Dataset::skipped`] with its reason.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde_json::Value;

use crate::DataError;
use crate::fetch::cache_dir;
use crate::task::{
    Dataset, Example, InputKind, Label, LabelKind, TaskSpec, shuffle, split_of, splitmix64,
};

fn file_err(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::File {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn row_err(path: &Path, line: usize, reason: impl Into<String>) -> DataError {
    DataError::Row {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

fn read(path: &Path) -> Result<String, DataError> {
    std::fs::read_to_string(path).map_err(|e| file_err(path, e.to_string()))
}

fn spec(
    name: &str,
    input: InputKind,
    labels: LabelKind,
    metrics: &[&str],
    seed: u64,
    d: &str,
) -> TaskSpec {
    TaskSpec {
        name: name.into(),
        input,
        labels,
        metrics: metrics.iter().map(|m| m.to_string()).collect(),
        split_seed: seed,
        description: d.into(),
    }
}

fn classes(names: &[&str]) -> LabelKind {
    LabelKind::Classes(names.iter().map(|s| s.to_string()).collect())
}

// ---------------------------------------------------------------- GLUE

/// GLUE layout of one task: directory, columns of text a / b / label (by header name, or by
/// index for CoLA which has no header), label values in class order.
struct GlueLayout {
    dir: &'static str,
    header: bool,
    a: &'static str,
    b: Option<&'static str>,
    label: &'static str,
    values: &'static [&'static str],
    names: &'static [&'static str],
    metrics: &'static [&'static str],
}

fn glue_layout(task: &str) -> Option<GlueLayout> {
    let l = |dir, header, a, b, label, values, names, metrics| GlueLayout {
        dir,
        header,
        a,
        b,
        label,
        values,
        names,
        metrics,
    };
    Some(match task {
        "cola" => l(
            "CoLA",
            false,
            "3",
            None,
            "1",
            &["0", "1"],
            &["unacceptable", "acceptable"],
            &["mcc"],
        ),
        "sst2" => l(
            "SST-2",
            true,
            "sentence",
            None,
            "label",
            &["0", "1"],
            &["negative", "positive"],
            &["accuracy"],
        ),
        "mrpc" => l(
            "MRPC",
            true,
            "#1 String",
            Some("#2 String"),
            "Quality",
            &["0", "1"],
            &["not_equivalent", "equivalent"],
            &["accuracy", "f1"],
        ),
        "stsb" => l(
            "STS-B",
            true,
            "sentence1",
            Some("sentence2"),
            "score",
            &[],
            &[],
            &["pearson", "spearman"],
        ),
        "qqp" => l(
            "QQP",
            true,
            "question1",
            Some("question2"),
            "is_duplicate",
            &["0", "1"],
            &["not_duplicate", "duplicate"],
            &["accuracy", "f1"],
        ),
        "mnli" => l(
            "MNLI",
            true,
            "sentence1",
            Some("sentence2"),
            "gold_label",
            &["entailment", "neutral", "contradiction"],
            &["entailment", "neutral", "contradiction"],
            &["accuracy"],
        ),
        "qnli" => l(
            "QNLI",
            true,
            "question",
            Some("sentence"),
            "label",
            &["entailment", "not_entailment"],
            &["entailment", "not_entailment"],
            &["accuracy"],
        ),
        "rte" => l(
            "RTE",
            true,
            "sentence1",
            Some("sentence2"),
            "label",
            &["entailment", "not_entailment"],
            &["entailment", "not_entailment"],
            &["accuracy"],
        ),
        "wnli" => l(
            "WNLI",
            true,
            "sentence1",
            Some("sentence2"),
            "label",
            &["0", "1"],
            &["not_entailment", "entailment"],
            &["accuracy"],
        ),
        _ => return None,
    })
}

/// Read one GLUE TSV. Unlabelled files (test) give `label: None`.
fn glue_file(
    path: &Path,
    lay: &GlueLayout,
    labelled: bool,
    skipped: &mut BTreeMap<String, usize>,
) -> Result<Vec<Example>, DataError> {
    let text = read(path)?;
    let mut lines = text.lines().enumerate();
    // CoLA's labelled files have no header (columns: source, label, original label,
    // sentence); its test file and every other file have one, and columns are found by name
    let has_header = lay.header || !labelled;
    let header: Vec<&str> = if has_header {
        lines
            .next()
            .map(|(_, h)| h.split('\t').collect())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let by_name = |name: &str| -> Result<usize, DataError> {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| row_err(path, 1, format!("no column {name:?} in the header")))
    };
    let (ia, ib, il) = if !has_header {
        (3, None, 1)
    } else {
        let a = if lay.header { lay.a } else { "sentence" };
        let ib = lay.b.map(&by_name).transpose()?;
        let il = if labelled {
            by_name(lay.label)?
        } else {
            usize::MAX
        };
        (by_name(a)?, ib, il)
    };
    let mut out = Vec::new();
    for (i, line) in lines {
        let f: Vec<&str> = line.split('\t').collect();
        let get = |k: usize| f.get(k).copied();
        let Some(a) = get(ia) else {
            return Err(row_err(
                path,
                i + 1,
                format!("{} fields, text column {ia} missing", f.len()),
            ));
        };
        let b = match ib {
            Some(k) => Some(
                get(k)
                    .ok_or_else(|| {
                        row_err(
                            path,
                            i + 1,
                            format!("{} fields, text column {k} missing", f.len()),
                        )
                    })?
                    .to_string(),
            ),
            None => None,
        };
        let label = if labelled {
            let raw = get(il)
                .ok_or_else(|| {
                    row_err(
                        path,
                        i + 1,
                        format!("{} fields, label column {il} missing", f.len()),
                    )
                })?
                .trim();
            if lay.values.is_empty() {
                Some(Label::Score(raw.parse().map_err(|_| {
                    row_err(path, i + 1, format!("score {raw:?} is not a number"))
                })?))
            } else {
                match lay.values.iter().position(|v| *v == raw) {
                    Some(c) => Some(Label::Class(c)),
                    None if raw == "-" => {
                        // MNLI rows without annotator agreement
                        *skipped.entry("no gold label (\"-\")".into()).or_insert(0) += 1;
                        continue;
                    }
                    None => {
                        return Err(row_err(
                            path,
                            i + 1,
                            format!("label {raw:?} is not one of {:?}", lay.values),
                        ));
                    }
                }
            }
        } else {
            None
        };
        out.push(Example {
            id: format!(
                "{}:{}",
                path.file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                i + 1
            ),
            text_a: a.to_string(),
            text_b: b,
            label,
        });
    }
    Ok(out)
}

/// A GLUE task (`cola`, `sst2`, `mrpc`, `stsb`, `qqp`, `mnli`, `qnli`, `rte`, `wnli`) from a
/// standard GLUE directory (`DIR/CoLA/train.tsv`, …, as the GLUE download script lays it out).
pub fn glue(dir: &Path, task: &str) -> Result<Dataset, DataError> {
    let lay = glue_layout(task).ok_or_else(|| {
        file_err(
            dir,
            format!(
                "unknown GLUE task {task:?} (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli)"
            ),
        )
    })?;
    let d = dir.join(lay.dir);
    let mut skipped = BTreeMap::new();
    let train = glue_file(&d.join("train.tsv"), &lay, true, &mut skipped)?;
    let dev_name = if task == "mnli" {
        "dev_matched.tsv"
    } else {
        "dev.tsv"
    };
    let dev = glue_file(&d.join(dev_name), &lay, true, &mut skipped)?;
    let mut extra = BTreeMap::new();
    if task == "mnli" {
        extra.insert(
            "dev_mismatched".to_string(),
            glue_file(&d.join("dev_mismatched.tsv"), &lay, true, &mut skipped)?,
        );
    }
    let test_path = d.join(if task == "mnli" {
        "test_matched.tsv"
    } else {
        "test.tsv"
    });
    let test = if test_path.exists() {
        glue_file(&test_path, &lay, false, &mut skipped)?
    } else {
        Vec::new()
    };
    let labels = if lay.values.is_empty() {
        LabelKind::Score
    } else {
        classes(lay.names)
    };
    let input = if lay.b.is_some() {
        InputKind::Pair
    } else {
        InputKind::Single
    };
    Ok(Dataset {
        task: spec(
            &format!("glue-{task}"),
            input,
            labels,
            lay.metrics,
            0,
            &format!(
                "GLUE {} from {} (official train/dev files; test unlabelled)",
                lay.dir,
                d.display()
            ),
        ),
        train,
        dev,
        test,
        extra,
        skipped,
        provenance: None,
    })
}

// ---------------------------------------------------------------- fetched sets

/// The names of the fetched tasks [`load`] knows.
pub const FETCHED_TASKS: [&str; 7] = [
    "mr2", "mr-score", "boolq", "vitaminc", "trec", "e2e", "webnlg",
];

fn jsonl(path: &Path) -> Result<Vec<Value>, DataError> {
    read(path)?
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| row_err(path, i + 1, e.to_string())))
        .collect()
}

/// The manifest artifact each fetched task reads, and the normalized files it reads from it.
pub fn task_files(task: &str) -> Option<(&'static str, &'static [&'static str])> {
    Some(match task {
        "mr2" | "mr-score" => ("mr", &["snippets.jsonl"]),
        "boolq" => ("boolq", &["combined.jsonl", "dev.jsonl"]),
        "vitaminc" => ("bigbench", &["vitaminc.jsonl"]),
        "trec" => ("trec", &["questions.jsonl"]),
        "e2e" => ("bigbench", &["e2e_nlg.jsonl"]),
        "webnlg" => ("bigbench", &["webnlg_en.jsonl"]),
        _ => return None,
    })
}

fn str_field<'a>(v: &'a Value, key: &str, path: &Path, line: usize) -> Result<&'a str, DataError> {
    v[key]
        .as_str()
        .ok_or_else(|| row_err(path, line, format!("no string {key:?}")))
}

/// Version of the fetched tasks' split definitions (membership and order). Run records store it,
/// and `cargo xtask reproduce` re-runs records made under another version.
/// 2: splits in seeded random order (1 kept file order, which MR sorts by label).
pub const SPLITS_VERSION: u32 = 2;

/// Hash-split `rows` by key, then put each split in a seeded random order: the source files are
/// often sorted by label (MR lists all positive snippets first), and a user taking the first N
/// examples of a split must get a sample, not one class.
fn split3(seed: u64, rows: Vec<(String, Example)>, train: f64, dev: f64) -> [Vec<Example>; 3] {
    let mut out = [Vec::new(), Vec::new(), Vec::new()];
    for (key, ex) in rows {
        out[split_of(seed, &key, train, dev)].push(ex);
    }
    for (k, split) in out.iter_mut().enumerate() {
        shuffle(split, splitmix64(seed ^ (0xA5A5 + k as u64)));
    }
    out
}

/// A task by name: `glue-<task>` (a GLUE directory) or one of [`PAPER_NLG_TASKS`] from
/// `data_dir`, else a fetched task: from `data_dir` when given (a directory holding the
/// artifact's normalized files, e.g. a committed slice: [`load_dir`]), else from the cache
/// ([`load`]).
pub fn load_named(task: &str, data_dir: Option<&Path>) -> Result<Dataset, DataError> {
    let dir = || {
        data_dir.ok_or_else(|| {
            DataError::Tool(format!(
                "{task}: needs the directory with your copy of the papers' data"
            ))
        })
    };
    match task.strip_prefix("glue-") {
        Some(t) => glue(dir()?, t),
        None if PAPER_NLG_TASKS.contains(&task) => paper_nlg(dir()?, task),
        None => match data_dir {
            Some(d) => load_dir(task, d),
            None => load(task),
        },
    }
}

/// The papers' NLG data from a directory of the official files (not obtainable here; for users
/// who have them): `e2e-official` — the E2E challenge's `trainset.csv`, `devset.csv`,
/// `testset_w_refs.csv`; `dart` — `dart-v1.1.1-full-{train,dev,test}.json`. Splits are the
/// official ones, in file order.
pub const PAPER_NLG_TASKS: [&str; 2] = ["e2e-official", "dart"];

/// A loader of one file of a task's data.
type FileLoader = fn(&Path) -> Result<Vec<Example>, DataError>;

/// See [`PAPER_NLG_TASKS`].
pub fn paper_nlg(dir: &Path, task: &str) -> Result<Dataset, DataError> {
    let metrics = ["bleu", "nist", "meteor", "rouge_l", "cider_d", "ter"];
    let (files, load_file, about): ([&str; 3], FileLoader, &str) = match task {
        "e2e-official" => (
            ["trainset.csv", "devset.csv", "testset_w_refs.csv"],
            e2e_csv,
            "the official E2E NLG challenge data (Novikova et al. 2017): trainset / devset / testset_w_refs",
        ),
        "dart" => (
            [
                "dart-v1.1.1-full-train.json",
                "dart-v1.1.1-full-dev.json",
                "dart-v1.1.1-full-test.json",
            ],
            dart_json,
            "DART v1.1.1 (Nan et al. 2021): the official train / dev / test JSON",
        ),
        other => {
            return Err(DataError::Manifest(format!(
                "unknown task {other:?} (the papers' NLG data: {})",
                PAPER_NLG_TASKS.join(", ")
            )));
        }
    };
    let [train, dev, test] = [0, 1, 2].map(|i| load_file(&dir.join(files[i])));
    Ok(Dataset {
        task: spec(
            task,
            InputKind::DataToText,
            LabelKind::References,
            &metrics,
            0,
            about,
        ),
        train: train?,
        dev: dev?,
        test: test?,
        extra: BTreeMap::new(),
        skipped: BTreeMap::new(),
        provenance: None,
    })
}

/// Load a fetched task from the cache (`$PEFTLAB_CACHE` rules; see the module table).
pub fn load(task: &str) -> Result<Dataset, DataError> {
    load_from(task, &cache_dir())
}

/// [`load`] from a given cache directory (the artifact is fetched when it is not there).
pub fn load_from(task: &str, cache: &Path) -> Result<Dataset, DataError> {
    let (artifact, _) = task_files(task).ok_or_else(|| unknown_task(task))?;
    let a = crate::fetch::artifact(artifact)?;
    let dir = crate::fetch::ensure_artifact(&a, cache)?;
    load_files(task, &dir, crate::fetch::origin(&a, cache))
}

/// A fetched task read from `dir`, a directory with the normalized files of its artifact
/// ([`task_files`]; e.g. a slice committed to the repository), split as the fetched task.
pub fn load_dir(task: &str, dir: &Path) -> Result<Dataset, DataError> {
    load_files(task, dir, format!("directory {}", dir.display()))
}

fn unknown_task(task: &str) -> DataError {
    DataError::Manifest(format!(
        "unknown task {task:?} (fetched: {}; GLUE: glue(dir, task))",
        FETCHED_TASKS.join(", ")
    ))
}

/// The E2E split by meaning representation of `n` MRs: the 170 / 21 / 22 of the GEM sample's
/// 213, in proportion for fewer (a slice), as `(train, train + dev)`.
pub fn e2e_split_sizes(n: usize) -> (usize, usize) {
    (n * 170 / 213, n * 191 / 213)
}

fn load_files(task: &str, dir: &Path, source: String) -> Result<Dataset, DataError> {
    let (_, files) = task_files(task).ok_or_else(|| unknown_task(task))?;
    let provenance = crate::fetch::provenance(source, dir, files)?;
    let mut skipped = BTreeMap::new();
    let (spec_, [train, dev, test]) = match task {
        "mr2" | "mr-score" => {
            let p = dir.join("snippets.jsonl");
            let mut rows = Vec::new();
            for (i, v) in jsonl(&p)?.into_iter().enumerate() {
                let id = str_field(&v, "id", &p, i + 1)?.to_string();
                let text = str_field(&v, "text", &p, i + 1)?.to_string();
                let score = v["score"]
                    .as_f64()
                    .ok_or_else(|| row_err(&p, i + 1, "no number \"score\""))?;
                let label = if task == "mr-score" {
                    Label::Score(score)
                } else if score == 0.0 {
                    *skipped
                        .entry("mean score exactly 0 (no sentiment sign)".into())
                        .or_insert(0) += 1;
                    continue;
                } else {
                    Label::Class(usize::from(score > 0.0))
                };
                rows.push((
                    id.clone(),
                    Example {
                        id,
                        text_a: text,
                        text_b: None,
                        label: Some(label),
                    },
                ));
            }
            let s = if task == "mr2" {
                spec(
                    "mr2",
                    InputKind::Single,
                    classes(&["negative", "positive"]),
                    &["accuracy"],
                    13,
                    "MR movie-review snippets (VADER ground truth, Pang & Lee sentences), label = sign of the mean human rating; SST-2 substitute",
                )
            } else {
                spec(
                    "mr-score",
                    InputKind::Single,
                    LabelKind::Score,
                    &["pearson", "spearman"],
                    13,
                    "MR snippets with the mean of ~20 human ratings (−4…4) as a regression target; STS-B substitute",
                )
            };
            (s, split3(13, rows, 0.8, 0.1))
        }
        "boolq" => {
            let dev_rows = jsonl(&dir.join("dev.jsonl"))?;
            let key = |v: &Value| {
                format!(
                    "{}\u{1f}{}",
                    v["question"].as_str().unwrap_or(""),
                    v["passage"].as_str().unwrap_or("")
                )
            };
            // dev.jsonl keeps the title apart; combined.jsonl has "title -- passage"
            let dev_keys: HashSet<String> = dev_rows
                .iter()
                .map(|v| {
                    format!(
                        "{}\u{1f}{} -- {}",
                        v["question"].as_str().unwrap_or(""),
                        v["title"].as_str().unwrap_or(""),
                        v["passage"].as_str().unwrap_or("")
                    )
                })
                .collect();
            let to_ex = |v: &Value, p: &Path, i: usize, id: String| -> Result<Example, DataError> {
                let label = v["label"]
                    .as_bool()
                    .ok_or_else(|| row_err(p, i + 1, "no boolean label"))?;
                Ok(Example {
                    id,
                    text_a: str_field(v, "question", p, i + 1)?.to_string(),
                    text_b: Some(str_field(v, "passage", p, i + 1)?.to_string()),
                    label: Some(Label::Class(usize::from(label))),
                })
            };
            let cp = dir.join("combined.jsonl");
            let mut rows = Vec::new();
            for (i, v) in jsonl(&cp)?.iter().enumerate() {
                if !v["label"].is_boolean() {
                    *skipped.entry("unlabelled (BoolQ test)".into()).or_insert(0) += 1;
                    continue;
                }
                if dev_keys.contains(&key(v)) {
                    *skipped
                        .entry("in dev.jsonl (used as test)".into())
                        .or_insert(0) += 1;
                    continue;
                }
                rows.push((key(v), to_ex(v, &cp, i, format!("combined:{}", i + 1))?));
            }
            let dp = dir.join("dev.jsonl");
            let test = dev_rows
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let mut e = to_ex(v, &dp, i, format!("dev:{}", i + 1))?;
                    // the same passage text as training sees: "title -- passage"
                    if let (Some(t), Some(p)) = (v["title"].as_str(), e.text_b.as_mut()) {
                        *p = format!("{t} -- {p}");
                    }
                    Ok(e)
                })
                .collect::<Result<Vec<_>, DataError>>()?;
            let [tr, dv, _] = split3(17, rows, 0.9, 0.1);
            (
                spec(
                    "boolq",
                    InputKind::Pair,
                    classes(&["false", "true"]),
                    &["accuracy"],
                    17,
                    "BoolQ (SuperGLUE): question + passage → yes/no; official dev as test, train split 90/10 into train/dev; QNLI/RTE substitute",
                ),
                [tr, dv, test],
            )
        }
        "vitaminc" => {
            let p = dir.join("vitaminc.jsonl");
            let names = ["True", "False", "Neither"];
            let mut rows = Vec::new();
            for (i, v) in jsonl(&p)?.into_iter().enumerate() {
                let l = str_field(&v, "label", &p, i + 1)?;
                let c = names
                    .iter()
                    .position(|n| *n == l)
                    .ok_or_else(|| row_err(&p, i + 1, format!("label {l:?}")))?;
                let id = format!("vitaminc:{i}");
                rows.push((
                    id.clone(),
                    Example {
                        id,
                        text_a: str_field(&v, "evidence", &p, i + 1)?.to_string(),
                        text_b: Some(str_field(&v, "claim", &p, i + 1)?.to_string()),
                        label: Some(Label::Class(c)),
                    },
                ));
            }
            (
                spec(
                    "vitaminc",
                    InputKind::Pair,
                    classes(&names),
                    &["accuracy", "f1_macro"],
                    19,
                    "VitaminC fact verification (BIG-bench): evidence + claim → True/False/Neither; MNLI substitute",
                ),
                split3(19, rows, 0.8, 0.1),
            )
        }
        "trec" => {
            let p = dir.join("questions.jsonl");
            let names = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"];
            let mut rows = Vec::new();
            let mut seen = HashSet::new();
            for (i, v) in jsonl(&p)?.into_iter().enumerate() {
                let q = str_field(&v, "question", &p, i + 1)?.to_string();
                let c = str_field(&v, "coarse", &p, i + 1)?;
                let c = names
                    .iter()
                    .position(|n| *n == c)
                    .ok_or_else(|| row_err(&p, i + 1, format!("coarse class {c:?}")))?;
                if !seen.insert(q.clone()) {
                    *skipped.entry("duplicate question".into()).or_insert(0) += 1;
                    continue;
                }
                rows.push((
                    q.clone(),
                    Example {
                        id: format!("trec:{i}"),
                        text_a: q,
                        text_b: None,
                        label: Some(Label::Class(c)),
                    },
                ));
            }
            (
                spec(
                    "trec",
                    InputKind::Single,
                    classes(&names),
                    &["accuracy"],
                    23,
                    "TREC question classification, 6 coarse classes; split by question text (duplicates kept once)",
                ),
                split3(23, rows, 0.8, 0.1),
            )
        }
        "e2e" | "webnlg" => {
            let file = if task == "e2e" {
                "e2e_nlg.jsonl"
            } else {
                "webnlg_en.jsonl"
            };
            let p = dir.join(file);
            // one example per input with all its references (E2E lists each reference as a row)
            let mut by_input: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (i, v) in jsonl(&p)?.into_iter().enumerate() {
                let input = str_field(&v, "input", &p, i + 1)?.to_string();
                let refs = v["refs"]
                    .as_array()
                    .ok_or_else(|| row_err(&p, i + 1, "no \"refs\""))?;
                let e = by_input.entry(input).or_default();
                for r in refs {
                    e.push(
                        r.as_str()
                            .ok_or_else(|| row_err(&p, i + 1, "non-string reference"))?
                            .to_string(),
                    );
                }
            }
            let examples: Vec<Example> = by_input
                .into_iter()
                .enumerate()
                .map(|(k, (input, refs))| Example {
                    id: format!("{task}:{k}"),
                    text_a: input,
                    text_b: None,
                    label: Some(Label::Refs(refs)),
                })
                .collect();
            let metrics = ["bleu", "nist", "meteor", "rouge_l", "cider_d", "ter"];
            if task == "e2e" {
                // by meaning representation: 170 / 21 / 22 MRs, seeded order
                let mut ex = examples;
                shuffle(&mut ex, 29);
                let (n_train, n_train_dev) = e2e_split_sizes(ex.len());
                let test = ex.split_off(n_train_dev);
                let dev = ex.split_off(n_train);
                (
                    spec(
                        "e2e",
                        InputKind::DataToText,
                        LabelKind::References,
                        &metrics,
                        29,
                        "GEM E2E-NLG test sample (BIG-bench): 213 meaning representations with all references; split by MR 170/21/22 so no MR is in two splits",
                    ),
                    [ex, dev, test],
                )
            } else {
                let rows = examples
                    .into_iter()
                    .map(|e| (e.text_a.clone(), e))
                    .collect();
                (
                    spec(
                        "webnlg",
                        InputKind::DataToText,
                        LabelKind::References,
                        &metrics,
                        31,
                        "GEM WebNLG (en) test sample (BIG-bench): RDF triples → text, all references; split by input 80/10/10",
                    ),
                    split3(31, rows, 0.8, 0.1),
                )
            }
        }
        other => return Err(unknown_task(other)),
    };
    Ok(Dataset {
        task: spec_,
        train,
        dev,
        test,
        extra: BTreeMap::new(),
        skipped,
        provenance: Some(provenance),
    })
}

// ---------------------------------------------------------------- user-provided formats

/// Fields of an RFC 4180 CSV text: quoted fields may hold commas, doubled quotes and newlines.
/// Returns each record with the 1-based line it starts on.
pub fn parse_csv(text: &str, path: &Path) -> Result<Vec<(usize, Vec<String>)>, DataError> {
    let mut records = Vec::new();
    let mut field = String::new();
    let mut record = Vec::new();
    let (mut line, mut start) = (1usize, 1usize);
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push((start, std::mem::take(&mut record)));
                line += 1;
                start = line;
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err(row_err(path, start, "unterminated quoted field"));
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push((start, record));
    }
    Ok(records)
}

/// The official E2E NLG challenge CSV (`mr,ref` with a header; quoted fields): one example per
/// meaning representation with all its references, in file order.
pub fn e2e_csv(path: &Path) -> Result<Vec<Example>, DataError> {
    let records = parse_csv(&read(path)?, path)?;
    let mut it = records.into_iter();
    let (_, header) = it.next().ok_or_else(|| file_err(path, "empty file"))?;
    let col = |n: &str| {
        header
            .iter()
            .position(|h| h.trim() == n)
            .ok_or_else(|| row_err(path, 1, format!("no {n:?} column (E2E CSV has mr,ref)")))
    };
    let (imr, iref) = (col("mr")?, col("ref").ok());
    let mut order: Vec<String> = Vec::new();
    let mut refs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (line, r) in it {
        if r.len() == 1 && r[0].is_empty() {
            continue;
        }
        let mr = r
            .get(imr)
            .ok_or_else(|| {
                row_err(
                    path,
                    line,
                    format!("{} fields, expected {}", r.len(), header.len()),
                )
            })?
            .clone();
        let e = refs.entry(mr.clone()).or_insert_with(|| {
            order.push(mr.clone());
            Vec::new()
        });
        if let Some(i) = iref {
            e.push(
                r.get(i)
                    .ok_or_else(|| {
                        row_err(
                            path,
                            line,
                            format!("{} fields, expected {}", r.len(), header.len()),
                        )
                    })?
                    .clone(),
            );
        }
    }
    Ok(order
        .into_iter()
        .enumerate()
        .map(|(k, mr)| {
            let r = refs.remove(&mr).unwrap_or_default();
            Example {
                id: format!("e2e:{k}"),
                text_a: mr,
                text_b: None,
                label: (!r.is_empty()).then_some(Label::Refs(r)),
            }
        })
        .collect())
}

/// DART JSON (a list of `{"tripleset": [[s, p, o], …], "annotations": [{"text": …}, …]}`):
/// input `s | p | o, …` as the GEM WebNLG sample writes triples, references from the
/// annotations.
pub fn dart_json(path: &Path) -> Result<Vec<Example>, DataError> {
    let v: Value =
        serde_json::from_str(&read(path)?).map_err(|e| row_err(path, e.line(), e.to_string()))?;
    let items = v
        .as_array()
        .ok_or_else(|| file_err(path, "expected a JSON list"))?;
    items
        .iter()
        .enumerate()
        .map(|(k, it)| {
            let bad = |r: &str| row_err(path, k + 1, format!("entry {k}: {r}"));
            let triples = it["tripleset"]
                .as_array()
                .ok_or_else(|| bad("no \"tripleset\""))?;
            let parts = triples
                .iter()
                .map(|t| {
                    let t = t
                        .as_array()
                        .filter(|t| t.len() == 3)
                        .ok_or_else(|| bad("a triple is not [s, p, o]"))?;
                    let s: Vec<&str> = t.iter().map(|x| x.as_str().unwrap_or("")).collect();
                    Ok(format!("({} | {} | {})", s[0], s[1], s[2]))
                })
                .collect::<Result<Vec<_>, DataError>>()?;
            let refs: Vec<String> = it["annotations"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x["text"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            Ok(Example {
                id: format!("dart:{k}"),
                text_a: parts.join(", "),
                text_b: None,
                label: (!refs.is_empty()).then_some(Label::Refs(refs)),
            })
        })
        .collect()
}

/// BoolQ JSONL as SuperGLUE distributes it (`question`, `passage`, `label` bool; or the original
/// release's `answer` and `title`).
pub fn boolq_jsonl(path: &Path) -> Result<Vec<Example>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| file_err(path, e.to_string()))?;
    let normalized = crate::fetch::convert("boolq", &bytes, &path.to_string_lossy())?;
    let text = String::from_utf8(normalized).expect("the converter writes JSON text");
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            let v: Value =
                serde_json::from_str(l).map_err(|e| row_err(path, i + 1, e.to_string()))?;
            let passage = match v["title"].as_str() {
                Some(t) => format!("{t} -- {}", v["passage"].as_str().unwrap_or("")),
                None => v["passage"].as_str().unwrap_or("").to_string(),
            };
            Ok(Example {
                id: format!("boolq:{}", i + 1),
                text_a: v["question"].as_str().unwrap_or("").to_string(),
                text_b: Some(passage),
                label: v["label"].as_bool().map(|b| Label::Class(usize::from(b))),
            })
        })
        .collect()
}
