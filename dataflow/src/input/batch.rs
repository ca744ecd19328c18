//! Grouping records into bounded batches for the parallel stage.

use crate::input::RawRecord;

/// A batch is handed over when it holds this many bytes or records, whichever comes first.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    pub bytes: usize,
    pub records: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            bytes: 8 << 20,
            records: 16_384,
        }
    }
}

/// Collects records and hands full batches to `send`, which returns `false` when the
/// consumer has stopped (then reading should stop too).
pub struct Batcher<'a> {
    limits: BatchLimits,
    records: Vec<RawRecord>,
    bytes: usize,
    send: &'a mut dyn FnMut(Vec<RawRecord>) -> bool,
}

impl<'a> Batcher<'a> {
    pub fn new(limits: BatchLimits, send: &'a mut dyn FnMut(Vec<RawRecord>) -> bool) -> Self {
        Batcher {
            limits,
            records: Vec::new(),
            bytes: 0,
            send,
        }
    }

    /// Add a record of about `bytes` bytes; `false` if the consumer has stopped.
    pub fn push(&mut self, record: RawRecord, bytes: usize) -> bool {
        self.records.push(record);
        self.bytes += bytes;
        if self.bytes >= self.limits.bytes || self.records.len() >= self.limits.records {
            return self.flush();
        }
        true
    }

    /// Hand over what is collected; `false` if the consumer has stopped.
    pub fn flush(&mut self) -> bool {
        if self.records.is_empty() {
            return true;
        }
        self.bytes = 0;
        (self.send)(std::mem::take(&mut self.records))
    }
}
