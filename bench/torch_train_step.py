#!/usr/bin/env python3
"""PyTorch side-by-side for lcnn's `train_step` bench (crates/lcnn/benches/train_step.rs).

What it measures
----------------
The same LCNN as lcnn's `lcnn` model (crates/lcnn/src/models/lcnn.rs), built in PyTorch,
NCHW float32 on the CPU, timed exactly as the Rust bench times lcnn:

* train step: forward to logits, cross-entropy (``F.cross_entropy`` on the logits, i.e.
  softmax + categorical cross-entropy), ``loss.item()`` (the Rust bench reads the loss back
  every step too), ``zero_grad``, backward, one ``torch.optim.Adam(lr=1e-3, eps=1e-7)``
  update; on one random-uniform batch with labels ``i % 10``, ``model.train()`` (BatchNorm
  on batch statistics, dropout on). 3 warm-up steps, then ``STEPS`` timed steps.
* inference: ``model.eval()`` under ``torch.no_grad()``, softmax output, one warm-up pass
  then ``STEPS`` timed forward passes on a fresh random batch.

It prints two lines in the Rust bench's format::

    train_step lcnn 28x28x1 batch 256: X ms/step, Y images/s (pytorch T threads)
    inference lcnn batch 256: Z images/s

The architecture (9 stride-1 'same' convs each followed by Max-Feature-Map, 2x2/2 floor max
pools, BatchNorm eps 1e-3 / Keras momentum 0.99, dense 160 + MFM + BN, dropout 0.75, dense
10) is checked at start-up against lcnn's parameter count (Keras' total, BatchNorm moving
statistics included): 164,938 on 28x28x1 and 183,498 on 32x32x3, as
``lcnn summary --model lcnn --input HxWxC`` prints. ``--params`` prints the count and exits.

Small, deliberate differences from lcnn that do not change the amount of work: PyTorch's
default initializers instead of Keras' Glorot-uniform; PyTorch's Adam adds epsilon to the
bias-corrected sqrt(v) while Keras' (and lcnn's) adds it before the correction.

Install and run
---------------
PyTorch (CPU use only) in a virtualenv outside the repository, e.g.::

    python3 -m venv /work/venv-torch
    /work/venv-torch/bin/pip install numpy torch
    # (or, where download.pytorch.org is reachable, the smaller CPU-only build:
    #  pip install torch --index-url https://download.pytorch.org/whl/cpu)

then, from the repository root::

    /work/venv-torch/bin/python bench/torch_train_step.py                  # lcnn 28x28x1 256 10
    /work/venv-torch/bin/python bench/torch_train_step.py --input 32x32x3  # CIFAR shape
    /work/venv-torch/bin/python bench/torch_train_step.py --batch 128 --steps 20 --threads 2

The positional form of the Rust bench also works:
``bench/torch_train_step.py lcnn 28x28x1 256 10``. ``--threads`` defaults to all cores (the
Rust bench's default with ``RAYON_NUM_THREADS`` unset); inter-op threads are fixed at 1.
See bench/README.md for the side-by-side procedure.
"""

import argparse
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

BN_EPS = 1e-3  # Keras BatchNormalization epsilon
BN_MOMENTUM = 0.01  # Keras momentum 0.99 == PyTorch momentum 0.01
DROPOUT = 0.75  # lcnn::models::lcnn::DROPOUT
NUM_CLASSES = 10
WARMUP_STEPS = 3

# (conv name, filters, kernel, pool after MFM, BN after (pool)) -- as in lcnn.rs
CONVS = [
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

# Keras totals (`lcnn summary --model lcnn --input ...`) for the shapes we know.
EXPECTED_PARAMS = {(28, 28, 1): 164_938, (32, 32, 3): 183_498}


class MaxFeatureMap(nn.Module):
    """out[:, k] = max(x[:, k], x[:, k + C/2]) over axis 1 (channels or features)."""

    def forward(self, x):
        c = x.shape[1]
        assert c % 2 == 0, f"Max-Feature-Map needs an even channel count, got {c}"
        first, second = torch.split(x, c // 2, dim=1)
        return torch.maximum(first, second)


def build_lcnn(h, w, c, classes=NUM_CLASSES):
    """LCNN for an h x w x c input; returns (nn.Sequential, flattened feature count)."""
    layers = []
    ch = c
    for _name, filters, kernel, pool, bn_after in CONVS:
        # stride 1, 'same' (odd kernels: (k-1)/2 zeros each side)
        layers.append(nn.Conv2d(ch, filters, kernel, stride=1, padding=kernel // 2))
        layers.append(MaxFeatureMap())
        ch = filters // 2
        if pool:
            layers.append(nn.MaxPool2d(2, stride=2))  # floor, as Keras 'valid'
            h, w = h // 2, w // 2
            if h < 1 or w < 1:
                raise ValueError("input too small for LCNN's four 2x2 pools")
        if bn_after:
            layers.append(nn.BatchNorm2d(ch, eps=BN_EPS, momentum=BN_MOMENTUM))
    flat = ch * h * w  # Flatten in C, H, W order (NCHW), as lcnn
    layers += [
        nn.Flatten(),
        nn.Linear(flat, 160),
        MaxFeatureMap(),
        nn.BatchNorm1d(80, eps=BN_EPS, momentum=BN_MOMENTUM),
        nn.Dropout(DROPOUT),
        nn.Linear(80, classes),  # logits; softmax in the loss / at inference
    ]
    return nn.Sequential(*layers), flat


def keras_param_count(model):
    """Trainable parameters plus BatchNorm moving mean/variance (Keras' 'Total params')."""
    trainable = sum(p.numel() for p in model.parameters())
    moving = sum(
        m.running_mean.numel() + m.running_var.numel()
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    )
    return trainable + moving


def parse_shape(s):
    try:
        h, w, c = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxWxC, got {s!r}")
    return h, w, c


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="PyTorch LCNN train-step / inference throughput (side-by-side with "
        "`cargo bench --bench train_step`)."
    )
    # Positional form of the Rust bench: MODEL HxWxC BATCH STEPS (all optional).
    p.add_argument("model_pos", nargs="?", metavar="MODEL", help="only 'lcnn'")
    p.add_argument("input_pos", nargs="?", metavar="HxWxC", type=parse_shape)
    p.add_argument("batch_pos", nargs="?", metavar="BATCH", type=int)
    p.add_argument("steps_pos", nargs="?", metavar="STEPS", type=int)
    p.add_argument("--model", default=None, help="model (only 'lcnn'; default lcnn)")
    p.add_argument("--input", type=parse_shape, default=None, help="HxWxC (default 28x28x1)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 256)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 10)")
    p.add_argument(
        "--threads", type=int, default=None, help="intra-op threads (default: all cores)"
    )
    p.add_argument("--params", action="store_true", help="print the parameter count and exit")
    a = p.parse_args(argv)
    a.model = a.model or a.model_pos or "lcnn"
    a.input = a.input or a.input_pos or (28, 28, 1)
    a.batch = a.batch or a.batch_pos or 256
    a.steps = a.steps or a.steps_pos or 10
    a.threads = a.threads or os.cpu_count() or 1
    if a.model != "lcnn":
        p.error(f"only the 'lcnn' model is implemented, got {a.model!r}")
    if a.batch < 1 or a.steps < 1 or a.threads < 1:
        p.error("--batch, --steps and --threads must be positive")
    return a


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)

    h, w, c = args.input
    model, _flat = build_lcnn(h, w, c)
    n_params = keras_param_count(model)
    expected = EXPECTED_PARAMS.get((h, w, c))
    if expected is not None and n_params != expected:
        raise SystemExit(f"parameter count {n_params} != lcnn's {expected} on {h}x{w}x{c}")
    if args.params:
        print(f"lcnn {h}x{w}x{c}: {n_params} params")
        return

    batch, steps = args.batch, args.steps
    x = torch.rand(batch, c, h, w, dtype=torch.float32)  # uniform [0, 1)
    labels = torch.arange(batch) % NUM_CLASSES
    optim = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)

    model.train()

    def step():
        loss = F.cross_entropy(model(x), labels)
        loss.item()  # read back, as the Rust bench does
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()

    for _ in range(WARMUP_STEPS):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    secs = time.perf_counter() - start
    print(
        f"train_step {args.model} {h}x{w}x{c} batch {batch}: "
        f"{1e3 * secs / steps:.1f} ms/step, {batch * steps / secs:.0f} images/s "
        f"(pytorch {torch.get_num_threads()} threads)",
        flush=True,
    )

    model.eval()
    xv = torch.rand(batch, c, h, w, dtype=torch.float32)
    with torch.no_grad():
        F.softmax(model(xv), dim=1)
        start = time.perf_counter()
        for _ in range(steps):
            F.softmax(model(xv), dim=1)
        secs = time.perf_counter() - start
    print(f"inference {args.model} batch {batch}: {batch * steps / secs:.0f} images/s", flush=True)


if __name__ == "__main__":
    main()
