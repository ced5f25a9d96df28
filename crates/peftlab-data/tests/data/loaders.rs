//! Loaders on committed fixtures in the official GLUE TSV layouts (2–3 rows per file, copied
//! from the real files' first rows), and on the fetched real sets when present (CI fetches
//! them): split sizes, disjointness and label spaces.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use peftlab_data::loaders::{glue, load};
use peftlab_data::task::{InputKind, Label, LabelKind};

fn glue_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/glue")
}

#[test]
fn every_glue_layout_loads() {
    let d = glue_dir();
    let cola = glue(&d, "cola").unwrap();
    assert_eq!(
        (cola.train.len(), cola.dev.len(), cola.test.len()),
        (2, 1, 1)
    );
    assert_eq!(cola.train[1].text_a, "They drank the pub.");
    assert_eq!(cola.train[1].label, Some(Label::Class(0)));
    assert_eq!(cola.test[0].label, None);
    assert_eq!(cola.task.metrics, ["mcc"]);
    let sst = glue(&d, "sst2").unwrap();
    assert_eq!(sst.train[2].label, Some(Label::Class(1)));
    assert_eq!(sst.test[0].text_a, "uneasy mishmash of styles and genres .");
    let mrpc = glue(&d, "mrpc").unwrap();
    assert_eq!(mrpc.task.input, InputKind::Pair);
    assert_eq!(
        mrpc.train[1].text_b.as_deref(),
        Some("Yucaipa bought Dominick 's in 1995 .")
    );
    assert_eq!(mrpc.train[1].label, Some(Label::Class(0)));
    let sts = glue(&d, "stsb").unwrap();
    assert_eq!(sts.task.labels, LabelKind::Score);
    assert_eq!(sts.train[1].label, Some(Label::Score(3.8)));
    assert_eq!(
        sts.train[1].text_b.as_deref(),
        Some("A man is playing a flute.")
    );
    let qqp = glue(&d, "qqp").unwrap();
    assert_eq!(qqp.dev[0].label, Some(Label::Class(1)));
    let mnli = glue(&d, "mnli").unwrap();
    // dev_matched: the gold label is the last of 16 columns; the "-" row is counted, not kept
    assert_eq!(mnli.dev.len(), 1);
    assert_eq!(mnli.dev[0].label, Some(Label::Class(1)));
    assert_eq!(mnli.skipped["no gold label (\"-\")"], 1);
    assert_eq!(mnli.extra["dev_mismatched"][0].label, Some(Label::Class(2)));
    assert_eq!(
        mnli.train[0].text_a,
        "Conceptually cream skimming has two basic dimensions."
    );
    for (t, want) in [("qnli", 1), ("rte", 1), ("wnli", 1)] {
        let ds = glue(&d, t).unwrap();
        assert_eq!(ds.train[0].label, Some(Label::Class(want)), "{t}");
    }
}

#[test]
fn bad_glue_input_names_file_and_line() {
    let tmp = std::env::temp_dir().join(format!("peftlab-glue-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("RTE")).unwrap();
    std::fs::copy(glue_dir().join("RTE/dev.tsv"), tmp.join("RTE/dev.tsv")).unwrap();
    std::fs::write(
        tmp.join("RTE/train.tsv"),
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tmaybe\n",
    )
    .unwrap();
    let e = glue(&tmp, "rte").unwrap_err().to_string();
    assert!(
        e.contains("RTE/train.tsv:3") && e.contains("\"maybe\""),
        "{e}"
    );
    std::fs::write(
        tmp.join("RTE/train.tsv"),
        "index\tsentence1\tlabel\n0\ta\tentailment\n",
    )
    .unwrap();
    let e = glue(&tmp, "rte").unwrap_err().to_string();
    assert!(e.contains("train.tsv:1") && e.contains("sentence2"), "{e}");
    std::fs::write(
        tmp.join("RTE/train.tsv"),
        "index\tsentence1\tsentence2\tlabel\n0\ta\n",
    )
    .unwrap();
    let e = glue(&tmp, "rte").unwrap_err().to_string();
    assert!(e.contains("train.tsv:2") && e.contains("2 fields"), "{e}");
    let e = glue(&tmp, "mnli").unwrap_err().to_string();
    assert!(e.contains("MNLI/train.tsv"), "{e}");
    assert!(
        glue(&tmp, "squad")
            .unwrap_err()
            .to_string()
            .contains("unknown GLUE task")
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// References over all three splits of a generation task.
fn total_refs(d: &peftlab_data::task::Dataset) -> usize {
    [&d.train, &d.dev, &d.test]
        .iter()
        .flat_map(|s| s.iter())
        .map(|x| match &x.label {
            Some(Label::Refs(r)) => r.len(),
            _ => 0,
        })
        .sum()
}

/// The fetched task, or `None` (with a message) when its artifact is not in the cache: `load`
/// would fetch it, which a test should not do behind the user's back (CI fetches first; see
/// `fetch::for_test` for when a missing artifact fails the test).
fn fetched(task: &str) -> Option<peftlab_data::task::Dataset> {
    let (artifact, _) = peftlab_data::loaders::task_files(task).expect("a fetched task");
    peftlab_data::fetch::for_test(artifact)?;
    Some(load(task).unwrap_or_else(|e| panic!("{task}: {e}")))
}

#[test]
fn fetched_tasks_split_as_documented() {
    let Some(mr) = fetched("mr2") else { return };
    // the dataset names the source that the stamp names, and the file's hash is the pinned one
    let p = mr.provenance.as_ref().unwrap();
    assert!(
        p.source
            .starts_with("artifact mr from vadersentiment==3.3.2 (sha256 5d7c06e0"),
        "{}",
        p.source
    );
    let pinned = peftlab_data::fetch::artifact("mr").unwrap().inner_sha256;
    assert_eq!(p.files.get("snippets.jsonl"), pinned.get("snippets.jsonl"));
    let n = mr.train.len() + mr.dev.len() + mr.test.len();
    assert_eq!(n, 10_605 - 37);
    assert_eq!(mr.skipped.values().sum::<usize>(), 37);
    let f = mr.train.len() as f64 / n as f64;
    assert!((f - 0.8).abs() < 0.02, "train fraction {f}");
    let ids: HashSet<&str> = mr.train.iter().map(|e| e.id.as_str()).collect();
    assert!(mr.test.iter().all(|e| !ids.contains(e.id.as_str())));
    let score = fetched("mr-score").unwrap();
    assert_eq!(
        score.train.len() + score.dev.len() + score.test.len(),
        10_605
    );

    let b = fetched("boolq").unwrap();
    assert_eq!(b.test.len(), 3_270);
    assert_eq!(b.train.len() + b.dev.len(), 9_427, "{:?}", b.skipped);
    assert_eq!(b.skipped["unlabelled (BoolQ test)"], 3_245);

    let t = fetched("trec").unwrap();
    assert_eq!(
        t.train.len() + t.dev.len() + t.test.len() + t.skipped.values().sum::<usize>(),
        15_452
    );
    // seeded: loading twice gives the same split
    assert_eq!(fetched("trec").unwrap().dev, t.dev);
}

#[test]
fn fetched_gem_and_vitaminc_split_as_documented() {
    let Some(e) = fetched("e2e") else { return };
    assert_eq!((e.train.len(), e.dev.len(), e.test.len()), (170, 21, 22));
    let refs = total_refs(&e);
    assert_eq!(refs, 1_000, "every reference kept");
    let train_mrs: HashSet<&str> = e.train.iter().map(|x| x.text_a.as_str()).collect();
    assert!(
        e.dev
            .iter()
            .chain(&e.test)
            .all(|x| !train_mrs.contains(x.text_a.as_str()))
    );

    let v = fetched("vitaminc").unwrap();
    assert_eq!(v.train.len() + v.dev.len() + v.test.len(), 54_668);
    let w = fetched("webnlg").unwrap();
    assert!(
        w.train.len() > 700 && w.test.len() > 60,
        "{} {}",
        w.train.len(),
        w.test.len()
    );
}

fn formats(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/formats")
        .join(name)
}

/// The official E2E CSV (quoted fields with commas, doubled quotes and a newline), DART JSON
/// and SuperGLUE / original BoolQ JSONL.
#[test]
fn user_formats_load() {
    use peftlab_data::loaders::{boolq_jsonl, dart_json, e2e_csv};
    let e2e = e2e_csv(&formats("e2e_devset.csv")).unwrap();
    assert_eq!(e2e.len(), 2, "grouped by MR");
    assert_eq!(
        e2e[0].text_a,
        "name[The Vaults], eatType[pub], priceRange[more than £30]"
    );
    let Some(Label::Refs(r)) = &e2e[0].label else {
        panic!()
    };
    assert_eq!(r.len(), 2);
    assert_eq!(
        r[1],
        "Close to Café Brazil, The Vaults pub serves \"fine\" food,\nwith a view."
    );
    let dart = dart_json(&formats("dart.json")).unwrap();
    assert_eq!(
        dart[0].text_a,
        "(Mars Hill College | JOINED | 1973), (Mars Hill College | LOCATION | Mars Hill, North Carolina)"
    );
    assert!(matches!(&dart[1].label, Some(Label::Refs(r)) if r.len() == 2));
    let b = boolq_jsonl(&formats("boolq.jsonl")).unwrap();
    assert_eq!(b[0].label, Some(Label::Class(1)));
    assert_eq!(
        b[1].text_b.as_deref(),
        Some("Powdered sugar -- Powdered sugar ...")
    );
    // a broken CSV names the line its record starts on
    let tmp = std::env::temp_dir().join(format!("peftlab-e2e-bad-{}.csv", std::process::id()));
    std::fs::write(&tmp, "mr,ref\n\"a\",\"b\"\n\"c,d\n").unwrap();
    let e = e2e_csv(&tmp).unwrap_err().to_string();
    assert!(e.contains(":3") && e.contains("unterminated"), "{e}");
    std::fs::write(&tmp, "mr,ref\n\"a\",\"b\"\nc\n").unwrap();
    let e = e2e_csv(&tmp).unwrap_err().to_string();
    assert!(
        e.contains(":3") && e.contains("1 fields, expected 2"),
        "{e}"
    );
    std::fs::remove_file(&tmp).unwrap();
}

/// The MR source lists every positive snippet before the negative ones; a split's first N
/// examples must still be a sample of both classes (the first 1,000 of the old file-order
/// split held one class only, and a classifier trained on them predicted it everywhere).
#[test]
fn split_prefixes_are_samples_not_sorted_runs() {
    let Some(mr) = fetched("mr2") else { return };
    for (name, split) in [("train", &mr.train), ("dev", &mr.dev), ("test", &mr.test)] {
        for n in [100, 400] {
            let pos = split[..n]
                .iter()
                .filter(|e| e.label == Some(Label::Class(1)))
                .count();
            let frac = pos as f64 / n as f64;
            assert!(
                (0.35..0.65).contains(&frac),
                "{name}[..{n}]: {frac} positive"
            );
        }
    }
}

/// The papers' NLG data from a directory of the official files: `e2e-official` and `dart` by
/// name through `load_named`, each split from its own file (here the same fixture three times,
/// with one file changed so the splits differ); a missing file is an error naming it, and no
/// directory is an error naming the task.
#[test]
fn paper_nlg_tasks_load_from_a_directory() {
    use peftlab_data::loaders::load_named;
    let dir = std::env::temp_dir().join(format!("peftlab-paper-nlg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let e2e = std::fs::read_to_string(formats("e2e_devset.csv")).unwrap();
    std::fs::write(dir.join("trainset.csv"), &e2e).unwrap();
    std::fs::write(dir.join("devset.csv"), &e2e).unwrap();
    // the test file keeps only the header and the first MR's first row
    let first_two: Vec<&str> = e2e.lines().take(2).collect();
    std::fs::write(dir.join("testset_w_refs.csv"), first_two.join("\n") + "\n").unwrap();
    let ds = load_named("e2e-official", Some(&dir)).unwrap();
    assert_eq!((ds.train.len(), ds.dev.len(), ds.test.len()), (2, 2, 1));
    assert_eq!(ds.task.name, "e2e-official");
    assert!(ds.task.metrics.iter().any(|m| m == "bleu"));
    let e = load_named("dart", Some(&dir)).unwrap_err().to_string();
    assert!(e.contains("dart-v1.1.1-full-train.json"), "{e}");
    let dart = std::fs::read_to_string(formats("dart.json")).unwrap();
    for split in ["train", "dev", "test"] {
        std::fs::write(dir.join(format!("dart-v1.1.1-full-{split}.json")), &dart).unwrap();
    }
    let ds = load_named("dart", Some(&dir)).unwrap();
    assert_eq!(ds.train.len(), ds.test.len());
    assert!(matches!(&ds.dev[1].label, Some(Label::Refs(r)) if r.len() == 2));
    let e = load_named("e2e-official", None).unwrap_err().to_string();
    assert!(e.contains("e2e-official") && e.contains("directory"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn slice(artifact: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("slices")
        .join(artifact)
}

/// The committed slices load through the fetched tasks' loaders and splits, and the dataset
/// names where it came from with the sha256 of each file it read.
#[test]
fn committed_slices_load_as_the_fetched_tasks() {
    use peftlab_data::fetch::sha256_hex;
    use peftlab_data::loaders::{e2e_split_sizes, load_dir, load_named};
    // the GEM sample's 213 MRs keep the documented 170 / 21 / 22
    assert_eq!(e2e_split_sizes(213), (170, 191));
    let dir = slice("bigbench");
    let e = load_named("e2e", Some(&dir)).unwrap();
    assert_eq!((e.train.len(), e.dev.len(), e.test.len()), (15, 2, 3));
    let refs = total_refs(&e);
    assert_eq!(
        refs, 24,
        "every reference of the 24 rows kept, grouped by MR"
    );
    let p = e.provenance.as_ref().unwrap();
    assert_eq!(p.source, format!("directory {}", dir.display()));
    let want = sha256_hex(&std::fs::read(dir.join("e2e_nlg.jsonl")).unwrap());
    assert_eq!(p.files.get("e2e_nlg.jsonl"), Some(&want));
    assert_eq!(p.files.len(), 1, "only the file the task reads");

    let w = load_dir("webnlg", &dir).unwrap();
    assert_eq!(w.train.len() + w.dev.len() + w.test.len(), 10);
    let v = load_dir("vitaminc", &dir).unwrap();
    let labels: Vec<usize> = [&v.train, &v.dev, &v.test]
        .iter()
        .flat_map(|s| s.iter())
        .map(|x| match x.label {
            Some(Label::Class(c)) => c,
            _ => 99,
        })
        .collect();
    assert_eq!(labels.len(), 12);
    assert_eq!(
        labels.iter().filter(|&&c| c == 2).count(),
        3,
        "3 Neither rows"
    );

    let b = load_dir("boolq", &slice("boolq")).unwrap();
    assert_eq!(b.test.len(), 32, "dev.jsonl is the test split");
    assert_eq!(b.train.len() + b.dev.len(), 80);
    assert_eq!(b.provenance.unwrap().files.len(), 2);
    // a fetched task's file missing from a directory names the file
    let err = load_dir("trec", &dir).unwrap_err().to_string();
    assert!(err.contains("questions.jsonl"), "{err}");
}
