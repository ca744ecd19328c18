//! The incremental dataflow (timely + differential-dataflow). Read top to bottom it is the
//! pipeline:
//!
//! 1. **Stage: clean.** New documents `(id, text)` are spread over the workers by id and put
//!    through the mappers and filters (`Stages::clean`); only new documents are touched.
//! 2. **Index.** The documents that passed: the persisted index (loaded at time 0, no text)
//!    plus the new ones, each with its exact digest and near-duplicate key.
//! 3. **Stage: exact dedup.** Per digest, the earliest document; the others are exact
//!    duplicates. Only the earliest of each digest goes on ("exact always runs first").
//! 4. **Stage: near dedup.** A document is dropped iff an earlier document that reached this
//!    stage, kept or not, shares a bucket with it and `matches` it. The pairs are the
//!    bucket self-join of the stage's documents. Its old ⋈ old part was computed by earlier
//!    runs and is loaded as `pairs` at time 0; the dataflow computes only the change,
//!    `Δ ⋈ old + Δ ⋈ Δ`, where `old` is the stage's content at time 0 ("Arrange: old
//!    buckets") and `Δ` every change after it — new documents, and retractions.
//! 5. **Outputs**, gathered on worker 0: the cleaned new documents, and the changes to the
//!    near-stage membership, to the kept set and to the pairs, which worker 0 writes.
//!
//! Times are `epoch << 32 | batch` (`BATCH_BITS`): time 0 is the loaded state, each epoch's documents come
//! in batches at increasing times, so the output can be written while the epoch runs. A
//! decision never depends on a later document, so a batch's decisions are final once the
//! dataflow has passed its time.

use crate::pipeline::stages::{Cleaned, Entry, Key, Stages};
use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::{AsCollection, VecCollection};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use timely::dataflow::operators::core::Filter;
use timely::dataflow::operators::probe::Handle;
use timely::dataflow::operators::{Exchange, Inspect, Probe};
use timely::worker::Worker;

/// A document's place in ingest order: its file's shard number, then its row.
pub type DocId = u64;
pub type Time = u64;

pub fn doc_id(shard: u32, row: u32) -> DocId {
    (shard as u64) << 32 | row as u64
}

pub fn shard_of(doc: DocId) -> u32 {
    (doc >> 32) as u32
}

pub fn row_of(doc: DocId) -> u32 {
    doc as u32
}

/// Bits of a time that number an epoch's batches: at most 2^32 batches per epoch, and
/// 2^32 epochs, fit a `u64` time (`steel run` refuses more rather than let an epoch's times
/// run into the next one's).
pub const BATCH_BITS: u32 = 32;

/// The first time of `epoch`'s batches.
pub fn epoch_time(epoch: u64) -> Time {
    epoch << BATCH_BITS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_batch_of_an_epoch_stays_below_the_next_epochs_first_time() {
        let last_batch = (1u64 << BATCH_BITS) - 1;
        assert!(epoch_time(5) + last_batch < epoch_time(6));
        let last_epoch = (1u64 << (64 - BATCH_BITS)) - 1;
        assert_eq!(epoch_time(last_epoch) + last_batch, u64::MAX);
    }
}

/// One record of an output with its time and change.
pub type Update<D> = (D, Time, isize);

/// What the dataflow hands worker 0 (empty on every other worker).
#[derive(Default)]
pub struct Captured {
    /// New documents after the mappers and filters.
    pub cleaned: Vec<Update<(DocId, Cleaned)>>,
    /// Changes to the documents that reached the near-duplicate stage (exact dedup kept them).
    pub members: Vec<Update<DocId>>,
    /// Changes to the kept set.
    pub kept: Vec<Update<DocId>>,
    /// Changes to the near-duplicate pairs `(later, earlier)`, counted once per shared bucket.
    pub pairs: Vec<Update<(DocId, DocId)>>,
}

pub struct Graph {
    /// New documents' texts.
    pub raw: InputSession<Time, (DocId, String), isize>,
    /// The persisted index (at time 0) and retractions from it.
    pub index: InputSession<Time, (DocId, Entry), isize>,
    /// The persisted near-duplicate pairs, at time 0.
    pub pairs: InputSession<Time, (DocId, DocId), isize>,
    pub probe: Handle<Time>,
    pub captured: Rc<RefCell<Captured>>,
}

impl Graph {
    /// Move every input to `time` and send what is buffered.
    pub fn advance_all(&mut self, time: Time) {
        self.raw.advance_to(time);
        self.index.advance_to(time);
        self.pairs.advance_to(time);
        self.raw.flush();
        self.index.flush();
        self.pairs.flush();
    }

    /// Give up this worker's inputs and compute until every worker has given up theirs.
    pub fn finish(self, worker: &mut Worker) {
        let Graph {
            raw,
            index,
            pairs,
            probe,
            ..
        } = self;
        drop((raw, index, pairs));
        while !probe.done() {
            worker.step_or_park(None);
        }
    }
}

/// Build the dataflow on this worker (every worker builds the same one).
pub fn build(worker: &mut Worker, stages: Arc<Stages>) -> Graph {
    let captured = Rc::new(RefCell::new(Captured::default()));
    let sink = captured.clone();
    let probe = Handle::new();
    let (raw, index, pairs) = worker.dataflow::<Time, _, _>(|scope| {
        let (raw_input, raw) = scope.new_collection::<(DocId, String), isize>();
        let (index_input, old_index) = scope.new_collection::<(DocId, Entry), isize>();
        let (pairs_input, old_pairs) = scope.new_collection::<(DocId, DocId), isize>();

        // Stage: clean.
        let clean_stages = stages.clone();
        let cleaned = raw
            .inner
            .exchange(|((doc, _), _, _)| spread(*doc))
            .as_collection()
            .map(move |(doc, text)| (doc, clean_stages.clean(text)));

        // Index: everything that passed the filters.
        let passed = old_index.concat(cleaned.clone().flat_map(|(doc, cleaned)| match cleaned {
            Cleaned::Passed { entry, .. } => Some((doc, entry)),
            Cleaned::Filtered { .. } => None,
        }));

        // Stage: exact dedup.
        let firsts = passed
            .clone()
            .map(|(doc, entry)| (entry.exact, doc))
            .reduce(|_digest, docs, first| first.push((*docs[0].0, 1isize)));
        let members = passed
            .map(|(doc, entry)| ((entry.exact, doc), entry.near))
            .semijoin(firsts)
            .map(|((_, doc), near)| (doc, near));

        // Stage: near dedup.
        let (kept, new_pairs) = match stages.near.is_some() {
            true => {
                let (kept, new_pairs) = near_stage(members.clone(), old_pairs, stages.clone());
                (kept, Some(new_pairs))
            }
            false => (members.clone().map(|(doc, _)| doc), None),
        };

        // Outputs to worker 0. Time 0 is the loaded state, already on disk.
        fn gather<'s, D: differential_dataflow::ExchangeData>(
            collection: VecCollection<'s, Time, D, isize>,
            probe: &Handle<Time>,
            mut sink: impl FnMut(Update<D>) + 'static,
        ) {
            collection
                .inner
                .exchange(|_| 0)
                .inspect(move |update: &Update<D>| {
                    if update.1 > 0 {
                        sink(update.clone())
                    }
                })
                .probe_with(probe);
        }
        let to = sink.clone();
        gather(cleaned, &probe, move |u| to.borrow_mut().cleaned.push(u));
        let to = sink.clone();
        gather(members.map(|(doc, _)| doc), &probe, move |u| {
            to.borrow_mut().members.push(u)
        });
        let to = sink.clone();
        gather(kept, &probe, move |u| to.borrow_mut().kept.push(u));
        if let Some(new_pairs) = new_pairs {
            let to = sink.clone();
            gather(new_pairs, &probe, move |u| to.borrow_mut().pairs.push(u));
        }
        (raw_input, index_input, pairs_input)
    });
    Graph {
        raw,
        index,
        pairs,
        probe,
        captured,
    }
}

type Docs<'s> = VecCollection<'s, Time, DocId, isize>;
type Pairs<'s> = VecCollection<'s, Time, (DocId, DocId), isize>;

/// Kept documents of the near-duplicate stage, and the changes to its pairs.
fn near_stage<'s>(
    members: VecCollection<'s, Time, (DocId, Key), isize>,
    old_pairs: VecCollection<'s, Time, (DocId, DocId), isize>,
    stages: Arc<Stages>,
) -> (Docs<'s>, Pairs<'s>) {
    let old = members
        .inner
        .clone()
        .filter(|(_, t, _)| *t == 0)
        .as_collection();
    let delta = members
        .inner
        .clone()
        .filter(|(_, t, _)| *t > 0)
        .as_collection();
    let by_bucket = |stages: Arc<Stages>| {
        move |(doc, key): (DocId, Key)| {
            let near = stages.near().expect("near stage has a deduplicator");
            near.buckets(&key)
                .into_iter()
                .map(move |bucket| (bucket, (doc, key.clone())))
                .collect::<Vec<_>>()
        }
    };
    let old_buckets = old.flat_map(by_bucket(stages.clone()));
    let delta_buckets = delta.flat_map(by_bucket(stages.clone()));
    let (cross_stages, within_stages) = (stages.clone(), stages);
    // Δ ⋈ old, both orientations: (new or retracted, old) is a pair either way round.
    let cross = delta_buckets
        .clone()
        .join_map(old_buckets, move |_bucket, (d, dk), (o, ok)| {
            let near = cross_stages.near().expect("near stage");
            (d != o && near.matches(dk, ok)).then(|| (*d.max(o), *d.min(o)))
        })
        .flat_map(|pair| pair);
    // Δ ⋈ Δ, each unordered pair once.
    let within = delta_buckets
        .clone()
        .join_map(delta_buckets, move |_bucket, (a, ak), (b, bk)| {
            let near = within_stages.near().expect("near stage");
            (a > b && near.matches(ak, bk)).then_some((*a, *b))
        })
        .flat_map(|pair| pair);
    let new_pairs = cross.concat(within);
    let dropped = old_pairs
        .concat(new_pairs.clone())
        .map(|(later, _earlier)| later)
        .distinct();
    let kept = members
        .map(|(doc, _)| (doc, ()))
        .antijoin(dropped)
        .map(|(doc, ())| doc);
    (kept, new_pairs)
}

/// The worker a document is cleaned on (a fixed mix of its id).
fn spread(doc: DocId) -> u64 {
    xxhash_rust::xxh3::xxh3_64(&doc.to_le_bytes())
}

/// Sum the changes per record, dropping those that cancel (the dataflow's outputs may hold a
/// record's `+1` and `-1` side by side). Sorted by record.
pub fn consolidate<D: Ord>(updates: impl IntoIterator<Item = (D, isize)>) -> Vec<(D, isize)> {
    let mut sorted: Vec<(D, isize)> = updates.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<(D, isize)> = Vec::with_capacity(sorted.len());
    for (record, diff) in sorted {
        match out.last_mut() {
            Some(last) if last.0 == record => last.1 += diff,
            _ => out.push((record, diff)),
        }
    }
    out.retain(|(_, diff)| *diff != 0);
    out
}
