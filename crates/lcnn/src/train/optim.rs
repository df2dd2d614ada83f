//! Optimizers with Keras semantics and defaults (tf.keras 2.x `optimizer_v2`, the API of the
//! seeds), as Burn [`Optimizer`]s driven by a [`ModuleOptimizer`]:
//!
//! - Adam ([Kingma & Ba, arXiv:1412.6980](https://arxiv.org/abs/1412.6980)): lr 1e-3,
//!   betas 0.9/0.999, epsilon 1e-7, `w -= lr_t * m / (sqrt(v) + eps)` with
//!   `lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t)` (epsilon is *not* bias-corrected, unlike Burn's
//!   and PyTorch's Adam).
//! - SGD: `v = momentum * v - lr * g`, then `w += v` or, with Nesterov,
//!   `w += momentum * v - lr * g`.
//! - RMSprop: lr 1e-3, rho 0.9, epsilon 1e-7, `ms = rho * ms + (1 - rho) g^2`,
//!   `w -= lr * g / (sqrt(ms) + eps)` (momentum 0; with momentum,
//!   `mom = momentum * mom + lr * g / sqrt(ms + eps)`, `w -= mom`, as TF's kernel).
//!
//! Every optimizer takes Keras' time-based `decay`: `lr / (1 + decay * iterations)`, iterations
//! counted before the update. The per-step learning rate (with decay and Adam's bias
//! correction) is computed once per step by [`OptimizerConfig::step_lr`] from the global
//! iteration count, as Keras does, so the per-parameter state is tensors only.
//! Reference values: `reference/optimizers.py`.

use burn::optim::{LearningRate, ModuleOptimizer, Optimizer, RecordState, StateSink, StateSource};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// Which optimizer, with Keras' arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum OptimizerConfig {
    /// Keras `Adam`.
    Adam {
        /// Learning rate (Keras default 1e-3).
        learning_rate: f64,
        /// Keras `beta_1` (0.9).
        beta_1: f64,
        /// Keras `beta_2` (0.999).
        beta_2: f64,
        /// Keras `epsilon` (1e-7).
        epsilon: f64,
        /// Time-based decay (0).
        decay: f64,
    },
    /// Keras `SGD`.
    Sgd {
        /// Learning rate (Keras default 0.01).
        learning_rate: f64,
        /// Momentum (0).
        momentum: f64,
        /// Nesterov momentum (false).
        nesterov: bool,
        /// Time-based decay (0).
        decay: f64,
    },
    /// Keras `RMSprop`.
    Rmsprop {
        /// Learning rate (Keras default 1e-3).
        learning_rate: f64,
        /// Keras `rho` (0.9).
        rho: f64,
        /// Momentum (0).
        momentum: f64,
        /// Keras `epsilon` (1e-7).
        epsilon: f64,
        /// Time-based decay (0).
        decay: f64,
    },
}

impl OptimizerConfig {
    /// Keras' `Adam()`.
    pub fn adam() -> Self {
        OptimizerConfig::Adam {
            learning_rate: 1e-3,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
            decay: 0.0,
        }
    }

    /// Keras' `SGD()`.
    pub fn sgd() -> Self {
        OptimizerConfig::Sgd {
            learning_rate: 0.01,
            momentum: 0.0,
            nesterov: false,
            decay: 0.0,
        }
    }

    /// Keras' `RMSprop()`.
    pub fn rmsprop() -> Self {
        OptimizerConfig::Rmsprop {
            learning_rate: 1e-3,
            rho: 0.9,
            momentum: 0.0,
            epsilon: 1e-7,
            decay: 0.0,
        }
    }

    /// The configured learning rate.
    pub fn learning_rate(&self) -> f64 {
        match self {
            OptimizerConfig::Adam { learning_rate, .. }
            | OptimizerConfig::Sgd { learning_rate, .. }
            | OptimizerConfig::Rmsprop { learning_rate, .. } => *learning_rate,
        }
    }

    /// This optimizer with its base learning rate replaced by `lr` when given (the rate Keras'
    /// `ReduceLROnPlateau` lowered; `decay` still applies on top of it).
    pub fn at_rate(&self, lr: Option<f64>) -> Self {
        let mut o = self.clone();
        if let Some(lr) = lr {
            match &mut o {
                OptimizerConfig::Adam { learning_rate, .. }
                | OptimizerConfig::Sgd { learning_rate, .. }
                | OptimizerConfig::Rmsprop { learning_rate, .. } => *learning_rate = lr,
            }
        }
        o
    }

    /// Keras' decayed learning rate after `iterations` updates: `lr / (1 + decay * iterations)`.
    pub fn decayed_lr(&self, iterations: u64) -> f64 {
        let decay = match self {
            OptimizerConfig::Adam { decay, .. }
            | OptimizerConfig::Sgd { decay, .. }
            | OptimizerConfig::Rmsprop { decay, .. } => *decay,
        };
        self.learning_rate() / (1.0 + decay * iterations as f64)
    }

    /// The rate handed to the per-parameter step for update number `iterations + 1`: the
    /// decayed rate, times Adam's bias correction `sqrt(1 - b2^t) / (1 - b1^t)`.
    pub fn step_lr(&self, iterations: u64) -> f64 {
        self.step_lr_at(self.decayed_lr(iterations), iterations)
    }

    /// [`OptimizerConfig::step_lr`] from the rate `lr` of this update (a schedule's value).
    pub fn step_lr_at(&self, lr: f64, iterations: u64) -> f64 {
        match self {
            OptimizerConfig::Adam { beta_1, beta_2, .. } => {
                let t = (iterations + 1) as i32;
                lr * (1.0 - beta_2.powi(t)).sqrt() / (1.0 - beta_1.powi(t))
            }
            _ => lr,
        }
    }

    /// Checks the values (finite, in range) and names the bad one.
    pub fn validate(&self) -> Result<(), String> {
        // Named by Keras' argument and the `lcnn train` flag that sets it.
        let check = |name: &str, v: f64, ok: bool| {
            if v.is_finite() && ok {
                return Ok(());
            }
            let (flag, expected) = match name {
                "learning_rate" => ("--lr", "a rate > 0"),
                "beta_1" | "beta_2" | "rho" => ("", "a fraction in [0, 1)"),
                "momentum" => ("--momentum", "a fraction in [0, 1]"),
                "decay" => ("--decay", "a value >= 0"),
                _ => ("", "a value >= 0"),
            };
            Err(match flag {
                "" => format!("optimizer {name} = {v}: out of range; expected {expected}"),
                flag => format!("{flag} {v}: out of range (optimizer {name}); expected {expected}"),
            })
        };
        check(
            "learning_rate",
            self.learning_rate(),
            self.learning_rate() > 0.0,
        )?;
        match *self {
            OptimizerConfig::Adam {
                beta_1,
                beta_2,
                epsilon,
                decay,
                ..
            } => {
                check("beta_1", beta_1, (0.0..1.0).contains(&beta_1))?;
                check("beta_2", beta_2, (0.0..1.0).contains(&beta_2))?;
                check("epsilon", epsilon, epsilon >= 0.0)?;
                check("decay", decay, decay >= 0.0)
            }
            OptimizerConfig::Sgd {
                momentum, decay, ..
            } => {
                check("momentum", momentum, (0.0..=1.0).contains(&momentum))?;
                check("decay", decay, decay >= 0.0)
            }
            OptimizerConfig::Rmsprop {
                rho,
                momentum,
                epsilon,
                decay,
                ..
            } => {
                check("rho", rho, (0.0..1.0).contains(&rho))?;
                check("momentum", momentum, (0.0..=1.0).contains(&momentum))?;
                check("epsilon", epsilon, epsilon >= 0.0)?;
                check("decay", decay, decay >= 0.0)
            }
        }
    }

    /// The Burn module optimizer.
    pub fn init(&self) -> ModuleOptimizer {
        match *self {
            OptimizerConfig::Adam {
                beta_1,
                beta_2,
                epsilon,
                ..
            } => ModuleOptimizer::from(KerasAdam {
                beta_1,
                beta_2,
                epsilon,
            }),
            OptimizerConfig::Sgd {
                momentum, nesterov, ..
            } => ModuleOptimizer::from(KerasSgd { momentum, nesterov }),
            OptimizerConfig::Rmsprop {
                rho,
                momentum,
                epsilon,
                ..
            } => ModuleOptimizer::from(KerasRmsprop {
                rho,
                momentum,
                epsilon,
            }),
        }
    }
}

/// Per-parameter slot tensors, named as Keras names its slots (`m`, `v`, `momentum`, `rms`).
#[derive(Clone)]
pub struct Slots<const D: usize> {
    names: &'static [&'static str],
    tensors: Vec<Tensor<D>>,
}

impl<const D: usize> Slots<D> {
    /// The first `N` slot tensors of `state`, zeros (shaped like `like`) where there are none.
    fn take<const N: usize>(state: Option<Self>, like: &Tensor<D>) -> [Tensor<D>; N] {
        let tensors = state.map(|s| s.tensors).unwrap_or_default();
        std::array::from_fn(|i| tensors.get(i).cloned().unwrap_or_else(|| like.zeros_like()))
    }

    fn into_device(mut self, device: &Device) -> Self {
        self.tensors = self
            .tensors
            .into_iter()
            .map(|t| t.to_device(device))
            .collect();
        self
    }
}

impl<const D: usize> RecordState for Slots<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        for (name, t) in self.names.iter().zip(&self.tensors) {
            out.push_tensor(prefix, name, t.to_data());
        }
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        // The slot set is recovered from what was recorded: every optimizer here records a
        // fixed list, so try the known lists longest first.
        for names in [ADAM_SLOTS, RMS_MOMENTUM_SLOTS, RMS_SLOTS, SGD_SLOTS] {
            if names.iter().all(|n| has_leaf(src, prefix, n)) {
                let mut tensors = Vec::with_capacity(names.len());
                for n in names {
                    tensors.push(Tensor::from_data(src.take_tensor(prefix, n)?, device));
                }
                return Some(Slots { names, tensors });
            }
        }
        None
    }
}

fn has_leaf(src: &mut StateSource, prefix: &str, leaf: &str) -> bool {
    // StateSource has no non-consuming lookup for tensors; take and put back.
    match src.take_tensor(prefix, leaf) {
        Some(d) => {
            src.insert_tensor(format!("{prefix}.{leaf}"), d);
            true
        }
        None => false,
    }
}

const ADAM_SLOTS: &[&str] = &["m", "v"];
const SGD_SLOTS: &[&str] = &["momentum"];
const RMS_SLOTS: &[&str] = &["rms"];
const RMS_MOMENTUM_SLOTS: &[&str] = &["rms", "momentum"];

/// Keras Adam; `lr` given to [`Optimizer::step`] already includes the bias correction.
#[derive(Clone, Debug)]
pub struct KerasAdam {
    beta_1: f64,
    beta_2: f64,
    epsilon: f64,
}

impl Optimizer for KerasAdam {
    type State<const D: usize> = Slots<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        w: Tensor<D>,
        g: Tensor<D>,
        state: Option<Slots<D>>,
    ) -> (Tensor<D>, Option<Slots<D>>) {
        let [m, v] = Slots::take(state, &g);
        let m = m
            .mul_scalar(self.beta_1)
            .add(g.clone().mul_scalar(1.0 - self.beta_1));
        let v = v
            .mul_scalar(self.beta_2)
            .add(g.square().mul_scalar(1.0 - self.beta_2));
        let update = m
            .clone()
            .div(v.clone().sqrt().add_scalar(self.epsilon))
            .mul_scalar(lr);
        (
            w - update,
            Some(Slots {
                names: ADAM_SLOTS,
                tensors: vec![m, v],
            }),
        )
    }

    fn to_device<const D: usize>(state: Slots<D>, device: &Device) -> Slots<D> {
        state.into_device(device)
    }
}

/// Keras SGD with optional (Nesterov) momentum.
#[derive(Clone, Debug)]
pub struct KerasSgd {
    momentum: f64,
    nesterov: bool,
}

impl Optimizer for KerasSgd {
    type State<const D: usize> = Slots<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        w: Tensor<D>,
        g: Tensor<D>,
        state: Option<Slots<D>>,
    ) -> (Tensor<D>, Option<Slots<D>>) {
        if self.momentum == 0.0 {
            return (w - g.mul_scalar(lr), None);
        }
        let v = state
            .and_then(|s| s.tensors.into_iter().next())
            .unwrap_or_else(|| g.zeros_like());
        let v = v.mul_scalar(self.momentum) - g.clone().mul_scalar(lr);
        let w = if self.nesterov {
            w + v.clone().mul_scalar(self.momentum) - g.mul_scalar(lr)
        } else {
            w + v.clone()
        };
        (
            w,
            Some(Slots {
                names: SGD_SLOTS,
                tensors: vec![v],
            }),
        )
    }

    fn to_device<const D: usize>(state: Slots<D>, device: &Device) -> Slots<D> {
        state.into_device(device)
    }
}

/// Keras RMSprop (not centered).
#[derive(Clone, Debug)]
pub struct KerasRmsprop {
    rho: f64,
    momentum: f64,
    epsilon: f64,
}

impl Optimizer for KerasRmsprop {
    type State<const D: usize> = Slots<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        w: Tensor<D>,
        g: Tensor<D>,
        state: Option<Slots<D>>,
    ) -> (Tensor<D>, Option<Slots<D>>) {
        let mut it = state.map(|s| s.tensors.into_iter());
        let ms = it
            .as_mut()
            .and_then(|i| i.next())
            .unwrap_or_else(|| g.zeros_like());
        let ms = ms
            .mul_scalar(self.rho)
            .add(g.clone().square().mul_scalar(1.0 - self.rho));
        if self.momentum == 0.0 {
            let update = g
                .div(ms.clone().sqrt().add_scalar(self.epsilon))
                .mul_scalar(lr);
            return (
                w - update,
                Some(Slots {
                    names: RMS_SLOTS,
                    tensors: vec![ms],
                }),
            );
        }
        let mom = it
            .as_mut()
            .and_then(|i| i.next())
            .unwrap_or_else(|| g.zeros_like());
        let mom = mom.mul_scalar(self.momentum)
            + g.div(ms.clone().add_scalar(self.epsilon).sqrt())
                .mul_scalar(lr);
        (
            w - mom.clone(),
            Some(Slots {
                names: RMS_MOMENTUM_SLOTS,
                tensors: vec![ms, mom],
            }),
        )
    }

    fn to_device<const D: usize>(state: Slots<D>, device: &Device) -> Slots<D> {
        state.into_device(device)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use burn::tensor::TensorData;

    pub(crate) fn fixture() -> serde_json::Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/optimizers.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    pub(crate) fn config_of(c: &serde_json::Value) -> OptimizerConfig {
        let f = |k: &str| c[k].as_f64().unwrap();
        match c["optimizer"].as_str().unwrap() {
            "adam" => OptimizerConfig::Adam {
                learning_rate: f("learning_rate"),
                beta_1: f("beta_1"),
                beta_2: f("beta_2"),
                epsilon: f("epsilon"),
                decay: f("decay"),
            },
            "sgd" => OptimizerConfig::Sgd {
                learning_rate: f("learning_rate"),
                momentum: f("momentum"),
                nesterov: c["nesterov"].as_bool().unwrap(),
                decay: f("decay"),
            },
            _ => OptimizerConfig::Rmsprop {
                learning_rate: f("learning_rate"),
                rho: f("rho"),
                momentum: f("momentum"),
                epsilon: f("epsilon"),
                decay: f("decay"),
            },
        }
    }

    fn run<O: Optimizer>(
        opt: &O,
        config: &OptimizerConfig,
        w0: &[f64],
        steps: usize,
    ) -> Vec<Vec<f64>> {
        let device = Device::flex();
        let n = w0.len();
        let mut w: Vec<f64> = w0.to_vec();
        let mut state = None;
        let mut out = Vec::new();
        for t in 1..=steps {
            let g: Vec<f32> = (0..n)
                .map(|j| ((t as f64 + 0.5 * j as f64).sin() + 0.1 * w[j]) as f32)
                .collect();
            let wt = Tensor::<1>::from_data(
                TensorData::new(w.iter().map(|v| *v as f32).collect::<Vec<_>>(), [n]),
                &device,
            );
            let gt = Tensor::<1>::from_data(TensorData::new(g, [n]), &device);
            let (nw, ns) = opt.step(config.step_lr(t as u64 - 1), wt, gt, state);
            state = ns;
            w = nw
                .into_data()
                .convert::<f64>()
                .try_into_vec::<f64>()
                .unwrap();
            out.push(w.clone());
        }
        out
    }

    /// Every Keras case of `reference/optimizers.py` (the PyTorch-form and epsilon-inside
    /// variants are other optimizers and are checked to differ where they are meant to).
    #[test]
    fn update_rules_match_keras_reference() {
        let fx = fixture();
        let w0: Vec<f64> = fx["w0"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let mut checked = 0;
        for (name, case) in fx["cases"].as_object().unwrap() {
            if name.contains("alg1") || name.contains("eps_inside") {
                continue;
            }
            let config = config_of(&case["config"]);
            let got = match &config {
                OptimizerConfig::Adam {
                    beta_1,
                    beta_2,
                    epsilon,
                    ..
                } => run(
                    &KerasAdam {
                        beta_1: *beta_1,
                        beta_2: *beta_2,
                        epsilon: *epsilon,
                    },
                    &config,
                    &w0,
                    5,
                ),
                OptimizerConfig::Sgd {
                    momentum, nesterov, ..
                } => run(
                    &KerasSgd {
                        momentum: *momentum,
                        nesterov: *nesterov,
                    },
                    &config,
                    &w0,
                    5,
                ),
                OptimizerConfig::Rmsprop {
                    rho,
                    momentum,
                    epsilon,
                    ..
                } => run(
                    &KerasRmsprop {
                        rho: *rho,
                        momentum: *momentum,
                        epsilon: *epsilon,
                    },
                    &config,
                    &w0,
                    5,
                ),
            };
            for (t, (g, want)) in got
                .iter()
                .zip(case["weights"].as_array().unwrap())
                .enumerate()
            {
                for (j, (a, b)) in g.iter().zip(want.as_array().unwrap()).enumerate() {
                    let b = b.as_f64().unwrap();
                    assert!(
                        (a - b).abs() < 2e-6 * (1.0 + b.abs()),
                        "{name} step {} w[{j}]: {a} vs {b}",
                        t + 1
                    );
                }
            }
            checked += 1;
        }
        assert_eq!(checked, 8);
    }

    #[test]
    fn epsilon_placement_is_observable_and_keras_wins() {
        let fx = fixture();
        let w0: Vec<f64> = fx["w0"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let config = config_of(&fx["cases"]["adam_eps0.1"]["config"]);
        let OptimizerConfig::Adam {
            beta_1,
            beta_2,
            epsilon,
            ..
        } = config
        else {
            unreachable!()
        };
        let got = run(
            &KerasAdam {
                beta_1,
                beta_2,
                epsilon,
            },
            &config,
            &w0,
            5,
        );
        let burn_form = fx["cases"]["adam_alg1_eps0.1"]["weights"][4][0]
            .as_f64()
            .unwrap();
        assert!(
            (got[4][0] - burn_form).abs() > 1e-4,
            "the PyTorch/Burn form would pass too"
        );
    }

    #[test]
    fn decay_and_bias_correction() {
        let sgd = OptimizerConfig::Sgd {
            learning_rate: 0.01,
            momentum: 0.9,
            nesterov: true,
            decay: 1e-2,
        };
        assert!((sgd.step_lr(0) - 0.01).abs() < 1e-15);
        assert!((sgd.step_lr(10) - 0.01 / 1.1).abs() < 1e-15);
        let adam = OptimizerConfig::adam();
        let want = 1e-3 * (1.0f64 - 0.999).sqrt() / (1.0 - 0.9);
        assert!((adam.step_lr(0) - want).abs() < 1e-15);
        let sgd = |learning_rate, momentum| OptimizerConfig::Sgd {
            learning_rate,
            momentum,
            nesterov: false,
            decay: 0.0,
        };
        // Errors name the flag, the value and what was expected.
        assert_eq!(
            sgd(-1.0, 0.0).validate().unwrap_err(),
            "--lr -1: out of range (optimizer learning_rate); expected a rate > 0"
        );
        assert_eq!(
            sgd(0.1, 2.0).validate().unwrap_err(),
            "--momentum 2: out of range (optimizer momentum); expected a fraction in [0, 1]"
        );
    }
}
