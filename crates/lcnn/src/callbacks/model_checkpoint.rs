//! When to save the model, with the semantics of Keras 2.9's `keras.callbacks.ModelCheckpoint`
//! saving once per epoch (`save_freq="epoch"`, `period=1`).
//!
//! Without `save_best_only` the model is saved after every epoch. With it, the model is saved
//! only when the monitored value is strictly better than the best so far (`np.less` in min
//! mode, `np.greater` in max mode; there is no `min_delta`), the best starting at `+inf` or
//! `-inf`. In auto mode the direction is maximize when the monitor contains `acc` or starts
//! with `fmeasure` (ModelCheckpoint's own rule, not EarlyStopping's).
//!
//! One difference: with `save_best_only`, a monitor missing from the logs is an error
//! ([`CallbackError::MissingMonitor`]) where Keras warns and skips saving.
//!
//! The callback decides; the training loop writes the file. Its [`ModelCheckpointState`] is
//! serializable for resuming.

use serde::{Deserialize, Serialize};

use super::error::CallbackError;
use super::logs::{check_resumed_best, monitor_value, serde_f64, Direction, Logs, Mode};

const NAME: &str = "ModelCheckpoint";

/// The arguments of Keras' `ModelCheckpoint` that decide when to save; [`Default`] gives
/// Keras' defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelCheckpointConfig {
    /// Quantity to monitor when `save_best_only`. Keras default: `"val_loss"`.
    pub monitor: String,
    /// Save only when the monitored quantity improves on the best so far. Keras default:
    /// `False` (save after every epoch).
    pub save_best_only: bool,
    /// Whether lower or higher is better; `Auto` infers it from the monitor's name (maximize
    /// when it contains `acc` or starts with `fmeasure`). Keras default: `"auto"`.
    pub mode: Mode,
}

impl Default for ModelCheckpointConfig {
    fn default() -> Self {
        Self {
            monitor: "val_loss".to_string(),
            save_best_only: false,
            mode: Mode::Auto,
        }
    }
}

/// The mutable state of a [`ModelCheckpoint`]. Serialize it with the training checkpoint
/// and give it back to [`ModelCheckpoint::from_state`] to resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCheckpointState {
    /// Best monitored value so far (Keras `self.best`); `+inf` (min) or `-inf` (max) until
    /// the first save with `save_best_only`. Serialized as a number, `"inf"` or `"-inf"`.
    #[serde(with = "serde_f64")]
    pub best: f64,
    /// Epoch of the last save (`None` before the first). Not a Keras attribute; kept so that
    /// a resumed run can tell which epoch the best checkpoint holds.
    pub last_saved_epoch: Option<usize>,
}

/// Keras 2.9 `ModelCheckpoint`'s save decision; see the module documentation.
#[derive(Debug, Clone)]
pub struct ModelCheckpoint {
    config: ModelCheckpointConfig,
    direction: Direction,
    state: ModelCheckpointState,
}

impl ModelCheckpoint {
    /// A fresh callback.
    pub fn new(config: ModelCheckpointConfig) -> Result<Self, CallbackError> {
        if config.save_best_only && config.monitor.is_empty() {
            return Err(CallbackError::InvalidConfig {
                callback: NAME,
                field: "monitor",
                reason: "is empty".to_string(),
            });
        }
        let direction = config.mode.checkpoint_direction(&config.monitor);
        Ok(Self {
            config,
            direction,
            state: ModelCheckpointState {
                best: direction.worst(),
                last_saved_epoch: None,
            },
        })
    }

    /// The callback of a resumed run: `config` as in the interrupted run, `state` as
    /// [`ModelCheckpoint::state`] returned after its last finished epoch.
    pub fn from_state(
        config: ModelCheckpointConfig,
        state: ModelCheckpointState,
    ) -> Result<Self, CallbackError> {
        let mut cp = Self::new(config)?;
        check_resumed_best(NAME, state.best)?;
        cp.state = state;
        Ok(cp)
    }

    /// The state to save for resuming.
    pub fn state(&self) -> ModelCheckpointState {
        self.state.clone()
    }

    /// The configuration.
    pub fn config(&self) -> &ModelCheckpointConfig {
        &self.config
    }

    /// The direction the mode resolved to for this monitor.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Best monitored value so far, `None` before the first best-only save.
    pub fn best(&self) -> Option<f64> {
        self.state.best.is_finite().then_some(self.state.best)
    }

    /// Keras `on_epoch_end(epoch, logs)`: whether to save the model now. `epoch` is the
    /// 0-based index of the epoch that just ended. On error (monitor missing from `logs`
    /// with `save_best_only`) the state is left unchanged.
    pub fn on_epoch_end(&mut self, epoch: usize, logs: &Logs) -> Result<bool, CallbackError> {
        if self.config.save_best_only {
            let current = monitor_value(NAME, &self.config.monitor, logs)?;
            if !self.direction.is_improvement(current, self.state.best, 0.0) {
                return Ok(false);
            }
            self.state.best = current;
        }
        self.state.last_saved_epoch = Some(epoch);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logs(key: &str, v: f64) -> Logs {
        let mut l = Logs::new();
        l.insert("loss".into(), 0.0);
        l.insert(key.into(), v);
        l
    }

    fn decisions(cp: &mut ModelCheckpoint, values: &[f64]) -> Vec<bool> {
        let monitor = cp.config().monitor.clone();
        values
            .iter()
            .enumerate()
            .map(|(e, &v)| cp.on_epoch_end(e, &logs(&monitor, v)).unwrap())
            .collect()
    }

    #[test]
    fn defaults_are_keras_defaults() {
        let c = ModelCheckpointConfig::default();
        assert_eq!(c.monitor, "val_loss");
        assert!(!c.save_best_only);
        assert_eq!(c.mode, Mode::Auto);
    }

    #[test]
    fn saves_every_epoch_without_save_best_only() {
        let mut cp = ModelCheckpoint::new(ModelCheckpointConfig::default()).unwrap();
        assert_eq!(decisions(&mut cp, &[1.0, 2.0, 3.0]), [true, true, true]);
        // The monitor is not needed then.
        assert!(cp.on_epoch_end(3, &Logs::new()).unwrap());
        assert_eq!(cp.state().last_saved_epoch, Some(3));
    }

    #[test]
    fn save_best_only_in_min_mode() {
        let mut cp = ModelCheckpoint::new(ModelCheckpointConfig {
            save_best_only: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(cp.direction(), Direction::Min);
        assert_eq!(
            decisions(&mut cp, &[1.0, 1.0, 0.75, 0.875, 0.5, f64::NAN]),
            [true, false, true, false, true, false]
        );
        assert_eq!(cp.best(), Some(0.5));
        assert_eq!(cp.state().last_saved_epoch, Some(4));
    }

    #[test]
    fn save_best_only_in_max_mode() {
        let mut cp = ModelCheckpoint::new(ModelCheckpointConfig {
            monitor: "val_accuracy".into(),
            save_best_only: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(cp.direction(), Direction::Max);
        assert_eq!(
            decisions(&mut cp, &[0.5, 0.75, 0.75, 0.625, 0.875]),
            [true, true, false, false, true]
        );
        // Explicit max mode on a loss-like name.
        let mut cp = ModelCheckpoint::new(ModelCheckpointConfig {
            monitor: "val_loss".into(),
            save_best_only: true,
            mode: Mode::Max,
        })
        .unwrap();
        assert_eq!(decisions(&mut cp, &[1.0, 0.5, 2.0]), [true, false, true]);
    }

    #[test]
    fn first_epoch_is_saved_even_with_a_huge_loss() {
        let mut cp = ModelCheckpoint::new(ModelCheckpointConfig {
            save_best_only: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(decisions(&mut cp, &[1e300]), [true]);
    }

    #[test]
    fn missing_monitor_is_an_error_with_save_best_only() {
        let mut cp = ModelCheckpoint::new(ModelCheckpointConfig {
            monitor: "val_acc".into(),
            save_best_only: true,
            ..Default::default()
        })
        .unwrap();
        let err = cp.on_epoch_end(0, &logs("val_accuracy", 0.5)).unwrap_err();
        assert!(matches!(
            err,
            CallbackError::MissingMonitor { ref monitor, .. } if monitor == "val_acc"
        ));
        assert_eq!(cp.state().last_saved_epoch, None);
    }

    #[test]
    fn resumed_run_continues_identically() {
        let cfg = ModelCheckpointConfig {
            save_best_only: true,
            ..Default::default()
        };
        let values = [0.9, 0.7, 0.8, 0.6, 0.65, 0.5];
        let expected = decisions(&mut ModelCheckpoint::new(cfg.clone()).unwrap(), &values);
        for split in 0..values.len() {
            let mut first = ModelCheckpoint::new(cfg.clone()).unwrap();
            let mut got = decisions(&mut first, &values[..split]);
            let json = serde_json::to_string(&first.state()).unwrap();
            let mut resumed =
                ModelCheckpoint::from_state(cfg.clone(), serde_json::from_str(&json).unwrap())
                    .unwrap();
            for (e, &v) in values.iter().enumerate().skip(split) {
                got.push(resumed.on_epoch_end(e, &logs("val_loss", v)).unwrap());
            }
            assert_eq!(got, expected, "split at {split}");
        }
    }
}
