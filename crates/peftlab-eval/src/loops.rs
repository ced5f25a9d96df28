//! Evaluation loops: run a model (with whatever adapter it carries) over a split and return the
//! task's metrics. Classification and regression batch the examples in their order (no
//! shuffling, dynamic padding); generation decodes each input with the models crate's
//! greedy/beam search and scores the outputs against all references.
//!
//! Text handling for generation: BLEU and TER see the raw strings (sacrebleu's own 13a
//! tokenization and TER normalization), while ROUGE-L, CIDEr-D, NIST and METEOR see lowercased,
//! 13a-tokenized strings, as the E2E scripts tokenize before those scorers. METEOR uses the
//! fetched WordNet 3.0 ([`default_wordnet`]; fetched on first use).

use std::collections::BTreeMap;

use burn::tensor::Device;
use peftlab_data::batch::{classification_batch, encode_examples};
use peftlab_data::task::{Example, Label, TaskSpec};
use peftlab_models::decoder::CausalLm;
use peftlab_models::generate::{GenerationConfig, generate};
use peftlab_models::tokenizer::Tokenizer;
use peftlab_models::zoo::Model;

use crate::EvalError;
use crate::bleu::{corpus_bleu, tokenize_13a};
use crate::classification::{accuracy, f1_binary, f1_macro, matthews_corrcoef, pearson, spearman};
use crate::generation::{cider_d, nist, rouge_l};
use crate::meteor::{MeteorParams, meteor};
use crate::ter::corpus_ter;
use crate::wordnet::WordNet;

fn invalid(e: impl std::fmt::Display) -> EvalError {
    EvalError::Invalid(e.to_string())
}

/// Metric `name` on class predictions / labels.
pub fn class_metric(name: &str, pred: &[usize], label: &[usize]) -> Result<f64, EvalError> {
    match name {
        "accuracy" => accuracy(pred, label),
        "f1" => f1_binary(pred, label, 1),
        "f1_macro" => f1_macro(pred, label),
        "mcc" => matthews_corrcoef(pred, label),
        other => Err(invalid(format!("{other:?} is not a classification metric"))),
    }
}

/// Outputs as a text file, one line per example: generated texts with their line breaks
/// turned into spaces (so line `i` is example `i`, as the E2E/GEM scoring scripts expect), or
/// predictions (a class id, or a score for regression).
pub fn output_lines<T: std::fmt::Display>(outputs: &[T]) -> String {
    let mut text = String::new();
    for o in outputs {
        let line = o.to_string();
        text.push_str(&line.replace(['\r', '\n'], " "));
        text.push('\n');
    }
    text
}

/// Predictions of a classifier over `examples`: class ids, or scores for regression (one
/// output), plus the task's metrics (×100 like the papers' tables).
pub fn evaluate_classifier(
    model: &Model,
    tok: &Tokenizer,
    task: &TaskSpec,
    examples: &[Example],
    batch_size: usize,
    max_len: usize,
    device: &Device,
) -> Result<(BTreeMap<String, f64>, Vec<f64>), EvalError> {
    let enc = encode_examples(tok, examples, max_len).map_err(invalid)?;
    // batches of similar length (less padding: MR snippets run from 5 to 60 tokens), outputs
    // written back in input order
    let mut by_len: Vec<usize> = (0..enc.len()).collect();
    by_len.sort_by_key(|&i| (enc[i].ids.len(), i));
    let mut outputs: Vec<Vec<f64>> = vec![Vec::new(); enc.len()];
    for b in by_len.chunks(batch_size.max(1)) {
        let items: Vec<_> = b.iter().map(|&i| &enc[i]).collect();
        let batch = classification_batch(&items, 0, device);
        let logits = model
            .classify(batch.ids, Some(batch.types), batch.mask)
            .ok_or_else(|| invalid(format!("{} is not a classifier", model.architecture())))?;
        let [n, k] = logits.dims();
        let v = logits
            .try_to_vec_as::<f64>()
            .map_err(|e| invalid(format!("{e:?}")))?;
        for (r, &i) in b.iter().enumerate().take(n) {
            outputs[i] = v[r * k..(r + 1) * k].to_vec();
        }
    }
    let mut metrics = BTreeMap::new();
    let regression = outputs.first().is_some_and(|o| o.len() == 1);
    if regression {
        let pred: Vec<f64> = outputs.iter().map(|o| o[0]).collect();
        let gold: Vec<f64> = examples
            .iter()
            .map(|e| match e.label {
                Some(Label::Score(s)) => Ok(s),
                _ => Err(invalid(format!("example {} has no score", e.id))),
            })
            .collect::<Result<_, _>>()?;
        for m in &task.metrics {
            let v = match m.as_str() {
                "pearson" => pearson(&pred, &gold)?,
                "spearman" => spearman(&pred, &gold)?,
                other => return Err(invalid(format!("{other:?} is not a regression metric"))),
            };
            metrics.insert(m.clone(), 100.0 * v);
        }
        return Ok((metrics, pred));
    }
    let pred: Vec<usize> = outputs
        .iter()
        .map(|o| {
            (0..o.len())
                .max_by(|&a, &b| o[a].total_cmp(&o[b]))
                .unwrap_or(0)
        })
        .collect();
    let gold: Vec<usize> = examples
        .iter()
        .map(|e| match e.label {
            Some(Label::Class(c)) => Ok(c),
            _ => Err(invalid(format!("example {} has no class label", e.id))),
        })
        .collect::<Result<_, _>>()?;
    for m in &task.metrics {
        metrics.insert(m.clone(), 100.0 * class_metric(m, &pred, &gold)?);
    }
    Ok((metrics, pred.into_iter().map(|p| p as f64).collect()))
}

/// The WordNet 3.0 of the peftlab cache (`cargo xtask fetch --only wordnet`), fetched when it is
/// not there, opened once per process.
pub fn default_wordnet() -> Result<&'static WordNet, EvalError> {
    static WN: std::sync::OnceLock<WordNet> = std::sync::OnceLock::new();
    if let Some(w) = WN.get() {
        return Ok(w);
    }
    let dir = peftlab_data::fetch::ensure("wordnet", &peftlab_data::fetch::cache_dir())
        .map_err(invalid)?;
    let w = WordNet::open(&dir)?;
    Ok(WN.get_or_init(|| w))
}

/// Score generated texts against references with the metric names of a generation task
/// (bleu, ter, nist, rouge_l, cider_d, meteor). NIST is left out when no output has 5 tokens
/// (undefined: nltk divides by zero).
pub fn generation_metrics(
    names: &[String],
    outputs: &[String],
    refs: &[Vec<String>],
) -> Result<BTreeMap<String, f64>, EvalError> {
    let tok = |s: &String| tokenize_13a(&s.to_lowercase());
    let t_out: Vec<String> = outputs.iter().map(tok).collect();
    let t_refs: Vec<Vec<String>> = refs.iter().map(|r| r.iter().map(tok).collect()).collect();
    let mut m = BTreeMap::new();
    for n in names {
        let v = match n.as_str() {
            "bleu" => corpus_bleu(outputs, refs, false)?.score,
            "ter" => corpus_ter(outputs, refs)?.score,
            // nltk divides by zero when no output has 5 tokens (early in training, say): the
            // metric is undefined there and left out of the map rather than failing the loop
            "nist" if t_out.iter().all(|h| crate::bleu::py_split(h).count() < 5) => continue,
            "nist" => nist(&t_out, &t_refs, 5)?,
            "rouge_l" => 100.0 * rouge_l(&t_out, &t_refs)?.0,
            "cider_d" => cider_d(&t_out, &t_refs)?.0,
            "meteor" => {
                100.0 * meteor(&t_out, &t_refs, default_wordnet()?, MeteorParams::default())?.0
            }
            other => return Err(invalid(format!("{other:?} is not a generation metric"))),
        };
        m.insert(n.clone(), v);
    }
    Ok(m)
}

/// Generate for every example (`prompt(input)` → prompt text) and score against its references.
/// Returns the metrics and the decoded outputs.
pub fn evaluate_generator(
    lm: &dyn CausalLm,
    tok: &Tokenizer,
    task: &TaskSpec,
    examples: &[Example],
    prompt: &dyn Fn(&str) -> String,
    cfg: &GenerationConfig,
) -> Result<(BTreeMap<String, f64>, Vec<String>), EvalError> {
    let mut outputs = Vec::with_capacity(examples.len());
    let mut refs = Vec::with_capacity(examples.len());
    for e in examples {
        let Some(Label::Refs(r)) = &e.label else {
            return Err(invalid(format!("example {} has no references", e.id)));
        };
        let ids = tok.encode(&prompt(&e.text_a)).map_err(invalid)?;
        let mut new = generate(lm, &ids, cfg).map_err(invalid)?;
        if new.last().copied() == cfg.eos_token_id {
            new.pop();
        }
        outputs.push(tok.decode(&new).map_err(invalid)?.trim().to_string());
        refs.push(r.clone());
    }
    let metrics = generation_metrics(&task.metrics, &outputs, &refs)?;
    Ok((metrics, outputs))
}

#[cfg(test)]
mod tests {
    use super::output_lines;

    /// One line per output: a generated text's own line breaks become spaces (else line `i`
    /// would no longer be example `i`); class ids print without a fraction, scores in full.
    #[test]
    fn output_lines_keep_one_line_per_example() {
        assert_eq!(output_lines(&["a\nb", "c\r\nd", ""]), "a b\nc  d\n\n");
        assert_eq!(output_lines(&[1.0, 0.0, 0.25]), "1\n0\n0.25\n");
    }
}
