//! Every operator against data-juicer 1.6.1's own outputs (`tests/data/clean/known_answers.jsonl`,
//! made by `make_known_answers.py` next to it): hand-made edge cases (empty text, only
//! whitespace, no newline, mixed scripts, HTML, mojibake, LaTeX, code) and documents from the
//! real samples.

use serde_json::Value;
use steel_dataflow::clean::filters::Resources;
use steel_dataflow::clean::op::Op;
use steel_dataflow::clean::recipe::{OpSpec, Recipe};
use steel_dataflow::clean::yaml::Node;

fn node(value: &Value) -> Node {
    match value {
        Value::Null => Node::Null,
        Value::Bool(b) => Node::Bool(*b),
        Value::Number(n) => n
            .as_i64()
            .map_or_else(|| Node::Float(n.as_f64().unwrap()), Node::Int),
        Value::String(s) => Node::Str(s.clone()),
        Value::Array(items) => Node::Seq(items.iter().map(node).collect()),
        Value::Object(map) => Node::Map(map.iter().map(|(k, v)| (k.clone(), node(v))).collect()),
    }
}

fn build(name: &str, params: &Value) -> Op {
    let spec = OpSpec {
        name: name.to_string(),
        params: params
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), node(v)))
            .collect(),
    };
    let recipe = Recipe {
        ops: vec![spec],
        text_key: "text".into(),
        np: None,
        ignored_keys: vec![],
        notes: vec![],
    };
    recipe
        .build_ops(&Resources::default())
        .unwrap()
        .pop()
        .unwrap()
        .op
}

/// What our operator gives for `text`, in the fixture's terms.
fn ours(op: &Op, name: &str, text: &str) -> Value {
    match op {
        Op::Mapper(mapper) => mapper.map(text).map_or(Value::Null, Value::String),
        Op::Filter(filter) => serde_json::json!(filter.measure(text).value),
        Op::Dedup(dedup) => {
            let key = dedup.key(text);
            match name {
                "document_deduplicator" => Value::String(format!("{:016x}{:016x}", key[0], key[1])),
                "document_simhash_deduplicator" => Value::String(key[0].to_string()),
                // Band keys first, then the Jaccard sketch.
                _ => Value::Array(
                    key[..4]
                        .iter()
                        .map(|k| Value::String(format!("{k:016x}")))
                        .collect(),
                ),
            }
        }
    }
}

/// The fixture's minhash bands as our band keys (xxh3 of the band bytes).
fn band_keys(value: &Value) -> Value {
    let keys = value.as_array().unwrap().iter().map(|hex| {
        let hex = hex.as_str().unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        Value::String(format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes)))
    });
    Value::Array(keys.collect())
}

fn same(expected: &Value, got: &Value) -> bool {
    match (expected, got) {
        (Value::Number(a), Value::Number(b)) => {
            (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-9
        }
        _ => expected == got,
    }
}

#[test]
fn operators_match_data_juicer_outputs() {
    let fixture = std::fs::read_to_string("tests/data/clean/known_answers.jsonl").unwrap();
    let mut lines = fixture
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap());
    let texts: Vec<String> =
        serde_json::from_value(lines.next().unwrap()["texts"].clone()).unwrap();
    let mut mismatches = Vec::new();
    let mut checked = 0;
    for case in lines {
        let name = case["op"].as_str().unwrap();
        let op = build(name, &case["params"]);
        for (i, (text, expected)) in texts
            .iter()
            .zip(case["out"].as_array().unwrap())
            .enumerate()
        {
            let expected = if name == "document_minhash_deduplicator" {
                band_keys(expected)
            } else {
                expected.clone()
            };
            let got = ours(&op, name, text);
            checked += 1;
            if !same(&expected, &got) {
                mismatches.push(format!(
                    "{name} {} text #{i}: expected {expected:.200?}, got {got:.200?}",
                    case["params"]
                ));
            }
        }
    }
    assert!(checked >= 1750, "only {checked} checks");
    for m in &mismatches {
        eprintln!("{m}");
    }
    assert!(
        mismatches.is_empty(),
        "{} of {checked} outputs differ from data-juicer",
        mismatches.len()
    );
}

/// Our ARPA scorer against KenLM's own `Model.score` (the `kenlm` Python package) on a model
/// `steel lm train` made (`tests/data/clean/make_kenlm_scores.py`), and data-juicer's
/// perplexity formula on those scores. KenLM loading the file also shows it is valid ARPA.
#[test]
fn perplexity_matches_kenlm() {
    use steel_dataflow::clean::lm::Unit;
    use steel_dataflow::clean::lm::arpa::NgramModel;
    use steel_dataflow::clean::lm::train::Trainer;

    let dir = std::path::Path::new("tests/data/clean");
    let model = NgramModel::load(&dir.join("kenlm_ref.arpa")).unwrap();
    let rows: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("kenlm_scores.json")).unwrap())
            .unwrap();
    assert!(rows.len() >= 16);
    for row in &rows {
        let text = row["text"].as_str().unwrap();
        let pieces = Unit::Char.pieces(text);
        let score = model.score(&pieces);
        let expected = row["score"].as_f64().unwrap();
        assert!(
            (score - expected).abs() < 1e-3,
            "{text:?}: ours {score}, KenLM {expected}"
        );
        assert_eq!(
            model.perplexity(&pieces),
            row["perplexity"].as_f64().unwrap(),
            "{text:?}"
        );
    }

    // Training is deterministic: the committed model is what the trainer makes today.
    let mut trainer = Trainer::new(3).unwrap();
    for line in std::fs::read_to_string(dir.join("kenlm_ref.jsonl"))
        .unwrap()
        .lines()
    {
        let text: Value = serde_json::from_str(line).unwrap();
        trainer.add_sentence(&Unit::Char.pieces(text["text"].as_str().unwrap()));
    }
    assert!(trainer.to_arpa() == std::fs::read_to_string(dir.join("kenlm_ref.arpa")).unwrap());
}
