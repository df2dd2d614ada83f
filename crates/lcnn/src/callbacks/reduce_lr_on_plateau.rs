//! Learning-rate reduction on a plateau with the semantics of Keras 2.9's
//! `keras.callbacks.ReduceLROnPlateau`: when the monitored value has not improved for
//! `patience` epochs, multiply the learning rate by `factor` (not below `min_lr`), then wait
//! `cooldown` epochs before counting again.
//!
//! At the end of every epoch, [`ReduceLrOnPlateau::on_epoch_end`] does what Keras does:
//!
//! 1. in cooldown (`cooldown_counter > 0`): `cooldown_counter -= 1`, `wait = 0`;
//! 2. if the value improves on `best` by more than `min_delta` (`current < best - min_delta`
//!    when minimizing, `current > best + min_delta` when maximizing), it becomes `best` and
//!    `wait = 0`;
//! 3. else, out of cooldown: `wait += 1`; when `wait >= patience` and the learning rate is
//!    above `min_lr`, the new rate is `max(lr * factor, min_lr)`, `cooldown_counter =
//!    cooldown` and `wait = 0`.
//!
//! In auto mode the value is maximized when the monitor's name contains `acc` (Keras' rule for
//! this callback). The rate it changes is the optimizer's base rate: a time-based `decay`
//! still applies on top of it, as in Keras. The reference transcription is
//! `reference/reduce_lr.py` (fixture `tests/fixtures/reduce_lr.json`).
//!
//! As for [`super::EarlyStopping`], a monitor missing from the logs is an error here
//! ([`CallbackError::MissingMonitor`]) where Keras warns, and the state serializes so that a
//! resumed run continues exactly.

use serde::{Deserialize, Serialize};

use super::error::CallbackError;
use super::logs::{check_resumed_best, monitor_value, serde_f64, Direction, Logs, Mode};

const NAME: &str = "ReduceLROnPlateau";

/// The arguments of Keras' `ReduceLROnPlateau` (all but `verbose`); [`Default`] gives Keras'
/// defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReduceLrOnPlateauConfig {
    /// Quantity to monitor, a key of the epoch logs. Keras default: `"val_loss"`.
    pub monitor: String,
    /// Multiplier of the learning rate on a plateau, `0 < factor < 1`. Keras default: `0.1`.
    pub factor: f64,
    /// Epochs without improvement before the rate is reduced. Keras default: `10`.
    pub patience: usize,
    /// `Auto` maximizes when the monitor's name contains `acc`. Keras default: `"auto"`.
    pub mode: Mode,
    /// Minimum change that counts as an improvement, `>= 0`. Keras default: `1e-4`.
    pub min_delta: f64,
    /// Epochs to wait after a reduction before counting again. Keras default: `0`.
    pub cooldown: usize,
    /// Lower bound on the learning rate. Keras default: `0`.
    pub min_lr: f64,
}

impl Default for ReduceLrOnPlateauConfig {
    fn default() -> Self {
        Self {
            monitor: "val_loss".to_string(),
            factor: 0.1,
            patience: 10,
            mode: Mode::Auto,
            min_delta: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
        }
    }
}

/// The mutable state of a [`ReduceLrOnPlateau`], with Keras' attribute names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReduceLrOnPlateauState {
    /// Best monitored value so far; starts at `+inf` (min) or `-inf` (max).
    #[serde(with = "serde_f64")]
    pub best: f64,
    /// Epochs without improvement, out of cooldown, since the last reset.
    pub wait: usize,
    /// Epochs of cooldown left.
    pub cooldown_counter: usize,
}

/// Keras 2.9 `ReduceLROnPlateau` as a pure state machine; see the module documentation.
#[derive(Debug, Clone)]
pub struct ReduceLrOnPlateau {
    config: ReduceLrOnPlateauConfig,
    direction: Direction,
    state: ReduceLrOnPlateauState,
}

impl ReduceLrOnPlateau {
    /// A fresh callback (Keras `__init__` followed by `on_train_begin`).
    pub fn new(config: ReduceLrOnPlateauConfig) -> Result<Self, CallbackError> {
        validate(&config)?;
        let direction = config.mode.reduce_lr_direction(&config.monitor);
        let state = ReduceLrOnPlateauState {
            best: direction.worst(),
            wait: 0,
            cooldown_counter: 0,
        };
        Ok(Self {
            config,
            direction,
            state,
        })
    }

    /// The callback of a resumed run: `config` as in the interrupted run, `state` as
    /// [`ReduceLrOnPlateau::state`] returned after its last finished epoch.
    pub fn from_state(
        config: ReduceLrOnPlateauConfig,
        state: ReduceLrOnPlateauState,
    ) -> Result<Self, CallbackError> {
        let mut cb = Self::new(config)?;
        check_resumed_best(NAME, state.best)?;
        cb.state = state;
        Ok(cb)
    }

    /// The state to save for resuming.
    pub fn state(&self) -> ReduceLrOnPlateauState {
        self.state.clone()
    }

    /// The configuration.
    pub fn config(&self) -> &ReduceLrOnPlateauConfig {
        &self.config
    }

    /// Keras `on_epoch_end(epoch, logs)` for an optimizer whose base learning rate is `lr`:
    /// the new base rate when this epoch reduces it, else `None`. On error (monitor missing
    /// from `logs`) the state is left unchanged.
    pub fn on_epoch_end(&mut self, logs: &Logs, lr: f64) -> Result<Option<f64>, CallbackError> {
        let current = monitor_value(NAME, &self.config.monitor, logs)?;
        let c = &self.config;
        let st = &mut self.state;
        if st.cooldown_counter > 0 {
            st.cooldown_counter -= 1;
            st.wait = 0;
        }
        // Keras writes `current < best - min_delta`; `is_improvement` moves the delta to the
        // other side, the same test up to a rounding tie.
        if self.direction.is_improvement(current, st.best, c.min_delta) {
            st.best = current;
            st.wait = 0;
            return Ok(None);
        }
        if st.cooldown_counter > 0 {
            return Ok(None);
        }
        st.wait += 1;
        // Keras compares the float32 variable with `np.float32(min_lr)`.
        if st.wait >= c.patience && (lr as f32) > (c.min_lr as f32) {
            st.cooldown_counter = c.cooldown;
            st.wait = 0;
            return Ok(Some((lr * c.factor).max(c.min_lr)));
        }
        Ok(None)
    }
}

fn validate(config: &ReduceLrOnPlateauConfig) -> Result<(), CallbackError> {
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
    // Keras refuses factor >= 1; a factor <= 0 would zero or negate the rate.
    if !(config.factor > 0.0 && config.factor < 1.0) {
        return invalid("factor", "must be > 0 and < 1");
    }
    if !(config.min_delta.is_finite() && config.min_delta >= 0.0) {
        return invalid("min_delta", "must be a finite number >= 0");
    }
    if !(config.min_lr.is_finite() && config.min_lr >= 0.0) {
        return invalid("min_lr", "must be a finite number >= 0");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logs(key: &str, v: f64) -> Logs {
        let mut l = Logs::new();
        l.insert(key.into(), v);
        l
    }

    /// Runs `values` of val_loss from `lr`; returns the base rate after each epoch.
    fn run(config: ReduceLrOnPlateauConfig, mut lr: f64, values: &[f64]) -> Vec<f64> {
        let mut cb = ReduceLrOnPlateau::new(config).unwrap();
        let monitor = cb.config().monitor.clone();
        values
            .iter()
            .map(|&v| {
                if let Some(new) = cb.on_epoch_end(&logs(&monitor, v), lr).unwrap() {
                    lr = new;
                }
                lr
            })
            .collect()
    }

    /// Every case of `reference/reduce_lr.py` (Keras 2.9's callback transcribed, checked
    /// against Keras' own where it is installed): the rate, `wait`, `cooldown_counter` and
    /// `best` after each epoch. Keras keeps the rate in float32, lcnn in f64: rates agree to a
    /// float32 rounding.
    #[test]
    fn matches_the_keras_reference() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reduce_lr.json");
        let fx: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let cases = fx["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 8);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let config: ReduceLrOnPlateauConfig =
                serde_json::from_value(case["config"].clone()).unwrap();
            let mut cb = ReduceLrOnPlateau::new(config.clone()).unwrap();
            let mut lr = case["lr0"].as_f64().unwrap();
            let f = |k: &str, i: usize| case[k][i].as_f64().unwrap();
            for (i, v) in case["values"].as_array().unwrap().iter().enumerate() {
                let l = logs(&config.monitor, v.as_f64().unwrap());
                if let Some(new) = cb.on_epoch_end(&l, lr).unwrap() {
                    lr = new;
                }
                let st = cb.state();
                let at = format!("{name}, epoch {i}");
                assert!(
                    (lr - f("lr", i)).abs() <= 1e-6 * f("lr", i),
                    "{at}: lr {lr}"
                );
                assert_eq!(st.wait as f64, f("wait", i), "{at}: wait");
                assert_eq!(
                    st.cooldown_counter as f64,
                    f("cooldown_counter", i),
                    "{at}: cooldown"
                );
                assert_eq!(st.best, f("best", i), "{at}: best");
            }
        }
    }

    #[test]
    fn defaults_are_keras_defaults() {
        let c = ReduceLrOnPlateauConfig::default();
        assert_eq!(
            (c.monitor.as_str(), c.factor, c.patience, c.mode),
            ("val_loss", 0.1, 10, Mode::Auto)
        );
        assert_eq!((c.min_delta, c.cooldown, c.min_lr), (1e-4, 0, 0.0));
        let cb = ReduceLrOnPlateau::new(c).unwrap();
        assert_eq!(cb.state().best, f64::INFINITY);
    }

    #[test]
    fn reduces_after_patience_epochs_without_improvement() {
        let c = ReduceLrOnPlateauConfig {
            factor: 0.5,
            patience: 2,
            ..Default::default()
        };
        // Improves, then two flat epochs: halve; two more flat epochs: halve again.
        let lrs = run(c, 1.0, &[1.0, 1.0, 1.0, 1.0, 1.0, 0.5]);
        assert_eq!(lrs, [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]);
    }

    #[test]
    fn cooldown_suspends_counting_and_min_lr_bounds_the_rate() {
        let c = ReduceLrOnPlateauConfig {
            factor: 0.5,
            patience: 1,
            cooldown: 2,
            min_lr: 0.3,
            ..Default::default()
        };
        // Epoch 1 reduces (1 -> 0.5) and sets the cooldown to 2; epochs 2 and 3 each take one
        // off at their start, so epoch 2 does not count and epoch 3 does: it reduces to the
        // floor 0.3 (not 0.25). At the floor nothing more happens.
        let lrs = run(c, 1.0, &[1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]);
        assert_eq!(lrs, [1.0, 0.5, 0.5, 0.3, 0.3, 0.3, 0.3, 0.3]);
    }

    #[test]
    fn auto_mode_maximizes_names_containing_acc() {
        let c = ReduceLrOnPlateauConfig {
            monitor: "val_accuracy".into(),
            patience: 1,
            ..Default::default()
        };
        let lrs = run(c, 1.0, &[0.5, 0.75, 0.75]);
        assert_eq!(lrs, [1.0, 1.0, 0.1]);
        assert_eq!(
            Mode::Auto.reduce_lr_direction("top_k_acc_gap"),
            Direction::Max
        );
    }

    #[test]
    fn bad_configs_and_missing_monitors_are_errors() {
        for bad in [
            ReduceLrOnPlateauConfig {
                factor: 1.0,
                ..Default::default()
            },
            ReduceLrOnPlateauConfig {
                factor: 0.0,
                ..Default::default()
            },
            ReduceLrOnPlateauConfig {
                min_lr: -1.0,
                ..Default::default()
            },
            ReduceLrOnPlateauConfig {
                monitor: String::new(),
                ..Default::default()
            },
        ] {
            assert!(ReduceLrOnPlateau::new(bad.clone()).is_err(), "{bad:?}");
        }
        let mut cb = ReduceLrOnPlateau::new(Default::default()).unwrap();
        let before = cb.state();
        assert!(matches!(
            cb.on_epoch_end(&logs("loss", 1.0), 1.0),
            Err(CallbackError::MissingMonitor { .. })
        ));
        assert_eq!(cb.state(), before);
    }

    #[test]
    fn state_round_trips_and_resumes() {
        let c = ReduceLrOnPlateauConfig {
            patience: 1,
            ..Default::default()
        };
        let mut a = ReduceLrOnPlateau::new(c.clone()).unwrap();
        a.on_epoch_end(&logs("val_loss", 1.0), 1.0).unwrap();
        let json = serde_json::to_string(&a.state()).unwrap();
        let mut b = ReduceLrOnPlateau::from_state(c, serde_json::from_str(&json).unwrap()).unwrap();
        let l = logs("val_loss", 2.0);
        assert_eq!(a.on_epoch_end(&l, 1.0).unwrap(), Some(0.1));
        assert_eq!(b.on_epoch_end(&l, 1.0).unwrap(), Some(0.1));
    }
}
