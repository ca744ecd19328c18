//! The per-document part of the pipeline: the recipe's mappers and filters in order, then the
//! keys of the two deduplicators (exact, and the near-duplicate method). Pure functions of the
//! text, so any worker can apply them to any document.

use crate::clean::chain::{self, Event};
use crate::clean::dedup::{self, exact::ExactDedup};
use crate::clean::filters::Resources;
use crate::clean::op::{Deduplicator, Op};
use crate::clean::params::Params;
use crate::clean::recipe::{BuiltOp, OpSpec, Recipe};
use crate::clean::report::OpReport;
use crate::clean::yaml::Node;
use crate::pipeline::config::{DedupOverride, PipelineConfig};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

/// A deduplication key (hash words, a fingerprint, band keys and a sketch), shared by every
/// bucket it is filed under.
pub type Key = Arc<[u64]>;

/// What the index keeps of a document that passed the filters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Entry {
    pub exact: Key,
    /// Empty when the job deduplicates exactly only.
    pub near: Key,
}

/// One document after the mappers and filters, with what each operator it reached did
/// (for the report, `OpReport::add`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Cleaned {
    Passed {
        text: String,
        entry: Entry,
        /// One per mapper and filter.
        events: Vec<Event>,
        /// Nanoseconds spent computing the exact and the near-duplicate key.
        key_nanos: [u64; 2],
    },
    /// Removed by the filter of the last event.
    Filtered { events: Vec<Event> },
}

pub struct Stages {
    /// Mappers and filters, in recipe order.
    pub ops: Vec<BuiltOp>,
    pub exact: Box<dyn Deduplicator>,
    pub exact_spec: OpSpec,
    pub near: Option<(OpSpec, Box<dyn Deduplicator>)>,
    /// Things worth telling the user about how the recipe was read.
    pub notes: Vec<String>,
    /// See `sketch_words`.
    sketch_words: usize,
}

impl Stages {
    /// Build the stages of `config`'s recipe, with `[dedup]` replacing its near-duplicate
    /// method. Deduplicators must come after every mapper and filter: the pipeline applies
    /// the stateless operators to new documents only, then deduplicates against the index.
    pub fn build(config: &PipelineConfig) -> Result<Stages, String> {
        let mut recipe = Recipe::load(&config.recipe).map_err(|e| e.to_string())?;
        let mut notes = recipe.notes.clone();
        if let Some(last_stateless) = recipe
            .ops
            .iter()
            .rposition(|op| !dedup::NAMES.contains(&op.name.as_str()))
            && let Some(first_dedup) = recipe
                .ops
                .iter()
                .position(|op| dedup::NAMES.contains(&op.name.as_str()))
            && first_dedup < last_stateless
        {
            return Err(format!(
                "recipe `{}`: `{}` (entry {}) comes after the deduplicator `{}`; `steel run` deduplicates after all mappers and filters, so put deduplicators last",
                config.recipe.display(),
                recipe.ops[last_stateless].name,
                last_stateless + 1,
                recipe.ops[first_dedup].name
            ));
        }
        if let Some(DedupOverride { method, params }) = &config.dedup {
            let before = recipe.ops.len();
            recipe.ops.retain(|op| {
                op.name == "document_deduplicator" || !dedup::NAMES.contains(&op.name.as_str())
            });
            if recipe.ops.len() < before {
                notes.push(format!(
                    "`[dedup] method = {method:?}` replaces the recipe's near-duplicate deduplicator"
                ));
            }
            if let Some(name) = method.operator() {
                let params = params
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), toml_to_node(v)?)))
                    .collect::<Result<_, String>>()
                    .map_err(|e| format!("[dedup] params: {e}"))?;
                recipe.ops.push(OpSpec {
                    name: name.into(),
                    params,
                });
            } else if !params.is_empty() {
                return Err("[dedup] method = \"exact\" takes no params".into());
            }
        }
        let resources = Resources {
            lm_model: config.lm_model.clone(),
            hf_tokenizer: config.hf_tokenizer.clone(),
        };
        let built = recipe.build_ops(&resources)?;
        let mut ops = Vec::new();
        let mut exact = None;
        let mut near = None;
        for op in built {
            match op.op {
                Op::Dedup(d) if op.spec.name == "document_deduplicator" => {
                    exact = Some((op.spec, d));
                }
                Op::Dedup(d) => {
                    if let Some((first, _)) = &near {
                        let first: &OpSpec = first;
                        return Err(format!(
                            "recipe `{}` has two near-duplicate deduplicators (`{}` and `{}`); keep one or set `[dedup] method`",
                            config.recipe.display(),
                            first.name,
                            op.spec.name
                        ));
                    }
                    near = Some((op.spec, d));
                }
                op_kind => ops.push(BuiltOp {
                    spec: op.spec,
                    op: op_kind,
                }),
            }
        }
        let (exact_spec, exact) = match exact {
            Some(found) => found,
            None => {
                notes.push("the recipe has no `document_deduplicator`; exact dedup runs with its defaults first".into());
                let spec = OpSpec {
                    name: "document_deduplicator".into(),
                    params: Vec::new(),
                };
                let mut params = Params::new(&spec.name, Vec::new());
                let dedup: Box<dyn Deduplicator> = Box::new(ExactDedup::from_params(&mut params)?);
                (spec, dedup)
            }
        };
        // A near key's length is the same for every text.
        let sketch_words = near.as_ref().map_or(0, |(_, near)| {
            near.key("").len().saturating_sub(near.sketch_start())
        });
        Ok(Stages {
            ops,
            exact,
            exact_spec,
            near,
            notes,
            sketch_words,
        })
    }

    /// A fingerprint of everything that decides what a document becomes: a state directory
    /// built with other settings is refused rather than mixed.
    pub fn settings_id(&self, config: &PipelineConfig) -> Result<String, String> {
        let mut text = String::new();
        for op in &self.ops {
            text.push_str(&format!("{:?}\n", op.spec));
        }
        text.push_str(&format!("{:?}\n", self.exact_spec));
        if let Some((spec, _)) = &self.near {
            text.push_str(&format!("{spec:?}\n"));
        }
        for file in [&config.lm_model, &config.hf_tokenizer]
            .into_iter()
            .flatten()
        {
            let bytes = std::fs::read(file)
                .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
            text.push_str(&format!("{:016x}\n", xxhash_rust::xxh3::xxh3_64(&bytes)));
        }
        Ok(format!(
            "{:016x}",
            xxhash_rust::xxh3::xxh3_64(text.as_bytes())
        ))
    }

    /// Apply the mappers and filters to one document and key it if it passes.
    pub fn clean(&self, text: String) -> Cleaned {
        let (text, events) = chain::apply(&self.ops, text, &[]);
        let Some(text) = text else {
            return Cleaned::Filtered { events };
        };
        let (entry, key_nanos) = self.timed_entry(&text);
        Cleaned::Passed {
            entry,
            text,
            events,
            key_nanos,
        }
    }

    /// The dedup keys of a cleaned text.
    pub fn entry(&self, text: &str) -> Entry {
        self.timed_entry(text).0
    }

    /// The dedup keys of a cleaned text and the nanoseconds each took.
    fn timed_entry(&self, text: &str) -> (Entry, [u64; 2]) {
        let start = Instant::now();
        let exact: Key = self.exact.key(text).into();
        let exact_nanos = start.elapsed().as_nanos() as u64;
        let start = Instant::now();
        let near = match &self.near {
            Some((_, near)) => near.key(text).into(),
            None => Arc::from(Vec::new()),
        };
        let near_nanos = start.elapsed().as_nanos() as u64;
        (Entry { exact, near }, [exact_nanos, near_nanos])
    }

    /// One empty report per operator, in the order the report lists them: the mappers and
    /// filters, then the exact and the near-duplicate deduplicator.
    pub fn op_reports(&self) -> Vec<OpReport> {
        let mut reports: Vec<OpReport> = self.ops.iter().map(OpReport::for_op).collect();
        let dedups = std::iter::once(&self.exact_spec).chain(self.near.as_ref().map(|(s, _)| s));
        for spec in dedups {
            reports.push(OpReport::new(
                &spec.name,
                "deduplicator",
                &spec.params,
                None,
            ));
        }
        reports
    }

    /// Words of a near key that the index stores for `matches`: the key's length (the same
    /// for every text) after `Deduplicator::sketch_start`.
    pub fn sketch_words(&self) -> usize {
        self.sketch_words
    }

    /// `Deduplicator::sketch_start` of the near-duplicate method (0 without one).
    pub fn sketch_start(&self) -> usize {
        self.near().map_or(0, |near| near.sketch_start())
    }

    pub fn near(&self) -> Option<&dyn Deduplicator> {
        self.near.as_ref().map(|(_, d)| &**d)
    }
}

fn toml_to_node(value: &toml::Value) -> Result<Node, String> {
    Ok(match value {
        toml::Value::String(s) => Node::Str(s.clone()),
        toml::Value::Integer(i) => Node::Int(*i),
        toml::Value::Float(f) => Node::Float(*f),
        toml::Value::Boolean(b) => Node::Bool(*b),
        toml::Value::Array(items) => {
            Node::Seq(items.iter().map(toml_to_node).collect::<Result<_, _>>()?)
        }
        other => {
            return Err(format!(
                "unsupported value: a {} (strings, numbers, booleans and lists are)",
                other.type_str()
            ));
        }
    })
}
