//! The one thread that owns the model. Requests wait in a bounded queue; between steps the
//! worker moves waiting requests into the running batch (up to `--batch` sequences), drops
//! those whose client went away, and runs one step of the library's continuous batch
//! (`steel_trainer::infer::batch`): one forward pass for all, each sequence sampling with its
//! own options. Each request's text goes back on its own channel as it is produced.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use steel_trainer::error::TrainError;
use steel_trainer::infer::batch::Batch;
use steel_trainer::infer::decoder::Loaded;
use steel_trainer::infer::generate::{GenerateOptions, Generation};
use steel_trainer::infer::tokenizer::Tokenizer;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// `eprintln!` that cannot panic: the model thread must outlive a closed or full stderr.
macro_rules! log {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// What a request hears back.
#[derive(Debug)]
pub enum Event {
    /// More of the text, whole characters.
    Text(String),
    /// The end: the whole generation.
    Done(Generation),
    /// The model failed (not the request's fault).
    Failed(String),
}

struct Job {
    /// The response's id, for the log.
    name: String,
    prompt: Vec<u32>,
    options: GenerateOptions,
    events: UnboundedSender<Event>,
}

/// Where requests are handed to the worker.
#[derive(Clone)]
pub struct Queue {
    jobs: SyncSender<Job>,
    capacity: usize,
}

/// Why a request was not queued.
pub enum Refused {
    /// The queue already holds this many waiting requests.
    Full(usize),
    /// The worker has stopped.
    Stopped,
}

impl Queue {
    /// Queue a generation after `prompt` (checked: within the context and vocabulary); its
    /// events come on the returned channel. Dropping the channel cancels it.
    pub fn submit(
        &self,
        name: String,
        prompt: Vec<u32>,
        options: GenerateOptions,
    ) -> Result<UnboundedReceiver<Event>, Refused> {
        let (events, receiver) = unbounded_channel();
        let job = Job {
            name,
            prompt,
            options,
            events,
        };
        match self.jobs.try_send(job) {
            Ok(()) => Ok(receiver),
            Err(TrySendError::Full(_)) => Err(Refused::Full(self.capacity)),
            Err(TrySendError::Disconnected(_)) => Err(Refused::Stopped),
        }
    }
}

/// Start the worker thread over `model`, running up to `batch` sequences at a time, with up
/// to `queue` requests waiting.
pub fn spawn(
    model: Loaded,
    tokenizer: Arc<Tokenizer>,
    batch: usize,
    queue: usize,
) -> std::io::Result<Queue> {
    let (jobs, receiver) = sync_channel(queue);
    std::thread::Builder::new()
        .name("steel-serve-model".into())
        .spawn(move || run(&model, &tokenizer, batch.max(1), receiver))?;
    Ok(Queue {
        jobs,
        capacity: queue,
    })
}

fn run(model: &Loaded, tokenizer: &Tokenizer, size: usize, jobs: Receiver<Job>) {
    let mut batch = Batch::new(model, tokenizer);
    let mut clients: HashMap<u64, Client> = HashMap::new();
    let mut next_id = 0u64;
    loop {
        if batch.is_empty() {
            // Idle: wait for a request (the queue closes when the server stops).
            match jobs.recv() {
                Ok(job) => {
                    next_id += 1;
                    admit(next_id, job, &mut batch, &mut clients)
                }
                Err(_) => return,
            }
        }
        while batch.len() < size {
            match jobs.try_recv() {
                Ok(job) => {
                    next_id += 1;
                    admit(next_id, job, &mut batch, &mut clients)
                }
                Err(_) => break,
            }
        }
        // A client that went away (its receiver dropped) stops costing a row.
        clients.retain(|&id, client| {
            let open = !client.events.is_closed();
            if !open {
                batch.cancel(id);
                log!("{}: cancelled (its client went away)", client.name);
            }
            open
        });
        let running = batch.len();
        for client in clients.values_mut() {
            client.peak = client.peak.max(running);
        }
        // A panic in the model fails this batch's requests, not the server.
        let step = std::panic::catch_unwind(AssertUnwindSafe(|| {
            batch.step(&mut |id, piece| {
                if let Some(client) = clients.get(&id) {
                    let _ = client.events.send(Event::Text(piece.to_string()));
                }
            })
        }))
        .unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            Err(TrainError::Data(format!(
                "the model's step panicked: {why}"
            )))
        });
        match step {
            Ok(finished) => {
                for done in finished {
                    let Some(client) = clients.remove(&done.id) else {
                        continue;
                    };
                    let generation = &done.generation;
                    log!(
                        "{}: {} prompt + {} generated tokens ({}), {:.1} tokens/s, in a batch of \
                         up to {}",
                        client.name,
                        generation.prompt_tokens,
                        generation.tokens.len(),
                        generation.stop_reason.as_str(),
                        generation.tokens_per_second,
                        client.peak
                    );
                    let _ = client.events.send(Event::Done(done.generation));
                }
            }
            Err(e) => {
                // Every sequence of the failed pass fails; the worker goes on with new ones.
                log!("the model failed: {e}");
                for (id, client) in clients.drain() {
                    batch.cancel(id);
                    let _ = client.events.send(Event::Failed(e.to_string()));
                }
            }
        }
    }
}

/// A request in the batch.
struct Client {
    name: String,
    events: UnboundedSender<Event>,
    /// The most sequences it has shared a step with (for the log).
    peak: usize,
}

/// `job` into the batch as sequence `id`, or failed if the library refuses it.
fn admit(id: u64, job: Job, batch: &mut Batch<Loaded>, clients: &mut HashMap<u64, Client>) {
    match batch.join(id, job.prompt, job.options) {
        Ok(()) => {
            let client = Client {
                name: job.name,
                events: job.events,
                peak: 0,
            };
            clients.insert(id, client);
        }
        Err(e) => {
            log!("{}: refused by the model: {e}", job.name);
            let _ = job.events.send(Event::Failed(e.to_string()));
        }
    }
}
