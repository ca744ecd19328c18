//! Data parallelism: ranks that each train on their own loader shard and sum their gradients
//! (`collective`), bucket by bucket in backward order (`bucket`); `rendezvous` is how ranks of
//! several processes or nodes find each other (and how NCCL's unique id travels).

pub mod bucket;
pub mod collective;
pub mod rendezvous;
pub mod tcp;
