#!/usr/bin/env python3
"""Keras cross-entropy losses (from probabilities), numpy only, float64.

Writes crates/lcnn/tests/fixtures/losses.json.

Categorical cross-entropy, tf.keras 2.x keras/backend.py categorical_crossentropy
(from_logits=False), and Keras 3 keras/src/backend/tensorflow/nn.py (same):
    p = p / sum(p, axis=-1)                       # renormalise
    p = clip(p, eps, 1 - eps), eps = 1e-7         # backend.epsilon()
    loss_n = -sum_c y[n, c] * log(p[n, c])
  https://github.com/keras-team/keras/blob/v2.12.0/keras/backend.py
  https://github.com/keras-team/keras/blob/master/keras/src/backend/tensorflow/nn.py
Binary cross-entropy (from_logits=False):
  tf.keras 2.x backend.binary_crossentropy:
    p = clip(p, eps, 1 - eps)
    bce = -(y * log(p + eps) + (1 - y) * log(1 - p + eps))   # note the extra + eps
  Keras 3 (tensorflow backend nn.py):
    p = clip(p, eps, 1 - eps)
    bce = -(y * log(p) + (1 - y) * log(1 - p))
  keras.losses.binary_crossentropy then takes the mean over the last axis.
Reduction: the default SUM_OVER_BATCH_SIZE -> mean over the batch (for BCE the
mean of per-sample means = the mean over all N*D elements).

Caveat (both versions, backend._get_logits): when the probabilities tensor is
the direct output of a Keras softmax / sigmoid layer (graph mode `op.type ==
"Softmax"/"Sigmoid"`, or the `_keras_logits` attribute Keras >= 2.7 sets on
Activation outputs), Keras bypasses the clipping and uses
tf.nn.softmax_cross_entropy_with_logits / sigmoid_cross_entropy_with_logits on
the pre-activation logits.  This fixture therefore also gives the exact
"from logits" values; they coincide with the clipped values unless some
probability is below 1e-7 (see the "*_saturated" cases).

Gradients are of the MEAN loss w.r.t. the logits z (probabilities = softmax(z)
or sigmoid(z)):
  CCE, no clipping active:      (softmax(z) - y) / N
  CCE, clip active on p[n, t]:  clip_by_value passes no gradient outside
                                [eps, 1-eps], so that sample's gradient is 0
                                (one-hot y); the renormalisation step adds
                                nothing since softmax sums to 1.
  BCE from logits:              (sigmoid(z) - y) / (N * D)
  BCE Keras 2.x (+eps in log):  (-y/(p+eps) + (1-y)/(1-p+eps)) * p(1-p) / (N*D)
"""

import numpy as np

from _common import write_fixture

EPS = 1e-7


def softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(z):
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def one_hot(labels, c):
    y = np.zeros((len(labels), c))
    y[np.arange(len(labels)), labels] = 1.0
    return y


def cce_case(logits, labels):
    n, c = logits.shape
    y = one_hot(labels, c)
    p = softmax(logits)
    q = p / p.sum(axis=-1, keepdims=True)
    clip_active = (q < EPS) | (q > 1.0 - EPS)
    qc = np.clip(q, EPS, 1.0 - EPS)
    per_sample_clipped = -(y * np.log(qc)).sum(axis=-1)
    per_sample_logits = -(y * log_softmax(logits)).sum(axis=-1)
    grad_logits = (p - y) / n
    # Gradient through the clipped path: zero where the true-class prob is clipped.
    true_clipped = (clip_active & (y > 0)).any(axis=-1)
    grad_clipped = np.where(true_clipped[:, None], 0.0, grad_logits)
    # Finite-difference check of the unclipped-path gradient.
    h = 1e-6
    fd = np.zeros_like(logits)
    for a in range(n):
        for b in range(c):
            zp, zm = logits.copy(), logits.copy()
            zp[a, b] += h
            zm[a, b] -= h
            fd[a, b] = (-(y * log_softmax(zp)).sum(-1).mean() + (y * log_softmax(zm)).sum(-1).mean()) / (2 * h)
    assert np.allclose(fd, grad_logits, atol=1e-8), np.abs(fd - grad_logits).max()
    return {
        "logits": logits,
        "labels": labels,
        "onehot": y,
        "probs": p,
        "clip_active": clip_active.astype(int),
        "per_sample_loss": per_sample_clipped,
        "loss": per_sample_clipped.mean(),
        "per_sample_loss_from_logits": per_sample_logits,
        "loss_from_logits": per_sample_logits.mean(),
        "grad_logits": grad_logits,
        "grad_logits_clipped_path": grad_clipped,
    }


def bce_case(logits, labels):
    n, d = logits.shape
    y = labels
    p = sigmoid(logits)
    clip_active = (p < EPS) | (p > 1.0 - EPS)
    pc = np.clip(p, EPS, 1.0 - EPS)
    elem_k2 = -(y * np.log(pc + EPS) + (1 - y) * np.log(1 - pc + EPS))
    elem_k3 = -(y * np.log(pc) + (1 - y) * np.log(1 - pc))
    # Exact sigmoid cross-entropy with logits (TF's stable form).
    elem_logits = np.maximum(logits, 0) - logits * y + np.log1p(np.exp(-np.abs(logits)))
    grad_logits = (p - y) / (n * d)
    dl_dp = -y / (pc + EPS) + (1 - y) / (1 - pc + EPS)
    grad_k2 = np.where(clip_active, 0.0, dl_dp * p * (1 - p)) / (n * d)
    # Finite-difference check of the Keras 2.x probability-path gradient.
    h = 1e-6

    def k2_mean(z):
        q = np.clip(sigmoid(z), EPS, 1 - EPS)
        return (-(y * np.log(q + EPS) + (1 - y) * np.log(1 - q + EPS))).mean()

    fd = np.zeros_like(logits)
    for a in range(n):
        for b in range(d):
            zp, zm = logits.copy(), logits.copy()
            zp[a, b] += h
            zm[a, b] -= h
            fd[a, b] = (k2_mean(zp) - k2_mean(zm)) / (2 * h)
    assert np.allclose(fd, grad_k2, atol=1e-8), np.abs(fd - grad_k2).max()
    return {
        "logits": logits,
        "labels": y,
        "probs": p,
        "clip_active": clip_active.astype(int),
        "per_sample_loss_keras2": elem_k2.mean(axis=-1),
        "loss_keras2": elem_k2.mean(),
        "per_sample_loss_keras3": elem_k3.mean(axis=-1),
        "loss_keras3": elem_k3.mean(),
        "per_sample_loss_from_logits": elem_logits.mean(axis=-1),
        "loss_from_logits": elem_logits.mean(),
        "grad_logits": grad_logits,
        "grad_logits_keras2_prob_path": grad_k2,
    }


def main():
    # CCE: N = 4 samples, C = 10 classes (the LCNN head); moderate logits, no clipping.
    n, c = 4, 10
    z = 2.0 * np.sin(0.9 * np.arange(n * c, dtype=np.float64) + 0.4).reshape(n, c)
    cce = cce_case(z, [3, 0, 7, 9])
    assert not cce["clip_active"].any()
    # CCE with a saturated sample: true-class probability far below 1e-7.
    z_sat = np.array([
        [20.0, 0.0, -1.0, 0.5],   # label 1: p ~ 2e-9 -> clipped to 1e-7
        [0.3, -0.2, 1.1, 0.0],    # ordinary
        [-30.0, 25.0, 0.0, 1.0],  # label 1: p ~ 1 - 3e-11 -> clipped to 1 - 1e-7
    ])
    cce_sat = cce_case(z_sat, [1, 2, 1])
    assert cce_sat["clip_active"].any()

    # BCE: N = 3, D = 4, labels in {0, 1}; moderate logits.
    zb = 1.5 * np.sin(1.3 * np.arange(12, dtype=np.float64) + 0.2).reshape(3, 4)
    yb = np.array([[1, 0, 0, 1], [0, 1, 1, 0], [1, 1, 0, 0]], dtype=np.float64)
    bce = bce_case(zb, yb)
    assert not bce["clip_active"].any()
    zb_sat = np.array([[18.0, -1.0], [-20.0, 0.5]])
    yb_sat = np.array([[0.0, 1.0], [1.0, 0.0]])
    bce_sat = bce_case(zb_sat, yb_sat)
    assert bce_sat["clip_active"].any()

    payload = {
        "description": "Keras CCE / BCE from probabilities, mean over batch; see reference/losses.py",
        "epsilon": EPS,
        "reduction": "mean over batch (SUM_OVER_BATCH_SIZE); BCE: mean over last axis first",
        "cce": cce,
        "cce_saturated": cce_sat,
        "bce": bce,
        "bce_saturated": bce_sat,
    }
    write_fixture("losses.json", payload)


if __name__ == "__main__":
    main()
