//! What a `steel clean` run did, per operator: documents in and out, how many each rule
//! removed (or changed) and their share, quantiles of the statistic each filter measured, the
//! time it took, and up to `--trace N` examples. Written as `report.json` and as a readable
//! table. `steel run`'s epoch reports hold the same [`OpReport`] per operator, folded from the
//! same [`Event`]s by [`OpReport::add`], and print the same table ([`ops_table`]).

use crate::clean::chain::{Event, Outcome};
use crate::clean::op::Op;
use crate::clean::recipe::BuiltOp;
use crate::clean::sketch::{Sketch, Summary};
use crate::clean::yaml::Node;
use crate::output::ShardInfo;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// One traced document: where it came from and what the operator did to it.
#[derive(Clone, Debug, Serialize)]
pub struct TraceExample {
    pub file: String,
    pub row: u64,
    /// The text before the operator.
    pub before: String,
    /// The text after a mapper (absent for removed documents).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// The filter's statistic for a removed document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stat: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct OpReport {
    pub name: String,
    pub kind: &'static str,
    pub params: serde_json::Value,
    pub docs_in: u64,
    pub docs_out: u64,
    pub removed: u64,
    /// `removed / docs_in` (0 when nothing reached the operator).
    pub removed_share: f64,
    /// Documents whose text a mapper changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stat_name: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stat: Option<Summary>,
    /// Seconds the operator spent on documents, summed over threads (for a deduplicator in
    /// `steel run`: computing keys; the index probes are the dataflow's).
    pub seconds: f64,
    pub trace: Vec<TraceExample>,
    #[serde(skip)]
    pub sketch: Sketch,
    #[serde(skip)]
    pub nanos: u64,
}

impl OpReport {
    pub fn new(
        name: &str,
        kind: &'static str,
        params: &[(String, Node)],
        stat_name: Option<&'static str>,
    ) -> Self {
        OpReport {
            name: name.to_string(),
            kind,
            params: serde_json::Value::Object(
                params
                    .iter()
                    .map(|(k, v)| (k.clone(), to_json(v)))
                    .collect(),
            ),
            docs_in: 0,
            docs_out: 0,
            removed: 0,
            removed_share: 0.0,
            changed: (kind == "mapper").then_some(0),
            stat_name,
            stat: None,
            seconds: 0.0,
            trace: Vec::new(),
            sketch: Sketch::default(),
            nanos: 0,
        }
    }

    /// The empty report of a built operator.
    pub fn for_op(op: &BuiltOp) -> Self {
        let stat = match &op.op {
            Op::Filter(filter) => Some(filter.stat_name()),
            _ => None,
        };
        OpReport::new(&op.spec.name, op.op.kind(), &op.spec.params, stat)
    }

    /// Fold what this operator did to one document into the counts; `false` when it removed
    /// the document. A traced text becomes an example (through `example(before, after,
    /// statistic)`) while the report holds fewer than `trace`.
    pub fn add(
        &mut self,
        event: Event,
        trace: usize,
        example: impl FnOnce(String, Option<String>, Option<f64>) -> TraceExample,
    ) -> bool {
        self.docs_in += 1;
        self.nanos += event.nanos;
        let room = self.trace.len() < trace;
        match event.outcome {
            Outcome::Unchanged => {}
            Outcome::Changed { trace: traced } => {
                *self.changed.get_or_insert(0) += 1;
                if let Some((before, after)) = traced
                    && room
                {
                    self.trace.push(example(before, Some(after), None));
                }
            }
            Outcome::Measured {
                value,
                removed,
                trace: traced,
            } => {
                self.sketch.add(value.0);
                if removed {
                    if let Some(before) = traced
                        && room
                    {
                        self.trace.push(example(before, None, Some(value.0)));
                    }
                    return false;
                }
            }
        }
        self.docs_out += 1;
        true
    }

    /// Fill the derived fields once the run is over.
    pub fn finish(&mut self) {
        self.removed = self.docs_in - self.docs_out;
        self.removed_share = if self.docs_in == 0 {
            0.0
        } else {
            self.removed as f64 / self.docs_in as f64
        };
        self.stat = self.sketch.summary();
        self.seconds = self.nanos as f64 / 1e9;
    }
}

/// The per-operator table both reports print: counts, the removed share, the time, and the
/// statistic's quantiles (or, for a mapper, how many texts it changed).
pub fn ops_table(ops: &[OpReport]) -> String {
    let mut out = format!(
        "{:<3} {:<34} {:>9} {:>9} {:>9} {:>7} {:>8}  statistic p05 / p50 / p95\n",
        "#", "operator", "in", "out", "removed", "share", "cpu s"
    );
    for (i, op) in ops.iter().enumerate() {
        let detail = match (&op.stat, op.changed) {
            (Some(stat), _) => {
                let q = |name: &str| {
                    stat.quantiles
                        .iter()
                        .find(|(n, _)| n == name)
                        .map_or(f64::NAN, |(_, v)| *v)
                };
                format!(
                    "{} {:.4} / {:.4} / {:.4}",
                    op.stat_name.unwrap_or(""),
                    q("p05"),
                    q("p50"),
                    q("p95")
                )
            }
            (None, Some(changed)) => format!("changed {changed}"),
            (None, None) => String::new(),
        };
        out.push_str(&format!(
            "{:<3} {:<34} {:>9} {:>9} {:>9} {:>6.2}% {:>8.2}  {detail}\n",
            i + 1,
            op.name,
            op.docs_in,
            op.docs_out,
            op.removed,
            op.removed_share * 100.0,
            op.seconds
        ));
    }
    out
}

fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match node {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(*b),
        Node::Int(i) => Value::from(*i),
        Node::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Node::Str(s) => Value::String(s.clone()),
        Node::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        Node::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
    }
}

#[derive(Debug, Serialize)]
pub struct CleanReport {
    pub recipe: String,
    pub text_key: String,
    pub files: Vec<String>,
    pub docs_in: u64,
    pub docs_out: u64,
    /// Records that could not be read as documents (see `_rejects.jsonl`).
    pub rejected: u64,
    pub reject_reasons: BTreeMap<String, u64>,
    pub bytes_in: u64,
    pub ops: Vec<OpReport>,
    pub ignored_keys: Vec<String>,
    pub notes: Vec<String>,
    pub output: String,
    pub shards: Vec<ShardInfo>,
    pub threads: usize,
    pub seconds: f64,
}

impl CleanReport {
    /// The short form `--json` prints: totals and per-operator counts.
    pub fn brief(&self) -> serde_json::Value {
        serde_json::json!({
            "docs_in": self.docs_in,
            "docs_out": self.docs_out,
            "rejected": self.rejected,
            "seconds": self.seconds,
            "threads": self.threads,
            "output": self.output,
            "ops": self.ops.iter().map(|op| serde_json::json!({
                "name": op.name,
                "docs_in": op.docs_in,
                "docs_out": op.docs_out,
                "removed": op.removed,
                "changed": op.changed,
                "seconds": op.seconds,
            })).collect::<Vec<_>>(),
        })
    }
}

impl fmt::Display for CleanReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "recipe {} on {} file(s), text key `{}`",
            self.recipe,
            self.files.len(),
            self.text_key
        )?;
        write!(f, "{}", ops_table(&self.ops))?;
        writeln!(
            f,
            "{} documents in, {} out, {} unreadable records rejected; {:.2} s on {} thread(s); output {}",
            self.docs_in, self.docs_out, self.rejected, self.seconds, self.threads, self.output
        )?;
        if !self.ignored_keys.is_empty() {
            writeln!(f, "ignored recipe keys: {}", self.ignored_keys.join(", "))?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}
