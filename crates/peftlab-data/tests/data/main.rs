//! The data crate's integration tests, in one binary (one link instead of four: the debug
//! test binaries carry burn and are ~150 MB each).

mod batch;
mod fetch;
mod loaders;
mod real;
