//! Smoothed sensitivity and uncertainty of parameter entries (AdaLoRA §3.3, arXiv 2303.10512;
//! IncreLoRA and the TriAdaptLoRA sensitivity ablation reuse it):
//! `I = |w · ∂L/∂w|`, `Ī ← β₁ Ī + (1−β₁) I`, `Ū ← β₂ Ū + (1−β₂) |I − Ī|`, score `Ī · Ū`.
//! The first observation starts from `Ī = Ū = 0` (peft's behaviour). Kept on the parameters'
//! device: no host round trip per step; scores are read back only when an allocator decides.

use std::collections::HashMap;

use burn::module::Param;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Gradients, Tensor, TensorData};

/// Where `∂L/∂w` of a parameter is read from: the [`Gradients`] of one backward pass, or the
/// [`GradientsParams`] a training loop accumulated (and clipped) for its optimizer step.
pub trait GradSource {
    /// The gradient of `param` (`[rows, cols]`, on the parameter's device, without autodiff),
    /// if it has one.
    fn grad_of(&self, param: &Param<Tensor<2>>) -> Option<Tensor<2>>;
}

impl GradSource for Gradients {
    fn grad_of(&self, param: &Param<Tensor<2>>) -> Option<Tensor<2>> {
        param.val().grad(self)
    }
}

impl GradSource for GradientsParams {
    fn grad_of(&self, param: &Param<Tensor<2>>) -> Option<Tensor<2>> {
        self.get::<2>(param.id)
    }
}

/// EMA state by key: `(shape, sensitivity Ī, uncertainty Ū)`, for checkpoints.
pub type EmaState = std::collections::BTreeMap<String, ([usize; 2], Vec<f32>, Vec<f32>)>;

#[derive(Debug, Clone)]
struct Ema {
    sens: Tensor<2>,
    unc: Tensor<2>,
}

/// `Ī` and `Ū` per parameter key (e.g. `layer.0.query.A`).
#[derive(Debug, Clone)]
pub struct SensitivityEma {
    beta1: f64,
    beta2: f64,
    entries: HashMap<String, Ema>,
}

impl SensitivityEma {
    /// Empty, with the smoothing factors `β₁` (sensitivity) and `β₂` (uncertainty).
    pub fn new(beta1: f64, beta2: f64) -> Self {
        Self {
            beta1,
            beta2,
            entries: HashMap::new(),
        }
    }

    /// Fold in `I = |w · g|` of the parameter `param` (its current value) under `key`, if it
    /// has a gradient in `grads`. Returns whether it had one.
    pub fn observe<G: GradSource + ?Sized>(
        &mut self,
        key: String,
        param: &Param<Tensor<2>>,
        grads: &G,
    ) -> bool {
        let w = param.val();
        let Some(g) = grads.grad_of(param) else {
            return false;
        };
        let imp = (w.without_autodiff() * g).abs();
        let (b1, b2) = (self.beta1, self.beta2);
        let next = match self.entries.remove(&key) {
            None => {
                let sens = imp.clone() * (1.0 - b1);
                let unc = (imp - sens.clone()).abs() * (1.0 - b2);
                Ema { sens, unc }
            }
            Some(e) => {
                let sens = e.sens * b1 + imp.clone() * (1.0 - b1);
                let unc = e.unc * b2 + (imp - sens.clone()).abs() * (1.0 - b2);
                Ema { sens, unc }
            }
        };
        self.entries.insert(key, next);
        true
    }

    /// The score `Ī · Ū` of every entry of `key` (same shape as the parameter), if observed.
    pub fn score(&self, key: &str) -> Option<Tensor<2>> {
        let e = self.entries.get(key)?;
        Some(e.sens.clone() * e.unc.clone())
    }

    /// The state for a checkpoint.
    pub fn state(&self) -> EmaState {
        let v = |t: &Tensor<2>| {
            t.to_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default()
        };
        self.entries
            .iter()
            .map(|(k, e)| (k.clone(), (e.sens.dims(), v(&e.sens), v(&e.unc))))
            .collect()
    }

    /// Restore [`SensitivityEma::state`] on `device`.
    pub fn set_state(&mut self, state: &EmaState, device: &Device) {
        let t = |shape: [usize; 2], v: &Vec<f32>| {
            Tensor::<2>::from_data(TensorData::new(v.clone(), shape), device)
        };
        self.entries = state
            .iter()
            .map(|(k, (shape, s, u))| {
                (
                    k.clone(),
                    Ema {
                        sens: t(*shape, s),
                        unc: t(*shape, u),
                    },
                )
            })
            .collect();
    }
}
