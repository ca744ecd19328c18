//! `document_minhash_deduplicator`: MinHash-LSH. A document is a near-duplicate of an earlier
//! one when the two agree on every row of at least one band of their signatures and — our
//! addition — their estimated Jaccard similarity reaches `jaccard_threshold`. data-juicer
//! stops at the band match, which also drops pairs far below the threshold (random English
//! texts with Jaccard 0.22 collide in the demo corpus); `verify_jaccard: false` restores that.
//! The estimate compares the low 8 bits of every signature value (b-bit minwise hashing:
//! `J ≈ (equal - 1/256) / (1 - 1/256)`), 1 byte per permutation per document.
//!
//! Signatures are data-juicer's: each distinct shingle is hashed to the little-endian first 4
//! bytes of its SHA-1; permutation `i` maps a hash `h` to `((h·a_i + b_i) mod 2^64) mod
//! (2^61 - 1)`, truncated to 32 bits, with `(a_i, b_i)` drawn from NumPy's
//! `RandomState(seed=42)` (MT19937, reimplemented here); the signature keeps the minimum per
//! permutation. Bands and rows come from the recipe or, as in data-juicer, from minimising the
//! weighted false-positive and false-negative areas for `jaccard_threshold`.

use crate::clean::dedup::simhash::bucket_hash;
use crate::clean::dedup::tokens::Shingler;
use crate::clean::op::Deduplicator;
use crate::clean::params::{ParamResult, Params};
use sha1::{Digest, Sha1};

const MERSENNE_PRIME: u64 = (1 << 61) - 1;

/// NumPy's legacy MT19937 generator, enough of it to draw `randint(low, high, dtype=uint64)`.
struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            state[i] = 1812433253u32
                .wrapping_mul(state[i - 1] ^ (state[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, index: 624 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for i in 0..624 {
                let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
                let mut next = self.state[(i + 397) % 624] ^ (y >> 1);
                if y & 1 == 1 {
                    next ^= 0x9908_b0df;
                }
                self.state[i] = next;
            }
            self.index = 0;
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn next_u64(&mut self) -> u64 {
        let high = self.next_u32() as u64;
        let low = self.next_u32() as u64;
        high << 32 | low
    }

    /// `randint(low, high, dtype=np.uint64)` for a range wider than 32 bits (masked rejection).
    fn randint(&mut self, low: u64, high: u64) -> u64 {
        let range = high - low - 1;
        let mask = u64::MAX >> range.leading_zeros();
        loop {
            let value = self.next_u64() & mask;
            if value <= range {
                return low + value;
            }
        }
    }
}

/// The `(a, b)` of each permutation, as data-juicer draws them.
pub fn permutations(count: usize) -> Vec<(u64, u64)> {
    let mut rng = Mt19937::new(42);
    (0..count)
        .map(|_| {
            let a = rng.randint(1, MERSENNE_PRIME);
            let b = rng.randint(0, MERSENNE_PRIME);
            (a, b)
        })
        .collect()
}

/// SHA-1's initial state (FIPS 180-4, 5.3.1).
const SHA1_INIT: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];

/// `sha1_hash32`: the first 4 bytes of the SHA-1 digest, little-endian. A shingle of up to 55
/// bytes (every character window of 5 CJK characters) fits one padded block, which goes
/// straight to the compression function: the message, `0x80`, zeros, and its length in bits
/// as a big-endian u64 at the end. Longer ones take the general path.
pub fn sha1_hash32(data: &[u8]) -> u32 {
    if data.len() > 55 {
        let digest = Sha1::digest(data);
        return u32::from_le_bytes(digest[..4].try_into().expect("4 bytes"));
    }
    let mut block = [0u8; 64];
    block[..data.len()].copy_from_slice(data);
    block[data.len()] = 0x80;
    block[56..].copy_from_slice(&(data.len() as u64 * 8).to_be_bytes());
    let mut state = SHA1_INIT;
    sha1::block_api::compress(&mut state, &[block]);
    // The digest's first 4 bytes are the first state word, big-endian.
    u32::from_le_bytes(state[0].to_be_bytes())
}

/// `x mod (2^61 - 1)` without a division or a branch: `2^61 ≡ 1`, so `x ≡ (x >> 61) + (x & M)`,
/// a sum `r` at most `M + 7`; `k = 1` exactly when `r >= M` (then `r + 1 >= 2^61`), and
/// `r - k·M = r + k - (k << 61)` (never below zero on the way). Shifts and adds only, so the
/// loop below vectorises.
#[inline(always)]
fn mod_mersenne(x: u64) -> u64 {
    let r = (x >> 61) + (x & MERSENNE_PRIME);
    let k = (r + 1) >> 61;
    r + k - (k << 61)
}

/// The MinHash signature of a set of shingle hashes; with no shingles (a text shorter than the
/// window) every value is `u32::MAX`, as in data-juicer 1.6, so all such texts collide.
pub fn signature(hashes: &[u32], perms: &[(u64, u64)]) -> Vec<u32> {
    if hashes.is_empty() {
        return vec![u32::MAX; perms.len()];
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
        {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { signature_avx512(hashes, perms) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { signature_avx2(hashes, perms) };
        }
    }
    signature_portable(hashes, perms)
}

/// The signature loop itself: per permutation, the minimum over every hash. The same code is
/// compiled again below for wider vector units (8 lanes of AVX-512 are 8 times as fast as
/// one division per hash).
#[inline(always)]
fn signature_portable(hashes: &[u32], perms: &[(u64, u64)]) -> Vec<u32> {
    perms
        .iter()
        .map(|&(a, b)| {
            hashes.iter().fold(u32::MAX, |min, &h| {
                min.min(mod_mersenne((h as u64).wrapping_mul(a).wrapping_add(b)) as u32)
            })
        })
        .collect()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn signature_avx2(hashes: &[u32], perms: &[(u64, u64)]) -> Vec<u32> {
    signature_portable(hashes, perms)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn signature_avx512(hashes: &[u32], perms: &[(u64, u64)]) -> Vec<u32> {
    signature_portable(hashes, perms)
}

/// One key per band: the band's rows hashed together (xxh3 of their big-endian bytes, as
/// data-juicer's band bytes).
pub fn band_keys(signature: &[u32], bands: usize, rows: usize) -> Vec<u64> {
    (0..bands)
        .map(|band| {
            let bytes: Vec<u8> = signature[band * rows..(band + 1) * rows]
                .iter()
                .flat_map(|&v| (v as u64).to_be_bytes())
                .collect();
            xxhash_rust::xxh3::xxh3_64(&bytes)
        })
        .collect()
}

/// data-juicer's `optimal_param`: the `(bands, rows)` with `bands · rows <= num_perm` that
/// minimise `0.5 · FP + 0.5 · FN`, the areas under the LSH S-curve below and above the
/// threshold (integrated with composite Simpson's rule).
///
/// Both integrands are powers of `1 - s^rows`, so for each `rows` its values at the Simpson
/// points are computed once and raised one band at a time by multiplying: about a
/// thousandth of the `powf` calls of evaluating every `(bands, rows)` afresh.
pub fn optimal_param(threshold: f64, num_perm: usize) -> (usize, usize) {
    const STEPS: usize = 2000;
    /// The Simpson points of `[a, b]` and their weights (the factor `h / 3` included).
    fn simpson(a: f64, b: f64) -> Vec<(f64, f64)> {
        let h = (b - a) / STEPS as f64;
        (0..=STEPS)
            .map(|i| {
                let weight = match i {
                    0 | STEPS => 1.0,
                    _ if i % 2 == 1 => 4.0,
                    _ => 2.0,
                };
                (a + i as f64 * h, weight * h / 3.0)
            })
            .collect()
    }
    let below = simpson(0.0, threshold);
    let above = simpson(threshold, 1.0);
    let mut best = (f64::INFINITY, (0, 0));
    for rows in 1..=num_perm {
        // (1 - s^rows) at every point, and its power `bands` as bands grows.
        let miss = |points: &[(f64, f64)]| -> Vec<f64> {
            points
                .iter()
                .map(|&(s, _)| 1.0 - s.powi(rows as i32))
                .collect()
        };
        let (miss_below, miss_above) = (miss(&below), miss(&above));
        let (mut power_below, mut power_above) = (miss_below.clone(), miss_above.clone());
        for bands in 1..=num_perm / rows {
            if bands > 1 {
                for (p, m) in power_below.iter_mut().zip(&miss_below) {
                    *p *= m;
                }
                for (p, m) in power_above.iter_mut().zip(&miss_above) {
                    *p *= m;
                }
            }
            let fp: f64 = below
                .iter()
                .zip(&power_below)
                .map(|((_, w), p)| w * (1.0 - p))
                .sum();
            let fn_: f64 = above
                .iter()
                .zip(&power_above)
                .map(|((_, w), p)| w * p)
                .sum();
            let error = 0.5 * fp + 0.5 * fn_;
            if error < best.0 {
                best = (error, (bands, rows));
            }
        }
    }
    best.1
}

pub struct MinhashDedup {
    shingler: Shingler,
    perms: Vec<(u64, u64)>,
    bands: usize,
    rows: usize,
    /// `None`: a band match is enough (data-juicer); else the Jaccard estimate must reach it.
    verify_threshold: Option<f64>,
}

/// The Jaccard estimate of two b-bit (b = 8) sketches from the share of their bytes that are
/// equal (corrected for the 1/256 that agree by chance).
fn jaccard_from_equal(equal: f64) -> f64 {
    ((equal - 1.0 / 256.0) / (1.0 - 1.0 / 256.0)).max(0.0)
}

/// How many of the first `len` bytes of two sketches (8 bytes to a word, little-endian) are
/// equal, a word at a time: a byte of `x ^ y` is zero exactly when its top bit stays clear
/// after adding 0x7f to its low 7 bits and or-ing in the byte itself.
fn equal_bytes(a: &[u64], b: &[u64], len: usize) -> u32 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    a.iter()
        .zip(b)
        .enumerate()
        .take(len.div_ceil(8))
        .map(|(i, (x, y))| {
            let z = x ^ y;
            let nonzero_tops = ((z & LOW7) + LOW7) | z;
            let mut zero_tops = !nonzero_tops & !LOW7;
            let bytes = (len - 8 * i).min(8);
            if bytes < 8 {
                zero_tops &= (1u64 << (8 * bytes)) - 1;
            }
            zero_tops.count_ones()
        })
        .sum()
}

impl MinhashDedup {
    pub fn from_params(params: &mut Params) -> ParamResult<Self> {
        let shingler = Shingler::from_params(params, 5)?;
        let num_perm = params.positive("num_permutations", 256)?;
        let threshold = params.f64("jaccard_threshold", 0.7)?;
        if !(0.0..=1.0).contains(&threshold) {
            return Err(format!(
                "document_minhash_deduplicator: jaccard_threshold {threshold} is not in [0, 1]"
            ));
        }
        let given = (
            params.opt_usize("num_bands")?,
            params.opt_usize("num_rows_per_band")?,
        );
        let (bands, rows) = match given {
            (Some(b), Some(r)) if b > 0 && r > 0 => (b, r),
            _ => optimal_param(threshold, num_perm),
        };
        let verify = params.bool("verify_jaccard", true)?;
        let mut dedup = Self::new(shingler, num_perm, bands, rows)?;
        dedup.verify_threshold = verify.then_some(threshold);
        Ok(dedup)
    }

    /// data-juicer's behaviour: a band match is a duplicate.
    pub fn new(
        shingler: Shingler,
        num_perm: usize,
        bands: usize,
        rows: usize,
    ) -> ParamResult<Self> {
        if bands * rows > num_perm {
            return Err(format!(
                "document_minhash_deduplicator: num_bands × num_rows_per_band ({bands} × {rows}) exceeds num_permutations ({num_perm})"
            ));
        }
        Ok(MinhashDedup {
            shingler,
            perms: permutations(num_perm),
            bands,
            rows,
            verify_threshold: None,
        })
    }
}

impl Deduplicator for MinhashDedup {
    fn key(&self, text: &str) -> Vec<u64> {
        // Distinct shingles' hashes: equal shingles give equal hashes, and a repeated value
        // cannot change a minimum.
        let mut hashes = Vec::new();
        self.shingler
            .for_each_shingle(text, |s| hashes.push(sha1_hash32(s.as_bytes())));
        hashes.sort_unstable();
        hashes.dedup();
        let signature = signature(&hashes, &self.perms);
        let mut key = band_keys(&signature, self.bands, self.rows);
        // Then the sketch, 8 low bytes to a word, when matches needs it.
        if self.verify_threshold.is_some() {
            key.extend(signature.chunks(8).map(|chunk| {
                chunk
                    .iter()
                    .enumerate()
                    .fold(0u64, |word, (i, &v)| word | ((v & 0xff) as u64) << (8 * i))
            }));
        }
        key
    }

    /// One bucket per band: the band number and the band's key.
    fn buckets(&self, key: &[u64]) -> Vec<u64> {
        key[..self.bands]
            .iter()
            .enumerate()
            .map(|(band, &band_key)| bucket_hash(band as u64, band_key))
            .collect()
    }

    fn matches(&self, a: &[u64], b: &[u64]) -> bool {
        let Some(threshold) = self.verify_threshold else {
            return true;
        };
        let equal = equal_bytes(&a[self.bands..], &b[self.bands..], self.perms.len());
        jaccard_from_equal(equal as f64 / self.perms.len() as f64) >= threshold
    }

    /// The band keys: `matches` reads the sketch after them.
    fn sketch_start(&self) -> usize {
        self.bands
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_match_numpy() {
        // np.random.RandomState(seed=42): [(randint(1, P), randint(0, P)) for _ in range(3)]
        let expected = [
            (2297359619001564596, 1396682528897996046),
            (1973689801170867272, 1819927849474927636),
            (572192888165898362, 571748048327668950),
        ];
        assert_eq!(permutations(3), expected);
        let mut rng = Mt19937::new(42);
        assert_eq!(rng.next_u32(), 1608637542);
    }

    #[test]
    fn optimal_params_match_data_juicer() {
        // data-juicer's optimal_param (scipy.integrate.quad) for these settings.
        assert_eq!(optimal_param(0.7, 256), (25, 10));
        assert_eq!(optimal_param(0.8, 128), (9, 13));
        assert_eq!(optimal_param(0.5, 64), (14, 4));
        // The direct evaluation (every `(bands, rows)` integrated afresh with `powf`, in
        // Python) for a fourth.
        assert_eq!(optimal_param(0.9, 256), (9, 28));
    }

    #[test]
    fn mod_mersenne_equals_the_remainder() {
        let edges = [
            0,
            1,
            MERSENNE_PRIME - 1,
            MERSENNE_PRIME,
            MERSENNE_PRIME + 1,
            2 * MERSENNE_PRIME,
            u64::MAX,
            u64::MAX - 7,
        ];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let random = (0..100_000).map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x
        });
        for value in edges.into_iter().chain(random) {
            assert_eq!(mod_mersenne(value), value % MERSENNE_PRIME, "{value}");
        }
    }

    #[test]
    fn every_signature_path_equals_the_definition() {
        let perms = permutations(256);
        let mut x = 7u64;
        let hashes: Vec<u32> = (0..1000)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                (x >> 32) as u32
            })
            .chain([0, u32::MAX])
            .collect();
        let definition: Vec<u32> = perms
            .iter()
            .map(|&(a, b)| {
                let value = |h: u32| (h as u64).wrapping_mul(a).wrapping_add(b) % MERSENNE_PRIME;
                hashes.iter().map(|&h| value(h) as u32).min().unwrap()
            })
            .collect();
        assert_eq!(signature_portable(&hashes, &perms), definition);
        assert_eq!(signature(&hashes, &perms), definition);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            assert_eq!(unsafe { signature_avx2(&hashes, &perms) }, definition);
        }
    }

    #[test]
    fn equal_bytes_counts_like_a_byte_compare() {
        let mut x = 3u64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x
        };
        for len in [1usize, 7, 8, 9, 64, 250, 256] {
            let words = len.div_ceil(8);
            let a: Vec<u64> = (0..words).map(|_| next()).collect();
            // Equal, unequal and high-bit-only differences, byte by byte.
            let b: Vec<u64> = a
                .iter()
                .map(|&w| {
                    let flips = [0u64, 0x80, 0x01, 0xff, 0x7f][(next() % 5) as usize];
                    w ^ flips << (8 * (next() % 8)) ^ flips << (8 * (next() % 8))
                })
                .collect();
            let bytes = |key: &[u64]| -> Vec<u8> {
                key.iter().flat_map(|w| w.to_le_bytes()).take(len).collect()
            };
            let expected = bytes(&a)
                .iter()
                .zip(bytes(&b))
                .filter(|(p, q)| **p == *q)
                .count();
            assert_eq!(equal_bytes(&a, &b, len) as usize, expected, "len {len}");
        }
    }

    #[test]
    fn sha1_hash32_equals_the_digest_at_every_length() {
        for len in 0..200usize {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let digest = Sha1::digest(&data);
            let expected = u32::from_le_bytes(digest[..4].try_into().unwrap());
            assert_eq!(sha1_hash32(&data), expected, "length {len}");
        }
    }

    #[test]
    fn sha1_hash32_known_answer() {
        // struct.unpack('<I', hashlib.sha1(b'abc').digest()[:4])[0]; sha1(abc) = a9993e36...
        assert_eq!(
            sha1_hash32(b"abc"),
            u32::from_le_bytes([0xa9, 0x99, 0x3e, 0x36])
        );
    }
}
