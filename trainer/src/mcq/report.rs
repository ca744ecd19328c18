//! Accuracy per subject, per category and overall, both as the mean of the subjects' accuracies
//! (macro, what the official scripts and leaderboards report) and over all questions (micro).

use crate::mcq::questions::Letter;
use crate::mcq::score::Mode;
use crate::mcq::subjects::{Benchmark, Subject};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// One line of `predictions.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    pub subject: String,
    /// The CSV's first column.
    pub id: String,
    /// `null` for a question shipped with no answer (C-Eval's test split).
    pub answer: Option<Letter>,
    /// `null` when a generated answer (`gen`) names no option; scored as wrong.
    pub prediction: Option<Letter>,
    /// The scores the prediction is the argmax of: the logits of `A`…`D` (`letter`, and
    /// recorded in `gen`), or the log-likelihoods of ` A`…` D` (`loglik`).
    pub letter_logits: [f32; 4],
    /// Shots in this question's prompt.
    pub shots: usize,
    /// `gen`: the model's answer, the text the prediction was read from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated: Option<String>,
}

/// A subject's score.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SubjectScore {
    pub zh: String,
    pub categories: Vec<String>,
    /// Questions with an answer to score against.
    pub questions: u64,
    pub correct: u64,
    /// `correct / questions`; `null` with no question to score.
    pub accuracy: Option<f64>,
}

/// The score of a group of subjects (a category, or all).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupScore {
    /// Subjects with a question to score.
    #[serde(rename = "n_subjects")]
    pub subjects: usize,
    pub questions: u64,
    pub correct: u64,
    /// The mean of the subjects' accuracies.
    #[serde(rename = "macro")]
    pub macro_accuracy: Option<f64>,
    /// `correct / questions`.
    #[serde(rename = "micro")]
    pub micro_accuracy: Option<f64>,
}

/// What `--json` prints.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub benchmark: Benchmark,
    pub mode: Mode,
    /// Shots asked for (`--shots`).
    pub shots: usize,
    /// Shots dropped, over all prompts, to fit the model's context.
    pub dropped_shots: u64,
    /// Prompts too long even with no shot, of which only the last tokens were read.
    pub truncated: u64,
    /// Questions predicted that have no answer to score against.
    pub unanswered: u64,
    /// Tokens of all the prompts, as the model read them.
    pub prompt_tokens: u64,
    #[serde(flatten)]
    pub overall: GroupScore,
    pub subjects: BTreeMap<String, SubjectScore>,
    pub categories: BTreeMap<String, GroupScore>,
}

fn ratio(correct: u64, questions: u64) -> Option<f64> {
    (questions > 0).then(|| correct as f64 / questions as f64)
}

fn group<'a>(scores: impl Iterator<Item = &'a SubjectScore>) -> GroupScore {
    let scored: Vec<&SubjectScore> = scores.filter(|s| s.accuracy.is_some()).collect();
    let questions = scored.iter().map(|s| s.questions).sum();
    let correct = scored.iter().map(|s| s.correct).sum();
    let accuracies: Vec<f64> = scored.iter().filter_map(|s| s.accuracy).collect();
    GroupScore {
        subjects: scored.len(),
        questions,
        correct,
        macro_accuracy: (!accuracies.is_empty())
            .then(|| accuracies.iter().sum::<f64>() / accuracies.len() as f64),
        micro_accuracy: ratio(correct, questions),
    }
}

/// Per-subject, per-category and overall accuracies of `predictions` over `subjects`
/// (every subject evaluated, including any without a scorable question).
pub fn scores(
    subjects: &[&Subject],
    predictions: &[Prediction],
) -> (
    GroupScore,
    BTreeMap<String, SubjectScore>,
    BTreeMap<String, GroupScore>,
) {
    let mut by_subject: BTreeMap<String, SubjectScore> = subjects
        .iter()
        .map(|s| {
            let score = SubjectScore {
                zh: s.zh.clone(),
                categories: s.categories.clone(),
                questions: 0,
                correct: 0,
                accuracy: None,
            };
            (s.name.clone(), score)
        })
        .collect();
    for p in predictions {
        let score = by_subject
            .get_mut(&p.subject)
            .expect("a prediction of an evaluated subject");
        if let Some(answer) = p.answer {
            score.questions += 1;
            score.correct += u64::from(Some(answer) == p.prediction);
        }
    }
    for score in by_subject.values_mut() {
        score.accuracy = ratio(score.correct, score.questions);
    }
    let mut categories: BTreeMap<String, Vec<&SubjectScore>> = BTreeMap::new();
    for score in by_subject.values() {
        for category in &score.categories {
            categories.entry(category.clone()).or_default().push(score);
        }
    }
    let categories = categories
        .into_iter()
        .map(|(name, members)| (name, group(members.into_iter())))
        .collect();
    (group(by_subject.values()), by_subject, categories)
}

fn percent(accuracy: Option<f64>) -> String {
    accuracy.map_or_else(|| "-".into(), |a| format!("{:.2}", 100.0 * a))
}

/// The table printed on stderr.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .subjects
            .keys()
            .chain(self.categories.keys())
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(7)
            .max(7);
        writeln!(
            f,
            "{:<width$}  {:>9}  {:>7}  {:>8}",
            "subject", "questions", "correct", "accuracy"
        )?;
        for (name, s) in &self.subjects {
            writeln!(
                f,
                "{name:<width$}  {:>9}  {:>7}  {:>8}",
                s.questions,
                s.correct,
                percent(s.accuracy)
            )?;
        }
        writeln!(
            f,
            "\n{:<width$}  {:>9}  {:>7}  {:>8}  {:>8}",
            "category", "questions", "correct", "macro", "micro"
        )?;
        let rows = self
            .categories
            .iter()
            .map(|(name, g)| (name.as_str(), g))
            .chain(std::iter::once(("overall", &self.overall)));
        for (name, g) in rows {
            writeln!(
                f,
                "{name:<width$}  {:>9}  {:>7}  {:>8}  {:>8}",
                g.questions,
                g.correct,
                percent(g.macro_accuracy),
                percent(g.micro_accuracy)
            )?;
        }
        write!(
            f,
            "{}: {} subjects, {}-shot, {} scoring; accuracy in %; {} shots dropped to fit the \
             context, {} prompts cut",
            self.benchmark.name(),
            self.subjects.len(),
            self.shots,
            match self.mode {
                Mode::Letter => "letter-logit",
                Mode::Loglik => "log-likelihood",
                Mode::Gen => "generated-answer",
            },
            self.dropped_shots,
            self.truncated
        )?;
        if self.unanswered > 0 {
            write!(f, "; {} questions have no answer to score", self.unanswered)?;
        }
        writeln!(f)
    }
}
