//! Causal attention of new tokens over a sequence's cache, with grouped-query heads: the
//! decode twin of `steel_kernels::cpu::attention::forward`, the same arithmetic in the same
//! order, for `t` queries at positions `start..start + t` over the keys and values of
//! positions `0..start + t` (the cache, the new tokens' rows already appended). The GPU's
//! `steel_kernels::cuda::decode::attention` is its twin.
//!
//! Query head `h` reads key/value head `h / (hq / hkv)`. For the query at position `p`:
//! `s_j = q·k_j / √hd` for `j ≤ p`, `w = softmax(s)`, `o = Σ_j w_j v_j`.

/// Head counts and width.
#[derive(Clone, Copy, Debug)]
pub struct Heads {
    /// Query heads.
    pub hq: usize,
    /// Key/value heads (`hq` is a multiple of it).
    pub hkv: usize,
    /// Head dimension.
    pub hd: usize,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `q: [t, hq, hd]` (positions `start..start + t`), `k, v: [start + t, hkv, hd]`;
/// writes `out: [t, hq, hd]`.
pub fn forward(q: &[f32], k: &[f32], v: &[f32], start: usize, heads: &Heads, out: &mut [f32]) {
    let Heads { hq, hkv, hd } = *heads;
    let t = q.len() / (hq * hd);
    assert!(hq.is_multiple_of(hkv), "query heads per key/value head");
    assert_eq!(k.len(), (start + t) * hkv * hd, "keys of every position");
    assert_eq!(v.len(), k.len(), "values of every position");
    let scale = 1.0 / (hd as f32).sqrt();
    let group = hq / hkv;
    let kv_at = |pos: usize, g: usize| (pos * hkv + g) * hd;
    let mut scores = vec![0.0f32; start + t];
    for i in 0..t {
        let position = start + i;
        for h in 0..hq {
            let g = h / group;
            let qi = &q[(i * hq + h) * hd..(i * hq + h + 1) * hd];
            // Scores over positions 0..=position, then their softmax in place.
            let row = &mut scores[..=position];
            for (j, s) in row.iter_mut().enumerate() {
                *s = dot(qi, &k[kv_at(j, g)..kv_at(j, g) + hd]) * scale;
            }
            let max = row.iter().fold(f32::NEG_INFINITY, |m, x| m.max(*x));
            let mut sum = 0.0;
            for s in row.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            for s in row.iter_mut() {
                *s /= sum;
            }
            let oi = &mut out[(i * hq + h) * hd..(i * hq + h + 1) * hd];
            oi.fill(0.0);
            for (j, &w) in row.iter().enumerate() {
                for (acc, value) in oi.iter_mut().zip(&v[kv_at(j, g)..kv_at(j, g) + hd]) {
                    *acc += w * value;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use steel_kernels::cpu::attention as full;

    fn values(seed: u64, len: usize) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    /// Every split of a sequence into a cached prefix and new queries gives the training
    /// kernel's rows for those queries, bit for bit (the same sums in the same order).
    #[test]
    fn queries_over_a_cache_are_the_full_causal_attention_rows() {
        let heads = Heads {
            hq: 4,
            hkv: 2,
            hd: 3,
        };
        let t = 6;
        let (q, k, v) = (
            values(1, t * heads.hq * heads.hd),
            values(2, t * heads.hkv * heads.hd),
            values(3, t * heads.hkv * heads.hd),
        );
        let shape = full::Shape {
            t,
            hq: heads.hq,
            hkv: heads.hkv,
            d: heads.hd,
        };
        let (mut expected, mut probs) = (vec![0.0; q.len()], vec![0.0; heads.hq * t * t]);
        full::forward(&q, &k, &v, &shape, &vec![0; t], &mut expected, &mut probs);
        let q_row = heads.hq * heads.hd;
        let kv_row = heads.hkv * heads.hd;
        for start in 0..t {
            for end in start + 1..=t {
                let mut out = vec![0.0; (end - start) * q_row];
                forward(
                    &q[start * q_row..end * q_row],
                    &k[..end * kv_row],
                    &v[..end * kv_row],
                    start,
                    &heads,
                    &mut out,
                );
                assert_eq!(out, expected[start * q_row..end * q_row], "{start}..{end}");
            }
        }
    }
}
