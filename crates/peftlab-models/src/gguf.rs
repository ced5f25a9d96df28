//! A reader for GGUF v2/v3 files (llama.cpp's model format): metadata, tensor table, and
//! dequantization of `F32`, `F16`, `BF16`, `Q4_0`, `Q4_1` and `Q8_0` tensors to f32.
//!
//! Own code rather than a crate (docs/decisions.md): candle's reader comes with candle's tensor
//! library, and the stand-alone GGUF crates are unmaintained or lack dequantization. The format
//! (little-endian):
//!
//! ```text
//! "GGUF" u32 version  u64 n_tensors  u64 n_kv
//! n_kv × (string key, u32 type, value)            strings: u64 length + UTF-8 bytes
//! n_tensors × (string name, u32 n_dims, n_dims × u64 dims (innermost first), u32 ggml type, u64 offset)
//! padding to `general.alignment` (default 32), then the tensor data (offsets relative to it)
//! ```
//!
//! Block formats (32 values per block): `Q4_0` = f16 d + 16 bytes of nibbles, `x = d·(q − 8)`;
//! `Q4_1` = f16 d, f16 m + 16 bytes, `x = d·q + m`; `Q8_0` = f16 d + 32 × i8, `x = d·q`. Low
//! nibbles hold elements 0–15 of a block, high nibbles 16–31.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use half::{bf16, f16};

use crate::ModelError;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// Any unsigned integer type.
    U64(u64),
    /// Any signed integer type.
    I64(i64),
    /// f32 or f64.
    F64(f64),
    /// bool.
    Bool(bool),
    /// string.
    Str(String),
    /// array of values.
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// As an unsigned integer (non-negative signed ones too).
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Self::U64(v) => Some(*v),
            Self::I64(v) => u64::try_from(*v).ok(),
            _ => None,
        }
    }
    /// As a float (integers too).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::F64(v) => Some(*v),
            Self::U64(v) => Some(*v as f64),
            Self::I64(v) => Some(*v as f64),
            _ => None,
        }
    }
    /// As a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// The tensor element types this reader knows (ggml type ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// 0
    F32,
    /// 1
    F16,
    /// 2
    Q4_0,
    /// 3
    Q4_1,
    /// 8
    Q8_0,
    /// 30
    BF16,
    /// Any other id (listed, not dequantizable here).
    Other(u32),
}

impl GgmlType {
    fn from_id(id: u32) -> Self {
        match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            30 => Self::BF16,
            other => Self::Other(other),
        }
    }
    /// `(values per block, bytes per block)`.
    fn block(self) -> Option<(usize, usize)> {
        Some(match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q8_0 => (32, 34),
            Self::Other(_) => return None,
        })
    }
}

/// One entry of the tensor table.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// Dimensions as GGUF lists them (innermost first): a torch `[out, in]` matrix is `[in, out]`.
    pub dims: Vec<usize>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Byte offset of the data from the start of the file.
    pub start: usize,
    /// Byte length of the data.
    pub len: usize,
}

impl TensorInfo {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }
    /// Dimensions in row-major (torch) order: outermost first.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }
}

/// A GGUF file held in memory.
pub struct GgufFile {
    path: PathBuf,
    bytes: Vec<u8>,
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata by key.
    pub metadata: BTreeMap<String, MetaValue>,
    /// Tensor table by name.
    pub tensors: BTreeMap<String, TensorInfo>,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err(&self, what: &str) -> ModelError {
        ModelError::File {
            path: self.path.to_path_buf(),
            reason: format!("GGUF: {what} at byte {}", self.pos),
        }
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ModelError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| self.err(&format!("truncated file while reading {what}")))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8, ModelError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, ModelError> {
        Ok(u16::from_le_bytes(
            self.take(2, what)?.try_into().expect("2"),
        ))
    }
    fn u32(&mut self, what: &str) -> Result<u32, ModelError> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4"),
        ))
    }
    fn u64(&mut self, what: &str) -> Result<u64, ModelError> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8"),
        ))
    }
    fn len(&mut self, what: &str) -> Result<usize, ModelError> {
        let n = self.u64(what)?;
        // nothing in a file can be longer than the file
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.bytes.len())
            .ok_or_else(|| self.err(&format!("implausible length {n} for {what}")))
    }
    fn string(&mut self, what: &str) -> Result<String, ModelError> {
        let n = self.len(what)?;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err(&format!("{what} is not UTF-8")))
    }
    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<MetaValue, ModelError> {
        Ok(match ty {
            0 => MetaValue::U64(self.u8(key)?.into()),
            1 => MetaValue::I64((self.u8(key)? as i8).into()),
            2 => MetaValue::U64(self.u16(key)?.into()),
            3 => MetaValue::I64((self.u16(key)? as i16).into()),
            4 => MetaValue::U64(self.u32(key)?.into()),
            5 => MetaValue::I64((self.u32(key)? as i32).into()),
            6 => MetaValue::F64(f32::from_bits(self.u32(key)?).into()),
            7 => MetaValue::Bool(self.u8(key)? != 0),
            8 => MetaValue::Str(self.string(key)?),
            9 if depth == 0 => {
                let inner = self.u32(key)?;
                let n = self.len(key)?;
                let mut items = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    items.push(self.value(inner, key, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::U64(self.u64(key)?),
            11 => MetaValue::I64(self.u64(key)? as i64),
            12 => MetaValue::F64(f64::from_bits(self.u64(key)?)),
            other => return Err(self.err(&format!("metadata {key}: unknown value type {other}"))),
        })
    }
}

impl GgufFile {
    /// Read and validate a `.gguf` file: header, metadata, tensor table, and that every
    /// tensor's data lies inside the file (a truncated file is an error naming the tensor).
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::parse(path, bytes)
    }

    /// Parse `bytes` (read from `path`, which only names errors).
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self, ModelError> {
        let mut c = Cursor {
            bytes: &bytes,
            pos: 0,
            path,
        };
        if c.take(4, "magic")? != b"GGUF" {
            return Err(c.err("not a GGUF file (magic is not \"GGUF\")"));
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(c.err(&format!("unsupported GGUF version {version} (2 or 3)")));
        }
        let n_tensors = c.len("tensor count")?;
        let n_kv = c.len("metadata count")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string("metadata key")?;
            let ty = c.u32(&key)?;
            let v = c.value(ty, &key, 0)?;
            metadata.insert(key, v);
        }
        let mut table = Vec::with_capacity(n_tensors.min(1 << 16));
        for _ in 0..n_tensors {
            let name = c.string("tensor name")?;
            let n_dims = c.u32(&name)? as usize;
            if n_dims == 0 || n_dims > 4 {
                return Err(c.err(&format!("tensor {name}: {n_dims} dimensions")));
            }
            let mut dims = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                dims.push(c.len(&name)?);
            }
            let ggml_type = GgmlType::from_id(c.u32(&name)?);
            let offset = c.len(&name)?;
            table.push((name, dims, ggml_type, offset));
        }
        let alignment = metadata
            .get("general.alignment")
            .and_then(MetaValue::as_u64)
            .unwrap_or(32) as usize;
        if alignment == 0 {
            return Err(c.err("general.alignment is 0"));
        }
        let data_start = c.pos.div_ceil(alignment) * alignment;
        let mut tensors = BTreeMap::new();
        for (name, dims, ggml_type, offset) in table {
            let numel: usize = dims.iter().product();
            let len = match ggml_type.block() {
                Some((per, bytes_per)) => {
                    if !numel.is_multiple_of(per) {
                        return Err(ModelError::Tensor {
                            path: path.to_path_buf(),
                            name,
                            reason: format!("{numel} elements are not whole {per}-value blocks"),
                        });
                    }
                    numel / per * bytes_per
                }
                None => 0,
            };
            let start = data_start + offset;
            if start.checked_add(len).is_none_or(|end| end > bytes.len()) {
                return Err(ModelError::Tensor {
                    path: path.to_path_buf(),
                    name,
                    reason: format!(
                        "data [{start}, {}) runs past the end of the file ({} bytes): truncated?",
                        start + len,
                        bytes.len()
                    ),
                });
            }
            tensors.insert(
                name,
                TensorInfo {
                    dims,
                    ggml_type,
                    start,
                    len,
                },
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            version,
            metadata,
            tensors,
        })
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn meta_err(&self, key: &str, reason: &str) -> ModelError {
        ModelError::Config {
            path: self.path.clone(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// Required unsigned metadata value.
    pub fn meta_u64(&self, key: &str) -> Result<u64, ModelError> {
        self.metadata
            .get(key)
            .and_then(MetaValue::as_u64)
            .ok_or_else(|| self.meta_err(key, "missing or not an unsigned integer"))
    }

    /// Required float metadata value.
    pub fn meta_f64(&self, key: &str) -> Result<f64, ModelError> {
        self.metadata
            .get(key)
            .and_then(MetaValue::as_f64)
            .ok_or_else(|| self.meta_err(key, "missing or not a number"))
    }

    /// Required string metadata value.
    pub fn meta_str(&self, key: &str) -> Result<&str, ModelError> {
        self.metadata
            .get(key)
            .and_then(MetaValue::as_str)
            .ok_or_else(|| self.meta_err(key, "missing or not a string"))
    }

    /// Required array of strings.
    pub fn meta_strings(&self, key: &str) -> Result<Vec<&str>, ModelError> {
        match self.metadata.get(key) {
            Some(MetaValue::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| self.meta_err(key, "array holds a non-string"))
                })
                .collect(),
            _ => Err(self.meta_err(key, "missing or not an array")),
        }
    }

    /// Dequantize tensor `name` to f32 in row-major (torch) order, checking its shape against
    /// `shape` (outermost first, e.g. `[out, in]`).
    pub fn dequantize(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let terr = |reason: String| ModelError::Tensor {
            path: self.path.clone(),
            name: name.into(),
            reason,
        };
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| terr("missing".into()))?;
        if info.shape() != shape {
            return Err(terr(format!(
                "shape {:?}, expected {shape:?} (from the metadata)",
                info.shape()
            )));
        }
        let data = &self.bytes[info.start..info.start + info.len];
        dequantize(info.ggml_type, data, info.numel()).map_err(terr)
    }
}

/// Dequantize `n` values of type `ty` from `data` (whole blocks).
pub fn dequantize(ty: GgmlType, data: &[u8], n: usize) -> Result<Vec<f32>, String> {
    let (per, bytes_per) = ty
        .block()
        .ok_or_else(|| format!("ggml type {ty:?} cannot be dequantized here"))?;
    if !n.is_multiple_of(per) || data.len() != n / per * bytes_per {
        return Err(format!(
            "{} bytes do not hold {n} values of {ty:?}",
            data.len()
        ));
    }
    let h = |b: &[u8]| f16::from_le_bytes([b[0], b[1]]).to_f32();
    let mut out = Vec::with_capacity(n);
    match ty {
        GgmlType::F32 => out.extend(
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        GgmlType::F16 => out.extend(data.chunks_exact(2).map(h)),
        GgmlType::BF16 => out.extend(
            data.chunks_exact(2)
                .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        GgmlType::Q4_0 => {
            for blk in data.chunks_exact(18) {
                let d = h(&blk[0..2]);
                let qs = &blk[2..18];
                out.extend(qs.iter().map(|q| d * (f32::from(q & 0x0f) - 8.0)));
                out.extend(qs.iter().map(|q| d * (f32::from(q >> 4) - 8.0)));
            }
        }
        GgmlType::Q4_1 => {
            for blk in data.chunks_exact(20) {
                let (d, m) = (h(&blk[0..2]), h(&blk[2..4]));
                let qs = &blk[4..20];
                out.extend(qs.iter().map(|q| d * f32::from(q & 0x0f) + m));
                out.extend(qs.iter().map(|q| d * f32::from(q >> 4) + m));
            }
        }
        GgmlType::Q8_0 => {
            for blk in data.chunks_exact(34) {
                let d = h(&blk[0..2]);
                out.extend(blk[2..34].iter().map(|&q| d * f32::from(q as i8)));
            }
        }
        GgmlType::Other(_) => unreachable!("block() is None"),
    }
    Ok(out)
}

/// Write a GGUF v3 file with string/u32/f32/string-array metadata and F32 tensors: used by
/// tests to build small files, and by tools that export a dequantized model.
pub fn write_f32(
    metadata: &[(&str, MetaValue)],
    tensors: &[(&str, Vec<usize>, Vec<f32>)],
) -> Vec<u8> {
    fn s(out: &mut Vec<u8>, v: &str) {
        out.extend((v.len() as u64).to_le_bytes());
        out.extend(v.as_bytes());
    }
    fn val(out: &mut Vec<u8>, v: &MetaValue, with_type: bool) {
        let (ty, body): (u32, Vec<u8>) = match v {
            MetaValue::U64(x) => (10, x.to_le_bytes().to_vec()),
            MetaValue::I64(x) => (11, x.to_le_bytes().to_vec()),
            MetaValue::F64(x) => (6, (*x as f32).to_le_bytes().to_vec()),
            MetaValue::Bool(b) => (7, vec![u8::from(*b)]),
            MetaValue::Str(x) => {
                let mut b = Vec::new();
                s(&mut b, x);
                (8, b)
            }
            MetaValue::Array(items) => {
                let mut b = Vec::new();
                let inner = match items.first() {
                    Some(MetaValue::Str(_)) | None => 8u32,
                    Some(MetaValue::U64(_)) => 10,
                    Some(MetaValue::I64(_)) => 11,
                    Some(MetaValue::F64(_)) => 6,
                    Some(MetaValue::Bool(_)) => 7,
                    Some(MetaValue::Array(_)) => 9,
                };
                b.extend(inner.to_le_bytes());
                b.extend((items.len() as u64).to_le_bytes());
                for it in items {
                    val(&mut b, it, false);
                }
                (9, b)
            }
        };
        if with_type {
            out.extend(ty.to_le_bytes());
        }
        out.extend(body);
    }
    let mut out = Vec::new();
    out.extend(b"GGUF");
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        s(&mut out, k);
        val(&mut out, v, true);
    }
    let mut offset = 0u64;
    for (name, shape, data) in tensors {
        s(&mut out, name);
        out.extend((shape.len() as u32).to_le_bytes());
        for d in shape.iter().rev() {
            out.extend((*d as u64).to_le_bytes());
        }
        out.extend(0u32.to_le_bytes());
        out.extend(offset.to_le_bytes());
        offset += (data.len() * 4).div_ceil(32) as u64 * 32;
    }
    while out.len() % 32 != 0 {
        out.push(0);
    }
    for (_, _, data) in tensors {
        let start = out.len();
        out.extend(data.iter().flat_map(|x| x.to_le_bytes()));
        while (out.len() - start) % 32 != 0 {
            out.push(0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_1_block_dequantizes_low_nibbles_first() {
        // d = 0.5, m = -1; byte k holds q_k = k & 15 (low) and q_{k+16} = 15 - k (high)
        let mut blk = Vec::new();
        blk.extend(f16::from_f32(0.5).to_le_bytes());
        blk.extend(f16::from_f32(-1.0).to_le_bytes());
        for k in 0..16u8 {
            blk.push(k | ((15 - k) << 4));
        }
        let x = dequantize(GgmlType::Q4_1, &blk, 32).unwrap();
        for k in 0..16 {
            assert_eq!(x[k], 0.5 * k as f32 - 1.0);
            assert_eq!(x[k + 16], 0.5 * (15 - k) as f32 - 1.0);
        }
    }

    #[test]
    fn q8_0_and_q4_0_blocks() {
        let mut blk = f16::from_f32(0.25).to_le_bytes().to_vec();
        blk.extend((0..32).map(|k: i32| (k - 16) as i8 as u8));
        let x = dequantize(GgmlType::Q8_0, &blk, 32).unwrap();
        assert_eq!(x[0], -4.0);
        assert_eq!(x[31], 0.25 * 15.0);
        assert!(dequantize(GgmlType::Q8_0, &blk[..30], 32).is_err());
        let mut blk = f16::from_f32(2.0).to_le_bytes().to_vec();
        blk.extend([0x8f_u8; 16]); // low 15 → 2·7, high 8 → 0
        let x = dequantize(GgmlType::Q4_0, &blk, 32).unwrap();
        assert_eq!(x[0], 14.0);
        assert_eq!(x[16], 0.0);
    }

    #[test]
    fn round_trip_and_truncation() {
        let file = write_f32(
            &[
                ("general.architecture", MetaValue::Str("llama".into())),
                (
                    "tokenizer.ggml.tokens",
                    MetaValue::Array(vec![MetaValue::Str("a".into()), MetaValue::Str("b".into())]),
                ),
            ],
            &[("w", vec![2, 3], vec![1., 2., 3., 4., 5., 6.])],
        );
        let p = Path::new("mem.gguf");
        let g = GgufFile::parse(p, file.clone()).unwrap();
        assert_eq!(g.meta_str("general.architecture").unwrap(), "llama");
        assert_eq!(g.meta_strings("tokenizer.ggml.tokens").unwrap(), ["a", "b"]);
        assert_eq!(g.tensors["w"].dims, [3, 2]);
        assert_eq!(
            g.dequantize("w", &[2, 3]).unwrap(),
            [1., 2., 3., 4., 5., 6.]
        );
        let e = g.dequantize("w", &[3, 2]).unwrap_err().to_string();
        assert!(e.contains("tensor w") && e.contains("[2, 3]"), "{e}");
        assert!(g.meta_u64("llama.block_count").is_err());
        // cut into the tensor data (24 bytes + 8 of padding): the error names the tensor
        let e = GgufFile::parse(p, file[..file.len() - 16].to_vec())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("tensor w") && e.contains("truncated"), "{e}");
        // cut into the metadata: the error names what was being read
        let e = GgufFile::parse(p, file[..40].to_vec())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("mem.gguf") && e.contains("truncated"), "{e}");
        let e = GgufFile::parse(p, b"GGML....".to_vec())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("magic"), "{e}");
    }
}
