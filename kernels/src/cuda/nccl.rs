//! Sums across GPUs — data parallelism's gradient all-reduce — through NCCL, which cudarc opens
//! at run time (`libnccl.so`), like the driver. Rank 0 makes a unique id, every rank joins the
//! communicator with it (the trainer passes it through its own rendezvous), then each sum runs
//! on the GPU's stream, in order with the kernels around it.

use super::{Dtype, Gpu, GpuError, GpuResult, Tensor};
use cudarc::nccl::safe::{Comm, Id, ReduceOp};

/// The bytes of a unique NCCL id.
pub const ID_BYTES: usize = 128;

/// This GPU's place in a communicator of `world` GPUs.
pub struct Nccl {
    comm: Comm,
}

fn nccl_error(e: cudarc::nccl::result::NcclError) -> GpuError {
    GpuError(format!("NCCL: {e:?}"))
}

fn check_library() -> GpuResult<()> {
    // SAFETY: only asks the dynamic loader whether the library can be opened.
    match unsafe { cudarc::nccl::sys::is_culib_present() } {
        true => Ok(()),
        false => Err(GpuError(
            "NCCL (libnccl.so) not found: data parallelism on GPUs needs it on LD_LIBRARY_PATH"
                .into(),
        )),
    }
}

impl Nccl {
    /// A new unique id (rank 0 makes it; the others receive it).
    pub fn unique_id() -> GpuResult<[u8; ID_BYTES]> {
        check_library()?;
        let id = Id::new().map_err(nccl_error)?;
        Ok(id.internal().map(|c| c as u8))
    }

    /// Join, as `rank` of `world`, the communicator of `id`; returns once every rank has.
    pub fn join(gpu: &Gpu, rank: usize, world: usize, id: [u8; ID_BYTES]) -> GpuResult<Nccl> {
        check_library()?;
        let id = Id::uninit(id.map(|b| b as std::ffi::c_char));
        let comm = Comm::from_rank(gpu.stream.clone(), rank, world, id).map_err(nccl_error)?;
        Ok(Nccl { comm })
    }

    pub fn world(&self) -> usize {
        self.comm.world_size()
    }

    /// Replaces the f32 `tensor` by its sum over every rank.
    pub fn all_reduce_sum(&self, tensor: &mut Tensor) -> GpuResult<()> {
        if tensor.dtype != Dtype::F32 {
            return Err(GpuError(format!(
                "NCCL sums f32 tensors here, not {:?}",
                tensor.dtype
            )));
        }
        let len = tensor.len;
        // SAFETY: an f32 tensor's bytes hold exactly `len` f32 values.
        let mut values = unsafe { tensor.slice_mut().transmute_mut::<f32>(len) }
            .ok_or_else(|| GpuError("a tensor smaller than its length".into()))?;
        self.comm
            .all_reduce_in_place(&mut values, &ReduceOp::Sum)
            .map_err(nccl_error)?;
        Ok(())
    }
}
