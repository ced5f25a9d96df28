//! Corpus BLEU compatible with sacrebleu 2.x defaults: `13a` tokenization (mteval-v13a),
//! case-sensitive, n-grams up to 4, `exp` smoothing, brevity penalty from the closest reference
//! length (ties → the shorter), any number of references per segment.
//!
//! Statistics are summed over the corpus: for each order `n`, matches are hypothesis n-gram
//! counts clipped by the largest count in any one reference. With `p_n = 100·m_n / t_n`, a zero
//! `m_n` becomes `100 / (2^k · t_n)` for the `k`-th such order (`exp` smoothing), and
//! `BLEU = BP · exp(mean log p_n)`, `BP = exp(1 − r/c)` when `c < r`. No match at any order gives
//! 0, as sacrebleu does.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;

use crate::EvalError;

/// Highest n-gram order.
pub const MAX_ORDER: usize = 4;

/// Python's `str.isspace` set: Unicode White_Space plus the ASCII separators 0x1C–0x1F, which
/// `str.split()` also splits on.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Split on runs of Python whitespace (Python's `str.split()`).
pub fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|t| !t.is_empty())
}

fn regexes() -> &'static [(Regex, &'static str); 4] {
    static RE: OnceLock<[(Regex, &'static str); 4]> = OnceLock::new();
    RE.get_or_init(|| {
        let re = |p: &str| Regex::new(p).expect("constant pattern");
        [
            // punctuation and symbols: { | } ~ [ \ ] ^ _ ` space ! " # $ % & ( ) * + : ; < = > ? @ /
            (re(r"([{-~\[-` -&(-+:-@/])"), " $1 "),
            // period and comma unless preceded by a digit
            (re(r"([^0-9])([.,])"), "$1 $2 "),
            // period and comma unless followed by a digit
            (re(r"([.,])([^0-9])"), " $1 $2"),
            // dash preceded by a digit
            (re(r"([0-9])(-)"), "$1 $2 "),
        ]
    })
}

/// sacrebleu's `13a` tokenizer: the mteval-v13a normalization, then the regexp tokenizer; tokens
/// joined by single spaces.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut line = format!(" {line} ");
    for (re, rep) in regexes() {
        line = re.replace_all(&line, *rep).into_owned();
    }
    py_split(&line).collect::<Vec<_>>().join(" ")
}

fn ngrams(tokens: &[&str]) -> HashMap<Vec<String>, usize> {
    let mut out = HashMap::new();
    for n in 1..=MAX_ORDER {
        for w in tokens.windows(n) {
            *out.entry(w.iter().map(|s| s.to_string()).collect())
                .or_insert(0) += 1;
        }
    }
    out
}

/// A BLEU result with its sufficient statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BleuScore {
    /// BLEU in [0, 100].
    pub score: f64,
    /// Clipped matches per order.
    pub correct: [usize; MAX_ORDER],
    /// Hypothesis n-grams per order.
    pub total: [usize; MAX_ORDER],
    /// Smoothed precisions per order, in %.
    pub precisions: [f64; MAX_ORDER],
    /// Brevity penalty.
    pub bp: f64,
    /// Total hypothesis length (tokens).
    pub sys_len: usize,
    /// Total effective reference length (tokens).
    pub ref_len: usize,
}

/// Corpus BLEU of `hyps` against `refs[i]`, the references of segment `i` (at least one each).
/// `lowercase` lowercases everything first (sacrebleu `-lc`).
pub fn corpus_bleu<S: AsRef<str>, R: AsRef<str>>(
    hyps: &[S],
    refs: &[Vec<R>],
    lowercase: bool,
) -> Result<BleuScore, EvalError> {
    EvalError::check_lengths("bleu", hyps.len(), refs.len())?;
    let prep = |s: &str| {
        let s = if lowercase {
            s.to_lowercase()
        } else {
            s.to_string()
        };
        tokenize_13a(s.trim_end_matches(is_py_space))
    };
    let mut correct = [0usize; MAX_ORDER];
    let mut total = [0usize; MAX_ORDER];
    let (mut sys_len, mut ref_len) = (0usize, 0usize);
    for (i, (h, rs)) in hyps.iter().zip(refs).enumerate() {
        if rs.is_empty() {
            return Err(EvalError::Invalid(format!(
                "bleu: segment {i} has no reference"
            )));
        }
        let mut ref_counts: HashMap<Vec<String>, usize> = HashMap::new();
        let mut ref_lens = Vec::with_capacity(rs.len());
        for r in rs {
            let r = prep(r.as_ref());
            let toks: Vec<&str> = r.split(' ').filter(|t| !t.is_empty()).collect();
            ref_lens.push(toks.len());
            for (g, c) in ngrams(&toks) {
                let e = ref_counts.entry(g).or_insert(0);
                *e = (*e).max(c);
            }
        }
        let h = prep(h.as_ref());
        let toks: Vec<&str> = h.split(' ').filter(|t| !t.is_empty()).collect();
        let hl = toks.len();
        // closest reference length, ties to the shorter
        let closest = ref_lens
            .iter()
            .copied()
            .min_by_key(|&r| (r.abs_diff(hl), r))
            .expect("at least one reference");
        sys_len += hl;
        ref_len += closest;
        for (g, c) in ngrams(&toks) {
            let n = g.len() - 1;
            total[n] += c;
            if let Some(&rc) = ref_counts.get(&g) {
                correct[n] += c.min(rc);
            }
        }
    }
    Ok(from_stats(correct, total, sys_len, ref_len))
}

/// BLEU from summed statistics (sacrebleu `compute_bleu`, `exp` smoothing).
pub fn from_stats(
    correct: [usize; MAX_ORDER],
    total: [usize; MAX_ORDER],
    sys_len: usize,
    ref_len: usize,
) -> BleuScore {
    let bp = if sys_len < ref_len {
        if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    let mut precisions = [0.0; MAX_ORDER];
    let mut score = 0.0;
    if correct.iter().any(|&c| c > 0) {
        let mut smooth = 1.0;
        for n in 0..MAX_ORDER {
            if total[n] == 0 {
                break;
            }
            precisions[n] = if correct[n] == 0 {
                smooth *= 2.0;
                100.0 / (smooth * total[n] as f64)
            } else {
                100.0 * correct[n] as f64 / total[n] as f64
            };
        }
        // sacrebleu's my_log: log(0) counts as −9999999999
        let logs: f64 = precisions
            .iter()
            .map(|&p| if p > 0.0 { p.ln() } else { -9_999_999_999.0 })
            .sum();
        score = bp * (logs / MAX_ORDER as f64).exp();
    }
    BleuScore {
        score,
        correct,
        total,
        precisions,
        bp,
        sys_len,
        ref_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_cases() {
        assert_eq!(tokenize_13a("Hello, world."), "Hello , world .");
        assert_eq!(
            tokenize_13a("It costs $3.50, ok?"),
            "It costs $ 3.50 , ok ?"
        );
        assert_eq!(tokenize_13a("1-2 a-b &amp; x"), "1 - 2 a-b & x");
    }

    #[test]
    fn identical_corpus_scores_100() {
        let h = ["the cat sat on the mat"];
        let r = vec![vec!["the cat sat on the mat"]];
        let s = corpus_bleu(&h, &r, false).unwrap();
        assert!((s.score - 100.0).abs() < 1e-12);
        assert!(corpus_bleu(&h, &[] as &[Vec<&str>], false).is_err());
    }
}
