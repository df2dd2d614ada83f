//! The losses of [`crate::train::loss`] with their gradients, on plain buffers: categorical
//! cross-entropy from logits (`d/dz = (softmax(z) - onehot) / N`) and binary cross-entropy on
//! one sigmoid unit (`d/dz = (sigmoid(z) - y) / N`), with Keras' `label_smoothing` (the targets
//! `onehot (1 - ls) + ls / K` and `y (1 - ls) + ls / 2`). Reference values: `reference/losses.py`,
//! `reference/regularizers.py`.

/// Mean loss over the batch and the number of correct predictions; writes `d loss / d logits`
/// into `grad` when given.
///
/// # Shapes
/// - `logits`, `grad`: `[n, k]` (`k == 1`: binary cross-entropy)
/// - `labels`: `n` class indices (binary: 0 or 1)
pub fn loss_and_grad(
    logits: &[f32],
    k: usize,
    labels: &[u32],
    label_smoothing: f64,
    mut grad: Option<&mut [f32]>,
) -> (f64, usize) {
    let n = labels.len();
    let ls = label_smoothing;
    let inv_n = 1.0 / n.max(1) as f64;
    let (mut total, mut correct) = (0.0f64, 0usize);
    for (i, (z, &y)) in logits.chunks_exact(k).zip(labels).enumerate() {
        let g = grad.as_deref_mut().map(|g| &mut g[i * k..(i + 1) * k]);
        if k == 1 {
            let (z, y) = (z[0] as f64, y as f64 * (1.0 - ls) + 0.5 * ls);
            // softplus(z) - y z, stable for any z.
            total += z.max(0.0) + (-z.abs()).exp().ln_1p() - y * z;
            correct += usize::from((z > 0.0) == (y > 0.5));
            if let Some(g) = g {
                g[0] = ((1.0 / (1.0 + (-z).exp()) - y) * inv_n) as f32;
            }
            continue;
        }
        let (mut arg, mut max) = (0usize, f32::NEG_INFINITY);
        for (j, v) in z.iter().enumerate() {
            if *v > max {
                max = *v;
                arg = j;
            }
        }
        let sum: f64 = z.iter().map(|v| ((v - max) as f64).exp()).sum();
        let lse = max as f64 + sum.ln();
        // The smoothed target: `off` everywhere, `on` at the label; it sums to 1.
        let off = ls / k as f64;
        let on = 1.0 - ls + off;
        let mean_z = if ls > 0.0 {
            z.iter().map(|v| *v as f64).sum::<f64>() * off
        } else {
            0.0
        };
        total += lse - (on - off) * z[y as usize] as f64 - mean_z;
        correct += usize::from(arg == y as usize);
        if let Some(g) = g {
            for (j, (gj, v)) in g.iter_mut().zip(z).enumerate() {
                let p = (*v as f64 - lse).exp();
                let t = if j == y as usize { on } else { off };
                *gj = ((p - t) * inv_n) as f32;
            }
        }
    }
    (total * inv_n, correct)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::loss::tests::{fixture, matrix};

    fn flat(v: &serde_json::Value) -> (Vec<f32>, usize) {
        let (data, _, cols) = matrix(v);
        (data, cols)
    }

    /// Every case of `reference/losses.py`: loss and gradient (BCE cases are multi-label, each
    /// entry one sigmoid unit, as the Burn path's test reads them).
    #[test]
    fn losses_and_gradients_match_the_numpy_reference() {
        let fx = fixture();
        for case in ["cce", "cce_saturated", "bce", "bce_saturated"] {
            let c = &fx[case];
            let (z, k) = flat(&c["logits"]);
            let (labels, k): (Vec<u32>, usize) = if case.starts_with("cce") {
                let y = c["labels"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as u32)
                    .collect();
                (y, k)
            } else {
                (flat(&c["labels"]).0.iter().map(|v| *v as u32).collect(), 1)
            };
            let mut grad = vec![0.0; z.len()];
            let (loss, _) = loss_and_grad(&z, k, &labels, 0.0, Some(&mut grad));
            let want = c["loss_from_logits"].as_f64().unwrap();
            assert!(
                (loss - want).abs() < 1e-5 * (1.0 + want.abs()),
                "{case}: {loss} vs {want}"
            );
            for (a, b) in grad.iter().zip(flat(&c["grad_logits"]).0) {
                assert!((a - b).abs() < 1e-5, "{case} grad: {a} vs {b}");
            }
        }
    }

    #[test]
    fn accuracy_counts_and_binary_is_stable_for_large_logits() {
        let (_, correct) =
            loss_and_grad(&[2.0, 1.0, 0.0, 3.0, 5.0, -1.0], 2, &[0, 1, 1], 0.0, None);
        assert_eq!(correct, 2);
        let (loss, correct) = loss_and_grad(&[100.0, -100.0], 1, &[1, 0], 0.0, None);
        assert!(loss.abs() < 1e-6 && correct == 2);
        let (loss, _) = loss_and_grad(&[-100.0], 1, &[1], 0.0, None);
        assert!((loss - 100.0).abs() < 1e-6);
    }

    /// Keras' `label_smoothing` cases of `reference/regularizers.py` (categorical and the
    /// binary head), loss and gradient.
    #[test]
    fn label_smoothing_matches_the_keras_reference() {
        let fx = crate::train::loss::tests::regularizers();
        let cases = fx["label_smoothing"].as_array().unwrap();
        for c in cases {
            let name = c["name"].as_str().unwrap();
            let (z, k) = flat(&c["logits"]);
            let labels: Vec<u32> = c["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            let ls = c["label_smoothing"].as_f64().unwrap();
            let mut grad = vec![0.0; z.len()];
            let (loss, _) = loss_and_grad(&z, k, &labels, ls, Some(&mut grad));
            let want = c["loss"].as_f64().unwrap();
            assert!(
                (loss - want).abs() < 1e-5 * (1.0 + want.abs()),
                "{name}: {loss} vs {want}"
            );
            for (a, b) in grad.iter().zip(flat(&c["grad"]).0) {
                assert!((a - b).abs() < 1e-6, "{name} grad: {a} vs {b}");
            }
        }
        assert_eq!(cases.len(), 6);
    }
}
