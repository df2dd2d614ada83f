//! Early stopping with the exact semantics of Keras' `keras.callbacks.EarlyStopping` (Keras 3;
//! Keras 2.9 where the two agree, which is everywhere but the restoring of weights).
//!
//! At the end of every epoch, [`EarlyStopping::on_epoch_end`] does what Keras does:
//!
//! 1. if `restore_best_weights` and no weights were kept yet, keep this epoch's weights
//!    ("restore the weights after first epoch if no progress is ever made");
//! 2. `wait += 1`;
//! 3. if the monitored value improves on `best` by more than `|min_delta|` (in the
//!    direction of the mode), it becomes `best`, its epoch `best_epoch`, its weights are kept
//!    when `restore_best_weights`; and `wait` is reset to 0 only if the value *also* improves
//!    on `baseline` (when one is given);
//! 4. if `wait >= patience` and `epoch > 0`, training stops.
//!
//! At the end of training, [`EarlyStopping::on_train_end`] says to load the kept weights back
//! when `restore_best_weights` and weights were kept: whether training stopped early or ran
//! all its epochs, as Keras 3 does. (Keras 2.9 restored them only when training stopped early,
//! so a run that never stopped kept its last weights however much worse they were: a recipe
//! could not rely on the flag.)
//!
//! Consequences worth knowing, as in Keras: the best value starts at `+inf` (min) or
//! `-inf` (max), not at `baseline`; with `patience = 0` training stops at epoch 1 (the second
//! epoch) whatever the values, since `wait` is 0 or 1 there; `patience` at least the number of
//! epochs never stops a run, which with `restore_best_weights` ends with its best epoch's
//! weights. The epoch index is the absolute,
//! 0-based epoch (Keras' `epoch`, which counts from `initial_epoch` on a resumed `fit`).
//!
//! One difference: a monitor missing from the logs is an error here
//! ([`CallbackError::MissingMonitor`]) where Keras warns and skips the epoch.
//!
//! The callback does not touch a model: the returned [`EarlyStoppingAction`] tells the
//! training loop when to snapshot the weights, when to stop and when to load the snapshot
//! back. Its [`EarlyStoppingState`] is serializable, so that a resumed run continues exactly
//! where the interrupted one was (the weight snapshot itself is the caller's to save).

use serde::{Deserialize, Serialize};

use super::error::CallbackError;
use super::logs::{check_resumed_best, monitor_value, serde_f64, Direction, Logs, Mode};

const NAME: &str = "EarlyStopping";

/// The arguments of Keras' `EarlyStopping` (all but `verbose`); [`Default`] gives Keras'
/// defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EarlyStoppingConfig {
    /// Quantity to monitor, a key of the epoch logs. Keras default: `"val_loss"`.
    pub monitor: String,
    /// Minimum change that counts as an improvement; its sign is ignored (Keras takes
    /// `abs(min_delta)`). Keras default: `0`.
    pub min_delta: f64,
    /// Number of epochs without improvement after which training stops. Keras default: `0`.
    pub patience: usize,
    /// Whether lower or higher is better; `Auto` infers it from the monitor's name (maximize
    /// when it ends with `acc`, `accuracy` or `auc`). Keras default: `"auto"`.
    pub mode: Mode,
    /// A value the monitor must improve on for `wait` to be reset. Keras default: `None`.
    pub baseline: Option<f64>,
    /// Whether to restore the weights of the best epoch at the end of training (early or
    /// not). Keras default: `False`.
    pub restore_best_weights: bool,
}

impl Default for EarlyStoppingConfig {
    fn default() -> Self {
        Self {
            monitor: "val_loss".to_string(),
            min_delta: 0.0,
            patience: 0,
            mode: Mode::Auto,
            baseline: None,
            restore_best_weights: false,
        }
    }
}

/// The mutable state of an [`EarlyStopping`], with Keras' attribute names. Serialize it
/// with the training checkpoint and give it back to [`EarlyStopping::from_state`] to resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStoppingState {
    /// Best monitored value so far; starts at `+inf` (min) or `-inf` (max). Serialized as a
    /// number, or as `"inf"` / `"-inf"` while no epoch has improved.
    #[serde(with = "serde_f64")]
    pub best: f64,
    /// Epochs since `wait` was last reset.
    pub wait: usize,
    /// Epoch of `best` (0 until an epoch improves).
    pub best_epoch: usize,
    /// Epoch at which training was stopped; 0 while it has not been (as in Keras).
    pub stopped_epoch: usize,
    /// Whether the caller was told to snapshot weights at least once (Keras'
    /// `best_weights is not None`). Always false without `restore_best_weights`.
    pub has_best_weights: bool,
}

/// What the training loop must do after an epoch, as decided by [`EarlyStopping`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EarlyStoppingAction {
    /// This epoch improved on the best value so far: it is the new best epoch.
    pub is_best: bool,
    /// Keep a copy of the current weights as "the best weights", replacing any previous one.
    /// Only ever true with `restore_best_weights`: on a new best epoch, and on the first
    /// monitored epoch (so that there is something to restore if nothing ever improves).
    pub snapshot_weights: bool,
    /// Stop training after this epoch.
    pub stop: bool,
}

/// Keras' `EarlyStopping` as a pure state machine; see the module documentation.
#[derive(Debug, Clone)]
pub struct EarlyStopping {
    config: EarlyStoppingConfig,
    direction: Direction,
    state: EarlyStoppingState,
}

impl EarlyStopping {
    /// A fresh callback (Keras `__init__` followed by `on_train_begin`).
    pub fn new(config: EarlyStoppingConfig) -> Result<Self, CallbackError> {
        validate(&config)?;
        let direction = config.mode.early_stopping_direction(&config.monitor);
        let state = EarlyStoppingState {
            best: direction.worst(),
            wait: 0,
            best_epoch: 0,
            stopped_epoch: 0,
            has_best_weights: false,
        };
        Ok(Self {
            config,
            direction,
            state,
        })
    }

    /// The callback of a resumed run: `config` as in the interrupted run, `state` as
    /// [`EarlyStopping::state`] returned after its last finished epoch.
    pub fn from_state(
        config: EarlyStoppingConfig,
        state: EarlyStoppingState,
    ) -> Result<Self, CallbackError> {
        let mut es = Self::new(config)?;
        check_resumed_best(NAME, state.best)?;
        es.state = state;
        Ok(es)
    }

    /// The state to save for resuming.
    pub fn state(&self) -> EarlyStoppingState {
        self.state.clone()
    }

    /// The configuration.
    pub fn config(&self) -> &EarlyStoppingConfig {
        &self.config
    }

    /// The direction the mode resolved to for this monitor.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Best monitored value so far, `None` while no epoch has improved.
    pub fn best(&self) -> Option<f64> {
        self.state.best.is_finite().then_some(self.state.best)
    }

    /// Keras `on_epoch_end(epoch, logs)`: `epoch` is the 0-based index of the epoch that just
    /// ended. On error (monitor missing from `logs`) the state is left unchanged.
    pub fn on_epoch_end(
        &mut self,
        epoch: usize,
        logs: &Logs,
    ) -> Result<EarlyStoppingAction, CallbackError> {
        let current = monitor_value(NAME, &self.config.monitor, logs)?;
        let restore = self.config.restore_best_weights;
        let st = &mut self.state;
        let mut action = EarlyStoppingAction::default();

        if restore && !st.has_best_weights {
            action.snapshot_weights = true;
            st.has_best_weights = true;
        }

        st.wait += 1;
        if self
            .direction
            .is_improvement(current, st.best, self.config.min_delta)
        {
            st.best = current;
            st.best_epoch = epoch;
            action.is_best = true;
            if restore {
                action.snapshot_weights = true;
            }
            let beats_baseline = self.config.baseline.is_none_or(|b| {
                self.direction
                    .is_improvement(current, b, self.config.min_delta)
            });
            if beats_baseline {
                st.wait = 0;
            }
        }

        if st.wait >= self.config.patience && epoch > 0 {
            st.stopped_epoch = epoch;
            action.stop = true;
        }
        Ok(action)
    }

    /// Keras 3 `on_train_end`: whether to load the kept weights (the best epoch's, see
    /// [`EarlyStoppingState::best_epoch`]) back into the model now that training is over;
    /// true with `restore_best_weights` once weights were kept, whether or not training
    /// stopped early.
    pub fn on_train_end(&self) -> bool {
        self.config.restore_best_weights && self.state.has_best_weights
    }
}

fn validate(config: &EarlyStoppingConfig) -> Result<(), CallbackError> {
    let invalid = |field, reason: &str| {
        Err(CallbackError::InvalidConfig {
            callback: NAME,
            field,
            reason: reason.to_string(),
        })
    };
    if config.monitor.is_empty() {
        return invalid("monitor", "is empty");
    }
    if !config.min_delta.is_finite() {
        return invalid("min_delta", "must be a finite number");
    }
    if config.baseline.is_some_and(f64::is_nan) {
        return invalid("baseline", "is NaN");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logs(key: &str, v: f64) -> Logs {
        let mut l = Logs::new();
        l.insert("loss".into(), 1.0);
        l.insert(key.into(), v);
        l
    }

    fn config(patience: usize) -> EarlyStoppingConfig {
        EarlyStoppingConfig {
            patience,
            ..Default::default()
        }
    }

    /// Runs `values` of `monitor` through `es` from epoch 0 until it says stop; returns the
    /// actions.
    fn run(es: &mut EarlyStopping, values: &[f64]) -> Vec<EarlyStoppingAction> {
        let monitor = es.config().monitor.clone();
        let mut out = vec![];
        for (epoch, &v) in values.iter().enumerate() {
            let a = es.on_epoch_end(epoch, &logs(&monitor, v)).unwrap();
            out.push(a);
            if a.stop {
                break;
            }
        }
        out
    }

    fn stop_epoch(actions: &[EarlyStoppingAction]) -> Option<usize> {
        actions.iter().position(|a| a.stop)
    }

    #[test]
    fn defaults_are_keras_defaults() {
        let c = EarlyStoppingConfig::default();
        assert_eq!(c.monitor, "val_loss");
        assert_eq!(c.min_delta, 0.0);
        assert_eq!(c.patience, 0);
        assert_eq!(c.mode, Mode::Auto);
        assert_eq!(c.baseline, None);
        assert!(!c.restore_best_weights);
        let es = EarlyStopping::new(c).unwrap();
        assert_eq!(es.direction(), Direction::Min);
        assert_eq!(es.state().best, f64::INFINITY);
        assert_eq!(es.best(), None);
    }

    #[test]
    fn patience_counts_epochs_without_improvement() {
        let mut es = EarlyStopping::new(config(2)).unwrap();
        let a = run(&mut es, &[1.0, 0.5, 0.75, 0.75, 0.25]);
        assert!(a[0].is_best && a[1].is_best && !a[2].is_best && !a[3].is_best);
        assert_eq!(stop_epoch(&a), Some(3));
        let st = es.state();
        assert_eq!(st.best, 0.5);
        assert_eq!(st.best_epoch, 1);
        assert_eq!(st.wait, 2);
        assert_eq!(st.stopped_epoch, 3);
    }

    #[test]
    fn improvement_resets_wait() {
        let mut es = EarlyStopping::new(config(2)).unwrap();
        let a = run(&mut es, &[1.0, 1.5, 0.5, 1.5, 0.25, 1.5, 1.5]);
        assert_eq!(stop_epoch(&a), Some(6));
        assert_eq!(es.state().best_epoch, 4);
    }

    #[test]
    fn never_stops_at_epoch_zero() {
        let mut es = EarlyStopping::new(config(0)).unwrap();
        let a = es.on_epoch_end(0, &logs("val_loss", f64::NAN)).unwrap();
        assert!(!a.stop);
        assert_eq!(es.state().wait, 1);
    }

    #[test]
    fn patience_zero_stops_at_epoch_one_even_when_improving() {
        // Keras 2.9: `wait >= patience` holds with wait == 0.
        let mut es = EarlyStopping::new(config(0)).unwrap();
        let a = run(&mut es, &[1.0, 0.5, 0.25]);
        assert_eq!(stop_epoch(&a), Some(1));
        assert!(a[1].is_best);
    }

    #[test]
    fn min_delta_in_min_mode() {
        let mut es = EarlyStopping::new(EarlyStoppingConfig {
            min_delta: 0.125,
            patience: 5,
            ..Default::default()
        })
        .unwrap();
        // 0.9375 is better than 1.0 by less than min_delta: no improvement.
        let a = run(&mut es, &[1.0, 0.9375, 0.875, 0.5]);
        assert_eq!(
            a.iter().map(|a| a.is_best).collect::<Vec<_>>(),
            [true, false, false, true]
        );
        assert_eq!(es.state().best, 0.5);
        assert_eq!(es.state().wait, 0);
    }

    #[test]
    fn min_delta_sign_is_ignored_and_applies_in_max_mode() {
        let mut es = EarlyStopping::new(EarlyStoppingConfig {
            monitor: "val_accuracy".into(),
            min_delta: -0.125,
            patience: 5,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(es.direction(), Direction::Max);
        let a = run(&mut es, &[0.5, 0.625, 0.75, 0.5]);
        assert_eq!(
            a.iter().map(|a| a.is_best).collect::<Vec<_>>(),
            [true, false, true, false]
        );
        assert_eq!(es.state().best, 0.75);
        assert_eq!(es.state().best_epoch, 2);
    }

    #[test]
    fn auto_mode_maximizes_val_accuracy() {
        let mut es = EarlyStopping::new(EarlyStoppingConfig {
            monitor: "val_accuracy".into(),
            patience: 2,
            ..Default::default()
        })
        .unwrap();
        let a = run(&mut es, &[0.5, 0.75, 0.625, 0.6875, 0.9]);
        assert_eq!(stop_epoch(&a), Some(3));
        assert_eq!(es.best(), Some(0.75));
        assert_eq!(es.state().best_epoch, 1);
    }

    #[test]
    fn baseline_not_beaten_stops_after_patience() {
        let mut es = EarlyStopping::new(EarlyStoppingConfig {
            baseline: Some(0.5),
            patience: 2,
            ..Default::default()
        })
        .unwrap();
        // Every epoch improves on the previous best but none on the baseline: wait grows.
        let a = run(&mut es, &[0.875, 0.75, 0.625, 0.5625]);
        assert!(a.iter().all(|a| a.is_best));
        assert_eq!(stop_epoch(&a), Some(1));
        // best starts at +inf, not at the baseline.
        assert_eq!(es.state().best, 0.75);
    }

    #[test]
    fn baseline_beaten_resets_wait() {
        let mut es = EarlyStopping::new(EarlyStoppingConfig {
            baseline: Some(0.5),
            patience: 2,
            ..Default::default()
        })
        .unwrap();
        let a = run(&mut es, &[0.875, 0.25, 0.375, 0.375, 0.375]);
        assert_eq!(es.state().wait, 2);
        assert_eq!(stop_epoch(&a), Some(3));
        // A value that beats the previous best and the baseline by less than min_delta does
        // not reset wait.
        let mut es = EarlyStopping::new(EarlyStoppingConfig {
            baseline: Some(0.5),
            min_delta: 0.25,
            patience: 3,
            ..Default::default()
        })
        .unwrap();
        run(&mut es, &[2.0, 0.375]);
        assert_eq!(es.state().best, 0.375);
        assert_eq!(es.state().wait, 2);
    }

    #[test]
    fn restores_at_the_end_of_training_stopped_early_or_not() {
        let cfg = EarlyStoppingConfig {
            patience: 2,
            restore_best_weights: true,
            ..Default::default()
        };
        // Keeps improving: never stops, snapshots every epoch, restores the last one.
        let mut es = EarlyStopping::new(cfg.clone()).unwrap();
        let a = run(&mut es, &[1.0, 0.75, 0.5, 0.25]);
        assert!(a.iter().all(|a| a.snapshot_weights && !a.stop));
        assert!(es.on_train_end());
        assert_eq!(es.state().best_epoch, 3);

        // Stops: restores the best epoch's weights.
        let mut es = EarlyStopping::new(cfg.clone()).unwrap();
        let a = run(&mut es, &[1.0, 0.5, 0.75, 0.75]);
        assert_eq!(
            a.iter().map(|a| a.snapshot_weights).collect::<Vec<_>>(),
            [true, true, false, false]
        );
        assert_eq!(stop_epoch(&a), Some(3));
        assert!(es.on_train_end());
        assert_eq!(es.state().best_epoch, 1);

        // Patience never runs out (Keras 3 restores anyway; Keras 2.9 kept the last weights).
        let mut es = EarlyStopping::new(EarlyStoppingConfig {
            patience: 10,
            ..cfg
        })
        .unwrap();
        let a = run(&mut es, &[1.0, 0.5, 0.75, 0.8, 0.9]);
        assert!(a.iter().all(|a| !a.stop));
        assert!(es.on_train_end());
        assert_eq!(es.state().best_epoch, 1);
    }

    #[test]
    fn first_epoch_is_kept_when_nothing_ever_improves() {
        let mut es = EarlyStopping::new(EarlyStoppingConfig {
            patience: 1,
            restore_best_weights: true,
            ..Default::default()
        })
        .unwrap();
        let a = run(&mut es, &[f64::NAN, f64::NAN, f64::NAN]);
        assert!(a[0].snapshot_weights && !a[0].is_best);
        assert!(a[1].stop && !a[1].snapshot_weights && es.on_train_end());
        assert_eq!(es.best(), None);
    }

    #[test]
    fn without_restore_best_weights_never_snapshots() {
        let mut es = EarlyStopping::new(config(1)).unwrap();
        let a = run(&mut es, &[1.0, 0.5, 2.0]);
        assert!(a.iter().all(|a| !a.snapshot_weights));
        assert_eq!(stop_epoch(&a), Some(2));
        assert!(!es.on_train_end());
        assert!(!es.state().has_best_weights);
    }

    #[test]
    fn missing_monitor_is_an_error_naming_the_keys() {
        let mut es = EarlyStopping::new(EarlyStoppingConfig {
            monitor: "val_los".into(),
            ..Default::default()
        })
        .unwrap();
        let before = es.state();
        let err = es.on_epoch_end(0, &logs("val_loss", 1.0)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("val_los`"), "{msg}");
        assert!(msg.contains("loss, val_loss"), "{msg}");
        assert_eq!(es.state(), before);
    }

    #[test]
    fn invalid_config_is_rejected() {
        for (cfg, field) in [
            (
                EarlyStoppingConfig {
                    monitor: String::new(),
                    ..Default::default()
                },
                "monitor",
            ),
            (
                EarlyStoppingConfig {
                    min_delta: f64::NAN,
                    ..Default::default()
                },
                "min_delta",
            ),
            (
                EarlyStoppingConfig {
                    baseline: Some(f64::NAN),
                    ..Default::default()
                },
                "baseline",
            ),
        ] {
            match EarlyStopping::new(cfg) {
                Err(CallbackError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected InvalidConfig for {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn resumed_run_continues_identically() {
        let cfg = EarlyStoppingConfig {
            monitor: "val_accuracy".into(),
            patience: 3,
            min_delta: 0.01,
            restore_best_weights: true,
            ..Default::default()
        };
        let values = [0.5, 0.6, 0.58, 0.7, 0.69, 0.68, 0.695, 0.71, 0.705, 0.7];
        let mut whole = EarlyStopping::new(cfg.clone()).unwrap();
        let expected = run(&mut whole, &values);

        for split in 0..expected.len() {
            let mut first = EarlyStopping::new(cfg.clone()).unwrap();
            let mut got = vec![];
            for (epoch, &v) in values.iter().enumerate().take(split) {
                got.push(first.on_epoch_end(epoch, &logs("val_accuracy", v)).unwrap());
            }
            let json = serde_json::to_string(&first.state()).unwrap();
            let state: EarlyStoppingState = serde_json::from_str(&json).unwrap();
            let mut resumed = EarlyStopping::from_state(cfg.clone(), state).unwrap();
            for (epoch, &v) in values.iter().enumerate().skip(split) {
                let a = resumed
                    .on_epoch_end(epoch, &logs("val_accuracy", v))
                    .unwrap();
                got.push(a);
                if a.stop {
                    break;
                }
            }
            assert_eq!(got, expected, "split at {split}");
            assert_eq!(resumed.state(), whole.state(), "split at {split}");
        }
    }

    #[test]
    fn fresh_state_serializes_infinite_best() {
        let es = EarlyStopping::new(EarlyStoppingConfig::default()).unwrap();
        let json = serde_json::to_string(&es.state()).unwrap();
        assert!(json.contains("\"best\":\"inf\""), "{json}");
        let back: EarlyStoppingState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, es.state());
    }

    #[test]
    fn config_deserializes_with_defaults() {
        let c: EarlyStoppingConfig =
            serde_json::from_str(r#"{"patience": 3, "mode": "max"}"#).unwrap();
        assert_eq!(c.patience, 3);
        assert_eq!(c.mode, Mode::Max);
        assert_eq!(c.monitor, "val_loss");
    }
}
