//! Where tensors live: `cpu` (Burn's Flex backend, pure Rust, the default), `cuda[:N]` (feature
//! `cuda`) or `wgpu` (feature `wgpu`: Vulkan, Metal or DirectX through wgpu). Burn 0.22 picks
//! the backend from the device at run time, so the model and training code are the same for
//! all of them.

pub use burn::tensor::Device;
use burn::tensor::FloatDType;

/// Parses a `--dtype` value (the float type of every tensor on the device): `f32`, `f16` or
/// `bf16`.
pub fn parse_float_dtype(s: &str) -> Result<FloatDType, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "f32" | "fp32" | "float32" => Ok(FloatDType::F32),
        "f16" | "fp16" | "float16" | "half" => Ok(FloatDType::F16),
        "bf16" | "bfloat16" => Ok(FloatDType::BF16),
        other => Err(format!(
            "unknown dtype `{other}`: expected f32, f16 or bf16"
        )),
    }
}

/// Makes `dtype` the float type of every tensor later created on `device` (Burn's
/// `Device::configure`; f32 needs nothing). Must run before the first tensor on the device;
/// a device without that type is an error naming both.
pub fn set_float_dtype(device: &mut Device, dtype: FloatDType) -> Result<(), String> {
    if dtype == FloatDType::F32 {
        return Ok(());
    }
    device
        .configure(dtype)
        .map_err(|e| format!("--dtype {dtype:?} on {device:?}: {e}"))
}

/// Parses a `--device` value: `cpu`, `cuda[:N]` or `wgpu[:N]` (`wgpu` alone: wgpu's default
/// adapter; `wgpu:N`: the N-th discrete GPU).
pub fn parse_device(s: &str) -> Result<Device, String> {
    let s = s.trim().to_ascii_lowercase();
    let (kind, index) = match s.split_once(':') {
        Some((k, i)) => {
            let i = i
                .parse::<usize>()
                .map_err(|_| format!("device `{s}`: the index after `:` must be a number"))?;
            (k, Some(i))
        }
        None => (s.as_str(), None),
    };
    #[cfg(not(any(feature = "cuda", feature = "wgpu")))]
    let _ = index;
    match kind {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(Device::cuda(index.unwrap_or(0))),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(match index {
            Some(i) => burn::tensor::DeviceKind::DiscreteGpu(i),
            None => burn::tensor::DeviceKind::DefaultDevice,
        })),
        #[cfg(not(feature = "cuda"))]
        "cuda" => Err(needs_feature(&s, "cuda")),
        #[cfg(not(feature = "wgpu"))]
        "wgpu" => Err(needs_feature(&s, "wgpu")),
        _ => Err(format!(
            "unknown device `{s}`: expected cpu, cuda[:N] or wgpu[:N]"
        )),
    }
}

#[allow(dead_code)] // unused when both GPU features are on
fn needs_feature(device: &str, feature: &str) -> String {
    format!(
        "device `{device}` needs lcnn built with the `{feature}` feature \
         (cargo build --release -p lcnn-cli --features {feature})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_parses_and_unknown_is_an_error() {
        assert!(parse_device("cpu").is_ok());
        assert!(parse_device("tpu").unwrap_err().contains("unknown device"));
        assert!(parse_device("cuda:x").unwrap_err().contains("index"));
        #[cfg(not(feature = "cuda"))]
        assert!(parse_device("cuda:0").unwrap_err().contains("feature"));
    }

    #[test]
    fn dtypes_parse() {
        assert_eq!(parse_float_dtype("F16"), Ok(FloatDType::F16));
        assert_eq!(parse_float_dtype("bf16"), Ok(FloatDType::BF16));
        assert!(parse_float_dtype("f8")
            .unwrap_err()
            .contains("expected f32, f16 or bf16"));
    }
}
