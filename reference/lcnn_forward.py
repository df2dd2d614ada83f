#!/usr/bin/env python3
"""Independent numpy reference for the LCNN inference forward pass.

Writes crates/lcnn/tests/fixtures/lcnn_forward.json.

Conventions (PyTorch / Burn layout):
  * activations NCHW; flatten of [N, C, H, W] in C, H, W order;
  * conv weight [out, in, kh, kw], cross-correlation (no kernel flip, as in
    Keras / PyTorch), stride 1, padding 'same' = zero pad (k-1)/2 each side;
  * dense weight [in, out], y = x @ W + b (Burn's Linear);
  * MFM(x) = max(x[:, :C/2], x[:, C/2:]) on the channel axis (axis 1);
  * maxpool 2x2 stride 2, floor (odd trailing row/column dropped);
  * BatchNorm in inference mode: gamma * (x - mean) / sqrt(var + eps) + beta,
    eps = 1e-3 (Keras default); dropout is the identity.

Deterministic parameters (no weights file): element i (flat row-major index)
of parameter tensor p (p counts every tensor in PARAM_SPECS, 0-based):
    s = sin(0.7 * i + 1.3 * p + 0.1)
    conv / dense weight : s / sqrt(fan_in)   (fan_in = in*kh*kw, or in)
    bias                : 0.1 * s
    gamma               : 1 + 0.1 * s
    beta                : 0.1 * s
    running_mean        : 0.1 * s
    running_var         : 1 + 0.5 * |s|
Each value is computed entirely in float64 and then rounded ONCE to float32.
Input element i of the flat NCHW input [2, 1, 28, 28]:
    0.5 + 0.5 * sin(0.05 * i + 0.3)      (float64, rounded once to float32)
All arithmetic of the forward pass is then done in float64 on those
float32-rounded values; the JSON holds the float64 results.
"""

import math

import numpy as np

from _common import write_fixture

BN_EPS = 1e-3
BATCH = 2
IN_HW = 28
NUM_CLASSES = 10


def conv_spec(name, out_c, in_c, k):
    return [
        (f"{name}.weight", "weight", (out_c, in_c, k, k), in_c * k * k),
        (f"{name}.bias", "bias", (out_c,), None),
    ]


def bn_spec(name, c):
    return [
        (f"{name}.gamma", "gamma", (c,), None),
        (f"{name}.beta", "beta", (c,), None),
        (f"{name}.running_mean", "running_mean", (c,), None),
        (f"{name}.running_var", "running_var", (c,), None),
    ]


def dense_spec(name, d_in, d_out):
    return [
        (f"{name}.weight", "weight", (d_in, d_out), d_in),
        (f"{name}.bias", "bias", (d_out,), None),
    ]


# (name, kind, shape, fan_in) in parameter order p = 0, 1, 2, ...
PARAM_SPECS = (
    conv_spec("conv1", 64, 1, 5)
    + conv_spec("conv2a", 64, 32, 1)
    + bn_spec("bn2a", 32)
    + conv_spec("conv2", 96, 32, 3)
    + bn_spec("bn2", 48)
    + conv_spec("conv3a", 96, 48, 1)
    + bn_spec("bn3a", 48)
    + conv_spec("conv3", 128, 48, 3)
    + conv_spec("conv4a", 128, 64, 1)
    + bn_spec("bn4a", 64)
    + conv_spec("conv4", 64, 64, 3)
    + bn_spec("bn4", 32)
    + conv_spec("conv5a", 64, 32, 1)
    + bn_spec("bn5a", 32)
    + conv_spec("conv5", 64, 32, 3)
    + dense_spec("fc1", 32, 160)
    + bn_spec("bn_fc1", 80)
    + dense_spec("fc2", 80, NUM_CLASSES)
)

EXPECTED_PARAM_COUNT = 164_938


def make_param(p, kind, shape, fan_in):
    """Parameter p by the closed-form rule; float64 math, one rounding to f32."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.float64)
    s = np.sin(0.7 * i + 1.3 * p + 0.1)
    if kind == "weight":
        v = s / math.sqrt(fan_in)
    elif kind in ("bias", "beta", "running_mean"):
        v = 0.1 * s
    elif kind == "gamma":
        v = 1.0 + 0.1 * s
    elif kind == "running_var":
        v = 1.0 + 0.5 * np.abs(s)
    else:
        raise ValueError(kind)
    return v.astype(np.float32).reshape(shape)


def make_params():
    params = {}
    for p, (name, kind, shape, fan_in) in enumerate(PARAM_SPECS):
        params[name] = make_param(p, kind, shape, fan_in)
    total = sum(v.size for v in params.values())
    assert total == EXPECTED_PARAM_COUNT, total
    assert len(params) == 50
    return params


def make_input():
    n = BATCH * 1 * IN_HW * IN_HW
    i = np.arange(n, dtype=np.float64)
    x = 0.5 + 0.5 * np.sin(0.05 * i + 0.3)
    return x.astype(np.float32).reshape(BATCH, 1, IN_HW, IN_HW)


# ---------------------------------------------------------------- layers (f64)


def conv2d_same(x, w, b):
    """Stride-1 'same' conv, NCHW input, weight [out, in, kh, kw].

    out[n, o, y, x] = b[o] + sum_{c, i, j} xpad[n, c, y + i, x + j] * w[o, c, i, j]
    Written as an explicit loop over the kernel taps (clear, not fast).
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n, c_in, h, wd = x.shape
    c_out, c_in_w, kh, kw = w.shape
    assert c_in == c_in_w, (x.shape, w.shape)
    assert kh % 2 == 1 and kw % 2 == 1
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    xp = np.zeros((n, c_in, h + 2 * ph, wd + 2 * pw), dtype=np.float64)
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    out = np.zeros((n, c_out, h, wd), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + h, j:j + wd]  # [n, c_in, h, w]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    out += b[None, :, None, None]
    return out


def conv2d_naive(x, w, b):
    """Scalar-loop conv used only to cross-check conv2d_same on a small case."""
    n, c_in, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    out = np.zeros((n, c_out, h, wd))
    for a in range(n):
        for o in range(c_out):
            for y in range(h):
                for z in range(wd):
                    acc = float(b[o])
                    for c in range(c_in):
                        for i in range(kh):
                            for j in range(kw):
                                yy, zz = y + i - ph, z + j - pw
                                if 0 <= yy < h and 0 <= zz < wd:
                                    acc += float(x[a, c, yy, zz]) * float(w[o, c, i, j])
                    out[a, o, y, z] = acc
    return out


def mfm(x):
    c = x.shape[1]
    assert c % 2 == 0
    return np.maximum(x[:, : c // 2], x[:, c // 2:])


def maxpool2x2(x):
    n, c, h, w = x.shape
    ho, wo = h // 2, w // 2
    x = x[:, :, : 2 * ho, : 2 * wo]
    return x.reshape(n, c, ho, 2, wo, 2).max(axis=(3, 5))


def batchnorm_inference(x, params, name):
    g = params[f"{name}.gamma"].astype(np.float64)
    b = params[f"{name}.beta"].astype(np.float64)
    m = params[f"{name}.running_mean"].astype(np.float64)
    v = params[f"{name}.running_var"].astype(np.float64)
    shape = (1, -1) + (1,) * (x.ndim - 2)  # channel axis 1 (NCHW or [N, F])
    return g.reshape(shape) * (x - m.reshape(shape)) / np.sqrt(v.reshape(shape) + BN_EPS) + b.reshape(shape)


def dense(x, params, name):
    w = params[f"{name}.weight"].astype(np.float64)  # [in, out]
    b = params[f"{name}.bias"].astype(np.float64)
    return x @ w + b


def softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def forward(x, params):
    P = params
    st = {}

    def conv(h, name):
        return conv2d_same(h, P[f"{name}.weight"], P[f"{name}.bias"])

    h = x.astype(np.float64)
    h = maxpool2x2(mfm(conv(h, "conv1")))
    assert h.shape == (BATCH, 32, 14, 14)
    st["after_conv1_mfm_pool"] = h
    h = batchnorm_inference(mfm(conv(h, "conv2a")), P, "bn2a")
    st["after_bn2a"] = h
    h = batchnorm_inference(maxpool2x2(mfm(conv(h, "conv2"))), P, "bn2")
    assert h.shape == (BATCH, 48, 7, 7)
    st["after_bn2"] = h
    h = batchnorm_inference(mfm(conv(h, "conv3a")), P, "bn3a")
    st["after_bn3a"] = h
    h = maxpool2x2(mfm(conv(h, "conv3")))
    assert h.shape == (BATCH, 64, 3, 3)
    st["after_conv3_mfm_pool"] = h
    h = batchnorm_inference(mfm(conv(h, "conv4a")), P, "bn4a")
    st["after_bn4a"] = h
    h = batchnorm_inference(mfm(conv(h, "conv4")), P, "bn4")
    assert h.shape == (BATCH, 32, 3, 3)
    st["after_bn4"] = h
    h = batchnorm_inference(mfm(conv(h, "conv5a")), P, "bn5a")
    st["after_bn5a"] = h
    h = maxpool2x2(mfm(conv(h, "conv5")))
    assert h.shape == (BATCH, 32, 1, 1)
    flat = h.reshape(BATCH, -1)  # C, H, W order
    st["flatten"] = flat
    h = mfm(dense(flat, P, "fc1"))
    assert h.shape == (BATCH, 80)
    st["after_fc1_mfm"] = h
    h = batchnorm_inference(h, P, "bn_fc1")
    st["after_bn_fc1"] = h
    # dropout: identity at inference
    logits = dense(h, P, "fc2")
    probs = softmax(logits)
    return logits, probs, st


def self_check():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 6))
    for k in (1, 3, 5):
        w = rng.standard_normal((4, 3, k, k))
        b = rng.standard_normal(4)
        assert np.allclose(conv2d_same(x, w, b), conv2d_naive(x, w, b), atol=1e-12)
    y = np.arange(2 * 4 * 3 * 3, dtype=np.float64).reshape(2, 4, 3, 3)
    assert maxpool2x2(y).shape == (2, 4, 1, 1)
    assert maxpool2x2(y)[0, 0, 0, 0] == y[0, 0, 1, 1]
    assert np.array_equal(mfm(y), y[:, 2:])  # second half is larger here


def main():
    self_check()
    params = make_params()
    x = make_input()
    logits, probs, st = forward(x, params)
    assert np.allclose(probs.sum(axis=1), 1.0)

    param_checks = []
    for p, (name, kind, shape, fan_in) in enumerate(PARAM_SPECS):
        v = params[name].astype(np.float64).ravel()
        param_checks.append({
            "p": p,
            "name": name,
            "kind": kind,
            "shape": list(shape),
            "sum": float(v.sum()),
            "first": v[:3].tolist(),
            "last": float(v[-1]),
        })

    payload = {
        "description": "LCNN inference forward pass (BN running stats, dropout off); "
                       "see reference/lcnn_forward.py and reference/README.md",
        "input_shape": [BATCH, 1, IN_HW, IN_HW],
        "num_classes": NUM_CLASSES,
        "bn_eps": BN_EPS,
        "param_rule": "s = sin(0.7*i + 1.3*p + 0.1) in f64; weight s/sqrt(fan_in), bias 0.1*s, "
                      "gamma 1+0.1*s, beta 0.1*s, running_mean 0.1*s, running_var 1+0.5*|s|; "
                      "value computed in f64 then rounded once to f32",
        "input_rule": "x[i] = 0.5 + 0.5*sin(0.05*i + 0.3) in f64, rounded once to f32",
        "param_count": EXPECTED_PARAM_COUNT,
        "input_sum": float(x.astype(np.float64).sum()),
        "input_first": x.ravel()[:3].astype(np.float64).tolist(),
        "logits": logits,
        "probs": probs,
        "after_conv1_mfm_pool_sum": float(st["after_conv1_mfm_pool"].sum()),
        "after_bn2_sum": float(st["after_bn2"].sum()),
        "flatten": st["flatten"],
        "stage_sums": {k: float(v.sum()) for k, v in st.items()},
        "stage_shapes": {k: list(v.shape) for k, v in st.items()},
        "params": param_checks,
    }
    write_fixture("lcnn_forward.json", payload)


if __name__ == "__main__":
    main()
