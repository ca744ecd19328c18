//! The CPU reference: plain f32 forward and backward of every op the model uses, written to be
//! read. Layouts are row-major; `n` is the number of tokens. Backward functions *accumulate*
//! into parameter gradients (so micro-batches add up) and *overwrite* input gradients.

pub mod attention;
pub mod cross_entropy;
pub mod embedding;
pub mod expert_groups;
pub mod linear;
pub mod rmsnorm;
pub mod rope;
pub mod softmax;
pub mod swiglu;
pub mod topk;

#[cfg(test)]
pub(crate) mod gradcheck;

/// Elements below which a parallel loop is not worth splitting (rayon's overhead dominates).
pub const MIN_PARALLEL: usize = 8192;
