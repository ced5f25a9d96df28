//! Generation metrics of the E2E / GEM evaluation suites, each matching one reference
//! implementation on the same (already tokenized) strings:
//!
//! | metric | matches | notes |
//! |---|---|---|
//! | [`rouge_l`] | pycocoevalcap `Rouge` | LCS F-measure with β = 1.2, best precision and best recall over the references, averaged over segments; tokens from `split(" ")` |
//! | [`cider_d`] | pycocoevalcap `Cider` (CIDEr-D) | n ≤ 4 tf-idf cosine with the Gaussian length penalty (σ = 6), idf from the corpus references, × 10; the reference's length quirk (it counts bigrams) is kept |
//! | [`nist`] | nltk `corpus_nist` | n ≤ 5 information-weighted precision with NIST's length penalty (β so that 2/3 length gives 0.5) |
//!
//! Tokenization is the caller's (the E2E script lowercases and tokenizes first).

use std::collections::{BTreeMap, BTreeSet};

use crate::EvalError;
use crate::bleu::py_split;

fn lcs(a: &[&str], b: &[&str]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    for x in a {
        let mut cur = vec![0usize; b.len() + 1];
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                cur[j].max(prev[j + 1])
            };
        }
        prev = cur;
    }
    prev[b.len()]
}

/// ROUGE-L as pycocoevalcap computes it: per segment `F_β` of the best LCS precision and best LCS
/// recall over its references (β = 1.2), then the mean over segments. Returns `(mean, per
/// segment)`.
pub fn rouge_l<S: AsRef<str>, R: AsRef<str>>(
    hyps: &[S],
    refs: &[Vec<R>],
) -> Result<(f64, Vec<f64>), EvalError> {
    EvalError::check_lengths("rouge_l", hyps.len(), refs.len())?;
    const BETA: f64 = 1.2;
    let mut scores = Vec::with_capacity(hyps.len());
    for (i, (h, rs)) in hyps.iter().zip(refs).enumerate() {
        if rs.is_empty() {
            return Err(EvalError::Invalid(format!(
                "rouge_l: segment {i} has no reference"
            )));
        }
        let c: Vec<&str> = h.as_ref().split(' ').collect();
        let (mut p, mut r) = (0f64, 0f64);
        for reference in rs {
            let t: Vec<&str> = reference.as_ref().split(' ').collect();
            let l = lcs(&t, &c) as f64;
            p = p.max(l / c.len() as f64);
            r = r.max(l / t.len() as f64);
        }
        scores.push(if p != 0.0 && r != 0.0 {
            (1.0 + BETA * BETA) * p * r / (r + BETA * BETA * p)
        } else {
            0.0
        });
    }
    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
    Ok((mean, scores))
}

// n-gram tables are ordered maps: the metrics sum floats over them, and a hash map's
// per-instance random order would change the sums' last bits from call to call
type Counts = BTreeMap<Vec<String>, f64>;

fn precook(s: &str, n: usize) -> Counts {
    let w: Vec<&str> = py_split(s).collect();
    let mut c = Counts::new();
    for k in 1..=n {
        for g in w.windows(k) {
            *c.entry(g.iter().map(|x| x.to_string()).collect())
                .or_insert(0.0) += 1.0;
        }
    }
    c
}

/// CIDEr-D as pycocoevalcap computes it. Returns `(mean, per segment)`.
pub fn cider_d<S: AsRef<str>, R: AsRef<str>>(
    hyps: &[S],
    refs: &[Vec<R>],
) -> Result<(f64, Vec<f64>), EvalError> {
    EvalError::check_lengths("cider_d", hyps.len(), refs.len())?;
    const N: usize = 4;
    const SIGMA: f64 = 6.0;
    let crefs: Vec<Vec<Counts>> = refs
        .iter()
        .map(|rs| rs.iter().map(|r| precook(r.as_ref(), N)).collect())
        .collect();
    let ctest: Vec<Counts> = hyps.iter().map(|h| precook(h.as_ref(), N)).collect();
    if let Some(i) = crefs.iter().position(Vec::is_empty) {
        return Err(EvalError::Invalid(format!(
            "cider_d: segment {i} has no reference"
        )));
    }
    let mut df: BTreeMap<&Vec<String>, f64> = BTreeMap::new();
    for rs in &crefs {
        let seen: BTreeSet<&Vec<String>> = rs.iter().flat_map(|r| r.keys()).collect();
        for g in seen {
            *df.entry(g).or_insert(0.0) += 1.0;
        }
    }
    let ref_len = (crefs.len() as f64).ln();
    // tf-idf vectors per order, their norms, and the reference's "length" (bigram count)
    type Vectors<'a> = (Vec<BTreeMap<&'a Vec<String>, f64>>, [f64; N], f64);
    fn vec_of<'a>(c: &'a Counts, df: &BTreeMap<&Vec<String>, f64>, ref_len: f64) -> Vectors<'a> {
        let mut vec: Vec<BTreeMap<&Vec<String>, f64>> = vec![BTreeMap::new(); N];
        let mut norm = [0.0f64; N];
        let mut length = 0.0;
        for (g, &tf) in c {
            let d = df.get(g).copied().unwrap_or(0.0).max(1.0).ln();
            let n = g.len() - 1;
            let v = tf * (ref_len - d);
            vec[n].insert(g, v);
            norm[n] += v * v;
            if n == 1 {
                length += tf;
            }
        }
        (vec, norm.map(f64::sqrt), length)
    }
    let mut scores = Vec::with_capacity(hyps.len());
    for (test, rs) in ctest.iter().zip(&crefs) {
        let (vh, nh, lh) = vec_of(test, &df, ref_len);
        let mut score = [0.0f64; N];
        for r in rs {
            let (vr, nr, lr) = vec_of(r, &df, ref_len);
            let delta = lh - lr;
            for n in 0..N {
                let mut val: f64 = vh[n]
                    .iter()
                    .map(|(g, &x)| {
                        let y = vr[n].get(g).copied().unwrap_or(0.0);
                        x.min(y) * y
                    })
                    .sum();
                if nh[n] != 0.0 && nr[n] != 0.0 {
                    val /= nh[n] * nr[n];
                }
                val *= std::f64::consts::E.powf(-(delta * delta) / (2.0 * SIGMA * SIGMA));
                score[n] += val;
            }
        }
        let avg = score.iter().sum::<f64>() / N as f64 / rs.len() as f64 * 10.0;
        scores.push(avg);
    }
    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
    Ok((mean, scores))
}

fn ngram_counts<'a>(t: &'a [&'a str], n: usize) -> BTreeMap<&'a [&'a str], usize> {
    let mut c = BTreeMap::new();
    if t.len() >= n {
        for g in t.windows(n) {
            *c.entry(g).or_insert(0) += 1;
        }
    }
    c
}

/// Corpus NIST with n-grams up to `n` (nltk `corpus_nist`, default `n = 5`), on whitespace
/// tokens. Errors when no hypothesis has `n` tokens (nltk divides by zero there).
pub fn nist<S: AsRef<str>, R: AsRef<str>>(
    hyps: &[S],
    refs: &[Vec<R>],
    n: usize,
) -> Result<f64, EvalError> {
    EvalError::check_lengths("nist", hyps.len(), refs.len())?;
    let hyps: Vec<Vec<&str>> = hyps
        .iter()
        .map(|h| py_split(h.as_ref()).collect())
        .collect();
    let refs: Vec<Vec<Vec<&str>>> = refs
        .iter()
        .map(|rs| rs.iter().map(|r| py_split(r.as_ref()).collect()).collect())
        .collect();
    let mut freq: BTreeMap<&[&str], usize> = BTreeMap::new();
    let mut total_ref_words = 0usize;
    for rs in &refs {
        for r in rs {
            for i in 1..=n {
                for (g, c) in ngram_counts(r, i) {
                    *freq.entry(g).or_insert(0) += c;
                }
            }
            total_ref_words += r.len();
        }
    }
    let info = |g: &[&str]| -> f64 {
        let m = &g[..g.len() - 1];
        let num = if !m.is_empty() {
            freq.get(m).copied().unwrap_or(total_ref_words)
        } else {
            total_ref_words
        };
        (num as f64 / freq[g] as f64).log2()
    };
    let (mut l_ref, mut l_sys) = (0usize, 0usize);
    let mut precision_sum = 0.0;
    for i in 1..=n {
        let (mut num_i, mut den_i) = (0.0f64, 0usize);
        for (h, rs) in hyps.iter().zip(&refs) {
            if rs.is_empty() {
                return Err(EvalError::Invalid(
                    "nist: a segment has no reference".into(),
                ));
            }
            let hc = ngram_counts(h, i);
            // nltk: max over (precision, numerator, denominator, ref_len) tuples
            let mut best: Option<(f64, f64, usize, usize)> = None;
            for r in rs {
                let rc = ngram_counts(r, i);
                let num: f64 = hc
                    .iter()
                    .filter_map(|(g, &c)| rc.get(g).map(|&rcount| info(g) * c.min(rcount) as f64))
                    .sum();
                let den: usize = hc.values().sum();
                let prec = if den == 0 { 0.0 } else { num / den as f64 };
                let cand = (prec, num, den, r.len());
                let better = match best {
                    None => true,
                    Some(b) => {
                        cand.0 > b.0
                            || (cand.0 == b.0
                                && (cand.1 > b.1
                                    || (cand.1 == b.1
                                        && (cand.2 > b.2 || (cand.2 == b.2 && cand.3 > b.3)))))
                    }
                };
                if better {
                    best = Some(cand);
                }
            }
            let (_, num, den, rl) = best.expect("references checked non-empty");
            num_i += num;
            den_i += den;
            l_ref += rl;
            l_sys += h.len();
        }
        if den_i == 0 {
            return Err(EvalError::Invalid(format!(
                "nist: no hypothesis has {i} tokens (nltk divides by zero here)"
            )));
        }
        precision_sum += num_i / den_i as f64;
    }
    Ok(precision_sum * nist_length_penalty(l_ref, l_sys))
}

/// NIST's length penalty `exp(β·ln²(min(c/r, 1)))`, `β = ln 0.5 / ln² 1.5`.
pub fn nist_length_penalty(ref_len: usize, hyp_len: usize) -> f64 {
    let ratio = hyp_len as f64 / ref_len as f64;
    if ratio > 0.0 && ratio < 1.0 {
        let beta = 0.5f64.ln() / 1.5f64.ln().powi(2);
        (beta * ratio.ln().powi(2)).exp()
    } else {
        ratio.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_checks() {
        assert_eq!(lcs(&["a", "b", "c", "d"], &["b", "d", "a"]), 2);
        let (m, _) = rouge_l(&["a b c"], &[vec!["a b c"]]).unwrap();
        assert!((m - 1.0).abs() < 1e-12);
        assert!(cider_d(&["a"], &[Vec::<&str>::new()]).is_err());
        assert_eq!(nist_length_penalty(10, 10), 1.0);
        assert!((nist_length_penalty(3, 2) - 0.5).abs() < 1e-12);
    }
}
