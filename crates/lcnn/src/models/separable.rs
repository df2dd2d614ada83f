//! The depthwise-separable CNN of seed 003 (Keras `SeparableConv2D`,
//! [Chollet 2016, arXiv:1610.02357](https://arxiv.org/abs/1610.02357)): five separable 3x3
//! convolutions (`valid`, relu), two max pools, global average pooling, dense 32 relu and the
//! classifier. 38,309 params on 64x64x3 with 10 classes.

use crate::layers::{Activation, Padding};

use super::head_activation;
use super::spec::build::*;
use super::spec::{LayerKind, LayerSpec, ModelSpec, Shape};

fn sep(name: &str, filters: usize) -> LayerSpec {
    layer(
        name,
        LayerKind::SeparableConv2d {
            filters,
            kernel: 3,
            padding: Padding::Valid,
            activation: Activation::Relu,
        },
    )
}

/// The separable CNN spec for `classes` outputs.
pub fn spec(input: Shape, classes: usize) -> ModelSpec {
    let layers = vec![
        sep("sepconv1", 32),
        sep("sepconv2", 64),
        max_pool("pool1", 2, Padding::Valid),
        sep("sepconv3", 64),
        sep("sepconv4", 128),
        max_pool("pool2", 2, Padding::Valid),
        sep("sepconv5", 128),
        layer("global_average_pooling", LayerKind::GlobalAvgPool),
        dense("fc1", 32, Activation::Relu),
        dense("predictions", classes, head_activation(classes)),
    ];
    ModelSpec {
        name: "separable".into(),
        input,
        layers,
    }
}
