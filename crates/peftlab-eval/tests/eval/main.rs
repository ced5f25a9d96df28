//! The eval crate's integration tests, in one binary (metric parity; evaluation loops with the
//! `loops` feature).

mod loops;
mod parity;
