//! Weights in and out of a [`Network`](crate::models::Network) under stable names:
//! `{layer}.{param}` (`conv1.weight`, `bn2a.running_var`, `block5_conv1.bias`), in Burn's
//! layouts (conv kernels `[out, in, kh, kw]`, dense kernels `[in, out]`).
//!
//! - [`named`]: the name <-> parameter mapping every format goes through.
//! - [`safetensors`]: lcnn's own checkpoint format, written atomically.
//! - [`keras`]: Keras `.h5` whole-model files in (feature `hdf5`).

#[cfg(feature = "hdf5")]
pub mod keras;
pub mod named;
pub mod pytorch;
pub mod safetensors;

pub use named::{
    export, import, import_present, l2_penalty, scale_trainable, unscale_gradients, NamedTensor,
};

use std::path::PathBuf;

/// What can go wrong reading or writing weights.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// A tensor the model needs is not in the file.
    #[error("{file}: no tensor `{name}` (expected shape {expected:?})")]
    Missing {
        /// The file read.
        file: PathBuf,
        /// The key.
        name: String,
        /// The shape the model needs.
        expected: Vec<usize>,
    },
    /// A tensor whose shape differs from the model's.
    #[error("{file}: tensor `{name}` has shape {found:?}, the model expects {expected:?}")]
    Shape {
        /// The file read.
        file: PathBuf,
        /// The key.
        name: String,
        /// Shape in the file.
        found: Vec<usize>,
        /// Shape of the model.
        expected: Vec<usize>,
    },
    /// Tensors in the file that the model has no place for.
    #[error("{file}: tensors the model does not have: {names}")]
    Unexpected {
        /// The file read.
        file: PathBuf,
        /// Their keys.
        names: String,
    },
    /// A file that is not in the expected format.
    #[error("{file}: {reason}")]
    Format {
        /// The file read.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An I/O failure.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// How a stored tensor's floats are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FloatBytes {
    F32,
    F64,
    F16,
    BF16,
}

/// Little-endian float bytes (safetensors; PyTorch's on every target lcnn builds for) as f32.
pub(crate) fn decode_floats(raw: &[u8], kind: FloatBytes) -> Vec<f32> {
    match kind {
        FloatBytes::F32 => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        FloatBytes::F64 => raw
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        FloatBytes::F16 => raw
            .chunks_exact(2)
            .map(|b| half_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        FloatBytes::BF16 => raw
            .chunks_exact(2)
            .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16))
            .collect(),
    }
}

fn half_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if frac == 0 => sign,
        0 => {
            // Subnormal: value = frac * 2^-24.
            let v = frac as f32 * 2f32.powi(-24);
            return if sign != 0 { -v } else { v };
        }
        0x1f => sign | 0x7f80_0000 | (frac << 13),
        e => sign | (((e - 15 + 127) as u32) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_of_every_width_decode() {
        assert_eq!(half_to_f32(0x3c00), 1.0);
        assert_eq!(half_to_f32(0xc000), -2.0);
        assert_eq!(half_to_f32(0x0000), 0.0);
        assert_eq!(half_to_f32(0x0001), 2f32.powi(-24));
        assert!(half_to_f32(0x7c00).is_infinite());
        let b = [0x80, 0x3f, 0x00, 0xc0]; // bf16 1.0, -2.0
        assert_eq!(decode_floats(&b, FloatBytes::BF16), [1.0, -2.0]);
        assert_eq!(decode_floats(&1.5f64.to_le_bytes(), FloatBytes::F64), [1.5]);
        assert_eq!(
            decode_floats(&(-3.25f32).to_le_bytes(), FloatBytes::F32),
            [-3.25]
        );
    }
}
