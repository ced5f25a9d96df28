//! # peftlab-models — transformer models on real checkpoints
//!
//! Models are built from [`peftlab_adapters::AdaptedLinear`] and expose their projections by
//! Hugging Face module path ([`peftlab_adapters::AdapterHost`]), so every adapter method
//! attaches to them with PEFT's `target_modules` names.
//!
//! | architecture | module | loads |
//! |---|---|---|
//! | BERT (MiniLM, BERT-base), RoBERTa | [`bert`] | Hugging Face directory: `config.json`, `model.safetensors`, `tokenizer.json` |
//!
//! More architectures (DeBERTa-v2/v3, GPT-2, Llama/GGUF) come with issue 4.
#![warn(missing_docs)]

pub mod bert;
pub mod error;
pub mod safetensors_dir;
pub mod tokenizer;

pub use error::ModelError;
