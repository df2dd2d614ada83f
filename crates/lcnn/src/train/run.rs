//! The run folder: `config.json`, `history.csv`, `history.png`, `best.safetensors`,
//! `last.safetensors` (the resume point: weights, optimizer state and loop state in one atomic
//! file) and `model.safetensors` (the model as `fit` leaves it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::callbacks::{EarlyStoppingState, ModelCheckpointState, ReduceLrOnPlateauState};
use crate::data::Augmenter;
use crate::models::{ModelConfig, Network, Shape};
use crate::util::write_atomic;
use crate::weights::{export, import, safetensors, NamedTensor};

use super::{TrainConfig, TrainError};

/// Paths of a run folder's files.
#[derive(Debug, Clone)]
pub struct RunFiles {
    /// The folder.
    pub dir: PathBuf,
}

impl RunFiles {
    /// The files of `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RunFiles { dir: dir.into() }
    }
    /// `config.json`.
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    /// `history.csv`.
    pub fn history_csv(&self) -> PathBuf {
        self.dir.join(crate::callbacks::HISTORY_CSV)
    }
    /// `history.png`.
    pub fn history_png(&self) -> PathBuf {
        self.dir.join(crate::callbacks::HISTORY_PNG)
    }
    /// `best.safetensors`.
    pub fn best(&self) -> PathBuf {
        self.dir.join("best.safetensors")
    }
    /// `last.safetensors` (the resume point).
    pub fn last(&self) -> PathBuf {
        self.dir.join("last.safetensors")
    }
    /// `model.safetensors`.
    pub fn model(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }
    /// Every file a run writes (`roc.png` for detection tasks): any of them present makes the
    /// folder a run's, which a fresh run does not write over unless told to.
    pub fn written(&self) -> Vec<PathBuf> {
        vec![
            self.config(),
            self.history_csv(),
            self.history_png(),
            self.best(),
            self.last(),
            self.model(),
            self.dir.join(crate::callbacks::ROC_PNG),
        ]
    }
}

/// The loop state saved in the resume point's metadata (`state`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoopState {
    /// Epochs finished.
    pub epochs_done: usize,
    /// Optimizer updates done (Keras `iterations`).
    pub iterations: u64,
    /// Early stopping.
    pub early_stopping: Option<EarlyStoppingState>,
    /// Best-checkpoint callback.
    pub checkpoint: ModelCheckpointState,
    /// Whether early stopping ended the run.
    pub stopped: bool,
    /// Learning-rate reduction on a plateau (absent in older resume points).
    #[serde(default)]
    pub reduce_lr: Option<ReduceLrOnPlateauState>,
    /// The optimizer's base learning rate when it differs from the configured one (after a
    /// reduction on a plateau).
    #[serde(default)]
    pub learning_rate: Option<f64>,
    /// f16 mixed precision's loss scale (absent otherwise).
    #[serde(default)]
    pub loss_scale: Option<super::LossScale>,
}

/// What preprocessing a trained model expects, saved in every weights file's metadata so
/// `eval` and `predict` apply the same.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Preprocess {
    /// Multiplier on raw pixels.
    pub rescale: f32,
    /// Per-channel mean subtracted after rescale.
    pub mean: Option<Vec<f32>>,
    /// Per-channel std divided by after centering.
    pub std: Option<Vec<f32>>,
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// The model input (height, width, channels).
    pub input: Shape,
}

impl Preprocess {
    /// Checks the preprocessing against the model it feeds: a positive finite `rescale`, one
    /// finite mean and one positive finite std per input channel, the model's input, and one
    /// class name per output (two for one sigmoid unit).
    pub fn check(&self, model: &ModelConfig) -> Result<(), String> {
        if !(self.rescale.is_finite() && self.rescale > 0.0) {
            return Err(format!(
                "rescale {}; expected a positive finite multiplier",
                self.rescale
            ));
        }
        if self.input != model.input {
            return Err(format!(
                "input {:?}, but the model takes {:?}",
                self.input, model.input
            ));
        }
        let channels = match self.input {
            Shape::Image { c, .. } => c,
            Shape::Flat(_) => 1,
        };
        for (name, values, positive) in [("mean", &self.mean, false), ("std", &self.std, true)] {
            let Some(values) = values else { continue };
            if values.len() != channels {
                return Err(format!(
                    "{name} has {} values; expected one per input channel ({channels})",
                    values.len()
                ));
            }
            if let Some(v) = values
                .iter()
                .find(|v| !v.is_finite() || (positive && **v <= 0.0))
            {
                let what = if positive {
                    "positive finite"
                } else {
                    "finite"
                };
                return Err(format!("{name} holds {v}; expected {what} values"));
            }
        }
        let outputs = model.classes.max(2);
        if !self.classes.is_empty() && self.classes.len() != outputs {
            return Err(format!(
                "{} class names for a model with {} output{}",
                self.classes.len(),
                model.classes,
                if model.classes == 1 {
                    " (one sigmoid unit: two names)"
                } else {
                    "s"
                }
            ));
        }
        Ok(())
    }

    /// The augmenter that applies only this preprocessing (no random transform).
    pub fn augmenter(&self) -> Augmenter {
        let mut a = Augmenter::rescale_only(self.rescale);
        a.config.featurewise_center = self.mean.is_some();
        a.config.featurewise_std_normalization = self.std.is_some();
        a.mean = self.mean.clone();
        a.std = self.std.clone();
        a
    }
}

/// Writes `config.json` atomically.
pub fn save_config(files: &RunFiles, config: &TrainConfig) -> Result<(), TrainError> {
    let json =
        serde_json::to_string_pretty(config).map_err(|e| TrainError::Config(e.to_string()))?;
    write_atomic(&files.config(), json.as_bytes()).map_err(|e| TrainError::Run {
        file: files.config(),
        reason: e.to_string(),
    })
}

/// Reads `config.json`.
pub fn load_config(files: &RunFiles) -> Result<TrainConfig, TrainError> {
    let path = files.config();
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::Run {
        file: path.clone(),
        reason: format!(
            "cannot read the run's configuration ({e}); is this a run folder made by `lcnn train`?"
        ),
    })?;
    serde_json::from_str(&text).map_err(|e| TrainError::Run {
        file: path,
        reason: format!("invalid config.json: {e}"),
    })
}

/// The metadata every weights file of a run carries.
pub fn weights_metadata(config: &ModelConfig, pre: &Preprocess) -> HashMap<String, String> {
    HashMap::from([
        ("format".to_string(), "lcnn".to_string()),
        (
            "model".to_string(),
            serde_json::to_string(config).unwrap_or_default(),
        ),
        (
            "preprocess".to_string(),
            serde_json::to_string(pre).unwrap_or_default(),
        ),
    ])
}

/// Writes a run folder for a model trained elsewhere (an import): `model.safetensors` with the
/// run metadata, and a `config.json` of lcnn's defaults with this model, its rescale and no
/// dataset (`lcnn eval` then needs `--dataset`). The tensors must fit the model exactly;
/// `source` names the file they came from in errors.
pub fn write_imported_run(
    dir: &Path,
    model: &ModelConfig,
    tensors: Vec<NamedTensor>,
    preprocess: &Preprocess,
    source: &Path,
) -> Result<(), TrainError> {
    let network = Network::new(&model.spec()?, &Device::flex())?;
    let network = import(network, tensors, true, source)?;
    std::fs::create_dir_all(dir).map_err(|e| TrainError::Run {
        file: dir.to_path_buf(),
        reason: format!("cannot create the run folder: {e}"),
    })?;
    let files = RunFiles::new(dir);
    let mut config = TrainConfig {
        model: model.name,
        dataset: String::new(),
        ..TrainConfig::default()
    };
    config.augment.rescale = preprocess.rescale;
    save_config(&files, &config)?;
    safetensors::save(
        &files.model(),
        &export(&network),
        weights_metadata(model, preprocess),
    )?;
    Ok(())
}

/// A trained model ready for inference, with what it expects.
pub struct LoadedRun {
    /// The run's configuration.
    pub config: TrainConfig,
    /// The model (inference mode).
    pub network: Network,
    /// Preprocessing and class names.
    pub preprocess: Preprocess,
    /// The model configuration.
    pub model: ModelConfig,
}

/// Which weights of a run folder to load (`--weights final|best|last`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RunWeights {
    /// `model.safetensors`, else (a run still going or stopped) `best`, then `last`.
    #[default]
    Final,
    /// `best.safetensors`: the best checkpoint by the run's checkpoint monitor.
    Best,
    /// `last.safetensors`: the weights after the last finished epoch.
    Last,
}

impl RunWeights {
    /// Every choice, in `--help` order.
    pub const ALL: [RunWeights; 3] = [RunWeights::Final, RunWeights::Best, RunWeights::Last];

    /// The command-line name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunWeights::Final => "final",
            RunWeights::Best => "best",
            RunWeights::Last => "last",
        }
    }

    /// The files to try, in order.
    fn candidates(self, files: &RunFiles) -> Vec<PathBuf> {
        match self {
            RunWeights::Final => vec![files.model(), files.best(), files.last()],
            RunWeights::Best => vec![files.best()],
            RunWeights::Last => vec![files.last()],
        }
    }
}

impl std::str::FromStr for RunWeights {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::util::find_by_name(&RunWeights::ALL, RunWeights::as_str, s).ok_or_else(|| {
            TrainError::Config(format!(
                "unknown weights `{s}`: expected one of {}",
                crate::util::names(&RunWeights::ALL, RunWeights::as_str)
            ))
        })
    }
}

impl LoadedRun {
    /// Loads `model.safetensors` (or, for a run still going or stopped, `best`, then `last`).
    pub fn load(dir: &Path, device: &Device) -> Result<LoadedRun, TrainError> {
        Self::load_weights(dir, RunWeights::Final, device)
    }

    /// Loads the chosen weights of a run folder; a missing file is an error naming it.
    pub fn load_weights(
        dir: &Path,
        which: RunWeights,
        device: &Device,
    ) -> Result<LoadedRun, TrainError> {
        let files = RunFiles::new(dir);
        let config = load_config(&files)?;
        let candidates = which.candidates(&files);
        let path = candidates
            .iter()
            .find(|p| p.exists())
            .cloned()
            .ok_or_else(|| TrainError::Run {
                file: candidates[0].clone(),
                reason: format!(
                    "no weights for --weights {} (looked for {})",
                    which.as_str(),
                    candidates
                        .iter()
                        .filter_map(|p| p.file_name()?.to_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        let ckpt = safetensors::load_checkpoint(&path)?;
        let field = |k: &str| {
            ckpt.metadata.get(k).ok_or_else(|| TrainError::Run {
                file: path.clone(),
                reason: format!(
                    "metadata field `{k}` is missing: not a checkpoint written by lcnn train"
                ),
            })
        };
        let model: ModelConfig =
            serde_json::from_str(field("model")?).map_err(|e| TrainError::Run {
                file: path.clone(),
                reason: format!("metadata `model`: {e}"),
            })?;
        let preprocess: Preprocess =
            serde_json::from_str(field("preprocess")?).map_err(|e| TrainError::Run {
                file: path.clone(),
                reason: format!("metadata `preprocess`: {e}"),
            })?;
        let spec = model.spec().map_err(|e| TrainError::Run {
            file: path.clone(),
            reason: format!("metadata `model`: {e}"),
        })?;
        preprocess.check(&model).map_err(|e| TrainError::Run {
            file: path.clone(),
            reason: format!("metadata `preprocess`: {e}"),
        })?;
        let network = Network::new(&spec, device)?;
        let network = import(network, ckpt.tensors, false, &path)?.valid();
        Ok(LoadedRun {
            config,
            network,
            preprocess,
            model,
        })
    }

    /// The preprocessing as an augmenter (no random transform).
    pub fn augmenter(&self) -> Arc<Augmenter> {
        Arc::new(self.preprocess.augmenter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ModelName;

    /// Metadata that would make `predict` print NaN or skip a step is refused with the field.
    #[test]
    fn preprocessing_that_does_not_fit_the_model_is_refused() {
        let input = Shape::Image { h: 28, w: 28, c: 1 };
        let model = ModelConfig::new(ModelName::Lcnn, input, 2);
        let good = Preprocess {
            rescale: 1.0 / 255.0,
            mean: Some(vec![0.1]),
            std: Some(vec![0.3]),
            classes: vec!["a".into(), "b".into()],
            input,
        };
        assert_eq!(good.check(&model), Ok(()));
        let binary = ModelConfig::new(ModelName::Lcnn, input, 1);
        assert_eq!(good.check(&binary), Ok(()), "one sigmoid unit, two names");
        for (bad, needle) in [
            (
                Preprocess {
                    rescale: f32::INFINITY,
                    ..good.clone()
                },
                "rescale inf",
            ),
            (
                Preprocess {
                    std: Some(vec![0.0]),
                    ..good.clone()
                },
                "std holds 0",
            ),
            (
                Preprocess {
                    mean: Some(vec![0.0; 5]),
                    ..good.clone()
                },
                "mean has 5 values",
            ),
            (
                Preprocess {
                    classes: vec!["a".into(); 3],
                    ..good.clone()
                },
                "3 class names",
            ),
            (
                Preprocess {
                    input: Shape::Image { h: 32, w: 32, c: 1 },
                    ..good.clone()
                },
                "but the model takes",
            ),
        ] {
            let e = bad.check(&model).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn run_weights_parse_their_names_and_reject_others() {
        for w in RunWeights::ALL {
            assert_eq!(w.as_str().parse::<RunWeights>().unwrap(), w);
        }
        assert_eq!("BEST".parse::<RunWeights>().unwrap(), RunWeights::Best);
        let err = "nope".parse::<RunWeights>().unwrap_err().to_string();
        assert!(
            err.contains("`nope`") && err.contains("expected one of final, best, last"),
            "{err}"
        );
    }

    #[test]
    fn final_falls_back_to_best_then_last_and_the_others_do_not() {
        let files = RunFiles::new("run");
        let names = |w: RunWeights| -> Vec<PathBuf> { w.candidates(&files) };
        assert_eq!(
            names(RunWeights::Final),
            [files.model(), files.best(), files.last()]
        );
        assert_eq!(names(RunWeights::Best), [files.best()]);
        assert_eq!(names(RunWeights::Last), [files.last()]);
    }
}
