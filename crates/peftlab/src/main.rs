//! `peftlab`: inspect models and adapters, classify, score and generate with real checkpoints.
//!
//! ```text
//! peftlab inspect  --model PATH [--adapter DIR] [--format json]
//! peftlab predict  --model PATH [--adapter DIR] --text A [--text-pair B] [--format json]
//! peftlab score    --model PATH [--adapter DIR] --text T [--format json]
//! peftlab generate --model PATH [--adapter DIR] --prompt P [--max-new-tokens N] [--beams K]
//! peftlab evaluate --metric bleu --hyp FILE --ref FILE [--ref FILE …]
//! peftlab evaluate --metric accuracy --pred FILE --label FILE
//! peftlab evaluate --model PATH [--adapter DIR] --task mr2|boolq|e2e|glue-rte … [--split test]
//! ```
//!
//! `PATH` is a Hugging Face model directory (`config.json`, `model.safetensors` or a sharded
//! index, `tokenizer.json`) or a `.gguf` file; with the `hub` feature it may also be a model id.
//! `--adapter` takes any adapter directory `peftlab-adapters` saves, including PEFT-format LoRA
//! adapters made by Python PEFT. Errors go to stderr with exit status 1 (2 for bad arguments).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use burn::tensor::{Device, Int, Tensor, TensorData};
use clap::{Args, Parser, Subcommand, ValueEnum};
use peftlab_adapters::{AdapterHost, load_adapter, param_report};
use peftlab_models::decoder::score;
use peftlab_models::generate::{GenerationConfig, generate};
use peftlab_models::zoo::{LoadOptions, Loaded, load};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "peftlab",
    version,
    about = "Parameter-efficient fine-tuning lab: models, adapters, inference"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Architecture, parameter counts and the adaptable module names.
    Inspect(Common),
    /// Classification or regression outputs (logits, label) of a sequence classifier.
    Predict {
        #[command(flatten)]
        common: Common,
        /// The text (first sentence of a pair).
        #[arg(long)]
        text: String,
        /// The second sentence of a pair.
        #[arg(long)]
        text_pair: Option<String>,
        /// Classifier outputs when the checkpoint has no head (default: from config.json).
        #[arg(long)]
        num_labels: Option<usize>,
        /// Truncate the (pair) encoding to this many tokens.
        #[arg(long, default_value_t = 512)]
        max_length: usize,
    },
    /// Causal-LM per-token log-probabilities and total negative log-likelihood.
    Score {
        #[command(flatten)]
        common: Common,
        /// The text to score.
        #[arg(long)]
        text: String,
    },
    /// Continue a prompt with greedy or beam search.
    Generate {
        #[command(flatten)]
        common: Common,
        /// The prompt.
        #[arg(long)]
        prompt: String,
        /// Most new tokens.
        #[arg(long, default_value_t = 32)]
        max_new_tokens: usize,
        /// Beams (1 = greedy).
        #[arg(long, default_value_t = 1)]
        beams: usize,
        /// Length penalty exponent for finished beams.
        #[arg(long, default_value_t = 1.0)]
        length_penalty: f64,
        /// Forbid repeating n-grams of this size (0 = off).
        #[arg(long, default_value_t = 0)]
        no_repeat_ngram_size: usize,
        /// End-of-sequence token id (default: the model's).
        #[arg(long)]
        eos_token_id: Option<u32>,
    },
    /// Score an output file: generation metrics (`--hyp` + one or more `--ref`) or
    /// classification/regression metrics (`--pred` + `--label`); one item per line.
    Evaluate(Box<EvaluateArgs>),
    /// Train a model with an adapter (or in full) from a TOML config
    /// (`experiments/example.toml` documents every key); writes `log.jsonl`, `record.json` and
    /// `adapter/` (the adapter of the best evaluation with the trained head, for `predict
    /// --adapter` or PEFT).
    Train {
        /// The run's config.
        #[arg(long)]
        config: PathBuf,
        /// Output directory (default: `runs/<config name>-<config hash>`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue from the output directory's checkpoint (same config only).
        #[arg(long)]
        resume: bool,
    },
    /// Rebuild a paper's tables (`experiments/<method>/*.toml`): run every (row, task, seed)
    /// of a profile that has no record yet, then aggregate. `cargo xtask reproduce` calls this
    /// with a release build.
    Reproduce(ReproduceCmd),
}

#[derive(Args)]
struct ReproduceCmd {
    /// mtlora, triadaptlora, loratrf or svda.
    method: String,
    /// smoke (tiny, minutes), cpu (real models on the fetched tasks), paper (GPU).
    #[arg(long, default_value = "cpu")]
    profile: String,
    /// Workspace root holding `experiments/`.
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Results root (default: docs/results, or target/results for smoke).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only these tasks (comma-separated).
    #[arg(long, value_delimiter = ',')]
    tasks: Option<Vec<String>>,
    /// Only these seeds (comma-separated).
    #[arg(long, value_delimiter = ',')]
    seeds: Option<Vec<u64>>,
    /// Re-run runs that already have a record.
    #[arg(long)]
    force: bool,
    /// Print the plan only.
    #[arg(long)]
    dry_run: bool,
    /// List tables and profiles.
    #[arg(long)]
    list: bool,
    /// Run shard I of N (`I/N`, 1-based).
    #[arg(long)]
    shard: Option<String>,
    /// Write a SLURM array script (`--emit-slurm FILE --shards N`) instead of running.
    #[arg(long)]
    emit_slurm: Option<PathBuf>,
    /// Shards for `--emit-slurm`.
    #[arg(long, default_value_t = 4)]
    shards: usize,
}

#[derive(Args)]
struct EvaluateArgs {
    /// bleu, ter, rouge_l, cider_d, nist, meteor (generation); accuracy, f1, f1_macro, mcc, pearson,
    /// spearman (classification / regression). Not needed with `--model` (the task's metrics).
    #[arg(long, default_value = "")]
    metric: String,
    /// Evaluate a model on a task split instead of files (`--task`, `--split`).
    #[arg(long)]
    model: Option<String>,
    /// Adapter directory for `--model`.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Task for `--model`: a fetched task (mr2, mr-score, boolq, vitaminc, trec, e2e, webnlg),
    /// `glue-<task>` or one of the papers' NLG tasks (e2e-official, dart) with `--data-dir`.
    #[arg(long)]
    task: Option<String>,
    /// The task's data directory: a GLUE directory for `glue-<task>`, your copy of the papers'
    /// files for e2e-official / dart, or a directory with a fetched task's normalized files
    /// (e.g. a committed slice, `crates/peftlab-data/slices/boolq`) instead of the cache.
    #[arg(long = "data-dir", alias = "glue-dir")]
    data_dir: Option<PathBuf>,
    /// Split: train, dev or test.
    #[arg(long, default_value = "test")]
    split: String,
    /// Evaluate at most this many examples (0 = all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Classification batch size.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Token limit of an encoded example.
    #[arg(long, default_value_t = 128)]
    max_length: usize,
    /// Generation: prompt template; `{input}` is replaced by the example's data.
    #[arg(long, default_value = "{input}\n")]
    template: String,
    /// Generation: beams.
    #[arg(long, default_value_t = 1)]
    beams: usize,
    /// Generation: most new tokens.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// With `--model`: also write the outputs to this file, one line per example (generated
    /// text with line breaks as spaces, or the predicted class id / score).
    #[arg(long)]
    outputs: Option<PathBuf>,
    /// Hypotheses, one per line.
    #[arg(long)]
    hyp: Option<PathBuf>,
    /// References, one per line, aligned with `--hyp`; repeat for multiple references.
    #[arg(long = "ref")]
    refs: Vec<PathBuf>,
    /// Predictions, one per line (class ids or scores).
    #[arg(long)]
    pred: Option<PathBuf>,
    /// Gold labels, one per line.
    #[arg(long)]
    label: Option<PathBuf>,
    /// BLEU: lowercase first (sacrebleu -lc).
    #[arg(long)]
    lowercase: bool,
    /// METEOR: a WordNet 3.0 directory (default: the fetched one in the peftlab cache, fetched
    /// on first use).
    #[arg(long)]
    wordnet: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Args)]
struct Common {
    /// Model directory or `.gguf` file.
    #[arg(long)]
    model: String,
    /// Adapter directory (peftlab or PEFT format).
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn open(common: &Common, num_labels: Option<usize>) -> Result<(Loaded, Option<serde_json::Value>)> {
    let path = peftlab_models::hub::resolve(&common.model)?;
    let device = Device::default();
    let opts = LoadOptions {
        num_labels,
        ..LoadOptions::default()
    };
    let mut loaded = load(&path, &opts, &device)?;
    let adapter = match &common.adapter {
        Some(dir) => {
            let report = load_adapter(&mut loaded.model, dir)?;
            for k in &report.unknown_keys {
                eprintln!("warning: {}: ignored adapter config key {k}", dir.display());
            }
            Some(json!({
                "path": dir,
                "method": report.config.method(),
                "unknown_keys": report.unknown_keys,
            }))
        }
        None => None,
    };
    Ok((loaded, adapter))
}

fn tokenizer(loaded: &Loaded) -> Result<&peftlab_models::tokenizer::Tokenizer> {
    loaded.tokenizer.as_ref().ok_or_else(|| {
        format!(
            "{}: no tokenizer.json next to the model",
            loaded.path.display()
        )
        .into()
    })
}

fn emit(format: Format, value: &serde_json::Value, text: impl FnOnce() -> String) {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(value).expect("JSON")),
        Format::Text => print!("{}", text()),
    }
}

fn inspect(common: &Common) -> Result<()> {
    let (loaded, adapter) = open(common, None)?;
    let total = param_report(&loaded.model).total;
    let mut adapter_params = 0;
    let mut modules = Vec::new();
    loaded.model.for_each_linear("", &mut |path, l| {
        adapter_params += l.num_adapter_params();
        let [d_in, d_out] = l.weight.dims();
        modules.push(json!({
            "name": path,
            "in": d_in,
            "out": d_out,
            "adapter": l.adapter.as_ref().map(|a| a.kind_name()),
        }));
    });
    let value = json!({
        "path": loaded.path,
        "architecture": loaded.model.architecture(),
        "parameters": total,
        "adapter_parameters": adapter_params,
        "labels": loaded.labels,
        "adapter": adapter,
        "adaptable_modules": modules,
    });
    emit(common.format, &value, || {
        let mut s = format!(
            "{}\narchitecture: {}\nparameters: {total} (adapter: {adapter_params})\n",
            loaded.path.display(),
            loaded.model.architecture(),
        );
        if let Some(a) = &adapter {
            s += &format!("adapter: {} ({})\n", a["path"], a["method"]);
        }
        s += &format!("adaptable modules ({}):\n", modules.len());
        for m in &modules {
            s += &format!(
                "  {} [{} -> {}]{}\n",
                m["name"].as_str().unwrap_or_default(),
                m["in"],
                m["out"],
                m["adapter"]
                    .as_str()
                    .map(|a| format!(" + {a}"))
                    .unwrap_or_default()
            );
        }
        s
    });
    Ok(())
}

fn predict(
    common: &Common,
    text: &str,
    pair: Option<&str>,
    num_labels: Option<usize>,
    max_length: usize,
) -> Result<()> {
    let (loaded, _) = open(common, num_labels)?;
    let tok = tokenizer(&loaded)?;
    let (ids, types) = tok.encode_limited(text, pair, max_length)?;
    let device = Device::default();
    let t = ids.len();
    let row = |v: &[u32]| {
        Tensor::<2, Int>::from_data(
            TensorData::new(v.iter().map(|&i| i64::from(i)).collect(), [1, t]),
            &device,
        )
    };
    let logits = loaded
        .model
        .classify(row(&ids), Some(row(&types)), Tensor::ones([1, t], &device))
        .ok_or_else(|| {
            format!(
                "{} is a causal language model: use `peftlab score` or `peftlab generate`",
                loaded.model.architecture()
            )
        })?
        .try_to_vec_as::<f64>()
        .map_err(|e| format!("{e:?}"))?;
    let value = if logits.len() == 1 {
        json!({"tokens": t, "regression": logits[0]})
    } else {
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = logits.iter().map(|l| (l - max).exp()).sum();
        let probs: Vec<f64> = logits.iter().map(|l| (l - max).exp() / z).collect();
        let best = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap_or(0);
        json!({
            "tokens": t,
            "logits": logits,
            "probabilities": probs,
            "label_id": best,
            "label": loaded.labels.get(best),
        })
    };
    emit(common.format, &value, || match value.get("regression") {
        Some(r) => format!("regression: {r}\n"),
        None => format!(
            "label: {} ({})\nlogits: {}\n",
            value["label"].as_str().unwrap_or_default(),
            value["label_id"],
            value["logits"]
        ),
    });
    Ok(())
}

fn score_cmd(common: &Common, text: &str) -> Result<()> {
    let (loaded, _) = open(common, None)?;
    let tok = tokenizer(&loaded)?;
    let lm = loaded.model.causal_lm().ok_or_else(|| {
        format!(
            "{} is not a causal language model: use `peftlab predict`",
            loaded.model.architecture()
        )
    })?;
    let ids = tok.encode(text)?;
    let (per, nll) = score(lm, &ids)?;
    let tokens: Vec<serde_json::Value> = ids
        .iter()
        .skip(1)
        .zip(&per)
        .map(|(&id, lp)| json!({"id": id, "token": tok.id_to_token(id), "logprob": lp}))
        .collect();
    let n = per.len().max(1) as f64;
    let value = json!({
        "ids": ids,
        "tokens": tokens,
        "nll": nll,
        "mean_nll": nll / n,
        "perplexity": (nll / n).exp(),
    });
    emit(common.format, &value, || {
        let mut s = String::new();
        for t in &tokens {
            s += &format!(
                "{:>8.4}  {}\n",
                t["logprob"].as_f64().unwrap_or_default(),
                t["token"].as_str().unwrap_or_default()
            );
        }
        s + &format!(
            "nll: {nll:.4}  mean: {:.4}  perplexity: {:.3}\n",
            nll / n,
            (nll / n).exp()
        )
    });
    Ok(())
}

fn generate_cmd(common: &Common, prompt: &str, cfg: GenerationConfig) -> Result<()> {
    let (loaded, _) = open(common, None)?;
    let tok = tokenizer(&loaded)?;
    let lm = loaded.model.causal_lm().ok_or_else(|| {
        format!(
            "{} is not a causal language model: use `peftlab predict`",
            loaded.model.architecture()
        )
    })?;
    let cfg = GenerationConfig {
        eos_token_id: cfg.eos_token_id.or(loaded.eos_token_id),
        ..cfg
    };
    let ids = tok.encode(prompt)?;
    let new = generate(lm, &ids, &cfg)?;
    let completion = tok.decode(&new)?;
    let value = json!({
        "prompt_ids": ids,
        "ids": new,
        "completion": completion,
        "text": tok.decode(&[ids.clone(), new.clone()].concat())?,
        "settings": cfg,
    });
    emit(common.format, &value, || {
        format!("{}\n", value["text"].as_str().unwrap_or_default())
    });
    Ok(())
}

fn read_lines(path: &std::path::Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines: Vec<String> = text
        .split('\n')
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect();
    if text.ends_with('\n') {
        lines.pop();
    }
    Ok(lines)
}

fn parse_column<T: std::str::FromStr>(path: &std::path::Path, what: &str) -> Result<Vec<T>> {
    read_lines(path)?
        .iter()
        .enumerate()
        .map(|(i, l)| {
            l.trim()
                .parse::<T>()
                .map_err(|_| format!("{}:{}: {l:?} is not {what}", path.display(), i + 1).into())
        })
        .collect()
}

fn evaluate_model(a: &EvaluateArgs, model: &str) -> Result<()> {
    use peftlab_data::task::LabelKind;
    use peftlab_eval::loops::output_lines;
    let task = a.task.as_deref().ok_or("--model needs --task")?;
    if task.starts_with("glue-") && a.data_dir.is_none() {
        return Err("glue tasks need --data-dir (the GLUE directory)".into());
    }
    let ds = peftlab_data::loaders::load_named(task, a.data_dir.as_deref())?;
    let mut examples = ds.split(&a.split)?.to_vec();
    if a.limit > 0 {
        examples.truncate(a.limit);
    }
    let num_labels = ds.num_labels();
    let common = Common {
        model: model.to_string(),
        adapter: a.adapter.clone(),
        format: a.format,
    };
    let (loaded, _) = open(&common, num_labels)?;
    let tok = tokenizer(&loaded)?;
    let device = Device::default();
    let (metrics, outputs) = match ds.task.labels {
        LabelKind::References => {
            let lm = loaded
                .model
                .causal_lm()
                .ok_or("generation tasks need a causal language model")?;
            let cfg = GenerationConfig {
                max_new_tokens: a.max_new_tokens,
                num_beams: a.beams,
                length_penalty: 1.0,
                no_repeat_ngram_size: 0,
                eos_token_id: loaded.eos_token_id,
            };
            let template = a.template.replace("\\n", "\n");
            let prompt = |x: &str| template.replace("{input}", x);
            let (m, out) = peftlab_eval::loops::evaluate_generator(
                lm, tok, &ds.task, &examples, &prompt, &cfg,
            )?;
            (m, output_lines(&out))
        }
        _ => {
            let (m, out) = peftlab_eval::loops::evaluate_classifier(
                &loaded.model,
                tok,
                &ds.task,
                &examples,
                a.batch_size,
                a.max_length,
                &device,
            )?;
            (m, output_lines(&out))
        }
    };
    let n = examples.len();
    if let Some(file) = &a.outputs {
        peftlab_train::record::write_atomic(file, outputs.as_bytes())?;
    }
    let value = json!({"task": ds.task.name, "split": a.split, "examples": n, "metrics": metrics});
    emit(a.format, &value, || {
        let mut s = format!("{} {} ({n} examples)\n", ds.task.name, a.split);
        for (k, v) in &metrics {
            s += &format!("  {k}: {v:.4}\n");
        }
        s
    });
    Ok(())
}

fn evaluate(a: &EvaluateArgs) -> Result<()> {
    use peftlab_eval::{bleu, classification as c, generation as g};
    if let Some(model) = &a.model {
        return evaluate_model(a, model);
    }
    let m = a.metric.as_str();
    let value = match m {
        "bleu" | "ter" | "rouge_l" | "cider_d" | "nist" | "meteor" => {
            let hyp = a.hyp.as_ref().ok_or("generation metrics need --hyp")?;
            if a.refs.is_empty() {
                return Err("generation metrics need at least one --ref".into());
            }
            let hyps = read_lines(hyp)?;
            let streams: Vec<Vec<String>> = a
                .refs
                .iter()
                .map(|r| read_lines(r))
                .collect::<Result<_>>()?;
            for (r, s) in a.refs.iter().zip(&streams) {
                if s.len() != hyps.len() {
                    return Err(format!(
                        "{} has {} lines but {} has {}",
                        r.display(),
                        s.len(),
                        hyp.display(),
                        hyps.len()
                    )
                    .into());
                }
            }
            let refs: Vec<Vec<&str>> = (0..hyps.len())
                .map(|i| streams.iter().map(|s| s[i].as_str()).collect())
                .collect();
            match m {
                "bleu" => {
                    let b = bleu::corpus_bleu(&hyps, &refs, a.lowercase)?;
                    json!({"metric": m, "score": b.score, "details": b})
                }
                "ter" => {
                    let t = peftlab_eval::ter::corpus_ter(&hyps, &refs)?;
                    json!({"metric": m, "score": t.score, "details": t})
                }
                "rouge_l" => json!({"metric": m, "score": g::rouge_l(&hyps, &refs)?.0}),
                "cider_d" => json!({"metric": m, "score": g::cider_d(&hyps, &refs)?.0}),
                "meteor" => {
                    let wn = match &a.wordnet {
                        Some(dir) => &peftlab_eval::wordnet::WordNet::open(dir)?,
                        None => peftlab_eval::loops::default_wordnet()?,
                    };
                    let p = peftlab_eval::meteor::MeteorParams::default();
                    json!({"metric": m, "score": peftlab_eval::meteor::meteor(&hyps, &refs, wn, p)?.0})
                }
                _ => json!({"metric": m, "score": g::nist(&hyps, &refs, 5)?}),
            }
        }
        "accuracy" | "f1" | "f1_macro" | "mcc" | "pearson" | "spearman" => {
            let (pred, label) = match (&a.pred, &a.label) {
                (Some(p), Some(l)) => (p, l),
                _ => return Err("classification metrics need --pred and --label".into()),
            };
            let score = if m == "pearson" || m == "spearman" {
                let (p, l) = (
                    parse_column::<f64>(pred, "a number")?,
                    parse_column::<f64>(label, "a number")?,
                );
                if m == "pearson" {
                    c::pearson(&p, &l)?
                } else {
                    c::spearman(&p, &l)?
                }
            } else {
                let (p, l) = (
                    parse_column::<usize>(pred, "a class id")?,
                    parse_column::<usize>(label, "a class id")?,
                );
                match m {
                    "accuracy" => c::accuracy(&p, &l)?,
                    "f1" => c::f1_binary(&p, &l, 1)?,
                    "f1_macro" => c::f1_macro(&p, &l)?,
                    _ => c::matthews_corrcoef(&p, &l)?,
                }
            };
            json!({"metric": m, "score": score})
        }
        other => {
            return Err(format!(
                "unknown metric {other:?}: bleu, ter, rouge_l, cider_d, nist, meteor, accuracy, f1, f1_macro, mcc, pearson, spearman"
            )
            .into());
        }
    };
    emit(a.format, &value, || format!("{}: {}\n", m, value["score"]));
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Evaluate(a) => evaluate(&a),
        Command::Train {
            config,
            out,
            resume,
        } => train_cmd(&config, out, resume),
        Command::Reproduce(r) => reproduce_cmd(r),
        Command::Inspect(common) => inspect(&common),
        Command::Predict {
            common,
            text,
            text_pair,
            num_labels,
            max_length,
        } => predict(&common, &text, text_pair.as_deref(), num_labels, max_length),
        Command::Score { common, text } => score_cmd(&common, &text),
        Command::Generate {
            common,
            prompt,
            max_new_tokens,
            beams,
            length_penalty,
            no_repeat_ngram_size,
            eos_token_id,
        } => generate_cmd(
            &common,
            &prompt,
            GenerationConfig {
                max_new_tokens,
                num_beams: beams,
                length_penalty,
                no_repeat_ngram_size,
                eos_token_id,
            },
        ),
    }
}

fn reproduce_cmd(r: ReproduceCmd) -> Result<()> {
    let shard = match &r.shard {
        Some(s) => {
            let (i, n) = s.split_once('/').ok_or("--shard takes I/N")?;
            let (i, n): (usize, usize) = (i.parse()?, n.parse()?);
            if i == 0 || i > n {
                return Err(format!("--shard {s}: need 1 <= I <= N").into());
            }
            Some((i, n))
        }
        None => None,
    };
    let args = peftlab_train::reproduce::ReproduceArgs {
        method: r.method,
        profile: r.profile,
        root: r.root,
        out: r.out,
        tasks: r.tasks,
        seeds: r.seeds,
        force: r.force,
        dry_run: r.dry_run,
        list: r.list,
        shard,
        emit_slurm: r.emit_slurm.map(|f| (f, r.shards)),
    };
    peftlab_train::reproduce::reproduce(&args, &mut |l| eprintln!("{l}"))?;
    Ok(())
}

fn train_cmd(config: &Path, out: Option<PathBuf>, resume: bool) -> Result<()> {
    use peftlab_train::{Event, RunOptions, TrainConfig, Trainer};
    use std::io::{IsTerminal, Write};
    let cfg = TrainConfig::from_file(config)?;
    let out = out.unwrap_or_else(|| {
        let stem = config
            .file_stem()
            .map_or("run".into(), |s| s.to_string_lossy().to_string());
        PathBuf::from("runs").join(format!(
            "{stem}-{}",
            peftlab_train::record::hash_hex(&cfg.to_toml())
        ))
    });
    let trainer = Trainer::new(cfg)?;
    let tty = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let mut on_event = |e: &Event| match e {
        Event::Step {
            step,
            total,
            epoch,
            loss,
            lr,
            examples_per_s,
        } => {
            let eta = started.elapsed().as_secs_f64() / *step as f64 * (total - step) as f64;
            let line = format!(
                "epoch {epoch} step {step}/{total} loss {loss:.4} lr {lr:.2e} {examples_per_s:.1} ex/s eta {:.0} s",
                eta
            );
            if tty {
                eprint!("\r{line}\x1b[K");
                let _ = std::io::stderr().flush();
            } else if step % 10 == 0 || step == total {
                eprintln!("{line}");
            }
        }
        Event::Eval(p) => {
            if tty {
                eprintln!();
            }
            eprintln!(
                "eval epoch {} step {}: train loss {:.4} {}",
                p.epoch,
                p.step,
                p.train_loss,
                serde_json::to_string(&p.metrics).unwrap_or_default()
            );
        }
    };
    let opts = RunOptions {
        out_dir: Some(out.clone()),
        resume,
        ..Default::default()
    };
    let record = trainer.run_with(&opts, &mut on_event)?.record;
    println!(
        "{}",
        serde_json::json!({"out": out, "best": record.best.map(|i| &record.evals[i]), "test": record.test_metrics,
            "examples_per_s": record.examples_per_s, "wall_s": record.wall_s})
    );
    Ok(())
}

fn main() -> ExitCode {
    peftlab_train::alloc::retain_freed_memory();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
