//! Geometric transforms for building and reading MTLoRA's `T`: rotations, scaling, translation.
//!
//! The MTLoRA paper motivates `T` as a geometric transformation of the rank-`r` subspace
//! (rotation, scaling, translation). This module lets a user *build* such a `T` from
//! interpretable parameters — every constructor here is made of burn ops and is differentiable —
//! and *read* a learned `T` back as rotation · scaling through the polar decomposition.
//!
//! - [`givens`] / [`givens_sequence`]: products of plane rotations; with [`all_pairs`] the
//!   `n(n−1)/2` angles parameterize all of SO(n). Orthogonal with determinant +1 by construction.
//! - [`cayley`]: `Q = (I + S)⁻¹ (I − S)` with `S = X − Xᵀ` skew-symmetric; orthogonal with
//!   determinant +1 for every `X` (it reaches every rotation without eigenvalue −1).
//! - [`scaling`]: builds `diag(s)`.
//! - [`affine`] / [`apply_affine`] / [`split_affine`]: `[[M, t], [0, 1]]` in homogeneous form.
//! - [`polar`] / [`rotation_scaling`]: `T = R · P` from the SVD `T = U Σ Vᵀ` (`R = U Vᵀ`,
//!   `P = V Σ Vᵀ`), host-side.

use burn::tensor::{DType, Device, Tensor, TensorData};
use faer::Mat;

use crate::convert::{compute_in_f64, mat_to_tensor, tensor_to_mat};
use crate::decomp::svd;
use crate::{LinalgError, Real, Result};

fn constant(
    values: Vec<f64>,
    rows: usize,
    cols: usize,
    device: &Device,
    dtype: DType,
) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, [rows, cols]), (device, dtype))
}

fn check_square(t: &Tensor<2>, what: &str) -> Result<usize> {
    let [a, b] = t.dims();
    if a != b || a == 0 {
        return Err(LinalgError::shape(
            what,
            "square, non-empty",
            format!("[{a}, {b}]"),
        ));
    }
    Ok(a)
}

/// All index pairs `(i, j)`, `i < j < n`, in row order: `n(n−1)/2` of them.
pub fn all_pairs(n: usize) -> Vec<(usize, usize)> {
    (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .collect()
}

/// The Givens rotation `G: [n, n]` by angle `theta: [1]` in the `(i, j)` plane:
/// `G_ii = G_jj = cos θ`, `G_ij = −sin θ`, `G_ji = sin θ`, identity elsewhere.
pub fn givens(n: usize, i: usize, j: usize, theta: Tensor<1>) -> Result<Tensor<2>> {
    if i == j || i >= n || j >= n {
        return Err(LinalgError::invalid(
            "givens plane",
            format!("need distinct i, j < n = {n}, got ({i}, {j})"),
        ));
    }
    if theta.dims() != [1] {
        return Err(LinalgError::shape(
            "givens theta",
            "[1]",
            format!("{:?}", theta.dims()),
        ));
    }
    let (device, dtype) = (theta.device(), theta.dtype());
    let mut diag = vec![0.0; n * n];
    diag[i * n + i] = 1.0;
    diag[j * n + j] = 1.0;
    let mut skew = vec![0.0; n * n];
    skew[j * n + i] = 1.0;
    skew[i * n + j] = -1.0;
    let diag = constant(diag, n, n, &device, dtype);
    let skew = constant(skew, n, n, &device, dtype);
    let th = theta.reshape([1, 1]);
    let eye = Tensor::<2>::eye(n, &device).cast(dtype);
    Ok(eye + diag * (th.clone().cos() - 1.0) + skew * th.sin())
}

/// `G(p_1, θ_1) · G(p_2, θ_2) · … · G(p_m, θ_m)` for planes `pairs` and angles `thetas: [m]`.
pub fn givens_sequence(n: usize, pairs: &[(usize, usize)], thetas: Tensor<1>) -> Result<Tensor<2>> {
    if thetas.dims() != [pairs.len()] {
        return Err(LinalgError::shape(
            "givens thetas",
            format!("[{}]", pairs.len()),
            format!("{:?}", thetas.dims()),
        ));
    }
    let device = thetas.device();
    let mut q = Tensor::<2>::eye(n, &device).cast(thetas.dtype());
    for (k, &(i, j)) in pairs.iter().enumerate() {
        let th = thetas.clone().narrow(0, k, 1);
        q = q.matmul(givens(n, i, j, th)?);
    }
    Ok(q)
}

/// The Cayley rotation of `x: [n, n]`: `S = X − Xᵀ`, `Q = (I + S)⁻¹ (I − S)` (differentiable).
///
/// `I + S` is always invertible (its symmetric part is `I`), and so are all its leading minors,
/// so the solve runs without pivoting.
pub fn cayley(x: Tensor<2>) -> Result<Tensor<2>> {
    let n = check_square(&x, "cayley input")?;
    let device = x.device();
    let s = x.clone() - x.transpose();
    let eye = Tensor::<2>::eye(n, &device).cast(s.dtype());
    Ok(solve_unpivoted(eye.clone() + s.clone(), eye - s))
}

/// Gauss–Jordan solve of `A X = B` without pivoting, from burn ops (differentiable).
/// Only for matrices whose leading principal minors are all non-zero (here: `I + skew`).
fn solve_unpivoted(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    let [n, _] = a.dims();
    let m = b.dims()[1];
    let (device, dtype) = (a.device(), a.dtype());
    let mut aug = Tensor::cat(vec![a, b], 1);
    for k in 0..n {
        let row = aug.clone().slice([k..k + 1, 0..n + m]);
        let pivot = row.clone().slice([0..1, k..k + 1]);
        let row = row / pivot;
        let col = aug.clone().slice([0..n, k..k + 1]);
        let mut e = vec![0.0; n];
        e[k] = 1.0;
        let e_k = constant(e, n, 1, &device, dtype);
        aug = aug - col.matmul(row.clone()) + e_k.matmul(row);
    }
    aug.slice([0..n, n..n + m])
}

/// `diag(s): [n, n]` from `s: [n]` (differentiable).
pub fn scaling(s: Tensor<1>) -> Tensor<2> {
    let n = s.dims()[0];
    let eye = Tensor::<2>::eye(n, &s.device()).cast(s.dtype());
    eye * s.reshape([1, n])
}

/// The homogeneous affine matrix `[[M, t], [0ᵀ, 1]]: [n+1, n+1]` from `linear: [n, n]` and
/// `translation: [n]` (differentiable in both). It maps column points `p ↦ M p + t`.
pub fn affine(linear: Tensor<2>, translation: Tensor<1>) -> Result<Tensor<2>> {
    let n = check_square(&linear, "affine linear part")?;
    if translation.dims() != [n] {
        return Err(LinalgError::shape(
            "affine translation",
            format!("[{n}]"),
            format!("{:?}", translation.dims()),
        ));
    }
    let (device, dtype) = (linear.device(), linear.dtype());
    let top = Tensor::cat(vec![linear, translation.reshape([n, 1])], 1);
    let mut last = vec![0.0; n + 1];
    last[n] = 1.0;
    let bottom = constant(last, 1, n + 1, &device, dtype);
    Ok(Tensor::cat(vec![top, bottom], 0))
}

/// Apply a homogeneous affine `h: [n+1, n+1]` to row points `points: [N, n]`: `p ↦ M p + t`.
pub fn apply_affine(points: Tensor<2>, h: Tensor<2>) -> Result<Tensor<2>> {
    let (linear, translation) = split_affine(h)?;
    let [_, n] = points.dims();
    if n != linear.dims()[0] {
        return Err(LinalgError::shape(
            "affine points",
            format!("[N, {}]", linear.dims()[0]),
            format!("{:?}", points.dims()),
        ));
    }
    Ok(points.matmul(linear.transpose()) + translation.reshape([1, n]))
}

/// Split `[[M, t], [0ᵀ, 1]]` into `(M: [n, n], t: [n])`. The last row is not read.
pub fn split_affine(h: Tensor<2>) -> Result<(Tensor<2>, Tensor<1>)> {
    let n1 = check_square(&h, "affine matrix")?;
    if n1 < 2 {
        return Err(LinalgError::shape(
            "affine matrix",
            "[n+1, n+1] with n >= 1",
            "[1, 1]",
        ));
    }
    let n = n1 - 1;
    let linear = h.clone().slice([0..n, 0..n]);
    let t = h.slice([0..n, n..n + 1]).reshape([n]);
    Ok((linear, t))
}

/// The polar decomposition `T = R · P` of a square `T`.
#[derive(Debug, Clone)]
pub struct Polar {
    /// `R = U Vᵀ: [n, n]`, orthogonal (`det = ±1`).
    pub rotation: Tensor<2>,
    /// `P = V Σ Vᵀ: [n, n]`, symmetric positive semi-definite (exactly symmetric: the two
    /// triangles of the product are averaged).
    pub stretch: Tensor<2>,
    /// `det R` (+1 for a proper rotation, −1 for a reflection).
    pub det_sign: f64,
}

/// `T` read as a proper rotation times a signed scaling along orthogonal axes:
/// `T = R · V · diag(scales) · Vᵀ` with `det R = +1`.
#[derive(Debug, Clone)]
pub struct RotationScaling {
    /// `R: [n, n]`, orthogonal with determinant +1.
    pub rotation: Tensor<2>,
    /// `V: [n, n]`, orthonormal principal axes (columns).
    pub axes: Tensor<2>,
    /// `[n]`, scale along each axis: the singular values, the last one negated when `T` reverses
    /// orientation.
    pub scales: Tensor<1>,
}

struct HostPolar<T> {
    u: Mat<T>,
    s: Vec<T>,
    v: Mat<T>,
    det_sign: f64,
}

fn host_polar<T: Real>(t: &Tensor<2>) -> Result<HostPolar<T>> {
    check_square(t, "polar input")?;
    let m = tensor_to_mat::<T>(t, "polar input")?;
    let f = svd(m.as_ref())?;
    let r = &f.u * f.v.transpose();
    let det = r.as_ref().determinant().to_f64();
    Ok(HostPolar {
        u: f.u,
        s: f.s,
        v: f.v,
        det_sign: if det < 0.0 { -1.0 } else { 1.0 },
    })
}

fn polar_impl<T: Real>(t: &Tensor<2>) -> Result<Polar> {
    let (device, dtype) = (t.device(), t.dtype());
    let p = host_polar::<T>(t)?;
    let r = &p.u * p.v.transpose();
    let vs = Mat::from_fn(p.v.nrows(), p.s.len(), |i, j| p.v[(i, j)] * p.s[j]);
    let product = &vs * p.v.transpose();
    // the product is symmetric only up to rounding (~1e-7 apart in f32, enough for a
    // symmetric eigensolver to refuse it): average the two triangles so `P = Pᵀ` exactly
    let half = T::from_f64(0.5);
    let stretch = Mat::from_fn(product.nrows(), product.ncols(), |i, j| {
        (product[(i, j)] + product[(j, i)]) * half
    });
    Ok(Polar {
        rotation: mat_to_tensor(r.as_ref(), &device, dtype),
        stretch: mat_to_tensor(stretch.as_ref(), &device, dtype),
        det_sign: p.det_sign,
    })
}

fn rotation_scaling_impl<T: Real>(t: &Tensor<2>) -> Result<RotationScaling> {
    let (device, dtype) = (t.device(), t.dtype());
    let mut p = host_polar::<T>(t)?;
    let n = p.s.len();
    if p.det_sign < 0.0 {
        for i in 0..p.u.nrows() {
            p.u[(i, n - 1)] = -p.u[(i, n - 1)];
        }
        p.s[n - 1] = -p.s[n - 1];
    }
    let r = &p.u * p.v.transpose();
    let scales: Vec<T> = p.s;
    Ok(RotationScaling {
        rotation: mat_to_tensor(r.as_ref(), &device, dtype),
        axes: mat_to_tensor(p.v.as_ref(), &device, dtype),
        scales: crate::convert::slice_to_tensor(&scales, &device, dtype),
    })
}

/// Polar decomposition of a square tensor (host SVD; result in the input's dtype).
pub fn polar(t: &Tensor<2>) -> Result<Polar> {
    if compute_in_f64(t) {
        polar_impl::<f64>(t)
    } else {
        polar_impl::<f32>(t)
    }
}

/// [`RotationScaling`] of a square tensor (host SVD; result in the input's dtype).
pub fn rotation_scaling(t: &Tensor<2>) -> Result<RotationScaling> {
    if compute_in_f64(t) {
        rotation_scaling_impl::<f64>(t)
    } else {
        rotation_scaling_impl::<f32>(t)
    }
}

impl RotationScaling {
    /// `R · V · diag(scales) · Vᵀ`, which equals the decomposed `T`.
    pub fn reconstruct(&self) -> Tensor<2> {
        let n = self.scales.dims()[0];
        let vs = self.axes.clone() * self.scales.clone().reshape([1, n]);
        self.rotation
            .clone()
            .matmul(vs.matmul(self.axes.clone().transpose()))
    }
}
