#!/usr/bin/env python3
"""Keras' ReduceLROnPlateau, transcribed in plain Python + numpy.

Writes crates/lcnn/tests/fixtures/reduce_lr.json.

Source: tf.keras 2.9, keras/callbacks.py, class ReduceLROnPlateau
  https://github.com/keras-team/keras/blob/v2.9.0/keras/callbacks.py
    _reset: mode 'min', or 'auto' with 'acc' not in monitor ->
              monitor_op = lambda a, b: np.less(a, b - min_delta);  best = np.Inf
            else
              monitor_op = lambda a, b: np.greater(a, b + min_delta); best = -np.Inf
            cooldown_counter = 0; wait = 0
    on_epoch_end:
      if in_cooldown(): cooldown_counter -= 1; wait = 0
      if monitor_op(current, best): best = current; wait = 0
      elif not in_cooldown():
        wait += 1
        if wait >= patience:
          old_lr = backend.get_value(optimizer.lr)          # float32
          if old_lr > np.float32(min_lr):
            new_lr = max(old_lr * factor, min_lr)           # float32 arithmetic
            backend.set_value(optimizer.lr, new_lr)
            cooldown_counter = cooldown; wait = 0
Keras 3 (keras/src/callbacks/reduce_lr_on_plateau.py) keeps this logic; only
its "auto" mode resolves the direction differently.

Each case feeds a sequence of monitored values, one per epoch, and records the
learning rate, `wait`, `cooldown_counter` and `best` after every epoch. The
learning rate is kept in float32, as Keras' optimizer variable is.

When Keras is importable (e.g. a venv with tensorflow), the cases with an
explicit mode are also run through Keras' own ReduceLROnPlateau on a tiny
compiled model, and the script stops if any learning rate differs by more than
a float32 rounding (rtol 1e-6).
"""

import numpy as np

from _common import write_fixture


def reference(config, lr0, values):
    mode, monitor = config["mode"], config["monitor"]
    min_delta, factor = config["min_delta"], config["factor"]
    if mode == "min" or (mode == "auto" and "acc" not in monitor):
        monitor_op = lambda a, b: np.less(a, b - min_delta)  # noqa: E731
        best = np.inf
    else:
        monitor_op = lambda a, b: np.greater(a, b + min_delta)  # noqa: E731
        best = -np.inf
    cooldown_counter, wait = 0, 0
    lr = np.float32(lr0)
    out = {"lr": [], "wait": [], "cooldown_counter": [], "best": []}
    for current in values:
        if cooldown_counter > 0:
            cooldown_counter -= 1
            wait = 0
        if monitor_op(current, best):
            best = current
            wait = 0
        elif not cooldown_counter > 0:
            wait += 1
            if wait >= config["patience"]:
                if lr > np.float32(config["min_lr"]):
                    new_lr = max(lr * np.float32(factor), np.float32(config["min_lr"]))
                    lr = np.float32(new_lr)
                    cooldown_counter = config["cooldown"]
                    wait = 0
        out["lr"].append(float(lr))
        out["wait"].append(wait)
        out["cooldown_counter"].append(cooldown_counter)
        out["best"].append(float(best))
    return out


def keras_run(config, lr0, values):
    """The same sequence through Keras' own callback (None when Keras is missing)."""
    try:
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras
    except ImportError:
        return None
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr0), loss="mse")
    cb = keras.callbacks.ReduceLROnPlateau(verbose=0, **config)
    cb.set_model(model)
    cb.on_train_begin()
    lrs = []
    for epoch, v in enumerate(values):
        cb.on_epoch_end(epoch, {config["monitor"]: v})
        lrs.append(float(np.float32(keras.ops.convert_to_numpy(model.optimizer.learning_rate))))
    return lrs


def config(**kw):
    c = dict(monitor="val_loss", factor=0.1, patience=10, mode="auto",
             min_delta=1e-4, cooldown=0, min_lr=0.0)
    c.update(kw)
    return c


def cases():
    # A noisy loss curve that flattens: a decaying trend plus a deterministic wobble (no RNG,
    # so the fixture does not depend on numpy's generator streams).
    i = np.arange(40)
    walk = np.exp(-i / 8.0) + 0.3 + 0.03 * np.sin(2.3 * i + 0.4) + 0.02 * np.sin(0.9 * i)
    acc = np.clip(1.0 - walk / 2.0, 0.0, 1.0)
    return [
        ("plateaus_min", config(factor=0.5, patience=2, mode="min"), 1e-3,
         [1.0, 0.9, 0.9, 0.95, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.7]),
        ("keras_defaults_auto", config(), 1e-3,
         [1.0] + [1.5] * 12 + [0.5] + [0.6] * 11),
        ("cooldown_and_min_lr", config(factor=0.5, patience=1, cooldown=2, min_lr=3e-4,
                                       mode="min"), 1e-3, [1.0] + [2.0] * 10),
        ("min_delta_absorbs_small_gains", config(factor=0.2, patience=2, min_delta=0.01,
                                                 mode="min"), 0.01,
         [1.0, 0.995, 0.991, 0.985, 0.98, 0.97, 0.969, 0.968, 0.5]),
        ("patience_zero", config(factor=0.5, patience=0, mode="min"), 0.1,
         [1.0, 1.0, 0.5, 0.6, 0.7, 0.4]),
        ("val_accuracy_auto_max", config(monitor="val_accuracy", patience=2, min_delta=0.0),
         1e-3, [0.5, 0.6, 0.6, 0.55, 0.7, 0.7, 0.7, 0.71]),
        ("random_walk_max", config(monitor="val_accuracy", factor=0.3, patience=3, cooldown=1,
                                   min_lr=1e-5, mode="max"), 1e-3, acc.tolist()),
        ("random_walk_min", config(factor=0.2, patience=3, cooldown=1, min_lr=1e-5,
                                   mode="min"), 1e-3, walk.tolist()),
    ]


def main():
    out = []
    for name, cfg, lr0, values in cases():
        r = reference(cfg, lr0, values)
        if cfg["mode"] != "auto":
            k = keras_run(cfg, lr0, values)
            # Keras 3 multiplies float(old_lr) * factor in float64 before storing float32;
            # Keras 2.9 multiplies in float32: the two differ in the last float32 ulp.
            if k is not None and not np.allclose(k, r["lr"], rtol=1e-6, atol=0.0):
                raise SystemExit(f"{name}: Keras gives {k}, the transcription {r['lr']}")
        out.append({"name": name, "config": cfg, "lr0": lr0, "values": values, **r})
    write_fixture("reduce_lr.json", {"cases": out})


if __name__ == "__main__":
    main()
