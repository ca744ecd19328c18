//! Examples laid out in rows of `row_len` positions (the cutoff), one a row or packed.
//!
//! An example of `n` tokens placed at row position `o` fills positions `o..o + n`: position
//! `o + i` reads `ids[i]`, predicts `ids[i + 1]` with weight 1 iff `trained[i + 1]`, for
//! `i < n - 1`; its last position predicts the pad id with weight 0. It is a document of its
//! own: a document starts at `o`. The positions after the last example are padding: the pad
//! id, predicting the pad id with weight 0, one more document (so they attend to nothing
//! before them; being after every example, nothing attends to them).
//!
//! **Packing** is best-fit decreasing: examples longest first (ties in input order), each into
//! the open row with the least space that still holds it, or a new row. It fills rows as well
//! as first-fit decreasing in practice, is deterministic, and needs only an ordered set of
//! (space left, row): `O(n log n)` for `n` examples, where first-fit needs a tree over rows
//! to find the first row with space. Inside a row the examples keep their input order.
//!
//! **Words.** A row is stored as one `u32` per position: the id it reads (below 2³⁰) with bit
//! 31 set when its prediction has weight 1 and bit 30 set when a document starts there. The
//! target is the next position's id, or the pad id where the next position starts a document
//! or the row ends; so the words hold the whole [`Batch`] row in a quarter of its size.

use crate::batch::Batch;
use crate::sft::SftOptions;
use crate::sft::example::Example;
use crate::sft::report::RowReport;
use std::cmp::Reverse;
use std::collections::BTreeSet;

/// In a row word: this position's prediction has weight 1. In a token word (an example's
/// token as stored before layout): this token is trained on.
pub const TRAINED: u32 = 1 << 31;
/// In a row word: a document starts at this position.
pub const START: u32 = 1 << 30;
/// The id bits of a word.
pub const ID: u32 = START - 1;

/// An example's tokens as token words: `id | TRAINED` where trained.
pub fn token_words(example: &Example) -> Vec<u32> {
    example
        .ids
        .iter()
        .zip(&example.trained)
        .map(|(&id, &trained)| id | if trained { TRAINED } else { 0 })
        .collect()
}

/// Which examples go in which row: row `r` holds examples `members[ends[r - 1]..ends[r]]`
/// (`ends[-1]` = 0), by their index in the input, ascending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub members: Vec<u32>,
    pub ends: Vec<usize>,
}

impl Plan {
    /// The rows for examples of `lengths` tokens (each at most `row_len`): with `packing`,
    /// best-fit decreasing; otherwise example `i` alone in row `i`.
    pub fn new(lengths: &[u32], row_len: usize, packing: bool) -> Plan {
        assert!(
            lengths.iter().all(|&n| n as usize <= row_len),
            "examples are cut to the row length before they are laid out"
        );
        let (row_of, rows) = if packing {
            best_fit_decreasing(lengths, row_len as u32)
        } else {
            ((0..lengths.len() as u32).collect(), lengths.len())
        };
        // Group by row, examples in input order (a counting sort).
        let mut ends = vec![0usize; rows];
        for &row in &row_of {
            ends[row as usize] += 1;
        }
        let mut next = Vec::with_capacity(rows);
        let mut total = 0;
        for end in &mut ends {
            next.push(total);
            total += *end;
            *end = total;
        }
        let mut members = vec![0u32; lengths.len()];
        for (example, &row) in row_of.iter().enumerate() {
            members[next[row as usize]] = example as u32;
            next[row as usize] += 1;
        }
        Plan { members, ends }
    }

    pub fn rows(&self) -> usize {
        self.ends.len()
    }

    /// The examples of row `r`.
    pub fn row(&self, r: usize) -> &[u32] {
        let start = if r == 0 { 0 } else { self.ends[r - 1] };
        &self.members[start..self.ends[r]]
    }
}

/// The row of each example and the number of rows.
fn best_fit_decreasing(lengths: &[u32], row_len: u32) -> (Vec<u32>, usize) {
    let mut order: Vec<u32> = (0..lengths.len() as u32).collect();
    order.sort_unstable_by_key(|&i| (Reverse(lengths[i as usize]), i));
    // (space left, row) of every row with space left.
    let mut open: BTreeSet<(u32, u32)> = BTreeSet::new();
    let mut row_of = vec![0u32; lengths.len()];
    let mut rows = 0u32;
    for i in order {
        let n = lengths[i as usize];
        let (space, row) = match open.range((n, 0)..).next().copied() {
            Some(slot) => {
                open.remove(&slot);
                slot
            }
            None => {
                rows += 1;
                (row_len, rows - 1)
            }
        };
        if space > n {
            open.insert((space - n, row));
        }
        row_of[i as usize] = row;
    }
    (row_of, rows as usize)
}

/// How rows are written and read: their length and the pad id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowLayout {
    pub row_len: usize,
    pub pad: u32,
}

impl RowLayout {
    /// Write the row of `examples` (token words, in order, `row_len` tokens at most together)
    /// into `row` (`row_len` words); the number of padding positions.
    pub fn fill(&self, row: &mut [u32], examples: &[&[u32]]) -> usize {
        assert_eq!(row.len(), self.row_len, "a row has row_len positions");
        let mut at = 0;
        for example in examples {
            let n = example.len();
            for i in 0..n {
                let mut word = example[i] & ID;
                if i == 0 {
                    word |= START;
                }
                if i + 1 < n && example[i + 1] & TRAINED != 0 {
                    word |= TRAINED;
                }
                row[at + i] = word;
            }
            at += n;
        }
        for (p, word) in row.iter_mut().enumerate().skip(at) {
            *word = self.pad | if p == at { START } else { 0 };
        }
        self.row_len - at
    }

    /// Append the row of `words` (`row_len` of them) to `batch` (of `t = row_len`).
    pub fn push(&self, words: &[u32], batch: &mut Batch) {
        let t = self.row_len;
        let mut ids = Vec::with_capacity(t);
        let mut targets = Vec::with_capacity(t);
        let mut weights = Vec::with_capacity(t);
        let mut starts = vec![0];
        for (i, &word) in words.iter().enumerate() {
            ids.push(word & ID);
            weights.push(if word & TRAINED != 0 { 1.0 } else { 0.0 });
            targets.push(match words.get(i + 1) {
                Some(&next) if next & START == 0 => next & ID,
                _ => self.pad,
            });
            if i > 0 && word & START != 0 {
                starts.push(i as u32);
            }
        }
        batch.push_row(&ids, &targets, &weights, &starts);
    }
}

/// `examples` (each cut to `options.cutoff` tokens if longer) as rows of `options.cutoff`
/// positions, one example a row or packed (`options.packing`), padded with `pad`; and their
/// report. In memory: for a few examples (tests, evaluation); [`crate::sft::Prepared`] writes
/// the same rows to disk.
pub fn build_rows(examples: &[Example], options: &SftOptions, pad: u32) -> (Batch, RowReport) {
    let layout = RowLayout {
        row_len: options.cutoff,
        pad,
    };
    let words: Vec<Vec<u32>> = examples
        .iter()
        .map(|e| {
            let mut words = token_words(e);
            words.truncate(options.cutoff);
            words
        })
        .collect();
    let lengths: Vec<u32> = words.iter().map(|w| w.len() as u32).collect();
    let plan = Plan::new(&lengths, options.cutoff, options.packing);
    let mut batch = Batch::new(options.cutoff);
    let mut row = vec![0u32; options.cutoff];
    let mut padding = 0;
    for r in 0..plan.rows() {
        let members: Vec<&[u32]> = plan
            .row(r)
            .iter()
            .map(|&e| &words[e as usize][..])
            .collect();
        padding += layout.fill(&mut row, &members) as u64;
        layout.push(&row, &mut batch);
    }
    let rows = plan.rows() as u64;
    let positions = rows * options.cutoff as u64;
    let report = RowReport::new(rows, options.cutoff as u64, positions - padding);
    (batch, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(ids: &[u32], trained: &[bool]) -> Example {
        Example {
            ids: ids.to_vec(),
            trained: trained.to_vec(),
        }
    }

    #[test]
    fn a_row_reads_the_tokens_and_predicts_the_next_trained_ones() {
        let layout = RowLayout { row_len: 8, pad: 0 };
        let a = token_words(&example(&[10, 11, 12], &[false, true, true]));
        let b = token_words(&example(&[20, 21], &[false, true]));
        let mut row = vec![0; 8];
        assert_eq!(layout.fill(&mut row, &[&a, &b]), 3);
        let mut batch = Batch::new(8);
        layout.push(&row, &mut batch);
        assert_eq!(batch.ids, [10, 11, 12, 20, 21, 0, 0, 0]);
        assert_eq!(batch.targets, [11, 12, 0, 21, 0, 0, 0, 0]);
        assert_eq!(batch.weights, [1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(batch.doc_start, [0, 0, 0, 3, 3, 5, 5, 5]);
        assert_eq!(batch.positions(), [0, 1, 2, 0, 1, 0, 1, 2]);
        // A full row has no padding document.
        let mut full = vec![0; 5];
        let layout = RowLayout { row_len: 5, pad: 0 };
        assert_eq!(layout.fill(&mut full, &[&a, &b]), 0);
        let mut batch = Batch::new(5);
        layout.push(&full, &mut batch);
        assert_eq!(batch.doc_start, [0, 0, 0, 3, 3]);
        assert_eq!(batch.targets, [11, 12, 0, 21, 0]);
    }

    #[test]
    fn best_fit_decreasing_fills_the_tightest_row_and_keeps_input_order_inside() {
        // Longest first: 6 opens row 0 (space 4), 5 opens row 1 (space 5), 4 fits row 0
        // exactly, 3 goes to row 1 (space 2), 2 fills row 1, 2 opens row 2.
        let plan = Plan::new(&[2, 5, 4, 6, 3, 2], 10, true);
        assert_eq!(plan.rows(), 3);
        assert_eq!(plan.row(0), [2, 3]);
        assert_eq!(plan.row(1), [0, 1, 4]);
        assert_eq!(plan.row(2), [5]);
        let unpacked = Plan::new(&[2, 5, 4], 10, false);
        assert_eq!(unpacked.rows(), 3);
        assert_eq!(unpacked.row(1), [1]);
        let none = Plan::new(&[], 10, true);
        assert_eq!(none.rows(), 0);
    }

    #[test]
    fn packing_places_every_example_once_within_the_row() {
        let mut state = 7u64;
        let lengths: Vec<u32> = (0..2000)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                1 + (state >> 33) as u32 % 100
            })
            .collect();
        let plan = Plan::new(&lengths, 128, true);
        let mut seen = vec![0; lengths.len()];
        for r in 0..plan.rows() {
            let used: u32 = plan.row(r).iter().map(|&e| lengths[e as usize]).sum();
            assert!(used <= 128);
            assert!(plan.row(r).windows(2).all(|w| w[0] < w[1]));
            for &e in plan.row(r) {
                seen[e as usize] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == 1));
        let total: u32 = lengths.iter().sum();
        let lower_bound = total.div_ceil(128) as usize;
        assert!(
            plan.rows() <= lower_bound + lower_bound / 20 + 1,
            "{} rows",
            plan.rows()
        );
    }

    #[test]
    fn in_memory_rows_report_their_padding() {
        let examples = [
            example(&[1, 2, 3], &[false, true, true]),
            example(&[4, 5, 6, 7, 8, 9], &[false, false, true, true, true, true]),
        ];
        let options = SftOptions {
            cutoff: 5,
            packing: false,
            ..SftOptions::default()
        };
        let (batch, report) = build_rows(&examples, &options, 0);
        assert_eq!(batch.rows(), 2);
        assert_eq!((report.rows, report.positions, report.padding), (2, 10, 2));
        assert_eq!(batch.row(1).ids, [4, 5, 6, 7, 8]);
        assert_eq!(batch.row(1).weights, [0.0, 1.0, 1.0, 1.0, 0.0]);
    }
}
