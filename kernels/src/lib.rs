//! steel-kernels: the numeric op set of the Steel trainer, as a readable CPU reference (the
//! specification) and a CUDA implementation tested against it.
//!
//! Empty for now: the ops arrive with the trainer-core and CUDA issues.
