//! The `peftlab` binary end to end on the committed transformers fixtures (tiny GPT-2, Llama,
//! BERT with word-level tokenizers "w0 … w63") and, when fetched, the real SmolLM2 GGUF:
//! outputs equal the library's and transformers' (generate.json), errors exit with status 1
//! and a message naming the path.

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::{Device, Int, Tensor, TensorData};
use peftlab_adapters::load_adapter;
use peftlab_models::bert::BertForSequenceClassification;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../peftlab-models/tests/fixtures")
        .join(name)
}

fn peftlab(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_peftlab"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["--format", "json"]);
    let (code, out, err) = peftlab(&a);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn inspect_lists_parameters_and_adaptable_modules() {
    let m = fixture("tiny_gpt2");
    let v = json(&["inspect", "--model", m.to_str().unwrap()]);
    assert_eq!(v["architecture"], "GPT2LMHeadModel");
    // wte 64·16 + wpe 48·16 + ln_f 32 + 2 blocks × (2 LN 64 + c_attn 816 + c_proj 272
    // + c_fc 1088 + c_proj 1040)
    assert_eq!(
        v["parameters"],
        1024 + 768 + 32 + 2 * (64 + 816 + 272 + 1088 + 1040)
    );
    assert_eq!(v["adapter_parameters"], 0);
    let names: Vec<&str> = v["adaptable_modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 8);
    assert_eq!(names[0], "transformer.h.0.attn.c_attn");
    assert_eq!(v["adaptable_modules"][0]["out"], 48);

    // with PEFT's LoRA (r = 2 on c_attn and c_fc): 2 × (2·16 + 48·2 + 2·16 + 64·2) trainable
    let lora = m.join("lora");
    let v = json(&[
        "inspect",
        "--model",
        m.to_str().unwrap(),
        "--adapter",
        lora.to_str().unwrap(),
    ]);
    let lora_params = 2 * (32 + 96 + 32 + 128);
    assert_eq!(v["adapter_parameters"], lora_params);
    assert_eq!(
        v["parameters"],
        1024 + 768 + 32 + 2 * (64 + 816 + 272 + 1088 + 1040) + lora_params
    );
    assert_eq!(v["adapter"]["method"], "lora");
    assert_eq!(v["adaptable_modules"][0]["adapter"], "low-rank");
}

#[test]
fn generate_matches_transformers_beam_search() {
    let m = fixture("tiny_gpt2");
    let runs: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(m.join("generate.json")).unwrap()).unwrap();
    let r = runs.iter().find(|r| r["num_beams"] == 4).unwrap();
    let prompt: Vec<String> = r["prompt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| format!("w{i}"))
        .collect();
    let v = json(&[
        "generate",
        "--model",
        m.to_str().unwrap(),
        "--prompt",
        &prompt.join(" "),
        "--beams",
        "4",
        "--max-new-tokens",
        &r["max_new_tokens"].to_string(),
        "--no-repeat-ngram-size",
        &r["no_repeat_ngram_size"].to_string(),
        "--length-penalty",
        &r["length_penalty"].to_string(),
        "--eos-token-id",
        &r["eos_token_id"].to_string(),
    ]);
    assert_eq!(v["prompt_ids"], r["prompt"]);
    assert_eq!(v["ids"], r["output"]);
}

#[test]
fn score_reports_log_probs_that_sum_to_the_nll() {
    let m = fixture("tiny_llama");
    let v = json(&[
        "score",
        "--model",
        m.to_str().unwrap(),
        "--text",
        "w7 w3 w9 w3",
    ]);
    assert_eq!(v["ids"], serde_json::json!([7, 3, 9, 3]));
    let lps: Vec<f64> = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["logprob"].as_f64().unwrap())
        .collect();
    assert_eq!(lps.len(), 3);
    assert!(lps.iter().all(|&l| l < 0.0));
    let nll = v["nll"].as_f64().unwrap();
    assert!((nll + lps.iter().sum::<f64>()).abs() < 1e-9);
    assert!((v["mean_nll"].as_f64().unwrap() - nll / 3.0).abs() < 1e-12);
    assert_eq!(v["tokens"][1]["token"], "w9");
}

/// The library's logits for `predict --text "w5 w6 w7" --text-pair w9` on the BERT fixture at
/// `model` with the adapter in `adapter`: ids [CLS] w5 w6 w7 [SEP] w9 [SEP], types 0 0 0 0 0 1 1.
fn library_logits(model: &Path, adapter: &Path) -> (Vec<f64>, peftlab_adapters::LoadReport) {
    let dev = Device::default();
    let mut bert = BertForSequenceClassification::from_dir(model, 3, 0, &dev).unwrap();
    let report = load_adapter(&mut bert, adapter).unwrap();
    let row = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [1, 7]), &dev);
    let logits = bert
        .forward_typed(
            row(vec![1, 5, 6, 7, 2, 9, 2]),
            Some(row(vec![0, 0, 0, 0, 0, 1, 1])),
            Tensor::ones([1, 7], &dev),
        )
        .try_to_vec_as::<f64>()
        .unwrap();
    (logits, report)
}

#[test]
fn predict_with_a_peft_adapter_and_a_sentence_pair() {
    let m = fixture("tiny_bert");
    let lora = m.join("lora");
    let v = json(&[
        "predict",
        "--model",
        m.to_str().unwrap(),
        "--adapter",
        lora.to_str().unwrap(),
        "--text",
        "w5 w6 w7",
        "--text-pair",
        "w9",
    ]);
    let (want, _) = library_logits(&m, &lora);
    let got: Vec<f64> = v["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    // JSON carries shortest round-trip decimals; allow the last bit
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() <= 1e-15 * w.abs().max(1.0),
            "{got:?} vs {want:?}"
        );
    }
    let p: f64 = v["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .sum();
    assert!((p - 1.0).abs() < 1e-12);
    let best = (0..3).max_by(|&a, &b| want[a].total_cmp(&want[b])).unwrap();
    assert_eq!(v["label_id"], best);
    assert_eq!(v["label"], format!("LABEL_{best}"));
    assert_eq!(v["tokens"], 7);
}

#[test]
fn errors_name_the_path_and_exit_1() {
    let (code, _, err) = peftlab(&["inspect", "--model", "/no/such/model"]);
    assert_eq!(code, 1);
    assert!(err.contains("/no/such/model"), "{err}");

    let m = fixture("tiny_gpt2");
    let (code, _, err) = peftlab(&["predict", "--model", m.to_str().unwrap(), "--text", "w1"]);
    assert_eq!(code, 1);
    assert!(err.contains("causal language model"), "{err}");

    let (code, _, err) = peftlab(&[
        "score",
        "--model",
        m.to_str().unwrap(),
        "--adapter",
        "/no/such/adapter",
        "--text",
        "w1 w2",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("/no/such/adapter/adapter_config.json"),
        "{err}"
    );

    let (code, _, err) = peftlab(&["generate", "--model", m.to_str().unwrap()]);
    assert_eq!(code, 2, "clap usage error");
    assert!(err.contains("--prompt"), "{err}");
}

/// The real SmolLM2 GGUF through the CLI: greedy continuation of the reference prompt.
#[test]
fn real_smollm2_generates_paris() {
    let p = peftlab_models::cache_dir()
        .join("models/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !p.exists() {
        assert!(std::env::var("CI").is_err(), "{} missing", p.display());
        eprintln!("SKIPPED: {} missing: run `cargo xtask fetch`", p.display());
        return;
    }
    let v = json(&[
        "generate",
        "--model",
        p.to_str().unwrap(),
        "--prompt",
        "The capital of France is",
        "--max-new-tokens",
        "6",
    ]);
    assert_eq!(v["text"], "The capital of France is Paris.\n\nThe answer");
    assert_eq!(v["settings"]["eos_token_id"], 2);
}

/// `peftlab evaluate` on files: BLEU with two reference files equals sacrebleu's value from the
/// eval crate's parity fixture; classification metrics from --pred/--label; bad lines and
/// misaligned files are errors naming file and line.
#[test]
fn evaluate_scores_files_like_sacrebleu() {
    let refs: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../peftlab-eval/tests/fixtures/references.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let case = refs["bleu"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["refs"][0].as_array().unwrap().len() == 2 && !c["lowercase"].as_bool().unwrap())
        .unwrap();
    let dir = std::env::temp_dir().join(format!("peftlab-evaluate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, lines: Vec<String>| {
        let p = dir.join(name);
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        p.to_str().unwrap().to_string()
    };
    let hyp = write(
        "hyp.txt",
        case["hyps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap().to_string())
            .collect(),
    );
    let col = |k: usize| -> Vec<String> {
        case["refs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|rs| rs[k].as_str().unwrap().to_string())
            .collect()
    };
    let (r0, r1) = (write("ref0.txt", col(0)), write("ref1.txt", col(1)));
    let v = json(&[
        "evaluate", "--metric", "bleu", "--hyp", &hyp, "--ref", &r0, "--ref", &r1,
    ]);
    let want = case["bleu"].as_f64().unwrap();
    assert!(
        (v["score"].as_f64().unwrap() - want).abs() < 1e-9,
        "{v} vs {want}"
    );

    let pred = write(
        "pred.txt",
        vec!["1".into(), "0".into(), "1".into(), "1".into()],
    );
    let label = write(
        "label.txt",
        vec!["1".into(), "0".into(), "0".into(), "1".into()],
    );
    let v = json(&[
        "evaluate", "--metric", "accuracy", "--pred", &pred, "--label", &label,
    ]);
    assert_eq!(v["score"], 0.75);
    let bad = write(
        "bad.txt",
        vec!["1".into(), "x".into(), "0".into(), "1".into()],
    );
    let (code, _, err) = peftlab(&[
        "evaluate", "--metric", "mcc", "--pred", &bad, "--label", &label,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("bad.txt:2") && err.contains("\"x\""), "{err}");
    let n = case["hyps"].as_array().unwrap().len();
    let short = write("short.txt", vec!["a b".to_string(); n + 1]);
    let (code, _, err) = peftlab(&[
        "evaluate", "--metric", "bleu", "--hyp", &hyp, "--ref", &short,
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("short.txt has {} lines", n + 1)),
        "{err}"
    );

    // METEOR with an explicit WordNet directory: nltk's docstring example (0.6944 there)
    let wn = peftlab_data::fetch::cache_dir().join("data/wordnet-3.0");
    if wn.join("data.noun").exists() {
        let m = refs["meteor"].as_array().unwrap().last().unwrap();
        let h = write("m_hyp.txt", vec![m["hyps"][0].as_str().unwrap().into()]);
        let r = write("m_ref.txt", vec![m["refs"][0][0].as_str().unwrap().into()]);
        let v = json(&[
            "evaluate",
            "--metric",
            "meteor",
            "--hyp",
            &h,
            "--ref",
            &r,
            "--wordnet",
            wn.to_str().unwrap(),
        ]);
        let want = m["mean"].as_f64().unwrap();
        assert!((want - 0.6944).abs() < 5e-5, "{want}");
        assert!((v["score"].as_f64().unwrap() - want).abs() < 1e-12, "{v}");
        let (code, _, err) = peftlab(&[
            "evaluate",
            "--metric",
            "meteor",
            "--hyp",
            &h,
            "--ref",
            &r,
            "--wordnet",
            &dir.to_string_lossy(),
        ]);
        assert_eq!(code, 1);
        assert!(err.contains("index.noun"), "{err}");
    } else {
        assert!(std::env::var("CI").is_err(), "{} missing", wn.display());
        eprintln!("SKIPPED (METEOR part): {} missing", wn.display());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `peftlab evaluate --model …`: a classifier on a GLUE-layout split (the data crate's fixture)
/// and a decoder on the E2E test split of the committed slice (`--data-dir`); metrics named by
/// the task, errors for a split that does not exist.
#[test]
fn evaluate_runs_a_model_over_a_task_split() {
    let glue = Path::new(env!("CARGO_MANIFEST_DIR")).join("../peftlab-data/tests/fixtures/glue");
    let m = fixture("tiny_bert");
    let v = json(&[
        "evaluate",
        "--model",
        m.to_str().unwrap(),
        "--task",
        "glue-mnli",
        "--glue-dir",
        glue.to_str().unwrap(),
        "--split",
        "dev_mismatched",
    ]);
    assert_eq!(v["task"], "glue-mnli");
    assert_eq!(v["examples"], 1);
    let acc = v["metrics"]["accuracy"].as_f64().unwrap();
    assert!(acc == 0.0 || acc == 100.0, "{v}");
    let (code, _, err) = peftlab(&[
        "evaluate",
        "--model",
        m.to_str().unwrap(),
        "--task",
        "glue-mnli",
        "--glue-dir",
        glue.to_str().unwrap(),
        "--split",
        "validation",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no split \"validation\"") && err.contains("dev_mismatched"),
        "{err}"
    );

    // the decoder path on the committed E2E-format slice (no download)
    let slice = Path::new(env!("CARGO_MANIFEST_DIR")).join("../peftlab-data/slices/bigbench");
    let g = fixture("tiny_gpt2");
    let outputs = std::env::temp_dir().join(format!("peftlab-eval-out-{}.txt", std::process::id()));
    let v = json(&[
        "evaluate",
        "--model",
        g.to_str().unwrap(),
        "--task",
        "e2e",
        "--data-dir",
        slice.to_str().unwrap(),
        "--limit",
        "3",
        "--max-new-tokens",
        "8",
        "--outputs",
        outputs.to_str().unwrap(),
    ]);
    assert_eq!(v["examples"], 3);
    for k in ["bleu", "nist", "meteor", "rouge_l", "cider_d", "ter"] {
        assert!(
            v["metrics"][k].as_f64().is_some_and(f64::is_finite),
            "{k}: {v}"
        );
    }
    // `--outputs`: line i is the greedy continuation of example i's prompt
    let lines = std::fs::read_to_string(&outputs).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    let data = peftlab_data::loaders::load_named("e2e", Some(&slice)).unwrap();
    let test = &data.split("test").unwrap()[..3];
    assert_eq!(lines.len(), test.len());
    for (line, e) in lines.iter().zip(test) {
        let prompt = format!("{}\n", e.text_a);
        let generated = json(&[
            "generate",
            "--model",
            g.to_str().unwrap(),
            "--prompt",
            &prompt,
            "--max-new-tokens",
            "8",
        ]);
        assert_eq!(
            generated["completion"].as_str().unwrap().trim(),
            *line,
            "{}",
            e.text_a
        );
    }
    std::fs::remove_file(&outputs).unwrap();
}

/// `peftlab train` on the GLUE fixture: it writes the record, the log and `adapter/` (the
/// adapter with the trained head), and `predict --adapter` on that directory gives the logits of
/// the library's model with the same adapter loaded — not the untrained head's.
#[test]
fn train_writes_an_adapter_that_predict_uses() {
    let glue = Path::new(env!("CARGO_MANIFEST_DIR")).join("../peftlab-data/tests/fixtures/glue");
    let m = fixture("tiny_bert");
    let dir = std::env::temp_dir().join(format!("peftlab-cli-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\npath = {:?}\n[task]\nname = \"glue-mnli\"\nglue_dir = {:?}\n\
             max_length = 16\ntest_split = \"\"\n[adapter]\nmethod = \"mtlora\"\n\
             structure = \"Shim\"\nr = 2\ntarget_modules = [\"query\", \"value\"]\n\
             [optim]\nlr = 0.05\n[train]\nepochs = 2\nbatch_size = 8\n",
            m.display(),
            glue.display()
        ),
    )
    .unwrap();
    let out = dir.join("out");
    let (code, _, err) = peftlab(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.join("record.json").exists() && out.join("log.jsonl").exists());
    let adapter = out.join("adapter");
    let predict = |adapter: Option<&Path>| -> Vec<f64> {
        let mut args = vec!["predict", "--model", m.to_str().unwrap()];
        if let Some(a) = adapter {
            args.extend(["--adapter", a.to_str().unwrap()]);
        }
        args.extend(["--text", "w5 w6 w7", "--text-pair", "w9"]);
        json(&args)["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let trained = predict(Some(&adapter));
    let (want, report) = library_logits(&m, &adapter);
    assert_eq!(report.config.method(), "mtlora");
    assert_eq!(report.config.modules_to_save(), ["classifier".to_string()]);
    for (g, w) in trained.iter().zip(&want) {
        assert!(
            (g - w).abs() <= 1e-15 * w.abs().max(1.0),
            "{trained:?} vs {want:?}"
        );
    }
    assert_ne!(trained, predict(None), "the saved head is the trained one");
    std::fs::remove_dir_all(&dir).unwrap();
}
