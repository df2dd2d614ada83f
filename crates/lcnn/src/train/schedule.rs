//! Learning-rate schedules as Keras' `keras.optimizers.schedules` defines them, plus a one-cycle
//! schedule (Smith & Topin, [arXiv:1708.07120](https://arxiv.org/abs/1708.07120), as PyTorch's
//! `OneCycleLR`). A schedule maps the optimizer's iteration count (updates already applied, 0
//! for the first update, as Keras' `optimizer.iterations`) to the learning rate of that update;
//! the optimizer's `learning_rate` is the schedule's `initial_learning_rate` (one-cycle: its
//! peak). Adam's bias correction and ReduceLROnPlateau are applied on top by the caller.
//!
//! - `cosine`: [`CosineDecay`](https://keras.io/api/optimizers/learning_rate_schedules/cosine_decay/)
//!   with `alpha`, and `warmup_target` / `warmup_steps` (a linear warm-up from the initial rate
//!   to `warmup_target`, then the cosine from `warmup_target`), clamped after the last step.
//! - `piecewise`: `PiecewiseConstantDecay(boundaries, values)`: `values[i]` while
//!   `boundaries[i-1] < step <= boundaries[i]`.
//! - `exponential`: `ExponentialDecay`: `lr * rate^(step / decay_steps)` (floored exponent when
//!   `staircase`).
//! - `inverse-time`: `InverseTimeDecay`: `lr / (1 + rate * step / decay_steps)`; with
//!   `decay_steps = 1` it is the legacy optimizer argument `decay` (`--decay`).
//! - `one-cycle`: a cosine rise from `lr / div_factor` to `lr` over `pct_start` of the steps,
//!   then a cosine fall to `lr / div_factor / final_div_factor`.
//!
//! `decay_steps` / `total_steps` left out mean "the whole run" (epochs x steps per epoch),
//! resolved when training starts. Reference values: `reference/schedules.py` (checked against
//! Keras' own classes and PyTorch's `OneCycleLR`).

use serde::{Deserialize, Serialize};

/// A learning-rate schedule (Keras names and defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum LrSchedule {
    /// Keras `CosineDecay`.
    Cosine {
        /// Steps of the cosine (after the warm-up); `None`: the rest of the run.
        decay_steps: Option<u64>,
        /// Floor as a fraction of the rate it decays from (0).
        alpha: f64,
        /// Rate reached at the end of the warm-up (`None`: no warm-up).
        warmup_target: Option<f64>,
        /// Warm-up steps (0).
        warmup_steps: u64,
    },
    /// Keras `PiecewiseConstantDecay`.
    Piecewise {
        /// Step boundaries, increasing.
        boundaries: Vec<u64>,
        /// One more value than boundaries.
        values: Vec<f64>,
    },
    /// Keras `ExponentialDecay`.
    Exponential {
        /// Steps per factor of `decay_rate`; `None`: the whole run.
        decay_steps: Option<u64>,
        /// The factor.
        decay_rate: f64,
        /// Floor `step / decay_steps`.
        staircase: bool,
    },
    /// Keras `InverseTimeDecay`.
    InverseTime {
        /// Steps per unit of `decay_rate`; `None`: the whole run.
        decay_steps: Option<u64>,
        /// The rate.
        decay_rate: f64,
        /// Floor `step / decay_steps`.
        staircase: bool,
    },
    /// PyTorch's `OneCycleLR` (cosine annealing, two phases, no momentum cycling).
    OneCycle {
        /// Steps of the cycle; `None`: the whole run.
        total_steps: Option<u64>,
        /// Fraction of the steps spent rising (0.3).
        pct_start: f64,
        /// Initial rate = peak / `div_factor` (25).
        div_factor: f64,
        /// Final rate = initial / `final_div_factor` (1e4).
        final_div_factor: f64,
    },
}

impl LrSchedule {
    /// The names `--lr-schedule` takes.
    pub const NAMES: &'static str = "cosine, piecewise, exponential, inverse-time or one-cycle";

    /// The rate of the update after `step` updates, from the optimizer's rate `lr`; `run_steps`
    /// stands in for the steps left out (`decay_steps: None`).
    pub fn lr(&self, lr: f64, step: u64, run_steps: u64) -> f64 {
        let or_run = |s: &Option<u64>| s.unwrap_or(run_steps).max(1) as f64;
        let step = step as f64;
        match self {
            LrSchedule::Cosine {
                decay_steps,
                alpha,
                warmup_target,
                warmup_steps,
            } => {
                let warmup = *warmup_steps as f64;
                let decay = match decay_steps {
                    Some(s) => (*s).max(1) as f64,
                    None => (run_steps as f64 - warmup).max(1.0),
                };
                let cosine = |s: f64, from: f64| {
                    let done = s.min(decay) / decay;
                    from * ((1.0 - alpha) * 0.5 * (1.0 + (std::f64::consts::PI * done).cos())
                        + alpha)
                };
                match warmup_target {
                    None => cosine(step, lr),
                    Some(target) if step < warmup => lr + (target - lr) * step / warmup,
                    Some(target) => cosine(step - warmup, *target),
                }
            }
            LrSchedule::Piecewise { boundaries, values } => {
                let i = boundaries.iter().take_while(|b| step > **b as f64).count();
                values[i]
            }
            LrSchedule::Exponential {
                decay_steps,
                decay_rate,
                staircase,
            } => lr * decay_rate.powf(exponent(step, or_run(decay_steps), *staircase)),
            LrSchedule::InverseTime {
                decay_steps,
                decay_rate,
                staircase,
            } => lr / (1.0 + decay_rate * exponent(step, or_run(decay_steps), *staircase)),
            LrSchedule::OneCycle {
                total_steps,
                pct_start,
                div_factor,
                final_div_factor,
            } => {
                let total = or_run(total_steps);
                let initial = lr / div_factor;
                let last = initial / final_div_factor;
                let peak_at = pct_start * total - 1.0;
                let anneal = |from: f64, to: f64, pct: f64| {
                    to + (from - to) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0)
                };
                if step <= peak_at {
                    anneal(initial, lr, step / peak_at.max(f64::MIN_POSITIVE))
                } else {
                    let pct = (step - peak_at) / (total - 1.0 - peak_at);
                    anneal(lr, last, pct.min(1.0))
                }
            }
        }
    }

    /// The `--lr-schedule` name.
    pub fn name(&self) -> &'static str {
        match self {
            LrSchedule::Cosine { .. } => "cosine",
            LrSchedule::Piecewise { .. } => "piecewise",
            LrSchedule::Exponential { .. } => "exponential",
            LrSchedule::InverseTime { .. } => "inverse-time",
            LrSchedule::OneCycle { .. } => "one-cycle",
        }
    }

    /// Checks the arguments and names the bad one.
    pub fn validate(&self) -> Result<(), String> {
        // Named by the `lcnn train` flag that sets it (Keras' argument, dashed).
        let bad = |name: &str, v: &dyn std::fmt::Display, expected: &str| {
            Err(format!(
                "--{} {v}: out of range for --lr-schedule {}; expected {expected}",
                name.replace('_', "-"),
                self.name()
            ))
        };
        let list = |v: &[f64]| {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let positive_steps = |s: &Option<u64>| match s {
            Some(0) => bad("decay_steps", &0, "at least 1 step"),
            _ => Ok(()),
        };
        match self {
            LrSchedule::Cosine {
                decay_steps,
                alpha,
                warmup_target,
                ..
            } => {
                positive_steps(decay_steps)?;
                if !(0.0..=1.0).contains(alpha) {
                    return bad("alpha", alpha, "a fraction in [0, 1]");
                }
                match warmup_target {
                    Some(t) if !(t.is_finite() && *t > 0.0) => {
                        bad("warmup_target", t, "a positive rate")
                    }
                    _ => Ok(()),
                }
            }
            LrSchedule::Piecewise { boundaries, values } => {
                if values.len() != boundaries.len() + 1 {
                    return bad(
                        "values",
                        &list(values),
                        &format!(
                            "{} values for {} boundaries",
                            boundaries.len() + 1,
                            boundaries.len()
                        ),
                    );
                }
                if boundaries.windows(2).any(|w| w[0] >= w[1]) {
                    let b: Vec<String> = boundaries.iter().map(|b| b.to_string()).collect();
                    return bad("boundaries", &b.join(","), "increasing steps");
                }
                match values.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
                    Some(v) => bad("values", v, "rates >= 0"),
                    None => Ok(()),
                }
            }
            LrSchedule::Exponential {
                decay_steps,
                decay_rate,
                ..
            }
            | LrSchedule::InverseTime {
                decay_steps,
                decay_rate,
                ..
            } => {
                positive_steps(decay_steps)?;
                if decay_rate.is_finite() && *decay_rate >= 0.0 {
                    Ok(())
                } else {
                    bad("decay_rate", decay_rate, "a rate >= 0")
                }
            }
            LrSchedule::OneCycle {
                total_steps,
                pct_start,
                div_factor,
                final_div_factor,
            } => {
                positive_steps(total_steps)?;
                if !(*pct_start > 0.0 && *pct_start < 1.0) {
                    return bad("pct_start", pct_start, "a fraction in (0, 1)");
                }
                if !(*div_factor >= 1.0 && *final_div_factor >= 1.0) {
                    let (name, v) = match *div_factor >= 1.0 {
                        true => ("final_div_factor", final_div_factor),
                        false => ("div_factor", div_factor),
                    };
                    return bad(name, v, "a factor >= 1");
                }
                Ok(())
            }
        }
    }
}

fn exponent(step: f64, decay_steps: f64, staircase: bool) -> f64 {
    let p = step / decay_steps;
    if staircase {
        p.floor()
    } else {
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> serde_json::Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schedules.json");
        serde_json::from_str(&std::fs::read_to_string(path).expect(path)).expect("schedules.json")
    }

    fn schedule_of(name: &str, p: &serde_json::Value) -> LrSchedule {
        let steps = |k: &str| p[k].as_u64();
        let f = |k: &str| p[k].as_f64().unwrap_or_else(|| panic!("{name}: {k}"));
        match name {
            "cosine" => LrSchedule::Cosine {
                decay_steps: steps("decay_steps"),
                alpha: f("alpha"),
                warmup_target: p["warmup_target"].as_f64(),
                warmup_steps: steps("warmup_steps").unwrap_or(0),
            },
            "piecewise" => LrSchedule::Piecewise {
                boundaries: p["boundaries"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .collect(),
                values: p["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect(),
            },
            "exponential" => LrSchedule::Exponential {
                decay_steps: steps("decay_steps"),
                decay_rate: f("decay_rate"),
                staircase: p["staircase"].as_bool().unwrap(),
            },
            "inverse_time" => LrSchedule::InverseTime {
                decay_steps: steps("decay_steps"),
                decay_rate: f("decay_rate"),
                staircase: p["staircase"].as_bool().unwrap(),
            },
            "one_cycle" => LrSchedule::OneCycle {
                total_steps: steps("total_steps"),
                pct_start: f("pct_start"),
                div_factor: f("div_factor"),
                final_div_factor: f("final_div_factor"),
            },
            other => panic!("unknown schedule {other}"),
        }
    }

    #[test]
    fn schedules_match_the_keras_reference() {
        let fx = fixture();
        let cases = fx["cases"].as_array().unwrap();
        let mut kinds = std::collections::BTreeSet::new();
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let kind = case["schedule"].as_str().unwrap();
            kinds.insert(kind.to_string());
            let s = schedule_of(kind, &case["params"]);
            s.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
            let lr0 = case["initial_learning_rate"].as_f64().unwrap();
            let steps = case["steps"].as_array().unwrap();
            let want = case["lr"].as_array().unwrap();
            assert_eq!(steps.len(), want.len(), "{name}");
            for (step, want) in steps.iter().zip(want) {
                let (step, want) = (step.as_u64().unwrap(), want.as_f64().unwrap());
                // The run length stands in only for steps the fixture leaves out: a value that
                // must never be used.
                let got = s.lr(lr0, step, 7_777_777);
                assert!(
                    (got - want).abs() <= 1e-12 + 1e-9 * want.abs(),
                    "{name} at step {step}: {got} vs {want}"
                );
            }
        }
        for kind in [
            "cosine",
            "piecewise",
            "exponential",
            "inverse_time",
            "one_cycle",
        ] {
            assert!(kinds.contains(kind), "the fixture has no {kind} case");
        }
    }

    #[test]
    fn steps_left_out_mean_the_whole_run() {
        let cos = LrSchedule::Cosine {
            decay_steps: None,
            alpha: 0.0,
            warmup_target: Some(1.0),
            warmup_steps: 10,
        };
        assert_eq!(cos.lr(0.0, 0, 110), 0.0);
        assert!((cos.lr(0.0, 5, 110) - 0.5).abs() < 1e-12);
        assert!((cos.lr(0.0, 60, 110) - 0.5).abs() < 1e-12);
        assert!(cos.lr(0.0, 110, 110).abs() < 1e-12);
        let one = LrSchedule::OneCycle {
            total_steps: None,
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
        };
        assert!((one.lr(1.0, 0, 100) - 0.04).abs() < 1e-12);
        assert!((one.lr(1.0, 29, 100) - 1.0).abs() < 1e-12);
        assert!((one.lr(1.0, 99, 100) - 0.04e-4).abs() < 1e-15);
    }

    #[test]
    fn bad_arguments_are_named() {
        let p = LrSchedule::Piecewise {
            boundaries: vec![10, 5],
            values: vec![1.0, 0.5, 0.1],
        };
        assert_eq!(
            p.validate().unwrap_err(),
            "--boundaries 10,5: out of range for --lr-schedule piecewise; expected increasing steps"
        );
        let p = LrSchedule::Piecewise {
            boundaries: vec![10],
            values: vec![1.0],
        };
        assert!(p
            .validate()
            .unwrap_err()
            .contains("2 values for 1 boundaries"));
        let c = LrSchedule::OneCycle {
            total_steps: Some(0),
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
        };
        assert_eq!(
            c.validate().unwrap_err(),
            "--decay-steps 0: out of range for --lr-schedule one-cycle; expected at least 1 step"
        );
        let c = LrSchedule::Cosine {
            decay_steps: None,
            alpha: 3.0,
            warmup_target: None,
            warmup_steps: 0,
        };
        assert!(c
            .validate()
            .unwrap_err()
            .starts_with("--alpha 3: out of range"));
    }
}
