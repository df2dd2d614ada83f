//! LCNN: the 9-convolution Light CNN with Max-Feature-Map of the seeds (SPEC 1.1), from
//! [Wu et al., "A Light CNN for Deep Face Representation with Noisy Labels"](https://arxiv.org/abs/1511.02683)
//! as used by the STC anti-spoofing system
//! ([Lavrentyeva et al., ASVspoof 2019](https://arxiv.org/abs/1904.05576)).
//!
//! Every conv is stride 1 `same`, followed by MFM (so conv(64) outputs 32 channels); pools are
//! 2x2 stride 2 (floor). Keras totals: 164,938 params on 28x28x1 with 10 classes, 183,498 on
//! 32x32x3.

use crate::layers::{Activation, Padding};

use super::head_activation;
use super::spec::build::*;
use super::spec::{LayerSpec, ModelSpec, Shape};

/// LCNN's dropout rate before the classifier (the seeds' 0.75).
pub const DROPOUT: f64 = 0.75;

/// The LCNN spec for an `h x w x c` input and `classes` outputs (1 = one sigmoid unit).
pub fn spec(input: Shape, classes: usize) -> ModelSpec {
    let same = Padding::Same;
    let lin = Activation::Linear;
    let mut layers: Vec<LayerSpec> = Vec::new();
    // (conv name, filters, kernel, pool after MFM, BN after (pool))
    let convs: [(&str, usize, usize, bool, bool); 9] = [
        ("1", 64, 5, true, false),
        ("2a", 64, 1, false, true),
        ("2", 96, 3, true, true),
        ("3a", 96, 1, false, true),
        ("3", 128, 3, true, false),
        ("4a", 128, 1, false, true),
        ("4", 64, 3, false, true),
        ("5a", 64, 1, false, true),
        ("5", 64, 3, true, false),
    ];
    let mut pools = 0;
    for (id, filters, kernel, pool, bn_after) in convs {
        layers.push(conv(&format!("conv{id}"), filters, kernel, same, lin));
        layers.push(mfm(&format!("mfm{id}")));
        if pool {
            pools += 1;
            layers.push(max_pool(&format!("pool{pools}"), 2, Padding::Valid));
        }
        if bn_after {
            layers.push(bn(&format!("bn{id}")));
        }
    }
    layers.push(flatten("flatten"));
    layers.push(dense("fc1", 160, lin));
    layers.push(mfm("mfm_fc1"));
    layers.push(bn("bn_fc1"));
    layers.push(dropout("dropout", DROPOUT));
    layers.push(dense("fc2", classes, head_activation(classes)));
    ModelSpec {
        name: "lcnn".into(),
        input,
        layers,
    }
}
