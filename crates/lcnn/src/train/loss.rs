//! Losses from logits, numerically stable, with Keras' values:
//!
//! - categorical cross-entropy: `-mean_n log softmax(z_n)[y_n]` (Keras computes it from the
//!   softmax layer's logits when the model ends in softmax);
//! - binary cross-entropy on one sigmoid unit: `mean_n softplus(z_n) - y_n z_n`.
//!
//! Both take Keras' `label_smoothing`: the one-hot target becomes `onehot (1 - ls) + ls / K`,
//! the binary one `y (1 - ls) + ls / 2`. Both also return how many predictions were right
//! (argmax, or `z > 0`), read once per step.
//! Reference values: `reference/losses.py`.

use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Keras' loss option and regularizers of a run: what `compile(loss=...)`, `kernel_regularizer`
/// and the optimizer's `weight_decay` set. All zero by default (the seeds use none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Regularization {
    /// Keras `label_smoothing` of the cross-entropy (0): the targets become
    /// `onehot (1 - ls) + ls / K` (binary: `y (1 - ls) + ls / 2`), in training and evaluation.
    #[serde(default)]
    pub label_smoothing: f64,
    /// Keras 3's decoupled optimizer `weight_decay` (0; AdamW's default is 0.004): before each
    /// update every trainable weight is multiplied by `1 - weight_decay * lr`, with `lr` the
    /// scheduled rate (no bias correction).
    #[serde(default)]
    pub weight_decay: f64,
    /// `kernel_regularizer=L2(l2)` on every trainable conv, separable and dense kernel (0):
    /// adds `l2 * sum(w^2)` to the loss (training and evaluation, as Keras reports it).
    #[serde(default)]
    pub l2: f64,
}

impl Regularization {
    /// Checks the values and names the bad one.
    pub fn validate(&self) -> Result<(), String> {
        // Named by the `lcnn train` flag that sets it.
        let r = |flag: &str, v: f64, ok: bool, expected: &str| {
            if v.is_finite() && ok {
                Ok(())
            } else {
                Err(format!("{flag} {v}: out of range; expected {expected}"))
            }
        };
        r(
            "--label-smoothing",
            self.label_smoothing,
            (0.0..=1.0).contains(&self.label_smoothing),
            "a fraction in [0, 1]",
        )?;
        r(
            "--weight-decay",
            self.weight_decay,
            (0.0..1.0).contains(&self.weight_decay),
            "a fraction in [0, 1)",
        )?;
        r("--l2", self.l2, self.l2 >= 0.0, "a factor >= 0")
    }
}

/// The loss of a batch (a scalar tensor, differentiable) and its number of correct predictions.
pub struct LossOutput {
    /// Mean loss over the batch, shape `[1]`.
    pub loss: Tensor<1>,
    /// Correct predictions in the batch.
    pub correct: usize,
}

/// Categorical cross-entropy from logits, with Keras' `label_smoothing` (0: none).
///
/// # Shapes
/// - `logits`: `[N, K]`
/// - `labels`: `N` class indices below `K`
pub fn categorical_cross_entropy(
    logits: Tensor<2>,
    labels: &[u32],
    label_smoothing: f64,
) -> LossOutput {
    let [n, k] = logits.dims();
    let device = logits.device();
    let predicted = logits.clone().argmax(1).into_data();
    let correct = int_values(predicted)
        .iter()
        .zip(labels)
        .filter(|(p, y)| **p == **y as i64)
        .count();
    let off = (label_smoothing / k as f64) as f32;
    let on = (1.0 - label_smoothing) as f32 + off;
    let mut onehot = vec![off; n * k];
    for (i, y) in labels.iter().enumerate() {
        onehot[i * k + *y as usize] = on;
    }
    let onehot = Tensor::<2>::from_data(TensorData::new(onehot, [n, k]), &device);
    let loss = (log_softmax(logits, 1) * onehot)
        .sum()
        .neg()
        .div_scalar(n as f64);
    LossOutput {
        loss: loss.reshape([1]),
        correct,
    }
}

/// Binary cross-entropy from the logit of one sigmoid unit, with Keras' `label_smoothing`.
///
/// # Shapes
/// - `logits`: `[N, 1]`
/// - `labels`: `N` values in {0, 1}
pub fn binary_cross_entropy(logits: Tensor<2>, labels: &[u32], label_smoothing: f64) -> LossOutput {
    let [n, _] = logits.dims();
    let device = logits.device();
    let z = logits.reshape([n]);
    let positive = z.clone().greater_elem(0.0).int().into_data();
    let correct = int_values(positive)
        .iter()
        .zip(labels)
        .filter(|(p, y)| **p == **y as i64)
        .count();
    let y: Vec<f32> = labels
        .iter()
        .map(|v| (*v as f64 * (1.0 - label_smoothing) + 0.5 * label_smoothing) as f32)
        .collect();
    let y = Tensor::<1>::from_data(TensorData::new(y, [n]), &device);
    // softplus(z) = relu(z) + log(1 + exp(-|z|)), stable for any z.
    let softplus = relu(z.clone()) + z.clone().abs().neg().exp().log1p();
    let loss = (softplus - z * y).mean();
    LossOutput {
        loss: loss.reshape([1]),
        correct,
    }
}

fn int_values(data: TensorData) -> Vec<i64> {
    data.convert::<i64>()
        .try_into_vec::<i64>()
        .unwrap_or_default()
}

/// The loss for `classes` outputs: binary cross-entropy for one unit, categorical otherwise.
pub fn loss_for(
    classes: usize,
    logits: Tensor<2>,
    labels: &[u32],
    label_smoothing: f64,
) -> LossOutput {
    if classes == 1 {
        binary_cross_entropy(logits, labels, label_smoothing)
    } else {
        categorical_cross_entropy(logits, labels, label_smoothing)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn out_of_range_regularizers_name_the_flag() {
        let r = |label_smoothing, weight_decay, l2| Regularization {
            label_smoothing,
            weight_decay,
            l2,
        };
        assert!(r(0.1, 0.1, 1e-4).validate().is_ok());
        assert_eq!(
            r(1.5, 0.0, 0.0).validate().unwrap_err(),
            "--label-smoothing 1.5: out of range; expected a fraction in [0, 1]"
        );
        assert_eq!(
            r(0.0, 0.0, f64::NAN).validate().unwrap_err(),
            "--l2 NaN: out of range; expected a factor >= 0"
        );
    }

    pub(crate) fn fixture() -> serde_json::Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/losses.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    pub(crate) fn regularizers() -> serde_json::Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/regularizers.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    pub(crate) fn matrix(v: &serde_json::Value) -> (Vec<f32>, usize, usize) {
        let rows = v.as_array().unwrap();
        let cols = rows[0].as_array().map(|r| r.len()).unwrap_or(1);
        let data = rows
            .iter()
            .flat_map(|r| match r.as_array() {
                Some(r) => r
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect::<Vec<_>>(),
                None => vec![r.as_f64().unwrap() as f32],
            })
            .collect();
        (data, rows.len(), cols)
    }

    fn labels(v: &serde_json::Value) -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as u32)
            .collect()
    }

    /// The loss against `want` (1e-5 relative) and its gradient with respect to `logits`
    /// against `want_grad` (`tol` absolute).
    fn check(
        what: &str,
        logits: &Tensor<2>,
        out: LossOutput,
        want: f64,
        want_grad: &[f32],
        tol: f32,
    ) {
        let got = out.loss.clone().into_scalar::<f32>() as f64;
        assert!(
            (got - want).abs() < 1e-5 * (1.0 + want.abs()),
            "{what}: {got} vs {want}"
        );
        let grads = out.loss.backward();
        let g = logits
            .grad(&grads)
            .unwrap()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        for (a, b) in g.iter().zip(want_grad) {
            assert!((a - b).abs() < tol, "{what} grad: {a} vs {b}");
        }
    }

    #[test]
    fn losses_and_gradients_match_keras_reference() {
        let fx = fixture();
        let device = Device::flex().autodiff();
        for case in ["cce", "cce_saturated", "bce", "bce_saturated"] {
            let c = &fx[case];
            let (z, n, k) = matrix(&c["logits"]);
            // BCE cases are multi-label [n, k]: each entry is one sigmoid unit, and Keras' mean
            // over the last axis then the batch is the mean over all n * k of them.
            let (y, shape) = if case.starts_with("cce") {
                (labels(&c["labels"]), [n, k])
            } else {
                (
                    matrix(&c["labels"]).0.iter().map(|v| *v as u32).collect(),
                    [n * k, 1],
                )
            };
            let logits = Tensor::<2>::from_data(TensorData::new(z, shape), &device).require_grad();
            let out = if case.starts_with("cce") {
                categorical_cross_entropy(logits.clone(), &y, 0.0)
            } else {
                binary_cross_entropy(logits.clone(), &y, 0.0)
            };
            let want = c["loss_from_logits"].as_f64().unwrap();
            let want_g = matrix(&c["grad_logits"]).0;
            check(case, &logits, out, want, &want_g, 1e-5);
        }
    }

    #[test]
    fn accuracy_counts() {
        let device = Device::flex();
        let z = Tensor::<2>::from_data(
            TensorData::from([[2.0f32, 1.0], [0.0, 3.0], [5.0, -1.0]]),
            &device,
        );
        assert_eq!(categorical_cross_entropy(z, &[0, 1, 1], 0.0).correct, 2);
        let z = Tensor::<2>::from_data(TensorData::from([[2.0f32], [-1.0], [0.5]]), &device);
        assert_eq!(binary_cross_entropy(z, &[1, 0, 0], 0.0).correct, 2);
    }

    /// Keras' `label_smoothing` cases of `reference/regularizers.py` through Burn's autodiff.
    #[test]
    fn label_smoothing_matches_the_keras_reference() {
        let fx = regularizers();
        let device = Device::flex().autodiff();
        for c in fx["label_smoothing"].as_array().unwrap() {
            let name = c["name"].as_str().unwrap();
            let (z, n, k) = matrix(&c["logits"]);
            let y = labels(&c["labels"]);
            let ls = c["label_smoothing"].as_f64().unwrap();
            let logits = Tensor::<2>::from_data(TensorData::new(z, [n, k]), &device).require_grad();
            let out = loss_for(k, logits.clone(), &y, ls);
            let want = c["loss"].as_f64().unwrap();
            check(name, &logits, out, want, &matrix(&c["grad"]).0, 1e-6);
        }
    }
}
