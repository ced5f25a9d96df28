//! Translation edit rate, sacrebleu 2.x's default TER (a port of its Tercom re-implementation):
//! lowercased, whitespace-tokenized; edits = shifts + beam-restricted Levenshtein distance after
//! greedily applying the best block shift while it lowers the distance (blocks of ≤ 10 words,
//! ≤ 50 positions away, at most 1000 candidate shifts per segment, beam width 25 around the
//! length-scaled diagonal); candidates are ranked as sacrebleu ranks them (gain, then longer
//! block, earlier start, earlier target, then the shifted word list). With several references a
//! segment takes the fewest edits and the average reference length; corpus TER is
//! `100 · Σ edits / Σ lengths`.

use serde::Serialize;

use crate::EvalError;
use crate::bleu::{is_py_space, py_split};

const MAX_SHIFT_SIZE: usize = 10;
const MAX_SHIFT_DIST: usize = 50;
const BEAM_WIDTH: usize = 25;
const MAX_SHIFT_CANDIDATES: usize = 1000;
const INF: i64 = 10_000_000_000_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Nop,
    Sub,
    Ins,
    Del,
    Undef,
}

/// Beam-restricted edit distance from `hyp` (rows) to `reference` (columns) and its trace.
fn edit_distance(hyp: &[&str], reference: &[&str]) -> (i64, Vec<Op>) {
    let (nh, nr) = (hyp.len(), reference.len());
    let mut dist = vec![vec![(INF, Op::Undef); nr + 1]; nh + 1];
    for (j, cell) in dist[0].iter_mut().enumerate() {
        *cell = (j as i64, Op::Ins);
    }
    let ratio = if nh > 0 { nr as f64 / nh as f64 } else { 1.0 };
    let beam = if (BEAM_WIDTH as f64) < ratio / 2.0 {
        (ratio / 2.0 + BEAM_WIDTH as f64).ceil() as usize
    } else {
        BEAM_WIDTH
    };
    for i in 1..=nh {
        let diag = (i as f64 * ratio).floor() as usize;
        let min_j = diag.saturating_sub(beam);
        let max_j = if i == nh {
            nr + 1
        } else {
            (nr + 1).min(diag + beam)
        };
        for j in min_j..max_j {
            if j == 0 {
                dist[i][0] = (dist[i - 1][0].0 + 1, Op::Del);
                continue;
            }
            let (cost_sub, op_sub) = if hyp[i - 1] == reference[j - 1] {
                (0, Op::Nop)
            } else {
                (1, Op::Sub)
            };
            let ops = [
                (dist[i - 1][j - 1].0 + cost_sub, op_sub),
                (dist[i - 1][j].0 + 1, Op::Del),
                (dist[i][j - 1].0 + 1, Op::Ins),
            ];
            for (cost, op) in ops {
                if dist[i][j].0 > cost {
                    dist[i][j] = (cost, op);
                }
            }
        }
    }
    let mut trace = Vec::new();
    let (mut i, mut j) = (nh, nr);
    while i > 0 || j > 0 {
        let op = dist[i][j].1;
        trace.push(op);
        match op {
            Op::Sub | Op::Nop => {
                i -= 1;
                j -= 1;
            }
            Op::Ins => j -= 1,
            Op::Del => i -= 1,
            Op::Undef => unreachable!("the last row spans every column"),
        }
    }
    trace.reverse();
    (dist[nh][nr].0, trace)
}

/// Alignment (reference position → hypothesis position, −1 before the first word) and error
/// flags, from a trace read as rewriting the reference into the hypothesis.
fn alignment(trace: &[Op]) -> (Vec<i64>, Vec<u8>, Vec<u8>) {
    let (mut ph, mut pr) = (-1i64, -1i64);
    let (mut align, mut ref_err, mut hyp_err) = (Vec::new(), Vec::new(), Vec::new());
    for &op in trace {
        // flipped: insertions become deletions and vice versa
        match op {
            Op::Nop | Op::Sub => {
                ph += 1;
                pr += 1;
                align.push(ph);
                let e = u8::from(op == Op::Sub);
                hyp_err.push(e);
                ref_err.push(e);
            }
            Op::Del => {
                ph += 1;
                hyp_err.push(1);
            }
            Op::Ins => {
                pr += 1;
                align.push(ph);
                ref_err.push(1);
            }
            Op::Undef => {}
        }
    }
    debug_assert_eq!(align.len() as i64, pr + 1);
    (align, ref_err, hyp_err)
}

fn perform_shift<'a>(w: &[&'a str], start: usize, len: usize, target: usize) -> Vec<&'a str> {
    let mut out = Vec::with_capacity(w.len());
    if target < start {
        out.extend_from_slice(&w[..target]);
        out.extend_from_slice(&w[start..start + len]);
        out.extend_from_slice(&w[target..start]);
        out.extend_from_slice(&w[start + len..]);
    } else if target > start + len {
        out.extend_from_slice(&w[..start]);
        out.extend_from_slice(&w[start + len..target]);
        out.extend_from_slice(&w[start..start + len]);
        out.extend_from_slice(&w[target..]);
    } else {
        // Python slices clamp: `len + target` may pass the end here
        let cut = (len + target).min(w.len());
        out.extend_from_slice(&w[..start]);
        out.extend_from_slice(&w[start + len..cut.max(start + len)]);
        out.extend_from_slice(&w[start..start + len]);
        out.extend_from_slice(&w[cut..]);
    }
    out
}

/// The best shift of `hyp` towards `reference`: `(gain, shifted words)`, and the updated count
/// of evaluated candidates.
fn best_shift<'a>(
    hyp: &[&'a str],
    reference: &[&str],
    checked: &mut usize,
) -> Option<(i64, Vec<&'a str>)> {
    let (pre, trace) = edit_distance(hyp, reference);
    let (align, ref_err, hyp_err) = alignment(&trace);
    type Cand<'b> = (i64, usize, i64, i64, Vec<&'b str>);
    let mut best: Option<Cand<'a>> = None;
    let (nh, nr) = (hyp.len(), reference.len());
    'outer: for sh in 0..nh {
        for sr in 0..nr {
            if sr.abs_diff(sh) > MAX_SHIFT_DIST {
                continue;
            }
            let mut len = 0;
            while hyp[sh + len] == reference[sr + len] && len < MAX_SHIFT_SIZE {
                len += 1;
                // candidate (sh, sr, len)
                let skip = hyp_err[sh..sh + len].iter().all(|&e| e == 0)
                    || ref_err[sr..sr + len].iter().all(|&e| e == 0)
                    || (sh as i64 <= align[sr] && align[sr] < (sh + len) as i64);
                if !skip {
                    let mut prev_idx: i64 = -1;
                    for offset in -1..len as i64 {
                        let pos = sr as i64 + offset;
                        let idx = if pos == -1 {
                            0
                        } else if (pos as usize) < align.len() {
                            align[pos as usize] + 1
                        } else {
                            break;
                        };
                        if idx == prev_idx {
                            continue;
                        }
                        prev_idx = idx;
                        let shifted = perform_shift(hyp, sh, len, idx as usize);
                        let cand: Cand<'a> = (
                            pre - edit_distance(&shifted, reference).0,
                            len,
                            -(sh as i64),
                            -idx,
                            shifted,
                        );
                        *checked += 1;
                        if best.as_ref().is_none_or(|b| cand > *b) {
                            best = Some(cand);
                        }
                    }
                    // sacrebleu checks the budget after each pair it did not skip
                    if *checked >= MAX_SHIFT_CANDIDATES {
                        break 'outer;
                    }
                }
                if nh == sh + len || nr == sr + len {
                    break;
                }
            }
        }
    }
    best.map(|(gain, _, _, _, words)| (gain, words))
}

/// `(edits, reference length)` of one hypothesis against one reference (tokens).
pub fn edits(hyp: &[&str], reference: &[&str]) -> (i64, usize) {
    if reference.is_empty() {
        return (hyp.len() as i64, 0);
    }
    let mut words = hyp.to_vec();
    let mut shifts = 0;
    let mut checked = 0;
    while let Some((gain, shifted)) = best_shift(&words, reference, &mut checked) {
        if checked >= MAX_SHIFT_CANDIDATES || gain <= 0 {
            break;
        }
        shifts += 1;
        words = shifted;
    }
    (shifts + edit_distance(&words, reference).0, reference.len())
}

/// A TER result with its statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TerScore {
    /// TER in % (can exceed 100).
    pub score: f64,
    /// Total edits.
    pub num_edits: f64,
    /// Total (average per segment) reference length.
    pub ref_length: f64,
}

fn prep(s: &str) -> String {
    // TercomTokenizer defaults: lowercase, collapse whitespace
    py_split(&s.trim_end_matches(is_py_space).to_lowercase())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Corpus TER of `hyps` against `refs[i]` (sacrebleu `TER()` defaults).
pub fn corpus_ter<S: AsRef<str>, R: AsRef<str>>(
    hyps: &[S],
    refs: &[Vec<R>],
) -> Result<TerScore, EvalError> {
    EvalError::check_lengths("ter", hyps.len(), refs.len())?;
    let (mut total_edits, mut total_len) = (0f64, 0f64);
    for (i, (h, rs)) in hyps.iter().zip(refs).enumerate() {
        if rs.is_empty() {
            return Err(EvalError::Invalid(format!(
                "ter: segment {i} has no reference"
            )));
        }
        let h = prep(h.as_ref());
        let hw: Vec<&str> = h.split(' ').filter(|t| !t.is_empty()).collect();
        let mut best = i64::MAX;
        let mut lens = 0usize;
        for r in rs {
            let r = prep(r.as_ref());
            let rw: Vec<&str> = r.split(' ').filter(|t| !t.is_empty()).collect();
            let (e, l) = edits(&hw, &rw);
            lens += l;
            best = best.min(e);
        }
        total_edits += best as f64;
        total_len += lens as f64 / rs.len() as f64;
    }
    let score = if total_len > 0.0 {
        total_edits / total_len
    } else if total_edits > 0.0 {
        1.0
    } else {
        0.0
    };
    Ok(TerScore {
        score: 100.0 * score,
        num_edits: total_edits,
        ref_length: total_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_counts_one_edit() {
        // moving "on the mat" costs one shift instead of several substitutions
        let h = ["on", "the", "mat", "the", "cat", "sat"];
        let r = ["the", "cat", "sat", "on", "the", "mat"];
        assert_eq!(edits(&h, &r), (1, 6));
        assert_eq!(edits(&["a", "b"], &[]), (2, 0));
        assert_eq!(edits(&[], &["a", "b"]), (2, 2));
    }
}
