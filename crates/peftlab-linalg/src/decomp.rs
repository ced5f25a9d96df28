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

use burn::tensor::{DType, Tensor};
use faer::{Mat, MatRef, Side};

use crate::convert::{
    check_finite, check_nonempty, compute_in_f64, mat_to_tensor, slice_to_tensor, tensor_to_mat,
};
use crate::{LinalgError, Real, Result};

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
    let f = a.thin_svd().map_err(|_| LinalgError::NoConvergence {
        what: "svd input".into(),
        algorithm: "svd",
    })?;
    let s: Vec<T> = f.S().column_vector().iter().copied().collect();
    Ok(Svd {
        u: f.U().to_owned(),
        s,
        v: f.V().to_owned(),
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
    a.singular_values().map_err(|_| LinalgError::NoConvergence {
        what: "singular_values input".into(),
        algorithm: "svd",
    })
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
    let f = a.qr();
    let mut q = f.compute_thin_Q();
    let mut r = f.thin_R().to_owned();
    let zero = T::from_f64(0.0);
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
    let f = a
        .self_adjoint_eigen(Side::Lower)
        .map_err(|_| LinalgError::NoConvergence {
            what: what.into(),
            algorithm: "eigh",
        })?;
    Ok(SymEigen {
        values: f.S().column_vector().iter().copied().collect(),
        vectors: f.U().to_owned(),
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
