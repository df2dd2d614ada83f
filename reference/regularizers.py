#!/usr/bin/env python3
"""Keras label smoothing, decoupled weight decay and the L2 regularizer, in numpy (float64).

Writes crates/lcnn/tests/fixtures/regularizers.json.

Label smoothing (Keras 3 keras/src/losses/losses.py; tf.keras 2.x keras/losses.py is the same)
    https://github.com/keras-team/keras/blob/master/keras/src/losses/losses.py
  categorical_crossentropy(y_true, y_pred, from_logits, label_smoothing):
      num_classes = shape(y_true)[-1]
      y_true = y_true * (1 - label_smoothing) + label_smoothing / num_classes
  binary_crossentropy(y_true, y_pred, from_logits, label_smoothing):
      y_true = y_true * (1 - label_smoothing) + 0.5 * label_smoothing
      loss = mean over the last axis
  then the default reduction, the mean over the batch.  From logits z:
      categorical: loss_n = -sum_c y[n, c] * log_softmax(z_n)[c]
                   d mean / d z = (softmax(z) - y) / N        (sum_c y = 1 still holds)
      binary (one sigmoid unit, as lcnn's binary head: logits [N, 1], labels N values in
              {0, 1}): loss_n = softplus(z_n) - y_n z_n = max(z,0) - y z + log1p(exp(-|z|))
                   (= -y log_sigmoid(z) - (1-y) log_sigmoid(-z), Keras' jax backend form)
                   d mean / d z = (sigmoid(z) - y) / N
  These are the exact from-logits losses of reference/losses.py (`loss_from_logits`) with the
  one-hot / 0-1 targets replaced by the smoothed ones.  Keras' SparseCategoricalCrossentropy
  has no label_smoothing argument; smoothing needs one-hot labels and CategoricalCrossentropy.

Decoupled weight decay (Keras 3 keras/src/optimizers/base_optimizer.py)
    https://github.com/keras-team/keras/blob/master/keras/src/optimizers/base_optimizer.py
  BaseOptimizer.apply():
      grads = self._clip_gradients(grads)
      self._apply_weight_decay(trainable_variables)
      self._backend_update_step(grads, trainable_variables, self.learning_rate)
  _apply_weight_decay():
      lr = cast(self.learning_rate, dtype); wd = cast(self.weight_decay, dtype)
      variable.assign(variable - variable * wd * lr)
  So per step: w <- w - w * weight_decay * lr (lr = the current learning rate, i.e. the
  schedule's value at `iterations` when there is one, NOT Adam's bias-corrected alpha),
  THEN the optimizer's ordinary update with the gradient, which was computed at the weights
  before the decay.  AdamW (keras/src/optimizers/adamw.py) is Adam with weight_decay=0.004 by
  default; Adam(weight_decay=x) and SGD(weight_decay=x) take the same path.  This is not
  PyTorch's SGD(weight_decay) (an L2 term added to the gradient).  tf.keras 2.11+'s new
  optimizers (keras/optimizers/optimizer.py, `_apply_weight_decay`: variable.assign_sub(
  variable * wd * lr)) do the same; tf.keras <= 2.10 optimizer_v2 has no weight_decay.
  The Adam and SGD updates are those of reference/optimizers.py (Keras' epsilon placement).

L2 regularizer (Keras 3 keras/src/regularizers/regularizers.py, class L2)
    https://github.com/keras-team/keras/blob/master/keras/src/regularizers/regularizers.py
      __call__(x) = l2 * sum(square(x))          (no 1/2 factor; gradient 2 * l2 * x)
  Keras adds it to the loss (model.losses), so with plain SGD it acts like a coupled decay
  of 2 * l2 * lr per step.

Problem for the weight-decay cases: as optimizers.py, w0 = [0.5, -1.0, 2.0, 0.0, -0.3], five
steps, g_t[j] = sin(1.0 * t + 0.5 * j) + 0.1 * w_{t-1}[j] with w_{t-1} the weights before
step t (before its decay).

Self-checks: finite-difference gradients of the smoothed losses and of L2; label_smoothing 0
equals reference/losses.py's exact losses; the two binary forms agree; weight_decay 0 gives
optimizers.py's trajectories.  Cross-checks when Keras is importable (they never change the
fixture): keras.losses.CategoricalCrossentropy / BinaryCrossentropy(from_logits=True,
label_smoothing=ls) on the losses (and, on the jax backend, jax.grad on the gradients),
keras.optimizers.AdamW / Adam / SGD(weight_decay=...).apply() on a float32 Variable with this
script's gradients, and keras.regularizers.L2.  The script stops on a mismatch.
Run e.g. KERAS_BACKEND=jax /path/to/venv/bin/python reference/regularizers.py
"""

import sys

import numpy as np

import losses
import optimizers
from _common import write_fixture

# ---------------------------------------------------------------------------------------------
# Label smoothing
# ---------------------------------------------------------------------------------------------


def smoothed_targets(kind, labels, width, ls):
    labels = np.asarray(labels)
    if kind == "categorical":
        y = losses.one_hot(labels, width)
        return y * (1.0 - ls) + ls / width
    y = labels.astype(np.float64)[:, None]
    return y * (1.0 - ls) + 0.5 * ls


def stable_sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def loss_fn(kind, z, y):
    """Mean loss over the batch, from logits z and (smoothed) targets y of the same shape."""
    if kind == "categorical":
        return (-(y * losses.log_softmax(z)).sum(axis=-1)).mean()
    elem = np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))
    return elem.mean(axis=-1).mean()


def grad_fn(kind, z, y):
    n = z.shape[0]
    if kind == "categorical":
        return (losses.softmax(z) - y) / n
    return (stable_sigmoid(z) - y) / (n * z.shape[1])


def label_smoothing_case(name, kind, ls, logits, labels):
    z = np.asarray(logits, dtype=np.float64)
    y = smoothed_targets(kind, labels, z.shape[1], ls)
    loss = loss_fn(kind, z, y)
    grad = grad_fn(kind, z, y)
    # Finite differences.
    h = 1e-5
    fd = np.zeros_like(z)
    for a in range(z.shape[0]):
        for b in range(z.shape[1]):
            zp, zm = z.copy(), z.copy()
            zp[a, b] += h
            zm[a, b] -= h
            fd[a, b] = (loss_fn(kind, zp, y) - loss_fn(kind, zm, y)) / (2 * h)
    assert np.allclose(fd, grad, rtol=0, atol=1e-8), (name, np.abs(fd - grad).max())
    if kind == "binary":
        # Keras' jax-backend form: -y log_sigmoid(z) - (1 - y) log_sigmoid(-z).
        log_sig = lambda x: -np.logaddexp(0.0, -x)  # noqa: E731
        alt = (-y * log_sig(z) - (1 - y) * log_sig(-z)).mean()
        assert abs(alt - loss) <= 1e-13 * max(1.0, loss), (name, alt, loss)
    if ls == 0.0:
        # The plain exact losses of reference/losses.py.
        if kind == "categorical":
            plain = -losses.log_softmax(z)[np.arange(z.shape[0]), labels].mean()
        else:
            yb = np.asarray(labels, dtype=np.float64)[:, None]
            plain = (np.maximum(z, 0) - z * yb + np.log1p(np.exp(-np.abs(z)))).mean()
        assert abs(plain - loss) <= 1e-15 * max(1.0, loss), (name, plain, loss)
    return {"name": name, "kind": kind, "label_smoothing": ls, "logits": z,
            "labels": [int(v) for v in labels], "targets": y, "loss": float(loss), "grad": grad}


def label_smoothing_cases():
    n, c = 4, 5
    z = 2.0 * np.sin(0.9 * np.arange(n * c, dtype=np.float64) + 0.4).reshape(n, c)
    z[3] = [40.0, -25.0, 3.0, 0.5, -10.0]   # large logits; the true class (1) is far from the max
    labels = [3, 0, 2, 1]
    zb = np.array([[1.3], [-0.7], [0.2], [35.0], [-30.0], [40.0]])
    yb = [1, 0, 0, 0, 1, 1]                  # rows 3, 4: confidently wrong; row 5: confidently right
    out = []
    for ls in (0.0, 0.1, 0.2):
        out.append(label_smoothing_case(f"categorical_ls{ls}", "categorical", ls, z, labels))
    for ls in (0.0, 0.1, 0.2):
        out.append(label_smoothing_case(f"binary_ls{ls}", "binary", ls, zb, yb))
    return out


# ---------------------------------------------------------------------------------------------
# Decoupled weight decay
# ---------------------------------------------------------------------------------------------


def run_weight_decay(name, config, decay_after=False):
    """Five steps of optimizers.py's problem with Keras 3's decay-then-update.

    decay_after=True applies the decay after the update instead (only to show, in the
    self-check, that the fixture can tell the two orders apart)."""
    lr, wd = config["learning_rate"], config.get("weight_decay", 0.0)
    if config["optimizer"] in ("adam", "adamw"):
        opt = optimizers.Adam(lr=lr, beta_1=config["beta_1"], beta_2=config["beta_2"],
                              epsilon=config["epsilon"])
    else:
        opt = optimizers.SGD(lr=lr, momentum=config["momentum"], nesterov=config["nesterov"])
    w = optimizers.W0.copy()
    weights, grads, lrs = [], [], []
    for t in range(1, optimizers.STEPS + 1):
        g = optimizers.grad_fn(t, w)          # at the weights before this step's decay
        lr_t = lr                             # the current learning rate (no schedule here)
        if not decay_after:
            w = w - w * wd * lr_t
        w, lr_used = opt.step(w, g)
        assert lr_used == lr_t
        if decay_after:
            w = w - w * wd * lr_t
        grads.append(g)
        weights.append(w)
        lrs.append(lr_t)
    return {"name": name, "config": config, "weights": np.array(weights), "grads": np.array(grads),
            "lr_t": lrs, "slots": opt.slots()}


def adam_config(opt, lr, wd, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    return {"optimizer": opt, "learning_rate": lr, "beta_1": beta_1, "beta_2": beta_2,
            "epsilon": epsilon, "weight_decay": wd}


def sgd_config(lr, momentum, nesterov, wd):
    return {"optimizer": "sgd", "learning_rate": lr, "momentum": momentum, "nesterov": nesterov,
            "weight_decay": wd}


def weight_decay_cases():
    return [
        run_weight_decay("adamw_default", adam_config("adamw", 1e-3, 0.004)),
        run_weight_decay("adamw_lr0.01_wd0.1", adam_config("adamw", 1e-2, 0.1)),
        run_weight_decay("adam_weight_decay0.1", adam_config("adam", 1e-2, 0.1)),
        run_weight_decay("sgd_nesterov_wd0.01", sgd_config(0.1, 0.9, True, 0.01)),
        run_weight_decay("sgd_plain_wd0.05", sgd_config(0.1, 0.0, False, 0.05)),
    ]


def weight_decay_self_check(cases):
    by = {c["name"]: c for c in cases}
    # weight_decay 0 reproduces optimizers.py's cases.
    ref = optimizers.run(optimizers.Adam(lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7))
    mine = run_weight_decay("x", adam_config("adamw", 1e-3, 0.0))
    assert np.array_equal(np.array(ref["weights"]), mine["weights"])
    ref = optimizers.run(optimizers.SGD(lr=0.1, momentum=0.9, nesterov=True))
    mine = run_weight_decay("x", sgd_config(0.1, 0.9, True, 0.0))
    assert np.array_equal(np.array(ref["weights"]), mine["weights"])
    # Adam(weight_decay) is AdamW.
    assert np.array_equal(by["adam_weight_decay0.1"]["weights"], by["adamw_lr0.01_wd0.1"]["weights"])
    # First step by hand, SGD plain: w1 = w0 - w0*wd*lr - lr*g1.
    c = by["sgd_plain_wd0.05"]
    w0 = optimizers.W0
    assert np.allclose(c["weights"][0], w0 - w0 * 0.05 * 0.1 - 0.1 * c["grads"][0], rtol=0, atol=1e-15)
    # Margins the Keras cross-check (float32, atol 2e-6) can resolve: decay on/off everywhere,
    # decay before/after the update in the lr 0.01 / wd 0.1 case.
    for name, case in by.items():
        off = run_weight_decay("x", {**case["config"], "weight_decay": 0.0})
        assert np.abs(off["weights"] - case["weights"]).max() > 1e-5, name
    after = run_weight_decay("x", adam_config("adamw", 1e-2, 0.1), decay_after=True)
    d = np.abs(after["weights"] - by["adamw_lr0.01_wd0.1"]["weights"]).max()
    assert d > 1e-5, d
    return d


# ---------------------------------------------------------------------------------------------
# L2
# ---------------------------------------------------------------------------------------------


def l2_case(name, l2, w):
    w = np.asarray(w, dtype=np.float64)
    penalty = l2 * np.sum(w * w)
    grad = 2.0 * l2 * w
    h = 1e-6
    fd = np.array([(l2 * np.sum((w + h * e) ** 2) - l2 * np.sum((w - h * e) ** 2)) / (2 * h)
                   for e in np.eye(w.size)])
    assert np.allclose(fd, grad, rtol=0, atol=1e-10), (name, np.abs(fd - grad).max())
    return {"name": name, "l2": l2, "w": w, "penalty": float(penalty), "grad": grad}


def l2_cases():
    return [
        l2_case("l2_0.01_w0", 0.01, optimizers.W0),
        l2_case("l2_1e-4_sin", 1e-4, 3.0 * np.sin(0.7 * np.arange(8, dtype=np.float64) + 0.3)),
    ]


# ---------------------------------------------------------------------------------------------
# Keras cross-check
# ---------------------------------------------------------------------------------------------


def keras_check(ls_cases, wd_cases, l2_list):
    try:
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras
    except ImportError:
        return None
    to_np = keras.ops.convert_to_numpy
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    checked_grads = False
    for c in ls_cases:
        z, y = np.array(c["logits"]), np.array(c["targets"])
        if c["kind"] == "categorical":
            hard = losses.one_hot(c["labels"], z.shape[1])
            fn = keras.losses.CategoricalCrossentropy(from_logits=True,
                                                      label_smoothing=c["label_smoothing"])
        else:
            hard = np.array(c["labels"], dtype=np.float64)[:, None]
            fn = keras.losses.BinaryCrossentropy(from_logits=True,
                                                 label_smoothing=c["label_smoothing"])
        got = float(to_np(fn(f32(hard), f32(z))))
        if not np.isclose(got, c["loss"], rtol=1e-6, atol=1e-6):
            raise SystemExit(f"{c['name']}: Keras loss {got}, the transcription {c['loss']}")
        if keras.backend.backend() == "jax":
            import jax

            g = np.asarray(jax.grad(lambda zz: fn(f32(hard), zz))(f32(z)))
            if not np.allclose(g, c["grad"], rtol=1e-5, atol=1e-7):
                raise SystemExit(f"{c['name']}: jax.grad of the Keras loss {g.tolist()}, "
                                 f"the transcription {np.asarray(c['grad']).tolist()}")
            checked_grads = True
    for c in wd_cases:
        cfg = c["config"]
        if cfg["optimizer"] == "sgd":
            opt = keras.optimizers.SGD(learning_rate=cfg["learning_rate"], momentum=cfg["momentum"],
                                       nesterov=cfg["nesterov"], weight_decay=cfg["weight_decay"])
        else:
            cls = keras.optimizers.AdamW if cfg["optimizer"] == "adamw" else keras.optimizers.Adam
            opt = cls(learning_rate=cfg["learning_rate"], beta_1=cfg["beta_1"], beta_2=cfg["beta_2"],
                      epsilon=cfg["epsilon"], weight_decay=cfg["weight_decay"])
        var = keras.Variable(f32(optimizers.W0))
        for t, g in enumerate(c["grads"]):
            opt.apply([f32(g)], [var])
            got = to_np(var).astype(np.float64)
            if not np.allclose(got, c["weights"][t], rtol=0, atol=2e-6):
                raise SystemExit(f"{c['name']} step {t + 1}: Keras {got.tolist()}, "
                                 f"the transcription {np.asarray(c['weights'][t]).tolist()}")
    for c in l2_list:
        got = float(to_np(keras.regularizers.L2(c["l2"])(f32(c["w"]))))
        if not np.isclose(got, c["penalty"], rtol=1e-6, atol=0):
            raise SystemExit(f"{c['name']}: Keras L2 {got}, the transcription {c['penalty']}")
    return (f"keras {keras.__version__} ({keras.backend.backend()} backend"
            + (", label-smoothing gradients via jax.grad" if checked_grads else "") + ")")


def main():
    ls_cases = label_smoothing_cases()
    wd_cases = weight_decay_cases()
    margin = weight_decay_self_check(wd_cases)
    l2_list = l2_cases()
    r = keras_check(ls_cases, wd_cases, l2_list)
    print("Keras cross-check: " + (f"passed against {r}" if r else "skipped (not importable)"),
          file=sys.stderr)
    print(f"adamw_lr0.01_wd0.1: decay-before vs decay-after differ by {margin:.2e}", file=sys.stderr)
    payload = {
        "description": "Keras label smoothing (from logits, mean over the batch), decoupled weight "
                       "decay (Keras 3: w -= w*weight_decay*lr before the update) and the L2 "
                       "regularizer, float64; see reference/regularizers.py",
        "binary_convention": "binary cases: one sigmoid unit, logits [N][1], labels N values in "
                             "{0,1}, grad [N][1]; categorical: logits [N][C], labels N class "
                             "indices, grad [N][C]. targets = the smoothed labels, shaped as logits",
        "w0": optimizers.W0,
        "steps": optimizers.STEPS,
        "grad_rule": "g_t[j] = sin(1.0*t + 0.5*j) + 0.1*w_{t-1}[j], t = 1..5, w_{t-1} = weights "
                     "before step t (before its decay)",
        "label_smoothing": ls_cases,
        "weight_decay": wd_cases,
        "l2": l2_list,
    }
    write_fixture("regularizers.json", payload)


if __name__ == "__main__":
    main()
