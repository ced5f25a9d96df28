//! # peftlab-linalg — the tensor math behind peftlab's adapters
//!
//! Everything here works on burn 0.22 [`Tensor`](burn::tensor::Tensor)s, so it runs on any enabled
//! backend (`flex` by default); the pieces marked *differentiable* are built from burn ops and work
//! under autodiff. Host-side decompositions use [`faer`] on plain column-major matrices and convert
//! to and from burn tensors.
//!
//! | module | what it holds |
//! |---|---|
//! | [`decomp`] | thin / truncated SVD, QR, symmetric eigen (f32 and f64), on `faer` matrices and burn tensors |
//! | [`convert`] | burn tensor ⇄ `faer::Mat` conversion with shape and finiteness checks |
//! | [`strips`] | TriAdaptLoRA's growable triangular strips (papers.md §4.1, §4.6) |
//! | [`transform`] | MTLoRA's transformation structures T: identity, SHIM, ICFM, CTCM, DTSM (§2.1, §2.4, §2.8) |
//! | [`geometry`] | Givens and Cayley rotations, scaling, affine translation, polar decomposition |
//! | [`regularize`] | orthogonality penalty, safe Frobenius norm, normalized-Frobenius importance (§4.3, §4.5) |
//! | [`init`] | seeded, backend-independent initializers (kaiming-uniform, normal, identity, zeros) |
//!
//! Errors are typed ([`LinalgError`]); no function in this crate panics on bad input.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use peftlab_linalg::decomp::svd_tensor;
//! use peftlab_linalg::transform::{TransformConfig, TransformKind};
//!
//! let device = Device::default(); // `flex` unless another backend feature is on
//! // MTLoRA's ICFM structure T = C Cᵀ at rank 4, seeded.
//! let t = TransformConfig::new(4).with_kind(TransformKind::Icfm).init(&device, 42)?;
//! let u = Tensor::<2>::ones([3, 4], &device); // rank-r activations [N, r]
//! let v = t.apply(u); // u · Tᵀ, [3, 4]
//! assert_eq!(v.dims(), [3, 4]);
//! // Top-2 SVD of a weight, back as tensors of the same dtype.
//! let w = Tensor::<2>::from_data([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]], &device);
//! let f = svd_tensor(&w, Some(2))?;
//! let s: Vec<f32> = f.s.to_data().try_to_vec().unwrap();
//! assert_eq!(s, vec![3.0, 2.0]);
//! # Ok::<(), peftlab_linalg::LinalgError>(())
//! ```
#![warn(missing_docs)]

pub mod attention;
pub mod convert;
pub mod decomp;
pub mod dropout;
pub mod error;
#[cfg(feature = "flex")]
pub mod fastpath;
pub mod frozen;
pub mod gemm;
pub mod gemm_bf16;
pub mod geometry;
pub mod init;
pub mod norm;
pub mod regularize;
pub mod rope;
pub mod scalar;
pub mod simd;
pub mod skinny;
pub mod strips;
pub mod transform;
pub mod xent;

pub use error::{LinalgError, Result};
pub use scalar::Real;
