//! Reading a checkpoint's tensors by name, with shape checks and a record of what was used.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::tensor::{DType, Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::ModelError;

/// A loaded `.safetensors` file.
pub struct Checkpoint {
    path: PathBuf,
    bytes: Vec<u8>,
    used: BTreeSet<String>,
}

impl Checkpoint {
    /// Read and validate the file (a truncated or corrupt file is an error naming it).
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        SafeTensors::deserialize(&bytes).map_err(|e| ModelError::File {
            path: path.to_path_buf(),
            reason: format!("not a valid safetensors file: {e}"),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            used: BTreeSet::new(),
        })
    }

    fn err(&self, name: &str, reason: impl Into<String>) -> ModelError {
        ModelError::Tensor {
            path: self.path.clone(),
            name: name.to_string(),
            reason: reason.into(),
        }
    }

    /// Whether the file holds a tensor called `name`.
    pub fn contains(&self, name: &str) -> bool {
        SafeTensors::deserialize(&self.bytes).is_ok_and(|st| st.tensor(name).is_ok())
    }

    /// The float tensor `name` with exactly `shape`, as f32 on `device`.
    pub fn take<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Result<Tensor<D>, ModelError> {
        let st =
            SafeTensors::deserialize(&self.bytes).map_err(|e| self.err(name, e.to_string()))?;
        let view = st.tensor(name).map_err(|_| self.err(name, "missing"))?;
        if view.shape() != shape {
            return Err(self.err(
                name,
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
            other => return Err(self.err(name, format!("unsupported dtype {other:?}"))),
        };
        let data = TensorData::from_bytes_vec(view.data().to_vec(), shape, dtype);
        let t = Tensor::<D>::from_data(data, (device, dtype)).cast(DType::F32);
        self.used.insert(name.to_string());
        Ok(t)
    }

    /// Fail on any tensor that was not taken, except those for which `ignore(name)` holds.
    pub fn finish(self, ignore: impl Fn(&str) -> bool) -> Result<(), ModelError> {
        let st = SafeTensors::deserialize(&self.bytes).map_err(|e| self.err("", e.to_string()))?;
        let extra: Vec<&str> = st
            .names()
            .into_iter()
            .filter(|n| !self.used.contains(*n) && !ignore(n))
            .collect();
        match extra.first() {
            Some(n) => Err(self.err(n, format!("unexpected ({} unused tensors)", extra.len()))),
            None => Ok(()),
        }
    }
}
