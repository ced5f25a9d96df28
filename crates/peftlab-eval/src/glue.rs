//! GLUE's per-task metrics and how scores are averaged.
//!
//! | task | metrics | task score |
//! |---|---|---|
//! | CoLA | Matthews correlation | MCC |
//! | SST-2, QNLI, RTE, WNLI | accuracy | accuracy |
//! | MRPC | accuracy and F1 (GLUE); accuracy only (AdaLoRA / MTLoRA tables) | mean of the reported metrics |
//! | QQP | accuracy and F1 | mean of accuracy and F1 |
//! | STS-B | Pearson and Spearman | mean of the two |
//! | MNLI | matched and mismatched accuracy | mean of m and mm |
//!
//! The overall score is the unweighted mean of the task scores (GLUE's rule: metrics of one task
//! are averaged first). The AdaLoRA table the papers compare against (papers.md §1.2) follows it
//! over 8 tasks without WNLI, with MRPC as accuracy only: its LoRA r = 8 row gives
//! `(90.67 + 94.95 + 69.82 + 90.685 + 93.87 + 85.20 + 89.95 + 91.60) / 8 = 88.34` (test below).
//! All scores here are percentages (×100), as tables print them.

use serde::{Deserialize, Serialize};

use crate::EvalError;

/// A GLUE task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GlueTask {
    /// Corpus of Linguistic Acceptability.
    Cola,
    /// Stanford Sentiment Treebank (binary).
    Sst2,
    /// Microsoft Research Paraphrase Corpus.
    Mrpc,
    /// Semantic Textual Similarity Benchmark (regression).
    Stsb,
    /// Quora Question Pairs.
    Qqp,
    /// Multi-Genre NLI (matched and mismatched dev sets).
    Mnli,
    /// Question NLI.
    Qnli,
    /// Recognizing Textual Entailment.
    Rte,
    /// Winograd NLI.
    Wnli,
}

/// One reported metric of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GlueMetric {
    /// Accuracy.
    Accuracy,
    /// Binary F1 of the positive class.
    F1,
    /// Matthews correlation.
    Matthews,
    /// Pearson correlation.
    Pearson,
    /// Spearman correlation.
    Spearman,
    /// MNLI matched accuracy.
    AccuracyMatched,
    /// MNLI mismatched accuracy.
    AccuracyMismatched,
}

/// Which MRPC metrics are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MrpcRule {
    /// Accuracy and F1 (the GLUE leaderboard).
    #[default]
    AccuracyAndF1,
    /// Accuracy only (AdaLoRA / MTLoRA tables).
    AccuracyOnly,
}

impl GlueTask {
    /// The 8 tasks of the papers' tables (no WNLI).
    pub const PAPER_TASKS: [GlueTask; 8] = [
        GlueTask::Mnli,
        GlueTask::Sst2,
        GlueTask::Cola,
        GlueTask::Qqp,
        GlueTask::Qnli,
        GlueTask::Rte,
        GlueTask::Mrpc,
        GlueTask::Stsb,
    ];

    /// The metrics reported for this task.
    pub fn metrics(self, mrpc: MrpcRule) -> &'static [GlueMetric] {
        use GlueMetric::*;
        match self {
            Self::Cola => &[Matthews],
            Self::Sst2 | Self::Qnli | Self::Rte | Self::Wnli => &[Accuracy],
            Self::Mrpc => match mrpc {
                MrpcRule::AccuracyAndF1 => &[Accuracy, F1],
                MrpcRule::AccuracyOnly => &[Accuracy],
            },
            Self::Qqp => &[Accuracy, F1],
            Self::Stsb => &[Pearson, Spearman],
            Self::Mnli => &[AccuracyMatched, AccuracyMismatched],
        }
    }

    /// Task score: the mean of its reported metrics, given as `(metric, value in %)`. Errors if
    /// a reported metric is missing.
    pub fn score(self, values: &[(GlueMetric, f64)], mrpc: MrpcRule) -> Result<f64, EvalError> {
        let wanted = self.metrics(mrpc);
        let mut sum = 0.0;
        for m in wanted {
            let v = values
                .iter()
                .find(|(k, _)| k == m)
                .map(|(_, v)| *v)
                .ok_or_else(|| EvalError::Invalid(format!("{self:?}: no value for {m:?}")))?;
            sum += v;
        }
        Ok(sum / wanted.len() as f64)
    }
}

/// The unweighted mean of task scores (each already the mean of its metrics).
pub fn average(task_scores: &[f64]) -> Result<f64, EvalError> {
    if task_scores.is_empty() {
        return Err(EvalError::Empty("glue average"));
    }
    Ok(task_scores.iter().sum::<f64>() / task_scores.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use GlueMetric::*;

    #[test]
    fn adalora_table_average_is_reproduced() {
        // AdaLoRA Table 1, LoRA r = 8 row (papers.md §1.2): Avg 88.34
        let rows: [(GlueTask, Vec<(GlueMetric, f64)>); 8] = [
            (
                GlueTask::Mnli,
                vec![(AccuracyMatched, 90.65), (AccuracyMismatched, 90.69)],
            ),
            (GlueTask::Sst2, vec![(Accuracy, 94.95)]),
            (GlueTask::Cola, vec![(Matthews, 69.82)]),
            (GlueTask::Qqp, vec![(Accuracy, 91.99), (F1, 89.38)]),
            (GlueTask::Qnli, vec![(Accuracy, 93.87)]),
            (GlueTask::Rte, vec![(Accuracy, 85.20)]),
            (GlueTask::Mrpc, vec![(Accuracy, 89.95)]),
            (GlueTask::Stsb, vec![(Pearson, 91.60), (Spearman, 91.60)]),
        ];
        let scores: Vec<f64> = rows
            .iter()
            .map(|(t, v)| t.score(v, MrpcRule::AccuracyOnly).unwrap())
            .collect();
        let avg = average(&scores).unwrap();
        assert!((avg - 88.34).abs() < 0.005, "{avg}");
        // GLUE's MRPC rule needs F1 too
        let err = GlueTask::Mrpc
            .score(&[(Accuracy, 89.95)], MrpcRule::AccuracyAndF1)
            .unwrap_err();
        assert!(err.to_string().contains("F1"), "{err}");
    }
}
