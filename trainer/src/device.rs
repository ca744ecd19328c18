//! Where training steps run (`--device`): the CPU reference or GPU 0, and on the GPU which
//! attention method. Both engines and the GPU model read it from here.

use crate::error::TrainError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// GPU 0, attention by the given method.
    Cuda(Attention),
}

/// What a binary built without the `cuda` feature says when asked for a GPU.
#[cfg(not(feature = "cuda"))]
pub(crate) const NO_CUDA_FEATURE: &str = "this binary was built without the `cuda` feature: \
     rebuild with `cargo build --release --features cuda` (after scripts/cuda-toolchain.sh)";

impl Device {
    /// Fails where this device cannot run here — no CUDA driver, no GPU, a binary built
    /// without the `cuda` feature — before anything costly (a 1B model's initial weights take
    /// tens of seconds on a small host) is built for it.
    pub fn check_available(self) -> Result<(), TrainError> {
        match self {
            Device::Cpu => Ok(()),
            #[cfg(feature = "cuda")]
            Device::Cuda(_) => {
                steel_kernels::cuda::Gpu::open(0)?;
                Ok(())
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => Err(TrainError::Device(NO_CUDA_FEATURE.into())),
        }
    }
}

/// How attention runs on the GPU: the flash kernels, or cuBLAS GEMMs around a fused causal
/// softmax (keeps `[B·heads, T, T]` probabilities).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attention {
    Flash,
    Cublas,
}

/// In a TOML file the device is the same string as on the command line.
impl<'de> serde::Deserialize<'de> for Device {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <String as serde::Deserialize>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Device {
    type Err = TrainError;

    /// `cpu`, `cuda` (flash attention) or `cuda:cublas`.
    fn from_str(s: &str) -> Result<Self, TrainError> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" | "cuda:flash" => Ok(Device::Cuda(Attention::Flash)),
            "cuda:cublas" => Ok(Device::Cuda(Attention::Cublas)),
            other => Err(TrainError::Device(format!(
                "unknown device `{other}`; expected cpu, cuda (flash attention) or cuda:cublas"
            ))),
        }
    }
}
