//! Top-k MoE's tokens grouped by expert: the stable, deterministic permutation that lets each
//! expert run on the tokens routed to it alone (on the device: one grouped GEMM over all
//! experts, each reading its own rows). A *slot* is one of a token's `k` choices, numbered
//! `token · k + j`; grouping is a counting sort of the slots by expert, stable, so the order
//! within an expert is slot order and nothing depends on threads or timing.

/// The slots of `chosen: [t, k]` sorted by expert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpertGroups {
    /// Slots routed to each expert `[E]` (zero for an expert no token chose).
    pub counts: Vec<u32>,
    /// Where each expert's slots start in `slots` `[E + 1]`; the last is `t · k`.
    pub offsets: Vec<u32>,
    /// Every slot, grouped by expert, in slot order within an expert `[t · k]`.
    pub slots: Vec<u32>,
}

impl ExpertGroups {
    /// Group the experts in `chosen` (each below `n_experts`; one that is not panics, as
    /// routing never produces it).
    pub fn new(chosen: &[u32], n_experts: usize) -> Self {
        let mut counts = vec![0u32; n_experts];
        for &expert in chosen {
            counts[expert as usize] += 1;
        }
        let mut offsets = vec![0u32; n_experts + 1];
        for expert in 0..n_experts {
            offsets[expert + 1] = offsets[expert] + counts[expert];
        }
        let mut next = offsets[..n_experts].to_vec();
        let mut slots = vec![0u32; chosen.len()];
        for (slot, &expert) in chosen.iter().enumerate() {
            let at = &mut next[expert as usize];
            slots[*at as usize] = slot as u32;
            *at += 1;
        }
        ExpertGroups {
            counts,
            offsets,
            slots,
        }
    }

    /// The slots routed to `expert`, in slot order.
    pub fn of(&self, expert: usize) -> &[u32] {
        &self.slots[self.offsets[expert] as usize..self.offsets[expert + 1] as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_grouping() {
        // 4 tokens, top-2 of 4 experts; expert 2 is chosen by nobody.
        let chosen = [1, 0, 3, 1, 0, 1, 3, 0];
        let groups = ExpertGroups::new(&chosen, 4);
        assert_eq!(groups.counts, [3, 3, 0, 2]);
        assert_eq!(groups.offsets, [0, 3, 6, 6, 8]);
        assert_eq!(groups.slots, [1, 4, 7, 0, 3, 5, 2, 6]);
        assert_eq!(groups.of(2), &[] as &[u32]);
        assert_eq!(groups.of(3), &[2, 6]);
    }

    #[test]
    fn every_token_to_one_expert_and_no_tokens() {
        let groups = ExpertGroups::new(&[5; 6], 8);
        assert_eq!(groups.counts, [0, 0, 0, 0, 0, 6, 0, 0]);
        assert_eq!(groups.of(5), &[0, 1, 2, 3, 4, 5]);
        assert_eq!(groups.offsets[8], 6);
        let empty = ExpertGroups::new(&[], 3);
        assert_eq!((empty.counts, empty.offsets), (vec![0; 3], vec![0; 4]));
    }

    #[test]
    fn equals_a_stable_sort_by_expert() {
        let mut x = 11u64;
        for case in 0..50 {
            let (t, k, n_experts) = (1 + case * 7, 1 + case % 3, 1 + case % 9);
            let chosen: Vec<u32> = (0..t * k)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((x >> 33) % n_experts as u64) as u32
                })
                .collect();
            let mut expected: Vec<u32> = (0..chosen.len() as u32).collect();
            expected.sort_by_key(|&slot| chosen[slot as usize]);
            let groups = ExpertGroups::new(&chosen, n_experts);
            assert_eq!(groups.slots, expected, "case {case}");
            for expert in 0..n_experts {
                assert!(
                    groups
                        .of(expert)
                        .iter()
                        .all(|&s| chosen[s as usize] == expert as u32)
                );
                assert_eq!(groups.of(expert).len(), groups.counts[expert] as usize);
            }
        }
    }
}
