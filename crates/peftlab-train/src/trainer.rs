//! The training loop for sequence classification and regression (encoder models).
//!
//! Per optimizer step: `grad_accum` micro-batches (each: dropout RNG seeded from the run seed and
//! the micro-batch index, forward, loss / `grad_accum` + the method's orthogonality regularizer,
//! backward), AdaLoRA's sensitivity update from the last micro-batch's gradients, global-norm
//! clipping, AdamW with the scheduled learning rate, then the method's rank allocator
//! (TriAdaptLoRA growth, AdaLoRA masking). Evaluation after every epoch (and every
//! `eval_every` steps) on the evaluation split; the best evaluation by the task's first metric
//! selects the weights whose test-split metrics are reported.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use peftlab_adapters::adalora::AdaLoraAllocator;
use peftlab_adapters::triadapt::TriAdaptAllocator;
use peftlab_adapters::{AdapterConfig, AdapterHost, attach};
use peftlab_data::batch::{Encoded, batch_order, classification_batch, encode_examples};
use peftlab_data::fetch::{cache_dir, ensure};
use peftlab_data::loaders::load_named;
use peftlab_data::task::{Dataset, Example, Label, splitmix64};
use peftlab_eval::loops::evaluate_classifier;
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

/// Resolve a model name of the fetch manifest to its path; other strings are paths.
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
    train: Vec<Encoded>,
    device: Device,
    opt: AdamW,
    alloc: Allocators,
    total_steps: usize,
}

impl Trainer {
    /// Load the model and data, attach the adapter, set up the optimizer and allocators.
    pub fn new(config: TrainConfig) -> Result<Self, TrainError> {
        let c = &config;
        let data = load_named(&c.task.name, c.task.glue_dir.as_deref())?;
        let num_labels = data.num_labels().ok_or_else(|| {
            other(format!(
                "{}: generation tasks are trained by the LM loop (not yet here)",
                c.task.name
            ))
        })?;
        let device = Device::default().autodiff();
        let opts = LoadOptions {
            num_labels: Some(num_labels),
            seed: c.train.seed,
            mean_pooling: c.model.mean_pooling,
        };
        let loaded = load(&model_path(&c.model.path)?, &opts, &device)?;
        let tok = loaded
            .tokenizer
            .ok_or_else(|| other(format!("{}: the model has no tokenizer", c.model.path)))?;
        let mut model = loaded.model;
        if let Some(a) = &c.adapter {
            attach(&mut model, a, c.train.seed)?;
            let mut found = vec![false; c.train_modules.len()];
            model.for_each_linear_mut("", &mut |p, l| {
                for (i, h) in c.train_modules.iter().enumerate() {
                    if peftlab_adapters::target::suffix_match(p, h) {
                        l.unfreeze_base();
                        found[i] = true;
                    }
                }
            });
            if let Some(i) = found.iter().position(|f| !f) {
                return Err(TrainError::Config {
                    file: "train_modules".into(),
                    reason: format!(
                        "{:?} matches no linear layer of the model",
                        c.train_modules[i]
                    ),
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
        let train = encode_examples(&tok, &train_ex, c.task.max_length).map_err(other)?;
        let micro = train.len().div_ceil(c.train.batch_size);
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

    fn evaluate(&self, split: &str) -> Result<BTreeMap<String, f64>, TrainError> {
        let c = &self.config;
        let mut ex = self.data.split(split).map_err(other)?.to_vec();
        if let Some(n) = c.task.eval_limit {
            ex.truncate(n);
        }
        let valid = self.model.clone().valid();
        let (m, _) = evaluate_classifier(
            &valid,
            &self.tok,
            &self.data.task,
            &ex,
            c.train.eval_batch_size,
            c.task.max_length,
            &self.device.clone().inner(),
        )?;
        Ok(m)
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
            st = saved.state;
            resumed = true;
        }
        let mut log = JsonlLog::open(out_dir.map(|d| d.join("log.jsonl")).as_deref(), resumed)?;
        let warmup = c
            .optim
            .warmup_steps
            .unwrap_or((c.optim.warmup_ratio * self.total_steps as f64).ceil() as usize);
        let head_lr = c.optim.head_lr.unwrap_or(c.optim.lr);
        let heads = c.train_modules.clone();
        let lengths: Vec<usize> = self.train.iter().map(|e| e.ids.len()).collect();
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
                for (mi, batch_idx) in group.iter().enumerate() {
                    st.micro_index += 1;
                    let items: Vec<&Encoded> = batch_idx.iter().map(|&i| &self.train[i]).collect();
                    let batch = classification_batch(&items, 0, &self.device);
                    let logits = {
                        // burn's RNG is one per process: hold it while this forward draws its
                        // dropout masks, so concurrent runs in one process stay deterministic
                        let _rng = FORWARD_RNG.lock().unwrap_or_else(|e| e.into_inner());
                        self.device
                            .seed(splitmix64(c.train.seed ^ splitmix64(st.micro_index)));
                        self.model
                            .classify(batch.ids, Some(batch.types), batch.mask)
                            .ok_or_else(|| other("the model is not a classifier"))?
                    };
                    let mut loss =
                        classification_loss(logits, &batch.labels, c.optim.label_smoothing)?;
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
                    if let Some(a) = &mut self.alloc.ada
                        && mi + 1 == group.len()
                    {
                        a.update(&self.model, &grads)?;
                    }
                    let gp = GradientsParams::from_grads(grads, &self.model);
                    st.seen += items.len();
                    acc = Some(match acc {
                        None => gp,
                        Some(a) => add_grads(&self.model, a, gp),
                    });
                }
                let grads = acc.expect("a step has at least one micro-batch");
                let norm = global_grad_norm(&self.model, &grads);
                let scale = match c.optim.max_grad_norm {
                    Some(m) if norm > m => m / (norm + 1e-6),
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
                self.model = self.opt.step_with(self.model, grads, &lr_of, scale);
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
                    let metrics = self.evaluate(&c.task.eval_split)?;
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
                    if st.best.is_none_or(|(_, b)| v > b) {
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
                    let ema = self
                        .alloc
                        .ada
                        .as_ref()
                        .map(AdaLoraAllocator::ema_state)
                        .unwrap_or_default();
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
        if let Some(m) = best_model {
            self.model = m;
            if !c.task.test_split.is_empty() {
                test_metrics = self.evaluate(&c.task.test_split)?;
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
        };
        if let Some(d) = out_dir {
            let bytes = serde_json::to_vec_pretty(&record).map_err(other)?;
            crate::record::write_atomic(&d.join("record.json"), &bytes)?;
        }
        Ok(Trained {
            record,
            model: self.model,
        })
    }
}

/// How to run: where to write, whether to resume, and test hooks.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Output directory (`log.jsonl`, `record.json`, `checkpoint/`).
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
