//! How worker 0 leads the other workers (in this process and others) from epoch to epoch:
//! a small dataflow that broadcasts its commands. Every epoch is a dataflow of its own
//! (`graph.rs`), built by every worker when the command for it arrives, so all workers build
//! the same dataflows in the same order. Each process opens the epoch's index snapshot once
//! (`IndexCache`) and its workers share it.

use crate::pipeline::index::{Index, Snapshot};
use crate::pipeline::state::{MANIFEST, StateDir};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use timely::dataflow::InputHandleVec;
use timely::dataflow::operators::probe::Handle;
use timely::dataflow::operators::vec::{Broadcast, Input};
use timely::dataflow::operators::{Inspect, Probe};
use timely::worker::Worker;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Build epoch `epoch`'s dataflow, probing the index as of the last commit with the
    /// files of `retracting` (shard numbers) no longer live.
    Epoch {
        epoch: u64,
        retracting: Vec<u32>,
    },
    Stop,
}

pub struct Control {
    /// Worker 0's; the others give theirs up at once.
    input: Option<InputHandleVec<u64, Command>>,
    received: Rc<RefCell<VecDeque<Command>>>,
    probe: Handle<u64>,
    sent: u64,
}

impl Control {
    /// Build the control dataflow on this worker (every worker does, first).
    pub fn build(worker: &mut Worker) -> Control {
        let received = Rc::new(RefCell::new(VecDeque::new()));
        let sink = received.clone();
        let probe = Handle::new();
        let input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, commands) = scope.new_input::<Command>();
            commands
                .broadcast()
                .inspect(move |command| sink.borrow_mut().push_back(command.clone()))
                .probe_with(&probe);
            input
        });
        let input = (worker.index() == 0).then_some(input);
        Control {
            input,
            received,
            probe,
            sent: 0,
        }
    }

    /// Worker 0: tell every worker (itself included, which ignores it).
    pub fn send(&mut self, command: Command) {
        let input = self.input.as_mut().expect("only worker 0 sends");
        input.send(command);
        self.sent += 1;
        input.advance_to(self.sent);
        input.flush();
        self.received.borrow_mut().clear();
    }

    /// The other workers: run every epoch worker 0 announces, until it says stop.
    pub fn follow(self, worker: &mut Worker, mut epoch: impl FnMut(&mut Worker, u64, &[u32])) {
        loop {
            let next = self.received.borrow_mut().pop_front();
            match next {
                Some(Command::Epoch {
                    epoch: e,
                    retracting,
                }) => epoch(worker, e, &retracting),
                Some(Command::Stop) => break,
                None => {
                    worker.step_or_park(None);
                }
            }
        }
        self.close(worker);
    }

    /// Give up the input and compute until every worker has.
    pub fn close(mut self, worker: &mut Worker) {
        self.input.take();
        while !self.probe.done() {
            worker.step_or_park(None);
        }
    }
}

/// The index snapshot of the current epoch, opened once per process.
pub struct IndexCache {
    state: PathBuf,
    sketch_start: usize,
    sketch_words: usize,
    slot: Mutex<Option<(u64, Snapshot)>>,
}

impl IndexCache {
    pub fn new(state: PathBuf, sketch_start: usize, sketch_words: usize) -> IndexCache {
        IndexCache {
            state,
            sketch_start,
            sketch_words,
            slot: Mutex::new(None),
        }
    }

    /// The index as of the commit before `epoch`, with `retracting` not live (an error, for
    /// the dataflow to report, when it cannot be opened).
    pub fn get(&self, epoch: u64, retracting: &[u32]) -> Snapshot {
        let mut slot = self.slot.lock().expect("index cache");
        if let Some((cached, index)) = &*slot
            && *cached == epoch
        {
            return index.clone();
        }
        let index = Arc::new(self.open(retracting).map_err(|e| e.to_string()));
        *slot = Some((epoch, index.clone()));
        index
    }

    fn open(&self, retracting: &[u32]) -> Result<Index, crate::pipeline::state::StateError> {
        if !self.state.join(MANIFEST).is_file() {
            // A new state: nothing indexed yet.
            return Index::open(&self.state, &[], Vec::new(), self.sketch_start, 0);
        }
        let manifest = StateDir::reader(&self.state).read_manifest()?;
        Index::open(
            &self.state,
            &manifest.segments,
            manifest.retracted_ordinals(retracting),
            self.sketch_start,
            self.sketch_words,
        )
    }
}
