#!/usr/bin/env python3
"""A Functional Keras model in the seeds' LCNN form (Conv2D -> Maxout -> pooling ... Dense ->
Maxout -> Dense), its weights and its logits, computed in plain numpy (float64).

Writes crates/lcnn/tests/fixtures/keras_functional.json: the `model_config` JSON exactly as
Keras 2 saves a `keras.Model(inputs, outputs)` (class_name "Functional", layers with
`inbound_nodes`), each layer's weights in Keras' layouts (kernels `[kh, kw, in, out]`, Dense
`[in, out]`), an input batch (NHWC) and the logits for both channel pairings of `Maxout`:

  Maxout(num_units) as the seeds use it is TensorFlow Addons' layer
  (tensorflow_addons/layers/maxout.py).  For num_units = C/2 on the last axis:
    tfa >= 0.7:  expand_shape[axis] = num_units; expand_shape.insert(axis, k); max over axis
                 -> reshape(x, [..., 2, C/2]).max(-2)    out[j] = max(x[j], x[j + C/2])  "halves"
    tfa <  0.7 (and tf.contrib.layers.maxout): shape[axis] = num_units; shape += [k]; max(-1)
                 -> reshape(x, [..., C/2, 2]).max(-1)    out[j] = max(x[2j], x[2j+1])    "pairs"

  AveragePooling2D(pool, strides, padding="same") averages only the pixels inside the image
  (TensorFlow's avg_pool excludes the padding from the count); TF's `same` padding puts the
  odd pixel at the bottom / right: pad_total = max((ceil(n/s) - 1) * s + k - n, 0),
  pad_before = pad_total // 2.

  Flatten is in H, W, C order (channels_last), so the Dense after it reads rows in that order.

The model (input 9x9x2):
  conv1 Conv2D(8, 3, same, linear) -> mfm1 Maxout(4) -> pool1 AveragePooling2D(3, 2, same)
  -> conv2 Conv2D(6, 2, valid, relu) -> pool2 AveragePooling2D(2, 2, valid) -> flatten
  -> fc1 Dense(8) -> mfm2 Maxout(4) -> out Dense(3, softmax)
Logits are the last Dense's pre-softmax values; probabilities are also stored.
"""

import json
import math

import numpy as np

from _common import write_fixture


def lcg(n, seed):
    """Deterministic values in [-1, 1) (no numpy RNG, so the fixture never changes)."""
    out, s = [], seed
    for _ in range(n):
        s = (s * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        out.append(((s >> 11) / float(1 << 53)) * 2.0 - 1.0)
    return np.array(out)


def same_pads(n, k, s):
    total = max((math.ceil(n / s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def conv2d(x, w, b, padding, stride=1):
    """x [N, H, W, C], w [kh, kw, C, O]: a direct loop (TF convention, cross-correlation)."""
    n, h, wd, c = x.shape
    k, o = w.shape[0], w.shape[3]
    if padding == "same":
        (t, bo), (le, r) = same_pads(h, k, stride), same_pads(wd, k, stride)
        x = np.pad(x, ((0, 0), (t, bo), (le, r), (0, 0)))
    oh = (x.shape[1] - k) // stride + 1
    ow = (x.shape[2] - k) // stride + 1
    y = np.zeros((n, oh, ow, o))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
            y[:, i, j, :] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2]))
    return y + b


def avg_pool(x, k, s, padding):
    n, h, w, c = x.shape
    if padding == "same":
        oh, ow = math.ceil(h / s), math.ceil(w / s)
        top, left = same_pads(h, k, s)[0], same_pads(w, k, s)[0]
    else:
        oh, ow = (h - k) // s + 1, (w - k) // s + 1
        top = left = 0
    y = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            y0, x0 = i * s - top, j * s - left
            ys = slice(max(y0, 0), min(y0 + k, h))
            xs = slice(max(x0, 0), min(x0 + k, w))
            y[:, i, j, :] = x[:, ys, xs, :].mean(axis=(1, 2))
    return y


def maxout(x, order):
    c = x.shape[-1]
    if order == "halves":
        return x.reshape(x.shape[:-1] + (2, c // 2)).max(axis=-2)
    return x.reshape(x.shape[:-1] + (c // 2, 2)).max(axis=-1)


def cross_check_with_keras(weights, x, want):
    """When Keras (3) is importable: the same model built with Keras' own Conv2D,
    AveragePooling2D, Flatten and Dense and tfa's current Maxout (halves), same logits."""
    try:
        import keras
        from keras import layers, ops
    except ImportError:
        return

    class Maxout(layers.Layer):  # tensorflow_addons/layers/maxout.py (tfa >= 0.7), axis -1
        def __init__(self, num_units, **kw):
            super().__init__(**kw)
            self.num_units = num_units

        def call(self, x):
            c = x.shape[-1]
            k = c // self.num_units
            shape = list(ops.shape(x))[:-1] + [k, self.num_units]
            return ops.max(ops.reshape(x, shape), axis=-2)

    inp = keras.Input((9, 9, 2))
    h = layers.Conv2D(8, 3, padding="same", name="conv1")(inp)
    h = Maxout(4)(h)
    h = layers.AveragePooling2D(3, 2, padding="same")(h)
    h = layers.Conv2D(6, 2, activation="relu", name="conv2")(h)
    h = layers.AveragePooling2D(2, 2)(h)
    h = layers.Flatten()(h)
    h = layers.Dense(8, name="fc1")(h)
    h = Maxout(4)(h)
    out = layers.Dense(3, name="out")(h)
    model = keras.Model(inp, out)
    for name, w in weights.items():
        model.get_layer(name).set_weights([w["kernel"], w["bias"]])
    got = np.asarray(model.predict(x.astype("float32"), verbose=0), dtype=np.float64)
    err = np.abs(got - want).max()
    assert err < 1e-5, f"Keras {keras.__version__} disagrees: {err}"
    print(f"cross-check: Keras {keras.__version__} logits agree within {err:.1e}")


def layer(cls, name, inbound, **cfg):
    cfg["name"] = name
    nodes = [[[inbound, 0, 0, {}]]] if inbound else []
    return {"class_name": cls, "config": cfg, "name": name, "inbound_nodes": nodes}


def main():
    conv = dict(data_format="channels_last", dilation_rate=[1, 1], groups=1, use_bias=True,
                strides=[1, 1])
    layers = [
        layer("InputLayer", "input_1", None, batch_input_shape=[None, 9, 9, 2], dtype="float32"),
        layer("Conv2D", "conv1", "input_1", filters=8, kernel_size=[3, 3], padding="same",
              activation="linear", **conv),
        layer("Maxout", "mfm1", "conv1", num_units=4, axis=-1),
        layer("AveragePooling2D", "pool1", "mfm1", pool_size=[3, 3], strides=[2, 2],
              padding="same", data_format="channels_last"),
        layer("Conv2D", "conv2", "pool1", filters=6, kernel_size=[2, 2], padding="valid",
              activation="relu", **conv),
        layer("AveragePooling2D", "pool2", "conv2", pool_size=[2, 2], strides=[2, 2],
              padding="valid", data_format="channels_last"),
        layer("Flatten", "flatten", "pool2", data_format="channels_last"),
        layer("Dense", "fc1", "flatten", units=8, activation="linear", use_bias=True),
        layer("Maxout", "mfm2", "fc1", num_units=4, axis=-1),
        layer("Dense", "out", "mfm2", units=3, activation="softmax", use_bias=True),
    ]
    config = {"class_name": "Functional", "config": {
        "name": "lcnn_seed", "layers": layers,
        "input_layers": [["input_1", 0, 0]], "output_layers": [["out", 0, 0]]}}

    # pool1: 9 -> ceil(9/2) = 5; conv2 valid 2 -> 4; pool2 valid 2 -> 2: flatten 2*2*6 = 24.
    shapes = {"conv1": [(3, 3, 2, 8), (8,)], "conv2": [(2, 2, 4, 6), (6,)],
              "fc1": [(24, 8), (8,)], "out": [(4, 3), (3,)]}
    weights, seed = {}, 1
    for name, (ks, bs) in shapes.items():
        k = lcg(int(np.prod(ks)), seed).reshape(ks) * 0.5
        b = lcg(int(np.prod(bs)), seed + 100) * 0.1
        weights[name] = {"kernel": k, "bias": b}
        seed += 1
    x = lcg(2 * 9 * 9 * 2, 99).reshape(2, 9, 9, 2)

    def forward(order):
        h = conv2d(x, weights["conv1"]["kernel"], weights["conv1"]["bias"], "same")
        h = maxout(h, order)
        h = avg_pool(h, 3, 2, "same")
        h = np.maximum(conv2d(h, weights["conv2"]["kernel"], weights["conv2"]["bias"], "valid"), 0)
        h = avg_pool(h, 2, 2, "valid")
        assert h.shape == (2, 2, 2, 6), h.shape
        h = h.reshape(2, -1)  # H, W, C order
        h = h @ weights["fc1"]["kernel"] + weights["fc1"]["bias"]
        h = maxout(h, order)
        return h @ weights["out"]["kernel"] + weights["out"]["bias"]

    # Self-checks: the pooling excludes padding (a constant image pools to itself), the two
    # pairings differ on this model, and halves/pairs agree with their definitions on a vector.
    const = np.full((1, 9, 9, 1), 3.0)
    assert np.allclose(avg_pool(const, 3, 2, "same"), 3.0)
    v = np.array([[1.0, 5.0, 3.0, 2.0]])
    assert maxout(v, "halves").tolist() == [[3.0, 5.0]]
    assert maxout(v, "pairs").tolist() == [[5.0, 3.0]]
    logits = {o: forward(o) for o in ("halves", "pairs")}
    assert np.abs(logits["halves"] - logits["pairs"]).max() > 1e-3

    cross_check_with_keras(weights, x, logits["halves"])

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    write_fixture("keras_functional.json", {
        "model_config": json.dumps(config),
        "weights": {n: {"kernel": {"shape": list(w["kernel"].shape), "data": w["kernel"].ravel()},
                        "bias": w["bias"]} for n, w in weights.items()},
        "input_nhwc": {"shape": list(x.shape), "data": x.ravel()},
        "logits": {o: l for o, l in logits.items()},
        "probabilities": {o: softmax(l) for o, l in logits.items()},
    })


if __name__ == "__main__":
    main()
