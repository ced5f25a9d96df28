//! Task descriptions and examples: what a loader returns and what training and evaluation read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What the model reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputKind {
    /// One sentence.
    Single,
    /// A sentence pair (encoded `[CLS] a [SEP] b [SEP]`).
    Pair,
    /// Structured data (a meaning representation, triples) to text.
    DataToText,
}

/// What is predicted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LabelKind {
    /// One of these classes (index = class id).
    Classes(Vec<String>),
    /// A real-valued score (regression).
    Score,
    /// Free text, scored against references.
    References,
}

/// A task: name, input and label kinds, the metrics the papers report for it, and the seed of
/// its deterministic split (part of the definition: changing it changes the task).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Name (`mr2`, `boolq`, `e2e`, `glue-cola`, …).
    pub name: String,
    /// Input kind.
    pub input: InputKind,
    /// Label kind.
    pub labels: LabelKind,
    /// Metric names as `peftlab evaluate` knows them, the first is the headline.
    pub metrics: Vec<String>,
    /// Seed of the train/dev/test split (0 when the source fixes the splits).
    pub split_seed: u64,
    /// Where the data comes from and how it is split.
    pub description: String,
}

/// A gold label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Label {
    /// Class index into [`LabelKind::Classes`].
    Class(usize),
    /// Regression target.
    Score(f64),
    /// Reference texts.
    Refs(Vec<String>),
}

/// One example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Stable id within the source.
    pub id: String,
    /// First (or only) text; the data for data-to-text.
    pub text_a: String,
    /// Second text of a pair.
    pub text_b: Option<String>,
    /// Gold label (`None` for unlabelled test rows).
    pub label: Option<Label>,
}

/// A loaded task with its splits and what was skipped while loading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// The task.
    pub task: TaskSpec,
    /// Training examples.
    pub train: Vec<Example>,
    /// Development examples (model selection).
    pub dev: Vec<Example>,
    /// Test examples (reported numbers).
    pub test: Vec<Example>,
    /// Further evaluation sets (e.g. MNLI mismatched).
    pub extra: BTreeMap<String, Vec<Example>>,
    /// Rows not used, by reason, with counts (nothing is dropped silently).
    pub skipped: BTreeMap<String, usize>,
    /// Where a fetched task's data came from and the sha256 of each file read (`None` for data
    /// from a user's directory in another format: GLUE, the papers' NLG files).
    #[serde(default)]
    pub provenance: Option<crate::fetch::Provenance>,
}

impl Dataset {
    /// A split by name: `train`, `dev`, `test` or one of `extra`; the error lists the names.
    pub fn split(&self, name: &str) -> Result<&[Example], String> {
        match name {
            "train" => Ok(&self.train),
            "dev" => Ok(&self.dev),
            "test" => Ok(&self.test),
            other => self.extra.get(other).map(Vec::as_slice).ok_or_else(|| {
                let extra: String = self.extra.keys().map(|k| format!(", {k}")).collect();
                format!("no split {other:?} (train, dev, test{extra})")
            }),
        }
    }

    /// Outputs of a model for this task: the class count, 1 for a score, `None` for text.
    pub fn num_labels(&self) -> Option<usize> {
        match &self.task.labels {
            LabelKind::Classes(c) => Some(c.len()),
            LabelKind::Score => Some(1),
            LabelKind::References => None,
        }
    }
}

/// splitmix64: the hash behind every deterministic split and shuffle.
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of a string (stable across platforms and Rust versions, unlike `DefaultHasher`).
pub fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Which split a key falls in: a uniform draw from `hash(seed, key)` against the fractions
/// `(train, dev)`; the rest is test. Depends only on the key, so adding rows does not move
/// others.
pub fn split_of(seed: u64, key: &str, train: f64, dev: f64) -> usize {
    let u = (splitmix64(seed ^ fnv1a(key)) >> 11) as f64 / (1u64 << 53) as f64;
    if u < train {
        0
    } else if u < train + dev {
        1
    } else {
        2
    }
}

/// Seeded Fisher–Yates shuffle.
pub fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut s = seed;
    for i in (1..v.len()).rev() {
        s = splitmix64(s);
        let j = (s % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_fractions_and_stability() {
        let keys: Vec<String> = (0..20_000).map(|i| format!("row-{i}")).collect();
        let mut n = [0usize; 3];
        for k in &keys {
            n[split_of(7, k, 0.8, 0.1)] += 1;
        }
        // binomial sd ≈ √(20000·0.8·0.2) ≈ 57: allow 5 sd
        assert!((n[0] as f64 - 16_000.0).abs() < 285.0, "{n:?}");
        assert!((n[1] as f64 - 2_000.0).abs() < 215.0, "{n:?}");
        assert_eq!(
            split_of(7, "row-3", 0.8, 0.1),
            split_of(7, "row-3", 0.8, 0.1)
        );
        let moved = keys
            .iter()
            .filter(|k| split_of(7, k, 0.8, 0.1) != split_of(8, k, 0.8, 0.1))
            .count();
        assert!(moved > 5_000, "another seed is another split");
        let mut v: Vec<u32> = (0..100).collect();
        shuffle(&mut v, 1);
        let mut w: Vec<u32> = (0..100).collect();
        shuffle(&mut w, 1);
        assert_eq!(v, w);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
    }
}
