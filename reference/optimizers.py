#!/usr/bin/env python3
"""Keras optimizer update rules, re-implemented in numpy (float64).

Writes crates/lcnn/tests/fixtures/optimizers.json.

Problem: w0 = [0.5, -1.0, 2.0, 0.0, -0.3]; for steps t = 1..5 the gradient is
evaluated at the CURRENT weights (those before step t):
    g_t[j] = sin(1.0 * t + 0.5 * j) + 0.1 * w_{t-1}[j]
Each case records the gradient used at every step, the weights after every
step, the effective learning rate per step and the final optimizer slots.

Sources (tf.keras 2.x = keras/optimizers/optimizer_v2/*, the optimizers that
became tf.keras.optimizers.legacy.* in TF 2.11; Keras 3 = keras/src/optimizers/*):

Adam
  keras/optimizers/optimizer_v2/adam.py: _prepare_local builds
  beta_k_power = beta_k ** (iterations + 1); _resource_apply_dense calls
  tf.raw_ops.ResourceApplyAdam(lr=lr_t, epsilon=epsilon, ...), whose CPU
  kernel (tensorflow/core/kernels/training_ops.cc, ApplyAdamNonCuda) is
      alpha = lr * sqrt(1 - beta2_power) / (1 - beta1_power)
      m += (g - m) * (1 - beta1);  v += (g*g - v) * (1 - beta2)
      var -= alpha * m / (sqrt(v) + epsilon)
  i.e. epsilon is "epsilon hat", NOT scaled by sqrt(1 - beta2^t).  Keras 3
  keras/src/optimizers/adam.py is the same formula.
    https://github.com/keras-team/keras/blob/v2.12.0/keras/optimizers/optimizer_v2/adam.py
    https://github.com/tensorflow/tensorflow/blob/master/tensorflow/core/kernels/training_ops.cc
    https://github.com/keras-team/keras/blob/master/keras/src/optimizers/adam.py
  The "Algorithm 1" form (PyTorch, Burn's Adam: w -= lr * m_hat / (sqrt(v_hat) + eps),
  equivalent to epsilon * sqrt(1 - beta2^t) in the Keras form) is emitted as
  the extra case "adam_alg1_eps_*" for comparison only.

SGD
  keras/optimizers/optimizer_v2/gradient_descent.py: momentum == 0 ->
  ResourceApplyGradientDescent (w -= lr_t * g); momentum > 0 ->
  ResourceApplyKerasMomentum, whose kernel (training_ops.cc) is
      accum = accum * momentum - g * lr
      nesterov: var += accum * momentum - g * lr;   else: var += accum
    https://github.com/keras-team/keras/blob/v2.12.0/keras/optimizers/optimizer_v2/gradient_descent.py
  Legacy time-based decay (optimizer_v2.py, OptimizerV2._decayed_lr):
      lr_t = lr / (1 + decay * iterations)
  with `iterations` the number of updates already applied (0 on the first).
    https://github.com/keras-team/keras/blob/v2.12.0/keras/optimizers/optimizer_v2/optimizer_v2.py

RMSprop
  keras/optimizers/optimizer_v2/rmsprop.py, _resource_apply_dense:
    * momentum == 0 (the default) takes a pure-Python path:
          rms = rho * rms + (1 - rho) * g^2
          var -= lr_t * g / (sqrt(rms) + epsilon)          # epsilon OUTSIDE sqrt
    * momentum > 0 calls tf.raw_ops.ResourceApplyRMSProp, whose kernel is
          ms += (g^2 - ms) * (1 - rho)
          mom = mom * momentum + lr * g / sqrt(ms + epsilon)   # epsilon INSIDE
          var -= mom
    https://github.com/keras-team/keras/blob/v2.12.0/keras/optimizers/optimizer_v2/rmsprop.py
  (The same momentum-0 Python path is already in TF 2.0's
  tensorflow/python/keras/optimizer_v2/rmsprop.py.)
  The NEW optimizer that became tf.keras.optimizers.RMSprop in TF/Keras
  2.11-2.15 (keras/optimizers/rmsprop.py, ex optimizer_experimental; the
  optimizer_v2 one is then tf.keras.optimizers.legacy.RMSprop) and Keras 3
  (keras/src/optimizers/rmsprop.py) both use
          increment = lr * g * rsqrt(velocity + epsilon)       # epsilon INSIDE
    https://github.com/keras-team/keras/blob/v2.12.0/keras/optimizers/rmsprop.py
    https://github.com/keras-team/keras/blob/master/keras/src/optimizers/rmsprop.py
  So "rmsprop_default" (tf.keras 2.0-2.10 / legacy optimizer_v2, momentum 0) =
  epsilon OUTSIDE the sqrt, and "rmsprop_eps_inside" = the Keras 2.11+ /
  Keras 3 / ResourceApplyRMSProp placement.  (The new 2.11+ optimizers also
  dropped the legacy `decay` argument; it only exists on optimizer_v2.)
  With epsilon = 1e-7 the two differ by at most ~1.2e-7 in w here (too close
  to f32 resolution to tell apart reliably); the "*_eps0.1" cases use
  epsilon = 0.1 so that the placement is clearly observable.
"""

import math

import numpy as np

from _common import write_fixture

W0 = np.array([0.5, -1.0, 2.0, 0.0, -0.3], dtype=np.float64)
STEPS = 5


def grad_fn(t, w):
    j = np.arange(w.size, dtype=np.float64)
    return np.sin(1.0 * t + 0.5 * j) + 0.1 * w


def decayed_lr(lr, decay, iterations):
    # OptimizerV2._decayed_lr: lr / (1 + decay * iterations), iterations before increment.
    return lr / (1.0 + decay * iterations) if decay > 0.0 else lr


class Adam:
    def __init__(self, lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7, decay=0.0, eps_form="keras"):
        self.lr, self.b1, self.b2, self.eps, self.decay = lr, beta_1, beta_2, epsilon, decay
        self.eps_form = eps_form
        self.iterations = 0
        self.m = None
        self.v = None

    def config(self):
        return {"optimizer": "adam", "learning_rate": self.lr, "beta_1": self.b1, "beta_2": self.b2,
                "epsilon": self.eps, "decay": self.decay, "amsgrad": False,
                "epsilon_form": {"keras": "w -= alpha*m/(sqrt(v)+eps), alpha = lr_t*sqrt(1-b2^t)/(1-b1^t)",
                                 "alg1": "w -= lr_t*m_hat/(sqrt(v_hat)+eps) (PyTorch/Burn form)"}[self.eps_form]}

    def step(self, w, g):
        if self.m is None:
            self.m = np.zeros_like(w)
            self.v = np.zeros_like(w)
        lr_t = decayed_lr(self.lr, self.decay, self.iterations)
        t = self.iterations + 1
        b1p, b2p = self.b1 ** t, self.b2 ** t
        self.m = self.m + (g - self.m) * (1.0 - self.b1)
        self.v = self.v + (g * g - self.v) * (1.0 - self.b2)
        if self.eps_form == "keras":
            alpha = lr_t * math.sqrt(1.0 - b2p) / (1.0 - b1p)
            w = w - alpha * self.m / (np.sqrt(self.v) + self.eps)
        else:
            m_hat = self.m / (1.0 - b1p)
            v_hat = self.v / (1.0 - b2p)
            w = w - lr_t * m_hat / (np.sqrt(v_hat) + self.eps)
        self.iterations += 1
        return w, lr_t

    def slots(self):
        return {"iterations": self.iterations, "m": self.m, "v": self.v}


class SGD:
    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, decay=0.0):
        self.lr, self.momentum, self.nesterov, self.decay = lr, momentum, nesterov, decay
        self.iterations = 0
        self.velocity = None

    def config(self):
        return {"optimizer": "sgd", "learning_rate": self.lr, "momentum": self.momentum,
                "nesterov": self.nesterov, "decay": self.decay}

    def step(self, w, g):
        lr_t = decayed_lr(self.lr, self.decay, self.iterations)
        if self.momentum > 0.0:
            if self.velocity is None:
                self.velocity = np.zeros_like(w)
            self.velocity = self.velocity * self.momentum - g * lr_t
            if self.nesterov:
                w = w + self.velocity * self.momentum - g * lr_t
            else:
                w = w + self.velocity
        else:
            w = w - lr_t * g
        self.iterations += 1
        return w, lr_t

    def slots(self):
        s = {"iterations": self.iterations}
        if self.momentum > 0.0:
            s["momentum"] = self.velocity
        return s


class RMSprop:
    def __init__(self, lr=1e-3, rho=0.9, epsilon=1e-7, momentum=0.0, centered=False, decay=0.0,
                 eps_inside=False):
        assert not centered, "centered RMSprop is not covered"
        assert momentum == 0.0, "only the momentum-free path is covered"
        self.lr, self.rho, self.eps, self.momentum, self.decay = lr, rho, epsilon, momentum, decay
        self.eps_inside = eps_inside
        self.iterations = 0
        self.rms = None

    def config(self):
        return {"optimizer": "rmsprop", "learning_rate": self.lr, "rho": self.rho, "epsilon": self.eps,
                "momentum": self.momentum, "centered": False, "decay": self.decay,
                "epsilon_placement": "inside: lr*g/sqrt(rms+eps)" if self.eps_inside
                else "outside: lr*g/(sqrt(rms)+eps)"}

    def step(self, w, g):
        if self.rms is None:
            self.rms = np.zeros_like(w)
        lr_t = decayed_lr(self.lr, self.decay, self.iterations)
        self.rms = self.rho * self.rms + (1.0 - self.rho) * g * g
        if self.eps_inside:
            w = w - lr_t * g / np.sqrt(self.rms + self.eps)
        else:
            w = w - lr_t * g / (np.sqrt(self.rms) + self.eps)
        self.iterations += 1
        return w, lr_t

    def slots(self):
        return {"iterations": self.iterations, "rms": self.rms}


def run(opt, note=None):
    w = W0.copy()
    weights, grads, lrs = [], [], []
    for t in range(1, STEPS + 1):
        g = grad_fn(t, w)
        w, lr_t = opt.step(w, g)
        grads.append(g)
        weights.append(w)
        lrs.append(lr_t)
    out = {"config": opt.config(), "weights": weights, "grads": grads, "lr_t": lrs, "slots": opt.slots()}
    if note:
        out["note"] = note
    return out


def self_check():
    # Keras docstring examples (optimizer_v2 adam / sgd / rmsprop), loss = var^2/2, grad = var.
    a = Adam(lr=0.1)
    w, _ = a.step(np.array([10.0]), np.array([10.0]))
    assert abs(w[0] - 9.9) < 1e-6, w  # "The first step is -learning_rate*sign(grad)"
    s = SGD(lr=0.1, momentum=0.9)
    w1, _ = s.step(np.array([1.0]), np.array([1.0]))
    w2, _ = s.step(w1, w1)
    assert abs((1.0 - w1[0]) - 0.1) < 1e-12 and abs((w1[0] - w2[0]) - 0.18) < 1e-12
    r = RMSprop(lr=0.1)
    w, _ = r.step(np.array([10.0]), np.array([10.0]))
    assert abs(w[0] - 9.683772) < 1e-6, w  # docstring: var1.numpy() -> 9.683772


def main():
    self_check()
    cases = {
        "adam_default": run(Adam(lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7)),
        "adam_lr0.01": run(Adam(lr=1e-2, beta_1=0.9, beta_2=0.999, epsilon=1e-7)),
        "adam_alg1_eps_default": run(
            Adam(lr=1e-3, epsilon=1e-7, eps_form="alg1"),
            note="NOT Keras: PyTorch/Burn Algorithm-1 epsilon placement, for comparison with adam_default"),
        "adam_eps0.1": run(Adam(lr=1e-2, epsilon=0.1),
                           note="Keras form with a large epsilon so its placement is observable"),
        "adam_alg1_eps0.1": run(
            Adam(lr=1e-2, epsilon=0.1, eps_form="alg1"),
            note="NOT Keras: Algorithm-1 form with the same large epsilon as adam_eps0.1"),
        "sgd_plain": run(SGD(lr=0.01, momentum=0.0)),
        "sgd_momentum": run(SGD(lr=0.01, momentum=0.9, nesterov=False)),
        "sgd_nesterov_decay": run(SGD(lr=0.01, momentum=0.9, nesterov=True, decay=1e-2)),
        "rmsprop_default": run(RMSprop(lr=1e-3, rho=0.9, epsilon=1e-7),
                               note="tf.keras 2.0-2.10 optimizer_v2 / tf.keras.optimizers.legacy (momentum=0 path): epsilon outside sqrt"),
        "rmsprop_eps_inside": run(
            RMSprop(lr=1e-3, rho=0.9, epsilon=1e-7, eps_inside=True),
            note="tf.keras 2.11+ new optimizer / Keras 3 / tf.raw_ops.ApplyRMSProp placement: epsilon inside sqrt"),
        "rmsprop_eps0.1": run(RMSprop(lr=1e-3, rho=0.9, epsilon=0.1),
                              note="optimizer_v2 placement (outside) with a large epsilon"),
        "rmsprop_eps0.1_eps_inside": run(
            RMSprop(lr=1e-3, rho=0.9, epsilon=0.1, eps_inside=True),
            note="Keras 2.11+/Keras 3 placement (inside) with a large epsilon"),
    }
    payload = {
        "description": "Keras optimizer updates, 5 steps, float64; see reference/optimizers.py",
        "w0": W0,
        "steps": STEPS,
        "grad_rule": "g_t[j] = sin(1.0*t + 0.5*j) + 0.1*w_{t-1}[j], t = 1..5, w_{t-1} = weights before step t",
        "cases": cases,
    }
    write_fixture("optimizers.json", payload)
    d = np.abs(np.array(cases["rmsprop_default"]["weights"]) - np.array(cases["rmsprop_eps_inside"]["weights"])).max()
    d2 = np.abs(np.array(cases["adam_default"]["weights"]) - np.array(cases["adam_alg1_eps_default"]["weights"])).max()
    print(f"max |rmsprop_default - rmsprop_eps_inside| = {d:.3e}; "
          f"max |adam_default - adam_alg1_eps_default| = {d2:.3e}")


if __name__ == "__main__":
    main()
