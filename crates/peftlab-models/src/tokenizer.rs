//! Tokenization with the `tokenizers` crate: from a `tokenizer.json`, or rebuilt from the
//! vocabulary and merges stored in a GGUF file.

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, TruncationParams, TruncationStrategy};

use crate::ModelError;
use crate::gguf::{GgufFile, MetaValue};

/// A Hugging Face tokenizer with its built-in padding and truncation turned off (the MiniLM
/// `tokenizer.json` pads every input to 128 tokens).
pub struct Tokenizer(
    tokenizers::Tokenizer,
    /// A copy configured to truncate at the given length, kept for the next call (cloning a
    /// 30k-entry vocabulary per example made batching ~100× slower).
    std::sync::Mutex<Option<(usize, tokenizers::Tokenizer)>>,
);

fn tok_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

impl Tokenizer {
    /// Load `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let mut t = tokenizers::Tokenizer::from_file(path).map_err(|e| ModelError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        t.with_padding(None);
        t.with_truncation(None).map_err(tok_err)?;
        Ok(Self(t, std::sync::Mutex::new(None)))
    }

    /// The byte-level BPE tokenizer stored in a GGUF file (`tokenizer.ggml.model = "gpt2"`):
    /// `tokenizer.ggml.tokens` and `.merges`, a ByteLevel pre-tokenizer without prefix space
    /// (preceded by single-digit splitting when `tokenizer.ggml.pre` is `"smollm"`, as
    /// SmolLM2's `tokenizer.json` does), the ByteLevel decoder, and the control tokens
    /// (`token_type` 3, e.g. `<|im_start|>`) as special tokens. No BOS is added: SmolLM2's
    /// Hugging Face tokenizer adds none either.
    pub fn from_gguf(g: &GgufFile) -> Result<Self, ModelError> {
        let model = g.meta_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(ModelError::Config {
                path: g.path().to_path_buf(),
                key: "tokenizer.ggml.model".into(),
                reason: format!("{model:?}: only byte-level BPE (\"gpt2\") is supported"),
            });
        }
        let tokens = g.meta_strings("tokenizer.ggml.tokens")?;
        let merges = g
            .meta_strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| ModelError::Config {
                        path: g.path().to_path_buf(),
                        key: "tokenizer.ggml.merges".into(),
                        reason: format!("merge {m:?} is not two tokens"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(tok_err)?;
        let mut t = tokenizers::Tokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, true, true);
        let pre: PreTokenizerWrapper = if g.meta_str("tokenizer.ggml.pre").ok() == Some("smollm") {
            Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
        } else {
            byte_level.into()
        };
        t.with_pre_tokenizer(Some(pre));
        t.with_decoder(Some(ByteLevelDecoder::default()));
        if let Some(MetaValue::Array(types)) = g.metadata.get("tokenizer.ggml.token_type") {
            let special: Vec<AddedToken> = types
                .iter()
                .zip(&tokens)
                .filter(|(ty, _)| ty.as_u64() == Some(3))
                .map(|(_, tok)| AddedToken::from(tok.to_string(), true))
                .collect();
            t.add_special_tokens(special).map_err(tok_err)?;
        }
        Ok(Self(t, std::sync::Mutex::new(None)))
    }

    /// Token ids of `text`, with the tokenizer's special tokens (`[CLS] … [SEP]` for BERT).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.0
            .encode(text, true)
            .map(|e| e.get_ids().to_vec())
            .map_err(tok_err)
    }

    /// Token ids and token type ids of `text` or of the pair (`text`, `pair`)
    /// (`[CLS] a [SEP] b [SEP]`, types `0…0 1…1`), truncated to `max_len` tokens by removing
    /// from the longer sequence first (transformers' `longest_first`).
    pub fn encode_limited(
        &self,
        text: &str,
        pair: Option<&str>,
        max_len: usize,
    ) -> Result<(Vec<u32>, Vec<u32>), ModelError> {
        let mut cached = self.1.lock().unwrap_or_else(|p| p.into_inner());
        if cached.as_ref().is_none_or(|(n, _)| *n != max_len) {
            let mut t = self.0.clone();
            t.with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                ..Default::default()
            }))
            .map_err(tok_err)?;
            *cached = Some((max_len, t));
        }
        let t = &cached.as_ref().expect("set above").1;
        let enc = match pair {
            Some(b) => t.encode((text, b), true),
            None => t.encode(text, true),
        };
        enc.map(|e| (e.get_ids().to_vec(), e.get_type_ids().to_vec()))
            .map_err(tok_err)
    }

    /// Text of `ids` (special tokens skipped).
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.0.decode(ids, true).map_err(tok_err)
    }

    /// The id of `token`, if in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.0.token_to_id(token)
    }

    /// The string of token `id`.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.0.id_to_token(id)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.0.get_vocab_size(true)
    }
}
