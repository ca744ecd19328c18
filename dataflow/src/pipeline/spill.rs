//! A file's converted documents spilled to disk while the file is read, so that `steel run`
//! holds one batch of a file in memory, not the whole file, and feeds the dataflow only once
//! the file is known not to have changed while it was read (a changed file is skipped whole,
//! for the next run).
//!
//! Layout: per document, its row (u64, little-endian), its text's length in bytes (u32) and
//! the text. The file lives in the state directory and is removed when dropped.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

pub struct SpillWriter {
    out: BufWriter<File>,
    path: PathBuf,
    docs: u64,
}

/// The documents of one file, on disk.
pub struct Spill {
    path: PathBuf,
    pub docs: u64,
}

impl SpillWriter {
    pub fn create(path: &Path) -> std::io::Result<SpillWriter> {
        Ok(SpillWriter {
            out: BufWriter::new(File::create(path)?),
            path: path.to_path_buf(),
            docs: 0,
        })
    }

    pub fn push(&mut self, row: u64, text: &str) -> std::io::Result<()> {
        let len = u32::try_from(text.len())
            .map_err(|_| std::io::Error::other(format!("row {row}: a text of 4 GiB or more")))?;
        self.out.write_all(&row.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(text.as_bytes())?;
        self.docs += 1;
        Ok(())
    }

    pub fn finish(self) -> std::io::Result<Spill> {
        self.out.into_inner().map_err(|e| e.into_error())?;
        Ok(Spill {
            path: self.path,
            docs: self.docs,
        })
    }
}

impl Spill {
    /// The documents in order, `batch` at a time, each batch given to `each`.
    pub fn for_batches<E: From<std::io::Error>>(
        &self,
        batch: usize,
        mut each: impl FnMut(Vec<(u64, String)>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut input = BufReader::new(File::open(&self.path)?);
        let mut docs = Vec::with_capacity(batch);
        for _ in 0..self.docs {
            let mut head = [0u8; 12];
            input.read_exact(&mut head)?;
            let row = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
            let len = u32::from_le_bytes(head[8..].try_into().expect("4 bytes")) as usize;
            let mut text = vec![0u8; len];
            input.read_exact(&mut text)?;
            let text = String::from_utf8(text).map_err(std::io::Error::other)?;
            docs.push((row, text));
            if docs.len() == batch {
                each(std::mem::take(&mut docs))?;
            }
        }
        if !docs.is_empty() {
            each(docs)?;
        }
        Ok(())
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_come_back_in_order_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spill.tmp");
        let mut writer = SpillWriter::create(&path).unwrap();
        let docs: Vec<(u64, String)> = (0..7).map(|i| (i * 3, format!("文档 {i}"))).collect();
        for (row, text) in &docs {
            writer.push(*row, text).unwrap();
        }
        let spill = writer.finish().unwrap();
        let mut batches = Vec::new();
        spill
            .for_batches::<std::io::Error>(3, |batch| {
                batches.push(batch);
                Ok(())
            })
            .unwrap();
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
        assert_eq!(batches.concat(), docs);
        drop(spill);
        assert!(!path.exists(), "removed when dropped");
    }
}
