//! Decoding with a KV cache: greedy search and beam search with length penalty,
//! no-repeat-n-gram blocking, EOS and a new-token budget — the settings of the LoRA/MTLoRA NLG
//! experiments (beam 10, no-repeat-ngram 4, length penalty 0.8–0.9).
//!
//! Beam search follows transformers' (≥ 4.50) `_beam_search` with `early_stopping=False`, so
//! outputs match `model.generate(num_beams=K, …)` token for token (tested on a
//! transformers-made fixture):
//! - each step scores `2K` continuations (the top `2K` of `K × V` accumulated log-probabilities,
//!   log-softmax in f32, banned n-grams at −∞); the best `K` that do not end the sequence run on;
//! - a continuation ends on EOS or when the budget is spent; it joins the finished list (kept
//!   to the best `K`) only when it ranks among the first `K`, with score
//!   `Σ log p / (generated tokens incl. EOS)^length_penalty`;
//! - search stops once `K` sequences have finished and the best running beam, divided by the
//!   current generated length to the power `length_penalty`, cannot beat the worst of them.

use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::decoder::CausalLm;

/// Decoding settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationConfig {
    /// Most tokens to add after the prompt.
    pub max_new_tokens: usize,
    /// Beams; 1 = greedy.
    pub num_beams: usize,
    /// Exponent of the length normalization of finished beams (> 0 favours longer outputs).
    pub length_penalty: f64,
    /// Forbid repeating any n-gram of this size (0 = off).
    pub no_repeat_ngram_size: usize,
    /// End-of-sequence token (kept in the output when produced).
    pub eos_token_id: Option<u32>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 32,
            num_beams: 1,
            length_penalty: 1.0,
            no_repeat_ngram_size: 0,
            eos_token_id: None,
        }
    }
}

/// Tokens that would complete an n-gram already in `seq` (transformers'
/// `NoRepeatNGramLogitsProcessor`).
pub fn banned_tokens(seq: &[u32], n: usize) -> Vec<u32> {
    if n == 0 || seq.len() + 1 < n {
        return Vec::new();
    }
    let prefix = &seq[seq.len() + 1 - n..];
    (0..=seq.len() - n)
        .filter(|&i| &seq[i..i + n - 1] == prefix)
        .map(|i| seq[i + n - 1])
        .collect()
}

fn log_softmax_row(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|x| (x - max).exp()).sum();
    let lse = max + sum.ln();
    row.iter().map(|x| x - lse).collect()
}

fn ids_tensor(rows: &[&[u32]], device: &burn::tensor::Device) -> Tensor<2, Int> {
    let t = rows[0].len();
    let flat: Vec<i64> = rows
        .iter()
        .flat_map(|r| r.iter().map(|&i| i64::from(i)))
        .collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), t]), device)
}

/// Last-position logits `[B × V]` (row-major) of a forward step.
fn last_logits(logits: Tensor<3>) -> Vec<f32> {
    let [b, t, v] = logits.dims();
    logits
        .slice([0..b, t - 1..t, 0..v])
        .reshape([b * v])
        .try_to_vec_as::<f32>()
        .expect("logits read back from the device")
}

/// Generate a continuation of `prompt`; returns the new tokens (ending with EOS if produced).
/// Errors on an empty prompt or `num_beams == 0`.
pub fn generate<M: CausalLm + ?Sized>(
    model: &M,
    prompt: &[u32],
    cfg: &GenerationConfig,
) -> Result<Vec<u32>, ModelError> {
    if prompt.is_empty() {
        return Err(ModelError::Input(
            "generation needs a non-empty prompt".into(),
        ));
    }
    if cfg.num_beams == 0 {
        return Err(ModelError::Input("num_beams must be at least 1".into()));
    }
    let v = model.vocab_size();
    if let Some(&bad) = prompt.iter().find(|&&i| i as usize >= v) {
        return Err(ModelError::Input(format!(
            "prompt token {bad} is outside the vocabulary ({v})"
        )));
    }
    if let Some(max) = model.max_positions()
        && prompt.len() + cfg.max_new_tokens > max
    {
        return Err(ModelError::Input(format!(
            "prompt ({}) + max_new_tokens ({}) exceeds the model's {max} positions",
            prompt.len(),
            cfg.max_new_tokens
        )));
    }
    if cfg.max_new_tokens == 0 {
        return Ok(Vec::new());
    }
    if cfg.num_beams == 1 {
        greedy(model, prompt, cfg)
    } else {
        beam(model, prompt, cfg)
    }
}

fn greedy<M: CausalLm + ?Sized>(
    model: &M,
    prompt: &[u32],
    cfg: &GenerationConfig,
) -> Result<Vec<u32>, ModelError> {
    let device = model.device();
    let mut cache = model.new_cache();
    let mut seq = prompt.to_vec();
    let mut logits = last_logits(model.logits_cached(ids_tensor(&[prompt], &device), &mut cache));
    for step in 0..cfg.max_new_tokens {
        for b in banned_tokens(&seq, cfg.no_repeat_ngram_size) {
            logits[b as usize] = f32::NEG_INFINITY;
        }
        let next = logits
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
                if x > best.1 { (i, x) } else { best }
            })
            .0 as u32;
        seq.push(next);
        if Some(next) == cfg.eos_token_id || step + 1 == cfg.max_new_tokens {
            break;
        }
        logits = last_logits(model.logits_cached(ids_tensor(&[&[next]], &device), &mut cache));
    }
    Ok(seq[prompt.len()..].to_vec())
}

fn beam<M: CausalLm + ?Sized>(
    model: &M,
    prompt: &[u32],
    cfg: &GenerationConfig,
) -> Result<Vec<u32>, ModelError> {
    let device = model.device();
    let (k, v, p) = (cfg.num_beams, model.vocab_size(), prompt.len());
    let max_len = p + cfg.max_new_tokens;
    let mut cache = model.new_cache();
    let first = last_logits(model.logits_cached(ids_tensor(&[prompt], &device), &mut cache));
    cache.select(&vec![0; k]);
    let mut logits: Vec<f32> = (0..k).flat_map(|_| first.iter().copied()).collect();
    let mut running: Vec<Vec<u32>> = vec![prompt.to_vec(); k];
    // only the first beam is live at the start (the others are copies)
    let mut scores: Vec<f32> = (0..k).map(|b| if b == 0 { 0.0 } else { -1e9 }).collect();
    let mut finished: Vec<(Vec<u32>, f32)> = Vec::new();
    let mut improvable = true;
    let mut cur_len = p;
    loop {
        // accumulated log-probabilities of every (beam, token) continuation
        let mut cand: Vec<(f32, usize)> = Vec::with_capacity(k * v);
        for b in 0..k {
            let mut lp = log_softmax_row(&logits[b * v..(b + 1) * v]);
            for t in banned_tokens(&running[b], cfg.no_repeat_ngram_size) {
                lp[t as usize] = f32::NEG_INFINITY;
            }
            cand.extend(
                lp.iter()
                    .enumerate()
                    .map(|(t, x)| (x + scores[b], b * v + t)),
            );
        }
        let keep = (2 * k).min(cand.len());
        cand.select_nth_unstable_by(keep - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        cand.truncate(keep);
        cand.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let hits: Vec<bool> = cand
            .iter()
            .map(|&(_, i)| Some((i % v) as u32) == cfg.eos_token_id || cur_len + 1 >= max_len)
            .collect();
        // finished sequences: only among the first K, only while improvement is possible
        if improvable {
            let norm = ((cur_len + 1 - p) as f64).powf(cfg.length_penalty) as f32;
            for (rank, &(s, i)) in cand.iter().enumerate().take(k) {
                if hits[rank] {
                    let mut seq = running[i / v].clone();
                    seq.push((i % v) as u32);
                    finished.push((seq, s / norm));
                }
            }
            finished.sort_by(|a, b| b.1.total_cmp(&a.1));
            finished.truncate(k);
        }
        if hits.iter().all(|&h| h) {
            break;
        }
        // the best K continuations that do not end run on
        let mut next: Vec<(f32, usize)> = cand
            .iter()
            .zip(&hits)
            .map(|(&(s, i), &h)| (if h { s - 1e9 } else { s }, i))
            .collect();
        next.sort_by(|a, b| b.0.total_cmp(&a.0));
        next.truncate(k);
        let parents: Vec<usize> = next.iter().map(|&(_, i)| i / v).collect();
        running = next
            .iter()
            .map(|&(_, i)| {
                let mut seq = running[i / v].clone();
                seq.push((i % v) as u32);
                seq
            })
            .collect();
        scores = next.iter().map(|&(s, _)| s).collect();
        cache.select(&parents);
        cur_len += 1;
        if finished.len() == k {
            let best = scores[0] / ((cur_len - p) as f64).powf(cfg.length_penalty) as f32;
            let worst = finished.last().map_or(f32::NEG_INFINITY, |f| f.1);
            improvable &= best > worst;
        }
        if !improvable {
            break;
        }
        let last: Vec<u32> = running.iter().map(|s| s[s.len() - 1]).collect();
        let rows: Vec<&[u32]> = last.chunks(1).collect();
        logits = last_logits(model.logits_cached(ids_tensor(&rows, &device), &mut cache));
    }
    let best = finished
        .into_iter()
        .next()
        .map(|(seq, _)| seq)
        .unwrap_or_else(|| running[0].clone());
    Ok(best[p..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banned_tokens_complete_seen_ngrams() {
        // bigrams: (1,2), (2,3), (3,1), (1,2) → after a trailing 1, 2 is banned
        assert_eq!(banned_tokens(&[1, 2, 3, 1], 2), [2]);
        // trigrams ending with prefix (3, 1)? none before the end
        assert!(banned_tokens(&[1, 2, 3, 1], 3).is_empty());
        assert_eq!(banned_tokens(&[5, 6, 7, 5, 6], 3), [7]);
        assert!(banned_tokens(&[1], 3).is_empty());
        assert!(banned_tokens(&[1, 1], 0).is_empty());
    }
}
