//! Training with Keras semantics: `fit` (optimizers, losses, validation split, callbacks,
//! run folder, resume), `evaluate` and `predict`.

pub mod bottleneck;
pub mod config;
pub mod evaluate;
pub mod fit;
pub mod loss;
pub mod loss_scale;
pub mod optim;
pub mod parallel;
pub mod run;
pub mod schedule;

pub use config::TrainConfig;
pub use evaluate::{evaluate, evaluate_native, predict_files, EvalResult, LossTerms, Prediction};
pub use fit::{fit, FitOptions, FitReport};
pub use loss::Regularization;
pub use loss_scale::LossScale;
pub use optim::OptimizerConfig;
pub use run::{LoadedRun, RunFiles, RunWeights};
pub use schedule::LrSchedule;

use std::path::PathBuf;

/// What can go wrong in training, evaluation or prediction.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A data problem (the message names the file).
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// A model problem.
    #[error(transparent)]
    Model(#[from] crate::models::ModelError),
    /// A weights file problem.
    #[error(transparent)]
    Weights(#[from] crate::weights::WeightsError),
    /// A callback problem (bad monitor, history file).
    #[error(transparent)]
    Callback(#[from] crate::callbacks::CallbackError),
    /// The native engine cannot run the model or its input.
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    /// A bad option.
    #[error("{0}")]
    Config(String),
    /// The loss became NaN or infinite.
    #[error("loss is {value} at epoch {epoch}, step {step}: training stopped (try a lower --lr); {kept}")]
    NonFiniteLoss {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based step.
        step: usize,
        /// The loss value.
        value: f64,
        /// What the run folder keeps (the checkpoints that exist), in words.
        kept: String,
    },
    /// A device's part of a data-parallel step failed.
    #[error("data-parallel step on device {device}: {reason}")]
    Device {
        /// The device, as Burn prints it.
        device: String,
        /// What went wrong.
        reason: String,
    },
    /// A run folder file that is missing or unreadable.
    #[error("{file}: {reason}")]
    Run {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
}
