//! Property and behaviour tests of `peftlab-linalg`, one binary (one link) for all of them.
//!
//! Run: `cargo test -p peftlab-linalg`. Each module states its tolerances.

mod attention;
mod common;
mod decomp;
mod dropout;
mod frozen;
mod geometry;
mod norm;
mod regularize;
mod rope;
mod skinny;
mod strips;
mod transform;
mod xent;
