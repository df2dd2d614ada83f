//! Datasets: MNIST, CIFAR-10, image folders and augmentation.
//!
//! [`load`] finds a dataset ([`DatasetSpec`]: `mnist`, `cifar10`, `images:DIR`) under the data
//! directory ([`resolve_data_dir`]), downloading missing MNIST/CIFAR-10 files unless offline,
//! and returns [`Splits`] of [`Dataset`]s (u8 images, HWC). [`Dataset::split_validation`] cuts
//! the validation set as Keras does. [`BatchLoader`] turns a dataset into NCHW f32 batches for
//! one epoch, with [`Augmenter`] (Keras `ImageDataGenerator`) applied on worker threads.

pub mod augment;
pub mod cifar;
pub mod cifar10;
pub mod dataset;
pub mod device;
pub mod dir;
pub mod download;
pub mod error;
pub mod folder;
pub mod idx;
pub mod imageops;
pub mod loader;
pub mod mnist;
pub mod rng;
pub mod spec;
pub mod synthetic;

pub use augment::{AugmentConfig, Augmenter, TransformParams};
pub use dataset::{Dataset, Splits, ValidationRule};
pub use dir::{offline_from_env, resolve_data_dir};
pub use error::DataError;
pub use imageops::{ColorMode, Interpolation};
pub use loader::{epoch_order, Batch, BatchLoader, LoaderConfig};
pub use spec::{load, parse_target_size, ClassMode, DatasetSpec, LoadOptions};
