//! Where tensors live: `cpu` (Burn's Flex backend, pure Rust, the default), `cuda[:N]` (feature
//! `cuda`) or `wgpu` (feature `wgpu`: Vulkan, Metal or DirectX through wgpu). Burn 0.22 picks
//! the backend from the device at run time, so the model and training code are the same for
//! all of them.

pub use burn::tensor::Device;

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
}
