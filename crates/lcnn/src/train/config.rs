//! Everything a training run needs to be reproduced, saved as the run folder's `config.json`.
//! The defaults are the seeds' MNIST recipe: LCNN, Adam 1e-3, batch 256, 10 epochs, validation
//! split 0.2, early stopping on val_loss with patience 3.

use crate::engine::EngineKind;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::callbacks::{EarlyStoppingConfig, ModelCheckpointConfig, ReduceLrOnPlateauConfig};
use crate::data::AugmentConfig;
use crate::layers::KernelInitializer;
use crate::models::ModelName;

use super::loss::Regularization;
use super::optim::OptimizerConfig;
use super::schedule::LrSchedule;
use super::TrainError;
use crate::models::{head::PREDICTIONS, ModelSpec};

/// A training run's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Model of the zoo.
    pub model: ModelName,
    /// Dataset: `mnist`, `cifar10` or `images:DIR`.
    pub dataset: String,
    /// Where `mnist/` and `cifar10/` are found.
    pub data_dir: PathBuf,
    /// Resize images to `(height, width)`.
    pub target_size: Option<(usize, usize)>,
    /// `rgb` or `grayscale`.
    pub color_mode: String,
    /// `nearest` or `bilinear`.
    pub interpolation: String,
    /// `categorical` (softmax) or `binary` (one sigmoid unit; two classes).
    pub class_mode: String,
    /// Epochs (Keras `epochs`).
    pub epochs: usize,
    /// Batch size.
    pub batch_size: usize,
    /// The optimizer.
    pub optimizer: OptimizerConfig,
    /// Keras `validation_split`: the last fraction of the training set, before shuffling.
    pub validation_split: f64,
    /// Early stopping, if any.
    pub early_stopping: Option<EarlyStoppingConfig>,
    /// The best checkpoint (`best.safetensors`).
    pub checkpoint: ModelCheckpointConfig,
    /// Learning-rate reduction on a plateau, if any (absent in older run folders).
    #[serde(default)]
    pub reduce_lr: Option<ReduceLrOnPlateauConfig>,
    /// Preprocessing and augmentation, as Keras' `ImageDataGenerator`; its `rescale` multiplies
    /// raw 0-255 pixels (1/255 by default; 1 for models trained on raw pixels).
    pub augment: AugmentConfig,
    /// Seed of weights, shuffling, augmentation and dropout.
    pub seed: u64,
    /// Freeze every layer before this one (fine-tuning), by name.
    pub freeze_until: Option<String>,
    /// Initial weights (safetensors), loaded by layer name before training.
    pub init_weights: Option<PathBuf>,
    /// Keep the zoo model's classifier (Keras `include_top`; `--no-top` turns it off).
    #[serde(default = "yes")]
    pub include_top: bool,
    /// Every Dropout layer's rate instead of the zoo model's (`--dropout`; `None`: the model's
    /// own, LCNN's 0.75).
    #[serde(default)]
    pub dropout: Option<f64>,
    /// How fresh convolution and dense kernels are drawn (`--kernel-initializer`, Keras'
    /// `kernel_initializer`; default `glorot_uniform`, Keras' own). Weights loaded from a
    /// base, `--weights` or a resume point are not redrawn.
    #[serde(default)]
    pub kernel_initializer: KernelInitializer,
    /// Layers between the base and a new classifier (`--head flatten,dense:256:relu`).
    #[serde(default)]
    pub head: Option<String>,
    /// A run folder whose network (with its weights) is the base (`--base RUN`).
    #[serde(default)]
    pub base: Option<PathBuf>,
    /// Where the base is cut: it ends just before this layer (`--base-until flatten`).
    #[serde(default)]
    pub base_until: Option<String>,
    /// Freeze every base layer (seed 003's first phase).
    #[serde(default)]
    pub freeze_base: bool,
    /// Keep every BatchNormalization layer frozen (moving statistics, no update), as Keras'
    /// transfer-learning guide advises when fine-tuning a base that has them.
    #[serde(default)]
    pub freeze_bn: bool,
    /// Before each validation, re-estimate the trainable BatchNorm layers' moving statistics
    /// from the training part (unaugmented) with the epoch's final weights, as PyTorch's
    /// `swa_utils.update_bn` (default false: Keras' moving averages, momentum 0.99, which on
    /// runs of a few hundred steps still carry their start values and the early weights).
    #[serde(default)]
    pub recalibrate_bn: bool,
    /// Train on the base's outputs computed once ([`super::bottleneck`]) when every layer
    /// below the first trained one is frozen, without dropout, and nothing is augmented (the
    /// default; `--no-bottleneck-cache` runs the base at every step, for comparison).
    #[serde(default = "yes")]
    pub bottleneck_cache: bool,
    /// Which implementation trains on the CPU: lcnn's native engine (the default) or Burn's
    /// tensors (the reference; GPU devices always use it). Runs written before the engine
    /// existed have no such field and were trained by Burn, which their resume point needs.
    #[serde(default = "legacy_engine")]
    pub engine: EngineKind,
    /// The float type convolutions and dense layers compute in (`--precision`, Burn's path):
    /// f32 (the default), or f16 / bf16 over f32 weights, BatchNorm statistics and loss, as
    /// Keras' `mixed_float16` / `mixed_bfloat16` policies; f16 scales the loss
    /// ([`super::LossScale`]).
    #[serde(default)]
    pub precision: crate::layers::precision::Precision,
    /// How Burn's path computes the convolutions (`--conv`): Burn's kernels (the default) or
    /// im2col and one matrix product ([`crate::layers::im2col`]).
    #[serde(default)]
    pub conv: crate::layers::im2col::ConvAlgorithm,
    /// f16's initial loss scale (Keras' `LossScaleOptimizer(initial_scale=...)`; `None`:
    /// 2^15, Keras' default). The scale then halves on each overflow and doubles after 2000
    /// finite steps.
    #[serde(default)]
    pub loss_scale: Option<f64>,
    /// A learning-rate schedule (Keras `keras.optimizers.schedules`) instead of the constant
    /// rate with time-based `decay`.
    #[serde(default)]
    pub lr_schedule: Option<LrSchedule>,
    /// Label smoothing, decoupled weight decay and L2 kernel regularization (none by default).
    #[serde(default)]
    pub regularization: Regularization,
    /// Features, protocol files and caching of audio datasets (`audio:DIR`).
    #[serde(default)]
    pub audio: crate::audio::AudioOptions,
}

impl TrainConfig {
    /// The configuration with every path made absolute (against the current folder): the
    /// dataset folder, `data_dir`, initial weights, the base run and audio protocol files.
    /// `config.json` keeps these, so a run resumed, evaluated or used as a base from another
    /// folder finds its data again. Paths are not required to exist.
    pub fn with_absolute_paths(mut self) -> Self {
        let abs = |p: &mut PathBuf| {
            if let Ok(a) = std::path::absolute(&*p) {
                *p = a;
            }
        };
        use crate::data::DatasetSpec;
        if let Ok(mut spec) = self.dataset.parse::<DatasetSpec>() {
            if let DatasetSpec::Images(dir) | DatasetSpec::Audio(dir) = &mut spec {
                abs(dir);
                self.dataset = spec.to_string();
            }
        }
        abs(&mut self.data_dir);
        let audio = &mut self.audio;
        let optional = [
            &mut self.init_weights,
            &mut self.base,
            &mut audio.protocol,
            &mut audio.val_protocol,
            &mut audio.test_protocol,
        ];
        optional.into_iter().flatten().for_each(abs);
        self
    }

    /// Index of the first layer training updates: the `--freeze-until` layer, the first head
    /// layer with `--freeze-base`, else 0. The L2 penalty covers kernels from there on.
    pub fn first_trained_layer(&self, spec: &ModelSpec) -> Result<usize, TrainError> {
        Ok(match (&self.freeze_until, self.freeze_base) {
            (Some(name), _) => spec.index_of(name)?,
            (None, true) => spec
                .layers
                .iter()
                .position(|l| l.name.starts_with("head") || l.name == PREDICTIONS)
                .unwrap_or(spec.layers.len()),
            (None, false) => 0,
        })
    }

    /// Whether the run trains on audio (`audio:DIR`): its inputs are the features of WAV / FLAC
    /// files.
    pub fn is_audio(&self) -> bool {
        self.dataset.trim_start().starts_with("audio:")
    }

    /// The class whose EER is measured: for a two-class audio dataset, `bonafide` (ASVspoof's
    /// positive class) when there is one, else the first class; `None` otherwise.
    pub fn eer_class(&self, classes: &[String]) -> Option<usize> {
        (self.is_audio() && classes.len() == 2)
            .then(|| classes.iter().position(|c| c == "bonafide").unwrap_or(0))
    }

    /// Checks the schedule and regularization against the rest of the configuration.
    pub fn validate_recipe(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        if let Err(e) = self.regularization.validate() {
            return bad(e);
        }
        if let Some(s) = &self.lr_schedule {
            if let Err(e) = s.validate() {
                return bad(e);
            }
            if self.reduce_lr.is_some() {
                return bad(
                    "--lr-schedule and --reduce-lr-patience both set the learning rate: \
                            Keras refuses ReduceLROnPlateau on a schedule; choose one"
                        .into(),
                );
            }
            if self.optimizer.decayed_lr(1) != self.optimizer.learning_rate() {
                return bad(
                    "--lr-schedule and --decay both decay the learning rate: use \
                            --lr-schedule inverse-time (with --decay-steps 1 it is --decay)"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

fn yes() -> bool {
    true
}

fn legacy_engine() -> EngineKind {
    EngineKind::Burn
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: ModelName::Lcnn,
            dataset: "mnist".into(),
            data_dir: crate::data::resolve_data_dir(None),
            target_size: None,
            color_mode: "rgb".into(),
            interpolation: "nearest".into(),
            class_mode: "categorical".into(),
            epochs: 10,
            batch_size: 256,
            optimizer: OptimizerConfig::adam(),
            validation_split: 0.2,
            early_stopping: Some(EarlyStoppingConfig {
                patience: 3,
                ..Default::default()
            }),
            checkpoint: ModelCheckpointConfig {
                save_best_only: true,
                ..Default::default()
            },
            reduce_lr: None,
            augment: AugmentConfig {
                rescale: 1.0 / 255.0,
                ..Default::default()
            },
            seed: 42,
            freeze_until: None,
            init_weights: None,
            include_top: true,
            dropout: None,
            kernel_initializer: KernelInitializer::default(),
            head: None,
            base: None,
            base_until: None,
            freeze_base: false,
            freeze_bn: false,
            recalibrate_bn: false,
            bottleneck_cache: true,
            engine: EngineKind::Native,
            precision: Default::default(),
            conv: Default::default(),
            loss_scale: None,
            lr_schedule: None,
            regularization: Regularization::default(),
            audio: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_absolute_and_names_stay() {
        let cwd = std::env::current_dir().unwrap();
        let mut c = TrainConfig {
            dataset: "images:data/cats".into(),
            data_dir: "shared/data".into(),
            init_weights: Some("w.safetensors".into()),
            ..TrainConfig::default()
        };
        c.audio.protocol = Some("p.txt".into());
        let c = c.with_absolute_paths();
        let dir = cwd.join("data/cats");
        assert_eq!(c.dataset, format!("images:{}", dir.display()));
        assert_eq!(c.data_dir, cwd.join("shared/data"));
        assert_eq!(c.init_weights, Some(cwd.join("w.safetensors")));
        assert_eq!(c.audio.protocol, Some(cwd.join("p.txt")));
        assert_eq!(c.base, None);
        // Already absolute, and named datasets, stay as they are.
        let c = c.with_absolute_paths();
        assert_eq!(c.dataset, format!("images:{}", dir.display()));
        for name in ["mnist", "cifar10"] {
            let d = TrainConfig {
                dataset: name.into(),
                ..TrainConfig::default()
            };
            assert_eq!(d.with_absolute_paths().dataset, name);
        }
    }
}
