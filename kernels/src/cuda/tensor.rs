//! `Tensor`: one device allocation of f32, bf16 or i32 elements, with uploads and downloads
//! that convert from and to f32 on the host, and byte accounting for the peak-memory report.

use super::{Gpu, GpuError, GpuResult};
use cudarc::driver::{CudaSlice, DevicePtr};
use half::bf16;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    Bf16,
    I32,
    I64,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::Bf16 => 2,
            Dtype::I64 => 8,
        }
    }
}

/// Live and peak bytes of a GPU's tensors.
#[derive(Debug, Default)]
pub struct MemoryCounter {
    live: AtomicUsize,
    peak: AtomicUsize,
}

impl MemoryCounter {
    fn add(&self, bytes: usize) {
        let live = self.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(live, Ordering::Relaxed);
    }

    fn sub(&self, bytes: usize) {
        self.live.fetch_sub(bytes, Ordering::Relaxed);
    }

    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
}

/// `values` as the little-endian bytes of an f32 or bf16 tensor (bf16 rounded to nearest).
fn float_bytes(values: &[f32], dtype: Dtype) -> GpuResult<Vec<u8>> {
    match dtype {
        Dtype::F32 => Ok(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        Dtype::Bf16 => Ok(values
            .iter()
            .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
            .collect()),
        Dtype::I32 | Dtype::I64 => Err(GpuError("f32 values go to f32 or bf16 tensors".into())),
    }
}

pub struct Tensor {
    slice: CudaSlice<u8>,
    addr: u64,
    pub dtype: Dtype,
    /// Elements.
    pub len: usize,
    memory: Arc<MemoryCounter>,
}

impl Drop for Tensor {
    fn drop(&mut self) {
        self.memory.sub(self.slice.len());
    }
}

impl Tensor {
    /// `len` zeroed elements.
    pub fn zeros(gpu: &Gpu, dtype: Dtype, len: usize) -> GpuResult<Tensor> {
        // Never a zero-byte allocation: a tensor always has an address.
        let bytes = (len * dtype.size()).max(4);
        let slice = gpu.stream.alloc_zeros::<u8>(bytes).map_err(|e| {
            GpuError(format!(
                "cannot allocate {:.1} MiB on the GPU: {e}",
                bytes as f64 / (1 << 20) as f64
            ))
        })?;
        let (addr, _) = slice.device_ptr(&gpu.stream);
        gpu.memory.add(bytes);
        Ok(Tensor {
            slice,
            addr,
            dtype,
            len,
            memory: gpu.memory.clone(),
        })
    }

    /// Upload f32 values as `dtype` (rounded to bf16 when asked).
    pub fn from_f32(gpu: &Gpu, values: &[f32], dtype: Dtype) -> GpuResult<Tensor> {
        Self::from_bytes(gpu, &float_bytes(values, dtype)?, dtype, values.len())
    }

    pub fn from_i32(gpu: &Gpu, values: &[i32]) -> GpuResult<Tensor> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::from_bytes(gpu, &bytes, Dtype::I32, values.len())
    }

    pub fn from_i64(gpu: &Gpu, values: &[i64]) -> GpuResult<Tensor> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::from_bytes(gpu, &bytes, Dtype::I64, values.len())
    }

    fn from_bytes(gpu: &Gpu, bytes: &[u8], dtype: Dtype, len: usize) -> GpuResult<Tensor> {
        let mut tensor = Tensor::zeros(gpu, dtype, len)?;
        if !bytes.is_empty() {
            let mut view = tensor.slice.slice_mut(..bytes.len());
            gpu.stream.memcpy_htod(bytes, &mut view)?;
        }
        Ok(tensor)
    }

    /// Overwrite the first `values.len()` elements from the host (f32 or bf16 tensors).
    pub fn write_f32(&mut self, gpu: &Gpu, values: &[f32]) -> GpuResult<()> {
        let bytes = float_bytes(values, self.dtype)?;
        self.write_bytes(gpu, &bytes, values.len())
    }

    fn write_bytes(&mut self, gpu: &Gpu, bytes: &[u8], len: usize) -> GpuResult<()> {
        if len > self.len {
            return Err(GpuError(format!(
                "writing {len} elements into a tensor of {}",
                self.len
            )));
        }
        if !bytes.is_empty() {
            let mut view = self.slice.slice_mut(..bytes.len());
            gpu.stream.memcpy_htod(bytes, &mut view)?;
        }
        Ok(())
    }

    /// Download as f32 (bf16 widened; i32 converted).
    pub fn to_f32(&self, gpu: &Gpu) -> GpuResult<Vec<f32>> {
        let bytes = self.to_bytes(gpu)?;
        Ok(match self.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect(),
            Dtype::Bf16 => bytes
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::I32 => bytes
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as f32)
                .collect(),
            Dtype::I64 => bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                .collect(),
        })
    }

    pub fn to_i32(&self, gpu: &Gpu) -> GpuResult<Vec<i32>> {
        if self.dtype != Dtype::I32 {
            return Err(GpuError("to_i32 on a float tensor".into()));
        }
        Ok(self
            .to_bytes(gpu)?
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }

    fn to_bytes(&self, gpu: &Gpu) -> GpuResult<Vec<u8>> {
        let mut bytes = vec![0u8; self.len * self.dtype.size()];
        if !bytes.is_empty() {
            let view = self.slice.slice(..bytes.len());
            gpu.stream.memcpy_dtoh(&view, &mut bytes)?;
        }
        gpu.synchronize()?;
        Ok(bytes)
    }

    /// Set every element to zero.
    pub fn zero(&mut self, gpu: &Gpu) -> GpuResult<()> {
        Ok(gpu.stream.memset_zeros(&mut self.slice)?)
    }

    /// The allocation itself, for library calls that take cudarc's typed views.
    pub(crate) fn slice_mut(&mut self) -> &mut CudaSlice<u8> {
        &mut self.slice
    }

    /// The device address of element 0.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// The device address of element `index` (may equal `len`, the end).
    pub fn at(&self, index: usize) -> u64 {
        assert!(
            index <= self.len,
            "element {index} of a {}-element tensor",
            self.len
        );
        self.addr + (index * self.dtype.size()) as u64
    }
}
