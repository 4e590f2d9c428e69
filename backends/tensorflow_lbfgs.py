"""``torch.optim.LBFGS``'s algorithm in TensorFlow ops, over one ``tf.Variable`` (the image).

TensorFlow's core has no L-BFGS (common/lbfgs.py says why optax's is not torch's either). This
is common/lbfgs.py, the NumPy oracle, line for line, written so that ``step`` runs inside one
``tf.function``: its loops and tests are autograph ``while``/``if`` on tensors, and everything
torch keeps between steps (n_iter, d, t, the history, H_diag, the previous gradient and loss,
the evaluation count) lives in ``tf.Variable``s made here, in ``__init__``, never while tracing.

The history is a ring buffer of ``history_size`` rows: pair ``i`` (oldest first) sits in row
``(oldest + i) % history_size``, so the two-loop recursion visits the pairs in torch's order.
Everything is computed in the variable's dtype, as torch does in the parameter's, except the
loss, which torch turns into a Python float (``float(closure())``): here float64.

Usage, with the tutorial's clamp inside the closure::

    optimizer = LBFGS(image)
    def evaluate(X):
        X = tf.clip_by_value(X, 0, 1)
        with tf.GradientTape() as tape:
            tape.watch(X)
            losses = loss_parts(X)  # a nest of scalars whose last one is minimized
        return X, losses, tape.gradient(losses[-1], X)
    step = tf.function(lambda: optimizer.step(evaluate))  # traced once, for the whole run

``step`` is a ``tf.function`` of its own as well, so it also runs (compiled) when called eagerly,
and under ``jit_compile=True`` (measured on the clamped problem: 5.1e-11 from the oracle, XLA's
fusions rounding differently; not in the tests).
"""

from __future__ import annotations

import os
import platform
from typing import Any, Callable

# The same defaults as backends/tensorflow_backend.py, before TensorFlow's first import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import tensorflow as tf  # noqa: E402

from common.lbfgs import LBFGSSettings  # noqa: E402

# evaluate(X) -> (the X it evaluated, e.g. clamped; a nest of losses, the last minimized; gradient there)
Evaluate = Callable[[tf.Tensor], tuple[tf.Tensor, Any, tf.Tensor]]


def _dot(a, b):
    # Elementwise then summed, not tf.tensordot: a matmul could use TF32 on a GPU.
    return tf.reduce_sum(a * b)


class LBFGS:
    """torch.optim.LBFGS without line search, for one variable; ``step`` is one ``optimizer.step(closure)``."""

    def __init__(self, variable: tf.Variable, settings: LBFGSSettings = LBFGSSettings()):
        if not variable.shape.is_fully_defined():
            raise ValueError(f"L-BFGS needs a variable of known shape, not {variable.shape}")
        self.variable = variable
        self.settings = settings
        self.dtype = variable.dtype
        n, m = variable.shape.num_elements(), settings.history_size

        def state(value, dtype=self.dtype, shape=()):
            return tf.Variable(tf.fill(shape, tf.constant(value, dtype)), trainable=False)

        self.n_iter = state(0, tf.int64)  # iterations over all steps; the history restarts at 1
        self.evaluations = state(0, tf.int64)  # torch's func_evals: every closure call so far
        self.d = state(0, shape=[n])
        self.t = state(0)
        self.H_diag = state(1)
        self.prev_flat_grad = state(0, shape=[n])
        self.prev_loss = state(0, tf.float64)
        self.old_dirs = state(0, shape=[m, n])  # y: gradient differences
        self.old_stps = state(0, shape=[m, n])  # s: steps taken, t * d (unclamped)
        self.ro = state(0, shape=[m])  # 1 / (y . s)
        self.oldest = state(0, tf.int64)  # the ring buffer's row of the oldest pair
        self.num_pairs = state(0, tf.int64)
        # The loops below are autograph's whatever the caller wraps step in: an outer tf.function
        # converts the code it calls only if it can read its source (two lambdas on one line, or
        # autograph=False, and it cannot). Called from a tf.function this one is traced into it.
        self._step = tf.function(self._step_body)

    def _evaluate(self, evaluate: Evaluate):
        """One closure call: the variable becomes the image evaluated (the clamp's), as in torch."""
        x_used, losses, grad = evaluate(tf.convert_to_tensor(self.variable))
        self.variable.assign(tf.reshape(tf.cast(x_used, self.dtype), self.variable.shape))
        self.evaluations.assign_add(1)
        loss = tf.cast(tf.nest.flatten(losses)[-1], tf.float64)
        return losses, loss, tf.reshape(tf.cast(grad, self.dtype), [-1])

    def step(self, evaluate: Evaluate):
        """Up to ``max_iter`` iterations; returns the first evaluation's losses (torch's orig_loss)."""
        return self._step(evaluate)

    def _step_body(self, evaluate: Evaluate):
        """common.lbfgs.step, line for line, with torch's state in this object's variables."""
        settings = self.settings
        orig_losses, loss, g = self._evaluate(evaluate)
        current_evals = tf.constant(1, tf.int64)
        if tf.reduce_max(tf.abs(g)) > settings.tolerance_grad:  # else torch returns orig_loss at once
            n_iter = tf.constant(0, tf.int64)
            while n_iter < settings.max_iter:
                n_iter += 1
                self.n_iter.assign_add(1)
                if self.n_iter == 1:
                    self.d.assign(-g)
                    self.oldest.assign(0)
                    self.num_pairs.assign(0)
                    self.H_diag.assign(tf.ones([], self.dtype))
                else:
                    y = g - self.prev_flat_grad
                    s = self.d * self.t
                    ys = _dot(y, s)
                    if ys > 1e-10:
                        self._push(y, s, ys)
                        self.H_diag.assign(ys / _dot(y, y))
                    self.d.assign(self._two_loop_direction(g))
                self.prev_flat_grad.assign(g)
                self.prev_loss.assign(loss)
                # The first step is scaled by the gradient's L1 norm, every later one is lr.
                if self.n_iter == 1:
                    self.t.assign(tf.minimum(tf.ones([], self.dtype), 1 / tf.reduce_sum(tf.abs(g))) * settings.lr)
                else:
                    self.t.assign(tf.constant(settings.lr, self.dtype))
                gtd = _dot(g, self.d)
                if gtd > -settings.tolerance_change:
                    break
                ls_func_evals = tf.constant(0, tf.int64)
                self.variable.assign_add(tf.reshape(self.t * self.d, self.variable.shape))
                if n_iter != settings.max_iter:
                    loss, g = self._evaluate(evaluate)[1:]
                    ls_func_evals = tf.constant(1, tf.int64)
                opt_cond = tf.reduce_max(tf.abs(g)) <= settings.tolerance_grad
                current_evals += ls_func_evals
                if n_iter == settings.max_iter or current_evals >= settings.evals_allowed or opt_cond:
                    break
                if tf.reduce_max(tf.abs(self.d * self.t)) <= settings.tolerance_change:
                    break
                if tf.abs(loss - self.prev_loss) < settings.tolerance_change:
                    break
        return orig_losses

    def _push(self, y, s, ys):
        """Keep the pair (y, s), dropping the oldest when the history is full."""
        m = self.settings.history_size
        row = (self.oldest + self.num_pairs) % m
        self.old_dirs.scatter_nd_update([[row]], [y])
        self.old_stps.scatter_nd_update([[row]], [s])
        self.ro.scatter_nd_update([[row]], [1 / ys])
        if self.num_pairs == m:
            self.oldest.assign((self.oldest + 1) % m)
        else:
            self.num_pairs.assign_add(1)

    def _two_loop_direction(self, g):
        """-H g by the two-loop recursion over the stored pairs, oldest first (common.lbfgs.two_loop_direction)."""
        m = self.settings.history_size
        oldest, num_pairs, H_diag = self.oldest.read_value(), self.num_pairs.read_value(), self.H_diag.read_value()
        al = tf.TensorArray(self.dtype, size=m)
        q = -g
        i = num_pairs - 1  # while, not for over tf.range: XLA needs a range's limit at compile time
        while i >= 0:
            row = (oldest + i) % m
            al_i = _dot(tf.gather(self.old_stps, row), q) * tf.gather(self.ro, row)
            al = al.write(tf.cast(i, tf.int32), al_i)
            q = q - al_i * tf.gather(self.old_dirs, row)
            i -= 1
        r = q * H_diag
        i = tf.zeros_like(num_pairs)
        while i < num_pairs:
            row = (oldest + i) % m
            be_i = _dot(tf.gather(self.old_dirs, row), r) * tf.gather(self.ro, row)
            r = r + (al.read(tf.cast(i, tf.int32)) - be_i) * tf.gather(self.old_stps, row)
            i += 1
        return r
