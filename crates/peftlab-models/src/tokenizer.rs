//! Tokenization with the `tokenizers` crate from a `tokenizer.json`.

use std::path::Path;

use crate::ModelError;

/// A Hugging Face tokenizer with its built-in padding and truncation turned off (the MiniLM
/// `tokenizer.json` pads every input to 128 tokens).
pub struct Tokenizer(tokenizers::Tokenizer);

impl Tokenizer {
    /// Load `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let mut t = tokenizers::Tokenizer::from_file(path).map_err(|e| ModelError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        t.with_padding(None);
        t.with_truncation(None)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(Self(t))
    }

    /// Token ids of `text`, with special tokens (`[CLS] … [SEP]` for BERT).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.0
            .encode(text, true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| ModelError::Tokenizer(e.to_string()))
    }
}
