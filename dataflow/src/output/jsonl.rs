//! JSONL shards, written under temporary names until the run commits (see the module above).

use crate::doc::UnifiedDoc;
use crate::output::{Closed, OutputError, ShardInfo, shard_name, tmp_path};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// `doc` as one JSON line, newline included. Non-ASCII text is written as UTF-8, not escaped.
pub fn to_line(doc: &UnifiedDoc) -> Vec<u8> {
    let mut line = serde_json::to_vec(doc).expect("a document always serialises");
    line.push(b'\n');
    line
}

pub struct JsonlShards {
    dir: PathBuf,
    max_bytes: u64,
    current: Option<Open>,
    done: Vec<ShardInfo>,
}

struct Open {
    /// The shard's final name (it is written under `tmp_path(path)`).
    path: PathBuf,
    writer: BufWriter<File>,
    docs: u64,
    bytes: u64,
}

impl JsonlShards {
    pub fn new(dir: &Path, max_bytes: u64) -> Self {
        JsonlShards {
            dir: dir.to_path_buf(),
            max_bytes,
            current: None,
            done: Vec::new(),
        }
    }

    /// Append one line; a shard that would grow past the bound is closed first.
    pub fn write(&mut self, line: &[u8]) -> Result<(), OutputError> {
        let full = self
            .current
            .as_ref()
            .is_some_and(|open| open.bytes > 0 && open.bytes + line.len() as u64 > self.max_bytes);
        if full {
            self.close_current()?;
        }
        if self.current.is_none() {
            let path = self.dir.join(shard_name(self.done.len(), "jsonl"));
            let tmp = tmp_path(&path);
            let file = File::create(&tmp).map_err(|e| OutputError::io(&tmp, e))?;
            let writer = BufWriter::with_capacity(1 << 20, file);
            self.current = Some(Open {
                path,
                writer,
                docs: 0,
                bytes: 0,
            });
        }
        let open = self.current.as_mut().expect("a shard is open");
        open.writer
            .write_all(line)
            .map_err(|e| OutputError::io(&tmp_path(&open.path), e))?;
        open.docs += 1;
        open.bytes += line.len() as u64;
        Ok(())
    }

    fn close_current(&mut self) -> Result<(), OutputError> {
        if let Some(mut open) = self.current.take() {
            open.writer
                .flush()
                .map_err(|e| OutputError::io(&tmp_path(&open.path), e))?;
            self.done
                .push(ShardInfo::new(&open.path, open.docs, open.bytes));
        }
        Ok(())
    }

    /// Close the last shard; every shard keeps its temporary name until `commit`.
    pub fn close(mut self) -> Result<Closed, OutputError> {
        self.close_current()?;
        Ok(Closed::new(&self.dir, self.done))
    }

    /// Close the last shard, give every shard its final name and list them all.
    pub fn finish(self) -> Result<Vec<ShardInfo>, OutputError> {
        self.close()?.commit()
    }
}
