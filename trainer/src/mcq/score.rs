//! Scoring one prompt: which of A–D the model picks.
//!
//! - `letter` (the default; the official C-Eval and CMMLU scripts' method): the logits of the
//!   tokens `A`, `B`, `C`, `D` at the prompt's last position; the prediction is their argmax.
//! - `loglik` (lm-evaluation-harness' multiple choice): the log-likelihood of each
//!   continuation ` A` … ` D` after the prompt, the sum of its tokens' log-probabilities; the
//!   prediction is the most likely.
//! - `gen` (how Steel-LLM scored its chat models): the model answers in greedy generated text,
//!   optionally through the chat template, and the prediction is the first option letter in
//!   it ([`extract_answer`]); the letter logits are still recorded.
//!
//! The model is any function from token ids and a first position to the logits of positions
//! `from..` (`[len - from, vocab]`), so a test can score with a model it makes up.

use crate::mcq::error::McqError;
use crate::mcq::questions::Letter;

/// The model as scoring sees it: `logits(ids, from)` is `[ids.len() - from, vocab]`.
pub type LogitsFn<'a> = dyn Fn(&[u32], usize) -> Vec<f32> + Sync + 'a;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Letter,
    Loglik,
    Gen,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "letter" => Ok(Mode::Letter),
            "loglik" => Ok(Mode::Loglik),
            "gen" => Ok(Mode::Gen),
            other => Err(format!(
                "unknown mode `{other}`; expected letter, loglik or gen"
            )),
        }
    }
}

/// What scoring a mode needs from the tokenizer: the ids of `A`…`D` (each one token), or of
/// the continuations ` A`…` D`.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    Letters([u32; 4]),
    Continuations([Vec<u32>; 4]),
}

impl Targets {
    /// The targets of `mode`, tokenized by `encode` (no special tokens).
    pub fn new(mode: Mode, encode: &dyn Fn(&str) -> Vec<u32>) -> Result<Targets, McqError> {
        match mode {
            Mode::Letter | Mode::Gen => {
                let mut ids = [0; 4];
                for letter in Letter::ALL {
                    ids[letter.index()] = match encode(letter.as_str())[..] {
                        [id] => id,
                        ref other => {
                            return Err(McqError::Setup(format!(
                                "the tokenizer makes `{}` {} tokens, not one: letter scoring \
                                 needs one token per option (try --mode loglik)",
                                letter.as_str(),
                                other.len()
                            )));
                        }
                    };
                }
                Ok(Targets::Letters(ids))
            }
            Mode::Loglik => Ok(Targets::Continuations(
                Letter::ALL.map(|letter| encode(&format!(" {}", letter.as_str()))),
            )),
        }
    }

    /// The most tokens scoring appends to a prompt: the model reads the prompt and all but
    /// the last token of a continuation.
    pub fn extra_positions(&self) -> usize {
        match self {
            Targets::Letters(_) => 0,
            Targets::Continuations(c) => c
                .iter()
                .map(|c| c.len().saturating_sub(1))
                .max()
                .unwrap_or(0),
        }
    }
}

/// A scored question: the prediction and the four scores it is the argmax of (letter logits,
/// or log-likelihoods).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    pub prediction: Letter,
    pub scores: [f32; 4],
}

/// The first of the highest scores (a NaN never wins).
fn argmax(scores: &[f32; 4]) -> Letter {
    let mut best = 0;
    for i in 1..4 {
        if !scores[i].is_nan() && (scores[best].is_nan() || scores[i] > scores[best]) {
            best = i;
        }
    }
    Letter::ALL[best]
}

/// The option a generated answer names: the first `A`–`D` (ASCII or full-width) that is not
/// part of a Latin word, so `答案是：B`, `(C)`, `D. 计算机` and `The answer is A` all count,
/// and `CPU` or `DNA` do not. `None`: the text names no option (scored as wrong).
pub fn extract_answer(text: &str) -> Option<Letter> {
    let chars: Vec<char> = text.chars().collect();
    let latin = |c: Option<&char>| c.is_some_and(|c| c.is_ascii_alphabetic());
    chars.iter().enumerate().find_map(|(i, &c)| {
        let index = match c {
            'A'..='D' => c as usize - 'A' as usize,
            'Ａ'..='Ｄ' => c as usize - 'Ａ' as usize,
            _ => return None,
        };
        let before = i.checked_sub(1).and_then(|j| chars.get(j));
        (!latin(before) && !latin(chars.get(i + 1))).then_some(Letter::ALL[index])
    })
}

/// `log softmax(row)[token]`, in f64.
fn log_prob(row: &[f32], token: u32) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    row[token as usize] as f64 - max - sum.ln()
}

/// Score the prompt `ids` with `logits` (rows of `vocab`).
pub fn score(ids: &[u32], targets: &Targets, vocab: usize, logits: &LogitsFn) -> Scored {
    assert!(!ids.is_empty(), "an empty prompt");
    let last = ids.len() - 1;
    let scores = match targets {
        Targets::Letters(letters) => {
            let row = logits(ids, last);
            letters.map(|id| row[id as usize])
        }
        Targets::Continuations(continuations) if continuations.iter().all(|c| c.len() == 1) => {
            // One pass: every continuation is one token after the prompt.
            let row = logits(ids, last);
            continuations
                .each_ref()
                .map(|c| log_prob(&row[..vocab], c[0]) as f32)
        }
        Targets::Continuations(continuations) => continuations.each_ref().map(|c| {
            let mut seq = ids.to_vec();
            seq.extend_from_slice(&c[..c.len().saturating_sub(1)]);
            let rows = logits(&seq, last);
            c.iter()
                .enumerate()
                .map(|(i, &token)| log_prob(&rows[i * vocab..(i + 1) * vocab], token))
                .sum::<f64>() as f32
        }),
    };
    Scored {
        prediction: argmax(&scores),
        scores,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model over 6 tokens whose next-token logits are `row` wherever it is asked.
    fn constant(row: [f32; 6]) -> impl Fn(&[u32], usize) -> Vec<f32> + Sync {
        move |ids: &[u32], from: usize| row.repeat(ids.len() - from)
    }

    #[test]
    fn letter_scoring_is_the_argmax_of_the_letters_logits() {
        let model = constant([9.0, 0.5, 2.0, -1.0, 3.0, 0.0]);
        let scored = score(&[0, 5], &Targets::Letters([1, 2, 3, 4]), 6, &model);
        assert_eq!(scored.scores, [0.5, 2.0, -1.0, 3.0]);
        assert_eq!(scored.prediction, Letter::D, "token 0's 9.0 is no option");
    }

    #[test]
    fn a_generated_answer_names_the_first_standalone_option_letter() {
        for (text, expected) in [
            ("答案是：B", Some(Letter::B)),
            ("(C) 因为……", Some(Letter::C)),
            ("D. 计算机网络", Some(Letter::D)),
            ("The answer is A.", Some(Letter::A)),
            ("答案：Ｂ", Some(Letter::B)),
            ("CPU 和 DNA 都不是，选 C", Some(Letter::C)),
            ("我不知道", None),
            ("ABCD", None),
        ] {
            assert_eq!(extract_answer(text), expected, "{text}");
        }
    }

    #[test]
    fn ties_go_to_the_first_and_nan_never_wins() {
        assert_eq!(argmax(&[1.0, 1.0, 0.0, 1.0]), Letter::A);
        assert_eq!(argmax(&[f32::NAN, 0.0, 2.0, 2.0]), Letter::C);
    }

    #[test]
    fn loglik_sums_log_probabilities_of_each_continuation_token() {
        // Logits: uniform over 6 tokens except token 1 (e^2 heavier).
        let model = constant([0.0, 2.0, 0.0, 0.0, 0.0, 0.0]);
        let z = (2f64.exp() + 5.0).ln();
        let one = Targets::Continuations([vec![1], vec![2], vec![3], vec![4]]);
        let scored = score(&[0], &one, 6, &model);
        assert!((scored.scores[0] as f64 - (2.0 - z)).abs() < 1e-6);
        assert!((scored.scores[1] as f64 + z).abs() < 1e-6);
        assert_eq!(scored.prediction, Letter::A);
        // Two tokens each: the sums of both.
        let two = Targets::Continuations([vec![2, 2], vec![1, 1], vec![1, 2], vec![3, 3]]);
        let scored = score(&[0, 0, 0], &two, 6, &model);
        assert!((scored.scores[1] as f64 - 2.0 * (2.0 - z)).abs() < 1e-5);
        assert!((scored.scores[2] as f64 - (2.0 - 2.0 * z)).abs() < 1e-5);
        assert_eq!(scored.prediction, Letter::B);
    }

    #[test]
    fn multi_token_continuations_are_read_after_the_prompt() {
        // A model that records what it was asked to score.
        let asked = std::sync::Mutex::new(Vec::new());
        let model = |ids: &[u32], from: usize| {
            asked.lock().unwrap().push((ids.to_vec(), from));
            vec![0.0; (ids.len() - from) * 6]
        };
        let targets = Targets::Continuations([vec![1, 2], vec![3], vec![4, 5], vec![5]]);
        assert_eq!(targets.extra_positions(), 1);
        score(&[0, 0], &targets, 6, &model);
        let asked = asked.into_inner().unwrap();
        assert_eq!(asked[0], (vec![0, 0, 1], 1));
        assert_eq!(asked[1], (vec![0, 0], 1));
    }
}
