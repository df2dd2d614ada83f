#!/usr/bin/env python3
"""PyTorch side of the lcnn-vs-PyTorch CPU benchmark, for every model of lcnn's zoo.

Each model is built from the same layer list as lcnn's spec (crates/lcnn/src/models/*.rs):
same layers in the same order, Keras ``same``/``valid`` padding with TensorFlow's asymmetric
``same`` split (``F.pad``-style zero padding where the split is uneven, e.g. stride-2 convs
on even inputs), BatchNorm eps 1e-3 / momentum 0.01 (Keras 0.99), the same dropout rates,
Flatten in C,H,W order, Dense; the final softmax is left out of the graph (the loss takes the
logits), as lcnn's ``Network::forward_logits``. The model is what
``ModelConfig::new(model, input, 10).spec()`` builds: 10 classes, with its top (VGG16 with
flatten / fc1 / fc2 / predictions; LightCNN-9 with dropout and fc2).

Parameter counts (Keras' "Total params": trainable plus BatchNorm moving statistics) are
checked twice: against the spec's own arithmetic (a port of ``spec.rs``'s ``infer``) and,
where lcnn's tests pin one, against the Keras total. ``--self-test`` checks every pinned total
(including VGG16 without its top and 224x224 / 1000-class VGG16) and exits.

Modes
-----
train (default): ``model.train()``, forward to logits, ``F.cross_entropy`` (softmax +
categorical cross-entropy), ``loss.item()`` read back, backward, one Adam step (lr 1e-3,
betas 0.9/0.999, eps 1e-7; the fused CPU kernel where this torch has it) on one random
uniform [0, 1) batch with labels ``i % 10``. 3 warm-up steps, then ``--steps`` timed steps.
Prints::

    config: nchw|channels_last
    params: N
    images/s: X
    peak_rss_mb: Y
    import_rss_mb: Z      (ru_maxrss right after `import torch`: the libraries alone)

predict: one image (batch 1), ``model.eval()``, ``torch.no_grad()``, forward + softmax; 10
warm-up calls, then ``--steps`` timed calls; prints ``ms: X`` (the median) instead of
``images/s``.

``--channels-last auto`` (default) times NCHW and channels_last briefly, each in a child
process of its own, then runs the timed benchmark in a fresh child with the faster one, so
that ``peak_rss_mb`` (``ru_maxrss`` / 1024) is that configuration's alone. ``on``/``off``
force one. Intra-op threads: ``--threads`` (``torch.set_num_threads``); inter-op threads: 1.
Diagnostics go to stderr; stdout holds only the ``key: value`` lines above.

Deliberate differences that do not change the amount of work: PyTorch's Glorot-uniform
fan computation for depthwise kernels differs from Keras'; PyTorch's Adam adds epsilon after
the bias correction of sqrt(v), Keras' (and lcnn's) before.

Usage::

    bench/.venv/bin/python bench/torch_bench.py --model allconv --input 32x32x3 \\
        --batch 32 --steps 10 --threads 2
    bench/.venv/bin/python bench/torch_bench.py --model lcnn --input 28x28x1 --mode predict \\
        --steps 200 --threads 2
    bench/.venv/bin/python bench/torch_bench.py --self-test
"""

import argparse
import math
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# ru_maxrss right after `import torch`: the libraries alone (the PyPI wheel maps its CUDA
# libraries too, about 0.5 GB of mostly file-backed pages), printed as `import_rss_mb`.
IMPORT_RSS_MB = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

BN_EPS = 1e-3  # Keras BatchNormalization epsilon
BN_MOMENTUM = 0.01  # Keras momentum 0.99 == PyTorch momentum 0.01
NUM_CLASSES = 10  # what `lcnn bench` builds: ModelConfig::new(model, input, 10)
TRAIN_WARMUP = 3
PREDICT_WARMUP = 10
MODELS = ("lcnn", "allconv", "separable", "vgg16", "lightcnn9")

# Keras totals pinned by lcnn's tests (crates/lcnn/src/models/mod.rs, totals_match_keras):
# (model, (h, w, c), classes, include_top) -> total params.
KERAS_TOTALS = {
    ("lcnn", (28, 28, 1), 10, True): 164_938,
    ("lcnn", (32, 32, 3), 10, True): 183_498,
    ("allconv", (32, 32, 3), 10, True): 1_369_738,
    ("separable", (64, 64, 3), 10, True): 38_309,
    ("vgg16", (150, 150, 3), 1000, False): 14_714_688,
    ("vgg16", (224, 224, 3), 1000, True): 138_357_544,
    ("lightcnn9", (128, 128, 1), 10, False): 5_480_864,
}


# --------------------------------------------------------------------------------------------
# Specs: the layer lists of crates/lcnn/src/models/*.rs. Tuples:
#   ("conv", filters, kernel, strides, padding, activation)
#   ("sep", filters, kernel, padding, activation)      SeparableConv2D, depth multiplier 1
#   ("mfm",) ("bn",) ("flatten",) ("gap",)
#   ("pool", size, padding)                            MaxPooling2D, strides = size
#   ("dropout", rate) ("dense", units, activation) ("act", activation)
# The final softmax is kept in the spec (for the parameter arithmetic) and dropped from the
# PyTorch graph, as lcnn does.
# --------------------------------------------------------------------------------------------


def spec_lcnn(classes, top=True):
    assert top, "lcnn has no variant without its top"
    layers = []
    convs = [
        ("1", 64, 5, True, False),
        ("2a", 64, 1, False, True),
        ("2", 96, 3, True, True),
        ("3a", 96, 1, False, True),
        ("3", 128, 3, True, False),
        ("4a", 128, 1, False, True),
        ("4", 64, 3, False, True),
        ("5a", 64, 1, False, True),
        ("5", 64, 3, True, False),
    ]
    for _id, filters, kernel, pool, bn_after in convs:
        layers += [("conv", filters, kernel, 1, "same", "linear"), ("mfm",)]
        if pool:
            layers.append(("pool", 2, "valid"))
        if bn_after:
            layers.append(("bn",))
    layers += [
        ("flatten",),
        ("dense", 160, "linear"),
        ("mfm",),
        ("bn",),
        ("dropout", 0.75),
        ("dense", classes, "softmax"),
    ]
    return layers


def spec_allconv(classes, top=True):
    assert top, "allconv has no variant without its top"
    return [
        ("conv", 96, 3, 1, "same", "relu"),
        ("conv", 96, 3, 1, "same", "relu"),
        ("conv", 96, 3, 2, "same", "linear"),
        ("dropout", 0.5),
        ("conv", 192, 3, 1, "same", "relu"),
        ("conv", 192, 3, 1, "same", "relu"),
        ("conv", 192, 3, 2, "same", "linear"),
        ("dropout", 0.5),
        ("conv", 192, 3, 1, "same", "relu"),
        ("conv", 192, 1, 1, "valid", "relu"),
        ("conv", classes, 1, 1, "valid", "linear"),
        ("gap",),
        ("act", "softmax"),
    ]


def spec_separable(classes, top=True):
    assert top, "separable has no variant without its top"
    return [
        ("sep", 32, 3, "valid", "relu"),
        ("sep", 64, 3, "valid", "relu"),
        ("pool", 2, "valid"),
        ("sep", 64, 3, "valid", "relu"),
        ("sep", 128, 3, "valid", "relu"),
        ("pool", 2, "valid"),
        ("sep", 128, 3, "valid", "relu"),
        ("gap",),
        ("dense", 32, "relu"),
        ("dense", classes, "softmax"),
    ]


def spec_vgg16(classes, top=True):
    layers = []
    for filters, convs in [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]:
        layers += [("conv", filters, 3, 1, "same", "relu")] * convs
        layers.append(("pool", 2, "valid"))
    if top:
        layers += [
            ("flatten",),
            ("dense", 4096, "relu"),
            ("dense", 4096, "relu"),
            ("dense", classes, "softmax"),
        ]
    return layers


def spec_lightcnn9(classes, top=True):
    layers = [("conv", 96, 5, 1, "same", "linear"), ("mfm",), ("pool", 2, "same")]
    for a_filters, filters, pool in [(96, 192, True), (192, 384, True), (384, 256, False),
                                     (256, 256, True)]:
        layers += [
            ("conv", a_filters, 1, 1, "same", "linear"),
            ("mfm",),
            ("conv", filters, 3, 1, "same", "linear"),
            ("mfm",),
        ]
        if pool:
            layers.append(("pool", 2, "same"))
    layers += [("flatten",), ("dense", 512, "linear"), ("mfm",)]
    if top:
        layers += [("dropout", 0.5), ("dense", classes, "softmax")]
    return layers


SPECS = {
    "lcnn": spec_lcnn,
    "allconv": spec_allconv,
    "separable": spec_separable,
    "vgg16": spec_vgg16,
    "lightcnn9": spec_lightcnn9,
}


def out_len(n, k, s, padding):
    """crates/lcnn/src/layers/padding.rs, Padding::output_len."""
    if padding == "same":
        return -(-n // s)
    return (n - k) // s + 1 if n >= k else 0


def tf_pads(n, k, s, padding):
    """TensorFlow's (before, after) padding along one axis (Padding::pads)."""
    if padding == "valid":
        return 0, 0
    total = max((out_len(n, k, s, "same") - 1) * s + k - n, 0)
    return total // 2, total - total // 2


# --------------------------------------------------------------------------------------------
# PyTorch modules
# --------------------------------------------------------------------------------------------


class MaxFeatureMap(nn.Module):
    """out[:, k] = max(x[:, k], x[:, k + C/2]) over axis 1 (layers/mfm.rs)."""

    def forward(self, x):
        first, second = torch.split(x, x.shape[1] // 2, dim=1)
        return torch.maximum(first, second)


class GlobalAvgPool(nn.Module):
    """Keras GlobalAveragePooling2D: [N, C, H, W] -> [N, C]."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


def activation_module(name, last):
    if name == "linear":
        return None
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name in ("softmax", "sigmoid"):
        if last:
            return None  # applied outside the graph (loss on logits / softmax at predict)
        return nn.Softmax(dim=1) if name == "softmax" else nn.Sigmoid()
    raise ValueError(f"unknown activation {name}")


def conv_padding(h, w, k, s, padding):
    """Either a symmetric padding for nn.Conv2d, or (pad module, 0) for an uneven TF split."""
    (top, bottom), (left, right) = tf_pads(h, k, s, padding), tf_pads(w, k, s, padding)
    if top == bottom and left == right:
        return None, (top, left)
    return nn.ZeroPad2d((left, right, top, bottom)), (0, 0)


def build(model, input_hwc, classes=NUM_CLASSES, top=True):
    """Returns (nn.Sequential of logits, spec total params, output activation name)."""
    spec = SPECS[model](classes, top)
    h, w, c = input_hwc
    flat = None  # feature count once flat, else None
    layers = []
    total = 0
    out_act = "linear"

    def need_image(kind):
        if flat is not None:
            raise ValueError(f"{model}: {kind} expects an image input, got {flat} features")

    def too_small(kind):
        raise ValueError(f"{model}: input {input_hwc} too small for a {kind} layer")

    for i, layer in enumerate(spec):
        last = i == len(spec) - 1
        kind = layer[0]
        if kind == "conv":
            _, filters, k, s, padding, act = layer
            need_image(kind)
            oh, ow = out_len(h, k, s, padding), out_len(w, k, s, padding)
            if oh < 1 or ow < 1:
                too_small(kind)
            pad, sym = conv_padding(h, w, k, s, padding)
            if pad is not None:
                layers.append(pad)
            layers.append(nn.Conv2d(c, filters, k, stride=s, padding=sym))
            total += filters * c * k * k + filters
            h, w, c = oh, ow, filters
            a = activation_module(act, last)
        elif kind == "sep":
            _, filters, k, padding, act = layer
            need_image(kind)
            oh, ow = out_len(h, k, 1, padding), out_len(w, k, 1, padding)
            if oh < 1 or ow < 1:
                too_small(kind)
            pad, sym = conv_padding(h, w, k, 1, padding)
            if pad is not None:
                layers.append(pad)
            layers.append(nn.Conv2d(c, c, k, padding=sym, groups=c, bias=False))  # depthwise
            layers.append(nn.Conv2d(c, filters, 1))  # pointwise, with bias
            total += c * k * k + c * filters + filters
            h, w, c = oh, ow, filters
            a = activation_module(act, last)
        elif kind == "mfm":
            n = flat if flat is not None else c
            if n % 2:
                raise ValueError(f"{model}: Max-Feature-Map needs an even count, got {n}")
            layers.append(MaxFeatureMap())
            if flat is not None:
                flat //= 2
            else:
                c //= 2
            a = None
        elif kind == "pool":
            _, size, padding = layer
            need_image(kind)
            oh, ow = out_len(h, size, size, padding), out_len(w, size, size, padding)
            if oh < 1 or ow < 1:
                too_small(kind)
            (top_p, bottom_p), (left_p, right_p) = (tf_pads(h, size, size, padding),
                                                    tf_pads(w, size, size, padding))
            if top_p == 0 and left_p == 0:
                # 'valid' floors; 'same' with all padding after and window == stride is exactly
                # ceil_mode (partial windows ignore the -inf padding, as TF's).
                layers.append(nn.MaxPool2d(size, stride=size, ceil_mode=padding == "same"))
            else:
                layers.append(nn.ConstantPad2d((left_p, right_p, top_p, bottom_p),
                                               float("-inf")))
                layers.append(nn.MaxPool2d(size, stride=size))
            h, w = oh, ow
            a = None
        elif kind == "bn":
            if flat is not None:
                layers.append(nn.BatchNorm1d(flat, eps=BN_EPS, momentum=BN_MOMENTUM))
                total += 4 * flat
            else:
                layers.append(nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM))
                total += 4 * c
            a = None
        elif kind == "dropout":
            layers.append(nn.Dropout(layer[1]))
            a = None
        elif kind == "flatten":
            if flat is None:
                layers.append(nn.Flatten())  # logical C, H, W order, whatever the memory format
                flat = c * h * w
            a = None
        elif kind == "gap":
            need_image(kind)
            layers.append(GlobalAvgPool())
            flat = c
            a = None
        elif kind == "dense":
            _, units, act = layer
            if flat is None:
                raise ValueError(f"{model}: Dense expects a flat input")
            layers.append(nn.Linear(flat, units))
            total += flat * units + units
            flat = units
            a = activation_module(act, last)
        elif kind == "act":
            a = activation_module(layer[1], last)
        else:
            raise ValueError(kind)
        if a is not None:
            layers.append(a)
        if last and kind in ("conv", "sep", "dense", "act"):
            act_name = layer[-1]
            out_act = act_name if act_name in ("softmax", "sigmoid") else "linear"
    if flat is None:
        layers.append(nn.Flatten())  # forward_logits flattens a model without its top
    net = nn.Sequential(*layers)
    # Keras' initializers: Glorot-uniform kernels, zero biases (BatchNorm: ones / zeros).
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    m.bias.zero_()
    return net, total, out_act


def keras_param_count(net):
    """Trainable parameters plus BatchNorm moving mean/variance (Keras' 'Total params')."""
    trainable = sum(p.numel() for p in net.parameters())
    moving = sum(
        m.running_mean.numel() + m.running_var.numel()
        for m in net.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    )
    return trainable + moving


def checked_model(model, hwc, classes=NUM_CLASSES, top=True):
    net, spec_total, out_act = build(model, hwc, classes, top)
    n = keras_param_count(net)
    if n != spec_total:
        raise SystemExit(f"{model} {hwc}: PyTorch has {n} params, lcnn's spec {spec_total}")
    keras = KERAS_TOTALS.get((model, tuple(hwc), classes, top))
    if keras is not None and n != keras:
        raise SystemExit(f"{model} {hwc}: PyTorch has {n} params, Keras/lcnn {keras}")
    return net, n, out_act


def self_test():
    ok = True
    for (model, hwc, classes, top), expected in KERAS_TOTALS.items():
        net, _total, _ = build(model, hwc, classes, top)
        n = keras_param_count(net)
        # one forward pass of a single image checks that the shapes flow
        net.eval()
        with torch.no_grad():
            y = net(torch.rand(1, hwc[2], hwc[0], hwc[1]))
        status = "ok" if n == expected else "MISMATCH"
        ok &= n == expected
        name = f"{model} {'x'.join(map(str, hwc))} classes {classes}{'' if top else ' no-top'}"
        print(f"{name}: {n} params (Keras {expected}) output {tuple(y.shape)} {status}")
        del net
    if not ok:
        raise SystemExit(1)


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def make_optimizer(params):
    kw = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    try:
        return torch.optim.Adam(params, fused=True, **kw), "fused"
    except (TypeError, RuntimeError, ValueError):
        return torch.optim.Adam(params, foreach=True, **kw), "foreach"


def set_precision(device, precision):
    """fp32: strict IEEE fp32 (no TF32); tf32: TF32 matmuls and convolutions; bf16 / fp16:
    autocast to that type (fp16 with a GradScaler, as PyTorch's AMP recipe). Returns the
    autocast context for the forward pass."""
    import contextlib
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # PyTorch's fastest convolution algorithms
        tf32 = precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return lambda: torch.autocast(device_type=device.type, dtype=dtype)
    return contextlib.nullcontext


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_train(net, hwc, batch, steps, channels_last, device=None, precision="fp32"):
    device = device or torch.device("cpu")
    h, w, c = hwc
    x = torch.rand(batch, c, h, w, dtype=torch.float32)  # uniform [0, 1)
    net, x = net.to(device), x.to(device)
    autocast = set_precision(device, precision)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    labels = (torch.arange(batch) % NUM_CLASSES).to(device)
    optim, kind = make_optimizer(list(net.parameters()))
    print(f"[torch_bench] adam: {kind}", file=sys.stderr)
    net.train()

    def step():
        with autocast():
            loss = F.cross_entropy(net(x), labels)
        loss.item()  # read back, as lcnn's bench does
        optim.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optim.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optim)
            scaler.update()

    for _ in range(TRAIN_WARMUP):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    secs = time.perf_counter() - start
    return batch * steps / secs


def run_predict(net, hwc, steps, channels_last, out_act):
    h, w, c = hwc
    x = torch.rand(1, c, h, w, dtype=torch.float32)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    net.eval()
    final = (lambda t: F.softmax(t, dim=1)) if out_act == "softmax" else (
        torch.sigmoid if out_act == "sigmoid" else (lambda t: t))
    times = []
    with torch.no_grad():
        for i in range(PREDICT_WARMUP + steps):
            start = time.perf_counter()
            final(net(x)).numpy()
            if i >= PREDICT_WARMUP:
                times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def measure(args, channels_last):
    """One measurement in this process; prints the key: value lines."""
    hwc = args.input
    net, n, out_act = checked_model(args.model, hwc)
    print(f"config: {'channels_last' if channels_last else 'nchw'}")
    print(f"params: {n}")
    if args.mode == "train":
        device = torch.device(args.device)
        ips = run_train(net, hwc, args.batch, args.steps, channels_last, device, args.precision)
        print(f"images/s: {ips:.2f}")
        if device.type == "cuda":
            print(f"gpu_peak_mb: {torch.cuda.max_memory_allocated() / 2**20:.1f}")
    else:
        print(f"ms: {run_predict(net, hwc, args.steps, channels_last, out_act):.4f}")
    print(f"peak_rss_mb: {peak_rss_mb():.1f}")
    print(f"import_rss_mb: {IMPORT_RSS_MB:.1f}", flush=True)


def child(args, channels_last, steps):
    """Runs this script with a fixed layout in a fresh process; returns its key: value lines."""
    cmd = [
        sys.executable, os.path.abspath(__file__),
        "--model", args.model, "--input", "x".join(map(str, args.input)),
        "--batch", str(args.batch), "--steps", str(steps), "--threads", str(args.threads),
        "--mode", args.mode, "--channels-last", "on" if channels_last else "off",
        "--device", args.device, "--precision", args.precision,
    ]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    vals = {}
    for line in out.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            vals[key.strip()] = value.strip()
    return vals


def score(vals, mode):
    """Higher is better."""
    return float(vals["images/s"]) if mode == "train" else -float(vals["ms"])


def auto(args):
    trial_steps = max(2, math.ceil(args.steps / 4)) if args.mode == "train" else \
        max(10, math.ceil(args.steps / 4))
    trial_steps = min(trial_steps, args.steps)
    trials = {}
    for cl in (False, True):
        trials[cl] = child(args, cl, trial_steps)
        print(f"[torch_bench] trial {'channels_last' if cl else 'nchw'} ({trial_steps} steps): "
              f"{trials[cl].get('images/s', trials[cl].get('ms'))}"
              f"{' images/s' if args.mode == 'train' else ' ms'}", file=sys.stderr)
    best = max(trials, key=lambda cl: score(trials[cl], args.mode))
    vals = child(args, best, args.steps)
    for key in ("config", "params", "images/s" if args.mode == "train" else "ms",
                "peak_rss_mb", "import_rss_mb", "gpu_peak_mb"):
        if key in vals:
            print(f"{key}: {vals[key]}")
    sys.stdout.flush()


def parse_shape(s):
    try:
        h, w, c = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxWxC, got {s!r}")
    if min(h, w, c) < 1:
        raise argparse.ArgumentTypeError(f"expected positive dimensions, got {s!r}")
    return h, w, c


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=MODELS, default="lcnn")
    p.add_argument("--input", type=parse_shape, default=None,
                   help="HxWxC (default: the model's own input, as lcnn's default_input)")
    p.add_argument("--batch", type=int, default=32, help="train batch size (predict: 1)")
    p.add_argument("--steps", type=int, default=10, help="timed steps (predict: calls)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--mode", choices=("train", "predict"), default="train")
    p.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (train mode)")
    p.add_argument("--precision", choices=("fp32", "tf32", "bf16", "fp16"), default="fp32",
                   help="fp32 strict, TF32, or autocast to bf16 / fp16 (train mode, CUDA)")
    p.add_argument("--self-test", action="store_true",
                   help="check every parameter total pinned by lcnn's tests and exit")
    a = p.parse_args(argv)
    if a.input is None:
        a.input = {"lcnn": (28, 28, 1), "lightcnn9": (128, 128, 1), "allconv": (32, 32, 3),
                   "separable": (64, 64, 3), "vgg16": (224, 224, 3)}[a.model]
    if a.batch < 1 or a.steps < 1 or a.threads < 1:
        p.error("--batch, --steps and --threads must be positive")
    if a.mode == "predict":
        a.batch = 1
        if a.device != "cpu" or a.precision != "fp32":
            p.error("--device and --precision apply to train mode")
    return a


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    if args.self_test:
        self_test()
        return
    if args.channels_last == "auto":
        checked_model(args.model, args.input)  # fail early, before spawning children
        auto(args)
    else:
        measure(args, args.channels_last == "on")


if __name__ == "__main__":
    main()
