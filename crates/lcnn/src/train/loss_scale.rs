//! Dynamic loss scaling for f16 mixed precision, as Keras' `LossScaleOptimizer`
//! ([Micikevicius et al., "Mixed Precision Training", arXiv:1710.03740](https://arxiv.org/abs/1710.03740)).
//!
//! Small gradients underflow in f16, so the loss is multiplied by a scale before the backward
//! pass and the gradients divided by it before the optimizer step
//! ([`crate::weights::unscale_gradients`]). When a gradient overflows (is infinite or NaN) the
//! step is skipped and the scale halved; after `growth_steps` finite steps in a row it doubles.
//! Keras' defaults: an initial scale of 2^15, doubling after 2000 finite steps. The scale is a
//! power of two, so scaling and unscaling are exact.

use serde::{Deserialize, Serialize};

/// Keras' `initial_scale`.
pub const INITIAL_SCALE: f64 = 32768.0;
/// Keras' `dynamic_growth_steps`.
pub const GROWTH_STEPS: u64 = 2000;

/// The scale and its count of finite steps (kept in the resume point, so a resumed run goes on
/// with the same scale).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScale {
    /// The factor the loss is multiplied by.
    pub scale: f64,
    /// Finite steps since the scale last changed.
    pub good_steps: u64,
    /// Finite steps after which the scale doubles.
    pub growth_steps: u64,
}

impl Default for LossScale {
    fn default() -> Self {
        LossScale {
            scale: INITIAL_SCALE,
            good_steps: 0,
            growth_steps: GROWTH_STEPS,
        }
    }
}

impl LossScale {
    /// Keras' dynamic scale from `initial` (`None`: 2^15); an error unless it is a positive
    /// finite number.
    pub fn starting_at(initial: Option<f64>) -> Result<Self, String> {
        match initial {
            None => Ok(LossScale::default()),
            Some(s) if s.is_finite() && s >= 1.0 => Ok(LossScale {
                scale: s,
                ..LossScale::default()
            }),
            Some(s) => Err(format!(
                "--loss-scale {s}: expected a finite number >= 1 (Keras' initial_scale; \
                 powers of two unscale exactly)"
            )),
        }
    }

    /// Records a step's outcome: `finite` gradients count towards doubling the scale, an
    /// overflow halves it (the caller skips that step's update).
    pub fn update(&mut self, finite: bool) {
        if finite {
            self.good_steps += 1;
            if self.good_steps >= self.growth_steps {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
        } else {
            // Never below 1: a scale that keeps halving means the model itself diverges,
            // which the non-finite loss check reports.
            self.scale = (self.scale / 2.0).max(1.0);
            self.good_steps = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_on_overflow_and_doubles_after_growth_steps_of_finite_ones() {
        let mut s = LossScale {
            growth_steps: 3,
            ..LossScale::default()
        };
        s.update(false);
        assert_eq!((s.scale, s.good_steps), (16384.0, 0));
        s.update(true);
        s.update(true);
        assert_eq!((s.scale, s.good_steps), (16384.0, 2));
        // An overflow resets the count of finite steps.
        s.update(false);
        assert_eq!((s.scale, s.good_steps), (8192.0, 0));
        for _ in 0..3 {
            s.update(true);
        }
        assert_eq!((s.scale, s.good_steps), (16384.0, 0));
        assert_eq!(LossScale::default().scale, 2f64.powi(15));
        assert_eq!(LossScale::default().growth_steps, 2000);
    }

    #[test]
    fn the_scale_never_drops_below_one() {
        let mut s = LossScale::default();
        for _ in 0..40 {
            s.update(false);
        }
        assert_eq!(s.scale, 1.0);
    }
}
