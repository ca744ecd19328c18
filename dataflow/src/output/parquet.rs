//! Parquet shards: columns `text` (string) and `meta` (struct of `source`, `file`, `row`), the
//! same shape as a JSONL line. Documents are buffered until a shard's size bound, then written
//! under a temporary name until the run commits (see the module above).

use crate::doc::UnifiedDoc;
use crate::output::{Closed, OutputError, ShardInfo, shard_name, tmp_path};
use polars::prelude::*;
use std::fs::File;
use std::path::{Path, PathBuf};

pub struct ParquetShards {
    dir: PathBuf,
    max_bytes: u64,
    pending: Vec<UnifiedDoc>,
    pending_bytes: u64,
    done: Vec<ShardInfo>,
}

impl ParquetShards {
    pub fn new(dir: &Path, max_bytes: u64) -> Self {
        ParquetShards {
            dir: dir.to_path_buf(),
            max_bytes,
            pending: Vec::new(),
            pending_bytes: 0,
            done: Vec::new(),
        }
    }

    pub fn write(&mut self, doc: UnifiedDoc) -> Result<(), OutputError> {
        let size = (doc.text.len() + doc.meta.file.len() + doc.meta.source.len() + 8) as u64;
        if !self.pending.is_empty() && self.pending_bytes + size > self.max_bytes {
            self.flush()?;
        }
        self.pending_bytes += size;
        self.pending.push(doc);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), OutputError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let docs = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let path = self.dir.join(shard_name(self.done.len(), "parquet"));
        let tmp = tmp_path(&path);
        let fail = |e: PolarsError| OutputError::Parquet {
            path: tmp.clone(),
            reason: e.to_string(),
        };
        let mut frame = to_frame(&docs).map_err(fail)?;
        let file = File::create(&tmp).map_err(|e| OutputError::io(&tmp, e))?;
        let bytes = ParquetWriter::new(file).finish(&mut frame).map_err(fail)?;
        self.done
            .push(ShardInfo::new(&path, docs.len() as u64, bytes));
        Ok(())
    }

    /// Write the last shard; every shard keeps its temporary name until `commit`.
    pub fn close(mut self) -> Result<Closed, OutputError> {
        self.flush()?;
        Ok(Closed::new(&self.dir, self.done))
    }

    /// Write the last shard, give every shard its final name and list them all.
    pub fn finish(self) -> Result<Vec<ShardInfo>, OutputError> {
        self.close()?.commit()
    }
}

fn to_frame(docs: &[UnifiedDoc]) -> PolarsResult<DataFrame> {
    let column = |name: &str, values: Vec<&str>| Column::new(name.into(), values);
    let text = column("text", docs.iter().map(|d| d.text.as_str()).collect());
    let source = column(
        "source",
        docs.iter().map(|d| d.meta.source.as_str()).collect(),
    );
    let file = column("file", docs.iter().map(|d| d.meta.file.as_str()).collect());
    let rows: Vec<u64> = docs.iter().map(|d| d.meta.row).collect();
    let row = Column::new("row".into(), rows);
    let meta = StructChunked::from_columns("meta".into(), docs.len(), &[source, file, row])?;
    DataFrame::new(docs.len(), vec![text, meta.into_column()])
}
