//! Dense GEMMs through cuBLASLt: bf16 inputs, fp32 accumulation, bf16 or fp32 output, with
//! optional strided batches. Written in row-major terms (our tensors are row-major):
//!
//! `c[m, n] = alpha · op(a)[m, k] · op(b)[k, n] + beta · c`, where `a` is stored `[m, k]`
//! (or `[k, m]` when `a_t`) and `b` is stored `[k, n]` (or `[n, k]` when `b_t`).
//!
//! cuBLASLt is column-major; a row-major `X[r, c]` is the column-major `Xᵀ[c, r]`, so we ask
//! it for `cᵀ = op(b)ᵀ · op(a)ᵀ`. The heuristic's choice for each distinct problem is cached:
//! one algorithm per shape, so repeated steps run identical kernels (deterministic).

use super::tensor::Dtype;
use super::{Gpu, GpuError, GpuResult};
use cudarc::cublaslt::{result, sys};
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

/// One operand: address, dtype, and row stride in elements (`None`: packed rows).
#[derive(Clone, Copy, Debug)]
pub struct Operand {
    pub addr: u64,
    pub dtype: Dtype,
    pub ld: Option<usize>,
}

impl Operand {
    pub fn bf16(addr: u64) -> Operand {
        Operand {
            addr,
            dtype: Dtype::Bf16,
            ld: None,
        }
    }

    pub fn f32(addr: u64) -> Operand {
        Operand {
            addr,
            dtype: Dtype::F32,
            ld: None,
        }
    }

    pub fn with_ld(self, ld: usize) -> Operand {
        Operand {
            ld: Some(ld),
            ..self
        }
    }
}

/// Strided batches: `count` problems, operand `i` at `addr + i·stride` (elements; a stride of
/// 0 broadcasts the operand).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Batch {
    pub count: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
}

impl Batch {
    /// `Some(batch)` of `count` problems with these element strides, for `Gemm::batch`.
    pub fn strided(
        count: usize,
        stride_a: usize,
        stride_b: usize,
        stride_c: usize,
    ) -> Option<Batch> {
        Some(Batch {
            count,
            stride_a,
            stride_b,
            stride_c,
        })
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: Operand,
    pub a_t: bool,
    pub b: Operand,
    pub b_t: bool,
    pub c: Operand,
    pub alpha: f32,
    pub beta: f32,
    pub batch: Option<Batch>,
}

/// The cuBLASLt handle, its workspace, and the algorithm chosen per problem.
pub(crate) struct Blas {
    handle: sys::cublasLtHandle_t,
    workspace: CudaSlice<u8>,
    algos: Mutex<HashMap<Key, sys::cublasLtMatmulAlgo_t>>,
}

// SAFETY: the handle is used from one stream; the cache is behind a mutex.
unsafe impl Send for Blas {}
unsafe impl Sync for Blas {}

impl Drop for Blas {
    fn drop(&mut self) {
        // SAFETY: the handle was created by `Blas::new` and is destroyed once.
        let _ = unsafe { result::destroy_handle(self.handle) };
    }
}

pub(crate) const WORKSPACE_BYTES: usize = 32 << 20;

impl Blas {
    pub(crate) fn new(stream: &Arc<CudaStream>) -> GpuResult<Blas> {
        Ok(Blas {
            handle: result::create_handle()?,
            workspace: stream.alloc_zeros::<u8>(WORKSPACE_BYTES)?,
            algos: Mutex::new(HashMap::new()),
        })
    }
}

/// Everything that decides the algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    m: usize,
    n: usize,
    k: usize,
    a_t: bool,
    b_t: bool,
    lds: (usize, usize, usize),
    c_f32: bool,
    batch: Option<Batch>,
    beta_zero: bool,
    /// Byte alignment of the (cuBLASLt) A, B and C/D pointers.
    alignment: (u32, u32, u32),
}

/// The largest power of two (up to 256, what cuBLASLt assumes unless told) dividing `addr`.
/// cuBLASLt's heuristic picks kernels for the alignment it is given, so every operand's
/// real alignment is passed (views into buffers are often less aligned than 256 bytes).
fn alignment(addr: u64) -> u32 {
    1u32 << addr.trailing_zeros().min(8)
}

/// Set a u32 or u64 matmul preference.
///
/// # Safety
/// `T` must be the attribute's documented type.
unsafe fn set_pref<T>(
    pref: sys::cublasLtMatmulPreference_t,
    attr: sys::cublasLtMatmulPreferenceAttributes_t,
    value: T,
) -> GpuResult<()> {
    // SAFETY: the caller passes the attribute's type; the value outlives the call.
    unsafe {
        result::set_matmul_pref_attribute(
            pref,
            attr,
            (&value) as *const T as *const c_void,
            size_of::<T>(),
        )?
    };
    Ok(())
}

fn data_type(dtype: Dtype) -> GpuResult<sys::cudaDataType> {
    match dtype {
        Dtype::F32 => Ok(sys::cudaDataType_t::CUDA_R_32F),
        Dtype::Bf16 => Ok(sys::cudaDataType_t::CUDA_R_16BF),
        Dtype::I32 | Dtype::I64 => Err(GpuError("GEMM operands are bf16 or f32".into())),
    }
}

/// A column-major matrix layout (`rows × cols`, leading dimension `ld`), destroyed on drop.
struct Layout(sys::cublasLtMatrixLayout_t);

impl Layout {
    fn new(
        dtype: Dtype,
        rows: usize,
        cols: usize,
        ld: usize,
        batch: Option<(usize, usize)>,
    ) -> GpuResult<Layout> {
        let layout = Layout(result::create_matrix_layout(
            data_type(dtype)?,
            rows as u64,
            cols as u64,
            ld as i64,
        )?);
        if let Some((count, stride)) = batch {
            let count = count as i32;
            let stride = stride as i64;
            // SAFETY: attribute values of the documented types and sizes.
            unsafe {
                result::set_matrix_layout_attribute(
                    layout.0,
                    sys::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                    (&count) as *const i32 as *const c_void,
                    size_of::<i32>(),
                )?;
                result::set_matrix_layout_attribute(
                    layout.0,
                    sys::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                    (&stride) as *const i64 as *const c_void,
                    size_of::<i64>(),
                )?;
            }
        }
        Ok(layout)
    }
}

impl Drop for Layout {
    fn drop(&mut self) {
        // SAFETY: created by `Layout::new`, destroyed once.
        let _ = unsafe { result::destroy_matrix_layout(self.0) };
    }
}

struct Desc(sys::cublasLtMatmulDesc_t);

impl Drop for Desc {
    fn drop(&mut self) {
        // SAFETY: created below, destroyed once.
        let _ = unsafe { result::destroy_matmul_desc(self.0) };
    }
}

fn set_op(desc: &Desc, attr: sys::cublasLtMatmulDescAttributes_t, t: bool) -> GpuResult<()> {
    // cublasOperation_t: 0 = N, 1 = T (a 32-bit enum).
    let op = t as i32;
    // SAFETY: a 32-bit cublasOperation_t value for a transpose attribute.
    unsafe {
        result::set_matmul_desc_attribute(
            desc.0,
            attr,
            (&op) as *const i32 as *const c_void,
            size_of::<i32>(),
        )?
    };
    Ok(())
}

/// Run one GEMM (see the module docs) on the GPU's stream.
pub fn gemm(gpu: &Gpu, g: &Gemm) -> GpuResult<()> {
    if g.a.dtype != Dtype::Bf16 || g.b.dtype != Dtype::Bf16 {
        return Err(GpuError("GEMM inputs are bf16".into()));
    }
    // Row strides of the stored row-major operands.
    let lda = g.a.ld.unwrap_or(if g.a_t { g.m } else { g.k });
    let ldb = g.b.ld.unwrap_or(if g.b_t { g.k } else { g.n });
    let ldc = g.c.ld.unwrap_or(g.n);
    // Column-major problem: C'[n, m] = A'(= b) op · B'(= a) op.
    let (a_rows, a_cols) = if g.b_t { (g.k, g.n) } else { (g.n, g.k) };
    let (b_rows, b_cols) = if g.a_t { (g.m, g.k) } else { (g.k, g.m) };
    let batch = |stride: fn(&Batch) -> usize| g.batch.map(|b| (b.count, stride(&b)));
    let layout_a = Layout::new(Dtype::Bf16, a_rows, a_cols, ldb, batch(|b| b.stride_b))?;
    let layout_b = Layout::new(Dtype::Bf16, b_rows, b_cols, lda, batch(|b| b.stride_a))?;
    let layout_c = Layout::new(g.c.dtype, g.n, g.m, ldc, batch(|b| b.stride_c))?;
    let desc = Desc(result::create_matmul_desc(
        sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
        sys::cudaDataType_t::CUDA_R_32F,
    )?);
    set_op(
        &desc,
        sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
        g.b_t,
    )?;
    set_op(
        &desc,
        sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSB,
        g.a_t,
    )?;
    let key = Key {
        m: g.m,
        n: g.n,
        k: g.k,
        a_t: g.a_t,
        b_t: g.b_t,
        lds: (lda, ldb, ldc),
        c_f32: g.c.dtype == Dtype::F32,
        batch: g.batch,
        beta_zero: g.beta == 0.0,
        // cuBLASLt's A is our b, its B our a.
        alignment: (
            alignment(g.b.addr),
            alignment(g.a.addr),
            alignment(g.c.addr),
        ),
    };
    let blas = &gpu.blas;
    let (workspace, _) = blas.workspace.device_ptr(&gpu.stream);
    let algo = {
        let mut algos = blas.algos.lock().expect("GEMM cache lock");
        match algos.get(&key) {
            Some(algo) => *algo,
            None => {
                let pref = result::create_matmul_pref()?;
                use sys::cublasLtMatmulPreferenceAttributes_t as Attr;
                let (align_a, align_b, align_c) = key.alignment;
                // SAFETY: the attributes' documented types (u64 workspace size, u32
                // alignments); the preference is destroyed right after the query.
                let heuristic = unsafe {
                    let setup = set_pref(
                        pref,
                        Attr::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                        WORKSPACE_BYTES as u64,
                    )
                    .and_then(|_| {
                        set_pref(
                            pref,
                            Attr::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                            align_a,
                        )
                    })
                    .and_then(|_| {
                        set_pref(
                            pref,
                            Attr::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                            align_b,
                        )
                    })
                    .and_then(|_| {
                        set_pref(
                            pref,
                            Attr::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                            align_c,
                        )
                    })
                    .and_then(|_| {
                        set_pref(
                            pref,
                            Attr::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                            align_c,
                        )
                    });
                    let found = setup.and_then(|_| {
                        result::get_matmul_algo_heuristic(
                            blas.handle,
                            desc.0,
                            layout_a.0,
                            layout_b.0,
                            layout_c.0,
                            layout_c.0,
                            pref,
                        )
                        .map_err(|e| GpuError(format!("no cuBLASLt algorithm for GEMM {g:?}: {e}")))
                    });
                    result::destroy_matmul_pref(pref)?;
                    found?
                };
                algos.insert(key, heuristic.algo);
                heuristic.algo
            }
        }
    };
    // SAFETY: operands are live device buffers holding the shapes described by the layouts.
    unsafe {
        result::matmul(
            blas.handle,
            desc.0,
            (&g.alpha) as *const f32 as *const c_void,
            (&g.beta) as *const f32 as *const c_void,
            g.b.addr as *const c_void,
            layout_a.0,
            g.a.addr as *const c_void,
            layout_b.0,
            g.c.addr as *const c_void,
            layout_c.0,
            g.c.addr as *mut c_void,
            layout_c.0,
            &algo,
            workspace as *mut c_void,
            WORKSPACE_BYTES,
            gpu.stream.cu_stream() as sys::cudaStream_t,
        )?;
    }
    Ok(())
}

/// `y[n, out] = x[n, in] · w[out, in]ᵀ` (+ `beta · y`), the linear layer's forward.
#[allow(clippy::too_many_arguments)]
pub fn linear_forward(
    gpu: &Gpu,
    x: u64,
    w: u64,
    y: Operand,
    n: usize,
    d_in: usize,
    d_out: usize,
    beta: f32,
) -> GpuResult<()> {
    gemm(
        gpu,
        &Gemm {
            m: n,
            n: d_out,
            k: d_in,
            a: Operand::bf16(x),
            a_t: false,
            b: Operand::bf16(w),
            b_t: true,
            c: y,
            alpha: 1.0,
            beta,
            batch: None,
        },
    )
}

/// `dx[n, in] (+)= dy[n, out] · w[out, in]`.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward_input(
    gpu: &Gpu,
    dy: u64,
    w: u64,
    dx: Operand,
    n: usize,
    d_in: usize,
    d_out: usize,
    beta: f32,
) -> GpuResult<()> {
    gemm(
        gpu,
        &Gemm {
            m: n,
            n: d_in,
            k: d_out,
            a: Operand::bf16(dy),
            a_t: false,
            b: Operand::bf16(w),
            b_t: false,
            c: dx,
            alpha: 1.0,
            beta,
            batch: None,
        },
    )
}

/// `dw[out, in] += dy[n, out]ᵀ · x[n, in]` into fp32 gradients.
pub fn linear_backward_weight(
    gpu: &Gpu,
    dy: u64,
    x: u64,
    dw: u64,
    n: usize,
    d_in: usize,
    d_out: usize,
) -> GpuResult<()> {
    gemm(
        gpu,
        &Gemm {
            m: d_out,
            n: d_in,
            k: n,
            a: Operand::bf16(dy),
            a_t: true,
            b: Operand::bf16(x),
            b_t: false,
            c: Operand::f32(dw),
            alpha: 1.0,
            beta: 1.0,
            batch: None,
        },
    )
}
