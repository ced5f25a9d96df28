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
#![warn(missing_docs)]

pub mod convert;
pub mod decomp;
pub mod error;
pub mod geometry;
pub mod init;
pub mod regularize;
pub mod scalar;
pub mod strips;
pub mod transform;

pub use error::{LinalgError, Result};
pub use scalar::Real;
