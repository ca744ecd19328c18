//! Every format's rendering on hand-made records, including the formats the shared samples do
//! not cover (WanJuan, Baidu QA, BELLE multi-turn, MOSS). Expected texts are written out by hand.

use serde_json::{Value, json};
use steel_dataflow::reject::RejectCode;
use steel_dataflow::sources::Format;

const SYSTEM: &str = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n";

fn render(format: Format, record: Value) -> Result<String, RejectCode> {
    let Value::Object(map) = record else {
        panic!("test records are objects")
    };
    format.render(&map, "text").map_err(|e| e.code)
}

#[test]
fn wanjuan_text_record_is_its_content_nfkc_normalised() {
    let text = render(
        Format::Wanjuan,
        json!({"id": "x", "content": "全角ＡＢＣ，半角\r\n下一行"}),
    );
    assert_eq!(text.unwrap(), "全角ABC,半角\n下一行");
}

#[test]
fn wanjuan_exam_record_concatenates_question_options_answer_and_explanation() {
    let record = json!({
        "q_main": "1+1=？", "option_a": "A.1", "option_b": "B.2", "option_c": null,
        "std_ans": "B", "answer_detail": "一加一等于二"
    });
    // option_c is null and option_d/e are missing: all skipped. "？" is NFKC'd to "?";
    // the fixed labels keep their full-width colons.
    assert_eq!(
        render(Format::Wanjuan, record).unwrap(),
        "1+1=?A.1B.2标准答案：B解析：一加一等于二"
    );
}

#[test]
fn wanjuan_exam_record_without_answer_is_rejected() {
    let record = json!({"q_main": "问题", "option_a": "A", "answer_detail": "解"});
    assert_eq!(
        render(Format::Wanjuan, record),
        Err(RejectCode::MissingField)
    );
}

#[test]
fn baidu_qa_is_single_turn_chat_of_title_and_answer() {
    let record = json!({"qid": "q1", "title": "人站在地球上为什么没有头朝下的感觉 ", "desc": "",
                        "answer": "地球上重力作用一直是指向球心的，因此\r\n只要头远离球心"});
    let expected = format!(
        "{SYSTEM}<|im_start|>user\n人站在地球上为什么没有头朝下的感觉 <|im_end|>\n\
         <|im_start|>assistant\n地球上重力作用一直是指向球心的,因此\n只要头远离球心"
    );
    assert_eq!(render(Format::BaiduQa, record).unwrap(), expected);
}

#[test]
fn baidu_qa_with_empty_answer_is_rejected() {
    let record = json!({"title": "问题", "answer": " \r\n"});
    assert_eq!(render(Format::BaiduQa, record), Err(RejectCode::EmptyField));
}

#[test]
fn belle_joins_instruction_input_and_output_with_newlines() {
    let with_input = json!({"instruction": "翻译", "input": "I love you.", "output": "我爱你。"});
    assert_eq!(
        render(Format::Belle, with_input).unwrap(),
        "翻译\nI love you.\n我爱你。"
    );
    let empty_input = json!({"instruction": "翻译", "input": "", "output": "我爱你。"});
    assert_eq!(
        render(Format::Belle, empty_input).unwrap(),
        "翻译\n我爱你。"
    );
    let no_input = json!({"instruction": "翻译", "output": "我爱你。"});
    assert_eq!(render(Format::Belle, no_input).unwrap(), "翻译\n我爱你。");
}

#[test]
fn belle_multiturn_pairs_turns_and_drops_only_the_final_close() {
    let record = json!({"conversations": [
        {"from": "human", "value": "你好"},
        {"from": "assistant", "value": "你好！"},
        {"from": "human", "value": "再见"},
        {"from": "assistant", "value": "再见。"}
    ], "id": "1"});
    let expected = format!(
        "{SYSTEM}<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n你好!<|im_end|>\n\
         <|im_start|>user\n再见<|im_end|>\n<|im_start|>assistant\n再见。"
    );
    assert_eq!(render(Format::BelleMultiturn, record).unwrap(), expected);
}

#[test]
fn belle_multiturn_answer_ending_in_template_letters_is_kept_whole() {
    // Python's str.strip("<|im_end|>\n") in Steel's script would have eaten "end" here.
    let record = json!({"conversations": [
        {"from": "human", "value": "Say the word"}, {"from": "assistant", "value": "the end"}
    ]});
    assert!(
        render(Format::BelleMultiturn, record)
            .unwrap()
            .ends_with("assistant\nthe end")
    );
}

#[test]
fn belle_multiturn_out_of_order_or_unanswered_turns_are_rejected() {
    let two_humans = json!({"conversations": [
        {"from": "human", "value": "a"}, {"from": "human", "value": "b"},
        {"from": "assistant", "value": "c"}
    ]});
    assert_eq!(
        render(Format::BelleMultiturn, two_humans),
        Err(RejectCode::BadConversation)
    );
    let unanswered = json!({"conversations": [{"from": "human", "value": "a"}]});
    assert_eq!(
        render(Format::BelleMultiturn, unanswered),
        Err(RejectCode::BadConversation)
    );
    let unknown = json!({"conversations": [{"from": "system", "value": "a"}]});
    assert_eq!(
        render(Format::BelleMultiturn, unknown),
        Err(RejectCode::BadConversation)
    );
    let empty = json!({"conversations": []});
    assert_eq!(
        render(Format::BelleMultiturn, empty),
        Err(RejectCode::BadConversation)
    );
    let not_list = json!({"conversations": "hi"});
    assert_eq!(
        render(Format::BelleMultiturn, not_list),
        Err(RejectCode::WrongType)
    );
}

#[test]
fn moss_renders_every_round_as_a_chat_pair() {
    let record = json!({"conversation_id": 1, "category": "Brainstorming", "conversation": [
        {"human": "如何保障安全？", "assistant": "遵守规定。"},
        {"human": "还有呢？", "assistant": "培训。"}
    ]});
    let expected = format!(
        "{SYSTEM}<|im_start|>user\n如何保障安全?<|im_end|>\n<|im_start|>assistant\n遵守规定。<|im_end|>\n\
         <|im_start|>user\n还有呢?<|im_end|>\n<|im_start|>assistant\n培训。"
    );
    assert_eq!(render(Format::Moss, record).unwrap(), expected);
}

#[test]
fn moss_round_missing_its_answer_is_rejected() {
    let record = json!({"conversation": [{"human": "问"}]});
    assert_eq!(render(Format::Moss, record), Err(RejectCode::MissingField));
}

#[test]
fn text_format_reads_the_configured_field() {
    let Value::Object(map) = json!({"body": "正文", "text": 3}) else {
        unreachable!()
    };
    assert_eq!(Format::Text.render(&map, "body").unwrap(), "正文");
    assert_eq!(
        Format::Text.render(&map, "text").map_err(|e| e.code),
        Err(RejectCode::WrongType)
    );
}

#[test]
fn starcoder_content_is_kept_byte_for_byte() {
    let code = "\u{feff}x = 'ＡＢ'\r\n\tprint(x)  \n";
    assert_eq!(
        render(Format::Starcoder, json!({"content": code})).unwrap(),
        code
    );
    assert_eq!(
        render(Format::Starcoder, json!({"content": "\n  "})),
        Err(RejectCode::EmptyText)
    );
}

#[test]
fn baike_keeps_articles_without_summary_but_not_empty_ones() {
    let no_summary = json!({"title": "Θ", "summary": null,
                            "sections": [{"title": "关于Θ", "content": "第八个字母"}]});
    assert_eq!(
        render(Format::Baike, no_summary).unwrap(),
        "Θ：关于Θ：第八个字母"
    );
    let empty = json!({"title": "玉矛头", "summary": "  ", "sections": []});
    assert_eq!(render(Format::Baike, empty), Err(RejectCode::EmptyField));
    let bad_section = json!({"title": "t", "summary": "s", "sections": ["x"]});
    assert_eq!(
        render(Format::Baike, bad_section),
        Err(RejectCode::WrongType)
    );
}

#[test]
fn auto_detection_recognises_every_format_by_its_fields() {
    let cases: [(&[&str], Format); 11] = [
        (&["text"], Format::Text),
        (&["id", "content"], Format::Wanjuan),
        (&["id", "q_main", "option_a", "std_ans"], Format::Wanjuan),
        (&["completion", "source"], Format::Wiki),
        (
            &["title", "summary", "sections", "tags", "url"],
            Format::Baike,
        ),
        (
            &["qid", "category", "title", "desc", "answer"],
            Format::BaiduQa,
        ),
        (&["instruction", "input", "output"], Format::Belle),
        (&["conversations", "id"], Format::BelleMultiturn),
        (
            &["conversation_id", "category", "conversation"],
            Format::Moss,
        ),
        (&["kind", "input", "target"], Format::Firefly),
        (
            &["INSTRUCTION", "RESPONSE", "SOURCE", "METADATA"],
            Format::Zhihu,
        ),
    ];
    for (fields, expected) in cases {
        assert_eq!(
            Format::detect(|k| fields.contains(&k)),
            Some(expected),
            "fields {fields:?}"
        );
    }
    let starcoder = [
        "max_stars_repo_path",
        "max_stars_repo_name",
        "id",
        "content",
    ];
    assert_eq!(
        Format::detect(|k| starcoder.contains(&k)),
        Some(Format::Starcoder)
    );
}
