//! All-CNN-C, the All Convolutional Net
//! ([Springenberg et al. 2014, arXiv:1412.6806](https://arxiv.org/abs/1412.6806)) as in seed
//! 002's Keras code: max pooling replaced by 3x3 stride-2 convolutions (linear, as in the seed),
//! dense layers by 1x1 convolutions and global average pooling. 1,369,738 params on 32x32x3.

use crate::layers::{Activation, Padding};

use super::head_activation;
use super::spec::build::*;
use super::spec::{LayerKind, ModelSpec, Shape};

/// The All-CNN-C spec for `classes` outputs.
pub fn spec(input: Shape, classes: usize) -> ModelSpec {
    let (same, valid) = (Padding::Same, Padding::Valid);
    let (relu, lin) = (Activation::Relu, Activation::Linear);
    let strided = |name: &str, filters| {
        layer(
            name,
            LayerKind::Conv2d {
                filters,
                kernel: 3,
                strides: 2,
                padding: same,
                activation: lin,
            },
        )
    };
    let layers = vec![
        conv("conv1", 96, 3, same, relu),
        conv("conv2", 96, 3, same, relu),
        strided("conv3", 96),
        dropout("dropout1", 0.5),
        conv("conv4", 192, 3, same, relu),
        conv("conv5", 192, 3, same, relu),
        strided("conv6", 192),
        dropout("dropout2", 0.5),
        conv("conv7", 192, 3, same, relu),
        conv("conv8", 192, 1, valid, relu),
        conv("conv9", classes, 1, valid, lin),
        layer("global_average_pooling", LayerKind::GlobalAvgPool),
        activation("predictions", head_activation(classes)),
    ];
    ModelSpec {
        name: "allconv".into(),
        input,
        layers,
    }
}
