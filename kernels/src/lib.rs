//! steel-kernels: the numeric op set of the Steel trainer, as a readable CPU reference (the
//! specification, `cpu`) and, with the `cuda` feature, a CUDA implementation tested against it.

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
