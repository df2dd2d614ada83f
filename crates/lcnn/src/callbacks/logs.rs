//! Epoch logs and the direction of a monitored quantity.
//!
//! [`Logs`] maps a quantity's name to its value at the end of an epoch, as the `logs` dict
//! that Keras passes to `on_epoch_end`. [`Mode`] is the `mode` argument of Keras' callbacks
//! (`"auto"`, `"min"`, `"max"`); [`Direction`] is what it resolves to for one monitor.
//!
//! Keras 2.9 resolves `"auto"` differently in its callbacks, and each callback here follows
//! its own Keras counterpart:
//! - `EarlyStopping`: maximize when the monitor *ends with* `acc`, `accuracy` or `auc`
//!   ([`Mode::early_stopping_direction`]);
//! - `ModelCheckpoint`: maximize when the monitor *contains* `acc` or starts with `fmeasure`
//!   ([`Mode::checkpoint_direction`]);
//! - `ReduceLROnPlateau`: maximize when the monitor *contains* `acc`
//!   ([`Mode::reduce_lr_direction`]).
//!
//! All three agree on every key that lcnn logs (`loss`, `accuracy`, `val_loss`, `val_accuracy`,
//! `lr`, `seconds`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::CallbackError;

/// The quantities logged at the end of one epoch, by name (see the constants in [`keys`]).
/// A quantity that was not measured (e.g. `val_loss` without validation data) is absent.
pub type Logs = BTreeMap<String, f64>;

/// The names of the quantities that lcnn's training loop logs.
pub mod keys {
    /// Mean training loss over the epoch.
    pub const LOSS: &str = "loss";
    /// Training accuracy over the epoch, in `[0, 1]`.
    pub const ACCURACY: &str = "accuracy";
    /// Loss on the validation data.
    pub const VAL_LOSS: &str = "val_loss";
    /// Accuracy on the validation data, in `[0, 1]`.
    pub const VAL_ACCURACY: &str = "val_accuracy";
    /// Equal error rate on the validation data, in `[0, 1]` (two-class audio runs).
    pub const VAL_EER: &str = "val_eer";
    /// Learning rate used during the epoch.
    pub const LR: &str = "lr";
    /// Wall-clock duration of the epoch (training and validation), in seconds.
    pub const SECONDS: &str = "seconds";
    /// All of them, in the column order of `history.csv`.
    pub const ALL: [&str; 6] = [LOSS, ACCURACY, VAL_LOSS, VAL_ACCURACY, LR, SECONDS];
}

/// How a callback decides whether a new value of the monitored quantity is better: Keras'
/// `mode` argument. The default is [`Mode::Auto`], as in Keras.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Infer the direction from the monitor's name (see the module documentation).
    #[default]
    Auto,
    /// Lower is better.
    Min,
    /// Higher is better.
    Max,
}

/// Whether lower or higher values of a monitored quantity are better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Lower is better (Keras `np.less`).
    Min,
    /// Higher is better (Keras `np.greater`).
    Max,
}

impl Mode {
    /// The direction Keras 2.9's `EarlyStopping` uses: in auto mode, maximize when the
    /// monitor ends with `acc`, `accuracy` or `auc`, else minimize.
    pub fn early_stopping_direction(self, monitor: &str) -> Direction {
        match self {
            Mode::Min => Direction::Min,
            Mode::Max => Direction::Max,
            Mode::Auto => {
                if monitor.ends_with("acc")
                    || monitor.ends_with("accuracy")
                    || monitor.ends_with("auc")
                {
                    Direction::Max
                } else {
                    Direction::Min
                }
            }
        }
    }

    /// The direction Keras 2.9's `ModelCheckpoint` uses: in auto mode, maximize when the
    /// monitor contains `acc` or starts with `fmeasure`, else minimize.
    pub fn checkpoint_direction(self, monitor: &str) -> Direction {
        match self {
            Mode::Min => Direction::Min,
            Mode::Max => Direction::Max,
            Mode::Auto => {
                if monitor.contains("acc") || monitor.starts_with("fmeasure") {
                    Direction::Max
                } else {
                    Direction::Min
                }
            }
        }
    }

    /// The direction Keras 2.9's `ReduceLROnPlateau` uses: in auto mode, maximize when the
    /// monitor contains `acc`, else minimize.
    pub fn reduce_lr_direction(self, monitor: &str) -> Direction {
        match self {
            Mode::Min => Direction::Min,
            Mode::Max => Direction::Max,
            Mode::Auto if monitor.contains("acc") => Direction::Max,
            Mode::Auto => Direction::Min,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Auto => "auto",
            Mode::Min => "min",
            Mode::Max => "max",
        })
    }
}

impl FromStr for Mode {
    type Err = String;

    /// Parses `auto`, `min` or `max` (the spellings Keras accepts).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Mode::Auto),
            "min" => Ok(Mode::Min),
            "max" => Ok(Mode::Max),
            other => Err(format!(
                "unknown mode `{other}`: expected `auto`, `min` or `max`"
            )),
        }
    }
}

impl Direction {
    /// The value a "best so far" starts from: `+inf` when minimizing, `-inf` when maximizing
    /// (Keras `np.Inf` / `-np.Inf`).
    pub fn worst(self) -> f64 {
        match self {
            Direction::Min => f64::INFINITY,
            Direction::Max => f64::NEG_INFINITY,
        }
    }

    /// Keras' `_is_improvement`: `monitor_op(current - min_delta, reference)` where
    /// `min_delta` is `|min_delta|` when maximizing and `-|min_delta|` when minimizing. So
    /// `current` must beat `reference` by strictly more than `|min_delta|`. A NaN never
    /// improves on anything, and nothing improves on a NaN reference.
    pub fn is_improvement(self, current: f64, reference: f64, min_delta: f64) -> bool {
        let delta = min_delta.abs();
        match self {
            Direction::Min => current + delta < reference,
            Direction::Max => current - delta > reference,
        }
    }
}

/// The value of `monitor` in `logs`, or [`CallbackError::MissingMonitor`] naming the keys
/// that are there.
pub(crate) fn monitor_value(
    callback: &'static str,
    monitor: &str,
    logs: &Logs,
) -> Result<f64, CallbackError> {
    logs.get(monitor)
        .copied()
        .ok_or_else(|| CallbackError::MissingMonitor {
            callback,
            monitor: monitor.to_string(),
            available: logs.keys().cloned().collect(),
        })
}

/// A resumed callback's `best` must be a number or an infinity: a NaN would never be beaten.
pub(crate) fn check_resumed_best(callback: &'static str, best: f64) -> Result<(), CallbackError> {
    if best.is_nan() {
        return Err(CallbackError::InvalidConfig {
            callback,
            field: "state.best",
            reason: "is NaN".to_string(),
        });
    }
    Ok(())
}

/// Serde for an `f64` that may be infinite or NaN: finite values as numbers, the others as
/// the strings `"inf"`, `"-inf"` and `"NaN"`. (`serde_json` writes non-finite floats as
/// `null`, which would lose a best value of `+inf` or `-inf` in a saved state.)
pub(crate) mod serde_f64 {
    use serde::de::{self, Deserializer, Visitor};
    use serde::Serializer;
    use std::fmt;

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else if v.is_nan() {
            s.serialize_str("NaN")
        } else if *v > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }

    struct F64Visitor;

    impl Visitor<'_> for F64Visitor {
        type Value = f64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number, or one of \"inf\", \"-inf\", \"NaN\"")
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
            match v {
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                "NaN" => Ok(f64::NAN),
                other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
            }
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        d.deserialize_any(F64Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_mode_for_lcnn_keys_agrees_in_both_rules() {
        for (key, dir) in [
            ("loss", Direction::Min),
            ("val_loss", Direction::Min),
            ("accuracy", Direction::Max),
            ("val_accuracy", Direction::Max),
            ("lr", Direction::Min),
            ("seconds", Direction::Min),
        ] {
            assert_eq!(Mode::Auto.early_stopping_direction(key), dir, "{key}");
            assert_eq!(Mode::Auto.checkpoint_direction(key), dir, "{key}");
        }
    }

    #[test]
    fn auto_mode_rules_differ_as_in_keras() {
        // EarlyStopping: suffix rule.
        assert_eq!(
            Mode::Auto.early_stopping_direction("val_auc"),
            Direction::Max
        );
        assert_eq!(
            Mode::Auto.early_stopping_direction("val_acc"),
            Direction::Max
        );
        assert_eq!(
            Mode::Auto.early_stopping_direction("accuracy_gap"),
            Direction::Min
        );
        assert_eq!(
            Mode::Auto.early_stopping_direction("fmeasure"),
            Direction::Min
        );
        // ModelCheckpoint: substring / prefix rule.
        assert_eq!(
            Mode::Auto.checkpoint_direction("accuracy_gap"),
            Direction::Max
        );
        assert_eq!(
            Mode::Auto.checkpoint_direction("fmeasure_1"),
            Direction::Max
        );
        assert_eq!(Mode::Auto.checkpoint_direction("val_auc"), Direction::Min);
    }

    #[test]
    fn explicit_modes_override_the_name() {
        assert_eq!(
            Mode::Max.early_stopping_direction("val_loss"),
            Direction::Max
        );
        assert_eq!(
            Mode::Min.checkpoint_direction("val_accuracy"),
            Direction::Min
        );
    }

    #[test]
    fn mode_parses_and_prints() {
        for m in [Mode::Auto, Mode::Min, Mode::Max] {
            assert_eq!(m.to_string().parse::<Mode>().unwrap(), m);
        }
        assert!("Max".parse::<Mode>().is_err());
        assert_eq!(Mode::default(), Mode::Auto);
    }

    #[test]
    fn improvement_needs_more_than_min_delta() {
        // Dyadic values so that the sums are exact.
        let d = Direction::Min;
        assert!(d.is_improvement(0.75, 1.0, 0.0));
        assert!(!d.is_improvement(1.0, 1.0, 0.0));
        assert!(!d.is_improvement(0.75, 1.0, 0.25)); // 0.75 + 0.25 is not < 1.0
        assert!(d.is_improvement(0.5, 1.0, 0.25));
        assert!(d.is_improvement(0.5, 1.0, -0.25)); // the sign of min_delta is ignored
        assert!(!d.is_improvement(0.75, 1.0, -0.25));
        let d = Direction::Max;
        assert!(d.is_improvement(0.75, 0.5, 0.125));
        assert!(!d.is_improvement(0.625, 0.5, 0.125)); // 0.625 - 0.125 is not > 0.5
        assert!(d.is_improvement(0.0, d.worst(), 0.0));
        assert!(!d.is_improvement(f64::NAN, d.worst(), 0.0));
        assert!(!d.is_improvement(1.0, f64::NAN, 0.0));
    }

    #[test]
    fn monitor_value_error_lists_keys() {
        let mut logs = Logs::new();
        logs.insert("loss".into(), 0.5);
        assert_eq!(monitor_value("X", "loss", &logs).unwrap(), 0.5);
        match monitor_value("X", "val_loss", &logs) {
            Err(CallbackError::MissingMonitor {
                monitor, available, ..
            }) => {
                assert_eq!(monitor, "val_loss");
                assert_eq!(available, vec!["loss".to_string()]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Wrap {
        #[serde(with = "serde_f64")]
        v: f64,
    }

    #[test]
    fn non_finite_floats_round_trip_through_json() {
        for v in [f64::INFINITY, f64::NEG_INFINITY, 0.125, -3.0, 1e300] {
            let s = serde_json::to_string(&Wrap { v }).unwrap();
            assert_eq!(serde_json::from_str::<Wrap>(&s).unwrap().v, v, "{s}");
        }
        let s = serde_json::to_string(&Wrap { v: f64::NAN }).unwrap();
        assert!(serde_json::from_str::<Wrap>(&s).unwrap().v.is_nan());
        assert_eq!(serde_json::from_str::<Wrap>("{\"v\":3}").unwrap().v, 3.0);
        assert!(serde_json::from_str::<Wrap>("{\"v\":\"big\"}").is_err());
    }
}
