//! Checkpoints: everything a killed run needs to continue bit-identically on the CPU backend —
//! the trainable parameters, the optimizer moments, the allocators' state, TriAdaptLoRA's block
//! sizes (the structure rank growth built), the best evaluation's weights, and the loop's
//! position (epoch, batch within it, micro-batch counter that seeds dropout).
//!
//! Layout of `<out>/checkpoint/`: `state.json`, `params.safetensors` (trainable parameters by
//! module path), `optim.safetensors` (`m.<path>`, `v.<path>`), `best.safetensors` and, for
//! AdaLoRA, `ema.safetensors`. A new checkpoint is written into a temporary directory and
//! renamed into place (the previous one is kept as `checkpoint.old` until then), so a kill at
//! any moment leaves a complete checkpoint.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Tensor, TensorData};
use peftlab_adapters::adalora::EmaState;
use peftlab_adapters::{Adapter, AdapterHost};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::optim::parameters;
use crate::record::EvalPoint;

fn file_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Named f32 arrays: name → (shape, values).
pub type Named = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// The loop's position and bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LoopState {
    /// Hash of the run's config: a checkpoint only resumes the same run.
    pub config_hash: String,
    /// Optimizer steps taken.
    pub step: usize,
    /// The epoch in progress (1-based).
    pub epoch: usize,
    /// Optimizer steps of that epoch already taken.
    pub group_in_epoch: usize,
    /// Micro-batches run (seeds dropout).
    pub micro_index: u64,
    /// Training examples seen.
    pub seen: usize,
    /// Seconds spent in training steps.
    pub train_time: f64,
    /// Loss sum and count since the last evaluation.
    pub loss_sum: f64,
    /// See `loss_sum`.
    pub loss_n: usize,
    /// Evaluations so far.
    pub evals: Vec<EvalPoint>,
    /// Best evaluation: index into `evals` and its metric value.
    pub best: Option<(usize, f64)>,
    /// Allocation events so far.
    pub allocations: Vec<serde_json::Value>,
    /// Trainable parameters at the start.
    pub trainable0: usize,
    /// TriAdaptLoRA block sizes per module, now and at the best evaluation.
    pub blocks: BTreeMap<String, Vec<usize>>,
    /// See `blocks`.
    pub best_blocks: BTreeMap<String, Vec<usize>>,
    /// TriAdaptLoRA allocator: total rank and per-module previous norm.
    pub tri: Option<(usize, Vec<(String, f64)>)>,
    /// AdamW step count per parameter path.
    pub adam_t: BTreeMap<String, u64>,
}

/// TriAdaptLoRA block sizes of every module.
pub fn block_sizes<M: AdapterHost>(model: &M) -> BTreeMap<String, Vec<usize>> {
    let mut out = BTreeMap::new();
    model.for_each_linear("", &mut |p, l| {
        if let Some(Adapter::TriAdapt(a)) = &l.adapter {
            out.insert(p.to_string(), a.block_sizes());
        }
    });
    out
}

/// Grow TriAdaptLoRA modules of `model` (as freshly built) to `blocks`; the new blocks' values
/// are placeholders until parameters are loaded.
pub fn grow_to<M: AdapterHost>(
    model: &mut M,
    blocks: &BTreeMap<String, Vec<usize>>,
) -> Result<(), TrainError> {
    let mut error = None;
    let mut rng = peftlab_linalg::init::SeededRng::new(0);
    model.for_each_linear_mut("", &mut |p, l| {
        if let (Some(Adapter::TriAdapt(a)), Some(want)) = (&mut l.adapter, blocks.get(p)) {
            let have = a.block_sizes().len();
            for &k in want.iter().skip(have) {
                if let Err(e) = a.grow(
                    k,
                    peftlab_linalg::strips::StripInit::DiagonalIdentity,
                    &mut rng,
                ) {
                    error.get_or_insert(e);
                }
            }
        }
    });
    match error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// f32 bytes of a tensor.
fn f32_bytes<const D: usize>(t: Tensor<D>) -> Vec<u8> {
    let v = t
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default();
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Write named f32 arrays as safetensors.
fn write_tensors(
    path: &Path,
    tensors: Vec<(String, Vec<usize>, Vec<u8>)>,
) -> Result<(), TrainError> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, b)| {
            TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| file_err(path, format!("{n}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let bytes = safetensors::serialize(views, None).map_err(|e| file_err(path, e))?;
    fs::write(path, bytes).map_err(|e| file_err(path, e))
}

/// Named f32 arrays of a safetensors file: name → (shape, values).
pub fn read_tensors(path: &Path) -> Result<Named, TrainError> {
    let bytes = fs::read(path).map_err(|e| file_err(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| file_err(path, e))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(file_err(
                path,
                format!("{name}: {:?}, expected F32", view.dtype()),
            ));
        }
        let v: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(name, (view.shape().to_vec(), v));
    }
    Ok(out)
}

/// The trainable parameters of `model` by path.
fn trainable_tensors<M: Module>(model: &M) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    struct Collect {
        path: Vec<String>,
        out: Vec<(String, Vec<usize>, Vec<u8>)>,
    }
    impl burn::module::ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            if t.is_require_grad() {
                self.out
                    .push((self.path.join("."), t.dims().to_vec(), f32_bytes(t)));
            }
        }
    }
    let mut c = Collect {
        path: Vec::new(),
        out: Vec::new(),
    };
    model.visit(&mut c);
    c.out
}

/// Replace the values of `model`'s parameters named in `values` (ids and trainability kept).
/// Every trainable parameter must be there with its shape; an error names the first that is
/// not.
pub fn load_values<M: Module>(model: M, values: &Named, file: &Path) -> Result<M, TrainError> {
    struct Load<'a> {
        path: Vec<String>,
        values: &'a Named,
        error: Option<String>,
    }
    impl ModuleMapper for Load<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let key = self.path.join(".");
            let (id, tensor, mapper) = param.consume();
            let trainable = tensor.is_require_grad();
            let dims = tensor.dims();
            let tensor = match self.values.get(&key) {
                Some((shape, v)) if shape.as_slice() == dims.as_slice() => {
                    let t =
                        Tensor::<D>::from_data(TensorData::new(v.clone(), dims), &tensor.device());
                    if trainable { t.require_grad() } else { t }
                }
                Some((shape, _)) => {
                    self.error
                        .get_or_insert(format!("{key}: shape {shape:?}, the model has {dims:?}"));
                    tensor
                }
                None if trainable => {
                    self.error.get_or_insert(format!("{key}: missing"));
                    tensor
                }
                None => tensor,
            };
            Param::from_mapped_value(id, tensor, mapper)
        }
    }
    let mut l = Load {
        path: Vec::new(),
        values,
        error: None,
    };
    let model = model.map(&mut l);
    match l.error {
        Some(e) => Err(file_err(file, e)),
        None => Ok(model),
    }
}

/// What a checkpoint holds besides the loop state.
pub struct Saved {
    /// The loop state.
    pub state: LoopState,
    /// Trainable parameters.
    pub params: Named,
    /// Best evaluation's trainable parameters.
    pub best: Option<Named>,
    /// AdamW moments: path → (m, v), flattened.
    pub moments: BTreeMap<String, (Vec<f32>, Vec<f32>)>,
    /// AdaLoRA EMAs: key → (shape, sensitivity, uncertainty).
    pub ema: EmaState,
}

/// The checkpoint directory of a run's output directory.
pub fn dir_of(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

/// Write a checkpoint of `model` (and `best`) atomically into `out/checkpoint`.
pub fn save<M: Module>(
    out: &Path,
    state: &LoopState,
    model: &M,
    best: Option<&M>,
    moments: &BTreeMap<String, (u64, Vec<f32>, Vec<f32>)>,
    ema: &EmaState,
) -> Result<PathBuf, TrainError> {
    let dir = dir_of(out);
    let tmp = out.join(format!("checkpoint.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(|e| file_err(&tmp, e))?;
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    write_tensors(&tmp.join("params.safetensors"), trainable_tensors(model))?;
    if let Some(b) = best {
        write_tensors(&tmp.join("best.safetensors"), trainable_tensors(b))?;
    }
    let mut opt = Vec::new();
    for (k, (_, m, v)) in moments {
        opt.push((format!("m.{k}"), vec![m.len()], bytes(m)));
        opt.push((format!("v.{k}"), vec![v.len()], bytes(v)));
    }
    write_tensors(&tmp.join("optim.safetensors"), opt)?;
    if !ema.is_empty() {
        let mut e = Vec::new();
        for (k, (shape, s, u)) in ema {
            e.push((format!("s.{k}"), shape.to_vec(), bytes(s)));
            e.push((format!("u.{k}"), shape.to_vec(), bytes(u)));
        }
        write_tensors(&tmp.join("ema.safetensors"), e)?;
    }
    let mut st = state.clone();
    st.adam_t = moments
        .iter()
        .map(|(k, (t, _, _))| (k.clone(), *t))
        .collect();
    let json = serde_json::to_vec_pretty(&st).map_err(|e| file_err(&tmp, e))?;
    fs::write(tmp.join("state.json"), json).map_err(|e| file_err(&tmp, e))?;
    let old = out.join("checkpoint.old");
    let _ = fs::remove_dir_all(&old);
    if dir.exists() {
        fs::rename(&dir, &old).map_err(|e| file_err(&dir, e))?;
    }
    fs::rename(&tmp, &dir).map_err(|e| file_err(&dir, e))?;
    let _ = fs::remove_dir_all(&old);
    Ok(dir)
}

/// Read the checkpoint of `out` (or its `.old` copy if a kill came between the renames);
/// `None` when there is none.
pub fn load(out: &Path) -> Result<Option<Saved>, TrainError> {
    let mut dir = dir_of(out);
    if !dir.join("state.json").exists() {
        dir = out.join("checkpoint.old");
        if !dir.join("state.json").exists() {
            return Ok(None);
        }
    }
    let sp = dir.join("state.json");
    let state: LoopState = serde_json::from_slice(&fs::read(&sp).map_err(|e| file_err(&sp, e))?)
        .map_err(|e| file_err(&sp, e))?;
    let params = read_tensors(&dir.join("params.safetensors"))?;
    let best = if dir.join("best.safetensors").exists() {
        Some(read_tensors(&dir.join("best.safetensors"))?)
    } else {
        None
    };
    let mut moments: BTreeMap<String, (Vec<f32>, Vec<f32>)> = BTreeMap::new();
    for (k, (_, v)) in read_tensors(&dir.join("optim.safetensors"))? {
        let (which, path) = k.split_at(2);
        let e = moments.entry(path.to_string()).or_default();
        if which == "m." {
            e.0 = v;
        } else {
            e.1 = v;
        }
    }
    let mut ema: EmaState = BTreeMap::new();
    if dir.join("ema.safetensors").exists() {
        for (k, (shape, v)) in read_tensors(&dir.join("ema.safetensors"))? {
            let (which, key) = k.split_at(2);
            let e = ema
                .entry(key.to_string())
                .or_insert(([0, 0], Vec::new(), Vec::new()));
            e.0 = [shape[0], shape.get(1).copied().unwrap_or(1)];
            if which == "s." {
                e.1 = v;
            } else {
                e.2 = v;
            }
        }
    }
    Ok(Some(Saved {
        state,
        params,
        best,
        moments,
        ema,
    }))
}

/// Parameter paths of a model (for error messages and tests).
pub fn paths<M: Module>(model: &M) -> Vec<String> {
    parameters(model).into_iter().map(|p| p.0).collect()
}
