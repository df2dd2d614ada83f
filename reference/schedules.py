#!/usr/bin/env python3
"""Keras learning-rate schedules (and PyTorch's OneCycleLR), re-implemented in numpy (float64).

Writes crates/lcnn/tests/fixtures/schedules.json.

Step convention: `step` is the optimizer's `iterations`, the number of updates already
applied, so the first update uses step 0.  Keras 3 base_optimizer.py:
    def _get_current_learning_rate(self):
        if isinstance(self._learning_rate, LearningRateSchedule):
            return self._learning_rate(self._iterations)
and `iterations` is incremented after the update.  (tf.keras 2.x optimizer_v2
`_decayed_lr` also calls `lr_t = self._learning_rate(local_step)` with
`local_step = self.iterations` before the increment.)
    https://github.com/keras-team/keras/blob/master/keras/src/optimizers/base_optimizer.py

Schedules, Keras 3 keras/src/optimizers/schedules/learning_rate_schedule.py
    https://github.com/keras-team/keras/blob/master/keras/src/optimizers/schedules/learning_rate_schedule.py
(tf.keras 2.x keras/optimizers/schedules/learning_rate_schedule.py has the same formulas;
CosineDecay gained warmup_target / warmup_steps in tf.keras 2.13.)  Keras computes in the
dtype of initial_learning_rate (float32); this transcription uses float64.

ExponentialDecay(initial_learning_rate, decay_steps, decay_rate, staircase)
    p = step / decay_steps;  if staircase: p = floor(p)
    lr = initial_learning_rate * decay_rate ** p

InverseTimeDecay(initial_learning_rate, decay_steps, decay_rate, staircase)
    p = step / decay_steps;  if staircase: p = floor(p)
    lr = initial_learning_rate / (1 + decay_rate * p)
  With decay_steps = 1, staircase False this is exactly tf.keras 2.x optimizer_v2's legacy
  `decay` argument, lr / (1 + decay * iterations) (OptimizerV2._decayed_lr; see
  reference/optimizers.py, case sgd_nesterov_decay).

PiecewiseConstantDecay(boundaries, values)
    lr = values[0]   if step <= boundaries[0]
         values[i]   if boundaries[i-1] < step <= boundaries[i]
         values[-1]  if step > boundaries[-1]
  i.e. a step exactly ON a boundary still gets the value BEFORE it.  (Keras 3 sums
  cast(step <= b0)*v0 + cast(step > b_last)*v_last + sum cast(b_{i-1} < step <= b_i)*v_i.)
  The schedule has no initial_learning_rate; the fixture sets it to values[0].

CosineDecay(initial_learning_rate, decay_steps, alpha=0, warmup_target=None, warmup_steps=0)
    decay(s, from_lr) = from_lr * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps)) + alpha)
    warmup_target is None:
        lr = decay(min(step, decay_steps), initial_learning_rate)
        (warmup_steps is then IGNORED entirely: no delay, no warmup.)
    else:
        s = min(step, decay_steps + warmup_steps)
        lr = (warmup_target - initial) * s / warmup_steps + initial   if s < warmup_steps
             decay(s - warmup_steps, warmup_target)                   otherwise
  So with warmup the schedule clamps at decay_steps + warmup_steps, ending at
  warmup_target * alpha; step == warmup_steps gives exactly warmup_target.  (The class
  docstring's warmup formula omits the "+ initial_learning_rate"; the code adds it.)

one_cycle: not a Keras schedule.  PyTorch torch.optim.lr_scheduler.OneCycleLR with
anneal_strategy='cos', three_phase=False, cycle_momentum=False, max_lr =
initial_learning_rate (torch/optim/lr_scheduler.py, class OneCycleLR):
    https://github.com/pytorch/pytorch/blob/main/torch/optim/lr_scheduler.py
    initial_lr = max_lr / div_factor;  min_lr = initial_lr / final_div_factor
    phases: end_step = float(pct_start * total_steps) - 1: initial_lr -> max_lr
            end_step = total_steps - 1:                    max_lr -> min_lr
    get_lr (step_num = last_epoch): take the first phase with step_num <= end_step (or the
      last phase), pct = (step_num - start_step) / (end_step - start_step) with start_step
      the previous phase's end_step (0.0 for the first), lr = _annealing_cos(start, end, pct)
    _annealing_cos(start, end, pct) = end + (start - end) / 2 * (cos(pi * pct) + 1)
  After construction the optimizer holds the value at step_num 0; each scheduler.step()
  (called after optimizer.step()) advances step_num by one.  So torch's value at step_num k
  is the learning rate used by update k + 1 (k + 1-th optimizer.step()), which is "step k"
  in the Keras convention above.  Valid for k = 0 .. total_steps - 1 (torch raises past
  total_steps).

Self-checks: the Keras docstring-style closed forms at a few points, continuity of the
warmup at step == warmup_steps, the legacy-decay equivalence against optimizers.py.
Cross-checks (only when importable; they never change the fixture):
  * Keras: every Keras case through keras.optimizers.schedules.* (float32, rtol 1e-6 plus
    an absolute 1e-6 * max|lr| for the cosine tail), and the step convention through a
    real keras.optimizers.SGD(learning_rate=schedule): with the variable reset to 0 and a
    gradient of 1 before each apply(), the variable afterwards is -lr(iterations).
  * torch: every one_cycle case through torch.optim.lr_scheduler.OneCycleLR (rtol 1e-12).
  Run e.g. KERAS_BACKEND=jax /path/to/venv/bin/python reference/schedules.py
"""

import math
import sys

import numpy as np

from _common import write_fixture


# ---------------------------------------------------------------------------------------------
# The schedules (float64)
# ---------------------------------------------------------------------------------------------


def exponential(lr0, step, decay_steps, decay_rate, staircase):
    p = step / decay_steps
    if staircase:
        p = math.floor(p)
    return lr0 * decay_rate ** p


def inverse_time(lr0, step, decay_steps, decay_rate, staircase):
    p = step / decay_steps
    if staircase:
        p = math.floor(p)
    return lr0 / (1.0 + decay_rate * p)


def piecewise(step, boundaries, values):
    assert len(values) == len(boundaries) + 1
    for b, v in zip(boundaries, values):
        if step <= b:
            return v
    return values[-1]


def cosine(lr0, step, decay_steps, alpha, warmup_target, warmup_steps):
    def decay(s, from_lr):
        cos_decay = 0.5 * (1.0 + math.cos(math.pi * s / decay_steps))
        return from_lr * ((1.0 - alpha) * cos_decay + alpha)

    if warmup_target is None:
        return decay(min(step, decay_steps), lr0)
    s = min(step, decay_steps + warmup_steps)
    if s < warmup_steps:
        return (warmup_target - lr0) * (s / warmup_steps) + lr0
    return decay(s - warmup_steps, warmup_target)


def one_cycle(max_lr, step, total_steps, pct_start, div_factor, final_div_factor):
    assert 0 <= step < total_steps
    initial_lr = max_lr / div_factor
    min_lr = initial_lr / final_div_factor
    phases = [(float(pct_start * total_steps) - 1, initial_lr, max_lr),
              (total_steps - 1, max_lr, min_lr)]
    start_step = 0.0
    for i, (end_step, lo, hi) in enumerate(phases):
        if step <= end_step or i == len(phases) - 1:
            pct = (step - start_step) / (end_step - start_step)
            return hi + (lo - hi) / 2.0 * (math.cos(math.pi * pct) + 1)
        start_step = end_step
    raise AssertionError("unreachable")


def evaluate(case):
    p, lr0 = case["params"], case["initial_learning_rate"]
    kind = case["schedule"]
    out = []
    for s in case["steps"]:
        if kind == "exponential":
            v = exponential(lr0, s, p["decay_steps"], p["decay_rate"], p["staircase"])
        elif kind == "inverse_time":
            v = inverse_time(lr0, s, p["decay_steps"], p["decay_rate"], p["staircase"])
        elif kind == "piecewise":
            v = piecewise(s, p["boundaries"], p["values"])
        elif kind == "cosine":
            v = cosine(lr0, s, p["decay_steps"], p["alpha"], p["warmup_target"], p["warmup_steps"])
        elif kind == "one_cycle":
            v = one_cycle(lr0, s, p["total_steps"], p["pct_start"], p["div_factor"],
                          p["final_div_factor"])
        else:
            raise ValueError(kind)
        out.append(float(v))
    return out


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------


def case(name, schedule, lr0, params, steps, note=None):
    c = {"name": name, "schedule": schedule, "initial_learning_rate": lr0, "params": params,
         "steps": list(steps)}
    if note:
        c["note"] = note
    return c


def cosine_params(decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0):
    return {"decay_steps": decay_steps, "alpha": alpha, "warmup_target": warmup_target,
            "warmup_steps": warmup_steps}


def cases():
    return [
        case("cosine_plain", "cosine", 0.1, cosine_params(20), range(0, 26),
             note="steps past decay_steps clamp to initial_learning_rate * alpha = 0"),
        case("cosine_alpha0.1", "cosine", 0.05, cosine_params(16, alpha=0.1), range(0, 21)),
        case("cosine_warmup", "cosine", 0.0, cosine_params(20, alpha=0.0, warmup_target=0.1,
                                                           warmup_steps=5), range(0, 31),
             note="linear 0 -> 0.1 over steps 0..5, cosine 0.1 -> 0 over 5..25, clamped after 25"),
        case("cosine_warmup_alpha0.2", "cosine", 0.01,
             cosine_params(12, alpha=0.2, warmup_target=0.05, warmup_steps=4), range(0, 20),
             note="warmup from a nonzero initial_learning_rate; ends at warmup_target * alpha"),
        case("cosine_warmup_steps_without_target", "cosine", 0.1,
             cosine_params(10, warmup_target=None, warmup_steps=5), range(0, 13),
             note="warmup_target None: Keras ignores warmup_steps (same values as no warmup)"),
        case("piecewise", "piecewise", 0.1,
             {"boundaries": [5, 12, 20], "values": [0.1, 0.05, 0.01, 0.001]}, range(0, 24),
             note="values[i] for boundaries[i-1] < step <= boundaries[i]: a step on a boundary "
                  "keeps the earlier value"),
        case("piecewise_one_boundary", "piecewise", 1.0,
             {"boundaries": [3], "values": [1.0, 0.5]}, range(0, 7)),
        case("exponential", "exponential", 0.1,
             {"decay_steps": 5, "decay_rate": 0.5, "staircase": False}, range(0, 21)),
        case("exponential_staircase", "exponential", 0.1,
             {"decay_steps": 5, "decay_rate": 0.5, "staircase": True}, range(0, 21)),
        case("inverse_time", "inverse_time", 0.1,
             {"decay_steps": 4, "decay_rate": 0.5, "staircase": False}, range(0, 21)),
        case("inverse_time_staircase", "inverse_time", 0.1,
             {"decay_steps": 4, "decay_rate": 0.5, "staircase": True}, range(0, 21)),
        case("inverse_time_legacy_decay", "inverse_time", 0.01,
             {"decay_steps": 1, "decay_rate": 0.01, "staircase": False}, range(0, 21),
             note="= tf.keras 2.x optimizer_v2 decay=0.01: lr / (1 + decay * iterations) "
                  "(optimizers.json sgd_nesterov_decay lr_t)"),
        case("one_cycle_default", "one_cycle", 0.01,
             {"total_steps": 30, "pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4,
              "anneal_strategy": "cos", "three_phase": False}, range(0, 30),
             note="torch OneCycleLR: value at step k = lr of the (k+1)-th optimizer.step()"),
        case("one_cycle_pct0.25", "one_cycle", 0.1,
             {"total_steps": 40, "pct_start": 0.25, "div_factor": 10.0, "final_div_factor": 100.0,
              "anneal_strategy": "cos", "three_phase": False}, range(0, 40)),
    ]


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def close(a, b, tol=1e-15):
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def self_check(all_cases):
    # Closed forms at a few points.
    assert close(exponential(0.1, 7, 5, 0.5, False), 0.1 * 0.5 ** 1.4)
    assert exponential(0.1, 9, 5, 0.5, True) == 0.1 * 0.5
    assert close(inverse_time(0.1, 6, 4, 0.5, False), 0.1 / 1.75)
    assert inverse_time(0.1, 7, 4, 0.5, True) == 0.1 / 1.5
    assert [piecewise(s, [5, 12], [3.0, 2.0, 1.0]) for s in (0, 5, 6, 12, 13)] == [3, 3, 2, 2, 1]
    assert cosine(0.1, 0, 20, 0.0, None, 0) == 0.1
    assert close(cosine(0.1, 10, 20, 0.0, None, 0), 0.05)
    assert close(cosine(0.1, 10, 20, 0.2, None, 0), 0.1 * (0.8 * 0.5 + 0.2))
    assert cosine(0.1, 20, 20, 0.1, None, 0) == cosine(0.1, 99, 20, 0.1, None, 0)
    # Warmup: linear, continuous at warmup_steps, clamped at decay_steps + warmup_steps.
    assert close(cosine(0.0, 2, 20, 0.0, 0.1, 5), 0.04)
    assert cosine(0.0, 5, 20, 0.0, 0.1, 5) == 0.1
    assert close(cosine(0.0, 15, 20, 0.0, 0.1, 5), 0.05)
    assert cosine(0.0, 25, 20, 0.3, 0.1, 5) == cosine(0.0, 40, 20, 0.3, 0.1, 5)
    assert close(cosine(0.0, 25, 20, 0.3, 0.1, 5), 0.03)
    # warmup_steps without warmup_target changes nothing.
    for s in range(15):
        assert cosine(0.1, s, 10, 0.0, None, 5) == cosine(0.1, s, 10, 0.0, None, 0)
    # One-cycle: starts at max_lr/div, peaks at max_lr at the end of phase 1, ends at min_lr.
    assert close(one_cycle(0.01, 0, 30, 0.3, 25.0, 1e4), 0.01 / 25)
    assert close(one_cycle(0.01, 8, 30, 0.3, 25.0, 1e4), 0.01)
    assert close(one_cycle(0.01, 29, 30, 0.3, 25.0, 1e4), 0.01 / 25 / 1e4)
    assert close(one_cycle(0.1, 9, 40, 0.25, 10.0, 100.0), 0.1)
    # Legacy optimizer_v2 decay, as reference/optimizers.py computes it.
    import optimizers
    legacy = next(c for c in all_cases if c["name"] == "inverse_time_legacy_decay")
    for s, v in zip(legacy["steps"], legacy["lr"]):
        assert close(v, optimizers.decayed_lr(0.01, 0.01, s)), (s, v)


def keras_check(all_cases):
    """Every Keras case through Keras' own schedule classes (None when Keras is missing)."""
    try:
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras
    except ImportError:
        return None
    sch = keras.optimizers.schedules
    for c in all_cases:
        p, lr0 = c["params"], c["initial_learning_rate"]
        kind = c["schedule"]
        if kind == "exponential":
            s = sch.ExponentialDecay(lr0, p["decay_steps"], p["decay_rate"], p["staircase"])
        elif kind == "inverse_time":
            s = sch.InverseTimeDecay(lr0, p["decay_steps"], p["decay_rate"], p["staircase"])
        elif kind == "piecewise":
            s = sch.PiecewiseConstantDecay(p["boundaries"], p["values"])
        elif kind == "cosine":
            s = sch.CosineDecay(lr0, p["decay_steps"], alpha=p["alpha"],
                                warmup_target=p["warmup_target"], warmup_steps=p["warmup_steps"])
        else:
            continue
        want = np.array(c["lr"])
        atol = 1e-6 * np.abs(want).max()
        got = np.array([float(keras.ops.convert_to_numpy(s(st))) for st in c["steps"]])
        if not np.allclose(got, want, rtol=1e-6, atol=atol):
            raise SystemExit(f"{c['name']}: Keras schedule gives {got.tolist()}, "
                             f"the transcription {want.tolist()}")
        # The step convention: an SGD update with gradient 1 from 0 moves the variable by
        # -lr(iterations), iterations counting the updates already applied.
        opt = keras.optimizers.SGD(learning_rate=s)
        var = keras.Variable(np.zeros(1, dtype=np.float32))
        applied = []
        for _ in range(len(c["steps"])):
            var.assign(np.zeros(1, dtype=np.float32))
            opt.apply([np.ones(1, dtype=np.float32)], [var])
            applied.append(-float(keras.ops.convert_to_numpy(var)[0]))
        want_applied = np.array([evaluate({**c, "steps": [k]})[0] for k in range(len(applied))])
        if not np.allclose(applied, want_applied, rtol=1e-6, atol=atol):
            raise SystemExit(f"{c['name']}: Keras SGD applied {applied}, "
                             f"the transcription {want_applied.tolist()}")
    return f"keras {keras.__version__} ({keras.backend.backend()} backend)"


def torch_check(all_cases):
    """The one_cycle cases through torch's OneCycleLR (None when torch is missing)."""
    try:
        import torch
    except ImportError:
        return None
    for c in all_cases:
        if c["schedule"] != "one_cycle":
            continue
        p = c["params"]
        param = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([param], lr=c["initial_learning_rate"])
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=c["initial_learning_rate"], total_steps=p["total_steps"],
            pct_start=p["pct_start"], anneal_strategy="cos", cycle_momentum=False,
            div_factor=p["div_factor"], final_div_factor=p["final_div_factor"],
            three_phase=False)
        got = []
        for k in range(p["total_steps"]):
            got.append(opt.param_groups[0]["lr"])  # the lr the (k+1)-th optimizer.step() uses
            param.grad = torch.zeros(1)
            opt.step()
            sched.step()
        got = [got[k] for k in c["steps"]]
        if not np.allclose(got, c["lr"], rtol=1e-12, atol=0.0):
            raise SystemExit(f"{c['name']}: torch OneCycleLR gives {got}, the transcription {c['lr']}")
    return f"torch {torch.__version__}"


def main():
    all_cases = cases()
    for c in all_cases:
        c["lr"] = evaluate(c)
    self_check(all_cases)
    for label, check in (("Keras", keras_check), ("torch", torch_check)):
        r = check(all_cases)
        print(f"{label} cross-check: " + (f"passed against {r}" if r else "skipped (not importable)"),
              file=sys.stderr)
    payload = {
        "description": "Learning-rate schedules, float64; lr[i] is the value at steps[i] = "
                       "optimizer iterations (updates already applied; the first update uses "
                       "step 0). Keras 3 ExponentialDecay, InverseTimeDecay, "
                       "PiecewiseConstantDecay, CosineDecay; one_cycle = torch OneCycleLR "
                       "(cos, two phases, no momentum cycling) with max_lr = "
                       "initial_learning_rate. See reference/schedules.py",
        "cases": all_cases,
    }
    write_fixture("schedules.json", payload)


if __name__ == "__main__":
    main()
