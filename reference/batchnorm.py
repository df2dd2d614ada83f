#!/usr/bin/env python3
"""Training-mode BatchNormalization reference (Keras semantics), numpy only.

Writes crates/lcnn/tests/fixtures/batchnorm.json.

Case "conv" (the top-level keys): x of shape [4, 3, 2, 2] (NCHW, channel axis 1)
with x[i] = sin(0.3 * i) over the flat row-major index, gamma = [1, 1.5, 0.5],
beta = [0, 0.1, -0.1], eps = 1e-3, momentum = 0.99, moving_mean = 0 and
moving_variance = 1 before the step.  Case "dense" (key "dense_2d"): the same
rule on x of shape [6, 3] (a BatchNormalization after a Dense layer).

Training-mode output (both Keras 2.x code paths and Keras 3):
    y = gamma * (x - mean_B) / sqrt(var_B + eps) + beta,
    mean_B / var_B over every axis but the channel axis, var_B BIASED (/ n).

Moving statistics after one step (Keras):
    moving = moving * momentum + batch_stat * (1 - momentum)
The batch variance that goes into the moving variance is where the Keras
versions differ:

  * tf.keras 2.x (keras/layers/normalization/batch_normalization.py), for a
    4D/5D input with axis 1 or 3 (=> fused=True by default; our conv BNs):
    the layer calls tf.compat.v1.nn.fused_batch_norm(is_training=True,
    exponential_avg_factor=1 - momentum) and `_maybe_add_or_remove_bessels_
    correction` is a no-op because `self._bessels_correction_test_only = True`.
    TF's FusedBatchNorm CPU kernel (tensorflow/core/kernels/fused_batch_norm_op.cc)
    computes
        new_variance = (1 - f) * old_variance + (f * rest_size_adjust) * batch_variance
        rest_size_adjust = n / (n - 1)   // "This adjustment is for Bessel's correction"
    (cuDNN's running variance is also the unbiased one), so the moving variance
    uses the UNBIASED (Bessel-corrected, n/(n-1)) batch variance.
      https://github.com/keras-team/keras/blob/v2.12.0/keras/layers/normalization/batch_normalization.py
      https://github.com/tensorflow/tensorflow/blob/master/tensorflow/core/kernels/fused_batch_norm_op.cc
  * tf.keras 2.x, 2D input (BN after Dense, e.g. bn_fc1): rank is not 4/5, so
    build() sets fused=False; the non-fused path uses tf.nn.moments (biased)
    and _assign_moving_average -> the moving variance uses the BIASED variance.
  * Keras 3 (keras/src/layers/normalization/batch_normalization.py): always
    ops.moments (biased) -> BIASED for every input rank.
      https://github.com/keras-team/keras/blob/master/keras/src/layers/normalization/batch_normalization.py

n is the number of elements reduced per channel (N*H*W; N for 2D input).
"""

import numpy as np

from _common import write_fixture

EPS = 1e-3
MOMENTUM = 0.99
GAMMA = np.array([1.0, 1.5, 0.5])
BETA = np.array([0.0, 0.1, -0.1])


def bn_train_step(x, gamma, beta, eps, momentum, moving_mean, moving_var):
    axes = tuple(a for a in range(x.ndim) if a != 1)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    n = x.size // x.shape[1]
    mean = x.mean(axis=axes)
    var_b = ((x - mean.reshape(shape)) ** 2).mean(axis=axes)  # biased, / n
    var_u = var_b * n / (n - 1)  # unbiased, / (n - 1)
    y = gamma.reshape(shape) * (x - mean.reshape(shape)) / np.sqrt(var_b.reshape(shape) + eps) + beta.reshape(shape)
    new_mean = moving_mean * momentum + mean * (1.0 - momentum)
    new_var_biased = moving_var * momentum + var_b * (1.0 - momentum)
    new_var_unbiased = moving_var * momentum + var_u * (1.0 - momentum)
    # Cross-check against numpy's own variance.
    assert np.allclose(var_b, x.var(axis=axes, ddof=0))
    assert np.allclose(var_u, x.var(axis=axes, ddof=1))
    return {
        "n_per_channel": n,
        "batch_mean": mean,
        "batch_var_biased": var_b,
        "batch_var_unbiased": var_u,
        "output": y,
        "moving_mean": new_mean,
        "moving_var_biased": new_var_biased,
        "moving_var_unbiased": new_var_unbiased,
    }


def case(shape, keras2_moving_var):
    n = int(np.prod(shape))
    x = np.sin(0.3 * np.arange(n, dtype=np.float64)).reshape(shape)
    c = shape[1]
    r = bn_train_step(x, GAMMA, BETA, EPS, MOMENTUM, np.zeros(c), np.ones(c))
    out = {"x_shape": list(shape), "x": x}
    out.update(r)
    out["keras2_moving_var"] = keras2_moving_var
    out["keras3_moving_var"] = "biased"
    return out


def main():
    conv = case((4, 3, 2, 2), "unbiased")
    dense = case((6, 3), "biased")
    payload = {
        "description": "Training-mode BatchNorm, one step; see reference/batchnorm.py",
        "x_rule": "x[i] = sin(0.3*i) over the flat row-major index",
        "channel_axis": 1,
        "gamma": GAMMA,
        "beta": BETA,
        "eps": EPS,
        "momentum": MOMENTUM,
        "moving_mean_init": 0.0,
        "moving_var_init": 1.0,
        "update_rule": "moving = moving*momentum + batch_stat*(1-momentum)",
        "keras_note": "tf.keras 2.x: 4D input -> fused kernel -> moving_var uses the UNBIASED "
                      "(n/(n-1)) batch variance; 2D input -> non-fused -> BIASED. Keras 3: BIASED "
                      "always. The normalized output always uses the BIASED batch variance.",
    }
    payload.update(conv)
    payload["dense_2d"] = dense
    write_fixture("batchnorm.json", payload)


if __name__ == "__main__":
    main()
