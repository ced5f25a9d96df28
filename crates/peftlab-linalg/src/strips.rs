//! TriAdaptLoRA's transformation matrix stored as growable triangular strips.
//!
//! Source: Liang, Wang, Zeng, *TriAdaptLoRA*, arXiv 2501.08008; storage and counts confirmed from the
//! authors' code (`DiverValue-Bench/peft/src/peft/tuners/triadaptlora.py`), papers.md §4.1 and §4.6.
//!
//! `C = L + U ∈ R^{R×R}` with `R = k_1 + … + k_m`. Block `i` (of size `k_i`, added when the rank
//! became `S_i = k_1 + … + k_i`) owns
//! - a **row strip** `Crow_i: [k_i, S_i]` — rows `S_i − k_i .. S_i` of `L`, columns `0 .. S_i`;
//! - a **column strip** `Ccol_i: [S_i, k_i]` — columns `S_i − k_i .. S_i` of `U`, rows `0 .. S_i`.
//!
//! `L` is block-lower and `U` block-upper triangular; both contain the diagonal blocks. Growing by
//! `k` appends one row strip `[k, R+k]` and one column strip `[R+k, k]` and touches nothing else,
//! so the optimizer state of existing strips survives growth. With `k_i = 1` throughout, `L` and
//! `U` are exactly lower and upper triangular.
//!
//! Parameter count: `P_C = 2 Σ_i k_i · S_i`; rank-1 growth gives `R(R+1)`, constant blocks of `k`
//! give `R(R+k)`, the author default (one block of 1, then `m` blocks of 4) gives
//! `2(1 + 12m + 8m²)`.
//!
//! Initialization of new strips ([`StripInit`]) is **inferred**: the paper's choice is not known.
//! The default, [`StripInit::DiagonalIdentity`], is the digest's recommendation (§4.2); the author
//! code's HEAD behaviour is [`StripInit::LeadingIdentity`], its rank-1 `_single` variant
//! [`StripInit::Normal`] with `std = 0.02`, and [`StripInit::Zeros`] the initial commit's.

use burn::module::{Module, Param};
use burn::tensor::{DType, Device, Tensor};

use crate::init::{Fill, SeededRng};
use crate::{LinalgError, Result};

/// How the two strips of a new block are filled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StripInit {
    /// Identity on the new `k × k` diagonal block of both strips, zero elsewhere: the new
    /// diagonal block of `C` becomes `2I` (as the author code's first block), old entries keep
    /// their values. The default (papers.md §4.2 recommendation).
    DiagonalIdentity,
    /// `torch.nn.init.eye_` on each strip: ones at `[j, j]` from the strip's top-left corner
    /// (the author code's HEAD behaviour; for later blocks this lands in the first columns/rows).
    LeadingIdentity,
    /// `N(0, std²)` everywhere in both strips (the `_single` variant uses `std = 0.02`).
    Normal {
        /// Standard deviation.
        std: f64,
    },
    /// All zeros.
    Zeros,
}

/// `C` held as row strips and column strips (see the module docs).
#[derive(Module, Debug)]
pub struct TriangularStrips {
    /// Row strips of `L`: block `i` is `[k_i, S_i]`.
    pub rows: Vec<Param<Tensor<2>>>,
    /// Column strips of `U`: block `i` is `[S_i, k_i]`.
    pub cols: Vec<Param<Tensor<2>>>,
}

impl Default for TriangularStrips {
    fn default() -> Self {
        Self::new()
    }
}

impl TriangularStrips {
    /// No blocks yet (rank 0).
    pub fn new() -> Self {
        Self {
            rows: Vec::new(),
            cols: Vec::new(),
        }
    }

    /// Current rank `R = Σ k_i`.
    pub fn rank(&self) -> usize {
        self.rows.last().map_or(0, |r| r.dims()[1])
    }

    /// Block sizes `k_1, …, k_m`.
    pub fn block_sizes(&self) -> Vec<usize> {
        self.rows.iter().map(|r| r.dims()[0]).collect()
    }

    /// Number of blocks `m`.
    pub fn num_blocks(&self) -> usize {
        self.rows.len()
    }

    /// Trainable scalars held, `2 Σ k_i S_i` (counted from the tensors).
    pub fn num_params(&self) -> usize {
        self.rows
            .iter()
            .chain(&self.cols)
            .map(|p| p.dims().iter().product::<usize>())
            .sum()
    }

    /// Append a block from explicit strips `row: [k, R+k]`, `col: [R+k, k]`.
    pub fn grow_with(mut self, row: Tensor<2>, col: Tensor<2>) -> Result<Self> {
        let [k, s] = row.dims();
        let new_rank = self.rank() + k;
        if k == 0 || s != new_rank {
            return Err(LinalgError::shape(
                "row strip",
                format!("[k>0, {}+k]", self.rank()),
                format!("{:?}", row.dims()),
            ));
        }
        if col.dims() != [new_rank, k] {
            return Err(LinalgError::shape(
                "column strip",
                format!("[{new_rank}, {k}]"),
                format!("{:?}", col.dims()),
            ));
        }
        self.rows.push(Param::from_tensor(row));
        self.cols.push(Param::from_tensor(col));
        Ok(self)
    }

    /// Append a block of size `k` filled by `init` (row strip drawn first, then column strip).
    pub fn grow(
        self,
        k: usize,
        init: StripInit,
        rng: &mut SeededRng,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        if k == 0 {
            return Err(LinalgError::invalid("grow k", "block size must be > 0"));
        }
        let old = self.rank();
        let new = old + k;
        let (row, col) = match init {
            StripInit::DiagonalIdentity => {
                let row: Vec<f64> = (0..k * new)
                    .map(|idx| f64::from(u8::from(idx % new == old + idx / new)))
                    .collect();
                let col: Vec<f64> = (0..new * k)
                    .map(|idx| f64::from(u8::from(idx / k == old + idx % k)))
                    .collect();
                (row, col)
            }
            StripInit::LeadingIdentity => {
                (Fill::Eye.sample(k, new, rng), Fill::Eye.sample(new, k, rng))
            }
            StripInit::Normal { std } => (
                Fill::Normal { std }.sample(k, new, rng),
                Fill::Normal { std }.sample(new, k, rng),
            ),
            StripInit::Zeros => (vec![0.0; k * new], vec![0.0; new * k]),
        };
        let to_tensor = |v: Vec<f64>, shape: [usize; 2]| {
            Tensor::from_data(burn::tensor::TensorData::new(v, shape), (device, dtype))
        };
        self.grow_with(to_tensor(row, [k, new]), to_tensor(col, [new, k]))
    }

    /// `L: [R, R]`, block-lower triangular (differentiable in the row strips).
    pub fn lower(&self) -> Result<Tensor<2>> {
        let r = self.nonzero_rank()?;
        let blocks = self
            .rows
            .iter()
            .map(|p| pad(p.val(), 1, r))
            .collect::<Vec<_>>();
        Ok(Tensor::cat(blocks, 0))
    }

    /// `U: [R, R]`, block-upper triangular (differentiable in the column strips).
    pub fn upper(&self) -> Result<Tensor<2>> {
        let r = self.nonzero_rank()?;
        let blocks = self
            .cols
            .iter()
            .map(|p| pad(p.val(), 0, r))
            .collect::<Vec<_>>();
        Ok(Tensor::cat(blocks, 1))
    }

    /// `C = L + U: [R, R]` (differentiable in every strip).
    pub fn assemble(&self) -> Result<Tensor<2>> {
        Ok(self.lower()? + self.upper()?)
    }

    fn nonzero_rank(&self) -> Result<usize> {
        match self.rank() {
            0 => Err(LinalgError::Empty {
                what: "triangular strips".into(),
                rows: 0,
                cols: 0,
            }),
            r => Ok(r),
        }
    }
}

/// Zero-pad `t` along `dim` (0 = rows at the bottom, 1 = columns on the right) to length `to`.
fn pad(t: Tensor<2>, dim: usize, to: usize) -> Tensor<2> {
    let dims = t.dims();
    if dims[dim] == to {
        return t;
    }
    let mut zshape = dims;
    zshape[dim] = to - dims[dim];
    let zeros = Tensor::zeros(zshape, (&t.device(), t.dtype()));
    Tensor::cat(vec![t, zeros], dim)
}

/// `2 Σ k_i S_i` for block sizes `k_1, …, k_m` (papers.md §4.6).
pub fn strip_params(block_sizes: &[usize]) -> usize {
    block_sizes
        .iter()
        .scan(0usize, |s, &k| {
            *s += k;
            Some(2 * k * *s)
        })
        .sum()
}

/// Closed form for rank-1 growth to rank `r`: `r(r+1)`.
pub fn strip_params_rank1(r: usize) -> usize {
    r * (r + 1)
}

/// Closed form for constant blocks of size `k` up to rank `r` (a multiple of `k`): `r(r+k)`.
pub fn strip_params_constant_block(r: usize, k: usize) -> usize {
    r * (r + k)
}

/// Closed form for the author default, a first block of 1 then `m` blocks of 4:
/// `2(1 + 12m + 8m²)`.
pub fn strip_params_default_growth(m: usize) -> usize {
    2 * (1 + 12 * m + 8 * m * m)
}
