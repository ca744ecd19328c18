//! One benchmark CSV as upstream ships it, read into questions. C-Eval: a header
//! `id,question,A,B,C,D,answer[,explanation]` (its test split may have no `answer` column, or
//! empty answers); CMMLU: `,Question,A,B,C,D,Answer` (pandas' unnamed index column first).
//! Quoted fields may span lines. A malformed row is an error naming the file and the line
//! the row starts on.

use crate::mcq::error::McqError;
use crate::mcq::subjects::Benchmark;
use serde::Serialize;
use std::path::Path;

/// An option of a question.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Letter {
    A,
    B,
    C,
    D,
}

impl Letter {
    pub const ALL: [Letter; 4] = [Letter::A, Letter::B, Letter::C, Letter::D];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        ["A", "B", "C", "D"][self.index()]
    }

    pub fn parse(s: &str) -> Option<Letter> {
        Letter::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// One row of a benchmark CSV.
#[derive(Clone, Debug, PartialEq)]
pub struct Question {
    /// The CSV's first column.
    pub id: String,
    pub question: String,
    /// The options A, B, C, D.
    pub choices: [String; 4],
    /// `None`: a test split that ships no answers.
    pub answer: Option<Letter>,
    /// The line the row starts on (the header is line 1).
    pub line: u64,
}

/// Where the answer is in a row, from the header; `None`: no answer column.
fn answer_column(benchmark: Benchmark, header: &[&str]) -> Result<Option<usize>, String> {
    let expected = match benchmark {
        Benchmark::Ceval => "id,question,A,B,C,D,answer[,explanation]",
        Benchmark::Cmmlu => ",Question,A,B,C,D,Answer",
    };
    let bad = || {
        format!(
            "the header is `{}`, expected `{expected}`",
            header.join(",")
        )
    };
    let (id, question, answer) = match benchmark {
        Benchmark::Ceval => ("id", "question", "answer"),
        Benchmark::Cmmlu => ("", "Question", "Answer"),
    };
    if header.len() < 6 || header[0] != id || header[1] != question {
        return Err(bad());
    }
    if header[2..6] != ["A", "B", "C", "D"] {
        return Err(bad());
    }
    match (benchmark, &header[6..]) {
        (Benchmark::Ceval, []) => Ok(None),
        (Benchmark::Ceval, [a]) | (Benchmark::Ceval, [a, "explanation"]) if *a == answer => {
            Ok(Some(6))
        }
        (Benchmark::Cmmlu, [a]) if *a == answer => Ok(Some(6)),
        _ => Err(bad()),
    }
}

/// The questions of the CSV file `path` of `benchmark`.
pub fn read_questions(benchmark: Benchmark, path: &Path) -> Result<Vec<Question>, McqError> {
    let bytes = std::fs::read(path).map_err(|e| McqError::File {
        path: path.to_path_buf(),
        reason: format!("cannot read: {e}"),
    })?;
    parse_questions(benchmark, path, &bytes)
}

/// The questions of CSV `bytes`, read from `path` (named in errors).
pub fn parse_questions(
    benchmark: Benchmark,
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<Question>, McqError> {
    let error = |line: u64, reason: String| McqError::Csv {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let csv_error = |e: csv::Error| {
        let line = e.position().map_or(0, |p| p.line());
        let reason = match e.kind() {
            csv::ErrorKind::Utf8 { err, .. } => format!("not UTF-8 ({err})"),
            _ => e.to_string(),
        };
        error(line, reason)
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut records = reader.records();
    let header = match records.next() {
        Some(record) => record.map_err(csv_error)?,
        None => return Err(error(1, "the file is empty (no header)".into())),
    };
    let columns: Vec<&str> = header.iter().collect();
    let answer_at = answer_column(benchmark, &columns).map_err(|reason| error(1, reason))?;
    let mut questions = Vec::new();
    for record in records {
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != columns.len() {
            return Err(error(
                line,
                format!(
                    "the row has {} fields, the header {}",
                    record.len(),
                    columns.len()
                ),
            ));
        }
        let answer = match answer_at.map(|at| record[at].trim()) {
            None | Some("") => None,
            Some(text) => Some(Letter::parse(text).ok_or_else(|| {
                error(
                    line,
                    format!("the answer is `{text}`, not one of A, B, C, D"),
                )
            })?),
        };
        questions.push(Question {
            id: record[0].to_string(),
            question: record[1].to_string(),
            choices: std::array::from_fn(|i| record[2 + i].to_string()),
            answer,
            line,
        });
    }
    Ok(questions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(benchmark: Benchmark, text: &str) -> Result<Vec<Question>, McqError> {
        parse_questions(benchmark, Path::new("x/s_dev.csv"), text.as_bytes())
    }

    fn message(result: Result<Vec<Question>, McqError>) -> String {
        result.expect_err("a malformed file").to_string()
    }

    #[test]
    fn ceval_rows_with_quoted_multiline_explanations_are_read() {
        let text = "id,question,A,B,C,D,answer,explanation\n\
                    0,问题一____。,甲,乙,丙,丁,B,\"1. 第一行\n2. 第二行\"\n\
                    1,\"问题, 二\",a,b,c,d,D,\n";
        let questions = parse(Benchmark::Ceval, text).unwrap();
        assert_eq!(questions.len(), 2);
        assert_eq!(questions[0].id, "0");
        assert_eq!(questions[0].choices, ["甲", "乙", "丙", "丁"]);
        assert_eq!(questions[0].answer, Some(Letter::B));
        assert_eq!(questions[1].question, "问题, 二");
        assert_eq!(questions[1].answer, Some(Letter::D));
        assert_eq!((questions[0].line, questions[1].line), (2, 4));
    }

    #[test]
    fn a_ceval_test_split_may_ship_no_answers() {
        let bare = parse(Benchmark::Ceval, "id,question,A,B,C,D\n7,q,a,b,c,d\n").unwrap();
        assert_eq!(bare[0].answer, None);
        let empty = "id,question,A,B,C,D,answer,explanation\n7,q,a,b,c,d,,\n";
        assert_eq!(parse(Benchmark::Ceval, empty).unwrap()[0].answer, None);
    }

    #[test]
    fn cmmlu_rows_keep_the_index_column_as_id_and_a_bom_is_skipped() {
        let text = "\u{feff},Question,A,B,C,D,Answer\n0,肉牛屠宰后,胸,腹,大腿,小腿,C\n";
        let questions = parse(Benchmark::Cmmlu, text).unwrap();
        assert_eq!(questions[0].id, "0");
        assert_eq!(questions[0].question, "肉牛屠宰后");
        assert_eq!(questions[0].answer, Some(Letter::C));
    }

    #[test]
    fn malformed_files_are_errors_naming_the_file_and_line() {
        let short = "id,question,A,B,C,D,answer\n0,q,a,b,c,d,A\n1,q,a,b,c,D\n";
        assert_eq!(
            message(parse(Benchmark::Ceval, short)),
            "x/s_dev.csv: line 3: the row has 6 fields, the header 7"
        );
        let answer = "id,question,A,B,C,D,answer\n0,\"q\nq\",a,b,c,d,A\n1,q,a,b,c,d,E\n";
        assert_eq!(
            message(parse(Benchmark::Ceval, answer)),
            "x/s_dev.csv: line 4: the answer is `E`, not one of A, B, C, D"
        );
        assert_eq!(
            message(parse(Benchmark::Cmmlu, "id,question,A,B,C,D,answer\n")),
            "x/s_dev.csv: line 1: the header is `id,question,A,B,C,D,answer`, expected \
             `,Question,A,B,C,D,Answer`"
        );
        assert_eq!(
            message(parse(Benchmark::Ceval, "")),
            "x/s_dev.csv: line 1: the file is empty (no header)"
        );
        let bad_utf8 = parse_questions(
            Benchmark::Ceval,
            Path::new("x/s_dev.csv"),
            b"id,question,A,B,C,D,answer\n0,q\xff,a,b,c,d,A\n",
        );
        assert!(message(bad_utf8).starts_with("x/s_dev.csv: line 2: not UTF-8"));
    }
}
