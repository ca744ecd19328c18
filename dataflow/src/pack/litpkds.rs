//! The `LITPKDS` chunk file of TinyLlama/lit-gpt's `PackedDataset`, written from its spec:
//!
//! | bytes | field |
//! |---|---|
//! | 7 | magic `LITPKDS` |
//! | 8 | version, u64 little-endian, = 1 |
//! | 1 | dtype code: 1 u8, 2 i8, 3 i16, 4 i32, 5 i64, 6 f32, 7 f64, 8 u16 |
//! | 8 | chunk size in tokens, u64 little-endian |
//! | chunk size × dtype width | the tokens, little-endian |
//!
//! Token ids are stored as u16 when the vocabulary has fewer than 65,500 entries, else i32.

use crate::pack::PackError;
use std::path::Path;

pub const MAGIC: &[u8; 7] = b"LITPKDS";
pub const VERSION: u64 = 1;
pub const HEADER_BYTES: usize = 7 + 8 + 1 + 8;
/// Vocabularies at least this large are stored as i32 (lit-gpt's `dtype="auto"` rule).
pub const U16_VOCAB_LIMIT: usize = 65_500;

/// The two token dtypes Steel writes (the reader accepts only these as token ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenDtype {
    U16,
    I32,
}

impl TokenDtype {
    pub fn for_vocab(vocab_size: usize) -> Self {
        if vocab_size < U16_VOCAB_LIMIT {
            TokenDtype::U16
        } else {
            TokenDtype::I32
        }
    }

    pub fn code(self) -> u8 {
        match self {
            TokenDtype::U16 => 8,
            TokenDtype::I32 => 4,
        }
    }

    pub fn width(self) -> usize {
        match self {
            TokenDtype::U16 => 2,
            TokenDtype::I32 => 4,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            8 => Some(TokenDtype::U16),
            4 => Some(TokenDtype::I32),
            _ => None,
        }
    }
}

/// A whole chunk file as bytes: header, then exactly `tokens.len()` tokens.
pub fn encode_chunk(tokens: &[u32], dtype: TokenDtype) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_BYTES + tokens.len() * dtype.width());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.push(dtype.code());
    bytes.extend_from_slice(&(tokens.len() as u64).to_le_bytes());
    for &token in tokens {
        match dtype {
            TokenDtype::U16 => bytes.extend_from_slice(&(token as u16).to_le_bytes()),
            TokenDtype::I32 => bytes.extend_from_slice(&(token as i32).to_le_bytes()),
        }
    }
    bytes
}

/// A chunk's header, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    pub dtype: TokenDtype,
    pub chunk_size: u64,
}

/// Parse and check the header of `bytes` (the whole file): magic, version, a token dtype and a
/// payload of exactly `chunk_size` tokens.
pub fn parse_header(bytes: &[u8], path: &Path) -> Result<ChunkHeader, PackError> {
    let fail = |reason: String| PackError::Chunk {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < HEADER_BYTES {
        return Err(fail(format!(
            "{} bytes is shorter than the {HEADER_BYTES}-byte LITPKDS header",
            bytes.len()
        )));
    }
    if &bytes[..7] != MAGIC {
        return Err(fail(format!(
            "not a LITPKDS chunk: starts with {:?}, expected \"LITPKDS\"",
            String::from_utf8_lossy(&bytes[..7])
        )));
    }
    let version = u64::from_le_bytes(bytes[7..15].try_into().expect("8 bytes"));
    if version != VERSION {
        return Err(fail(format!(
            "LITPKDS version {version}, expected {VERSION}"
        )));
    }
    let dtype = TokenDtype::from_code(bytes[15]).ok_or_else(|| {
        fail(format!(
            "dtype code {}, expected 8 (u16) or 4 (i32)",
            bytes[15]
        ))
    })?;
    let chunk_size = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    let expected = HEADER_BYTES as u64 + chunk_size * dtype.width() as u64;
    if bytes.len() as u64 != expected {
        return Err(fail(format!(
            "{} bytes, but the header promises {chunk_size} tokens ({expected} bytes): truncated or padded",
            bytes.len()
        )));
    }
    Ok(ChunkHeader { dtype, chunk_size })
}

/// The tokens of a whole chunk file.
pub fn decode_chunk(bytes: &[u8], path: &Path) -> Result<(ChunkHeader, Vec<u32>), PackError> {
    let header = parse_header(bytes, path)?;
    let payload = &bytes[HEADER_BYTES..];
    let tokens = match header.dtype {
        TokenDtype::U16 => payload
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as u32)
            .collect(),
        TokenDtype::I32 => payload
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u32)
            .collect(),
    };
    Ok((header, tokens))
}
