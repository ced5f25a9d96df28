//! AdamW with PyTorch's semantics, learning-rate schedules and global-norm gradient clipping.
//!
//! The optimizer keeps its moments by **parameter path** (the module field names joined by
//! dots), not by burn's random `ParamId`, so a checkpoint restores onto a freshly loaded model,
//! and parameters that appear during training (TriAdaptLoRA's rank growth) simply start with
//! fresh moments and their own step count, as `torch.optim.AdamW` treats a new parameter.
//!
//! Update for a parameter `p` with gradient `g` at its `t`-th step (`torch.optim.AdamW`,
//! decoupled weight decay): `p ← p·(1 − lr·wd)`, `m ← β1·m + (1−β1)·g`,
//! `v ← β2·v + (1−β2)·g²`, `p ← p − lr/(1−β1^t) · m / (√v/√(1−β2^t) + ε)`.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// AdamW hyperparameters (PyTorch defaults except `weight_decay`, which the configs set).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamWConfig {
    /// β1.
    #[serde(default = "d_beta1")]
    pub beta1: f64,
    /// β2.
    #[serde(default = "d_beta2")]
    pub beta2: f64,
    /// ε.
    #[serde(default = "d_eps")]
    pub eps: f64,
    /// Decoupled weight decay.
    #[serde(default)]
    pub weight_decay: f64,
}

fn d_beta1() -> f64 {
    0.9
}
fn d_beta2() -> f64 {
    0.999
}
fn d_eps() -> f64 {
    1e-8
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: d_beta1(),
            beta2: d_beta2(),
            eps: d_eps(),
            weight_decay: 0.0,
        }
    }
}

/// Moments of one parameter, flattened.
#[derive(Clone, Debug)]
struct Moments {
    m: Tensor<1>,
    v: Tensor<1>,
    t: u64,
}

/// AdamW state for a model: moments per parameter path.
#[derive(Clone, Debug)]
pub struct AdamW {
    /// Hyperparameters.
    pub config: AdamWConfig,
    state: BTreeMap<String, Moments>,
}

/// The saved form of [`AdamW`]'s state: per path, the step count and the flattened moments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdamWRecord {
    /// Per parameter path: `(t, m, v)`.
    pub moments: BTreeMap<String, (u64, Vec<f32>, Vec<f32>)>,
}

/// Called with `(path, id, shape, trainable)` for every float parameter.
type ParamFn<'a> = &'a mut dyn FnMut(&str, ParamId, &[usize], bool);

/// Walks a module, calling `f` for every float parameter.
struct PathVisitor<'a> {
    path: Vec<String>,
    f: ParamFn<'a>,
}

impl ModuleVisitor for PathVisitor<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        (self.f)(
            &self.path.join("."),
            param.id,
            &t.dims(),
            t.is_require_grad(),
        );
    }
}

/// Every float parameter of `module`: `(path, id, shape, trainable)`, in module order.
pub fn parameters<M: Module>(module: &M) -> Vec<(String, ParamId, Vec<usize>, bool)> {
    let mut out = Vec::new();
    let mut f =
        |p: &str, id: ParamId, s: &[usize], tr: bool| out.push((p.to_string(), id, s.to_vec(), tr));
    module.visit(&mut PathVisitor {
        path: Vec::new(),
        f: &mut f,
    });
    out
}

/// The global L2 norm of all gradients in `grads` for `module`'s parameters.
pub fn global_grad_norm<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
    let mut sq = 0.0f64;
    struct Norm<'a> {
        grads: &'a GradientsParams,
        sq: &'a mut f64,
    }
    impl ModuleVisitor for Norm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let s: f64 = g.square().sum().into_scalar::<f64>();
                *self.sq += s;
            }
        }
    }
    module.visit(&mut Norm { grads, sq: &mut sq });
    sq.sqrt()
}

struct StepMapper<'a> {
    opt: &'a mut AdamW,
    grads: &'a mut GradientsParams,
    lr_of: &'a dyn Fn(&str) -> f64,
    grad_scale: f64,
    path: Vec<String>,
}

impl ModuleMapper for StepMapper<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let c = self.opt.config;
        let require_grad = tensor.is_require_grad();
        let dims = tensor.dims();
        let n: usize = dims.iter().product();
        let p = tensor.inner().reshape([n]);
        let g = grad.reshape([n]);
        let g = if self.grad_scale != 1.0 {
            g.mul_scalar(self.grad_scale)
        } else {
            g
        };
        let key = self.path.join(".");
        let lr = (self.lr_of)(&key);
        let prev = self.opt.state.remove(&key);
        let (m, v, t) = match prev {
            Some(s) if s.m.dims()[0] == n => (
                s.m.mul_scalar(c.beta1) + g.clone().mul_scalar(1.0 - c.beta1),
                s.v.mul_scalar(c.beta2) + g.square().mul_scalar(1.0 - c.beta2),
                s.t + 1,
            ),
            _ => (
                g.clone().mul_scalar(1.0 - c.beta1),
                g.square().mul_scalar(1.0 - c.beta2),
                1,
            ),
        };
        let bc1 = 1.0 - c.beta1.powi(t as i32);
        let bc2 = 1.0 - c.beta2.powi(t as i32);
        let denom = v.clone().sqrt().div_scalar(bc2.sqrt()).add_scalar(c.eps);
        let p = if c.weight_decay != 0.0 {
            p.mul_scalar(1.0 - lr * c.weight_decay)
        } else {
            p
        };
        let p = p - m.clone().div(denom).mul_scalar(lr / bc1);
        self.opt.state.insert(key, Moments { m, v, t });
        let mut updated = Tensor::from_inner(p.reshape(dims));
        if require_grad {
            updated = updated.require_grad();
        }
        Param::from_mapped_value(id, updated, mapper)
    }
}

impl AdamW {
    /// An optimizer with empty state.
    pub fn new(config: AdamWConfig) -> Self {
        Self {
            config,
            state: BTreeMap::new(),
        }
    }

    /// One update of every parameter of `module` that has a gradient in `grads`, with learning
    /// rate `lr`; gradients are multiplied by `grad_scale` first (global-norm clipping and the
    /// 1/accumulation factor).
    pub fn step<M: Module>(
        &mut self,
        module: M,
        grads: GradientsParams,
        lr: f64,
        grad_scale: f64,
    ) -> M {
        self.step_with(module, grads, &|_| lr, grad_scale)
    }

    /// [`AdamW::step`] with a learning rate per parameter path (e.g. a head learning rate).
    pub fn step_with<M: Module>(
        &mut self,
        module: M,
        mut grads: GradientsParams,
        lr_of: &dyn Fn(&str) -> f64,
        grad_scale: f64,
    ) -> M {
        module.map(&mut StepMapper {
            opt: self,
            grads: &mut grads,
            lr_of,
            grad_scale,
            path: Vec::new(),
        })
    }

    /// Number of parameters with state.
    pub fn len(&self) -> usize {
        self.state.len()
    }

    /// Whether no parameter has state yet.
    pub fn is_empty(&self) -> bool {
        self.state.is_empty()
    }

    /// The state as plain numbers.
    pub fn to_record(&self) -> AdamWRecord {
        let v = |t: &Tensor<1>| {
            t.to_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default()
        };
        AdamWRecord {
            moments: self
                .state
                .iter()
                .map(|(k, s)| (k.clone(), (s.t, v(&s.m), v(&s.v))))
                .collect(),
        }
    }

    /// Restore moments `(m, v)` by path with step counts `t` (a checkpoint's parts).
    pub fn load_parts(
        &mut self,
        moments: &BTreeMap<String, (Vec<f32>, Vec<f32>)>,
        t: &BTreeMap<String, u64>,
        device: &burn::tensor::Device,
    ) {
        let rec = AdamWRecord {
            moments: moments
                .iter()
                .map(|(k, (m, v))| {
                    (
                        k.clone(),
                        (t.get(k).copied().unwrap_or(0), m.clone(), v.clone()),
                    )
                })
                .collect(),
        };
        self.load_record(&rec, device);
    }

    /// Restore a saved state on `device` (inner, non-autodiff tensors).
    pub fn load_record(&mut self, record: &AdamWRecord, device: &burn::tensor::Device) {
        let inner = device.clone().inner();
        let t =
            |v: &Vec<f32>| Tensor::<1>::from_data(TensorData::new(v.clone(), [v.len()]), &inner);
        self.state = record
            .moments
            .iter()
            .map(|(k, (step, m, v))| {
                (
                    k.clone(),
                    Moments {
                        m: t(m),
                        v: t(v),
                        t: *step,
                    },
                )
            })
            .collect();
    }
}

/// Learning-rate schedule after a linear warm-up from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Linear decay to 0 at the last step (transformers' `get_linear_schedule_with_warmup`).
    #[default]
    Linear,
    /// Half-cosine decay to 0 (transformers' `get_cosine_schedule_with_warmup`).
    Cosine,
    /// Constant after warm-up.
    Constant,
}

/// The learning rate for optimizer step `step` (0-based, the step about to be taken) of
/// `total` with `warmup` warm-up steps — transformers' `LambdaLR` factors times `peak`.
pub fn lr_at(schedule: Schedule, peak: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return peak * step as f64 / warmup.max(1) as f64;
    }
    let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    peak * match schedule {
        Schedule::Linear => ((total - step.min(total)) as f64
            / (total.saturating_sub(warmup)).max(1) as f64)
            .max(0.0),
        Schedule::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
        Schedule::Constant => 1.0,
    }
}
