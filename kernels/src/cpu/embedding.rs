//! Token embedding: row `ids[t]` of `table[vocab, d]` for each token.

pub fn forward(ids: &[u32], table: &[f32], d: usize, out: &mut [f32]) {
    for (row, &id) in out.chunks_mut(d).zip(ids) {
        let id = id as usize;
        row.copy_from_slice(&table[id * d..(id + 1) * d]);
    }
}

/// `dtable[ids[t]] += dout[t]` for each token.
pub fn backward(ids: &[u32], dout: &[f32], d: usize, dtable: &mut [f32]) {
    for (row, &id) in dout.chunks(d).zip(ids) {
        let id = id as usize;
        for (g, v) in dtable[id * d..(id + 1) * d].iter_mut().zip(row) {
            *g += v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_rows_and_scatters_gradients() {
        let table = [0.0, 1.0, 10.0, 11.0, 20.0, 21.0];
        let mut out = [0.0; 6];
        forward(&[2, 0, 2], &table, 2, &mut out);
        assert_eq!(out, [20.0, 21.0, 0.0, 1.0, 20.0, 21.0]);
        let mut dtable = [0.0; 6];
        backward(&[2, 0, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, &mut dtable);
        assert_eq!(dtable, [3.0, 4.0, 0.0, 0.0, 6.0, 8.0]);
    }
}
