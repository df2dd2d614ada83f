//! LightCNN-9 of the face paper
//! ([Wu et al. 2015, arXiv:1511.02683](https://arxiv.org/abs/1511.02683)), as in the authors'
//! reference code (`LightCNN_9Layers`): a 5x5 conv+MFM, then four "group" blocks (1x1 conv+MFM,
//! 3x3 conv+MFM) with 2x2 pools (ceil, i.e. Keras `same`), then a 256-unit MFM feature layer
//! (fc1: 512 units + MFM) and, with the top, dropout and the classifier. On 128x128x1 without
//! its classifier it has 5,480,864 parameters.

use crate::layers::{Activation, Padding};

use super::head_activation;
use super::spec::build::*;
use super::spec::{LayerSpec, ModelSpec, Shape};

/// The LightCNN-9 spec; `include_top` adds dropout 0.5 and the `classes`-way classifier (fc2).
pub fn spec(input: Shape, classes: usize, include_top: bool) -> ModelSpec {
    let (same, lin) = (Padding::Same, Activation::Linear);
    let mut layers: Vec<LayerSpec> = vec![
        conv("conv1", 96, 5, same, lin),
        mfm("mfm1"),
        max_pool("pool1", 2, same),
    ];
    // (block id, 3x3 conv filters before MFM, pool after)
    let groups: [(&str, usize, usize, bool); 4] = [
        ("2", 96, 192, true),
        ("3", 192, 384, true),
        ("4", 384, 256, false),
        ("5", 256, 256, true),
    ];
    let mut pools = 1;
    for (id, a_filters, filters, pool) in groups {
        layers.push(conv(&format!("conv{id}a"), a_filters, 1, same, lin));
        layers.push(mfm(&format!("mfm{id}a")));
        layers.push(conv(&format!("conv{id}"), filters, 3, same, lin));
        layers.push(mfm(&format!("mfm{id}")));
        if pool {
            pools += 1;
            layers.push(max_pool(&format!("pool{pools}"), 2, same));
        }
    }
    layers.push(flatten("flatten"));
    layers.push(dense("fc1", 512, lin));
    layers.push(mfm("mfm_fc1"));
    if include_top {
        layers.push(dropout("dropout", 0.5));
        layers.push(dense("fc2", classes, head_activation(classes)));
    }
    ModelSpec {
        name: "lightcnn9".into(),
        input,
        layers,
    }
}
