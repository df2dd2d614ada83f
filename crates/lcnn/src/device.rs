//! Where tensors live: `cpu` (Burn's Flex backend, pure Rust, the default), `cuda[:N]` (feature
//! `cuda`) or `wgpu` (feature `wgpu`: Vulkan, Metal or DirectX through wgpu). Burn 0.22 picks
//! the backend from the device at run time, so the model and training code are the same for
//! all of them.

use burn::tensor::Device;

/// Parses a `--device` value.
pub fn parse_device(s: &str) -> Result<Device, String> {
    let s = s.trim().to_ascii_lowercase();
    let (kind, index) = match s.split_once(':') {
        Some((k, i)) => {
            let i = i
                .parse::<usize>()
                .map_err(|_| format!("device `{s}`: the index after `:` must be a number"))?;
            (k.to_string(), i)
        }
        None => (s.clone(), 0),
    };
    match kind.as_str() {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(Device::cuda(index)),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(index))),
        "cuda" | "wgpu" => Err(format!(
            "device `{s}` needs lcnn built with the `{kind}` feature (cargo build --release --features {kind}); index {index}"
        )),
        _ => Err(format!("unknown device `{s}`: expected cpu, cuda[:N] or wgpu[:N]")),
    }
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
