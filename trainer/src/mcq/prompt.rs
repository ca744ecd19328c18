//! The official prompts, and fitting one into the model's context.
//!
//! C-Eval (its repository's `evaluator_series`):
//! `以下是中国关于{zh}考试的单项选择题，请选出其中的正确答案。\n\n`, then each shot
//! `{question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\n答案：{answer}\n\n`, then the question the same
//! way ending at `答案：`.
//!
//! CMMLU (its `src/mp_utils.py`): `以下是关于{zh}的单项选择题，请直接给出正确答案的选项。\n\n`,
//! shots `题目：{Question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\n答案是：{Answer}\n\n`, the question
//! ending at `答案是：`.

use crate::mcq::questions::Question;
use crate::mcq::subjects::Benchmark;

/// The instruction that opens every prompt of a subject.
pub fn header(benchmark: Benchmark, zh: &str) -> String {
    match benchmark {
        Benchmark::Ceval => {
            format!("以下是中国关于{zh}考试的单项选择题，请选出其中的正确答案。\n\n")
        }
        Benchmark::Cmmlu => format!("以下是关于{zh}的单项选择题，请直接给出正确答案的选项。\n\n"),
    }
}

/// A question and its options, ending where the answer goes.
pub fn question(benchmark: Benchmark, q: &Question) -> String {
    let [a, b, c, d] = &q.choices;
    match benchmark {
        Benchmark::Ceval => format!("{}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\n答案：", q.question),
        Benchmark::Cmmlu => format!(
            "题目：{}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\n答案是：",
            q.question
        ),
    }
}

/// A worked example: the question, its answer and a blank line. `None` for a row with no
/// answer (a shot needs one).
pub fn shot(benchmark: Benchmark, q: &Question) -> Option<String> {
    Some(format!(
        "{}{}\n\n",
        question(benchmark, q),
        q.answer?.as_str()
    ))
}

/// A prompt as the model reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Prompt {
    /// The whole prompt tokenized at once, no special tokens added.
    pub ids: Vec<u32>,
    /// Shots kept.
    pub shots: usize,
    /// Shots dropped to fit the context.
    pub dropped: usize,
    /// Even with no shot the prompt was too long, and only its last tokens were kept.
    pub truncated: bool,
}

/// `header`, then `shots` (worked examples, in order), then `question`, tokenized whole by
/// `encode`, in at most `budget` tokens: while it is longer, the longest shot (in tokens, the
/// later of equals) is dropped and the prompt tokenized again (CMMLU's script drops every
/// shot tied for longest at once; one at a time loses fewer). With
/// no shot left and still too long, only its last `budget` tokens are kept.
pub fn fit(
    header: &str,
    shots: &[String],
    question: &str,
    encode: &(dyn Fn(&str) -> Vec<u32> + Sync),
    budget: usize,
) -> Prompt {
    let mut kept: Vec<(usize, &String)> = shots.iter().map(|s| (encode(s).len(), s)).collect();
    let text = |kept: &[(usize, &String)]| {
        let mut text = header.to_string();
        kept.iter().for_each(|(_, s)| text.push_str(s));
        text + question
    };
    let mut ids = encode(&text(&kept));
    while ids.len() > budget && !kept.is_empty() {
        // `max_by_key` keeps the last of equal maxima: the later shot.
        let longest = (0..kept.len())
            .max_by_key(|&i| kept[i].0)
            .expect("a shot is left");
        kept.remove(longest);
        ids = encode(&text(&kept));
    }
    let truncated = ids.len() > budget;
    if truncated {
        ids.drain(..ids.len() - budget);
    }
    Prompt {
        ids,
        shots: kept.len(),
        dropped: shots.len() - kept.len(),
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One token per character.
    fn chars(text: &str) -> Vec<u32> {
        text.chars().map(u32::from).collect()
    }

    fn shots(lengths: &[usize]) -> Vec<String> {
        lengths
            .iter()
            .enumerate()
            .map(|(i, &n)| char::from(b'a' + i as u8).to_string().repeat(n))
            .collect()
    }

    #[test]
    fn a_prompt_that_fits_keeps_every_shot_in_order() {
        let p = fit("H", &shots(&[2, 3]), "Q", &chars, 7);
        assert_eq!(p.ids, chars("HaabbbQ"));
        assert_eq!((p.shots, p.dropped, p.truncated), (2, 0, false));
    }

    #[test]
    fn the_longest_shots_are_dropped_until_the_prompt_fits() {
        // 1 + (2 + 5 + 3) + 1 = 12 tokens into 8: the 5 goes (7 left), nothing else.
        let p = fit("H", &shots(&[2, 5, 3]), "Q", &chars, 8);
        assert_eq!(p.ids, chars("HaacccQ"));
        assert_eq!((p.shots, p.dropped), (2, 1));
        // Into 5: the 5, then the 3.
        let p = fit("H", &shots(&[2, 5, 3]), "Q", &chars, 5);
        assert_eq!(p.ids, chars("HaaQ"));
        assert_eq!((p.shots, p.dropped), (1, 2));
        // Of equals, the later goes first.
        let p = fit("H", &shots(&[3, 3]), "Q", &chars, 6);
        assert_eq!(p.ids, chars("HaaaQ"));
    }

    #[test]
    fn a_question_longer_than_the_context_keeps_its_end() {
        let p = fit("HH", &shots(&[2]), "QQQ答", &chars, 3);
        assert_eq!(p.ids, chars("QQ答"));
        assert_eq!((p.shots, p.dropped, p.truncated), (0, 1, true));
    }
}
