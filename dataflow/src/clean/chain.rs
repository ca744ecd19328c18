//! One document through a recipe's mappers and filters, in order: what `steel clean` and
//! `steel run` both apply to every document (deduplicators, which need the other documents,
//! are run apart by each). Each operator leaves an [`Event`] (what it did, for the reports);
//! the first filter that removes the document ends the chain.

use crate::clean::op::Op;
use crate::clean::recipe::BuiltOp;

/// What one operator did to a document.
pub enum Event {
    /// A mapper that left the text as it was.
    Unchanged,
    /// A mapper that changed the text; `(before, after)` when asked to trace it.
    Changed { trace: Option<(String, String)> },
    /// A filter's statistic and verdict; the text it removed when asked to trace it.
    Measured {
        value: f64,
        removed: bool,
        trace: Option<String>,
    },
}

/// `text` through `ops` (mappers and filters only): the text after them, or `None` if a filter
/// removed it (its event is then the last), and an event per operator reached. `traced[i]`
/// asks operator `i` to keep the texts its event shows.
pub fn apply(ops: &[BuiltOp], mut text: String, traced: &[bool]) -> (Option<String>, Vec<Event>) {
    let mut events = Vec::with_capacity(ops.len());
    for (index, op) in ops.iter().enumerate() {
        let traced = traced.get(index).copied().unwrap_or(false);
        match &op.op {
            Op::Mapper(mapper) => match mapper.map(&text) {
                Some(new_text) => {
                    let old = std::mem::replace(&mut text, new_text);
                    let trace = traced.then(|| (old, text.clone()));
                    events.push(Event::Changed { trace });
                }
                None => events.push(Event::Unchanged),
            },
            Op::Filter(filter) => {
                let measure = filter.measure(&text);
                let removed = !measure.keep;
                let trace = (removed && traced).then(|| text.clone());
                events.push(Event::Measured {
                    value: measure.value,
                    removed,
                    trace,
                });
                if removed {
                    return (None, events);
                }
            }
            Op::Dedup(_) => unreachable!("a chain holds no deduplicator"),
        }
    }
    (Some(text), events)
}
