//! The Keras optimizers of [`crate::train::optim`] on the engine's flat parameter buffers: the
//! same update rules, slot names (`m`, `v`, `momentum`, `rms`) and per-step learning rate
//! ([`OptimizerConfig::step_lr`], which folds in the time-based decay and Adam's bias
//! correction), applied element by element.

use rayon::prelude::*;

use crate::train::OptimizerConfig;

/// The slot names of `config`, in the order they are stored.
pub fn slot_names(config: &OptimizerConfig) -> &'static [&'static str] {
    match *config {
        OptimizerConfig::Adam { .. } => &["m", "v"],
        OptimizerConfig::Sgd { momentum, .. } if momentum != 0.0 => &["momentum"],
        OptimizerConfig::Sgd { .. } => &[],
        OptimizerConfig::Rmsprop { momentum, .. } if momentum != 0.0 => &["rms", "momentum"],
        OptimizerConfig::Rmsprop { .. } => &["rms"],
    }
}

const GRAIN: usize = 16 * 1024;

/// One update of `w` from its gradient `g`, with `lr` the rate of this step
/// (`config.step_lr(iterations)`) and `slots` the parameter's state (as [`slot_names`]). First
/// Keras 3's decoupled weight decay, `w *= 1 - decay` (`decay = weight_decay * scheduled lr`,
/// 0 for none), with `g` still the gradient at the weights before it.
pub fn step(
    config: &OptimizerConfig,
    lr: f64,
    decay: f64,
    w: &mut [f32],
    g: &[f32],
    slots: &mut [Vec<f32>],
) {
    for s in slots.iter_mut() {
        s.resize(w.len(), 0.0);
    }
    if decay != 0.0 {
        let keep = (1.0 - decay) as f32;
        w.par_chunks_mut(GRAIN)
            .for_each(|w| w.iter_mut().for_each(|v| *v *= keep));
    }
    let lr = lr as f32;
    match *config {
        OptimizerConfig::Adam {
            beta_1,
            beta_2,
            epsilon,
            ..
        } => {
            let (b1, b2, eps) = (beta_1 as f32, beta_2 as f32, epsilon as f32);
            let (c1, c2) = ((1.0 - beta_1) as f32, (1.0 - beta_2) as f32);
            let [m, v] = slots else {
                unreachable!("Adam has two slots")
            };
            w.par_chunks_mut(GRAIN)
                .zip(g.par_chunks(GRAIN))
                .zip(m.par_chunks_mut(GRAIN).zip(v.par_chunks_mut(GRAIN)))
                .for_each(|((w, g), (m, v))| {
                    for i in 0..w.len() {
                        m[i] = m[i] * b1 + g[i] * c1;
                        v[i] = v[i] * b2 + g[i] * g[i] * c2;
                        w[i] -= m[i] / (v[i].sqrt() + eps) * lr;
                    }
                });
        }
        OptimizerConfig::Sgd {
            momentum, nesterov, ..
        } => {
            let mo = momentum as f32;
            if momentum == 0.0 {
                for (w, g) in w.iter_mut().zip(g) {
                    *w -= g * lr;
                }
                return;
            }
            let [vel] = slots else {
                unreachable!("SGD with momentum has one slot")
            };
            for i in 0..w.len() {
                vel[i] = vel[i] * mo - g[i] * lr;
                if nesterov {
                    w[i] = w[i] + vel[i] * mo - g[i] * lr;
                } else {
                    w[i] += vel[i];
                }
            }
        }
        OptimizerConfig::Rmsprop {
            rho,
            momentum,
            epsilon,
            ..
        } => {
            let (r, c, eps, mo) = (
                rho as f32,
                (1.0 - rho) as f32,
                epsilon as f32,
                momentum as f32,
            );
            if momentum == 0.0 {
                let [ms] = slots else {
                    unreachable!("RMSprop has one slot")
                };
                for i in 0..w.len() {
                    ms[i] = ms[i] * r + g[i] * g[i] * c;
                    w[i] -= g[i] / (ms[i].sqrt() + eps) * lr;
                }
                return;
            }
            let [ms, mom] = slots else {
                unreachable!("RMSprop with momentum has two slots")
            };
            for i in 0..w.len() {
                ms[i] = ms[i] * r + g[i] * g[i] * c;
                mom[i] = mom[i] * mo + g[i] / (ms[i] + eps).sqrt() * lr;
                w[i] -= mom[i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::optim::tests::{config_of, fixture};

    /// Every Keras case of `reference/optimizers.py`, five steps each, with the gradients the
    /// Burn path's test uses (`sin(t + j/2) + 0.1 w`).
    #[test]
    fn update_rules_match_the_keras_reference() {
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
            let mut w: Vec<f32> = w0.iter().map(|v| *v as f32).collect();
            let mut slots = vec![Vec::new(); slot_names(&config).len()];
            for (t, want) in (1..=5).zip(case["weights"].as_array().unwrap()) {
                let g: Vec<f32> = (0..w.len())
                    .map(|j| ((t as f64 + 0.5 * j as f64).sin() + 0.1 * w[j] as f64) as f32)
                    .collect();
                step(
                    &config,
                    config.step_lr(t as u64 - 1),
                    0.0,
                    &mut w,
                    &g,
                    &mut slots,
                );
                for (j, (a, b)) in w.iter().zip(want.as_array().unwrap()).enumerate() {
                    let b = b.as_f64().unwrap();
                    assert!(
                        (*a as f64 - b).abs() < 2e-6 * (1.0 + b.abs()),
                        "{name} step {t} w[{j}]: {a} vs {b}"
                    );
                }
            }
            checked += 1;
        }
        assert_eq!(checked, 8);
    }

    /// Keras 3's `weight_decay` (AdamW, and Adam / SGD with the argument) from
    /// `reference/regularizers.py`: decay before the update, at the un-corrected rate.
    #[test]
    fn weight_decay_matches_the_keras_reference() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/regularizers.json"
        );
        let fx: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let w0: Vec<f32> = fx["w0"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let cases = fx["weight_decay"].as_array().unwrap();
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let c = &case["config"];
            let f = |k: &str| c[k].as_f64().unwrap_or(0.0);
            let config = match c["optimizer"].as_str().unwrap() {
                "adam" | "adamw" => OptimizerConfig::Adam {
                    learning_rate: f("learning_rate"),
                    beta_1: f("beta_1"),
                    beta_2: f("beta_2"),
                    epsilon: f("epsilon"),
                    decay: 0.0,
                },
                _ => OptimizerConfig::Sgd {
                    learning_rate: f("learning_rate"),
                    momentum: f("momentum"),
                    nesterov: c["nesterov"].as_bool().unwrap_or(false),
                    decay: 0.0,
                },
            };
            let wd = f("weight_decay");
            let mut w = w0.clone();
            let mut slots = vec![Vec::new(); slot_names(&config).len()];
            let steps = case["weights"].as_array().unwrap();
            for (t, want) in (1..=steps.len()).zip(steps) {
                let g: Vec<f32> = (0..w.len())
                    .map(|j| ((t as f64 + 0.5 * j as f64).sin() + 0.1 * w[j] as f64) as f32)
                    .collect();
                let it = t as u64 - 1;
                let decay = wd * config.decayed_lr(it);
                step(&config, config.step_lr(it), decay, &mut w, &g, &mut slots);
                for (j, (a, b)) in w.iter().zip(want.as_array().unwrap()).enumerate() {
                    let b = b.as_f64().unwrap();
                    assert!(
                        (*a as f64 - b).abs() < 2e-6 * (1.0 + b.abs()),
                        "{name} step {t} w[{j}]: {a} vs {b}"
                    );
                }
            }
        }
        assert_eq!(cases.len(), 5);
    }
}
