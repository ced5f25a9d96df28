//! Host-side decompositions with faer: thin and truncated SVD, QR, symmetric eigen.
//!
//! Each function takes a column-major [`faer::MatRef`] of `f32` or `f64`, validates it (non-empty,
//! finite, square/symmetric where needed) and returns a typed [`LinalgError`] instead of
//! panicking. The `*_tensor` variants read a burn tensor, compute in `f64` if the tensor is `f64`
//! and in `f32` otherwise, and return tensors of the input's dtype on the input's device.
//!
//! Conventions: `A = U · diag(s) · Vᵀ` with `U: [m, k]`, `s: [k]` non-negative and nonincreasing,
//! `V: [n, k]` (note: `V`, not `Vᵀ`); `A = Q · R` with `Q: [m, k]` orthonormal columns and
//! `R: [k, n]` upper triangular with a non-negative diagonal; `A = W · diag(λ) · Wᵀ` with `λ`
//! nondecreasing. `k = min(m, n)` for thin factors, the requested rank for truncated ones.

use std::sync::atomic::{AtomicUsize, Ordering};

use burn::tensor::{DType, Tensor};
use faer::diag::Diag;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd::{ComputeEigenvectors, self_adjoint_evd, self_adjoint_evd_scratch};
use faer::linalg::householder::{
    apply_block_householder_sequence_on_the_left_in_place_scratch,
    apply_block_householder_sequence_on_the_left_in_place_with_conj,
};
use faer::linalg::qr::no_pivoting::factor::{
    qr_in_place, qr_in_place_scratch, recommended_block_size,
};
use faer::linalg::svd::{ComputeSvdVectors, svd as faer_svd, svd_scratch};
use faer::{Conj, Mat, MatRef, Par};

use crate::convert::{
    check_finite, check_nonempty, compute_in_f64, mat_to_tensor, slice_to_tensor, tensor_to_mat,
};
use crate::{LinalgError, Real, Result};

/// How many threads the decompositions use.
///
/// *Measured here* (2 cores, `cargo run --release --example` probes, docs/performance.md):
/// faer's rayon path is slower than its sequential path for every f32 shape up to 1024×4096
/// (768×768 thin SVD: 0.116 s sequential vs 0.150 s on 2 threads; 1024×4096: 0.58 s vs 0.64 s)
/// and faster only for large f64 problems (1024×4096 SVD f64: 1.09 s vs 0.92 s; QR 0.55 s vs
/// 0.42 s). [`Parallelism::Auto`] follows that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parallelism {
    /// All rayon threads when `m · n · min(m, n) · size_of::<T>() > AUTO_PARALLEL_WORK`,
    /// sequential otherwise.
    Auto,
    /// Always one thread.
    Sequential,
    /// Rayon with this many threads (`0` = rayon's global pool size).
    Rayon(usize),
}

/// Work in bytes touched (`m · n · min(m, n) · size_of::<T>()`) above which
/// [`Parallelism::Auto`] goes parallel: `2³⁴`, i.e. a 1024×4096 problem in f64 but not in f32.
pub const AUTO_PARALLEL_WORK: usize = 1 << 34;

/// 0 = Auto, 1 = Sequential, n + 2 = Rayon(n).
static PARALLELISM: AtomicUsize = AtomicUsize::new(0);

/// Set the thread policy of every decomposition in this crate (process-wide; default `Auto`).
/// faer's own global setting is not touched.
pub fn set_parallelism(p: Parallelism) {
    let v = match p {
        Parallelism::Auto => 0,
        Parallelism::Sequential => 1,
        Parallelism::Rayon(n) => n.saturating_add(2),
    };
    PARALLELISM.store(v, Ordering::Relaxed);
}

/// The current thread policy.
pub fn parallelism() -> Parallelism {
    match PARALLELISM.load(Ordering::Relaxed) {
        0 => Parallelism::Auto,
        1 => Parallelism::Sequential,
        n => Parallelism::Rayon(n - 2),
    }
}

fn par_for<T>(m: usize, n: usize) -> Par {
    match parallelism() {
        Parallelism::Sequential => Par::Seq,
        Parallelism::Rayon(t) => Par::rayon(t),
        Parallelism::Auto => {
            let work = m
                .saturating_mul(n)
                .saturating_mul(m.min(n))
                .saturating_mul(std::mem::size_of::<T>());
            if work > AUTO_PARALLEL_WORK {
                Par::rayon(0)
            } else {
                Par::Seq
            }
        }
    }
}

/// A thin or truncated singular value decomposition `A ≈ U · diag(s) · Vᵀ`.
#[derive(Debug, Clone)]
pub struct Svd<T> {
    /// Left singular vectors, `[m, k]`, orthonormal columns.
    pub u: Mat<T>,
    /// Singular values, `[k]`, non-negative, nonincreasing.
    pub s: Vec<T>,
    /// Right singular vectors, `[n, k]`, orthonormal columns.
    pub v: Mat<T>,
}

impl<T: Real> Svd<T> {
    /// Number of singular triplets held.
    pub fn rank(&self) -> usize {
        self.s.len()
    }

    /// `U · diag(s) · Vᵀ`, `[m, n]`.
    pub fn reconstruct(&self) -> Mat<T> {
        let us = Mat::from_fn(self.u.nrows(), self.s.len(), |i, j| {
            self.u[(i, j)] * self.s[j]
        });
        &us * self.v.transpose()
    }

    /// Keep the top `rank` triplets. Errors if `rank` is 0 or more than held.
    pub fn truncate(self, rank: usize) -> Result<Self> {
        if rank == 0 || rank > self.s.len() {
            return Err(LinalgError::Rank {
                what: "svd.truncate".into(),
                rank,
                max: self.s.len(),
            });
        }
        Ok(Self {
            u: self.u.subcols(0, rank).to_owned(),
            s: self.s[..rank].to_vec(),
            v: self.v.subcols(0, rank).to_owned(),
        })
    }
}

fn validate<T: Real>(a: MatRef<'_, T>, what: &str) -> Result<()> {
    check_nonempty(a, what)?;
    check_finite(a, what)
}

/// Thin SVD: `k = min(m, n)` triplets.
pub fn svd<T: Real>(a: MatRef<'_, T>) -> Result<Svd<T>> {
    validate(a, "svd input")?;
    let (m, n) = a.shape();
    let k = m.min(n);
    let par = par_for::<T>(m, n);
    let mut u = Mat::zeros(m, k);
    let mut v = Mat::zeros(n, k);
    let mut s = Diag::zeros(k);
    let thin = ComputeSvdVectors::Thin;
    let req = svd_scratch::<T>(m, n, thin, thin, par, Default::default());
    faer_svd(
        a,
        s.as_mut(),
        Some(u.as_mut()),
        Some(v.as_mut()),
        par,
        MemStack::new(&mut MemBuffer::new(req)),
        Default::default(),
    )
    .map_err(|_| LinalgError::NoConvergence {
        what: "svd input".into(),
        algorithm: "svd",
    })?;
    Ok(Svd {
        u,
        s: s.column_vector().iter().copied().collect(),
        v,
    })
}

/// Truncated SVD: the top `rank` triplets (`1 <= rank <= min(m, n)`), the best rank-`rank`
/// approximation in spectral and Frobenius norm (Eckart–Young).
pub fn svd_truncated<T: Real>(a: MatRef<'_, T>, rank: usize) -> Result<Svd<T>> {
    let max = a.nrows().min(a.ncols());
    if rank == 0 || rank > max {
        validate(a, "svd input")?;
        return Err(LinalgError::Rank {
            what: "svd input".into(),
            rank,
            max,
        });
    }
    svd(a)?.truncate(rank)
}

/// Singular values only (nonincreasing); cheaper than [`svd`].
pub fn singular_values<T: Real>(a: MatRef<'_, T>) -> Result<Vec<T>> {
    validate(a, "singular_values input")?;
    let (m, n) = a.shape();
    let par = par_for::<T>(m, n);
    let mut s = Diag::zeros(m.min(n));
    let no = ComputeSvdVectors::No;
    let req = svd_scratch::<T>(m, n, no, no, par, Default::default());
    faer_svd(
        a,
        s.as_mut(),
        None,
        None,
        par,
        MemStack::new(&mut MemBuffer::new(req)),
        Default::default(),
    )
    .map_err(|_| LinalgError::NoConvergence {
        what: "singular_values input".into(),
        algorithm: "svd",
    })?;
    Ok(s.column_vector().iter().copied().collect())
}

/// Spectral norm `‖A‖₂ = σ_max(A)`.
pub fn spectral_norm<T: Real>(a: MatRef<'_, T>) -> Result<T> {
    Ok(singular_values(a)?[0])
}

/// A thin QR decomposition `A = Q · R`.
#[derive(Debug, Clone)]
pub struct Qr<T> {
    /// `[m, k]`, orthonormal columns.
    pub q: Mat<T>,
    /// `[k, n]`, upper triangular, non-negative diagonal.
    pub r: Mat<T>,
}

/// Thin QR with `k = min(m, n)`; signs are normalized so that `diag(R) >= 0`, which makes the
/// factorization unique for full-rank `A`.
pub fn qr<T: Real>(a: MatRef<'_, T>) -> Result<Qr<T>> {
    validate(a, "qr input")?;
    let (m, n) = a.shape();
    let k = m.min(n);
    let par = par_for::<T>(m, n);
    let block = recommended_block_size::<T>(m, n);
    let mut packed = a.to_owned();
    let mut coeff = Mat::zeros(block, k);
    let req = qr_in_place_scratch::<T>(m, n, block, par, Default::default());
    qr_in_place(
        packed.as_mut(),
        coeff.as_mut(),
        par,
        MemStack::new(&mut MemBuffer::new(req)),
        Default::default(),
    );
    let zero = T::from_f64(0.0);
    let one = T::from_f64(1.0);
    // Householder basis (unit lower trapezoidal, [m, k]) and R (upper trapezoidal, [k, n]).
    let basis = Mat::from_fn(m, k, |i, j| match i.cmp(&j) {
        std::cmp::Ordering::Greater => packed[(i, j)],
        std::cmp::Ordering::Equal => one,
        std::cmp::Ordering::Less => zero,
    });
    let mut r = Mat::from_fn(k, n, |i, j| if j >= i { packed[(i, j)] } else { zero });
    let mut q = Mat::<T>::identity(m, k);
    let req = apply_block_householder_sequence_on_the_left_in_place_scratch::<T>(m, block, k);
    apply_block_householder_sequence_on_the_left_in_place_with_conj(
        basis.as_ref(),
        coeff.as_ref(),
        Conj::No,
        q.as_mut(),
        par,
        MemStack::new(&mut MemBuffer::new(req)),
    );
    for i in 0..r.nrows() {
        if r[(i, i)] < zero {
            for j in 0..r.ncols() {
                r[(i, j)] = -r[(i, j)];
            }
            for row in 0..q.nrows() {
                q[(row, i)] = -q[(row, i)];
            }
        }
    }
    Ok(Qr { q, r })
}

/// A symmetric eigendecomposition `A = W · diag(λ) · Wᵀ`.
#[derive(Debug, Clone)]
pub struct SymEigen<T> {
    /// Eigenvalues, `[n]`, nondecreasing.
    pub values: Vec<T>,
    /// Eigenvectors as columns, `[n, n]`, orthonormal.
    pub vectors: Mat<T>,
}

/// Symmetric eigendecomposition. The input must be square and symmetric up to
/// `|a_ij − a_ji| <= sqrt(eps) · max(1, max|a|)`; only the lower triangle is read.
pub fn eigh<T: Real>(a: MatRef<'_, T>) -> Result<SymEigen<T>> {
    let what = "eigh input";
    validate(a, what)?;
    if a.nrows() != a.ncols() {
        return Err(LinalgError::shape(
            what,
            "square",
            format!("[{}, {}]", a.nrows(), a.ncols()),
        ));
    }
    let n = a.nrows();
    let mut max_abs = 0.0f64;
    let mut max_asym = 0.0f64;
    for j in 0..n {
        for i in 0..n {
            max_abs = max_abs.max(a[(i, j)].to_f64().abs());
            max_asym = max_asym.max((a[(i, j)].to_f64() - a[(j, i)].to_f64()).abs());
        }
    }
    let tol = T::EPSILON.sqrt() * max_abs.max(1.0);
    if max_asym > tol {
        return Err(LinalgError::NotSymmetric {
            what: what.into(),
            max_asym,
            tol,
        });
    }
    let par = par_for::<T>(n, n);
    let mut vectors = Mat::zeros(n, n);
    let mut values = Diag::zeros(n);
    let req = self_adjoint_evd_scratch::<T>(n, ComputeEigenvectors::Yes, par, Default::default());
    self_adjoint_evd(
        a,
        values.as_mut(),
        Some(vectors.as_mut()),
        par,
        MemStack::new(&mut MemBuffer::new(req)),
        Default::default(),
    )
    .map_err(|_| LinalgError::NoConvergence {
        what: what.into(),
        algorithm: "eigh",
    })?;
    Ok(SymEigen {
        values: values.column_vector().iter().copied().collect(),
        vectors,
    })
}

/// [`Svd`] held as burn tensors of the input's dtype.
#[derive(Debug, Clone)]
pub struct TensorSvd {
    /// `[m, k]`.
    pub u: Tensor<2>,
    /// `[k]`, nonincreasing.
    pub s: Tensor<1>,
    /// `[n, k]`.
    pub v: Tensor<2>,
}

impl TensorSvd {
    /// `U · diag(s) · Vᵀ`, `[m, n]` (burn ops: differentiable in `u`, `s`, `v`).
    pub fn reconstruct(&self) -> Tensor<2> {
        let k = self.s.dims()[0];
        let us = self.u.clone() * self.s.clone().reshape([1, k]);
        us.matmul(self.v.clone().transpose())
    }
}

/// [`Qr`] held as burn tensors.
#[derive(Debug, Clone)]
pub struct TensorQr {
    /// `[m, k]`.
    pub q: Tensor<2>,
    /// `[k, n]`.
    pub r: Tensor<2>,
}

/// [`SymEigen`] held as burn tensors.
#[derive(Debug, Clone)]
pub struct TensorSymEigen {
    /// `[n]`, nondecreasing.
    pub values: Tensor<1>,
    /// `[n, n]`, eigenvectors as columns.
    pub vectors: Tensor<2>,
}

/// Run `f32` or `f64` host code on a tensor, depending on its dtype.
macro_rules! on_host {
    ($tensor:expr, $what:expr, |$mat:ident, $dtype:ident| $body:expr) => {{
        let tensor: &Tensor<2> = $tensor;
        let $dtype: DType = tensor.dtype();
        if compute_in_f64(tensor) {
            let $mat = tensor_to_mat::<f64>(tensor, $what)?;
            $body
        } else {
            let $mat = tensor_to_mat::<f32>(tensor, $what)?;
            $body
        }
    }};
}

/// SVD of a burn tensor `[m, n]`; `rank = None` gives the thin SVD, `Some(r)` the top-r.
pub fn svd_tensor(a: &Tensor<2>, rank: Option<usize>) -> Result<TensorSvd> {
    let device = a.device();
    on_host!(a, "svd input", |m, dtype| {
        let f = match rank {
            Some(r) => svd_truncated(m.as_ref(), r)?,
            None => svd(m.as_ref())?,
        };
        Ok(TensorSvd {
            u: mat_to_tensor(f.u.as_ref(), &device, dtype),
            s: slice_to_tensor(&f.s, &device, dtype),
            v: mat_to_tensor(f.v.as_ref(), &device, dtype),
        })
    })
}

/// Thin QR of a burn tensor `[m, n]`.
pub fn qr_tensor(a: &Tensor<2>) -> Result<TensorQr> {
    let device = a.device();
    on_host!(a, "qr input", |m, dtype| {
        let f = qr(m.as_ref())?;
        Ok(TensorQr {
            q: mat_to_tensor(f.q.as_ref(), &device, dtype),
            r: mat_to_tensor(f.r.as_ref(), &device, dtype),
        })
    })
}

/// Symmetric eigendecomposition of a burn tensor `[n, n]`.
pub fn eigh_tensor(a: &Tensor<2>) -> Result<TensorSymEigen> {
    let device = a.device();
    on_host!(a, "eigh input", |m, dtype| {
        let f = eigh(m.as_ref())?;
        Ok(TensorSymEigen {
            values: slice_to_tensor(&f.values, &device, dtype),
            vectors: mat_to_tensor(f.vectors.as_ref(), &device, dtype),
        })
    })
}
