//! One entry point for every architecture: [`load`] looks at a path (a Hugging Face model
//! directory or a `.gguf` file), picks the architecture from `config.json`'s `model_type` or the
//! GGUF `general.architecture`, and returns a [`Model`] with its tokenizer.
//!
//! | `model_type` | model | task |
//! |---|---|---|
//! | `bert`, `roberta` | [`BertForSequenceClassification`] | classification / regression |
//! | `deberta-v2` | [`DebertaV2ForSequenceClassification`] | classification / regression |
//! | `gpt2` | [`Gpt2LmHeadModel`] | causal LM |
//! | `llama` (or a `.gguf` with `general.architecture = llama`) | [`LlamaForCausalLm`] | causal LM |

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use peftlab_adapters::{AdaptedLinear, AdapterHost};
use peftlab_linalg::frozen::Precision;

use crate::ModelError;
use crate::bert::BertForSequenceClassification;
use crate::deberta::DebertaV2ForSequenceClassification;
use crate::decoder::CausalLm;
use crate::gguf::GgufFile;
use crate::gpt2::Gpt2LmHeadModel;
use crate::llama::LlamaForCausalLm;
use crate::tokenizer::Tokenizer;

/// A loaded model of any supported architecture.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Model {
    /// BERT / RoBERTa sequence classifier.
    Bert(BertForSequenceClassification),
    /// DeBERTa-v2/v3 sequence classifier.
    Deberta(DebertaV2ForSequenceClassification),
    /// GPT-2 language model.
    Gpt2(Gpt2LmHeadModel),
    /// Llama language model.
    Llama(LlamaForCausalLm),
}

/// How to build the heads that a checkpoint may lack.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Classifier outputs; default: `num_labels` or the size of `id2label` in `config.json`,
    /// else 2. One output is regression.
    pub num_labels: Option<usize>,
    /// Seed for heads the checkpoint does not hold.
    pub seed: u64,
    /// BERT: classify the mean-pooled hidden states instead of the pooled `[CLS]`.
    pub mean_pooling: bool,
}

/// A model with its tokenizer and label names.
pub struct Loaded {
    /// The model.
    pub model: Model,
    /// `tokenizer.json` of the directory, or the GGUF tokenizer; `None` if the directory has
    /// none.
    pub tokenizer: Option<Tokenizer>,
    /// Label names by index (`id2label`), classifiers only.
    pub labels: Vec<String>,
    /// End-of-sequence token (causal LMs), from the config or GGUF metadata.
    pub eos_token_id: Option<u32>,
    /// Where it was loaded from.
    pub path: PathBuf,
}

fn labels(config: &serde_json::Value, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            config
                .get("id2label")
                .and_then(|m| m.get(i.to_string()))
                .and_then(|v| v.as_str())
                .map_or_else(|| format!("LABEL_{i}"), str::to_string)
        })
        .collect()
}

fn eos_of(config: &serde_json::Value) -> Option<u32> {
    match config.get("eos_token_id")? {
        serde_json::Value::Number(n) => n.as_u64().map(|v| v as u32),
        serde_json::Value::Array(a) => a.first()?.as_u64().map(|v| v as u32),
        _ => None,
    }
}

/// Load the model at `path`: a `.gguf` file, or a directory with `config.json`,
/// `model.safetensors` (or a sharded index) and optionally `tokenizer.json`.
pub fn load(path: &Path, opts: &LoadOptions, device: &Device) -> Result<Loaded, ModelError> {
    if path.is_file() {
        let g = GgufFile::open(path)?;
        let (model, cfg) = LlamaForCausalLm::from_gguf(&g, device)?;
        return Ok(Loaded {
            model: Model::Llama(model),
            tokenizer: Some(Tokenizer::from_gguf(&g)?),
            labels: Vec::new(),
            eos_token_id: cfg.eos_token_id,
            path: path.to_path_buf(),
        });
    }
    if !path.is_dir() {
        return Err(ModelError::File {
            path: path.to_path_buf(),
            reason: "no such model directory or .gguf file".into(),
        });
    }
    let config_path = path.join("config.json");
    let config: serde_json::Value = crate::safetensors_dir::read_json(&config_path)?;
    let model_type = config
        .get("model_type")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let tok_path = path.join("tokenizer.json");
    let tokenizer = if tok_path.exists() {
        Some(Tokenizer::from_file(&tok_path)?)
    } else {
        None
    };
    let num_labels = opts
        .num_labels
        .or_else(|| {
            config
                .get("num_labels")
                .and_then(|v| v.as_u64())
                .map(|v| v as usize)
        })
        .or_else(|| {
            config
                .get("id2label")
                .and_then(|m| m.as_object())
                .map(|m| m.len())
        })
        .unwrap_or(2);
    let (model, labels) = match model_type {
        "bert" | "roberta" => (
            Model::Bert(
                BertForSequenceClassification::from_dir(path, num_labels, opts.seed, device)?
                    .with_mean_pooling(opts.mean_pooling),
            ),
            labels(&config, num_labels),
        ),
        "deberta-v2" => (
            Model::Deberta(DebertaV2ForSequenceClassification::from_dir(
                path, num_labels, opts.seed, device,
            )?),
            labels(&config, num_labels),
        ),
        "gpt2" => (
            Model::Gpt2(Gpt2LmHeadModel::from_dir(path, device)?.0),
            Vec::new(),
        ),
        "llama" => (
            Model::Llama(LlamaForCausalLm::from_dir(path, device)?.0),
            Vec::new(),
        ),
        other => {
            return Err(ModelError::Config {
                path: config_path,
                key: "model_type".into(),
                reason: format!(
                    "{other:?} is not supported (bert, roberta, deberta-v2, gpt2, llama)"
                ),
            });
        }
    };
    Ok(Loaded {
        model,
        tokenizer,
        labels,
        eos_token_id: eos_of(&config),
        path: path.to_path_buf(),
    })
}

impl Model {
    /// Architecture name.
    pub fn architecture(&self) -> &'static str {
        match self {
            Self::Bert(m) if m.bert.roberta => "RobertaForSequenceClassification",
            Self::Bert(_) => "BertForSequenceClassification",
            Self::Deberta(_) => "DebertaV2ForSequenceClassification",
            Self::Gpt2(_) => "GPT2LMHeadModel",
            Self::Llama(_) => "LlamaForCausalLM",
        }
    }

    /// Set the arithmetic of every frozen product — the base of each linear layer (used while
    /// it is frozen) and the tied LM heads — to `precision`
    /// (`peftlab_linalg::frozen::Precision`; f32 after loading). Adapters, trainable layers,
    /// attention and norms stay f32. Errors, changing nothing, when this CPU cannot run
    /// `precision` at least as fast as f32 (bf16 needs `avx512_bf16`).
    pub fn set_base_precision(
        &mut self,
        precision: Precision,
    ) -> Result<(), peftlab_linalg::LinalgError> {
        precision.check()?;
        self.for_each_linear_mut("", &mut |_, l| l.packed.set_precision(precision));
        match self {
            Self::Gpt2(m) => m.head_pack.set_precision(precision),
            Self::Llama(m) => m.head_pack.set_precision(precision),
            Self::Bert(_) | Self::Deberta(_) => {}
        }
        Ok(())
    }

    /// The causal LM interface, for GPT-2 and Llama.
    pub fn causal_lm(&self) -> Option<&dyn CausalLm> {
        match self {
            Self::Gpt2(m) => Some(m),
            Self::Llama(m) => Some(m),
            _ => None,
        }
    }

    /// Classifier logits `[B, num_labels]` for ids, token types (`None` = all 0) and mask
    /// `[B, T]`; `None` for causal LMs.
    pub fn classify(
        &self,
        ids: Tensor<2, Int>,
        types: Option<Tensor<2, Int>>,
        mask: Tensor<2>,
    ) -> Option<Tensor<2>> {
        match self {
            Self::Bert(m) => Some(m.forward_typed(ids, types, mask)),
            Self::Deberta(m) => Some(m.forward_typed(ids, types, mask)),
            _ => None,
        }
    }
}

impl AdapterHost for Model {
    fn for_each_linear(&self, prefix: &str, f: &mut dyn FnMut(&str, &AdaptedLinear)) {
        match self {
            Self::Bert(m) => m.for_each_linear(prefix, f),
            Self::Deberta(m) => m.for_each_linear(prefix, f),
            Self::Gpt2(m) => m.for_each_linear(prefix, f),
            Self::Llama(m) => m.for_each_linear(prefix, f),
        }
    }
    fn for_each_linear_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut AdaptedLinear)) {
        match self {
            Self::Bert(m) => m.for_each_linear_mut(prefix, f),
            Self::Deberta(m) => m.for_each_linear_mut(prefix, f),
            Self::Gpt2(m) => m.for_each_linear_mut(prefix, f),
            Self::Llama(m) => m.for_each_linear_mut(prefix, f),
        }
    }
}
