//! The near-duplicate pairs among one epoch's own documents: every two members that share a
//! bucket and `matches`, the later one dropped by the earlier.
//!
//! This is a self-join of the bucket collection, written as one timely operator instead of
//! differential's `join`: within an epoch documents only ever arrive (a retraction is a
//! snapshot of the index, not a change in this collection), so there is nothing to maintain
//! but the list of each bucket's documents so far. Each arriving record is compared with the
//! records already in its bucket, then added to it: every pair is compared once, when the
//! second of the two arrives. A pair's time is the later of the two records' times and its
//! change the product of theirs, exactly what `join` would produce; differential's version
//! arranged the collection into sorted batches and kept merging them, about a tenth of the
//! whole run's time for this recipe (`docs/benchmarks.md`).

use crate::pipeline::graph::{DocId, Time, Witness};
use crate::pipeline::stages::{Key, Stages};
use differential_dataflow::{AsCollection, VecCollection};
use std::collections::HashMap;
use std::sync::Arc;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;

/// A member filed under one of its buckets: `(bucket, (document, its near key))`.
pub type Filed = (u64, (DocId, Key));

/// `(later, Witness::New(earlier))` for every matching pair that shares a bucket (once per
/// shared bucket).
pub fn bucket_pairs<'s>(
    filed: VecCollection<'s, Time, Filed, isize>,
    stages: Arc<Stages>,
) -> VecCollection<'s, Time, (DocId, Witness), isize> {
    let by_bucket = Exchange::new(|((bucket, _), _, _): &(Filed, Time, isize)| *bucket);
    filed
        .inner
        .unary(by_bucket, "BucketPairs", move |_, _| {
            let mut seen = Seen::default();
            move |input, output| {
                let near = stages.near().expect("the near stage has a deduplicator");
                input.for_each(|capability, data| {
                    let mut session = output.session(&capability);
                    for ((bucket, (doc, key)), time, diff) in data.drain(..) {
                        for other in seen.in_bucket(bucket) {
                            let ((later, later_key), (earlier, earlier_key)) = match doc > other.doc
                            {
                                true => ((doc, &key), (other.doc, &other.key)),
                                false => ((other.doc, &other.key), (doc, &key)),
                            };
                            if later != earlier && near.matches(later_key, earlier_key) {
                                session.give((
                                    (later, Witness::New(earlier)),
                                    time.max(other.time),
                                    diff * other.diff,
                                ));
                            }
                        }
                        seen.add(
                            bucket,
                            Record {
                                doc,
                                key,
                                time,
                                diff,
                            },
                        );
                    }
                });
            }
        })
        .as_collection()
}

/// One record of the collection, as the operator keeps it.
struct Record {
    doc: DocId,
    key: Key,
    time: Time,
    diff: isize,
}

/// The records seen so far, per bucket: a list threaded through one vector (most buckets
/// hold one record, so a vector per bucket would cost an allocation per record).
#[derive(Default)]
struct Seen {
    /// Bucket -> index of its newest record in `records`.
    newest: HashMap<u64, u32, xxhash_rust::xxh3::Xxh3Builder>,
    /// Each record with the index of the bucket's record before it (`u32::MAX`: none).
    records: Vec<(Record, u32)>,
}

impl Seen {
    fn add(&mut self, bucket: u64, record: Record) {
        let index = self.records.len() as u32;
        let before = self.newest.insert(bucket, index).unwrap_or(u32::MAX);
        self.records.push((record, before));
    }

    fn in_bucket(&self, bucket: u64) -> impl Iterator<Item = &Record> {
        let mut next = self.newest.get(&bucket).copied().unwrap_or(u32::MAX);
        std::iter::from_fn(move || {
            let (record, before) = self.records.get(next as usize)?;
            next = *before;
            Some(record)
        })
    }
}
