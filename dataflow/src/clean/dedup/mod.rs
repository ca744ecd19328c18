//! data-juicer's deduplicators. Keys, buckets and matches are pure functions (the incremental
//! pipeline arranges the same buckets); `SeenIndex` answers "seen before?" in input order for
//! the batch form.

pub mod exact;
pub mod minhash;
pub mod simhash;
pub mod tokens;

use crate::clean::op::Deduplicator;
use crate::clean::params::{ParamResult, Params};
use crate::clean::table_names;
use std::collections::HashMap;

/// How one deduplicator is built from its recipe parameters.
type Build = fn(&mut Params) -> ParamResult<Box<dyn Deduplicator>>;

fn boxed<D: Deduplicator + 'static>(d: ParamResult<D>) -> ParamResult<Box<dyn Deduplicator>> {
    d.map(|d| Box::new(d) as Box<dyn Deduplicator>)
}

/// Every deduplicator, by name: the one list both `build` and `NAMES` come from.
const DEDUPLICATORS: [(&str, Build); 3] = [
    ("document_deduplicator", |p| {
        boxed(exact::ExactDedup::from_params(p))
    }),
    ("document_minhash_deduplicator", |p| {
        boxed(minhash::MinhashDedup::from_params(p))
    }),
    ("document_simhash_deduplicator", |p| {
        boxed(simhash::SimhashDedup::from_params(p))
    }),
];

/// The names of every deduplicator, in `DEDUPLICATORS` order.
pub const NAMES: &[&str] = &table_names(&DEDUPLICATORS);

/// The deduplicator called `name`, or `None` when no deduplicator has that name.
pub fn build(name: &str, params: &mut Params) -> Option<ParamResult<Box<dyn Deduplicator>>> {
    DEDUPLICATORS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, build)| build(params))
}

/// The keys a batch deduplicator has seen, filed by bucket.
#[derive(Default)]
pub struct SeenIndex {
    keys: Vec<Vec<u64>>,
    /// Bucket -> indexes into `keys`.
    buckets: HashMap<u64, Vec<u32>>,
}

impl SeenIndex {
    /// Whether an earlier key is a (near-)duplicate of `key`; then remember `key` either way
    /// (the keep rule counts earlier documents whether they were kept or not).
    pub fn check_and_insert(&mut self, dedup: &dyn Deduplicator, key: Vec<u64>) -> bool {
        let buckets = dedup.buckets(&key);
        let duplicate = buckets.iter().any(|bucket| {
            self.buckets.get(bucket).is_some_and(|seen| {
                seen.iter()
                    .any(|&i| dedup.matches(&key, &self.keys[i as usize]))
            })
        });
        let index = self.keys.len() as u32;
        for bucket in buckets {
            let seen = self.buckets.entry(bucket).or_default();
            if seen.last() != Some(&index) {
                seen.push(index);
            }
        }
        self.keys.push(key);
        duplicate
    }
}
