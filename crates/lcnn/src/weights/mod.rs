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
pub mod safetensors;

pub use named::{export, import, import_present, kernel_squares, scale_trainable, NamedTensor};

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
