#!/usr/bin/env python3
"""PyTorch weights in and out of lcnn: a tiny network in PyTorch with lcnn's layer names.

Writes crates/lcnn/tests/fixtures/torch_tiny.pt (a `torch.save`d state_dict, ~10 KB) and
torch_tiny.json (the input batch and PyTorch's logits in eval mode). The Rust test
`weights_pytorch` builds the same network from lcnn layers, loads the .pt with
`lcnn::weights::pytorch`, and must give the same logits; it also writes the weights back
out as a PyTorch state_dict (safetensors) and compares them with the file's tensors.

    python reference/torch_roundtrip.py                      # writes the fixtures (needs torch)
    python reference/torch_roundtrip.py --check-export F     # F: `lcnn export torch` output;
        # loads it into the PyTorch network (strict=False: only BatchNorm's
        # num_batches_tracked may be missing) and compares the logits with the fixture's

The network (NCHW in PyTorch, 8x8x2 input; lcnn's layer kinds in brackets):
    conv1  Conv2d(2, 8, 3, padding=1)        [Conv2d 'same', linear]
    mfm1   max(x[:, :4], x[:, 4:])           [MaxFeatureMap]
    bn1    BatchNorm2d(4, eps=1e-3)          [BatchNorm, Keras' epsilon]
    pool1  MaxPool2d(2)                      [MaxPool2d 2, valid]
    sep1   depthwise Conv2d(4, 4, 3, padding=1, groups=4, bias=False)
           + pointwise Conv2d(4, 6, 1)       [SeparableConv2d 'same', relu]
    flatten (channels first, as lcnn's)      [Flatten]
    fc1    Linear(96, 3)                     [Dense, linear]
BatchNorm's running statistics are set to non-trivial values so eval mode exercises them.
"""

import argparse
import json
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, os.pardir, "crates", "lcnn", "tests", "fixtures")


def build():
    import torch
    from torch import nn

    class Mfm(nn.Module):
        def forward(self, x):
            c = x.shape[1] // 2
            return torch.maximum(x[:, :c], x[:, c:])

    class Sep(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
            self.pointwise = nn.Conv2d(cin, cout, 1)

        def forward(self, x):
            return torch.relu(self.pointwise(self.depthwise(x)))

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(2, 8, 3, padding=1)
            self.mfm1 = Mfm()
            self.bn1 = nn.BatchNorm2d(4, eps=1e-3)
            self.pool1 = nn.MaxPool2d(2)
            self.sep1 = Sep(4, 6)
            self.fc1 = nn.Linear(6 * 4 * 4, 3)

        def forward(self, x):
            x = self.pool1(self.bn1(self.mfm1(self.conv1(x))))
            x = self.sep1(x)
            return self.fc1(torch.flatten(x, 1))

    torch.manual_seed(0)
    net = Tiny()
    with torch.no_grad():
        net.bn1.running_mean.copy_(torch.tensor([0.1, -0.2, 0.05, 0.3]))
        net.bn1.running_var.copy_(torch.tensor([0.5, 1.5, 0.8, 2.0]))
        net.bn1.weight.copy_(torch.tensor([1.2, 0.7, 1.0, 0.9]))
        net.bn1.bias.copy_(torch.tensor([0.05, -0.1, 0.2, 0.0]))
    return net.eval()


def inputs():
    # Deterministic, no RNG stream: a smooth pattern per sample and channel.
    n, c, h, w = 2, 2, 8, 8
    i = np.arange(n * c * h * w, dtype=np.float64).reshape(n, c, h, w)
    return np.sin(0.37 * i + 0.2) + 0.1 * np.cos(1.3 * i)


def read_safetensors(path):
    """A minimal safetensors reader (format: u64 header length, JSON header, raw data)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        assert meta["dtype"] == "F32", (name, meta["dtype"])
        a, b = meta["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(meta["shape"])
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check-export", metavar="FILE")
    args = p.parse_args(argv)
    import torch

    net = build()
    x = inputs().astype(np.float32)
    with torch.no_grad():
        logits = net(torch.from_numpy(x)).numpy()
    if args.check_export:
        state = {k: torch.from_numpy(v.copy()) for k, v in read_safetensors(args.check_export).items()}
        fresh = build()
        for p_ in fresh.parameters():
            torch.nn.init.zeros_(p_)
        missing, unexpected = fresh.load_state_dict(state, strict=False)
        if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
            sys.exit(f"missing {missing}, unexpected {unexpected}")
        with torch.no_grad():
            got = fresh.eval()(torch.from_numpy(x)).numpy()
        d = float(np.abs(got - logits).max())
        print(f"max |logits(export) - logits(fixture)| = {d:.3e}")
        sys.exit(0 if d < 1e-5 else 1)
    os.makedirs(FIXTURES, exist_ok=True)
    pt = os.path.join(FIXTURES, "torch_tiny.pt")
    torch.save(net.state_dict(), pt)
    out = {
        "description": "reference/torch_roundtrip.py: tiny net, eval mode, NCHW input [2, 2, 8, 8]",
        "torch_version": torch.__version__.split("+")[0],
        "input_shape": list(x.shape),
        "input": x.reshape(-1).tolist(),
        "logits": logits.tolist(),
    }
    with open(os.path.join(FIXTURES, "torch_tiny.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {pt} ({os.path.getsize(pt)} bytes) and torch_tiny.json", file=sys.stderr)


if __name__ == "__main__":
    main()
