//! The model zoo: LCNN, LightCNN-9, All-CNN-C, the depthwise-separable CNN and VGG16, each a
//! [`ModelSpec`] (named layers, shapes and parameter counts known without building tensors)
//! turned into a Burn [`Network`].

pub mod allconv;
pub mod head;
pub mod lcnn;
pub mod lightcnn9;
pub mod network;
pub mod separable;
pub mod spec;
pub mod summary;
pub mod vgg16;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use network::{Layer, Network};
pub use spec::{LayerKind, LayerSpec, ModelSpec, ParamCount, Shape};
pub use summary::summary;

use crate::layers::Activation;

/// What can go wrong when describing or building a model.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    /// The model name is not in the zoo.
    #[error(
        "unknown model `{0}`: expected one of {expected}",
        expected = crate::util::names(&ModelName::ALL, ModelName::as_str)
    )]
    UnknownModel(String),
    /// An input shape that does not parse.
    #[error(
        "invalid input shape `{0}`: expected HxWxC with three positive integers, e.g. 28x28x1"
    )]
    BadInputShape(String),
    /// The input is too small for a layer's window.
    #[error("input too small for model `{model}`: layer `{layer}` gets {input}, but {reason}")]
    InputTooSmall {
        /// Model name.
        model: String,
        /// The layer that cannot take its input.
        layer: String,
        /// Its input, Keras notation.
        input: String,
        /// Why.
        reason: String,
    },
    /// Any other inconsistency between a layer and its input.
    #[error("model `{model}`, layer `{layer}`: {reason}")]
    Invalid {
        /// Model name.
        model: String,
        /// Layer name.
        layer: String,
        /// What is wrong.
        reason: String,
    },
    /// A layer name that the model does not have.
    #[error("model `{model}` has no layer `{layer}`; its layers are: {known}")]
    UnknownLayer {
        /// Model name.
        model: String,
        /// The name asked for.
        layer: String,
        /// The names it has.
        known: String,
    },
    /// A bad option value.
    #[error("{0}")]
    BadOption(String),
}

/// The final activation for `classes` outputs: one sigmoid unit for binary, softmax otherwise.
pub fn head_activation(classes: usize) -> Activation {
    if classes == 1 {
        Activation::Sigmoid
    } else {
        Activation::Softmax
    }
}

/// The models of the zoo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelName {
    /// The seeds' 9-conv LCNN with MFM.
    Lcnn,
    /// LightCNN-9 of the face paper.
    #[serde(rename = "lightcnn9")]
    LightCnn9,
    /// All-CNN-C.
    #[serde(rename = "allconv")]
    AllConv,
    /// Seed 003's depthwise-separable CNN.
    Separable,
    /// VGG16 with Keras names.
    Vgg16,
    /// A model imported from a Keras file (`lcnn import keras`): its layers are in
    /// [`ModelConfig::layers`]. Not a `--model` choice.
    Keras,
}

impl ModelName {
    /// All names, for help texts.
    pub const ALL: [ModelName; 5] = [
        ModelName::Lcnn,
        ModelName::LightCnn9,
        ModelName::AllConv,
        ModelName::Separable,
        ModelName::Vgg16,
    ];

    /// The CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelName::Lcnn => "lcnn",
            ModelName::LightCnn9 => "lightcnn9",
            ModelName::AllConv => "allconv",
            ModelName::Separable => "separable",
            ModelName::Vgg16 => "vgg16",
            ModelName::Keras => "keras",
        }
    }

    /// The input the model was designed for (height, width, channels).
    pub fn default_input(self) -> Shape {
        let (h, w, c) = match self {
            ModelName::Lcnn => (28, 28, 1),
            ModelName::LightCnn9 => (128, 128, 1),
            ModelName::AllConv => (32, 32, 3),
            ModelName::Separable => (64, 64, 3),
            ModelName::Vgg16 => (224, 224, 3),
            // An imported model carries its own input; CIFAR-10's size is only a placeholder.
            ModelName::Keras => (32, 32, 3),
        };
        Shape::Image { h, w, c }
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ModelName {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::util::find_by_name(&ModelName::ALL, ModelName::as_str, s)
            .ok_or_else(|| ModelError::UnknownModel(s.to_string()))
    }
}

/// Parses `HxWxC` (e.g. `28x28x1`) into an image shape.
pub fn parse_input_shape(s: &str) -> Result<Shape, ModelError> {
    let dims: Vec<usize> = s
        .split(['x', 'X'])
        .map(|d| d.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| ModelError::BadInputShape(s.to_string()))?;
    match dims[..] {
        [h, w, c] if h > 0 && w > 0 && c > 0 => Ok(Shape::Image { h, w, c }),
        _ => Err(ModelError::BadInputShape(s.to_string())),
    }
}

/// Sets every `Dropout` layer's rate (`--dropout`): an error when the rate is out of `[0, 1)`
/// or the model has no dropout layer.
fn set_dropout(spec: &mut ModelSpec, rate: f64) -> Result<(), ModelError> {
    if !(0.0..1.0).contains(&rate) {
        return Err(ModelError::BadOption(format!(
            "--dropout {rate}: expected a rate in [0, 1)"
        )));
    }
    let mut found = false;
    for layer in &mut spec.layers {
        if let spec::LayerKind::Dropout { rate: r } = &mut layer.kind {
            *r = rate;
            found = true;
        }
    }
    if found {
        Ok(())
    } else {
        Err(ModelError::BadOption(format!(
            "--dropout {rate}: model `{}` has no Dropout layer",
            spec.name
        )))
    }
}

/// Everything that selects a model of the zoo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Which model.
    pub name: ModelName,
    /// Input shape.
    pub input: Shape,
    /// Output units: the class count, or 1 for a binary sigmoid output.
    pub classes: usize,
    /// Keep the classifier (Keras `include_top`); without it, the zoo model's feature extractor.
    pub include_top: bool,
    /// The layers of a model that is not from the zoo (`name` is then [`ModelName::Keras`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<LayerSpec>>,
    /// Every `Dropout` layer's rate instead of the zoo model's own (`--dropout`; `None`: the
    /// model's, e.g. LCNN's 0.75).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout: Option<f64>,
}

impl ModelConfig {
    /// A model with its top.
    pub fn new(name: ModelName, input: Shape, classes: usize) -> Self {
        ModelConfig {
            name,
            input,
            classes,
            include_top: true,
            layers: None,
            dropout: None,
        }
    }

    /// An imported model: its own layers, its input and its output units.
    pub fn imported(input: Shape, classes: usize, layers: Vec<LayerSpec>) -> Self {
        ModelConfig {
            name: ModelName::Keras,
            input,
            classes,
            include_top: true,
            layers: Some(layers),
            dropout: None,
        }
    }

    /// The model's spec, checked (shapes inferred through every layer).
    pub fn spec(&self) -> Result<ModelSpec, ModelError> {
        if self.classes == 0 {
            return Err(ModelError::BadOption("--classes must be at least 1".into()));
        }
        if let Some(layers) = &self.layers {
            let spec = ModelSpec {
                name: self.name.to_string(),
                input: self.input,
                layers: layers.clone(),
            };
            spec.resolve()?;
            return Ok(spec);
        }
        let mut spec = match self.name {
            ModelName::Lcnn => lcnn::spec(self.input, self.classes),
            ModelName::LightCnn9 => lightcnn9::spec(self.input, self.classes, self.include_top),
            ModelName::AllConv => allconv::spec(self.input, self.classes),
            ModelName::Separable => separable::spec(self.input, self.classes),
            ModelName::Vgg16 => vgg16::spec(self.input, self.classes, self.include_top),
            ModelName::Keras => {
                return Err(ModelError::BadOption(
                    "a `keras` model needs its layers (made by `lcnn import keras`)".into(),
                ))
            }
        };
        // Without the top (Keras `include_top=False`): the feature extractor, cut where the
        // classifier starts (LightCNN-9 and VGG16 build theirs without it).
        let top = match self.name {
            ModelName::Lcnn => Some("flatten"),
            ModelName::AllConv => Some("conv9"),
            ModelName::Separable => Some("global_average_pooling"),
            _ => None,
        };
        if let (false, Some(top)) = (self.include_top, top) {
            let at = spec.index_of(top)?;
            spec.layers.truncate(at);
        }
        if let Some(rate) = self.dropout {
            set_dropout(&mut spec, rate)?;
        }
        spec.resolve()?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(name: ModelName, input: &str, classes: usize, top: bool) -> usize {
        let cfg = ModelConfig {
            name,
            input: parse_input_shape(input).unwrap(),
            classes,
            include_top: top,
            layers: None,
            dropout: None,
        };
        cfg.spec().unwrap().param_count().unwrap().total()
    }

    #[test]
    fn dropout_sets_every_dropout_rate_and_refuses_models_without_one() {
        let input = parse_input_shape("32x32x3").unwrap();
        let rates = |cfg: &ModelConfig| -> Vec<f64> {
            cfg.spec()
                .unwrap()
                .layers
                .iter()
                .filter_map(|l| match l.kind {
                    LayerKind::Dropout { rate } => Some(rate),
                    _ => None,
                })
                .collect()
        };
        let seeds = ModelConfig::new(ModelName::Lcnn, input, 10);
        assert_eq!(rates(&seeds), vec![lcnn::DROPOUT]);
        let lower = ModelConfig {
            dropout: Some(0.3),
            ..seeds.clone()
        };
        assert_eq!(rates(&lower), vec![0.3]);
        // The weights are the same: only the rate changes.
        assert_eq!(
            lower.spec().unwrap().param_count().unwrap().total(),
            seeds.spec().unwrap().param_count().unwrap().total()
        );
        let allconv = ModelConfig {
            dropout: Some(0.2),
            ..ModelConfig::new(ModelName::AllConv, input, 10)
        };
        assert!(rates(&allconv).iter().all(|&r| r == 0.2));
        let bad = ModelConfig {
            dropout: Some(1.0),
            ..seeds.clone()
        };
        assert!(bad.spec().unwrap_err().to_string().contains("[0, 1)"));
        let none = ModelConfig {
            dropout: Some(0.5),
            include_top: false,
            ..seeds
        };
        assert!(none
            .spec()
            .unwrap_err()
            .to_string()
            .contains("no Dropout layer"));
    }

    #[test]
    fn totals_match_keras() {
        assert_eq!(total(ModelName::Lcnn, "28x28x1", 10, true), 164_938);
        assert_eq!(total(ModelName::Lcnn, "32x32x3", 10, true), 183_498);
        assert_eq!(total(ModelName::AllConv, "32x32x3", 10, true), 1_369_738);
        assert_eq!(total(ModelName::Separable, "64x64x3", 10, true), 38_309);
        assert_eq!(
            total(ModelName::Vgg16, "150x150x3", 1000, false),
            14_714_688
        );
        assert_eq!(
            total(ModelName::Vgg16, "224x224x3", 1000, true),
            138_357_544
        );
        assert_eq!(
            total(ModelName::LightCnn9, "128x128x1", 10, false),
            5_480_864
        );
    }

    #[test]
    fn lcnn_batchnorm_statistics_are_non_trainable() {
        let spec = ModelConfig::new(ModelName::Lcnn, parse_input_shape("28x28x1").unwrap(), 10)
            .spec()
            .unwrap();
        let p = spec.param_count().unwrap();
        // BN over 32+48+48+64+32+32 channels and 80 features, 2 moving statistics each.
        assert_eq!(p.non_trainable, 2 * (32 + 48 + 48 + 64 + 32 + 32 + 80));
    }

    #[test]
    fn bad_shapes_and_names_are_errors() {
        assert_eq!(
            parse_input_shape("28x28"),
            Err(ModelError::BadInputShape("28x28".into()))
        );
        assert!(parse_input_shape("0x28x1").is_err());
        assert!(parse_input_shape("axbxc").is_err());
        assert!(matches!(
            "resnet".parse::<ModelName>(),
            Err(ModelError::UnknownModel(_))
        ));
        // 8x8 is too small for LCNN's four pools.
        let cfg = ModelConfig::new(ModelName::Lcnn, parse_input_shape("8x8x1").unwrap(), 10);
        assert!(matches!(cfg.spec(), Err(ModelError::InputTooSmall { .. })));
        let cfg = ModelConfig::new(ModelName::Keras, ModelName::Lcnn.default_input(), 10);
        assert!(matches!(cfg.spec(), Err(ModelError::BadOption(_))));
    }

    /// `include_top: false` keeps the feature extractor: a prefix of the full model that ends
    /// where its classifier starts.
    #[test]
    fn every_zoo_model_has_a_base_without_its_top() {
        for (name, last) in [
            (ModelName::Lcnn, "pool4"),
            (ModelName::AllConv, "conv8"),
            (ModelName::Separable, "sepconv5"),
            (ModelName::Vgg16, "block5_pool"),
            (ModelName::LightCnn9, "mfm_fc1"),
        ] {
            let full = ModelConfig::new(name, name.default_input(), 10)
                .spec()
                .unwrap();
            let base = ModelConfig {
                include_top: false,
                ..ModelConfig::new(name, name.default_input(), 10)
            }
            .spec()
            .unwrap();
            assert_eq!(base.layers.last().unwrap().name, last, "{name}");
            assert!(base.layers.len() < full.layers.len(), "{name}");
            for (a, b) in base.layers.iter().zip(&full.layers) {
                assert_eq!(a.name, b.name, "{name}");
            }
        }
    }

    #[test]
    fn layer_names_are_unique() {
        for name in ModelName::ALL {
            let spec = ModelConfig::new(name, name.default_input(), 10)
                .spec()
                .unwrap();
            let mut names: Vec<_> = spec.layers.iter().map(|l| l.name.clone()).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), spec.layers.len(), "{name}");
        }
    }
}
