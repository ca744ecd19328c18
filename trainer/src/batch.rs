//! A training batch, made explicit: rows of `t` positions, each position with the token it
//! reads, the token it predicts, the weight of that prediction in the loss and where its
//! document starts in the row.
//!
//! Pretraining rows are chunk blocks: targets the inputs shifted by one, every weight 1, one
//! document per row. SFT rows carry weight 0 on the prompt and padding and may pack several
//! examples, each a document: attention never crosses a document start and positions (RoPE)
//! restart at 0 in each. DPO rows carry the coefficients of its loss as weights.

/// Rows of `t` positions, stored row after row (`[rows, t]` each).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// Positions per row.
    pub t: usize,
    /// The token each position reads.
    pub ids: Vec<u32>,
    /// The token each position predicts (any id in the vocabulary where the weight is 0).
    pub targets: Vec<u32>,
    /// The prediction's weight in the loss: 0 means it adds neither to the loss nor to the
    /// count of trained tokens.
    pub weights: Vec<f32>,
    /// The row position where the token's document starts: attention reads the keys from
    /// there up to the token itself, and the token's position is its distance from there.
    pub doc_start: Vec<u32>,
}

/// One row of a [`Batch`] (`t` positions each).
#[derive(Clone, Copy, Debug)]
pub struct RowView<'a> {
    pub ids: &'a [u32],
    pub targets: &'a [u32],
    pub weights: &'a [f32],
    pub doc_start: &'a [u32],
}

impl RowView<'_> {
    /// Each token's position within its document (what RoPE rotates by).
    pub fn positions(&self) -> Vec<u32> {
        (0..self.ids.len() as u32)
            .zip(self.doc_start)
            .map(|(i, start)| i - start)
            .collect()
    }

    /// The sum of the weights: the row's trained tokens when weights are 0 or 1.
    pub fn trained(&self) -> f64 {
        self.weights.iter().map(|&w| w as f64).sum()
    }
}

impl Batch {
    /// An empty batch of rows of `t` positions.
    pub fn new(t: usize) -> Batch {
        Batch {
            t,
            ..Batch::default()
        }
    }

    /// Pretraining rows from chunk blocks of `t + 1` tokens each: inputs `block[..t]`,
    /// targets `block[1..]`, every weight 1, one document per row.
    pub fn from_blocks(blocks: &[Vec<u32>]) -> Batch {
        let t = blocks.first().map_or(0, |b| b.len().saturating_sub(1));
        let mut batch = Batch::new(t);
        for block in blocks {
            assert_eq!(
                block.len(),
                t + 1,
                "every block of a batch has t + 1 tokens"
            );
            batch.push_row(&block[..t], &block[1..], &vec![1.0; t], &[0]);
        }
        batch
    }

    /// Appends a row: `ids`, `targets` and `weights` of `t` positions each, and the sorted
    /// positions where its documents start (the first is 0).
    pub fn push_row(&mut self, ids: &[u32], targets: &[u32], weights: &[f32], starts: &[u32]) {
        let t = self.t;
        assert!(
            ids.len() == t && targets.len() == t && weights.len() == t,
            "a row has t = {t} positions"
        );
        assert!(
            starts.first() == Some(&0) && starts.windows(2).all(|w| w[0] < w[1]),
            "document starts are increasing from 0: {starts:?}"
        );
        self.ids.extend_from_slice(ids);
        self.targets.extend_from_slice(targets);
        self.weights.extend_from_slice(weights);
        let mut doc = 0;
        for i in 0..t as u32 {
            while doc + 1 < starts.len() && starts[doc + 1] <= i {
                doc += 1;
            }
            self.doc_start.push(starts[doc]);
        }
    }

    /// Appends every row of `other` (rows of the same `t`).
    pub fn extend(&mut self, other: &Batch) {
        assert_eq!(self.t, other.t, "rows of one batch have one length");
        self.ids.extend_from_slice(&other.ids);
        self.targets.extend_from_slice(&other.targets);
        self.weights.extend_from_slice(&other.weights);
        self.doc_start.extend_from_slice(&other.doc_start);
    }

    pub fn rows(&self) -> usize {
        self.ids.len().checked_div(self.t).unwrap_or(0)
    }

    pub fn row(&self, r: usize) -> RowView<'_> {
        let span = r * self.t..(r + 1) * self.t;
        RowView {
            ids: &self.ids[span.clone()],
            targets: &self.targets[span.clone()],
            weights: &self.weights[span.clone()],
            doc_start: &self.doc_start[span],
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = RowView<'_>> {
        (0..self.rows()).map(|r| self.row(r))
    }

    /// The sum of all weights (trained tokens when weights are 0 or 1).
    pub fn trained(&self) -> f64 {
        self.weights.iter().map(|&w| w as f64).sum()
    }

    /// The positions of every row within their documents, `[rows, t]`.
    pub fn positions(&self) -> Vec<u32> {
        self.iter().flat_map(|row| row.positions()).collect()
    }

    /// Whether every row is one document (no boundary inside a row).
    pub fn single_documents(&self) -> bool {
        self.doc_start.iter().all(|&s| s == 0)
    }
}

/// How a pass turns its rows' weighted cross-entropy into the loss it returns and
/// differentiates: `Σ_i w_i · ce_i / norm + aux · load_balance`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossScale {
    /// Divides the weighted sum of cross-entropies: the trained tokens the loss is a mean
    /// over (1 for DPO, whose weights are already its loss's coefficients).
    pub norm: f32,
    /// Multiplies the top-k load-balancing loss of the rows (0 leaves it out).
    pub aux: f32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_become_shifted_rows_with_unit_weights() {
        let batch = Batch::from_blocks(&[vec![1, 2, 3, 4], vec![5, 6, 7, 8]]);
        assert_eq!(batch.t, 3);
        assert_eq!(batch.rows(), 2);
        assert_eq!(batch.ids, [1, 2, 3, 5, 6, 7]);
        assert_eq!(batch.targets, [2, 3, 4, 6, 7, 8]);
        assert_eq!(batch.trained(), 6.0);
        assert!(batch.single_documents());
        assert_eq!(batch.positions(), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn document_starts_restart_positions() {
        let mut batch = Batch::new(7);
        let w = [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0];
        batch.push_row(&[9; 7], &[9; 7], &w, &[0, 3, 5]);
        assert_eq!(batch.doc_start, [0, 0, 0, 3, 3, 5, 5]);
        assert_eq!(batch.positions(), [0, 1, 2, 0, 1, 0, 1]);
        assert_eq!(batch.row(0).trained(), 5.0);
        assert!(!batch.single_documents());
    }
}
