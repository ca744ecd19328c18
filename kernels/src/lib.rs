//! steel-kernels: the numeric op set of the Steel trainer, as a readable CPU reference (the
//! specification, `cpu`) and, with the CUDA issue, a CUDA implementation tested against it.

pub mod cpu;
