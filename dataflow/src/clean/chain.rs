//! One document through a recipe's mappers and filters, in order: what `steel clean` and
//! `steel run` both apply to every document (deduplicators, which need the other documents,
//! are run apart by each). Each operator leaves an [`Event`] (what it did and how long it
//! took, folded into the same [`OpReport`](crate::clean::report::OpReport) by both); the first
//! filter that removes the document ends the chain.

use crate::clean::op::Op;
use crate::clean::recipe::BuiltOp;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::time::Instant;

/// What one operator did to a document, and the time it took.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Event {
    pub outcome: Outcome,
    /// Nanoseconds the operator spent on the document.
    pub nanos: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Outcome {
    /// A mapper that left the text as it was.
    Unchanged,
    /// A mapper that changed the text; `(before, after)` when asked to trace it.
    Changed { trace: Option<(String, String)> },
    /// A filter's statistic and verdict; the text it removed when asked to trace it.
    Measured {
        value: Stat,
        removed: bool,
        trace: Option<String>,
    },
}

/// A filter's statistic, ordered by `f64::total_cmp` so that events can be records of a
/// dataflow collection (which needs `Ord`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Stat(pub f64);

impl PartialEq for Stat {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Stat {}

impl PartialOrd for Stat {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Stat {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// `text` through `ops` (mappers and filters only): the text after them, or `None` if a filter
/// removed it (its event is then the last), and an event per operator reached. `traced[i]`
/// asks operator `i` to keep the texts its event shows.
pub fn apply(ops: &[BuiltOp], mut text: String, traced: &[bool]) -> (Option<String>, Vec<Event>) {
    let mut events = Vec::with_capacity(ops.len());
    for (index, op) in ops.iter().enumerate() {
        let traced = traced.get(index).copied().unwrap_or(false);
        let start = Instant::now();
        let outcome = match &op.op {
            Op::Mapper(mapper) => match mapper.map(&text) {
                Some(new_text) => {
                    let old = std::mem::replace(&mut text, new_text);
                    let trace = traced.then(|| (old, text.clone()));
                    Outcome::Changed { trace }
                }
                None => Outcome::Unchanged,
            },
            Op::Filter(filter) => {
                let measure = filter.measure(&text);
                let removed = !measure.keep;
                let trace = (removed && traced).then(|| text.clone());
                Outcome::Measured {
                    value: Stat(measure.value),
                    removed,
                    trace,
                }
            }
            Op::Dedup(_) => unreachable!("a chain holds no deduplicator"),
        };
        let removed = matches!(outcome, Outcome::Measured { removed: true, .. });
        events.push(Event {
            outcome,
            nanos: start.elapsed().as_nanos() as u64,
        });
        if removed {
            return (None, events);
        }
    }
    (Some(text), events)
}
