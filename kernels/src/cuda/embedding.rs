//! Token embedding into the fp32 residual stream; the backward adds rows into the fp32
//! gradient of the table without atomics. CPU twin: `cpu::embedding`.

use super::tensor::Tensor;
use super::{Arg, Gpu, GpuResult, launch, per_row, row_threads};

/// Token positions grouped by id, the host's half of the deterministic backward: `order`
/// lists positions sorted by (id, position); unique id `ids[u]` owns
/// `order[starts[u]..starts[u + 1]]`.
pub struct Grouping {
    pub ids: Vec<i32>,
    pub starts: Vec<i32>,
    pub order: Vec<i32>,
}

pub fn group(tokens: &[u32]) -> Grouping {
    let mut order: Vec<i32> = (0..tokens.len() as i32).collect();
    order.sort_by_key(|&i| (tokens[i as usize], i));
    let (mut ids, mut starts) = (Vec::new(), Vec::new());
    for (at, &i) in order.iter().enumerate() {
        let id = tokens[i as usize] as i32;
        if ids.last() != Some(&id) {
            ids.push(id);
            starts.push(at as i32);
        }
    }
    starts.push(order.len() as i32);
    Grouping { ids, starts, order }
}

/// `x[t, :] = table[ids[t], :]`: i32 `ids: [n]`, bf16 `table: [vocab, d]`, fp32 `x: [n, d]`.
pub fn forward(gpu: &Gpu, ids: u64, table: u64, x: u64, n: usize, d: usize) -> GpuResult<()> {
    launch(
        gpu,
        "embedding_forward",
        per_row(n, row_threads(d)),
        &[
            Arg::Ptr(ids),
            Arg::Ptr(table),
            Arg::Ptr(x),
            Arg::I32(d as i32),
        ],
    )
}

/// `dtable[ids[t]] += dx[t]` (fp32 both) for the tokens `grouping` was made from.
pub fn backward(gpu: &Gpu, grouping: &Grouping, dx: u64, dtable: u64, d: usize) -> GpuResult<()> {
    let ids = Tensor::from_i32(gpu, &grouping.ids)?;
    let starts = Tensor::from_i32(gpu, &grouping.starts)?;
    let order = Tensor::from_i32(gpu, &grouping.order)?;
    launch(
        gpu,
        "embedding_backward",
        per_row(grouping.ids.len(), row_threads(d)),
        &[
            Arg::Ptr(ids.addr()),
            Arg::Ptr(starts.addr()),
            Arg::Ptr(order.addr()),
            Arg::Ptr(dx),
            Arg::Ptr(dtable),
            Arg::I32(d as i32),
        ],
    )
}
