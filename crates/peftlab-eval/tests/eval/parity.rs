//! Parity with the reference implementations on the seeded cases of
//! `scripts/metric_references.py` (scikit-learn 1.9.1, scipy 1.17.1, sacrebleu 2.5.1, nltk 3.10.4,
//! pycocoevalcap 1.2), committed
//! as `tests/fixtures/references.json`. Tolerances:
//! - accuracy, F1, MCC, Pearson, Spearman: 1e-9 relative (f64 sums in a different order);
//!   NaN exactly where scipy gives NaN (constant input);
//! - BLEU: n-gram counts, totals and lengths exactly; the score within 1e-9 (sacrebleu itself
//!   rounds to 0.01 for display);
//! - 13a tokenization: identical strings on 219 lines (generated + edge cases);
//! - TER: edit counts exactly, lengths and score within 1e-9;
//! - Porter stems (nltk `PorterStemmer()`, 2,956 words) and WordNet lemma names of `synsets(w)`
//!   (897 words): identical;
//! - METEOR (nltk `meteor_score`, WordNet 3.0): every segment within 1e-12 (same operations in
//!   the same order; the margin is for `powf`), the corpus mean within 1e-12.
//!
//! The WordNet cases need the fetched database (`cargo xtask fetch --only wordnet`; CI fetches
//! it): skipped with a message without it, except under `CI=true`.

use peftlab_eval::bleu::{corpus_bleu, tokenize_13a};
use peftlab_eval::classification::{
    accuracy, f1_binary, f1_macro, matthews_corrcoef, pearson, spearman,
};
use peftlab_eval::meteor::{MeteorParams, meteor};
use peftlab_eval::porter;
use peftlab_eval::wordnet::WordNet;
use serde_json::Value;
use std::sync::OnceLock;

fn refs() -> Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/references.json"
    );
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn close(got: f64, want: &Value, what: &str) {
    match want.as_f64() {
        None => assert!(got.is_nan(), "{what}: {got}, reference NaN"),
        Some(w) => assert!(
            (got - w).abs() <= 1e-9 * w.abs().max(1.0),
            "{what}: {got} vs reference {w}"
        ),
    }
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

/// Hypotheses and per-segment references of a generation case.
fn corpus(c: &Value) -> (Vec<&str>, Vec<Vec<&str>>) {
    let refs = c["refs"].as_array().unwrap().iter().map(strs).collect();
    (strs(&c["hyps"]), refs)
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn classification_matches_scikit_learn() {
    let r = refs();
    for (i, c) in r["classification"].as_array().unwrap().iter().enumerate() {
        let (p, l) = (usizes(&c["pred"]), usizes(&c["label"]));
        close(
            accuracy(&p, &l).unwrap(),
            &c["accuracy"],
            &format!("case {i} accuracy"),
        );
        close(
            f1_macro(&p, &l).unwrap(),
            &c["f1_macro"],
            &format!("case {i} f1_macro"),
        );
        close(
            matthews_corrcoef(&p, &l).unwrap(),
            &c["mcc"],
            &format!("case {i} mcc"),
        );
        if c.get("f1_binary").is_some() {
            close(
                f1_binary(&p, &l, 1).unwrap(),
                &c["f1_binary"],
                &format!("case {i} f1"),
            );
        }
    }
}

#[test]
fn correlations_match_scipy() {
    let r = refs();
    for (i, c) in r["regression"].as_array().unwrap().iter().enumerate() {
        let (x, y) = (floats(&c["x"]), floats(&c["y"]));
        close(
            pearson(&x, &y).unwrap(),
            &c["pearson"],
            &format!("case {i} pearson"),
        );
        close(
            spearman(&x, &y).unwrap(),
            &c["spearman"],
            &format!("case {i} spearman"),
        );
    }
}

#[test]
fn bleu_matches_sacrebleu() {
    let r = refs();
    for (i, c) in r["bleu"].as_array().unwrap().iter().enumerate() {
        let (hyps, refs) = corpus(c);
        let s = corpus_bleu(&hyps, &refs, c["lowercase"].as_bool().unwrap()).unwrap();
        assert_eq!(s.correct.to_vec(), usizes(&c["counts"]), "case {i} counts");
        assert_eq!(s.total.to_vec(), usizes(&c["totals"]), "case {i} totals");
        assert_eq!(
            s.sys_len as u64,
            c["sys_len"].as_u64().unwrap(),
            "case {i} sys_len"
        );
        assert_eq!(
            s.ref_len as u64,
            c["ref_len"].as_u64().unwrap(),
            "case {i} ref_len"
        );
        close(s.score, &c["bleu"], &format!("case {i} bleu"));
    }
}

#[test]
fn tokenize_13a_matches_sacrebleu() {
    let r = refs();
    let cases = r["tokenize_13a"].as_array().unwrap();
    assert!(cases.len() > 200);
    for c in cases {
        let line = c["line"].as_str().unwrap();
        assert_eq!(
            tokenize_13a(line),
            c["tokens"].as_str().unwrap(),
            "line {line:?}"
        );
    }
}

/// ROUGE-L and CIDEr-D against pycocoevalcap 1.2, NIST against nltk 3.10.4 (`corpus_nist`,
/// n = 5): corpus and per-segment values within 1e-9 relative.
#[test]
fn generation_metrics_match_pycocoevalcap_and_nltk() {
    use peftlab_eval::generation::{cider_d, nist, rouge_l};
    let r = refs();
    for (i, c) in r["generation"].as_array().unwrap().iter().enumerate() {
        let (hyps, refs) = corpus(c);
        let (rl, rl_per) = rouge_l(&hyps, &refs).unwrap();
        close(rl, &c["rouge_l"], &format!("case {i} rouge_l"));
        for (k, (g, w)) in rl_per
            .iter()
            .zip(c["rouge_l_per"].as_array().unwrap())
            .enumerate()
        {
            close(*g, w, &format!("case {i} rouge_l segment {k}"));
        }
        let (cd, cd_per) = cider_d(&hyps, &refs).unwrap();
        close(cd, &c["cider_d"], &format!("case {i} cider_d"));
        for (k, (g, w)) in cd_per
            .iter()
            .zip(c["cider_d_per"].as_array().unwrap())
            .enumerate()
        {
            close(*g, w, &format!("case {i} cider_d segment {k}"));
        }
        close(
            nist(&hyps, &refs, 5).unwrap(),
            &c["nist"],
            &format!("case {i} nist"),
        );
    }
}

/// TER against sacrebleu 2.5.1 `TER()` defaults: total edits and reference length exactly
/// (they are integers and averages of integers), the score within 1e-9; on the BLEU cases and
/// on word-order-scrambled cases that need many shifts, long segments and empty sides.
#[test]
fn ter_matches_sacrebleu() {
    use peftlab_eval::ter::corpus_ter;
    let r = refs();
    let cases = r["bleu"]
        .as_array()
        .unwrap()
        .iter()
        .chain(r["ter"].as_array().unwrap());
    for (i, c) in cases.enumerate() {
        let (hyps, refs) = corpus(c);
        let t = corpus_ter(&hyps, &refs).unwrap();
        assert_eq!(
            t.num_edits,
            c["ter_edits"].as_f64().unwrap(),
            "case {i} edits"
        );
        close(
            t.ref_length,
            &c["ter_ref_length"],
            &format!("case {i} ref length"),
        );
        close(t.score, &c["ter"], &format!("case {i} ter"));
    }
}

#[test]
fn porter_stems_match_nltk() {
    let r = refs();
    let cases = r["porter"].as_array().unwrap();
    assert!(cases.len() > 2_900);
    let bad: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            let (w, want) = (c["word"].as_str().unwrap(), c["stem"].as_str().unwrap());
            let got = porter::stem(w);
            (got != want).then(|| format!("{w}: {got} vs nltk {want}"))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{} differ: {:?}",
        bad.len(),
        &bad[..bad.len().min(20)]
    );
}

/// The fetched WordNet 3.0, opened once for the tests of this file.
fn wordnet() -> Option<&'static WordNet> {
    static WN: OnceLock<Option<WordNet>> = OnceLock::new();
    WN.get_or_init(|| {
        let dir = peftlab_data::fetch::cache_dir().join("data/wordnet-3.0");
        match WordNet::open(&dir) {
            Ok(w) => Some(w),
            Err(e) => {
                let msg = format!("{e}: run `cargo xtask fetch --only wordnet`");
                assert!(std::env::var("CI").is_err(), "{msg}");
                eprintln!("SKIPPED: {msg}");
                None
            }
        }
    })
    .as_ref()
}

#[test]
fn wordnet_synsets_match_nltk() {
    let Some(wn) = wordnet() else { return };
    // every index offset lands on its synset (a CRLF copy of the files would not)
    assert!(wn.verify().unwrap() > 200_000);
    let r = refs();
    for c in r["wordnet"].as_array().unwrap() {
        let w = c["word"].as_str().unwrap();
        let got: Vec<String> = wn.synonyms(w).unwrap().into_iter().collect();
        assert_eq!(got, strs(&c["names"]), "synsets({w:?})");
    }
}

#[test]
fn meteor_matches_nltk() {
    let Some(wn) = wordnet() else { return };
    let r = refs();
    for (i, c) in r["meteor"].as_array().unwrap().iter().enumerate() {
        let (hyps, refs) = corpus(c);
        let (mean, per) = meteor(&hyps, &refs, wn, MeteorParams::default()).unwrap();
        for (k, (g, w)) in per.iter().zip(floats(&c["per"])).enumerate() {
            assert!(
                (g - w).abs() <= 1e-12,
                "case {i} segment {k}: {g} vs nltk {w}: {:?} / {:?}",
                hyps[k],
                refs[k]
            );
        }
        let want = c["mean"].as_f64().unwrap();
        assert!(
            (mean - want).abs() <= 1e-12,
            "case {i} mean {mean} vs {want}"
        );
    }
}

/// The generation metrics are the same to the last bit on every call: they sum floats over
/// n-gram tables, and a table iterated in hash order (a new random order per map) changed
/// CIDEr-D in its last digit between a run's record and a re-evaluation of the same outputs.
#[test]
fn generation_metrics_are_bitwise_deterministic() {
    use peftlab_eval::generation::{cider_d, nist};
    let r = refs();
    for (i, c) in r["generation"].as_array().unwrap().iter().enumerate() {
        let (hyps, refs) = corpus(c);
        let first = (
            cider_d(&hyps, &refs).unwrap(),
            nist(&hyps, &refs, 5).unwrap(),
        );
        for _ in 0..20 {
            let again = (
                cider_d(&hyps, &refs).unwrap(),
                nist(&hyps, &refs, 5).unwrap(),
            );
            assert_eq!(first.0.0.to_bits(), again.0.0.to_bits(), "case {i} cider_d");
            for (a, b) in first.0.1.iter().zip(&again.0.1) {
                assert_eq!(a.to_bits(), b.to_bits(), "case {i} cider_d segment");
            }
            assert_eq!(first.1.to_bits(), again.1.to_bits(), "case {i} nist");
        }
    }
}
