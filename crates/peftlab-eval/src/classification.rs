//! Classification and regression metrics, matching scikit-learn (accuracy, F1, Matthews
//! correlation) and scipy.stats (Pearson, Spearman).
//!
//! Conventions of the references, kept on purpose:
//! - F1 with no positive predictions and no positive labels is 0 (scikit-learn's
//!   `zero_division` default);
//! - macro F1 averages over the union of classes seen in labels and predictions;
//! - the Matthews correlation of a constant prediction (or constant labels) is 0;
//! - Pearson and Spearman of a constant input are NaN (scipy returns NaN and warns), and need at
//!   least two items (scipy raises).

use std::collections::BTreeSet;

use crate::EvalError;

/// Fraction of `pred[i] == label[i]`.
pub fn accuracy(pred: &[usize], label: &[usize]) -> Result<f64, EvalError> {
    EvalError::check_lengths("accuracy", pred.len(), label.len())?;
    let hits = pred.iter().zip(label).filter(|(p, l)| p == l).count();
    Ok(hits as f64 / pred.len() as f64)
}

/// `(tp, fp, fn)` of class `c`.
fn counts(pred: &[usize], label: &[usize], c: usize) -> (usize, usize, usize) {
    let mut t = (0, 0, 0);
    for (&p, &l) in pred.iter().zip(label) {
        match (p == c, l == c) {
            (true, true) => t.0 += 1,
            (true, false) => t.1 += 1,
            (false, true) => t.2 += 1,
            _ => {}
        }
    }
    t
}

fn f1_of(tp: usize, fp: usize, fn_: usize) -> f64 {
    let denom = 2 * tp + fp + fn_;
    if denom == 0 {
        0.0
    } else {
        2.0 * tp as f64 / denom as f64
    }
}

/// F1 of the class `positive` (scikit-learn `f1_score(average="binary", pos_label=positive)`).
pub fn f1_binary(pred: &[usize], label: &[usize], positive: usize) -> Result<f64, EvalError> {
    EvalError::check_lengths("f1", pred.len(), label.len())?;
    let (tp, fp, fn_) = counts(pred, label, positive);
    Ok(f1_of(tp, fp, fn_))
}

/// Unweighted mean of per-class F1 over the classes present in labels or predictions
/// (scikit-learn `f1_score(average="macro")`).
pub fn f1_macro(pred: &[usize], label: &[usize]) -> Result<f64, EvalError> {
    EvalError::check_lengths("f1_macro", pred.len(), label.len())?;
    let classes: BTreeSet<usize> = pred.iter().chain(label).copied().collect();
    let sum: f64 = classes
        .iter()
        .map(|&c| {
            let (tp, fp, fn_) = counts(pred, label, c);
            f1_of(tp, fp, fn_)
        })
        .sum();
    Ok(sum / classes.len() as f64)
}

/// Matthews correlation coefficient, multiclass (scikit-learn `matthews_corrcoef`):
/// `(c·s − Σ p_k t_k) / √((s² − Σ p_k²)(s² − Σ t_k²))`, 0 when a factor is 0.
pub fn matthews_corrcoef(pred: &[usize], label: &[usize]) -> Result<f64, EvalError> {
    EvalError::check_lengths("matthews_corrcoef", pred.len(), label.len())?;
    let classes: Vec<usize> = pred
        .iter()
        .chain(label)
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let idx = |c: usize| classes.binary_search(&c).expect("class collected above");
    let k = classes.len();
    let (mut t_sum, mut p_sum) = (vec![0f64; k], vec![0f64; k]);
    let mut correct = 0f64;
    for (&p, &l) in pred.iter().zip(label) {
        t_sum[idx(l)] += 1.0;
        p_sum[idx(p)] += 1.0;
        if p == l {
            correct += 1.0;
        }
    }
    let s = pred.len() as f64;
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let cov_ytyp = correct * s - dot(&t_sum, &p_sum);
    let cov_ypyp = s * s - dot(&p_sum, &p_sum);
    let cov_ytyt = s * s - dot(&t_sum, &t_sum);
    if cov_ypyp * cov_ytyt == 0.0 {
        return Ok(0.0);
    }
    Ok(cov_ytyp / (cov_ytyt * cov_ypyp).sqrt())
}

fn correlation_input(what: &'static str, x: &[f64], y: &[f64]) -> Result<(), EvalError> {
    EvalError::check_lengths(what, x.len(), y.len())?;
    if x.len() < 2 {
        return Err(EvalError::Invalid(format!(
            "{what}: needs at least 2 items"
        )));
    }
    if let Some(i) = x.iter().chain(y).position(|v| !v.is_finite()) {
        return Err(EvalError::Invalid(format!(
            "{what}: item {} is not finite",
            i % x.len()
        )));
    }
    Ok(())
}

/// Pearson's r (scipy `pearsonr`, computed as scipy does: centre, scale by the largest
/// magnitude, normalize, dot, clip to [−1, 1]). NaN for a constant input.
pub fn pearson(x: &[f64], y: &[f64]) -> Result<f64, EvalError> {
    correlation_input("pearson", x, y)?;
    Ok(pearson_unchecked(x, y))
}

fn pearson_unchecked(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let centre = |v: &[f64]| {
        let m = v.iter().sum::<f64>() / n;
        let c: Vec<f64> = v.iter().map(|a| a - m).collect();
        let max = c.iter().fold(0f64, |a, b| a.max(b.abs()));
        c.into_iter().map(|a| a / max).collect::<Vec<_>>()
    };
    let (xm, ym) = (centre(x), centre(y));
    let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt();
    let (nx, ny) = (norm(&xm), norm(&ym));
    let r: f64 = xm.iter().zip(&ym).map(|(a, b)| (a / nx) * (b / ny)).sum();
    if r.is_nan() { r } else { r.clamp(-1.0, 1.0) }
}

/// Ranks 1..n with ties given their average rank (scipy `rankdata(method="average")`).
pub fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = avg;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman's ρ: Pearson's r of the average ranks (scipy `spearmanr`). NaN for a constant input.
pub fn spearman(x: &[f64], y: &[f64]) -> Result<f64, EvalError> {
    correlation_input("spearman", x, y)?;
    Ok(pearson_unchecked(&average_ranks(x), &average_ranks(y)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_values() {
        let (p, l) = ([1, 0, 1, 1, 0, 2], [1, 0, 0, 1, 2, 2]);
        assert_eq!(accuracy(&p, &l).unwrap(), 4.0 / 6.0);
        // class 1: tp 2, fp 1, fn 0 → 4/5
        assert_eq!(f1_binary(&p, &l, 1).unwrap(), 0.8);
        assert_eq!(average_ranks(&[3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0]);
        assert_eq!(matthews_corrcoef(&[1, 1, 1], &[0, 1, 0]).unwrap(), 0.0);
        assert!(pearson(&[1.0, 1.0], &[1.0, 2.0]).unwrap().is_nan());
        assert!(
            (pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.5]).unwrap() - 0.997_948_715_788_673_3).abs()
                < 1e-12
        );
        assert_eq!(
            accuracy(&[1], &[1, 2]).unwrap_err(),
            EvalError::LengthMismatch {
                what: "accuracy",
                left: 1,
                right: 2
            }
        );
        assert!(matches!(f1_macro(&[], &[]), Err(EvalError::Empty(_))));
        assert!(
            pearson(&[1.0, f64::NAN], &[1.0, 2.0])
                .unwrap_err()
                .to_string()
                .contains("item 1")
        );
    }
}
