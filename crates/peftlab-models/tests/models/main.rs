//! The models crate's integration tests, in one binary: fixture models against transformers
//! (`tiny`, `decoders`), loading and its errors, and the real MiniLM / SmolLM2 checkpoints when
//! they are in the cache.

mod common;
mod decoders;
mod loading;
mod minilm;
mod smollm2;
mod tiny;
