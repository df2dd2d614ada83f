//! Layers of the lcnn model zoo, with Keras names, defaults and weight layouts where Keras has
//! them.
//!
//! - [`mfm`]: Max-Feature-Map, the activation of LCNN
//!   ([Wu et al., "A Light CNN for Deep Face Representation with Noisy Labels"](https://arxiv.org/abs/1511.02683)).
//! - [`conv2d`], [`separable_conv2d`], [`dense`]: Keras' `Conv2D`, `SeparableConv2D`, `Dense`
//!   (zero biases; kernels by [`initializer`], Keras' `glorot_uniform` unless chosen).
//! - [`batch_norm`]: Keras' `BatchNormalization` (momentum 0.99, epsilon 1e-3).
//! - [`pool`]: max pooling and global average pooling.
//! - [`padding`]: Keras' `same` / `valid` padding (TensorFlow's asymmetric `same`).
//! - [`activation`]: relu, softmax, sigmoid, linear.
//! - [`precision`]: mixed precision (f16 / bf16 compute over f32 weights).
//! - [`im2col`]: a convolution as im2col and one matrix product (`--conv gemm`).
//! - [`conv_grads`]: Burn's convolution gradients attached to an output computed otherwise.
//! - [`features`]: the value that flows between layers, an image batch or a flat batch.

pub mod activation;
pub mod batch_norm;
pub mod conv2d;
pub mod conv_grads;
pub mod dense;
pub mod features;
pub mod im2col;
pub mod initializer;
pub mod mfm;
pub mod padding;
pub mod pool;
pub mod precision;
pub mod separable_conv2d;

pub use activation::Activation;
pub use batch_norm::{BatchNormalization, BatchNormalizationConfig};
pub use conv2d::{Conv2d, Conv2dConfig};
pub use dense::{Dense, DenseConfig};
pub use features::Features;
pub use initializer::KernelInitializer;
pub use mfm::{max_feature_map, MaxFeatureMap};
pub use padding::Padding;
pub use pool::{AveragePooling2d, GlobalAveragePooling2d, MaxPooling2d, MaxPooling2dConfig};
pub use separable_conv2d::{SeparableConv2d, SeparableConv2dConfig};
