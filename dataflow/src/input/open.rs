//! Opening a file as a buffered stream of (decompressed) bytes.

use crate::input::counting::CountingReader;
use crate::input::{Compression, InputError};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

const BUFFER_BYTES: usize = 1 << 20;

/// `path` decompressed as `compression` says; `disk_bytes` counts the bytes read from disk.
pub fn open_stream(
    path: &Path,
    compression: Compression,
    disk_bytes: Arc<AtomicU64>,
) -> Result<Box<dyn BufRead + Send>, InputError> {
    let file = File::open(path).map_err(|e| InputError::io(path, e))?;
    let raw = BufReader::with_capacity(BUFFER_BYTES, CountingReader::new(file, disk_bytes));
    Ok(match compression {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(BufReader::with_capacity(
            BUFFER_BYTES,
            flate2::bufread::MultiGzDecoder::new(raw),
        )),
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(raw)
                .map_err(|e| InputError::io(path, e))?;
            Box::new(BufReader::with_capacity(BUFFER_BYTES, decoder))
        }
    })
}
