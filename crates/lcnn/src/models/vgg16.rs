//! VGG16 ([Simonyan & Zisserman 2014, arXiv:1409.1556](https://arxiv.org/abs/1409.1556)) with
//! Keras' layer names (`block1_conv1` ... `block5_pool`, `flatten`, `fc1`, `fc2`,
//! `predictions`), so Keras and PyTorch weights map onto it by name. Without its top (the
//! transfer-learning base of seed 003) on 150x150x3: 14,714,688 params; with the top on
//! 224x224x3 and 1000 classes: 138,357,544.

use crate::layers::{Activation, Padding};

use super::head_activation;
use super::spec::build::*;
use super::spec::{LayerSpec, ModelSpec, Shape};

/// The VGG16 spec; `include_top` adds flatten, fc1 and fc2 (4096 relu) and `predictions`.
pub fn spec(input: Shape, classes: usize, include_top: bool) -> ModelSpec {
    let mut layers: Vec<LayerSpec> = Vec::new();
    for (block, (filters, convs)) in [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]
        .into_iter()
        .enumerate()
    {
        let b = block + 1;
        for i in 1..=convs {
            layers.push(conv(
                &format!("block{b}_conv{i}"),
                filters,
                3,
                Padding::Same,
                Activation::Relu,
            ));
        }
        layers.push(max_pool(&format!("block{b}_pool"), 2, Padding::Valid));
    }
    if include_top {
        layers.push(flatten("flatten"));
        layers.push(dense("fc1", 4096, Activation::Relu));
        layers.push(dense("fc2", 4096, Activation::Relu));
        layers.push(dense("predictions", classes, head_activation(classes)));
    }
    ModelSpec {
        name: "vgg16".into(),
        input,
        layers,
    }
}
