//! Reading a checkpoint's tensors by name, with shape checks and a record of what was used:
//! one `model.safetensors`, or the shards listed by `model.safetensors.index.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{DType, Device, Tensor, TensorData};
use peftlab_adapters::AdaptedLinear;
use safetensors::{Dtype, SafeTensors};

use crate::ModelError;

/// The tensors of one checkpoint, possibly over several shard files.
pub struct Checkpoint {
    files: Vec<(PathBuf, Vec<u8>)>,
    /// Tensor name → index into `files`.
    index: BTreeMap<String, usize>,
    used: BTreeSet<String>,
}

fn file_err(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::File {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read_safetensors(path: &Path) -> Result<(Vec<u8>, Vec<String>), ModelError> {
    let bytes = std::fs::read(path).map_err(|e| file_err(path, e.to_string()))?;
    let names = SafeTensors::deserialize(&bytes)
        .map_err(|e| file_err(path, format!("not a valid safetensors file: {e}")))?
        .names()
        .into_iter()
        .map(str::to_string)
        .collect();
    Ok((bytes, names))
}

impl Checkpoint {
    /// Read and validate one `.safetensors` file (a truncated or corrupt file is an error
    /// naming it).
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let (bytes, names) = read_safetensors(path)?;
        Ok(Self {
            index: names.into_iter().map(|n| (n, 0)).collect(),
            files: vec![(path.to_path_buf(), bytes)],
            used: BTreeSet::new(),
        })
    }

    /// The checkpoint of a Hugging Face model directory: `model.safetensors`, else the shards
    /// named by `model.safetensors.index.json` (`weight_map`: tensor → shard file). A tensor
    /// the index places in a shard that lacks it, or a shard holding a tensor the index puts
    /// elsewhere, is an error naming both.
    pub fn open_dir(dir: &Path) -> Result<Self, ModelError> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        if single.exists() || !index_path.exists() {
            return Self::open(&single);
        }
        let text = std::fs::read_to_string(&index_path)
            .map_err(|e| file_err(&index_path, e.to_string()))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| file_err(&index_path, e.to_string()))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| file_err(&index_path, "no \"weight_map\" object"))?;
        let mut shards: Vec<String> = Vec::new();
        let mut index = BTreeMap::new();
        for (name, shard) in map {
            let shard = shard
                .as_str()
                .filter(|s| !s.contains('/') && !s.contains('\\') && !s.is_empty())
                .ok_or_else(|| {
                    file_err(
                        &index_path,
                        format!("weight_map[{name:?}] is not a file name"),
                    )
                })?;
            let i = match shards.iter().position(|s| s == shard) {
                Some(i) => i,
                None => {
                    shards.push(shard.to_string());
                    shards.len() - 1
                }
            };
            index.insert(name.clone(), i);
        }
        let mut files = Vec::with_capacity(shards.len());
        for (i, shard) in shards.iter().enumerate() {
            let path = dir.join(shard);
            let (bytes, names) = read_safetensors(&path)?;
            for n in &names {
                if index.get(n) != Some(&i) {
                    return Err(ModelError::Tensor {
                        path,
                        name: n.clone(),
                        reason: format!("not mapped to this shard by {}", index_path.display()),
                    });
                }
            }
            files.push((path, bytes));
        }
        for (name, &i) in &index {
            let st = SafeTensors::deserialize(&files[i].1).expect("validated above");
            if st.tensor(name).is_err() {
                return Err(ModelError::Tensor {
                    path: files[i].0.clone(),
                    name: name.clone(),
                    reason: "listed in the index but missing from the shard".into(),
                });
            }
        }
        Ok(Self {
            files,
            index,
            used: BTreeSet::new(),
        })
    }

    /// The (first) file, for error messages.
    pub fn path(&self) -> &Path {
        &self.files[0].0
    }

    /// Whether the checkpoint holds a tensor called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// All tensor names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// The float tensor `name` with exactly `shape`, as f32 on `device`.
    pub fn take<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Result<Tensor<D>, ModelError> {
        let err = |path: &Path, reason: String| ModelError::Tensor {
            path: path.to_path_buf(),
            name: name.to_string(),
            reason,
        };
        let Some(&i) = self.index.get(name) else {
            return Err(err(self.path(), "missing".into()));
        };
        let (path, bytes) = &self.files[i];
        let st = SafeTensors::deserialize(bytes).map_err(|e| err(path, e.to_string()))?;
        let view = st.tensor(name).map_err(|_| err(path, "missing".into()))?;
        if view.shape() != shape {
            return Err(err(
                path,
                format!(
                    "shape {:?}, expected {shape:?} (from config.json)",
                    view.shape()
                ),
            ));
        }
        let dtype = match view.dtype() {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            other => return Err(err(path, format!("unsupported dtype {other:?}"))),
        };
        let data = TensorData::from_bytes_vec(view.data().to_vec(), shape, dtype);
        let t = Tensor::<D>::from_data(data, (device, dtype)).cast(DType::F32);
        self.used.insert(name.to_string());
        Ok(t)
    }

    /// Fail on any tensor that was not taken, except those for which `ignore(name)` holds.
    pub fn finish(self, ignore: impl Fn(&str) -> bool) -> Result<(), ModelError> {
        let extra: Vec<(&String, usize)> = self
            .index
            .iter()
            .filter(|(n, _)| !self.used.contains(*n) && !ignore(n))
            .map(|(n, &i)| (n, i))
            .collect();
        match extra.first() {
            Some((n, i)) => Err(ModelError::Tensor {
                path: self.files[*i].0.clone(),
                name: (*n).clone(),
                reason: format!("unexpected ({} unused tensors)", extra.len()),
            }),
            None => Ok(()),
        }
    }
}

/// Read a JSON file into `T` (a `config.json`); errors name the file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| file_err(path, e.to_string()))
}

impl Checkpoint {
    /// `NAME.weight` / `NAME.bias` of a LayerNorm of width `d`.
    pub fn layer_norm(
        &mut self,
        name: &str,
        d: usize,
        eps: f64,
        device: &Device,
    ) -> Result<LayerNorm, ModelError> {
        let mut n = LayerNormConfig::new(d).with_epsilon(eps).init(device);
        n.gamma = Param::from_tensor(self.take(&format!("{name}.weight"), [d], device)?);
        n.beta = Some(Param::from_tensor(self.take(
            &format!("{name}.bias"),
            [d],
            device,
        )?));
        Ok(n)
    }

    /// A biased linear layer `NAME.weight` `[d_out, d_in]` (torch `nn.Linear`) + `NAME.bias`, as
    /// an [`AdaptedLinear`] (`[d_in, d_out]`, contiguous).
    pub fn linear(
        &mut self,
        name: &str,
        d_in: usize,
        d_out: usize,
        device: &Device,
    ) -> Result<AdaptedLinear, ModelError> {
        let w = self.take(&format!("{name}.weight"), [d_out, d_in], device)?;
        let mut l = AdaptedLinear::new(d_in, d_out, true, device);
        l.weight = Param::from_tensor(linear_weight(w));
        l.bias = Some(Param::from_tensor(self.take(
            &format!("{name}.bias"),
            [d_out],
            device,
        )?));
        Ok(l)
    }

    /// An embedding table `NAME.weight` `[n, d]`.
    pub fn embedding(
        &mut self,
        name: &str,
        n: usize,
        d: usize,
        device: &Device,
    ) -> Result<Embedding, ModelError> {
        let mut e = EmbeddingConfig::new(n, d).init(device);
        e.weight = Param::from_tensor(self.take(&format!("{name}.weight"), [n, d], device)?);
        Ok(e)
    }
}

/// `w` `[d_out, d_in]` (torch's `nn.Linear` layout) as a contiguous `[d_in, d_out]` tensor: the
/// layout `AdaptedLinear` multiplies with. Materializing the transpose once at load keeps every
/// forward GEMM on row-major operands (a transposed view made the GEMM pack a strided operand
/// on every call; docs/performance.md).
pub fn linear_weight(w: Tensor<2>) -> Tensor<2> {
    let device = w.device();
    Tensor::from_data(w.transpose().into_data(), &device)
}
