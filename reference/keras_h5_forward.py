#!/usr/bin/env python3
"""Independent numpy + h5py forward pass of a Keras Sequential whole-model .h5 file.

Writes crates/lcnn/tests/fixtures/keras_cifar10_cnn.json and keras_cifar10_cnn_pixels.u8.

The model is ../shared/weights/keras-cifar10-cnn/cnn_model.h5, a Keras 2.9 `model.save()`
file. The layer list comes from the root attribute `model_config` (JSON), and each layer's
weights from `model_weights/<layer>/<weight_name>`, with the names taken from the layer
group's `weight_names` attribute, as Keras' own loader does. Supported layers, all
channels_last: InputLayer, Conv2D (valid/same with TF's asymmetric same padding, strides,
bias, activation), BatchNormalization (inference: moving statistics), MaxPooling2D,
AveragePooling2D, Flatten (H, W, C order), Dense, Dropout (identity), Activation. Activations:
linear, relu, sigmoid, softmax. Anything else stops the script.

Input: the first 10 files (sorted by name) of each class folder (sorted) of the test split in
cifar10-jpg.tar.gz, decoded by PIL to RGB uint8 HWC and fed as raw 0..255 values (the model
has no rescaling). The decoded bytes go to the .u8 file (100 x 32*32*3, HWC RGB), so a Rust
test can feed exactly these pixels whatever its JPEG decoder. All arithmetic is float64 on
the float32 weights; the JSON values are rounded to 7 significant digits.

Paths: $LCNN_TEST_DATA (default ../shared/data beside the repository, as the Rust tests) and
$LCNN_TEST_WEIGHTS (default ../shared/weights). `--full` also prints the accuracy on the
whole 10,000-image test set (not written to the fixture); `--check` writes nothing and fails
when the committed fixture is not this forward pass on the committed pixels (what CI runs).
"""

import hashlib
import io
import json
import os
import sys
import tarfile

import h5py
import numpy as np
from PIL import Image

from _common import FIXTURE_DIR, write_fixture

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
DATA_DIR = os.environ.get("LCNN_TEST_DATA") or os.path.join(REPO, os.pardir, "shared", "data")
WEIGHTS_DIR = os.environ.get("LCNN_TEST_WEIGHTS") or os.path.join(REPO, os.pardir, "shared", "weights")
ARCHIVE = os.path.join(DATA_DIR, "cifar10-jpg", "cifar10-jpg.tar.gz")
MODEL = os.path.join(WEIGHTS_DIR, "keras-cifar10-cnn", "cnn_model.h5")
PER_CLASS = 10

ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "softmax": lambda x: softmax(x),
}


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def activation(name):
    if name not in ACTIVATIONS:
        raise SystemExit(f"unsupported activation {name!r}")
    return ACTIVATIONS[name]


def same_pads(size, k, s):
    """TF 'same': out = ceil(size/s); the odd pixel of padding goes after (bottom/right)."""
    total = max((-(-size // s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def pad_hw(x, cfg, k, s, value):
    if cfg["padding"] == "valid":
        return x
    if cfg["padding"] != "same":
        raise SystemExit(f"{cfg['name']}: unsupported padding {cfg['padding']!r}")
    (t, b), (l, r) = same_pads(x.shape[1], k[0], s[0]), same_pads(x.shape[2], k[1], s[1])
    return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=value)


def windows(x, k, s):
    """[N, H, W, C] -> [N, Ho, Wo, C, kh, kw] view of every pooling / conv window."""
    v = np.lib.stride_tricks.sliding_window_view(x, tuple(k), axis=(1, 2))
    return v[:, :: s[0], :: s[1]]


def conv2d(x, cfg, w):
    if cfg.get("dilation_rate", [1, 1]) != [1, 1] or cfg.get("groups", 1) != 1:
        raise SystemExit(f"{cfg['name']}: dilation / groups are not supported")
    k, s = cfg["kernel_size"], cfg["strides"]
    kernel = w["kernel"]  # [kh, kw, cin, cout]
    cols = windows(pad_hw(x, cfg, k, s, 0.0), k, s)  # im2col as a view
    y = np.tensordot(cols, kernel.transpose(2, 0, 1, 3), axes=([3, 4, 5], [0, 1, 2]))
    if cfg["use_bias"]:
        y = y + w["bias"]
    return activation(cfg["activation"])(y)


def pool2d(x, cfg, kind):
    k, s = cfg["pool_size"], cfg["strides"] or cfg["pool_size"]
    if kind == "max":
        return windows(pad_hw(x, cfg, k, s, -np.inf), k, s).max(axis=(4, 5))
    # average: TF divides by the number of real (unpadded) pixels in each window
    total = windows(pad_hw(x, cfg, k, s, 0.0), k, s).sum(axis=(4, 5))
    count = windows(pad_hw(np.ones_like(x[:1, :, :, :1]), cfg, k, s, 0.0), k, s).sum(axis=(4, 5))
    return total / count


def batchnorm(x, cfg, w):
    axis = cfg["axis"][0] if isinstance(cfg["axis"], list) else cfg["axis"]
    if len(np.atleast_1d(cfg["axis"])) != 1 or axis not in (-1, x.ndim - 1):
        raise SystemExit(f"{cfg['name']}: only last-axis BatchNormalization is supported")
    y = (x - w["moving_mean"]) / np.sqrt(w["moving_variance"] + cfg["epsilon"])
    if cfg["scale"]:
        y = y * w["gamma"]
    if cfg["center"]:
        y = y + w["beta"]
    return y


def apply(layer, x, w):
    cls, cfg = layer["class_name"], layer["config"]
    if cfg.get("data_format", "channels_last") != "channels_last":
        raise SystemExit(f"{cfg['name']}: only channels_last is supported")
    if cls == "Conv2D":
        return conv2d(x, cfg, w)
    if cls == "BatchNormalization":
        return batchnorm(x, cfg, w)
    if cls in ("MaxPooling2D", "AveragePooling2D"):
        return pool2d(x, cfg, "max" if cls == "MaxPooling2D" else "avg")
    if cls == "Flatten":
        return x.reshape(x.shape[0], -1)  # H, W, C order, as Keras channels_last
    if cls == "Dense":
        y = x @ w["kernel"] + (w["bias"] if cfg["use_bias"] else 0.0)
        return activation(cfg["activation"])(y)
    if cls == "Dropout":
        return x
    if cls == "Activation":
        return activation(cfg["activation"])(x)
    raise SystemExit(f"unsupported layer {cls} ({cfg.get('name')})")


def load_model(path):
    """(input shape, [(layer dict, {short weight name: float64 array})]) from a Keras .h5."""
    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])
        if config["class_name"] != "Sequential":
            raise SystemExit(f"only Sequential models are supported, not {config['class_name']}")
        layers, in_shape = [], None
        for layer in config["config"]["layers"]:
            cfg = layer["config"]
            if "batch_input_shape" in cfg and in_shape is None:
                in_shape = tuple(cfg["batch_input_shape"][1:])
            if layer["class_name"] == "InputLayer":
                continue
            group = f["model_weights"][cfg["name"]]
            weights = {}
            for wn in group.attrs["weight_names"]:  # e.g. "conv2d/kernel:0"
                wn = wn.decode() if isinstance(wn, bytes) else wn
                weights[wn.split("/")[-1].split(":")[0]] = np.asarray(group[wn], dtype=np.float64)
            layers.append((layer, weights))
    return in_shape, layers


def forward(layers, x, trace=None):
    h, pre = x.astype(np.float64), None
    if layers[-1][0]["class_name"] != "Dense":
        raise SystemExit("the last layer must be Dense (its pre-activation goes to the fixture)")
    for i, (layer, w) in enumerate(layers):
        if i == len(layers) - 1 and layer["class_name"] == "Dense":
            cfg = layer["config"]
            pre = h @ w["kernel"] + (w["bias"] if cfg["use_bias"] else 0.0)
            h = activation(cfg["activation"])(pre)
        else:
            h = apply(layer, h, w)
        if trace is not None:
            trace.append((layer["config"]["name"], list(h.shape[1:]), float(h.sum())))
    return pre, h


def read_test_split(archive):
    """{class: {archive path: jpeg bytes}} of test/<class>/*.jpg, read from the tar.gz."""
    out = {}
    with tarfile.open(archive, "r:gz") as tar:
        for m in tar:
            parts = m.name.split("/")
            if m.isfile() and len(parts) >= 3 and parts[-3] == "test" and parts[-1].endswith(".jpg"):
                out.setdefault(parts[-2], {})[m.name] = tar.extractfile(m).read()
    return out


def decode(jpeg):
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=np.uint8)


def self_check():
    """im2col conv and pooling against scalar loops, with TF's asymmetric same padding."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 7, 3))
    for pad, s in (("valid", [1, 1]), ("same", [1, 1]), ("same", [2, 2]), ("valid", [2, 1])):
        cfg = dict(name="t", padding=pad, kernel_size=[3, 2], strides=s, use_bias=True, activation="linear")
        w = {"kernel": rng.standard_normal((3, 2, 3, 4)), "bias": rng.standard_normal(4)}
        y = conv2d(x, cfg, w)
        t = same_pads(6, 3, s[0])[0] if pad == "same" else 0
        l = same_pads(7, 2, s[1])[0] if pad == "same" else 0
        ref = np.zeros_like(y)
        for n, oy, ox, o in np.ndindex(*y.shape):
            acc = w["bias"][o]
            for i, j, c in np.ndindex(3, 2, 3):
                iy, ix = oy * s[0] + i - t, ox * s[1] + j - l
                if 0 <= iy < 6 and 0 <= ix < 7:
                    acc += x[n, iy, ix, c] * w["kernel"][i, j, c, o]
            ref[n, oy, ox, o] = acc
        assert np.allclose(y, ref, atol=1e-12), (pad, s)
    assert same_pads(7, 2, 2) == (0, 1) and same_pads(6, 3, 2) == (0, 1) and same_pads(5, 3, 1) == (1, 1)
    cfg = dict(name="p", padding="same", pool_size=[2, 2], strides=[2, 2])
    m, a = pool2d(x, cfg, "max"), pool2d(x, cfg, "avg")
    assert m.shape == (2, 3, 4, 3) and m[0, 0, 3, 0] == x[0, 0:2, 6, 0].max()
    assert np.isclose(a[1, 2, 3, 2], x[1, 4:6, 6, 2].mean())


def r7(a):
    return [float(f"{v:.7g}") for v in np.asarray(a, dtype=np.float64).ravel()]


def md5(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


def check_committed(layers, pixels):
    """CI's check: the committed fixture is this forward pass on the committed pixels, within
    float64 rounding (exact bytes could differ across numpy/BLAS builds; JPEG decoding across
    Pillow builds, which is reported but not an error: the Rust tests feed the committed
    pixels)."""
    with open(os.path.join(FIXTURE_DIR, "keras_cifar10_cnn.json"), encoding="utf-8") as f:
        committed = json.load(f)
    pix = np.fromfile(os.path.join(FIXTURE_DIR, "keras_cifar10_cnn_pixels.u8"), np.uint8)
    pix = pix.reshape(pixels.shape)
    if not np.array_equal(pix, pixels):
        print("note: this Pillow decodes the JPEGs differently from the committed pixels",
              file=sys.stderr)
    _, out = forward(layers, pix.astype(np.float32))
    want = np.array([im["output"] for im in committed["images"]])
    worst = float(np.abs(out - want).max())
    if not np.allclose(out, want, rtol=1e-6, atol=1e-5):
        raise SystemExit(f"keras_cifar10_cnn.json is stale: outputs differ by up to {worst}")
    print(f"keras_cifar10_cnn.json matches this forward pass (max |diff| {worst:.2e})",
          file=sys.stderr)


def main():
    self_check()
    in_shape, layers = load_model(MODEL)
    split = read_test_split(ARCHIVE)
    classes = sorted(split)
    assert len(classes) == 10, classes
    names, labels = [], []
    for ci, c in enumerate(classes):
        for name in sorted(split[c])[:PER_CLASS]:
            names.append(name)
            labels.append(ci)
    pixels = np.stack([decode(split[c][n]) for c, n in zip((classes[i] for i in labels), names)])
    assert pixels.shape[1:] == in_shape == (32, 32, 3), (pixels.shape, in_shape)

    if "--check" in sys.argv:
        check_committed(layers, pixels)
        return

    trace = []
    pre, out = forward(layers, pixels.astype(np.float32), trace)
    probs = softmax(out)  # the model ends in Dense(relu); its loss is softmax CE from_logits
    pred = out.argmax(axis=1)
    acc = float((pred == np.array(labels)).mean())
    print(f"accuracy on the {len(names)} fixture images: {acc:.4f}", file=sys.stderr)

    pix_path = os.path.normpath(os.path.join(FIXTURE_DIR, "keras_cifar10_cnn_pixels.u8"))
    with open(pix_path, "wb") as f:
        f.write(pixels.tobytes())
    print(f"wrote {pix_path} ({pixels.nbytes} bytes)", file=sys.stderr)

    payload = {
        "description": "Keras 2.9 cnn_model.h5 (CIFAR-10) inference on PIL-decoded test JPEGs, "
                       "numpy float64; see reference/keras_h5_forward.py",
        "model_md5": md5(MODEL),
        "archive_md5": md5(ARCHIVE),
        "pixels_file": os.path.basename(pix_path),
        "pixels_md5": hashlib.md5(pixels.tobytes()).hexdigest(),
        "pixels_layout": "N x 32 x 32 x 3 uint8, HWC RGB, images in the order of `images`",
        "input_scaling": "raw 0..255 values as float32, no rescaling",
        "classes": classes,
        # output_sum_100: the layer's output summed over all 100 images (a coarse stage check)
        "layers": [{"name": n, "class_name": layer["class_name"], "output_shape": s,
                    "output_sum_100": r7(v)[0]} for (layer, _), (n, s, v) in zip(layers, trace)],
        "accuracy": acc,
        "images": [
            {"path": n, "label": int(lab), "predicted": int(p),
             "pre_activation": r7(z), "output": r7(o), "softmax": r7(q)}
            for n, lab, p, z, o, q in zip(names, labels, pred, pre, out, probs)
        ],
    }
    write_fixture("keras_cifar10_cnn.json", payload)

    if "--full" in sys.argv:
        xs, ys = [], []
        for ci, c in enumerate(classes):
            for n in sorted(split[c]):
                xs.append(decode(split[c][n]))
                ys.append(ci)
        xs, ys = np.stack(xs), np.array(ys)
        preds = np.concatenate([forward(layers, xs[i:i + 100].astype(np.float32))[1].argmax(axis=1)
                                for i in range(0, len(xs), 100)])
        print(f"accuracy on the whole test split ({len(ys)} images): {(preds == ys).mean():.4f}",
              file=sys.stderr)


if __name__ == "__main__":
    main()
