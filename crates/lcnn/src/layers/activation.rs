//! Element-wise activations by Keras name.

use burn::tensor::activation::{relu, sigmoid, softmax};
use serde::{Deserialize, Serialize};

use super::Features;

/// Keras `activation` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Identity (Keras `linear` / `None`).
    #[default]
    Linear,
    /// `max(x, 0)`.
    Relu,
    /// Softmax over the last axis (channels for an image batch).
    Softmax,
    /// Logistic sigmoid.
    Sigmoid,
}

impl Activation {
    /// Applies the activation.
    ///
    /// # Shapes
    /// - input and output: `[N, C, H, W]` or `[N, C]` (softmax runs over `C`)
    pub fn forward(self, x: Features) -> Features {
        match self {
            Activation::Linear => x,
            Activation::Relu => x.map(relu, relu),
            Activation::Sigmoid => x.map(sigmoid, sigmoid),
            Activation::Softmax => x.map(|t| softmax(t, 1), |t| softmax(t, 1)),
        }
    }

    /// Keras' lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu => "relu",
            Activation::Softmax => "softmax",
            Activation::Sigmoid => "sigmoid",
        }
    }
}
