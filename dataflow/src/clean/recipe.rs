//! data-juicer recipes: the YAML file's `process:` list and the global keys that matter here.
//!
//! `text_keys` names the document field the operators read and write (the first one, as in
//! data-juicer); `np` is the default thread count. Every other global key is accepted and
//! listed once as ignored. Operators are built with `build_ops`; an unknown operator or
//! parameter is an error that names it and lists what is supported.

use crate::clean::filters::{self, Resources};
use crate::clean::op::Op;
use crate::clean::params::Params;
use crate::clean::yaml::{self, Node};
use crate::clean::{dedup, mappers};
use std::path::Path;

/// One entry of `process:`.
#[derive(Clone, Debug)]
pub struct OpSpec {
    pub name: String,
    pub params: Vec<(String, Node)>,
}

#[derive(Clone, Debug)]
pub struct Recipe {
    pub ops: Vec<OpSpec>,
    pub text_key: String,
    pub np: Option<usize>,
    /// Global keys read but not used, in file order.
    pub ignored_keys: Vec<String>,
    /// Things worth telling the user (a key given twice, extra text keys).
    pub notes: Vec<String>,
}

/// A built operator with its recipe entry.
pub struct BuiltOp {
    pub spec: OpSpec,
    pub op: Op,
}

/// A recipe that cannot be read, or is not one Steel runs; the message says where and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RecipeError(pub String);

impl Recipe {
    pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RecipeError(format!("cannot read recipe `{}`: {e}", path.display())))?;
        Recipe::parse(&text).map_err(|e| RecipeError(format!("recipe `{}`: {e}", path.display())))
    }

    pub fn parse(text: &str) -> Result<Recipe, RecipeError> {
        Self::parse_text(text).map_err(RecipeError)
    }

    fn parse_text(text: &str) -> Result<Recipe, String> {
        let Node::Map(entries) = yaml::parse(text)? else {
            return Err("the recipe must be a YAML mapping with a `process:` list".into());
        };
        let mut recipe = Recipe {
            ops: Vec::new(),
            text_key: "text".into(),
            np: None,
            ignored_keys: Vec::new(),
            notes: Vec::new(),
        };
        let mut seen: Vec<&str> = Vec::new();
        let mut process = None;
        for (key, value) in &entries {
            if seen.contains(&key.as_str()) {
                recipe.notes.push(format!(
                    "global key `{key}` is given more than once; the last value is used"
                ));
            }
            seen.push(key);
            match key.as_str() {
                "process" => process = Some(value),
                "text_keys" => recipe.text_key = text_key(value, &mut recipe.notes)?,
                "np" => {
                    recipe.np = match value {
                        Node::Int(n) if *n > 0 => Some(*n as usize),
                        Node::Null => None,
                        other => {
                            return Err(format!(
                                "`np` must be a positive integer, found {}",
                                other.kind()
                            ));
                        }
                    }
                }
                _ => {
                    if !recipe.ignored_keys.contains(key) {
                        recipe.ignored_keys.push(key.clone());
                    }
                }
            }
        }
        let Some(Node::Seq(items)) = process else {
            return Err("the recipe has no `process:` list of operators".into());
        };
        for (index, item) in items.iter().enumerate() {
            let entry = match item {
                Node::Map(pairs) if pairs.len() == 1 => &pairs[0],
                Node::Str(name) => {
                    recipe.ops.push(OpSpec {
                        name: name.clone(),
                        params: Vec::new(),
                    });
                    continue;
                }
                other => {
                    return Err(format!(
                        "process entry {} must be `- operator_name:` with its parameters, found {}",
                        index + 1,
                        other.kind()
                    ));
                }
            };
            let params = match &entry.1 {
                Node::Null => Vec::new(),
                Node::Map(params) => params.clone(),
                other => {
                    return Err(format!(
                        "process entry {} (`{}`): parameters must be a mapping, found {}",
                        index + 1,
                        entry.0,
                        other.kind()
                    ));
                }
            };
            recipe.ops.push(OpSpec {
                name: entry.0.clone(),
                params,
            });
        }
        Ok(recipe)
    }

    /// Build every operator, failing on the first unknown name or parameter.
    pub fn build_ops(&self, resources: &Resources) -> Result<Vec<BuiltOp>, String> {
        self.ops
            .iter()
            .enumerate()
            .map(|(index, spec)| {
                build_op(spec, &self.text_key, resources)
                    .map(|op| BuiltOp {
                        spec: spec.clone(),
                        op,
                    })
                    .map_err(|e| format!("process entry {} (`{}`): {e}", index + 1, spec.name))
            })
            .collect()
    }
}

fn text_key(value: &Node, notes: &mut Vec<String>) -> Result<String, String> {
    match value {
        Node::Str(key) => Ok(key.clone()),
        Node::Seq(keys) => match keys.first() {
            Some(Node::Str(first)) => {
                if keys.len() > 1 {
                    notes.push(format!("`text_keys` lists {} keys; as in data-juicer only the first, `{first}`, is used", keys.len()));
                }
                Ok(first.clone())
            }
            _ => Err("`text_keys` must be a string or a list of strings".into()),
        },
        other => Err(format!(
            "`text_keys` must be a string or a list of strings, found {}",
            other.kind()
        )),
    }
}

/// Every operator name `steel clean` knows.
pub fn supported() -> Vec<&'static str> {
    let mut names: Vec<&str> = [mappers::NAMES, filters::NAMES, dedup::NAMES].concat();
    names.sort_unstable();
    names
}

fn build_op(spec: &OpSpec, text_key: &str, resources: &Resources) -> Result<Op, String> {
    let mut params = Params::new(&spec.name, spec.params.clone());
    if let Some(key) = params.opt_string("text_key")?
        && key != text_key
    {
        return Err(format!(
            "a per-operator `text_key` (`{key}`) is not supported; set the global `text_keys`"
        ));
    }
    let op = if let Some(mapper) = mappers::build(&spec.name, &mut params) {
        Op::Mapper(mapper?)
    } else if let Some(filter) = filters::build(&spec.name, &mut params, resources) {
        Op::Filter(filter?)
    } else if let Some(dedup) = dedup::build(&spec.name, &mut params) {
        Op::Dedup(dedup?)
    } else {
        return Err(format!(
            "unknown operator `{}`; supported: {}",
            spec.name,
            supported().join(", ")
        ));
    };
    params.finish()?;
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_globals_and_lists_ignored_keys() {
        let recipe = Recipe::parse(
            "project_name: x\nnp: 3\ntext_keys: content\ntext_keys: body\nprocess:\n  - clean_email_mapper:\n  - text_length_filter:\n      min_len: 5\n",
        )
        .unwrap();
        assert_eq!(recipe.text_key, "body");
        assert_eq!(recipe.np, Some(3));
        assert_eq!(recipe.ignored_keys, ["project_name"]);
        assert_eq!(recipe.notes.len(), 1);
        assert_eq!(recipe.ops.len(), 2);
        let ops = recipe.build_ops(&Resources::default()).unwrap();
        assert_eq!(ops[1].op.kind(), "filter");
    }

    #[test]
    fn every_supported_operator_builds_with_its_default_parameters() {
        let arpa = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data/clean/kenlm_ref.arpa");
        let resources = Resources {
            lm_model: Some(arpa),
            hf_tokenizer: None,
        };
        let names = supported();
        assert_eq!(names.len(), 27);
        let mut kinds = Vec::new();
        for name in &names {
            let recipe = Recipe::parse(&format!("process:\n  - {name}:\n")).unwrap();
            let ops = recipe
                .build_ops(&resources)
                .unwrap_or_else(|e| panic!("`{name}` does not build: {e}"));
            assert_eq!(ops[0].spec.name, *name);
            kinds.push(ops[0].op.kind());
        }
        let count = |kind| kinds.iter().filter(|k| **k == kind).count();
        assert_eq!(
            (count("mapper"), count("filter"), count("deduplicator")),
            (12, 12, 3)
        );
    }

    #[test]
    fn lang_that_a_filter_cannot_honour_is_refused() {
        let build = |entry: &str| {
            let recipe = Recipe::parse(&format!("process:\n  - {entry}\n")).unwrap();
            recipe.build_ops(&Resources::default()).map(|ops| ops.len())
        };
        for op in ["words_num_filter", "word_repetition_filter"] {
            // Without tokenization words are split on whitespace in every language, as in
            // data-juicer; with it we segment with jieba, which is Chinese.
            assert_eq!(build(&format!("{op}:\n      lang: en")), Ok(1));
            assert_eq!(build(&format!("{op}:\n      lang: zh")), Ok(1));
            assert_eq!(
                build(&format!("{op}:\n      lang: zh\n      tokenization: true")),
                Ok(1)
            );
            assert_eq!(
                build(&format!("{op}:\n      lang: en\n      tokenization: true")),
                Err(format!(
                    "process entry 1 (`{op}`): {op}: parameter `lang` is `en` with \
                     `tokenization: true`, which is not supported: data-juicer would tokenise \
                     with its downloaded `en` sentencepiece model; Steel tokenises with jieba, \
                     which segments Chinese only. Supported: `lang: zh` with \
                     `tokenization: true`, or any language with `tokenization: false` (words \
                     split on whitespace)"
                ))
            );
            // The default language is data-juicer's, `en`.
            let error = build(&format!("{op}:\n      tokenization: true")).unwrap_err();
            assert!(
                error.contains("`lang` is `en` with `tokenization: true`"),
                "{error}"
            );
        }
        for op in [
            "words_num_filter",
            "word_repetition_filter",
            "perplexity_filter",
        ] {
            assert_eq!(
                build(&format!("{op}:\n      lang: Chinese")),
                Err(format!(
                    "process entry 1 (`{op}`): {op}: parameter `lang` is `Chinese`, which is \
                     not a language code; supported: two or three lower-case letters such as \
                     `zh` or `en`"
                ))
            );
        }
        let error = build("perplexity_filter:\n      lang: zh").unwrap_err();
        assert!(
            error.contains("no language model (`lang: zh`)") && error.contains("zh.arpa"),
            "{error}"
        );
    }

    #[test]
    fn unknown_operator_and_parameter_are_named() {
        let recipe = Recipe::parse("process:\n  - frobnicate_mapper:\n").unwrap();
        let error = recipe.build_ops(&Resources::default()).err().unwrap();
        assert!(
            error.contains("unknown operator `frobnicate_mapper`"),
            "{error}"
        );
        assert!(error.contains("clean_email_mapper"), "{error}");
        let recipe =
            Recipe::parse("process:\n  - text_length_filter:\n      min_length: 3\n").unwrap();
        let error = recipe.build_ops(&Resources::default()).err().unwrap();
        assert!(error.contains("unknown parameter `min_length`"), "{error}");
        assert!(
            error.contains("max_len") && error.contains("min_len"),
            "{error}"
        );
    }
}
