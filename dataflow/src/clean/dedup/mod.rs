//! data-juicer's deduplicators in batch form. Keys are pure functions of the text (so the
//! incremental pipeline can reuse them); the index answers "seen before?" in input order.

pub mod exact;
pub mod minhash;
pub mod simhash;
pub mod tokens;

use crate::clean::op::Deduplicator;
use crate::clean::params::{ParamResult, Params};

pub const NAMES: &[&str] = &[
    "document_deduplicator",
    "document_minhash_deduplicator",
    "document_simhash_deduplicator",
];

/// The deduplicator called `name`, or `None` when no deduplicator has that name.
pub fn build(name: &str, params: &mut Params) -> Option<ParamResult<Box<dyn Deduplicator>>> {
    fn boxed<D: Deduplicator + 'static>(d: ParamResult<D>) -> ParamResult<Box<dyn Deduplicator>> {
        d.map(|d| Box::new(d) as Box<dyn Deduplicator>)
    }
    Some(match name {
        "document_deduplicator" => boxed(exact::ExactDedup::from_params(params)),
        "document_minhash_deduplicator" => boxed(minhash::MinhashDedup::from_params(params)),
        "document_simhash_deduplicator" => boxed(simhash::SimhashDedup::from_params(params)),
        _ => return None,
    })
}
