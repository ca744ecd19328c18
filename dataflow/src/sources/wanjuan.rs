//! `wanjuan`: WanJuan text records (`content`) and exam records (`q_main`, options, answer).

use crate::reject::RecordError;
use crate::sources::fields::{Record, optional_str_field, required_text, str_field};
use crate::sources::normalize::normalize;

const OPTIONS: [&str; 5] = ["option_a", "option_b", "option_c", "option_d", "option_e"];

/// A record with `content` is a text record. Otherwise it is an exam record, rendered as
/// Steel's packing script did: `q_main`, the options that are present, `标准答案：` + `std_ans`,
/// `解析：` + `answer_detail`, all concatenated without separators.
pub fn render(record: &Record) -> Result<String, RecordError> {
    if record.contains_key("content") || !record.contains_key("q_main") {
        return required_text(record, "content");
    }
    let mut text = required_text(record, "q_main")?;
    for option in OPTIONS {
        text.push_str(&normalize(optional_str_field(record, option)?));
    }
    text.push_str("标准答案：");
    text.push_str(&normalize(str_field(record, "std_ans")?));
    text.push_str("解析：");
    text.push_str(&normalize(str_field(record, "answer_detail")?));
    Ok(text)
}
