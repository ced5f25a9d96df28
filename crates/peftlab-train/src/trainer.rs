//! The training loop for sequence classification and regression (encoder models).
//!
//! Per optimizer step: `grad_accum` micro-batches (each: dropout RNG seeded from the run seed and
//! the micro-batch index, forward, loss / `grad_accum` + the method's orthogonality regularizer,
//! backward), global-norm clipping, AdamW with the scheduled learning rate, then the
//! sensitivity update of AdaLoRA (and of TriAdaptLoRA's sensitivity ablation) from the step's
//! accumulated, clipped gradients and the updated weights (PEFT's order), then the method's
//! rank allocator (TriAdaptLoRA growth, AdaLoRA masking). Evaluation after every epoch (and every
//! `eval_every` steps) on the evaluation split; the best evaluation by the task's first metric
//! selects the weights whose test-split metrics are reported.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use peftlab_adapters::adalora::AdaLoraAllocator;
use peftlab_adapters::triadapt::TriAdaptAllocator;
use peftlab_adapters::{AdapterConfig, AdapterHost, attach};
use peftlab_data::batch::{
    Encoded, LmExample, batch_order, classification_batch, encode_examples, lm_batch, lm_example,
};
use peftlab_data::fetch::{cache_dir, ensure};
use peftlab_data::loaders::load_named;
use peftlab_data::task::{Dataset, Example, Label, splitmix64};
use peftlab_eval::loops::{evaluate_classifier, evaluate_generator, output_lines};
use peftlab_models::generate::GenerationConfig;
use peftlab_models::tokenizer::Tokenizer;
use peftlab_models::zoo::{LoadOptions, Model, load};
use serde_json::json;

use crate::TrainError;
use crate::checkpoint::{self, LoopState};
use crate::config::TrainConfig;
use crate::optim::{AdamW, global_grad_norm, lr_at};
use crate::record::{EvalPoint, JsonlLog, RunRecord, git_state, hash_hex, peak_rss_mib};

/// Something the loop reports while it runs (the CLI draws progress from these).
#[derive(Debug, Clone)]
pub enum Event {
    /// An optimizer step finished.
    Step {
        /// Steps taken.
        step: usize,
        /// Steps planned.
        total: usize,
        /// Epoch (1-based).
        epoch: usize,
        /// Mean loss of the step's micro-batches.
        loss: f64,
        /// Learning rate used.
        lr: f64,
        /// Training examples per second so far.
        examples_per_s: f64,
    },
    /// An evaluation finished.
    Eval(EvalPoint),
}

/// The model names [`model_path`] fetches into the cache instead of reading a path.
pub const ZOO: [&str; 2] = ["minilm", "smollm2"];

/// Resolve a model name of the fetch manifest (each listed in [`ZOO`], which tells
/// [`TrainConfig::resolved_in`] not to treat it as a path) to its path; other strings are
/// paths.
pub fn model_path(name: &str) -> Result<std::path::PathBuf, TrainError> {
    Ok(match name {
        "minilm" => ensure("minilm", &cache_dir())?,
        "smollm2" => ensure("smollm2", &cache_dir())?.join("SmolLM2-135M-Instruct.Q4_1.gguf"),
        other => other.into(),
    })
}

fn other(e: impl std::fmt::Display) -> TrainError {
    TrainError::Other(e.to_string())
}

/// Cross-entropy with label smoothing `eps` (PyTorch's `CrossEntropyLoss(label_smoothing)`)
/// of `logits: [B, K]` against `labels`, or mean squared error for one output (regression).
pub fn classification_loss(
    logits: Tensor<2>,
    labels: &[Option<Label>],
    eps: f64,
) -> Result<Tensor<1>, TrainError> {
    let [b, k] = logits.dims();
    let device = logits.device();
    if k == 1 {
        let y: Vec<f32> = labels
            .iter()
            .map(|l| match l {
                Some(Label::Score(s)) => Ok(*s as f32),
                _ => Err(other("a regression batch holds an example without a score")),
            })
            .collect::<Result<_, _>>()?;
        let y = Tensor::<1>::from_data(TensorData::new(y, [b]), &device);
        return Ok((logits.reshape([b]) - y).square().mean());
    }
    let mut target = vec![(eps / k as f64) as f32; b * k];
    for (i, l) in labels.iter().enumerate() {
        match l {
            Some(Label::Class(c)) if *c < k => target[i * k + c] += (1.0 - eps) as f32,
            _ => {
                return Err(other(format!(
                    "example {i} of the batch has no class label < {k}"
                )));
            }
        }
    }
    let target = Tensor::<2>::from_data(TensorData::new(target, [b, k]), &device);
    Ok((log_softmax(logits, 1) * target)
        .sum()
        .neg()
        .div_scalar(b as f64))
}

/// Next-token cross-entropy of a decoder over the positions `loss_mask` marks (the target and
/// EOS; the prompt is not trained), with label smoothing `eps`: logits `[B, T, V]` at position
/// `i` predict `ids[i + 1]`; the mean is over marked tokens.
pub fn lm_loss(
    logits: Tensor<3>,
    ids: Tensor<2, Int>,
    loss_mask: Tensor<2>,
    eps: f64,
) -> Tensor<1> {
    let [b, t, v] = logits.dims();
    // targets: ids shifted left by one; the last position (which predicts nothing) gets target 0
    // and is cut from the loss below, so the logits are used whole, without a sliced copy
    let device = ids.device();
    let targets = Tensor::cat(
        vec![
            ids.slice([0..b, 1..t]),
            Tensor::<2, Int>::zeros([b, 1], &device),
        ],
        1,
    );
    let nll = peftlab_linalg::xent::cross_entropy(
        logits.reshape([b * t, v]),
        targets.reshape([b * t]),
        eps,
    )
    .reshape([b, t])
    .slice([0..b, 0..t - 1]);
    let m = loss_mask.slice([0..b, 1..t]);
    (nll * m.clone()).sum() / m.sum().clamp_min(1.0)
}

/// The training examples, encoded for the model's kind.
enum TrainSet {
    /// Sequence classification / regression.
    Classify(Vec<Encoded>),
    /// Decoder: prompt + target + EOS with the loss on the target.
    Lm {
        /// One example per (input, reference) pair.
        examples: Vec<LmExample>,
        /// Padding id.
        pad: u32,
    },
}

impl TrainSet {
    fn lengths(&self) -> Vec<usize> {
        match self {
            TrainSet::Classify(v) => v.iter().map(|e| e.ids.len()).collect(),
            TrainSet::Lm { examples, .. } => examples.iter().map(|e| e.ids.len()).collect(),
        }
    }
}

/// Serializes seeding burn's process-wide RNG with the forward pass that draws from it.
static FORWARD_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `(trainable, total)` scalar parameters of `model` (trainable = requires a gradient).
pub fn count_params<M: Module>(model: &M) -> (usize, usize) {
    let mut t = (0, 0);
    for (_, _, shape, trainable) in crate::optim::parameters(model) {
        let n: usize = shape.iter().product();
        t.1 += n;
        if trainable {
            t.0 += n;
        }
    }
    t
}

/// The training state that changes step by step.
struct Allocators {
    tri: Option<TriAdaptAllocator>,
    ada: Option<AdaLoraAllocator>,
}

/// A prepared run: model, tokenizer, data, optimizer.
pub struct Trainer {
    /// The config.
    pub config: TrainConfig,
    /// The model on the autodiff device.
    pub model: Model,
    tok: Tokenizer,
    data: Dataset,
    train: TrainSet,
    heads: Vec<String>,
    eos: Option<u32>,
    device: Device,
    opt: AdamW,
    alloc: Allocators,
    total_steps: usize,
}

impl Trainer {
    /// Load the model and data, attach the adapter, set up the optimizer and allocators.
    /// Relative paths in the config are relative to the working directory.
    pub fn new(config: TrainConfig) -> Result<Self, TrainError> {
        Self::new_in(config, Path::new(""))
    }

    /// [`Trainer::new`] with the config's relative paths (`model.path` when it is not a zoo
    /// name, `task.data_dir`, `task.glue_dir`, `train.init_adapter`) taken relative to `base`.
    /// The config keeps them as written, so its hash, and the records and checkpoints that
    /// carry it, do not depend on where the checkout lies (`reproduce` passes the workspace
    /// root).
    pub fn new_in(config: TrainConfig, base: &Path) -> Result<Self, TrainError> {
        crate::alloc::retain_freed_memory();
        // fixes the commit the records of this process name (see `git_state`)
        git_state();
        let resolved = config.resolved_in(base);
        let c = &resolved;
        let dir = c.task.data_dir.as_deref().or(c.task.glue_dir.as_deref());
        let mut data = load_named(&c.task.name, dir)?;
        // records name a data directory as the config wrote it, not where this checkout lies
        if let (Some(p), Some(written)) = (data.provenance.as_mut(), &config.task.data_dir) {
            p.source = format!("directory {}", written.display());
        }
        let num_labels = data.num_labels();
        let device = Device::default().autodiff();
        let opts = LoadOptions {
            num_labels,
            seed: c.train.seed,
            mean_pooling: c.model.mean_pooling,
        };
        let loaded = load(&model_path(&c.model.path)?, &opts, &device)?;
        let tok = loaded
            .tokenizer
            .ok_or_else(|| other(format!("{}: the model has no tokenizer", c.model.path)))?;
        let eos = loaded.eos_token_id;
        let mut model = loaded.model;
        model
            .set_base_precision(c.model.base_precision)
            .map_err(|e| TrainError::Config {
                file: "model.base_precision".into(),
                reason: e.to_string(),
            })?;
        let is_lm = num_labels.is_none();
        if is_lm && model.causal_lm().is_none() {
            return Err(other(format!(
                "{}: a generation task needs a causal language model",
                c.task.name
            )));
        }
        if !is_lm && model.causal_lm().is_some() {
            return Err(other(format!(
                "{}: a classification task needs an encoder classifier",
                c.task.name
            )));
        }
        let heads = c.train_modules.clone().unwrap_or_else(|| {
            if is_lm {
                Vec::new()
            } else {
                vec!["classifier".into()]
            }
        });
        if let Some(a) = &c.adapter {
            match &c.train.init_adapter {
                None => {
                    attach(&mut model, a, c.train.seed)?;
                }
                Some(dir) => start_from_saved(&mut model, a, Path::new(dir))?,
            }
            let mut found = vec![false; heads.len()];
            model.for_each_linear_mut("", &mut |p, l| {
                for (i, h) in heads.iter().enumerate() {
                    if peftlab_adapters::target::suffix_match(p, h) {
                        l.unfreeze_base();
                        found[i] = true;
                    }
                }
            });
            if let Some(i) = found.iter().position(|f| !f) {
                return Err(TrainError::Config {
                    file: "train_modules".into(),
                    reason: format!("{:?} matches no linear layer of the model", heads[i]),
                });
            }
        }
        let mut train_ex: Vec<Example> = data.train.clone();
        if let Some(n) = c.task.train_limit {
            train_ex.truncate(n);
        }
        if train_ex.is_empty() {
            return Err(other(format!("{}: no training examples", c.task.name)));
        }
        let train = if is_lm {
            let eos =
                eos.ok_or_else(|| other(format!("{}: the model has no EOS token", c.model.path)))?;
            let mut examples = Vec::new();
            for e in &train_ex {
                let Some(Label::Refs(refs)) = &e.label else {
                    return Err(other(format!("example {} has no references", e.id)));
                };
                let prompt = c.task.template.replace("{input}", &e.text_a);
                for r in refs {
                    examples
                        .push(lm_example(&tok, &prompt, r, eos, c.task.max_length).map_err(other)?);
                }
            }
            TrainSet::Lm { examples, pad: eos }
        } else {
            TrainSet::Classify(encode_examples(&tok, &train_ex, c.task.max_length).map_err(other)?)
        };
        let micro = train.lengths().len().div_ceil(c.train.batch_size);
        let total_steps = micro.div_ceil(c.optim.grad_accum) * c.train.epochs;
        let alloc = Allocators {
            tri: match &c.adapter {
                Some(AdapterConfig::Triadaptlora(t)) => Some(TriAdaptAllocator::new(
                    &model,
                    t,
                    total_steps,
                    None,
                    c.train.seed,
                )?),
                _ => None,
            },
            ada: match &c.adapter {
                Some(AdapterConfig::Adalora(a)) => {
                    Some(AdaLoraAllocator::new(&model, a, total_steps)?)
                }
                _ => None,
            },
        };
        Ok(Self {
            opt: AdamW::new(c.optim.adamw),
            config,
            model,
            tok,
            data,
            train,
            heads,
            eos,
            device,
            alloc,
            total_steps,
        })
    }

    /// Optimizer steps of the whole run (all epochs).
    pub fn total_steps(&self) -> usize {
        self.total_steps
    }

    /// The orthogonality regularizer of the method (TriAdaptLoRA, AdaLoRA), if any.
    fn regularizer(&self) -> Result<Option<Tensor<1>>, TrainError> {
        if let Some(t) = &self.alloc.tri {
            return Ok(t.regularizer(&self.model)?);
        }
        if let Some(a) = &self.alloc.ada {
            return Ok(a.regularizer(&self.model)?);
        }
        Ok(None)
    }

    /// The task's metrics on `split` and the outputs as lines ([`output_lines`]).
    fn evaluate(&self, split: &str) -> Result<(BTreeMap<String, f64>, String), TrainError> {
        let c = &self.config;
        let mut ex = self.data.split(split).map_err(other)?.to_vec();
        if let Some(n) = c.task.eval_limit {
            ex.truncate(n);
        }
        let valid = self.model.clone().valid();
        if let TrainSet::Lm { .. } = self.train {
            let lm = valid.causal_lm().ok_or_else(|| other("not a causal LM"))?;
            let cfg = GenerationConfig {
                max_new_tokens: c.task.max_new_tokens,
                num_beams: c.task.num_beams,
                length_penalty: c.task.length_penalty,
                no_repeat_ngram_size: c.task.no_repeat_ngram_size,
                eos_token_id: self.eos,
            };
            let prompt = |x: &str| c.task.template.replace("{input}", x);
            let (m, out) = evaluate_generator(lm, &self.tok, &self.data.task, &ex, &prompt, &cfg)?;
            return Ok((m, output_lines(&out)));
        }
        let (m, out) = evaluate_classifier(
            &valid,
            &self.tok,
            &self.data.task,
            &ex,
            c.train.eval_batch_size,
            c.task.max_length,
            &self.device.clone().inner(),
        )?;
        Ok((m, output_lines(&out)))
    }

    /// The loss of one micro-batch (forward under the RNG lock, seeded from `micro_index`).
    fn micro_loss(
        &self,
        idx: &[usize],
        micro_index: u64,
        eps: f64,
    ) -> Result<(Tensor<1>, usize), TrainError> {
        let seed = splitmix64(self.config.train.seed ^ splitmix64(micro_index));
        match &self.train {
            TrainSet::Classify(enc) => {
                let items: Vec<&Encoded> = idx.iter().map(|&i| &enc[i]).collect();
                let batch = classification_batch(&items, 0, &self.device);
                let logits = {
                    // burn's RNG is one per process: hold it while this forward draws its
                    // dropout masks, so concurrent runs in one process stay deterministic
                    let _rng = FORWARD_RNG.lock().unwrap_or_else(|e| e.into_inner());
                    self.device.seed(seed);
                    self.model
                        .classify(batch.ids, Some(batch.types), batch.mask)
                        .ok_or_else(|| other("the model is not a classifier"))?
                };
                Ok((
                    classification_loss(logits, &batch.labels, eps)?,
                    items.len(),
                ))
            }
            TrainSet::Lm { examples, pad } => {
                let items: Vec<&LmExample> = idx.iter().map(|&i| &examples[i]).collect();
                let batch = lm_batch(&items, *pad, &self.device);
                let logits = {
                    let _rng = FORWARD_RNG.lock().unwrap_or_else(|e| e.into_inner());
                    self.device.seed(seed);
                    self.model
                        .causal_lm()
                        .ok_or_else(|| other("the model is not a causal LM"))?
                        .logits(batch.ids.clone(), Some(batch.mask))
                };
                Ok((
                    lm_loss(logits, batch.ids, batch.loss_mask, eps),
                    items.len(),
                ))
            }
        }
    }

    /// Train; `out_dir` receives `log.jsonl`, `record.json` and `checkpoint/` (nothing when
    /// `None`). `on_event` sees every step and evaluation.
    pub fn run(
        self,
        out_dir: Option<&Path>,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Trained, TrainError> {
        self.run_with(
            &RunOptions {
                out_dir: out_dir.map(Path::to_path_buf),
                ..Default::default()
            },
            on_event,
        )
    }

    /// [`Trainer::run`] with resume and stop options.
    pub fn run_with(
        mut self,
        opts: &RunOptions,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Trained, TrainError> {
        let start = Instant::now();
        let c = self.config.clone();
        let out_dir = opts.out_dir.as_deref();
        let config_hash = hash_hex(&c.to_toml());
        let fresh_model = self.model.clone();
        let mut st = LoopState {
            config_hash: config_hash.clone(),
            epoch: 1,
            trainable0: count_params(&self.model).0,
            ..Default::default()
        };
        let mut best_model: Option<Model> = None;
        let mut resumed = false;
        if let (true, Some(out)) = (opts.resume, out_dir)
            && let Some(saved) = checkpoint::load(out)?
        {
            if saved.state.config_hash != config_hash {
                return Err(TrainError::Config {
                    file: checkpoint::dir_of(out).display().to_string(),
                    reason: format!(
                        "the checkpoint is of another config (hash {}, this one {config_hash}); use a new output directory",
                        saved.state.config_hash
                    ),
                });
            }
            let file = checkpoint::dir_of(out).join("params.safetensors");
            let mut m = fresh_model.clone();
            checkpoint::grow_to(&mut m, &saved.state.blocks)?;
            self.model = checkpoint::load_values(m, &saved.params, &file)?;
            if let Some(b) = &saved.best {
                let mut m = fresh_model.clone();
                checkpoint::grow_to(&mut m, &saved.state.best_blocks)?;
                best_model = Some(checkpoint::load_values(
                    m,
                    b,
                    &file.with_file_name("best.safetensors"),
                )?);
            }
            let inner = self.device.clone().inner();
            self.opt
                .load_parts(&saved.moments, &saved.state.adam_t, &inner);
            if let (Some(t), Some((total, prev))) = (&mut self.alloc.tri, &saved.state.tri) {
                t.set_state(*total, prev)?;
            }
            if let Some(a) = &mut self.alloc.ada {
                a.set_ema_state(&saved.ema, &inner);
            }
            if let Some(t) = &mut self.alloc.tri {
                t.set_ema_state(&saved.ema, &inner);
            }
            st = saved.state;
            resumed = true;
        }
        let mut log = JsonlLog::open(out_dir.map(|d| d.join("log.jsonl")).as_deref(), resumed)?;
        let warmup = c
            .optim
            .warmup_steps
            .unwrap_or((c.optim.warmup_ratio * self.total_steps as f64).ceil() as usize);
        let head_lr = c.optim.head_lr.unwrap_or(c.optim.lr);
        let heads = self.heads.clone();
        let lengths: Vec<usize> = self.train.lengths();
        let metric = self.data.task.metrics.first().cloned().unwrap_or_default();
        let max_steps = c.train.max_steps.unwrap_or(usize::MAX);
        let mut last_checkpoint: Option<std::path::PathBuf> =
            out_dir.map(checkpoint::dir_of).filter(|d| d.exists());
        'epochs: while st.epoch <= c.train.epochs {
            let epoch = st.epoch;
            let order = batch_order(
                &lengths,
                c.train.batch_size,
                c.train.seed,
                epoch as u64,
                c.train.bucket_by_length,
            );
            let groups: Vec<&[Vec<usize>]> = order.chunks(c.optim.grad_accum).collect();
            while st.epoch == epoch && st.group_in_epoch < groups.len() {
                if st.step >= max_steps || opts.stop_after.is_some_and(|s| st.step >= s) {
                    break 'epochs;
                }
                let group = groups[st.group_in_epoch];
                let t0 = Instant::now();
                let mut acc: Option<GradientsParams> = None;
                let mut step_loss = 0.0;
                for batch_idx in group.iter() {
                    st.micro_index += 1;
                    let (mut loss, n_items) =
                        self.micro_loss(batch_idx, st.micro_index, c.optim.label_smoothing)?;
                    let value: f64 = loss.clone().into_scalar::<f64>();
                    if !value.is_finite() || opts.poison_step == Some(st.step + 1) {
                        return Err(TrainError::NonFinite {
                            loss: if value.is_finite() { f64::NAN } else { value },
                            step: st.step + 1,
                            epoch,
                            checkpoint: last_checkpoint,
                        });
                    }
                    step_loss += value / group.len() as f64;
                    if let Some(r) = self.regularizer()? {
                        loss = loss + r;
                    }
                    let grads = (loss / group.len() as f64).backward();
                    let gp = GradientsParams::from_grads(grads, &self.model);
                    st.seen += n_items;
                    acc = Some(match acc {
                        None => gp,
                        Some(a) => add_grads(&self.model, a, gp),
                    });
                }
                let grads = acc.expect("a step has at least one micro-batch");
                let norm = global_grad_norm(&self.model, &grads);
                let scale = match c.optim.max_grad_norm {
                    Some(m) if m > 0.0 && norm > m => m / (norm + 1e-6),
                    _ => 1.0,
                };
                let lr = lr_at(
                    c.optim.schedule,
                    c.optim.lr,
                    st.step,
                    warmup,
                    self.total_steps,
                );
                let lr_head = lr * head_lr / c.optim.lr;
                let lr_of = |path: &str| {
                    if heads.iter().any(|h| path_has_module(path, h)) {
                        lr_head
                    } else {
                        lr
                    }
                };
                // the sensitivity allocators read the step's gradient as the optimizer applies
                // it (accumulated, clipped) against the updated weights, as PEFT's
                // `update_and_allocate` after `optimizer.step()` does
                let needs_grads = self.alloc.ada.is_some()
                    || self.alloc.tri.as_ref().is_some_and(|t| t.needs_gradients());
                let seen_grads = needs_grads.then(|| scaled_copy(&self.model, &grads, scale));
                self.model = self.opt.step_with(self.model, grads, &lr_of, scale);
                if let Some(g) = &seen_grads {
                    if let Some(a) = &mut self.alloc.ada {
                        a.update(&self.model, g)?;
                    }
                    if let Some(t) = &mut self.alloc.tri {
                        t.update(&self.model, g);
                    }
                }
                st.step += 1;
                st.group_in_epoch += 1;
                let step = st.step;
                if let Some(t) = &mut self.alloc.tri
                    && let Some(g) = t.step(&mut self.model, step)?
                {
                    let v = json!({"step": g.step, "k": g.k, "threshold": g.threshold, "grown": g.grown, "total_rank": g.total_rank});
                    log.write(&json!({"event": "grow", "detail": v}))?;
                    st.allocations.push(v);
                }
                if let Some(a) = &mut self.alloc.ada
                    && let Some(m) = a.mask(&mut self.model, step)?
                {
                    let v = json!({"step": step, "budget": m.budget, "ranks": m.ranks});
                    st.allocations.push(v);
                }
                st.train_time += t0.elapsed().as_secs_f64();
                st.loss_sum += step_loss;
                st.loss_n += 1;
                let eps = st.seen as f64 / st.train_time.max(1e-9);
                log.write(&json!({"event": "step", "step": step, "epoch": epoch, "loss": step_loss, "lr": lr, "grad_norm": norm, "examples_per_s": eps}))?;
                on_event(&Event::Step {
                    step,
                    total: self.total_steps.min(max_steps),
                    epoch,
                    loss: step_loss,
                    lr,
                    examples_per_s: eps,
                });
                let end_of_epoch = st.group_in_epoch == groups.len();
                if end_of_epoch {
                    st.epoch += 1;
                    st.group_in_epoch = 0;
                }
                if (c.train.eval_every > 0 && step.is_multiple_of(c.train.eval_every))
                    || end_of_epoch
                    || step >= max_steps
                {
                    // no evaluation split: no model selection, the last model is tested
                    let last_wins = c.task.eval_split.is_empty();
                    let metrics = if last_wins {
                        BTreeMap::new()
                    } else {
                        self.evaluate(&c.task.eval_split)?.0
                    };
                    let p = EvalPoint {
                        epoch,
                        step,
                        train_loss: st.loss_sum / st.loss_n.max(1) as f64,
                        metrics,
                    };
                    (st.loss_sum, st.loss_n) = (0.0, 0);
                    log.write(&json!({"event": "eval", "detail": p}))?;
                    on_event(&Event::Eval(p.clone()));
                    let v = p.metrics.get(&metric).copied().unwrap_or(f64::NEG_INFINITY);
                    if last_wins || st.best.is_none_or(|(_, b)| v > b) {
                        st.best = Some((st.evals.len(), v));
                        st.best_blocks = checkpoint::block_sizes(&self.model);
                        best_model = Some(self.model.clone());
                    }
                    st.evals.push(p);
                }
                let due = (c.train.checkpoint_every > 0
                    && step.is_multiple_of(c.train.checkpoint_every))
                    || end_of_epoch
                    || opts.stop_after == Some(step);
                if let (true, Some(out)) = (due, out_dir) {
                    st.blocks = checkpoint::block_sizes(&self.model);
                    st.tri = self.alloc.tri.as_ref().map(TriAdaptAllocator::state);
                    // the sensitivity EMAs of whichever allocator has them (one per run)
                    let ema = match (&self.alloc.ada, &self.alloc.tri) {
                        (Some(a), _) => a.ema_state(),
                        (None, Some(t)) => t.ema_state(),
                        (None, None) => Default::default(),
                    };
                    last_checkpoint = Some(checkpoint::save(
                        out,
                        &st,
                        &self.model,
                        best_model.as_ref(),
                        &self.opt.to_record().moments,
                        &ema,
                    )?);
                }
            }
        }
        if opts.stop_after.is_some_and(|s| st.step >= s) && st.epoch <= c.train.epochs {
            return Err(TrainError::Stopped { step: st.step });
        }
        let (trainable1, total_params) = count_params(&self.model);
        let mut test_metrics = BTreeMap::new();
        let mut test_outputs = None;
        if let Some(m) = best_model {
            self.model = m;
            if !c.task.test_split.is_empty() {
                let (m, out) = self.evaluate(&c.task.test_split)?;
                test_metrics = m;
                test_outputs = Some(out);
            }
        }
        let text = c.to_toml();
        let (git_commit, git_dirty) = git_state();
        let record = RunRecord {
            config_hash: hash_hex(&text),
            config: text,
            git_commit,
            git_dirty,
            versions: BTreeMap::from([
                ("peftlab".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                ("burn".to_string(), "0.22.1".to_string()),
                (
                    "splits".to_string(),
                    peftlab_data::loaders::SPLITS_VERSION.to_string(),
                ),
                (
                    "method_revision".to_string(),
                    crate::record::method_revision(&c).to_string(),
                ),
            ]),
            backend: format!("{:?}", self.device.clone().inner()),
            seed: c.train.seed,
            method: c
                .adapter
                .as_ref()
                .map_or("full", AdapterConfig::method)
                .to_string(),
            evals: st.evals,
            best: st.best.map(|b| b.0),
            test_metrics,
            trainable_params: (st.trainable0, trainable1),
            total_params,
            steps: st.step,
            examples_per_s: st.seen as f64 / st.train_time.max(1e-9),
            wall_s: start.elapsed().as_secs_f64(),
            peak_rss_mib: peak_rss_mib(),
            allocations: st.allocations,
            data: self.data.provenance.clone(),
        };
        if let Some(d) = out_dir {
            // the adapter of the best evaluation, with the trained heads (PEFT's
            // `modules_to_save`), before the record that marks the run finished
            if let Some(a) = &c.adapter {
                let to_save = a.with_modules_to_save(&self.heads);
                peftlab_adapters::save_adapter(&self.model, &to_save, &d.join("adapter"))?;
            }
            if let Some(out) = &test_outputs {
                crate::record::write_atomic(&d.join("test_outputs.txt"), out.as_bytes())?;
            }
            let bytes = serde_json::to_vec_pretty(&record).map_err(other)?;
            crate::record::write_atomic(&d.join("record.json"), &bytes)?;
        }
        Ok(Trained {
            record,
            model: self.model,
        })
    }
}

/// Attach the adapter saved in `dir` (without its heads) as the run's starting point; its
/// config must equal the run's `[adapter]` apart from `modules_to_save`.
fn start_from_saved(
    model: &mut Model,
    adapter: &AdapterConfig,
    dir: &Path,
) -> Result<(), TrainError> {
    let report = peftlab_adapters::load_adapter_without_heads(model, dir)?;
    let plain =
        |c: &AdapterConfig| serde_json::to_value(c.with_modules_to_save(&[])).map_err(other);
    let (saved, wanted) = (plain(&report.config)?, plain(adapter)?);
    if saved != wanted {
        return Err(TrainError::Config {
            file: "train.init_adapter".into(),
            reason: format!(
                "{} holds another adapter than [adapter]: {saved} vs {wanted}",
                dir.display()
            ),
        });
    }
    Ok(())
}

/// How to run: where to write, whether to resume, and test hooks.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Output directory (`log.jsonl`, `record.json`, `checkpoint/`, `test_outputs.txt`: the
    /// test split's outputs of the best evaluation, one line per example — generated text or
    /// predicted class id / score — and `adapter/`: the adapter of the best evaluation with the
    /// trained heads, in the format `peftlab predict --adapter` and PEFT read; full fine-tuning
    /// writes none).
    pub out_dir: Option<std::path::PathBuf>,
    /// Continue from `out_dir/checkpoint` when there is one (same config only).
    pub resume: bool,
    /// Stop after this optimizer step with a checkpoint, as if killed ([`TrainError::Stopped`]).
    pub stop_after: Option<usize>,
    /// Treat the loss of this optimizer step as NaN (tests the non-finite path).
    pub poison_step: Option<usize>,
}

/// The result of [`Trainer::run`].
pub struct Trained {
    /// The run record (also written to `record.json`).
    pub record: RunRecord,
    /// The model with the weights of the best evaluation.
    pub model: Model,
}

/// Whether the dotted parameter `path` lies inside a module named `module` (a name or dotted
/// suffix of the module path, as `train_modules` entries are).
fn path_has_module(path: &str, module: &str) -> bool {
    let parts: Vec<&str> = path.split('.').collect();
    let m: Vec<&str> = module.split('.').collect();
    parts.windows(m.len()).any(|w| w == m.as_slice())
}

/// The 2-D gradients of `grads` times `scale`, for reading after the optimizer consumed them.
fn scaled_copy<M: Module>(module: &M, grads: &GradientsParams, scale: f64) -> GradientsParams {
    use burn::module::{ModuleVisitor, Param};
    struct Scaled<'x> {
        from: &'x GradientsParams,
        to: GradientsParams,
        scale: f64,
    }
    impl ModuleVisitor for Scaled<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if D == 2
                && let Some(g) = self.from.get::<D>(param.id)
            {
                let g = if self.scale == 1.0 { g } else { g * self.scale };
                self.to.register::<D>(param.id, g);
            }
        }
    }
    let mut c = Scaled {
        from: grads,
        to: GradientsParams::new(),
        scale,
    };
    module.visit(&mut c);
    c.to
}

/// `a + b` for the gradients of every parameter of `module`.
fn add_grads<M: Module>(
    module: &M,
    mut a: GradientsParams,
    mut b: GradientsParams,
) -> GradientsParams {
    use burn::module::{ModuleVisitor, Param};
    struct Add<'x> {
        a: &'x mut GradientsParams,
        b: &'x mut GradientsParams,
    }
    impl ModuleVisitor for Add<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(gb) = self.b.remove::<D>(param.id) {
                let sum = match self.a.remove::<D>(param.id) {
                    Some(ga) => ga + gb,
                    None => gb,
                };
                self.a.register::<D>(param.id, sum);
            }
        }
    }
    module.visit(&mut Add {
        a: &mut a,
        b: &mut b,
    });
    a
}
