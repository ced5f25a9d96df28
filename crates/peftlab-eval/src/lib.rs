//! # peftlab-eval — metrics with reference parity
//!
//! | metric | module | reference it matches |
//! |---|---|---|
//! | accuracy, F1 (binary, macro), Matthews correlation | [`classification`] | scikit-learn |
//! | Pearson, Spearman (average ranks for ties) | [`classification`] | scipy.stats |
//! | GLUE per-task metrics and averaging | [`glue`] | the GLUE benchmark's rules |
//! | corpus BLEU (13a tokenization, multiple references) | [`bleu`] | sacrebleu |
//! | ROUGE-L, CIDEr-D | [`generation`] | pycocoevalcap (the E2E / COCO scripts) |
//! | NIST | [`generation`] | nltk `corpus_nist` |
//! | METEOR (exact, Porter-stem and WordNet-synonym stages) | [`meteor`] (+ [`porter`], [`wordnet`]) | nltk `meteor_score` with WordNet 3.0 |
//! | TER | [`ter`] | sacrebleu (Tercom re-implementation) |
//!
//! Every metric is tested against values that `scripts/metric_references.py` computes with the
//! reference implementation on generated cases (ties, constant predictions, empty hypotheses,
//! multiple references); the tolerances are stated in `tests/eval/parity.rs`.
#![warn(missing_docs)]

pub mod bleu;
pub mod classification;
pub mod error;
pub mod generation;
pub mod glue;
#[cfg(feature = "loops")]
pub mod loops;
pub mod meteor;
pub mod porter;
pub mod ter;
pub mod wordnet;

pub use error::EvalError;
