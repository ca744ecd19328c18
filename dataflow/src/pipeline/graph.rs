//! One epoch's dataflow (timely + differential-dataflow). Read top to bottom it is the
//! pipeline:
//!
//! 1. **Stage: clean.** New documents `(id, text)` are spread over the workers by id and put
//!    through the mappers and filters (`Stages::clean`); only new documents are touched.
//!    With them come the *revisited* documents of a retraction (already cleaned, from the
//!    state): those whose status may change because what decided it was retracted.
//! 2. **Stage: exact dedup.** Each candidate's digest is looked up in the on-disk index
//!    (`index.rs`), partitioned over the workers by digest: an earlier live document with it
//!    makes the candidate an exact duplicate. Among the rest, per digest, the earliest goes
//!    on (it is a *member* of the near stage).
//! 3. **Stage: near dedup.** Each member's buckets are looked up in the index, partitioned
//!    by bucket: an earlier live member there that `matches` it is a *witness* and drops it.
//!    Members of this epoch are matched with each other by a bucket self-join. A member's
//!    earliest witness is kept (one is enough to drop it; the index records it so that a
//!    retraction knows whom to revisit).
//! 4. **Outputs**, gathered on worker 0: the cleaned new documents, the members and the
//!    witnesses, and any error a probe met (the epoch then fails, nothing is committed).
//!
//! The index is a snapshot that does not change while the dataflow runs, and the dataflow
//! only ever receives documents (a retraction is a snapshot in which the retracted files are
//! not live), so every output is final once its time has passed. Times are batch numbers:
//! revisited documents at 0, new documents' batches from 1, in id order; a decision never
//! depends on a later document.

use crate::pipeline::bucket_pairs::bucket_pairs;
use crate::pipeline::index::Snapshot;
use crate::pipeline::stages::{Cleaned, Entry, Key, Stages};
use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::probe::Handle;
use timely::dataflow::operators::{Exchange, Probe};
use timely::worker::Worker;

/// A document's place in ingest order: its file's shard number, then its row.
pub type DocId = u64;
/// A batch number within an epoch.
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

/// Who near-dropped a document: an indexed document (its ordinal) or one in this epoch.
/// Indexed ones come first: they are earlier than every document of the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Witness {
    Indexed(u32),
    New(DocId),
}

/// One record of an output with its time and change.
pub type Update<D> = (D, Time, isize);

/// What the dataflow hands worker 0 (empty on every other worker).
#[derive(Default)]
pub struct Captured {
    /// New documents after the mappers and filters.
    pub cleaned: Vec<Update<(DocId, Cleaned)>>,
    /// Candidates that passed exact dedup.
    pub members: Vec<Update<DocId>>,
    /// The earliest witness of each near-dropped member.
    pub witnesses: Vec<Update<(DocId, Witness)>>,
    /// What went wrong reading the index.
    pub errors: Vec<Update<String>>,
}

/// A document to decide again: its ordinal in the index and its cleaned text.
pub type Revisit = (DocId, (u32, String));

pub struct Graph {
    /// New documents' texts.
    pub raw: InputSession<Time, (DocId, String), isize>,
    /// Indexed documents to decide again (a retraction's), at time 0; closed after it.
    pub revisit: Option<InputSession<Time, Revisit, isize>>,
    pub probe: Handle<Time>,
    pub captured: Rc<RefCell<Captured>>,
}

impl Graph {
    /// Send the revisited documents (time 0) and give up that input: new documents come at
    /// later times.
    pub fn close_revisits(&mut self) {
        self.revisit.take();
        self.raw.advance_to(1);
        self.raw.flush();
    }

    /// Move the new documents' input to `time` and send what is buffered.
    pub fn advance_to(&mut self, time: Time) {
        self.raw.advance_to(time);
        self.raw.flush();
    }

    /// Give up this worker's inputs and compute until every worker has given up theirs.
    pub fn finish(self, worker: &mut Worker) {
        let Graph {
            raw,
            revisit,
            probe,
            ..
        } = self;
        drop((raw, revisit));
        while !probe.done() {
            worker.step_or_park(None);
        }
    }
}

/// A candidate of the dedup stages: its ordinal if it is indexed (revisited), and its keys.
type Candidate = (DocId, (Option<u32>, Entry));

/// Build one epoch's dataflow on this worker (every worker builds the same one), probing
/// `index` (or failing every probe with its error).
pub fn build(worker: &mut Worker, stages: Arc<Stages>, index: Snapshot) -> Graph {
    let captured = Rc::new(RefCell::new(Captured::default()));
    let sink = captured.clone();
    let probe = Handle::new();
    let peers = worker.peers();
    let (raw, revisit) = worker.dataflow::<Time, _, _>(|scope| {
        let (raw_input, raw) = scope.new_collection::<(DocId, String), isize>();
        let (revisit_input, revisit) = scope.new_collection::<Revisit, isize>();

        // Stage: clean.
        let clean_stages = stages.clone();
        let cleaned = raw
            .inner
            .exchange(move |((doc, _), _, _)| cleaning_worker(*doc, peers))
            .as_collection()
            .map(move |(doc, text)| (doc, clean_stages.clean(text)));
        let key_stages = stages.clone();
        let revisited = revisit
            .inner
            .exchange(move |((doc, _), _, _)| cleaning_worker(*doc, peers))
            .as_collection()
            .map(move |(doc, (ordinal, text))| (doc, (Some(ordinal), key_stages.entry(&text))));
        let candidates: VecCollection<'_, Time, Candidate, isize> = cleaned
            .clone()
            .flat_map(|(doc, cleaned)| match cleaned {
                Cleaned::Passed { entry, .. } => Some((doc, (None, entry))),
                Cleaned::Filtered { .. } => None,
            })
            .concat(revisited);

        // Stage: exact dedup. Earlier live documents in the index first, then this epoch's.
        let exact_index = index.clone();
        let probed = candidates
            .inner
            .exchange(|((_, (_, entry)), _, _)| entry.exact[0])
            .as_collection()
            .map(move |(doc, (ordinal, entry))| {
                let earlier = match &*exact_index {
                    Ok(index) => index
                        .earliest_exact(&entry.exact)
                        .map(|found| found.is_some_and(|e| ordinal.is_none_or(|o| e < o)))
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.clone()),
                };
                (doc, ordinal, entry, earlier)
            });
        let mut errors = probed.clone().flat_map(|(_, _, _, earlier)| earlier.err());
        let contenders = probed.flat_map(|(doc, ordinal, entry, earlier)| {
            (earlier == Ok(false)).then_some((doc, (ordinal, entry)))
        });
        let firsts = contenders
            .clone()
            .map(|(doc, (_, entry))| (entry.exact, doc))
            .reduce(|_digest, docs, first| first.push((*docs[0].0, 1isize)));
        let members = contenders
            .map(|(doc, (ordinal, entry))| ((entry.exact, doc), (ordinal, entry.near)))
            .semijoin(firsts)
            .map(|((_, doc), member)| (doc, member));

        // Stage: near dedup.
        if stages.near.is_some() {
            let (witnesses, probe_errors) = near_stage(members.clone(), stages.clone(), index);
            errors = errors.concat(probe_errors);
            let to = sink.clone();
            gather(witnesses, &probe, move |u| {
                to.borrow_mut().witnesses.push(u)
            });
        }

        // Outputs to worker 0.
        let to = sink.clone();
        gather(cleaned, &probe, move |u| to.borrow_mut().cleaned.push(u));
        let to = sink.clone();
        gather(members.map(|(doc, _)| doc), &probe, move |u| {
            to.borrow_mut().members.push(u)
        });
        let to = sink.clone();
        gather(errors, &probe, move |u| to.borrow_mut().errors.push(u));
        (raw_input, revisit_input)
    });
    Graph {
        raw,
        revisit: Some(revisit),
        probe,
        captured,
    }
}

/// Send every update of `collection` to worker 0's `sink`, which owns it from then on (a
/// cleaned text is moved, not copied). The probe follows the operator that hands updates
/// over, so a time it has passed is one whose updates are all in the sink.
fn gather<'s, D: differential_dataflow::ExchangeData>(
    collection: VecCollection<'s, Time, D, isize>,
    probe: &Handle<Time>,
    mut sink: impl FnMut(Update<D>) + 'static,
) {
    collection
        .inner
        .exchange(|_| 0)
        .unary::<CapacityContainerBuilder<Vec<()>>, _, _, _>(Pipeline, "Gather", |_, _| {
            move |input, _output| {
                input.for_each(|_, updates| updates.drain(..).for_each(&mut sink));
            }
        })
        .probe_with(probe);
}

type Members<'s> = VecCollection<'s, Time, (DocId, (Option<u32>, Key)), isize>;
type Witnesses<'s> = VecCollection<'s, Time, (DocId, Witness), isize>;
type Errors<'s> = VecCollection<'s, Time, String, isize>;

/// The earliest witness of every member that has one, and the errors of the index probes.
fn near_stage<'s>(
    members: Members<'s>,
    stages: Arc<Stages>,
    index: Snapshot,
) -> (Witnesses<'s>, Errors<'s>) {
    let bucket_stages = stages.clone();
    let buckets = members.flat_map(move |(doc, (ordinal, key))| {
        let near = bucket_stages.near().expect("near stage has a deduplicator");
        near.buckets(&key)
            .into_iter()
            .map(move |bucket| (bucket, (doc, ordinal, key.clone())))
            .collect::<Vec<_>>()
    });
    // Against the index, each bucket probed on the worker its hash picks.
    let probe_stages = stages.clone();
    let probed = buckets
        .inner
        .clone()
        .exchange(|((bucket, _), _, _)| *bucket)
        .as_collection()
        .flat_map(move |(bucket, (doc, ordinal, key))| {
            let near = probe_stages.near().expect("near stage");
            let found = match &*index {
                Ok(index) => index
                    .witness_in_bucket(near, bucket, &key, ordinal)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.clone()),
            };
            match found {
                Ok(Some(witness)) => Some(Ok((doc, Witness::Indexed(witness)))),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            }
        });
    let errors = probed.clone().flat_map(|found| found.err());
    let from_index = probed.flat_map(|found| found.ok());
    // Within the epoch: each pair, the later document dropped by the earlier.
    let filed = buckets.map(|(bucket, (doc, _, key))| (bucket, (doc, key)));
    let within = bucket_pairs(filed, stages);
    let earliest = from_index
        .concat(within)
        .reduce(|_doc, witnesses, out| out.push((*witnesses[0].0, 1isize)));
    (earliest, errors)
}

/// The worker a document is cleaned on, picked by a fixed mix of its id. Worker 0 also
/// feeds the documents and writes what is decided, so it cleans five sixths of the share
/// every other worker cleans (on 2 workers: 5/11 of the documents instead of 1/2; measured
/// with `perf` to even out the two workers' busy time).
fn cleaning_worker(doc: DocId, peers: usize) -> u64 {
    let peers = peers as u64;
    if peers <= 1 {
        return 0;
    }
    let slot = xxhash_rust::xxh3::xxh3_64(&doc.to_le_bytes()) % (5 + 6 * (peers - 1));
    match slot {
        0..5 => 0,
        _ => 1 + (slot - 5) / 6,
    }
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
