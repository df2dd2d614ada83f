//! A new classifier on a base (seed 003's transfer learning, as in Keras:
//! `Flatten()(base.output)`, `Dense(256, activation="relu")`, `Dropout(0.5)`, then the output
//! layer). `--head flatten,dense:256:relu,dropout:0.5` describes the layers between the base
//! and the classifier; the classifier itself (`predictions`: one sigmoid unit for binary, a
//! softmax over the classes otherwise) is always added. Head layers get stable names
//! (`head1_flatten`, `head2_dense`, ...) so that phase two finds phase one's weights by name.

use crate::layers::Activation;

use super::spec::{LayerKind, LayerSpec, BN_EPSILON, BN_MOMENTUM};
use super::{head_activation, ModelError};

/// The classifier's layer name (Keras applications' name for the output layer).
pub const PREDICTIONS: &str = "predictions";

fn bad(item: &str, why: &str) -> ModelError {
    ModelError::BadOption(format!(
        "--head item `{item}`: {why}; expected a comma-separated list of flatten, gap, \
         dense:UNITS[:relu|linear|sigmoid], dropout:RATE, bn (e.g. flatten,dense:256:relu,dropout:0.5)"
    ))
}

/// Parses `--head`: the layers between the base and the classifier.
pub fn parse_head(s: &str) -> Result<Vec<LayerKind>, ModelError> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|item| {
            let parts: Vec<&str> = item.split(':').collect();
            match parts[..] {
                ["flatten"] => Ok(LayerKind::Flatten),
                ["gap"] | ["global_average_pooling"] => Ok(LayerKind::GlobalAvgPool),
                ["bn"] | ["batchnorm"] => Ok(LayerKind::BatchNorm {
                    epsilon: BN_EPSILON,
                    momentum: BN_MOMENTUM,
                }),
                ["dropout", rate] => match rate.parse::<f64>() {
                    Ok(r) if (0.0..1.0).contains(&r) => Ok(LayerKind::Dropout { rate: r }),
                    _ => Err(bad(item, "the rate must be a number in [0, 1)")),
                },
                ["dense", units] | ["dense", units, _] => {
                    let units = units
                        .parse::<usize>()
                        .ok()
                        .filter(|&u| u > 0)
                        .ok_or_else(|| bad(item, "the units must be a positive integer"))?;
                    let activation = match parts.get(2).copied().unwrap_or("relu") {
                        "relu" => Activation::Relu,
                        "linear" => Activation::Linear,
                        "sigmoid" => Activation::Sigmoid,
                        _ => {
                            return Err(bad(item, "the activation must be relu, linear or sigmoid"))
                        }
                    };
                    Ok(LayerKind::Dense { units, activation })
                }
                _ => Err(bad(item, "unknown layer")),
            }
        })
        .collect()
}

/// `base` followed by the head layers and the classifier for `classes` outputs.
pub fn with_head(base: Vec<LayerSpec>, head: &[LayerKind], classes: usize) -> Vec<LayerSpec> {
    let mut layers = base;
    for (i, kind) in head.iter().enumerate() {
        let what = match kind {
            LayerKind::Flatten => "flatten",
            LayerKind::GlobalAvgPool => "gap",
            LayerKind::BatchNorm { .. } => "bn",
            LayerKind::Dropout { .. } => "dropout",
            _ => "dense",
        };
        layers.push(LayerSpec {
            name: format!("head{}_{what}", i + 1),
            kind: kind.clone(),
        });
    }
    layers.push(LayerSpec {
        name: PREDICTIONS.into(),
        kind: LayerKind::Dense {
            units: classes,
            activation: head_activation(classes),
        },
    });
    layers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{ModelConfig, ModelName, ModelSpec, Shape};

    #[test]
    fn the_seed_head_parses_and_names_its_layers() {
        let head = parse_head("flatten,dense:256:relu,dropout:0.5").unwrap();
        let base = ModelConfig {
            include_top: false,
            ..ModelConfig::new(ModelName::Vgg16, Shape::Image { h: 64, w: 64, c: 3 }, 1)
        }
        .spec()
        .unwrap();
        let layers = with_head(base.layers.clone(), &head, 1);
        let names: Vec<&str> = layers[base.layers.len()..]
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "head1_flatten",
                "head2_dense",
                "head3_dropout",
                "predictions"
            ]
        );
        let spec = ModelSpec {
            layers,
            ..base.clone()
        };
        // 2x2x512 -> 256 -> 1: (2048 + 1) * 256 + 257.
        let head_params = spec.param_count().unwrap().total() - base.param_count().unwrap().total();
        assert_eq!(head_params, 2049 * 256 + 257);
    }

    #[test]
    fn bad_heads_say_what_is_expected() {
        for s in ["dense", "dense:0", "dropout:1.5", "conv:3", "dense:8:tanh"] {
            let e = parse_head(s).unwrap_err().to_string();
            assert!(e.contains("expected a comma-separated list"), "{s}: {e}");
        }
    }
}
