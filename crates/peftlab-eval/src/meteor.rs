//! METEOR as nltk 3.10.4's `meteor_score` computes it — the Python METEOR that Hugging Face
//! `evaluate` and the GEM tooling report — not the Java METEOR 1.5 of the E2E challenge script
//! (paraphrase tables, tuned parameters, its own normalizer), which has no Python equivalent to
//! test against; see `docs/decisions.md`.
//!
//! Per segment and reference, on lowercased tokens:
//! 1. align in three stages, each on the words the previous stages left unmatched, every stage
//!    walking the hypothesis from its end and taking the last free reference position: exact
//!    match; Porter stems ([`crate::porter`], nltk's extensions) equal; WordNet synonymy (a
//!    reference word equal to a single-word lemma of any synset of the hypothesis word —
//!    [`crate::wordnet`]). As in nltk, the synonym stage looks up the *stems* the second stage
//!    left behind;
//! 2. `P = m/|hyp|`, `R = m/|ref|`, `F = P·R / (α·P + (1−α)·R)`;
//! 3. `chunks` = runs of matches adjacent in both sentences (matches sorted by hypothesis
//!    position), `penalty = γ·(chunks/m)^β`, score `(1 − penalty)·F`; 0 when nothing matches or a
//!    side is empty;
//!
//! the segment's score is the best over its references, the corpus score the mean over segments.
//! Defaults α = 0.9, β = 3, γ = 0.5. Tokenization is the caller's (tokens are split on
//! whitespace, like the other generation metrics).

use std::collections::HashMap;

use crate::EvalError;
use crate::bleu::py_split;
use crate::porter;
use crate::wordnet::WordNet;

/// METEOR's weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeteorParams {
    /// Weight of precision against recall in the harmonic mean.
    pub alpha: f64,
    /// Shape of the fragmentation penalty.
    pub beta: f64,
    /// Maximal fragmentation penalty.
    pub gamma: f64,
}

impl Default for MeteorParams {
    /// nltk's defaults: α = 0.9, β = 3, γ = 0.5.
    fn default() -> Self {
        Self {
            alpha: 0.9,
            beta: 3.0,
            gamma: 0.5,
        }
    }
}

/// METEOR's word matchers over one WordNet, with the synonym sets of words seen so far cached.
pub struct Meteor<'a> {
    wordnet: &'a WordNet,
    params: MeteorParams,
    synonyms: HashMap<String, Vec<String>>,
}

/// (original position, word) pairs still unmatched.
type Enum = Vec<(usize, String)>;
/// A stage's result: (hypothesis, reference) position pairs, then what is left of both sides.
type Stage = (Vec<(usize, usize)>, Enum, Enum);

/// nltk's `_match_enums`: exact matches, hypothesis walked from its end, each taking the last
/// free reference position of its word.
fn match_exact(hyp: Enum, reference: Enum) -> Stage {
    let mut positions: HashMap<&str, Vec<usize>> = HashMap::new();
    for (j, (_, w)) in reference.iter().enumerate() {
        positions.entry(w).or_default().push(j);
    }
    let mut matched = Vec::new();
    let (mut hyp_used, mut ref_used) = (vec![false; hyp.len()], vec![false; reference.len()]);
    for i in (0..hyp.len()).rev() {
        if let Some(j) = positions.get_mut(hyp[i].1.as_str()).and_then(Vec::pop) {
            hyp_used[i] = true;
            ref_used[j] = true;
            matched.push((hyp[i].0, reference[j].0));
        }
    }
    (
        matched,
        keep_unused(hyp, &hyp_used),
        keep_unused(reference, &ref_used),
    )
}

fn keep_unused(v: Enum, used: &[bool]) -> Enum {
    v.into_iter()
        .zip(used)
        .filter(|(_, u)| !**u)
        .map(|(p, _)| p)
        .collect()
}

/// nltk's `_count_chunks` over matches sorted by hypothesis position.
fn count_chunks(matches: &[(usize, usize)]) -> usize {
    1 + matches
        .windows(2)
        .filter(|w| !(w[1].0 == w[0].0 + 1 && w[1].1 == w[0].1 + 1))
        .count()
}

impl<'a> Meteor<'a> {
    /// A scorer with the given weights.
    pub fn new(wordnet: &'a WordNet, params: MeteorParams) -> Self {
        Self {
            wordnet,
            params,
            synonyms: HashMap::new(),
        }
    }

    /// The word itself and the single-word lemma names of its synsets.
    fn synonyms_of(&mut self, word: &str) -> Result<&[String], EvalError> {
        if !self.synonyms.contains_key(word) {
            let mut s = self.wordnet.synonyms(word)?;
            s.retain(|n| !n.contains('_'));
            s.insert(word.to_string());
            self.synonyms
                .insert(word.to_string(), s.into_iter().collect());
        }
        Ok(&self.synonyms[word])
    }

    /// nltk's `_enum_wordnetsyn_match`: a hypothesis word matches the free reference position
    /// (the last one, of the synonym whose last position is furthest) of any of its synonyms.
    fn match_synonyms(&mut self, hyp: Enum, reference: Enum) -> Result<Stage, EvalError> {
        let mut positions: HashMap<String, Vec<usize>> = HashMap::new();
        for (j, (_, w)) in reference.iter().enumerate() {
            positions.entry(w.clone()).or_default().push(j);
        }
        let mut matched = Vec::new();
        let (mut hyp_used, mut ref_used) = (vec![false; hyp.len()], vec![false; reference.len()]);
        for i in (0..hyp.len()).rev() {
            let mut best: Option<(usize, &str)> = None;
            for syn in self.synonyms_of(&hyp[i].1)? {
                if let Some(&j) = positions.get(syn.as_str()).and_then(|p| p.last())
                    && best.is_none_or(|(b, _)| j > b)
                {
                    best = Some((j, syn));
                }
            }
            if let Some((j, syn)) = best {
                let syn = syn.to_string();
                if let Some(p) = positions.get_mut(&syn) {
                    p.pop();
                }
                hyp_used[i] = true;
                ref_used[j] = true;
                matched.push((hyp[i].0, reference[j].0));
            }
        }
        Ok((
            matched,
            keep_unused(hyp, &hyp_used),
            keep_unused(reference, &ref_used),
        ))
    }

    /// The alignment of nltk's `align_words`: (hypothesis position, reference position) pairs
    /// from the exact, stem and synonym stages, sorted by hypothesis position.
    pub fn align(
        &mut self,
        hyp: &[&str],
        reference: &[&str],
    ) -> Result<Vec<(usize, usize)>, EvalError> {
        let en = |s: &[&str]| -> Enum { s.iter().map(|w| w.to_lowercase()).enumerate().collect() };
        let (mut all, h, r) = match_exact(en(hyp), en(reference));
        let stem =
            |v: Enum| -> Enum { v.into_iter().map(|(i, w)| (i, porter::stem(&w))).collect() };
        let (stems, h, r) = match_exact(stem(h), stem(r));
        let (syns, _, _) = self.match_synonyms(h, r)?;
        all.extend(stems);
        all.extend(syns);
        all.sort_by_key(|m| m.0);
        Ok(all)
    }

    /// nltk's `single_meteor_score(reference, hypothesis)`.
    pub fn single(&mut self, hyp: &[&str], reference: &[&str]) -> Result<f64, EvalError> {
        let matches = self.align(hyp, reference)?;
        let m = matches.len();
        if m == 0 || hyp.is_empty() || reference.is_empty() {
            return Ok(0.0);
        }
        let MeteorParams { alpha, beta, gamma } = self.params;
        let precision = m as f64 / hyp.len() as f64;
        let recall = m as f64 / reference.len() as f64;
        let fmean = (precision * recall) / (alpha * precision + (1.0 - alpha) * recall);
        let frag = count_chunks(&matches) as f64 / m as f64;
        let penalty = gamma * frag.powf(beta);
        Ok((1.0 - penalty) * fmean)
    }

    /// nltk's `meteor_score(references, hypothesis)`: the best score over the references.
    pub fn segment(&mut self, hyp: &[&str], references: &[Vec<&str>]) -> Result<f64, EvalError> {
        if references.is_empty() {
            return Err(EvalError::Invalid(
                "METEOR: a segment has no reference".into(),
            ));
        }
        let mut best = f64::NEG_INFINITY;
        for r in references {
            best = best.max(self.single(hyp, r)?);
        }
        Ok(best)
    }
}

/// Corpus METEOR: the mean over segments of [`Meteor::segment`], tokens split on whitespace.
/// Returns `(mean, per segment)`.
pub fn meteor<S: AsRef<str>, R: AsRef<str>>(
    hyps: &[S],
    refs: &[Vec<R>],
    wordnet: &WordNet,
    params: MeteorParams,
) -> Result<(f64, Vec<f64>), EvalError> {
    EvalError::check_lengths("meteor", hyps.len(), refs.len())?;
    let mut scorer = Meteor::new(wordnet, params);
    let mut per = Vec::with_capacity(hyps.len());
    for (k, (h, rs)) in hyps.iter().zip(refs).enumerate() {
        let h: Vec<&str> = py_split(h.as_ref()).collect();
        let rs: Vec<Vec<&str>> = rs.iter().map(|r| py_split(r.as_ref()).collect()).collect();
        let s = scorer
            .segment(&h, &rs)
            .map_err(|e| EvalError::Invalid(format!("segment {}: {e}", k + 1)))?;
        per.push(s);
    }
    Ok((per.iter().sum::<f64>() / per.len() as f64, per))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_count_runs_adjacent_in_both() {
        assert_eq!(count_chunks(&[(0, 0), (1, 1), (2, 2)]), 1);
        assert_eq!(count_chunks(&[(0, 0), (1, 2), (2, 3)]), 2);
        assert_eq!(count_chunks(&[(0, 3), (1, 0), (2, 1)]), 2);
        assert_eq!(count_chunks(&[(0, 0)]), 1);
    }

    #[test]
    fn exact_stage_takes_last_free_reference_position_from_the_end() {
        let en = |s: &str| -> Enum { s.split(' ').map(str::to_string).enumerate().collect() };
        let (m, h, r) = match_exact(en("a b a"), en("a a c"));
        assert_eq!(m, vec![(2, 1), (0, 0)]);
        assert_eq!(h, vec![(1, "b".to_string())]);
        assert_eq!(r, vec![(2, "c".to_string())]);
    }
}
