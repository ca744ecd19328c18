//! The CUDA implementation of the op set, each op tested against its CPU twin in `cpu` (the
//! specification). Kernels come from `kernels/cuda/*.cu`, compiled by `build.rs` into fatbins
//! embedded in the binary; the driver and cuBLASLt are opened at run time, so a binary built
//! with the `cuda` feature still runs its CPU path on a machine without a GPU.
//!
//! Precision: fp32 master weights, gradients and optimizer state; bf16 weights and
//! activations for compute; fp32 accumulation in every GEMM and reduction; the residual
//! stream in fp32. Device memory is addressed by raw `u64` addresses (`Tensor::addr`): each
//! op documents the dtype and shape it expects.

pub mod adamw;
pub mod attention;
pub mod cross_entropy;
pub mod decode;
pub mod embedding;
pub mod gemm;
pub mod moe;
pub mod nccl;
pub mod reduce;
pub mod rmsnorm;
pub mod rope;
pub mod swiglu;
pub mod tensor;

use cudarc::driver::{CudaContext, CudaFunction, CudaStream, LaunchConfig, PushKernelArg};
use std::collections::HashMap;
use std::sync::Arc;

pub use tensor::{Dtype, Tensor};

mod fatbins {
    include!(concat!(env!("OUT_DIR"), "/fatbins.rs"));
}

/// A CUDA, cuBLASLt or usage error, as text that says what failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuError(pub String);

impl std::fmt::Display for GpuError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GpuError {}

impl From<cudarc::driver::DriverError> for GpuError {
    fn from(e: cudarc::driver::DriverError) -> Self {
        GpuError(format!("CUDA driver: {e}"))
    }
}

impl From<cudarc::cublaslt::result::CublasError> for GpuError {
    fn from(e: cudarc::cublaslt::result::CublasError) -> Self {
        GpuError(format!("cuBLASLt: {e}"))
    }
}

pub type GpuResult<T> = Result<T, GpuError>;

/// One GPU: its context, the stream every op runs on, the loaded kernels and a cuBLASLt
/// handle. Ops are queued in order on the one stream, so results are deterministic.
pub struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    functions: HashMap<String, CudaFunction>,
    pub(crate) blas: gemm::Blas,
    /// Bytes held by live `Tensor`s now, and the most ever held at once.
    pub(crate) memory: Arc<tensor::MemoryCounter>,
}

/// Lets the device's stream-ordered memory pool keep what is freed for later allocations: its
/// default release threshold (0) hands every freed byte back to the driver at each
/// synchronisation, so each step would map its activations afresh.
fn keep_freed_memory(ctx: &CudaContext) -> GpuResult<()> {
    use cudarc::driver::sys;
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    let mut threshold = u64::MAX;
    // SAFETY: `pool` is written by the driver for this context's device; the attribute takes
    // a pointer to a u64, which `threshold` is and outlives the call.
    unsafe {
        sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()).result()?;
        sys::cuMemPoolSetAttribute(
            pool,
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            (&mut threshold as *mut u64).cast(),
        )
        .result()?;
    }
    Ok(())
}

impl Gpu {
    /// Open GPU `ordinal`: fails with a plain message where there is no driver, no device, or
    /// cuBLASLt is missing.
    pub fn open(ordinal: usize) -> GpuResult<Gpu> {
        // SAFETY: only asks the dynamic loader whether the libraries can be opened.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(GpuError(
                "no CUDA driver found (libcuda.so): this machine cannot run the CUDA path".into(),
            ));
        }
        if !unsafe { cudarc::cublaslt::sys::is_culib_present() } {
            return Err(GpuError(
                "cuBLASLt (libcublasLt.so) not found: add the CUDA libraries to LD_LIBRARY_PATH"
                    .into(),
            ));
        }
        let count = CudaContext::device_count()?;
        if ordinal as i32 >= count {
            return Err(GpuError(format!(
                "GPU {ordinal} requested, {count} present"
            )));
        }
        let ctx = CudaContext::new(ordinal)?;
        keep_freed_memory(&ctx)?;
        // One stream, ops in order: cudarc's cross-stream event tracking is not needed.
        // SAFETY: nothing is allocated yet and this context uses a single stream.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let mut functions = HashMap::new();
        for (module_name, image) in fatbins::FATBINS {
            let module = ctx
                .load_module(cudarc::nvrtc::Ptx::from_binary(image.to_vec()))
                .map_err(|e| GpuError(format!("loading kernels `{module_name}`: {e}")))?;
            let names = KERNELS
                .iter()
                .find(|(module, _)| module == module_name)
                .map_or(&[][..], |(_, names)| names);
            for name in names {
                let function = module
                    .load_function(name)
                    .map_err(|e| GpuError(format!("kernel `{name}`: {e}")))?;
                functions.insert(name.to_string(), function);
            }
        }
        let blas = gemm::Blas::new(&stream)?;
        Ok(Gpu {
            ctx,
            stream,
            functions,
            blas,
            memory: Arc::default(),
        })
    }

    /// The device's name and compute capability, for reports.
    pub fn describe(&self) -> GpuResult<String> {
        let (major, minor) = self.ctx.compute_capability()?;
        Ok(format!("{} (sm_{major}{minor})", self.ctx.name()?))
    }

    pub fn synchronize(&self) -> GpuResult<()> {
        Ok(self.stream.synchronize()?)
    }

    /// The most device memory this GPU's work held at once since it was opened: the peak of
    /// its `Tensor`s plus cuBLASLt's workspace, which is held throughout.
    pub fn peak_bytes(&self) -> usize {
        self.memory.peak() + gemm::WORKSPACE_BYTES
    }

    pub(crate) fn function(&self, name: &str) -> GpuResult<&CudaFunction> {
        self.functions
            .get(name)
            .ok_or_else(|| GpuError(format!("no kernel `{name}` in the embedded fatbins")))
    }
}

/// Every kernel the ops launch, by the `.cu` file (module) that defines it.
const KERNELS: &[(&str, &[&str])] = &[
    ("adamw", &["adamw_step"]),
    (
        "attention",
        &[
            "causal_softmax_forward",
            "causal_softmax_backward",
            "flash_backward_delta",
            "flash_forward_16",
            "flash_forward_32",
            "flash_forward_56",
            "flash_forward_64",
            "flash_forward_128",
            "flash_backward_dq_16",
            "flash_backward_dq_32",
            "flash_backward_dq_56",
            "flash_backward_dq_64",
            "flash_backward_dq_128",
            "flash_backward_dkv_16",
            "flash_backward_dkv_32",
            "flash_backward_dkv_56",
            "flash_backward_dkv_64",
            "flash_backward_dkv_128",
        ],
    ),
    (
        "cross_entropy",
        &["ce_chunk_stats", "ce_finish", "ce_chunk_backward"],
    ),
    ("decode", &["decode_attention", "kv_append"]),
    (
        "elementwise",
        &[
            "cast_f32_bf16",
            "cast_bf16_f32",
            "swiglu_forward",
            "swiglu_backward",
        ],
    ),
    ("embedding", &["embedding_forward", "embedding_backward"]),
    (
        "moe",
        &[
            "gate_softmax_forward",
            "gate_softmax_backward",
            "topk_route",
            "topk_route_backward",
            "mix_forward",
            "mix_backward",
            "sigmoid_gate_forward",
            "sigmoid_gate_backward",
        ],
    ),
    (
        "reduce",
        &[
            "column_sum_bf16_partial",
            "add_column_partials",
            "sum_squares_partial",
            "finish_norm",
            "sum_scaled",
        ],
    ),
    (
        "rmsnorm",
        &[
            "add_rmsnorm_forward",
            "rmsnorm_backward",
            "rmsnorm_weight_grad_partial",
        ],
    ),
    ("rope", &["qkv_rope_forward", "qkv_rope_backward"]),
];

/// Head sizes with a flash-attention kernel (`flash_*_{hd}` in attention.cu).
pub const FLASH_HEAD_DIMS: &[usize] = &[16, 32, 56, 64, 128];

/// A 1-D launch of `threads`-wide blocks covering `n` items.
pub(crate) fn grid_1d(n: usize, threads: u32) -> LaunchConfig {
    let blocks = n.div_ceil(threads as usize).clamp(1, i32::MAX as usize) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per row: `rows` blocks of `threads`.
pub(crate) fn per_row(rows: usize, threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Threads per block for a row of `width` elements: a multiple of 32 up to 1024.
pub(crate) fn row_threads(width: usize) -> u32 {
    (width.div_ceil(32) * 32).clamp(32, 1024) as u32
}

/// One kernel argument: a device address or a scalar, as the kernel declares it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg {
    Ptr(u64),
    I64(i64),
    I32(i32),
    F32(f32),
}

/// Launch kernel `name` with `cfg` and `args` (in the kernel's parameter order).
pub(crate) fn launch(gpu: &Gpu, name: &str, cfg: LaunchConfig, args: &[Arg]) -> GpuResult<()> {
    let function = gpu.function(name)?;
    let mut builder = gpu.stream.launch_builder(function);
    for a in args {
        match a {
            Arg::Ptr(v) => builder.arg(v),
            Arg::I64(v) => builder.arg(v),
            Arg::I32(v) => builder.arg(v),
            Arg::F32(v) => builder.arg(v),
        };
    }
    // SAFETY: every op passes the argument list its kernel declares (types and order), with
    // addresses of live device buffers of the documented sizes; `args` outlives the launch.
    unsafe { builder.launch(cfg) }
        .map(|_| ())
        .map_err(|e| GpuError(format!("launching `{name}`: {e}")))
}
