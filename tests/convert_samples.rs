//! Every format on the real 1,000-record samples in ../shared/data/steel-samples: record
//! counts, and the exact text of records worked out by hand from the raw record (NFKC turns
//! full-width `，：？（）` into `,:?()`; the template and Baike's `：` separators are literal).

mod common;

use common::{chat, read_docs, read_rejects, run, sample};
use steel_dataflow::doc::UnifiedDoc;

fn doc_at(docs: &[UnifiedDoc], row: u64) -> &str {
    &docs
        .iter()
        .find(|d| d.meta.row == row)
        .unwrap_or_else(|| panic!("row {row} missing"))
        .text
}

#[test]
fn baike_sample_counts_and_texts() {
    let dir = tempfile::tempdir().unwrap();
    let summary = run(dir.path(), "out", &[sample("baidu_baike.jsonl")], "baike");
    assert_eq!(
        (summary.docs_in, summary.docs_out, summary.rejected),
        (1000, 990, 10)
    );
    let docs = read_docs(&dir.path().join("out"));
    assert_eq!(doc_at(&docs, 711), "问起奋：简介");
    assert_eq!(doc_at(&docs, 951), "TCL D920：重要参数");
    // Row 877 is `{"title": "玉矛头", "summary": "  ", "sections": []}`: nothing but a title.
    let rejects = read_rejects(&dir.path().join("out"));
    let r877 = rejects
        .iter()
        .find(|r| r["row"] == 877)
        .expect("row 877 rejected");
    assert_eq!(r877["reason"], "empty_field");
    assert_eq!(r877["line"], 878);
    assert!(
        r877["head"]
            .as_str()
            .unwrap()
            .starts_with("{\"title\": \"玉矛头\"")
    );
    assert!(rejects.iter().all(|r| r["reason"] == "empty_field"));
    // Row 0: title, summary, then the first section's title and content, no separator.
    assert!(
        doc_at(&docs, 0)
            .starts_with("红色食品：红色食品是指食品为红色、橙红色或棕红色的食品。科学家认为,")
    );
    assert!(doc_at(&docs, 0).contains("预防感冒等作用。简介：红色食品富含番茄红素"));
}

#[test]
fn belle_sample_counts_and_texts() {
    let dir = tempfile::tempdir().unwrap();
    let summary = run(
        dir.path(),
        "out",
        &[sample("belle_instruction.jsonl")],
        "belle",
    );
    assert_eq!(
        (summary.docs_in, summary.docs_out, summary.rejected),
        (1000, 1000, 0)
    );
    let docs = read_docs(&dir.path().join("out"));
    assert_eq!(
        doc_at(&docs, 866),
        "将以下句子翻译成法语。\n我爱你。\nJe t'aime."
    );
    assert_eq!(
        doc_at(&docs, 420),
        "将以下英文语句翻译成中文\nHow are you?\n你好吗?"
    );
    // The instruction ends in a newline of its own; the join adds another.
    assert_eq!(
        doc_at(&docs, 122),
        "翻译一句话:Tomorrow is another day.\n\n明天又是新的一天。"
    );
}

#[test]
fn firefly_sample_counts_and_chat_template_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let summary = run(dir.path(), "out", &[sample("firefly.jsonl")], "firefly");
    assert_eq!((summary.docs_in, summary.docs_out), (1000, 1000));
    let docs = read_docs(&dir.path().join("out"));
    assert_eq!(
        doc_at(&docs, 14).as_bytes(),
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n和尚\n输出下联:<|im_end|>\n<|im_start|>assistant\n悟空".as_bytes()
    );
    assert_eq!(doc_at(&docs, 51), chat("上联:藓\n请给出下联:", "莓"));
    assert_eq!(
        doc_at(&docs, 641),
        chat("我丈夫也,猜一字\n回答答案:", "余//////////")
    );
}

#[test]
fn sky_web_sample_counts_and_texts() {
    let dir = tempfile::tempdir().unwrap();
    let summary = run(dir.path(), "out", &[sample("sky_web.jsonl")], "text");
    assert_eq!((summary.docs_in, summary.docs_out), (1000, 1000));
    let docs = read_docs(&dir.path().join("out"));
    assert_eq!(
        doc_at(&docs, 719),
        "Journal of the Franklin Institute以发表工程和应用数学领域的高质量论文而闻名,内容涵盖控制系统、\
         复杂网络和动态系统、信号处理和通信及其应用等多个重点领域,2020年影响因子4.064。\n陈镇镇同学的另一篇研究论文\
         “Design of Rapid Exponential Integral Nonlinear Tracking Differentiator”刚刚被International \
         Journal of Control接收。该生这两篇研究论文都是在其研究生导师宗西举教授的指导下完成的。\n"
    );
    assert!(doc_at(&docs, 290).ends_with(
        "感谢您一直来对椒江农村合作银行的信赖与支持!敬请继续关注“丰收.信福”系列理财产品。"
    ));
    assert!(
        doc_at(&docs, 290).contains("客户收益计算(以5万本金为例):5万×4.9%×120天÷365天=805.48元。")
    );
}

#[test]
fn wiki_sample_counts_and_texts() {
    let dir = tempfile::tempdir().unwrap();
    let summary = run(dir.path(), "out", &[sample("wiki_cn.json")], "wiki");
    assert_eq!((summary.docs_in, summary.docs_out), (250, 250));
    let docs = read_docs(&dir.path().join("out"));
    assert_eq!(
        doc_at(&docs, 139),
        "《名厨争锋》(Celebrity Chef:East vs West)是亚洲的一档烹饪真人秀的电视节目,由FOX Networks Group \
         Asia (FNGA)制作。第一季从2018年3月25日起播出。节目中,香港歌手谢霆锋将向加拿大厨师David Rocco发起挑战。\
         节目将于FOX+及FOX Life播出,中国大陆地区则由腾讯同步播出,香港由无线电视明珠台及无线财经·资讯台播出。\
         节目拍摄于中国澳门,菲律宾和马来西亚。"
    );
    assert!(doc_at(&docs, 57).starts_with("巴里萨尔沙达尔乌帕齐拉(বরিশাল সদর উপজেলা)是孟加拉国"));
}

#[test]
fn zhihu_parquet_sample_counts_and_texts() {
    let dir = tempfile::tempdir().unwrap();
    let summary = run(dir.path(), "out", &[sample("zhihu_qa.parquet")], "zhihu");
    assert_eq!((summary.docs_in, summary.docs_out), (1000, 1000));
    let docs = read_docs(&dir.path().join("out"));
    assert_eq!(
        doc_at(&docs, 85),
        chat("我想问雾灯怎么开?", "你夜间考试没?")
    );
    assert_eq!(
        doc_at(&docs, 788),
        chat("为什么恐怖片里总是出现金鱼?", "便宜")
    );
}

#[test]
fn starcoder_parquet_sample_is_kept_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let summary = run(
        dir.path(),
        "out",
        &[sample("starcoder_python.parquet")],
        "starcoder",
    );
    assert_eq!((summary.docs_in, summary.docs_out), (500, 500));
    let docs = read_docs(&dir.path().join("out"));
    assert_eq!(doc_at(&docs, 195), "  print(1)");
    assert_eq!(doc_at(&docs, 318), "print('222')\n");
    assert_eq!(
        doc_at(&docs, 148),
        "from . import ip\n\n\n__all__ = ['ip']\n"
    );
    // Code keeps full-width characters and \r that NFKC or \r-removal would change.
    assert!(docs.iter().all(|d| d.meta.source == "starcoder"));
}

#[test]
fn auto_picks_the_right_format_for_every_sample_and_meta_points_back() {
    let dir = tempfile::tempdir().unwrap();
    let summary = run(
        dir.path(),
        "out",
        &[common::samples().display().to_string()],
        "auto",
    );
    let formats: Vec<(&str, &str)> = summary
        .files
        .iter()
        .map(|f| (f.file.rsplit('/').next().unwrap(), f.format.as_str()))
        .collect();
    assert_eq!(
        formats,
        [
            ("baidu_baike.jsonl", "baike"),
            ("belle_instruction.jsonl", "belle"),
            ("firefly.jsonl", "firefly"),
            ("sky_web.jsonl", "text"),
            ("starcoder_python.parquet", "starcoder"),
            ("wiki_cn.json", "wiki"),
            ("zhihu_qa.parquet", "zhihu"),
        ]
    );
    assert_eq!(summary.docs_in, 5750);
    assert_eq!(summary.docs_in, summary.docs_out + summary.rejected);
    for file in &summary.files {
        assert_eq!(file.docs_in, file.docs_out + file.rejected, "{}", file.file);
        assert!(file.detected_from.is_some());
    }
    let docs = read_docs(&dir.path().join("out"));
    assert_eq!(docs.len() as u64, summary.docs_out);
    // Output order is input order: files sorted, rows ascending within a file.
    let keys: Vec<(String, u64)> = docs
        .iter()
        .map(|d| (d.meta.file.clone(), d.meta.row))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}
