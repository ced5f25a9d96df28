//! # peftlab-models — transformer models on real checkpoints
//!
//! Models are built from [`peftlab_adapters::AdaptedLinear`] and expose their projections by
//! Hugging Face module path ([`peftlab_adapters::AdapterHost`]), so every adapter method
//! attaches to them with PEFT's `target_modules` names.
//!
//! | architecture | module | loads |
//! |---|---|---|
//! | BERT (MiniLM, BERT-base), RoBERTa | [`bert`] | Hugging Face directory |
//! | DeBERTa-v2/v3 | [`deberta`] | Hugging Face directory |
//! | GPT-2 | [`gpt2`] | Hugging Face directory |
//! | Llama (SmolLM2) | [`llama`] | Hugging Face directory or `.gguf` ([`gguf`]) |
//!
//! A Hugging Face directory holds `config.json`, `model.safetensors` (or
//! `model.safetensors.index.json` and its shards) and `tokenizer.json`. [`zoo::load`] picks the
//! architecture for any path; [`generate`] decodes (greedy, beam) with the KV cache of
//! [`decoder`]; [`hub`] resolves model ids when built with the `hub` feature; [`act`] holds the
//! vectorized activations of the CPU inference path.
//!
//! Every model is checked against Hugging Face transformers on small random checkpoints
//! (`scripts/transformers_fixtures.py`), and the real all-MiniLM-L6-v2 and SmolLM2-135M-Instruct
//! against numpy references (`tests/`).
#![warn(missing_docs)]

pub mod act;
pub mod bert;
pub mod deberta;
pub mod decoder;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod gpt2;
pub mod hub;
pub mod llama;
pub mod safetensors_dir;
pub mod tokenizer;
pub mod zoo;

pub use error::ModelError;

/// The peftlab cache directory: `$PEFTLAB_CACHE`, else `$XDG_CACHE_HOME/peftlab`, else
/// `~/.cache/peftlab` (the rule of `peftlab_data::fetch::cache_dir`, which fills it). Fetched
/// models live under `models/` (e.g. `models/all-MiniLM-L6-v2`,
/// `models/smollm2-135m-instruct-q4_1`).
pub fn cache_dir() -> std::path::PathBuf {
    use std::path::PathBuf;
    if let Some(p) = std::env::var_os("PEFTLAB_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("peftlab");
    }
    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/peftlab")
}
