//! The loop end to end on the small random BERT checkpoint of the models crate's fixtures
//! (transformers-made, word-level vocabulary `w3…w49`) and a generated 3-class task written in
//! the GLUE MNLI layout: the label is which of `w5` / `w7` the first sentence holds. Synthetic
//! data on purpose — these tests check the mechanics (determinism, what trains, rank growth,
//! errors), not accuracy.

use std::path::{Path, PathBuf};

use peftlab_adapters::{Adapter, AdapterHost};
use peftlab_models::zoo::Model;
use peftlab_train::{Event, TrainConfig, Trainer};

fn fixture_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../peftlab-models/tests/fixtures/tiny_bert")
}

/// A GLUE-layout MNLI directory with `n_train` / `n_dev` generated pairs.
fn glue_dir(tag: &str, n_train: usize, n_dev: usize) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("peftlab-train-{tag}-{}", std::process::id()));
    let d = dir.join("MNLI");
    std::fs::create_dir_all(&d).unwrap();
    let mut s = 12345u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut rows = |n: usize| {
        let mut out = String::from("index\tsentence1\tsentence2\tgold_label\n");
        for i in 0..n {
            let len = 3 + (next() % 6) as usize;
            let mut w: Vec<String> = (0..len).map(|_| format!("w{}", 8 + next() % 40)).collect();
            let label = ["entailment", "neutral", "contradiction"][i % 3];
            match label {
                "entailment" => w.push("w5".into()),
                "contradiction" => w.push("w7".into()),
                _ => {}
            }
            let h: Vec<String> = (0..3).map(|_| format!("w{}", 8 + next() % 40)).collect();
            out += &format!("{i}\t{}\t{}\t{label}\n", w.join(" "), h.join(" "));
        }
        out
    };
    std::fs::write(d.join("train.tsv"), rows(n_train)).unwrap();
    std::fs::write(d.join("dev_matched.tsv"), rows(n_dev)).unwrap();
    std::fs::write(d.join("dev_mismatched.tsv"), rows(n_dev)).unwrap();
    dir
}

fn config(glue: &Path, adapter: &str, extra: &str) -> TrainConfig {
    let text = format!(
        r#"
[model]
path = "{model}"
[task]
name = "glue-mnli"
glue_dir = "{glue}"
max_length = 16
test_split = ""
{adapter}
[optim]
lr = 0.02
warmup_ratio = 0.1
[train]
batch_size = 8
eval_batch_size = 16
seed = 7
{extra}
"#,
        model = fixture_model().display(),
        glue = glue.display(),
        extra = if extra.contains("epochs") {
            extra.to_string()
        } else {
            format!("epochs = 3\n{extra}")
        }
    );
    TrainConfig::from_toml(&text, "test").unwrap()
}

const LORA: &str = r#"[adapter]
method = "lora"
r = 4
lora_alpha = 8.0
lora_dropout = 0.1
target_modules = ["query", "value"]"#;

const TRI: &str = r#"[adapter]
method = "triadaptlora"
reference_rank = 3
init_rank = 1
incre_rank_num = 1
init_warmup = 1
incre_interval = 2
lora_dropout = 0.1
target_modules = ["query", "value"]"#;

fn adapter_weights(m: &Model) -> Vec<(String, Vec<f32>)> {
    let mut out = Vec::new();
    m.for_each_linear("", &mut |p, l| {
        if let Some(a) = &l.adapter {
            for (n, v) in a.named_tensors() {
                out.push((
                    format!("{p}.{n}"),
                    v.into_data().convert::<f32>().try_to_vec::<f32>().unwrap(),
                ));
            }
        }
    });
    out
}

fn base_weight(m: &Model, path: &str) -> Vec<f32> {
    let mut out = Vec::new();
    m.for_each_linear("", &mut |p, l| {
        if p == path {
            out = l
                .weight
                .val()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap();
        }
    });
    out
}

/// The run's `out/adapter` (written with the record) attached to a freshly loaded base model
/// whose head has a different random init: the adapter tensors and the trained head equal the
/// returned model's exactly (saved as f32, trained in f32).
fn assert_saved_adapter_reloads(out: &Path, config: &TrainConfig, trained: &Model) {
    let opts = peftlab_models::zoo::LoadOptions {
        num_labels: Some(3),
        seed: config.train.seed + 1000,
        mean_pooling: config.model.mean_pooling,
    };
    let dev = burn::tensor::Device::default();
    let mut fresh = peftlab_models::zoo::load(&fixture_model(), &opts, &dev)
        .unwrap()
        .model;
    assert_ne!(
        base_weight(&fresh, "classifier"),
        base_weight(trained, "classifier")
    );
    let report = peftlab_adapters::load_adapter(&mut fresh, &out.join("adapter")).unwrap();
    assert_eq!(report.config.modules_to_save(), ["classifier".to_string()]);
    assert_eq!(adapter_weights(&fresh), adapter_weights(trained));
    assert_eq!(
        base_weight(&fresh, "classifier"),
        base_weight(trained, "classifier")
    );
}

#[test]
fn same_seed_same_run_and_only_the_adapter_and_head_train() {
    let glue = glue_dir("det", 48, 12);
    let run = |seed_line: &str| {
        let cfg = config(&glue, LORA, seed_line);
        let t = Trainer::new(cfg).unwrap();
        let a0 = adapter_weights(&t.model);
        let mut losses = Vec::new();
        let done = t
            .run(None, &mut |e| {
                if let Event::Step { loss, .. } = e {
                    losses.push(*loss);
                }
            })
            .unwrap();
        (done.record, losses, a0, adapter_weights(&done.model))
    };
    let (r1, l1, a0, a1) = run("");
    let (r2, l2, a0b, a1b) = run("");
    assert_eq!(a0, a0b, "same seed, same adapter init");
    assert_eq!(a1, a1b, "same seed, same trained adapter");
    assert_eq!(l1, l2, "same seed, same losses (dropout, order, init)");
    assert_eq!(r1.evals, r2.evals);
    // 48 examples / 8 = 6 steps per epoch, 3 epochs, an evaluation per epoch
    assert_eq!(r1.steps, 18);
    assert_eq!(r1.evals.len(), 3);
    assert_eq!(
        r1.evals.iter().map(|e| e.step).collect::<Vec<_>>(),
        vec![6, 12, 18]
    );
    assert!(r1.best.is_some());
    // trainable: LoRA on query/value of 2 layers (r (16 + 16) each) + the head (16·3 + 3)
    assert_eq!(r1.trainable_params.0, 4 * 4 * 32 + 51);
    assert_eq!(r1.method, "lora");
    let (r3, l3, ..) = run("max_steps = 4\n");
    assert_eq!(r3.steps, 4);
    assert_eq!(l3[..], l1[..4], "max_steps only stops early");
    // another seed changes init, order and dropout
    let cfg = config(&glue, LORA, "").clone();
    let mut other = cfg.clone();
    other.train.seed = 8;
    let t = Trainer::new(other).unwrap();
    assert_ne!(adapter_weights(&t.model), a0);
    std::fs::remove_dir_all(&glue).unwrap();
}

/// `task.eval_split = ""`: nothing is evaluated during training (the evaluation points keep
/// the training loss only) and the model after the last step is the one kept and tested. On
/// this fixture the dev accuracy ties across epochs, so the same run with selection keeps its
/// first model: the two returned models differ, the last model's test on the dev split equals
/// the selecting run's last dev evaluation.
#[test]
fn without_an_evaluation_split_the_last_model_is_tested() {
    let glue = glue_dir("last", 48, 12);
    let with_dev = Trainer::new(config(&glue, LORA, ""))
        .unwrap()
        .run(None, &mut |_| {})
        .unwrap();
    let mut cfg = config(&glue, LORA, "");
    cfg.task.eval_split = String::new();
    cfg.task.test_split = "dev".into();
    let mut points = 0;
    let last = Trainer::new(cfg)
        .unwrap()
        .run(None, &mut |e| {
            if let Event::Eval(p) = e {
                assert!(p.metrics.is_empty(), "{p:?}");
                points += 1;
            }
        })
        .unwrap();
    let rec = &last.record;
    assert_eq!(points, 3);
    assert_eq!(rec.best, Some(2), "the last point");
    assert!(rec.evals.iter().all(|p| p.train_loss.is_finite()));
    assert_eq!(rec.test_metrics, with_dev.record.evals[2].metrics);
    assert_eq!(with_dev.record.best, Some(0), "ties keep the first model");
    assert_ne!(
        adapter_weights(&last.model),
        adapter_weights(&with_dev.model),
        "the last model, not the first"
    );
    std::fs::remove_dir_all(&glue).unwrap();
}

#[test]
fn base_stays_frozen_while_adapter_and_head_move() {
    let glue = glue_dir("frozen", 24, 6);
    let cfg = config(&glue, LORA, "epochs = 1\n");
    let t = Trainer::new(cfg).unwrap();
    let q = "bert.encoder.layer.0.attention.self.query";
    let (q0, k0, h0) = (
        base_weight(&t.model, q),
        base_weight(&t.model, "bert.encoder.layer.0.attention.self.key"),
        base_weight(&t.model, "classifier"),
    );
    let a0 = adapter_weights(&t.model);
    let out = std::env::temp_dir().join(format!("peftlab-train-out-{}", std::process::id()));
    let done = t.run(Some(&out), &mut |_| {}).unwrap();
    let m = &done.model;
    assert_eq!(base_weight(m, q), q0, "adapted layer's base is frozen");
    assert_eq!(
        base_weight(m, "bert.encoder.layer.0.attention.self.key"),
        k0,
        "untargeted layer is frozen"
    );
    assert_ne!(base_weight(m, "classifier"), h0, "the head trains");
    let a1 = adapter_weights(m);
    for ((n, v0), (_, v1)) in a0.iter().zip(&a1) {
        assert_ne!(v0, v1, "{n} trains");
    }
    let rec = &done.record;
    assert!(out.join("record.json").exists() && out.join("log.jsonl").exists());
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("record.json")).unwrap()).unwrap();
    assert_eq!(saved["steps"], rec.steps);
    assert_eq!(saved["config_hash"].as_str().unwrap().len(), 16);
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("\"event\":\"step\""))
            .count(),
        rec.steps
    );
    // the stored config parses back to the same run
    let again = TrainConfig::from_toml(&rec.config, "record").unwrap();
    assert_eq!(again.to_toml(), rec.config);
    assert_saved_adapter_reloads(&out, &again, m);
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::remove_dir_all(&glue).unwrap();
}

/// `train.init_adapter`: a run starts from another run's saved adapter (its tensors exactly),
/// with its own head (not the saved one); a saved adapter of another config is an error naming
/// the key and the directory.
#[test]
fn a_run_starts_from_a_saved_adapter() {
    let glue = glue_dir("init", 24, 6);
    let first = config(&glue, LORA, "epochs = 1\n");
    let out = std::env::temp_dir().join(format!("peftlab-train-init-out-{}", std::process::id()));
    let done = Trainer::new(first)
        .unwrap()
        .run(Some(&out), &mut |_| {})
        .unwrap();
    let adapter = out.join("adapter");
    let init = format!("epochs = 1\ninit_adapter = {:?}\n", adapter.display());
    let second = Trainer::new(config(&glue, LORA, &init)).unwrap();
    assert_eq!(adapter_weights(&second.model), adapter_weights(&done.model));
    let fresh = Trainer::new(config(&glue, LORA, "epochs = 1\n")).unwrap();
    assert_ne!(adapter_weights(&fresh.model), adapter_weights(&done.model));
    assert_eq!(
        base_weight(&second.model, "classifier"),
        base_weight(&fresh.model, "classifier"),
        "the head is the new run's own init…"
    );
    assert_ne!(
        base_weight(&second.model, "classifier"),
        base_weight(&done.model, "classifier"),
        "…not the saved (trained) head"
    );
    let other = config(&glue, &LORA.replace("r = 4", "r = 2"), &init);
    let e = Trainer::new(other)
        .err()
        .expect("another config")
        .to_string();
    assert!(
        e.contains("train.init_adapter") && e.contains(&adapter.display().to_string()),
        "{e}"
    );
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::remove_dir_all(&glue).unwrap();
}

#[test]
fn triadaptlora_grows_rank_and_new_parameters_train() {
    let glue = glue_dir("tri", 32, 6);
    let cfg = config(&glue, TRI, "epochs = 2\n");
    let t = Trainer::new(cfg.clone()).unwrap();
    let out = std::env::temp_dir().join(format!("peftlab-train-tri-out-{}", std::process::id()));
    let done = t.run(Some(&out), &mut |_| {}).unwrap();
    // the grown strips and the head of the best evaluation reload from `out/adapter`
    assert_saved_adapter_reloads(&out, &cfg, &done.model);
    std::fs::remove_dir_all(&out).unwrap();
    let rec = done.record;
    assert!(!rec.allocations.is_empty(), "the loop drove the allocator");
    let (before, after) = rec.trainable_params;
    assert!(
        after > before,
        "rank growth added trainable parameters: {before} → {after}"
    );
    let last = rec.allocations.last().unwrap();
    assert!(last["total_rank"].as_u64().unwrap() > 4, "{last}");
    std::fs::remove_dir_all(&glue).unwrap();
}

#[test]
fn full_fine_tuning_trains_everything() {
    let glue = glue_dir("full", 16, 4);
    let cfg = config(&glue, "", "epochs = 1\n");
    assert!(cfg.adapter.is_none());
    let t = Trainer::new(cfg).unwrap();
    let rec = t.run(None, &mut |_| {}).unwrap().record;
    assert_eq!(rec.method, "full");
    assert_eq!(rec.trainable_params.0, rec.total_params);
    std::fs::remove_dir_all(&glue).unwrap();
}

#[test]
fn bad_configs_name_the_key() {
    let glue = glue_dir("bad", 4, 2);
    let base = |extra: &str| {
        format!(
            "[model]\npath = \"{}\"\n[task]\nname = \"glue-mnli\"\nglue_dir = \"{}\"\n{extra}",
            fixture_model().display(),
            glue.display()
        )
    };
    let err = |t: String| {
        TrainConfig::from_toml(&t, "x.toml")
            .unwrap_err()
            .to_string()
    };
    let e = err(base("[optim]\nlearning_rate = 1e-3\n"));
    assert!(e.contains("x.toml") && e.contains("learning_rate"), "{e}");
    let e = err(base("[optim]\nlr = -1\n"));
    assert!(e.contains("optim.lr"), "{e}");
    let e = err(base(
        "[adapter]\nmethod = \"lora\"\ntarget_modules = [\"query\"]\n",
    ));
    assert!(e.contains("adapter.r") && e.contains("missing"), "{e}");
    let e = err(base(
        "[adapter]\nmethod = \"lora\"\nr = 4\ntarget_modules = [\"query\"]\nalpha = 3\n",
    ));
    assert!(
        e.contains("adapter.alpha") && e.contains("unknown key"),
        "{e}"
    );
    let e = err(base("[adapter]\nmethod = \"dora\"\n"));
    assert!(e.contains("unknown method"), "{e}");
    let e = err(base("num_beams = 0\n"));
    assert!(e.contains("task.num_beams"), "{e}");
    // decoding keys: written (and hashed) only when not at their default
    let beams = TrainConfig::from_toml(
        &base("num_beams = 10\nlength_penalty = 0.9\nno_repeat_ngram_size = 4\n"),
        "x.toml",
    )
    .unwrap();
    assert_eq!(
        (
            beams.task.num_beams,
            beams.task.length_penalty,
            beams.task.no_repeat_ngram_size
        ),
        (10, 0.9, 4)
    );
    let text = beams.to_toml();
    assert!(text.contains("num_beams = 10") && text.contains("no_repeat_ngram_size = 4"));
    let greedy = TrainConfig::from_toml(&base(""), "x.toml")
        .unwrap()
        .to_toml();
    assert!(
        !greedy.contains("num_beams") && !greedy.contains("length_penalty"),
        "{greedy}"
    );
    // a head name that matches nothing
    let mut cfg = TrainConfig::from_toml(&base(LORA), "x.toml").unwrap();
    cfg.train_modules = Some(vec!["score".into()]);
    let e = Trainer::new(cfg).err().unwrap().to_string();
    assert!(
        e.contains("\"score\"") && e.contains("matches no linear layer"),
        "{e}"
    );
    std::fs::remove_dir_all(&glue).unwrap();
}

#[test]
fn the_adapter_is_really_attached() {
    let glue = glue_dir("attached", 4, 2);
    let t = Trainer::new(config(&glue, LORA, "")).unwrap();
    let mut n = 0;
    t.model.for_each_linear("", &mut |_, l| {
        n += usize::from(matches!(l.adapter, Some(Adapter::LowRank(_))));
    });
    assert_eq!(n, 4);
    std::fs::remove_dir_all(&glue).unwrap();
}

/// A run killed mid-epoch (step 5 of 6 per epoch, dropout on, AdamW state, TriAdaptLoRA grown,
/// with either importance) and resumed from its checkpoint ends bit-identical to the uninterrupted run.
#[test]
fn killed_and_resumed_run_is_bit_identical() {
    use peftlab_train::{RunOptions, TrainError};
    let glue = glue_dir("resume", 48, 12);
    // the sensitivity importance adds the allocator's EMAs to what a checkpoint must restore
    // the full-T ablation replaces its C by a larger tensor at each growth
    let tri_sensitivity = format!("{TRI}\nimportance = \"Sensitivity\"");
    let tri_full = format!("{TRI}\ntransform = \"Full\"");
    for adapter in [LORA, TRI, tri_sensitivity.as_str(), tri_full.as_str()] {
        let cfg = config(&glue, adapter, "checkpoint_every = 2\n");
        let out_a = std::env::temp_dir().join(format!("peftlab-resume-a-{}", std::process::id()));
        let out_b = std::env::temp_dir().join(format!("peftlab-resume-b-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out_a);
        let _ = std::fs::remove_dir_all(&out_b);
        let full = Trainer::new(cfg.clone())
            .unwrap()
            .run_with(
                &RunOptions {
                    out_dir: Some(out_a.clone()),
                    ..Default::default()
                },
                &mut |_| {},
            )
            .unwrap();
        let stopped = Trainer::new(cfg.clone()).unwrap().run_with(
            &RunOptions {
                out_dir: Some(out_b.clone()),
                stop_after: Some(5),
                ..Default::default()
            },
            &mut |_| {},
        );
        assert!(
            matches!(stopped, Err(TrainError::Stopped { step: 5 })),
            "{:?}",
            stopped.err()
        );
        let resumed = Trainer::new(cfg.clone())
            .unwrap()
            .run_with(
                &RunOptions {
                    out_dir: Some(out_b.clone()),
                    resume: true,
                    ..Default::default()
                },
                &mut |_| {},
            )
            .unwrap();
        assert_eq!(resumed.record.steps, full.record.steps);
        assert_eq!(resumed.record.evals, full.record.evals, "{adapter}");
        assert_eq!(resumed.record.allocations, full.record.allocations);
        assert_eq!(
            adapter_weights(&resumed.model),
            adapter_weights(&full.model),
            "{adapter}"
        );
        assert_eq!(
            base_weight(&resumed.model, "classifier"),
            base_weight(&full.model, "classifier")
        );
        // the log continues rather than restarting
        let log = std::fs::read_to_string(out_b.join("log.jsonl")).unwrap();
        let steps = log
            .lines()
            .filter(|l| l.contains("\"event\":\"step\""))
            .count();
        assert_eq!(steps, full.record.steps);
        // another config cannot resume this checkpoint
        let mut other = cfg.clone();
        other.optim.lr *= 2.0;
        let e = Trainer::new(other)
            .unwrap()
            .run_with(
                &RunOptions {
                    out_dir: Some(out_b.clone()),
                    resume: true,
                    ..Default::default()
                },
                &mut |_| {},
            )
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("another config"), "{e}");
        std::fs::remove_dir_all(&out_a).unwrap();
        std::fs::remove_dir_all(&out_b).unwrap();
    }
    std::fs::remove_dir_all(&glue).unwrap();
}

/// A non-finite loss stops the run naming the step, and the last good checkpoint stays.
#[test]
fn non_finite_loss_names_the_step_and_keeps_the_checkpoint() {
    use peftlab_train::{RunOptions, TrainError};
    let glue = glue_dir("nan", 24, 6);
    let cfg = config(&glue, LORA, "checkpoint_every = 2\n");
    let out = std::env::temp_dir().join(format!("peftlab-nan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let e = Trainer::new(cfg)
        .unwrap()
        .run_with(
            &RunOptions {
                out_dir: Some(out.clone()),
                poison_step: Some(3),
                ..Default::default()
            },
            &mut |_| {},
        )
        .err()
        .unwrap();
    match &e {
        TrainError::NonFinite {
            step, checkpoint, ..
        } => {
            assert_eq!(*step, 3);
            let dir = checkpoint.as_ref().expect("checkpoint of step 2");
            let st: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap())
                    .unwrap();
            assert_eq!(st["step"], 2);
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("step 3"), "{e}");
    assert!(
        !out.join("record.json").exists(),
        "no record for a failed run"
    );
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::remove_dir_all(&glue).unwrap();
}

/// The decoder path on the small random GPT-2 of the models crate and the committed E2E-format
/// slice (no download): the loss is on the target only and falls, generation metrics are
/// computed at every evaluation, the run is deterministic, and the record names the data
/// directory and the sha256 of the file it read.
#[test]
fn decoder_training_on_e2e_runs_and_learns_the_training_targets() {
    let model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../peftlab-models/tests/fixtures/tiny_gpt2");
    let slice = Path::new(env!("CARGO_MANIFEST_DIR")).join("../peftlab-data/slices/bigbench");
    let text = format!(
        r#"
[model]
path = "{}"
[task]
name = "e2e"
data_dir = "{}"
max_length = 48
train_limit = 6
eval_limit = 3
max_new_tokens = 4
[adapter]
method = "lora"
r = 4
lora_alpha = 8.0
target_modules = ["c_attn"]
[optim]
lr = 0.01
warmup_ratio = 0.0
[train]
epochs = 3
batch_size = 8
seed = 3
"#,
        model.display(),
        slice.display()
    );
    let cfg = TrainConfig::from_toml(&text, "test").unwrap();
    let run = || {
        let mut losses = Vec::new();
        let done = Trainer::new(cfg.clone())
            .unwrap()
            .run(None, &mut |e| {
                if let Event::Step { loss, .. } = e {
                    losses.push(*loss);
                }
            })
            .unwrap();
        (done.record, losses)
    };
    let (rec, losses) = run();
    assert_eq!(rec.evals.len(), 3);
    let data = rec.data.as_ref().expect("the record names its data");
    assert_eq!(data.source, format!("directory {}", slice.display()));
    let sha = peftlab_data::fetch::sha256_hex(&std::fs::read(slice.join("e2e_nlg.jsonl")).unwrap());
    assert_eq!(data.files.get("e2e_nlg.jsonl"), Some(&sha));
    for k in ["bleu", "rouge_l", "meteor"] {
        assert!(
            rec.evals[0].metrics.get(k).is_some_and(|v| v.is_finite()),
            "{k}: {:?}",
            rec.evals[0]
        );
    }
    assert!(
        losses.last().unwrap() < &losses[0],
        "loss falls: {losses:?}"
    );
    let (rec2, losses2) = run();
    assert_eq!(losses, losses2);
    assert_eq!(rec.evals, rec2.evals);
    // the test outputs are written beside the record, line i = example i, and score to the
    // record's test metrics against the split's references
    let out = std::env::temp_dir().join(format!("peftlab-train-nlg-{}", std::process::id()));
    let done = Trainer::new(cfg.clone())
        .unwrap()
        .run(Some(&out), &mut |_| {})
        .unwrap();
    let text = std::fs::read_to_string(out.join("test_outputs.txt")).unwrap();
    let hyps: Vec<&str> = text.lines().collect();
    let data = peftlab_data::loaders::load_named("e2e", Some(&slice)).unwrap();
    let refs: Vec<Vec<String>> = data.split("test").unwrap()[..3]
        .iter()
        .map(|e| match &e.label {
            Some(peftlab_data::task::Label::Refs(r)) => r.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(hyps.len(), 3, "{text:?}");
    let bleu = peftlab_eval::bleu::corpus_bleu(&hyps, &refs, false)
        .unwrap()
        .score;
    assert_eq!(Some(&bleu), done.record.test_metrics.get("bleu"));
    // TER is informative even for a random model's outputs (BLEU may be 0 for any lines)
    let ter = peftlab_eval::ter::corpus_ter(&hyps, &refs).unwrap().score;
    assert!(ter > 0.0);
    assert_eq!(Some(&ter), done.record.test_metrics.get("ter"));
    std::fs::remove_dir_all(&out).unwrap();
}

const ADA: &str = r#"[adapter]
method = "adalora"
init_r = 4
target_r = 2
lora_alpha = 8.0
lora_dropout = 0.0
tinit = 1
tfinal = 1
delta_t = 1
target_modules = ["query", "value"]"#;

/// AdaLoRA's sensitivity EMAs after the first optimizer step, as the checkpoint holds them,
/// and the step's gradient norm from the log.
fn ada_first_step(
    glue: &Path,
    tag: &str,
    batch: usize,
    accum: usize,
    clip: f64,
    lr: f64,
) -> (peftlab_adapters::sensitivity::EmaState, f64) {
    use peftlab_train::{RunOptions, TrainError};
    let mut cfg = config(glue, ADA, "bucket_by_length = false\n");
    cfg.train.batch_size = batch;
    cfg.optim.grad_accum = accum;
    cfg.optim.max_grad_norm = Some(clip);
    // no warm-up: the first step must move the weights
    cfg.optim.warmup_ratio = 0.0;
    cfg.optim.lr = lr;
    let out = std::env::temp_dir().join(format!("peftlab-ada-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let stopped = Trainer::new(cfg).unwrap().run_with(
        &RunOptions {
            out_dir: Some(out.clone()),
            stop_after: Some(1),
            ..Default::default()
        },
        &mut |_| {},
    );
    assert!(matches!(stopped, Err(TrainError::Stopped { step: 1 })));
    let saved = peftlab_train::checkpoint::load(&out).unwrap().unwrap();
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let norm = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["event"] == "step")
        .unwrap()["grad_norm"]
        .as_f64()
        .unwrap();
    std::fs::remove_dir_all(&out).unwrap();
    (saved.ema, norm)
}

/// AdaLoRA's sensitivity `|w · g|` is read as PEFT's loop reads it (`update_and_allocate` after
/// `optimizer.step()`): from the weights after the step — so `λ` (`E`, zero before the first
/// step) already has a sensitivity after it — and from the step's whole gradient, accumulated
/// over micro-batches and clipped. Two micro-batches of 4 give the EMAs of one batch of 8 (to
/// f32 rounding over different padding: 1e-3 of the largest entry); with the weights held
/// (lr 0), clipping to `c` scales every EMA of `A` and `B` by `c / (‖g‖ + 1e-6)` (to 1e-4). The
/// old reading (weights before the step, the last micro-batch, unclipped) fails all three.
#[test]
fn adalora_sensitivity_uses_the_updated_weights_and_the_whole_clipped_gradient() {
    let glue = glue_dir("adasens", 32, 8);
    let (one, _) = ada_first_step(&glue, "one", 8, 1, 0.0, 0.02);
    let (two, _) = ada_first_step(&glue, "two", 4, 2, 0.0, 0.02);
    let (held, norm) = ada_first_step(&glue, "held", 8, 1, 0.0, 0.0);
    let clip = norm / 10.0;
    let (clipped, _) = ada_first_step(&glue, "clip", 8, 1, clip, 0.0);
    let scale = (clip / (norm + 1e-6)) as f32;
    assert!(!one.is_empty());
    let mut e_entries = 0;
    for (key, (_, s1, _)) in &one {
        let peak = s1.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(peak > 0.0, "{key}: no sensitivity");
        if key.ends_with(".E") {
            e_entries += s1.len();
            assert!(
                s1.iter().all(|&v| v > 0.0),
                "{key}: λ without sensitivity: {s1:?}"
            );
        } else {
            let (h, c) = (&held[key].1, &clipped[key].1);
            let hpeak = h.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(hpeak > 0.0, "{key}");
            for (i, (&u, &v)) in h.iter().zip(c).enumerate() {
                let want = u * scale;
                assert!(
                    (v - want).abs() <= 1e-4 * hpeak * scale,
                    "{key}[{i}]: clipped {v} vs {want}"
                );
            }
        }
        for (i, (&a, &b)) in s1.iter().zip(&two[key].1).enumerate() {
            assert!(
                (a - b).abs() <= 1e-3 * peak,
                "{key}[{i}]: accumulated {b} vs {a}"
            );
        }
    }
    assert!(
        e_entries > 0,
        "no λ among {:?}",
        one.keys().collect::<Vec<_>>()
    );
    std::fs::remove_dir_all(&glue).unwrap();
}
