#!/usr/bin/env python3
"""Runs lcnn's `bench` and bench/torch_bench.py side by side and prints a markdown table.

Called by bench/side_by_side.sh (which sets up bench/.venv and builds lcnn); see
bench/README.md. Environment:

  LCNN_BIN     the lcnn binary (default target/release/lcnn)
  THREADS      threads for both sides (default 2): RAYON_NUM_THREADS for lcnn,
               torch.set_num_threads for PyTorch
  STEPS_SCALE  multiplies every step count (default 1; e.g. 0.1 for a smoke run)
  RUNS         runs per side and shape, alternating lcnn / PyTorch (default 2; best kept)
  ENGINES      lcnn engines, e.g. "native burn": one lcnn column per engine, each run with
               `--engine E` (default: none, lcnn's default engine, no --engine flag)
  ONLY         space-separated model names to keep (e.g. "lcnn allconv"; default all)
  TORCH_CHANNELS_LAST  auto (default), on or off: torch_bench.py's --channels-last
  TORCH_PYTHON the Python with torch (default: this interpreter)

Progress goes to stderr; the table to stdout.
"""

import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# (model, input, batch, steps): each side runs ~10-30 s per run on an idle 2-core machine.
TRAIN_SHAPES = [
    ("lcnn", "28x28x1", 256, 40),
    ("lcnn", "32x32x3", 64, 120),
    ("allconv", "32x32x3", 32, 30),
    ("allconv", "32x32x3", 128, 8),
    ("separable", "64x64x3", 32, 150),
    ("vgg16", "150x150x3", 8, 3),
]
# batch-1 latency; PyTorch's call count (lcnn's `bench predict` uses its own default)
PREDICT_SHAPES = [("lcnn", "28x28x1", 1000)]

KV = re.compile(r"^\s*([A-Za-z_][\w/ ]*?)\s*:\s*([-+]?[0-9][0-9.eE+-]*)\s*$")


def env_float(name, default):
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        sys.exit(f"{name} must be a number, got {os.environ[name]!r}")


def parse_kv(text):
    """The numeric `key: value` lines of a bench's output (the last of each key wins)."""
    vals = {}
    for line in text.splitlines():
        m = KV.match(line)
        if m:
            vals[m.group(1)] = float(m.group(2))
    return vals


def config_line(text):
    m = re.search(r"^config:\s*(\S+)", text, re.M)
    return m.group(1) if m else None


def run(cmd, env_extra, label):
    env = dict(os.environ, **env_extra)
    print(f"  $ {' '.join(cmd)}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    secs = time.perf_counter() - start
    if p.returncode != 0:
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-8:])
        print(f"  {label} failed (exit {p.returncode}, {secs:.0f} s):\n{tail}", file=sys.stderr)
        return None, p.stdout
    vals = parse_kv(p.stdout)
    shown = ", ".join(f"{k} {v:g}" for k, v in vals.items()
                      if k in ("images/s", "ms", "peak_rss_mb"))
    print(f"  {label}: {shown} ({secs:.0f} s wall)", file=sys.stderr, flush=True)
    return vals, p.stdout


class Best:
    """Best speed (max images/s or min ms) and lowest peak RSS over the runs of one side."""

    def __init__(self, key):
        self.key = key
        self.speed = None
        self.peak = None
        self.error = False
        self.config = None
        self.import_rss = None

    def add(self, vals, out):
        if vals is None or self.key not in vals:
            if vals is not None:
                print(f"  (no `{self.key}:` line in the output)", file=sys.stderr)
            self.error = True
            return
        v = vals[self.key]
        better = self.speed is None or (v > self.speed if self.key == "images/s"
                                        else v < self.speed)
        if better:
            self.speed = v
            self.config = config_line(out) or self.config
        if "peak_rss_mb" in vals:
            self.peak = vals["peak_rss_mb"] if self.peak is None else min(self.peak,
                                                                          vals["peak_rss_mb"])
        if "import_rss_mb" in vals:
            self.import_rss = vals["import_rss_mb"]


def fmt_speed(b, unit):
    if b.speed is None:
        return "error" if b.error else "n/a"
    if unit == "ms":
        return f"{b.speed:.3f} ms"
    return f"{b.speed:,.1f}" if b.speed < 100 else f"{b.speed:,.0f}"


def fmt_peak(b):
    return "n/a" if b.peak is None else f"{b.peak:,.0f}"


def fmt_ratio(lcnn, torch, unit):
    if lcnn.speed is None or torch.speed is None or lcnn.speed <= 0 or torch.speed <= 0:
        return "n/a"
    r = lcnn.speed / torch.speed if unit == "images/s" else torch.speed / lcnn.speed
    return f"{r:.2f}x"


def main():
    lcnn_bin = os.environ.get("LCNN_BIN", os.path.join("target", "release", "lcnn"))
    threads = int(env_float("THREADS", 2))
    scale = env_float("STEPS_SCALE", 1)
    runs = max(1, int(env_float("RUNS", 2)))
    engines = os.environ.get("ENGINES", "").split()
    only = set(os.environ.get("ONLY", "").split())
    channels_last = os.environ.get("TORCH_CHANNELS_LAST", "auto")
    py = os.environ.get("TORCH_PYTHON", sys.executable)
    torch_script = os.path.join(HERE, "torch_bench.py")
    if threads < 1 or scale <= 0:
        sys.exit("THREADS must be >= 1 and STEPS_SCALE > 0")
    if not (os.path.isfile(lcnn_bin) and os.access(lcnn_bin, os.X_OK)):
        sys.exit(f"lcnn binary {lcnn_bin!r} not found or not executable (set LCNN_BIN)")
    unknown = only - {m for m, *_ in TRAIN_SHAPES + PREDICT_SHAPES}
    if unknown:
        sys.exit(f"ONLY: unknown model(s) {' '.join(sorted(unknown))}")

    steps = lambda k: max(1, round(k * scale))  # noqa: E731
    lcnn_env = {"RAYON_NUM_THREADS": str(threads)}
    torch_env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    engine_flags = [(e, ["--engine", e]) for e in engines] or [(None, [])]

    try:
        load1 = os.getloadavg()[0]
    except OSError:
        load1 = float("nan")
    torch_ver = subprocess.run([py, "-c", "import torch; print(torch.__version__)"],
                               stdout=subprocess.PIPE, text=True).stdout.strip() or "?"
    print(f"lcnn: {lcnn_bin}; PyTorch {torch_ver} ({py}); {threads} threads; "
          f"{os.cpu_count()} CPUs; load average {load1:.2f}", file=sys.stderr)
    if load1 > 0.5:
        print("warning: the machine is not idle; timings will be noisy", file=sys.stderr)

    rows = []  # (model, input, batch, unit, {engine: Best}, torch Best)
    jobs = [("train", *s) for s in TRAIN_SHAPES] + \
           [("predict", m, i, 1, k) for m, i, k in PREDICT_SHAPES]
    for mode, model, inp, batch, k in jobs:
        if only and model not in only:
            continue
        unit = "images/s" if mode == "train" else "ms"
        print(f"{model} {inp} batch {batch} ({mode}):", file=sys.stderr, flush=True)
        lcnn_best = {e: Best(unit) for e, _ in engine_flags}
        torch_best = Best(unit)
        if mode == "train":
            lcnn_args = ["bench", "train-step", "--model", model, "--input", inp,
                         "--batch", str(batch), "--steps", str(steps(k))]
            torch_args = ["--batch", str(batch), "--steps", str(steps(k))]
        else:
            lcnn_args = ["bench", "predict", "--model", model, "--input", inp]
            torch_args = ["--mode", "predict", "--steps", str(max(10, steps(k)))]
        for r in range(runs):
            for e, flags in engine_flags:
                label = f"lcnn{' ' + e if e else ''} run {r + 1}"
                lcnn_best[e].add(*run([lcnn_bin, *lcnn_args, *flags], lcnn_env, label))
            torch_cmd = [py, torch_script, "--model", model, "--input", inp,
                         "--threads", str(threads), "--channels-last", channels_last,
                         *torch_args]
            torch_best.add(*run(torch_cmd, torch_env, f"PyTorch run {r + 1}"))
        rows.append((mode, model, inp, batch, unit, lcnn_best, torch_best))

    names = [e for e, _ in engine_flags]
    lab = lambda e: "lcnn" if e is None else f"lcnn {e}"  # noqa: E731
    rlab = lambda e: "ratio" if e is None or len(names) == 1 else f"ratio {e}"  # noqa: E731
    header = (["model", "input", "batch"] + [f"{lab(e)} img/s" for e in names]
              + ["PyTorch img/s"] + [rlab(e) for e in names]
              + [f"{lab(e)} peak MB" for e in names] + ["PyTorch peak MB"])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    notes = []
    for mode, model, inp, batch, unit, lb, tb in rows:
        name = model if mode == "train" else f"{model} predict (batch-1 latency)"
        cells = ([name, inp, str(batch)] + [fmt_speed(lb[e], unit) for e in names]
                 + [fmt_speed(tb, unit)] + [fmt_ratio(lb[e], tb, unit) for e in names]
                 + [fmt_peak(lb[e]) for e in names] + [fmt_peak(tb)])
        lines.append("| " + " | ".join(cells) + " |")
        if tb.config:
            notes.append(f"{model} {inp} {'batch ' + str(batch) if mode == 'train' else 'predict'}"
                         f": {tb.config}")
    import_rss = [tb.import_rss for *_, tb in rows if tb.import_rss is not None]
    print()
    print("\n".join(lines))
    print()
    print(f"{threads} threads, best of {runs} alternating runs per side (peak MB: the lowest); "
          f"PyTorch {torch_ver}, Adam lr 1e-3 eps 1e-7, train mode. ratio = lcnn img/s / "
          f"PyTorch img/s (predict: PyTorch ms / lcnn ms); above 1, lcnn is faster.")
    if notes:
        how = "fastest of NCHW / channels_last" if channels_last == "auto" else \
            f"--channels-last {channels_last}"
        print(f"PyTorch layout ({how}): " + "; ".join(notes) + ".")
    if import_rss:
        print(f"PyTorch's peak includes ~{min(import_rss):,.0f} MB of RSS right after "
              f"`import torch` (the PyPI wheel's libraries, mostly file-backed).")
    failed = any(b.error for *_, lb, tb in rows for b in [tb, *lb.values()])
    if failed:
        print("Some runs failed; see the messages above.", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
