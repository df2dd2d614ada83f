//! lcnn: light convolutional neural networks (LCNN with Max-Feature-Map, All-CNN-C,
//! depthwise-separable CNNs, VGG16 transfer learning) on [Burn](https://burn.dev).

pub mod audio;
pub mod bench;
pub mod callbacks;
pub mod data;
pub mod device;
pub mod engine;
pub mod layers;
pub mod models;
pub mod train;
pub mod util;
pub mod weights;
