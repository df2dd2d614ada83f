//! Model specifications: a named, ordered list of layers, the form every model of the zoo takes
//! (as a Keras `Sequential`). A spec is checked and its shapes and parameter counts inferred
//! without building any tensor, which is what `lcnn summary` prints and what the network builder
//! and the weight importers rely on.

use serde::{Deserialize, Serialize};

use crate::layers::{Activation, Padding};

use super::ModelError;

/// One layer of a spec, with Keras' arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LayerKind {
    /// Keras `Conv2D`, with its activation.
    Conv2d {
        /// Output channels.
        filters: usize,
        /// Square kernel side.
        kernel: usize,
        /// Stride.
        strides: usize,
        /// Padding mode.
        padding: Padding,
        /// Activation applied after the convolution.
        activation: Activation,
    },
    /// Keras `SeparableConv2D` (depth multiplier 1), with its activation.
    SeparableConv2d {
        /// Output channels.
        filters: usize,
        /// Square kernel side.
        kernel: usize,
        /// Padding mode.
        padding: Padding,
        /// Activation applied after the pointwise convolution.
        activation: Activation,
    },
    /// Max-Feature-Map over channels (halves them).
    MaxFeatureMap,
    /// Keras `MaxPooling2D`.
    MaxPool2d {
        /// Square window.
        pool: usize,
        /// Stride.
        strides: usize,
        /// Padding mode.
        padding: Padding,
    },
    /// Keras `AveragePooling2D` (a `same` window averages only the pixels inside the image, as
    /// TensorFlow does).
    AvgPool2d {
        /// Square window.
        pool: usize,
        /// Stride.
        strides: usize,
        /// Padding mode.
        padding: Padding,
    },
    /// Keras `BatchNormalization` over the channel axis (center and scale).
    BatchNorm {
        /// Added to the variance (Keras default 1e-3).
        #[serde(default = "default_bn_epsilon")]
        epsilon: f64,
        /// Weight of the old moving statistics (Keras default 0.99).
        #[serde(default = "default_bn_momentum")]
        momentum: f64,
    },
    /// Keras `Dropout`.
    Dropout {
        /// Fraction of units dropped while training.
        rate: f64,
    },
    /// Keras `Flatten` (channel-first order: C, H, W).
    Flatten,
    /// Keras `GlobalAveragePooling2D`.
    GlobalAvgPool,
    /// Keras `Dense`, with its activation.
    Dense {
        /// Output features.
        units: usize,
        /// Activation.
        activation: Activation,
    },
    /// Keras `Activation`.
    Activation {
        /// The activation.
        activation: Activation,
    },
}

/// Keras' `BatchNormalization(epsilon=1e-3)`.
pub const BN_EPSILON: f64 = 1e-3;
/// Keras' `BatchNormalization(momentum=0.99)`.
pub const BN_MOMENTUM: f64 = 0.99;

fn default_bn_epsilon() -> f64 {
    BN_EPSILON
}

fn default_bn_momentum() -> f64 {
    BN_MOMENTUM
}

impl LayerKind {
    /// Keras' class name, as `model.summary()` prints it.
    pub fn keras_type(&self) -> &'static str {
        match self {
            LayerKind::Conv2d { .. } => "Conv2D",
            LayerKind::SeparableConv2d { .. } => "SeparableConv2D",
            LayerKind::MaxFeatureMap => "MaxFeatureMap",
            LayerKind::MaxPool2d { .. } => "MaxPooling2D",
            LayerKind::AvgPool2d { .. } => "AveragePooling2D",
            LayerKind::BatchNorm { .. } => "BatchNormalization",
            LayerKind::Dropout { .. } => "Dropout",
            LayerKind::Flatten => "Flatten",
            LayerKind::GlobalAvgPool => "GlobalAveragePooling2D",
            LayerKind::Dense { .. } => "Dense",
            LayerKind::Activation { .. } => "Activation",
        }
    }

    /// Whether the layer holds trainable parameters (and so can be frozen or imported).
    pub fn has_weights(&self) -> bool {
        matches!(
            self,
            LayerKind::Conv2d { .. }
                | LayerKind::SeparableConv2d { .. }
                | LayerKind::BatchNorm { .. }
                | LayerKind::Dense { .. }
        )
    }
}

/// A named layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSpec {
    /// Stable name, also the prefix of the layer's weight keys (`block1_conv1`).
    pub name: String,
    /// What the layer is.
    #[serde(flatten)]
    pub kind: LayerKind,
}

/// The shape of the activations after a layer, without the batch axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Shape {
    /// Height, width, channels.
    Image {
        /// Height.
        h: usize,
        /// Width.
        w: usize,
        /// Channels.
        c: usize,
    },
    /// Features.
    Flat(usize),
}

/// `28x28x1` (height x width x channels), or `10 features`.
impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shape::Image { h, w, c } => write!(f, "{h}x{w}x{c}"),
            Shape::Flat(n) => write!(f, "{n} features"),
        }
    }
}

impl Shape {
    /// Keras' notation: `(None, 14, 14, 32)` (channels last, as Keras prints it).
    pub fn keras(&self) -> String {
        match self {
            Shape::Image { h, w, c } => format!("(None, {h}, {w}, {c})"),
            Shape::Flat(n) => format!("(None, {n})"),
        }
    }

    /// Number of values per sample.
    pub fn numel(&self) -> usize {
        match self {
            Shape::Image { h, w, c } => h * w * c,
            Shape::Flat(n) => *n,
        }
    }
}

/// Parameter counts of one layer, split as Keras does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParamCount {
    /// Updated by the optimizer.
    pub trainable: usize,
    /// BatchNorm moving statistics (and, later, frozen layers).
    pub non_trainable: usize,
}

impl ParamCount {
    /// Trainable plus non-trainable.
    pub fn total(&self) -> usize {
        self.trainable + self.non_trainable
    }
}

/// A layer with its inferred input and output shapes and its parameter count.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedLayer {
    /// The layer.
    pub spec: LayerSpec,
    /// Shape it receives.
    pub input: Shape,
    /// Shape it produces.
    pub output: Shape,
    /// Its parameters.
    pub params: ParamCount,
}

/// A whole model: its name, input shape and layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Model name (`lcnn`, `vgg16`, ...).
    pub name: String,
    /// Input shape (height, width, channels).
    pub input: Shape,
    /// Layers in order.
    pub layers: Vec<LayerSpec>,
}

impl ModelSpec {
    /// Infers every layer's shapes and parameters, failing on the first layer that cannot take
    /// its input (a window larger than the image, an odd channel count for MFM, ...).
    pub fn resolve(&self) -> Result<Vec<ResolvedLayer>, ModelError> {
        let mut shape = self.input;
        let mut out = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let (output, params) = infer(&self.name, layer, shape)?;
            out.push(ResolvedLayer {
                spec: layer.clone(),
                input: shape,
                output,
                params,
            });
            shape = output;
        }
        Ok(out)
    }

    /// Total parameter counts.
    pub fn param_count(&self) -> Result<ParamCount, ModelError> {
        Ok(self
            .resolve()?
            .iter()
            .fold(ParamCount::default(), |acc, l| ParamCount {
                trainable: acc.trainable + l.params.trainable,
                non_trainable: acc.non_trainable + l.params.non_trainable,
            }))
    }

    /// The output shape of the whole model.
    pub fn output_shape(&self) -> Result<Shape, ModelError> {
        Ok(self
            .resolve()?
            .last()
            .map(|l| l.output)
            .unwrap_or(self.input))
    }

    /// Index of the layer called `name`.
    pub fn index_of(&self, name: &str) -> Result<usize, ModelError> {
        self.layers
            .iter()
            .position(|l| l.name == name)
            .ok_or_else(|| ModelError::UnknownLayer {
                model: self.name.clone(),
                layer: name.to_string(),
                known: self
                    .layers
                    .iter()
                    .map(|l| l.name.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

fn infer(model: &str, layer: &LayerSpec, input: Shape) -> Result<(Shape, ParamCount), ModelError> {
    let too_small = |what: String| ModelError::InputTooSmall {
        model: model.to_string(),
        layer: layer.name.clone(),
        input: input.keras(),
        reason: what,
    };
    let image = || match input {
        Shape::Image { h, w, c } => Ok((h, w, c)),
        Shape::Flat(_) => Err(ModelError::Invalid {
            model: model.to_string(),
            layer: layer.name.clone(),
            reason: format!("expects an image input, got {}", input.keras()),
        }),
    };
    let window = |h: usize, w: usize, k: usize, s: usize, p: Padding| match (
        p.output_len(h, k, s),
        p.output_len(w, k, s),
    ) {
        (Some(oh), Some(ow)) if oh > 0 && ow > 0 => Ok((oh, ow)),
        _ => Err(too_small(format!(
            "a {k}x{k} window does not fit a {h}x{w} input"
        ))),
    };
    let trainable = |n: usize| ParamCount {
        trainable: n,
        non_trainable: 0,
    };
    Ok(match &layer.kind {
        LayerKind::Conv2d {
            filters,
            kernel,
            strides,
            padding,
            ..
        } => {
            let (h, w, c) = image()?;
            let (oh, ow) = window(h, w, *kernel, *strides, *padding)?;
            let params = filters * c * kernel * kernel + filters;
            (
                Shape::Image {
                    h: oh,
                    w: ow,
                    c: *filters,
                },
                trainable(params),
            )
        }
        LayerKind::SeparableConv2d {
            filters,
            kernel,
            padding,
            ..
        } => {
            let (h, w, c) = image()?;
            let (oh, ow) = window(h, w, *kernel, 1, *padding)?;
            let params = c * kernel * kernel + c * filters + filters;
            (
                Shape::Image {
                    h: oh,
                    w: ow,
                    c: *filters,
                },
                trainable(params),
            )
        }
        LayerKind::MaxFeatureMap => {
            let odd = |n: usize| ModelError::Invalid {
                model: model.to_string(),
                layer: layer.name.clone(),
                reason: format!("Max-Feature-Map needs an even channel count, got {n}"),
            };
            match input {
                Shape::Image { h, w, c } if c.is_multiple_of(2) => {
                    (Shape::Image { h, w, c: c / 2 }, trainable(0))
                }
                Shape::Flat(n) if n.is_multiple_of(2) => (Shape::Flat(n / 2), trainable(0)),
                Shape::Image { c: n, .. } | Shape::Flat(n) => return Err(odd(n)),
            }
        }
        LayerKind::MaxPool2d {
            pool,
            strides,
            padding,
        }
        | LayerKind::AvgPool2d {
            pool,
            strides,
            padding,
        } => {
            let (h, w, c) = image()?;
            let (oh, ow) = window(h, w, *pool, *strides, *padding)?;
            (Shape::Image { h: oh, w: ow, c }, trainable(0))
        }
        LayerKind::BatchNorm { .. } => {
            let c = match input {
                Shape::Image { c, .. } => c,
                Shape::Flat(n) => n,
            };
            (
                input,
                ParamCount {
                    trainable: 2 * c,
                    non_trainable: 2 * c,
                },
            )
        }
        LayerKind::Dropout { .. } | LayerKind::Activation { .. } => (input, trainable(0)),
        LayerKind::Flatten => (Shape::Flat(input.numel()), trainable(0)),
        LayerKind::GlobalAvgPool => {
            let (_, _, c) = image()?;
            (Shape::Flat(c), trainable(0))
        }
        LayerKind::Dense { units, .. } => {
            let n = match input {
                Shape::Flat(n) => n,
                Shape::Image { .. } => {
                    return Err(ModelError::Invalid {
                        model: model.to_string(),
                        layer: layer.name.clone(),
                        reason: format!("Dense expects a flat input, got {}", input.keras()),
                    })
                }
            };
            (Shape::Flat(*units), trainable(n * units + units))
        }
    })
}

/// Small constructors that keep the model files readable.
pub mod build {
    use super::*;

    /// A layer.
    pub fn layer(name: impl Into<String>, kind: LayerKind) -> LayerSpec {
        LayerSpec {
            name: name.into(),
            kind,
        }
    }

    /// `Conv2D(filters, k, strides=1, padding, activation)`.
    pub fn conv(
        name: &str,
        filters: usize,
        kernel: usize,
        padding: Padding,
        activation: Activation,
    ) -> LayerSpec {
        layer(
            name,
            LayerKind::Conv2d {
                filters,
                kernel,
                strides: 1,
                padding,
                activation,
            },
        )
    }

    /// `MaxPooling2D(2)` with the given padding.
    pub fn max_pool(name: &str, pool: usize, padding: Padding) -> LayerSpec {
        layer(
            name,
            LayerKind::MaxPool2d {
                pool,
                strides: pool,
                padding,
            },
        )
    }

    /// `Dense(units, activation)`.
    pub fn dense(name: &str, units: usize, activation: Activation) -> LayerSpec {
        layer(name, LayerKind::Dense { units, activation })
    }

    /// Max-Feature-Map.
    pub fn mfm(name: &str) -> LayerSpec {
        layer(name, LayerKind::MaxFeatureMap)
    }

    /// `BatchNormalization()`.
    pub fn bn(name: &str) -> LayerSpec {
        layer(
            name,
            LayerKind::BatchNorm {
                epsilon: BN_EPSILON,
                momentum: BN_MOMENTUM,
            },
        )
    }

    /// `Dropout(rate)`.
    pub fn dropout(name: &str, rate: f64) -> LayerSpec {
        layer(name, LayerKind::Dropout { rate })
    }

    /// `Flatten()`.
    pub fn flatten(name: &str) -> LayerSpec {
        layer(name, LayerKind::Flatten)
    }

    /// `Activation(a)`.
    pub fn activation(name: &str, activation: Activation) -> LayerSpec {
        layer(name, LayerKind::Activation { activation })
    }
}
