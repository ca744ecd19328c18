//! The three kinds of cleaning operator, as data-juicer has them.
//!
//! - A mapper rewrites a document's text.
//! - A filter measures one statistic of the text and keeps the document when it is in range.
//! - A deduplicator drops a document when an earlier one that reached it is a (near-)duplicate.
//!   Its key is a pure function of the text (computed in parallel); the "seen before?" check
//!   runs in input order, so the result never depends on the number of threads.

use crate::clean::params::{ParamResult, Params};

pub trait Mapper: Send + Sync {
    /// The new text, or `None` when the text is unchanged.
    fn map(&self, text: &str) -> Option<String>;
}

/// A filter's verdict on one document.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measure {
    pub value: f64,
    pub keep: bool,
}

pub trait Filter: Send + Sync {
    /// The name of the statistic (data-juicer's stats key, e.g. `alnum_ratio`).
    fn stat_name(&self) -> &'static str;
    fn measure(&self, text: &str) -> Measure;
}

/// A deduplicator is three pure functions, so the batch index (`dedup::SeenIndex`) and the
/// incremental dataflow (`pipeline::graph`) decide exactly alike:
/// two documents are (near-)duplicates iff they share a bucket and `matches` says so.
pub trait Deduplicator: Send + Sync {
    /// The document's dedup key: what `matches` compares (hash words, a fingerprint, band
    /// keys and a sketch).
    fn key(&self, text: &str) -> Vec<u64>;
    /// The buckets a key is filed under; every near-duplicate pair shares at least one.
    fn buckets(&self, key: &[u64]) -> Vec<u64>;
    /// Whether two keys that share a bucket are (near-)duplicates.
    fn matches(&self, a: &[u64], b: &[u64]) -> bool;
    /// How many leading words of a key `matches` never reads (they serve `buckets` only):
    /// the on-disk index stores a key's words from here on, for the `matches` check.
    fn sketch_start(&self) -> usize {
        0
    }
}

/// A built operator.
pub enum Op {
    Mapper(Box<dyn Mapper>),
    Filter(Box<dyn Filter>),
    Dedup(Box<dyn Deduplicator>),
}

impl Op {
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Mapper(_) => "mapper",
            Op::Filter(_) => "filter",
            Op::Dedup(_) => "deduplicator",
        }
    }
}

/// data-juicer's `get_keep_boolean`: `min <= value <= max` by default, with each bound
/// optionally open, and the whole test optionally reversed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Range {
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub min_closed: bool,
    pub max_closed: bool,
    pub reversed: bool,
}

impl Range {
    /// Read `min_name` / `max_name` with their defaults (`None` = unbounded, data-juicer's
    /// `sys.maxsize`) and the base filter's interval flags.
    pub fn from_params(
        params: &mut Params,
        min_name: &'static str,
        min_default: Option<f64>,
        max_name: &'static str,
        max_default: Option<f64>,
    ) -> ParamResult<Self> {
        Ok(Range {
            min: params.opt_f64(min_name)?.or(min_default),
            max: params.opt_f64(max_name)?.or(max_default),
            min_closed: params.bool("min_closed_interval", true)?,
            max_closed: params.bool("max_closed_interval", true)?,
            reversed: params.bool("reversed_range", false)?,
        })
    }

    pub fn keep(&self, value: f64) -> bool {
        let mut keep = true;
        if let Some(min) = self.min {
            keep &= if self.min_closed {
                value >= min
            } else {
                value > min
            };
        }
        if let Some(max) = self.max {
            keep &= if self.max_closed {
                value <= max
            } else {
                value < max
            };
        }
        keep != self.reversed
    }

    pub fn measure(&self, value: f64) -> Measure {
        Measure {
            value,
            keep: self.keep(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_follows_get_keep_boolean() {
        let mut range = Range {
            min: Some(1.0),
            max: Some(2.0),
            min_closed: true,
            max_closed: true,
            reversed: false,
        };
        assert!(range.keep(1.0) && range.keep(2.0) && !range.keep(2.5) && !range.keep(0.5));
        range.max_closed = false;
        assert!(!range.keep(2.0));
        range.reversed = true;
        assert!(range.keep(2.0) && !range.keep(1.5));
        let unbounded = Range { max: None, ..range };
        assert!(!unbounded.keep(1e300));
    }
}
