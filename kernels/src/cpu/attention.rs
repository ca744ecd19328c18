//! Causal self-attention with grouped-query heads (GQA) for one row of `t` tokens, which may
//! pack several documents.
//!
//! `q: [t, hq, d]`, `k, v: [t, hkv, d]`, query head `h` reads key/value head `h / (hq / hkv)`.
//! `doc_start: [t]`: the row position where each token's document starts. Token `i` attends
//! to keys `doc_start[i] ..= i`: neither the future nor another document.
//! `s = q·kᵀ / √d` over those keys, `p = softmax(s)`, `o = p·v: [t, hq, d]`.
//! The forward keeps `p: [hq, t, t]` for the backward (a reference, not a memory-saving kernel).

use crate::cpu::MIN_PARALLEL;
use rayon::prelude::*;

pub struct Shape {
    pub t: usize,
    pub hq: usize,
    pub hkv: usize,
    pub d: usize,
}

impl Shape {
    fn kv_head(&self, h: usize) -> usize {
        h / (self.hq / self.hkv)
    }
    fn q_at(&self, pos: usize, h: usize) -> usize {
        (pos * self.hq + h) * self.d
    }
    fn kv_at(&self, pos: usize, h: usize) -> usize {
        (pos * self.hkv + h) * self.d
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Fills `o` and the probabilities `p` (zero outside each token's keys). Query heads run in
/// parallel (rayon); each head's output is then placed in `o`.
pub fn forward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    s: &Shape,
    doc_start: &[u32],
    o: &mut [f32],
    p: &mut [f32],
) {
    assert!(
        s.hq.is_multiple_of(s.hkv),
        "query heads must be a multiple of key/value heads"
    );
    check_starts(doc_start, s.t);
    let scale = 1.0 / (s.d as f32).sqrt();
    p.fill(0.0);
    let heads: Vec<Vec<f32>> = p
        .par_chunks_mut(s.t * s.t)
        // Short sequences: one task (splitting costs more than it saves).
        .with_min_len(if s.t * s.t * s.d < MIN_PARALLEL {
            s.hq
        } else {
            1
        })
        .enumerate()
        .map(|(h, probs)| {
            let g = s.kv_head(h);
            let mut out = vec![0.0f32; s.t * s.d];
            for i in 0..s.t {
                let qi = &q[s.q_at(i, h)..s.q_at(i, h) + s.d];
                let lo = doc_start[i] as usize;
                let row = &mut probs[i * s.t..(i + 1) * s.t];
                for j in lo..=i {
                    row[j] = dot(qi, &k[s.kv_at(j, g)..s.kv_at(j, g) + s.d]) * scale;
                }
                let keys = &mut row[lo..=i];
                let max = keys.iter().fold(f32::NEG_INFINITY, |m, x| m.max(*x));
                let mut sum = 0.0;
                for x in keys.iter_mut() {
                    *x = (*x - max).exp();
                    sum += *x;
                }
                for x in keys.iter_mut() {
                    *x /= sum;
                }
                let oi = &mut out[i * s.d..(i + 1) * s.d];
                for (j, &pij) in row.iter().enumerate().take(i + 1).skip(lo) {
                    for (acc, val) in oi.iter_mut().zip(&v[s.kv_at(j, g)..s.kv_at(j, g) + s.d]) {
                        *acc += pij * val;
                    }
                }
            }
            out
        })
        .collect();
    for (h, out) in heads.iter().enumerate() {
        for i in 0..s.t {
            o[s.q_at(i, h)..s.q_at(i, h) + s.d].copy_from_slice(&out[i * s.d..(i + 1) * s.d]);
        }
    }
}

/// `dv = pᵀ·do`, `dp = do·vᵀ`, `ds = p ⊙ (dp - Σ_j p·dp)`, `dq = ds·k/√d`, `dk = dsᵀ·q/√d`
/// (summed over the query heads sharing a key/value head). All three are overwritten.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    d_o: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    p: &[f32],
    s: &Shape,
    doc_start: &[u32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    check_starts(doc_start, s.t);
    let scale = 1.0 / (s.d as f32).sqrt();
    dq.fill(0.0);
    dk.fill(0.0);
    dv.fill(0.0);
    let mut ds = vec![0.0f32; s.t];
    for h in 0..s.hq {
        let g = s.kv_head(h);
        for i in 0..s.t {
            let row = &p[(h * s.t + i) * s.t..(h * s.t + i + 1) * s.t];
            let doi = &d_o[s.q_at(i, h)..s.q_at(i, h) + s.d];
            let lo = doc_start[i] as usize;
            let mut weighted = 0.0;
            for j in lo..=i {
                let vj = s.kv_at(j, g);
                for (dvx, dox) in dv[vj..vj + s.d].iter_mut().zip(doi) {
                    *dvx += row[j] * dox;
                }
                ds[j] = dot(doi, &v[vj..vj + s.d]);
                weighted += row[j] * ds[j];
            }
            for j in lo..=i {
                ds[j] = row[j] * (ds[j] - weighted) * scale;
                let (qi, kj) = (s.q_at(i, h), s.kv_at(j, g));
                for x in 0..s.d {
                    dq[qi + x] += ds[j] * k[kj + x];
                    dk[kj + x] += ds[j] * q[qi + x];
                }
            }
        }
    }
}

/// A document starts at or before each of its tokens.
fn check_starts(doc_start: &[u32], t: usize) {
    assert_eq!(doc_start.len(), t, "a document start per token");
    assert!(
        doc_start.iter().enumerate().all(|(i, &s)| s as usize <= i),
        "a token's document starts at or before it"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gradcheck::{check, dot as weighted, values};

    #[test]
    fn first_token_attends_to_itself_only() {
        let s = Shape {
            t: 2,
            hq: 2,
            hkv: 1,
            d: 2,
        };
        let (q, k, v) = (values(20, 8), values(21, 4), values(22, 4));
        let (mut o, mut p) = (vec![0.0; 8], vec![0.0; 8]);
        forward(&q, &k, &v, &s, &[0, 0], &mut o, &mut p);
        // Position 0 of both query heads copies v at position 0 (the shared head).
        assert_eq!(&o[0..2], &v[0..2]);
        assert_eq!(&o[2..4], &v[0..2]);
        assert_eq!((p[0], p[1]), (1.0, 0.0));
        assert!((p[2] + p[3] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn gradients_match_finite_differences() {
        // One document, then two (positions 0..2 and 2..5) in one row.
        for starts in [[0, 0, 0, 0, 0], [0, 0, 2, 2, 2]] {
            let s = Shape {
                t: 5,
                hq: 4,
                hkv: 2,
                d: 3,
            };
            let q = values(23, s.t * s.hq * s.d);
            let k = values(24, s.t * s.hkv * s.d);
            let v = values(25, s.t * s.hkv * s.d);
            let weights = values(26, s.t * s.hq * s.d);
            let loss = |q: &[f32], k: &[f32], v: &[f32]| {
                let (mut o, mut p) = (vec![0.0; q.len()], vec![0.0; s.hq * s.t * s.t]);
                forward(q, k, v, &s, &starts, &mut o, &mut p);
                weighted(&o, &weights)
            };
            let (mut o, mut p) = (vec![0.0; q.len()], vec![0.0; s.hq * s.t * s.t]);
            forward(&q, &k, &v, &s, &starts, &mut o, &mut p);
            let (mut dq, mut dk, mut dv) =
                (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
            backward(
                &weights, &q, &k, &v, &p, &s, &starts, &mut dq, &mut dk, &mut dv,
            );
            check("dq", &q, &dq, |x| loss(x, &k, &v));
            check("dk", &k, &dk, |x| loss(&q, x, &v));
            check("dv", &v, &dv, |x| loss(&q, &k, x));
        }
    }

    /// Two documents packed in one row attend exactly as each alone.
    #[test]
    fn packed_documents_attend_as_if_alone() {
        let s = |t| Shape {
            t,
            hq: 2,
            hkv: 1,
            d: 3,
        };
        let (q, k, v) = (values(30, 5 * 6), values(31, 5 * 3), values(32, 5 * 3));
        let run = |t: usize, from: usize, starts: &[u32]| {
            let (mut o, mut p) = (vec![0.0; t * 6], vec![0.0; 2 * t * t]);
            let (q, k, v) = (&q[from * 6..], &k[from * 3..], &v[from * 3..]);
            forward(
                &q[..t * 6],
                &k[..t * 3],
                &v[..t * 3],
                &s(t),
                starts,
                &mut o,
                &mut p,
            );
            o
        };
        let packed = run(5, 0, &[0, 0, 2, 2, 2]);
        assert_eq!(&packed[..2 * 6], &run(2, 0, &[0, 0])[..]);
        assert_eq!(&packed[2 * 6..], &run(3, 2, &[0, 0, 0])[..]);
    }
}
