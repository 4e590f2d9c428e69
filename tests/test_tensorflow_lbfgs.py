"""backends/tensorflow_lbfgs.py is common/lbfgs.py (torch.optim.LBFGS) in TensorFlow ops.

Every run goes through the caller's pattern: ``tf.function(lambda: optimizer.step(evaluate))``,
traced once, with ``evaluate`` clamping the image (the tutorial's closure) and taking the gradient
with a GradientTape. The problems are tests/test_lbfgs_reference.py's, where the oracle is checked
against torch.optim.LBFGS.

TensorFlow is imported by the fixture, not at collection: once TensorFlow 2.21 is loaded, importing
triton (which torch.optim's first optimizer does, through torch._dynamo) segfaults, so a module-level
import here would crash test_lbfgs_reference.py in the same session. For the same reason
torch.optim.LBFGS runs in a subprocess below.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from common import lbfgs
from test_lbfgs_reference import clamped, problem

N = 200
PROBLEMS = {"interior": (0.2, 0.8, 60), "clamped": (-0.05, 1.05, 22)}  # lo, hi, evaluations in 3 steps


@pytest.fixture(scope="module")
def LBFGS():
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("TensorFlow is not installed: pip install -e '.[tensorflow]'")
    from backends import tensorflow_lbfgs  # its environment defaults first, then TensorFlow

    return tensorflow_lbfgs.LBFGS


def draws(lo: float, hi: float, seed: int = 0):
    """test_lbfgs_reference.problem's A and c (the same draws, in the same order)."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(N, N)) / np.sqrt(N)
    return A, rng.uniform(lo, hi, size=N)


def tf_loss(lo: float, hi: float, dtype):
    """test_lbfgs_reference.problem's loss as TensorFlow ops, for a GradientTape."""
    import tensorflow as tf

    A, c = (tf.constant(a, dtype) for a in draws(lo, hi))

    def loss(X):
        r = tf.linalg.matvec(A, tf.reshape(X, [-1]) - c)
        return tf.reduce_sum(r * r) + 0.1 * tf.reduce_sum(X**4)

    return loss


class Recorder:
    """Every evaluation's image and loss, written from inside the tf.function."""

    def __init__(self, dtype, capacity: int = 100):
        import tensorflow as tf

        self.count = tf.Variable(0, dtype=tf.int64)
        self.xs = tf.Variable(tf.zeros([capacity, N], dtype))
        self.losses = tf.Variable(tf.zeros([capacity], tf.float64))

    def __call__(self, X, loss):
        import tensorflow as tf

        self.xs.scatter_nd_update([[self.count]], [tf.reshape(X, [-1])])
        self.losses.scatter_nd_update([[self.count]], [tf.cast(loss, tf.float64)])
        self.count.assign_add(1)

    def calls(self) -> list:
        count = int(self.count.numpy())
        return list(zip(self.xs.numpy()[:count], self.losses.numpy()[:count]))


def tape_evaluate(loss, record: Recorder):
    """The caller's closure: clamp, then the loss parts and the gradient at the clamped image."""
    import tensorflow as tf

    def evaluate(X):
        X = tf.clip_by_value(X, 0, 1)
        with tf.GradientTape() as tape:
            tape.watch(X)
            total = loss(X)
        record(X, total)
        return X, (2 * total, total), tape.gradient(total, X)  # a nest; the last one is minimized

    return evaluate


def run_tf(LBFGS, lo, hi, dtype, settings=lbfgs.LBFGSSettings(), steps=3, shape=(N,)):
    """``steps`` calls of one traced step: the evaluations, the optimizer, each step's result, the traces."""
    import tensorflow as tf

    record = Recorder(dtype)
    optimizer = LBFGS(tf.Variable(tf.constant(problem(lo, hi)[1].reshape(shape), dtype)), settings)
    step = tf.function(lambda: optimizer.step(tape_evaluate(tf_loss(lo, hi, dtype), record)))
    returned = [float(step()[-1]) for _ in range(steps)]
    return record.calls(), optimizer, returned, step.experimental_get_tracing_count()


def run_oracle(lo, hi, settings=lbfgs.LBFGSSettings(), steps=3):
    """The oracle's evaluations, its state, and each step's result with the evaluation it came from."""
    loss_and_grad, x0 = problem(lo, hi)
    calls: list = []
    state = lbfgs.LBFGSState(x0.copy())
    returned, starts = [], []
    for _ in range(steps):
        starts.append(len(calls))
        returned.append(lbfgs.step(state, clamped(loss_and_grad, calls), settings))
    return calls, state, returned, starts


@pytest.mark.parametrize("name", PROBLEMS)
def test_float64_matches_the_oracle(LBFGS, name):
    import tensorflow as tf

    lo, hi, expected_calls = PROBLEMS[name]
    ours, state, returned, starts = run_oracle(lo, hi)
    theirs, optimizer, their_returned, traces = run_tf(LBFGS, lo, hi, tf.float64)

    assert traces == 1  # one trace for the run, not one per step or iteration
    # The stopping pattern over all three steps: how many evaluations, iterations, and where steps began.
    assert len(theirs) == len(ours) == expected_calls
    assert int(optimizer.evaluations.numpy()) == state.func_evals == expected_calls
    assert int(optimizer.n_iter.numpy()) == state.n_iter
    assert their_returned == [theirs[i][1] for i in starts]  # each step returns its first evaluation's losses
    # The first step's 20 evaluations. Measured (TF 2.21, oneDNN on, 2 CPU cores): max |x| difference
    # 1.0e-14 interior, 1.0e-11 clamped, all of it at the 15th evaluation, where the clamped problem
    # stalls (the 14th: 1.9e-13); loss relative difference <= 6.7e-13. torch vs the oracle there:
    # 8.2e-13 with the oracle's NumPy gradient; the gradient here is TensorFlow's, through a
    # GradientTape (with the NumPy gradient through tf.numpy_function the same run measured 2.7e-12).
    for (xa, la), (xb, lb) in list(zip(ours, theirs))[:20]:
        np.testing.assert_allclose(xb, xa, rtol=0, atol=5e-11)
        assert lb == pytest.approx(la, rel=5e-12)
    assert min(loss for _, loss in theirs) < 0.5 * theirs[0][1]  # and it does minimize


def test_history_wraps_around_as_the_oracle(LBFGS):
    import tensorflow as tf

    lo, hi, _ = PROBLEMS["interior"]
    settings = lbfgs.LBFGSSettings(history_size=3)
    ours, state, _, _ = run_oracle(lo, hi, settings)
    theirs, optimizer, _, _ = run_tf(LBFGS, lo, hi, tf.float64, settings)

    assert len(theirs) == len(ours) == 60  # 59 pairs kept through a ring of 3
    assert int(optimizer.num_pairs.numpy()) == len(state.old_dirs) == 3
    # Measured max |x| difference: 1.0e-14 over the first 20 evaluations (the ring wraps from the
    # 5th on), then lr 1 amplifies rounding as in test_lbfgs_reference.py: 3.6e-9 by the 60th.
    for i, ((xa, _), (xb, _)) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(xb, xa, rtol=0, atol=1e-12 if i < 20 else 1e-7)


def test_an_image_shaped_variable_steps_as_its_flat_vector(LBFGS):
    import tensorflow as tf

    lo, hi, _ = PROBLEMS["clamped"]
    flat, *_ = run_tf(LBFGS, lo, hi, tf.float64)
    image, optimizer, *_ = run_tf(LBFGS, lo, hi, tf.float64, shape=(1, 10, 20, 1))
    assert optimizer.variable.shape == (1, 10, 20, 1)
    for (xa, la), (xb, lb) in zip(flat, image, strict=True):
        np.testing.assert_array_equal(xb, xa)
        assert lb == la


def test_step_outside_a_tf_function_is_the_same(LBFGS):
    """The loops are autograph's even when the caller's code is not: eagerly, or from a lambda autograph cannot read."""
    import tensorflow as tf

    lo, hi, _ = PROBLEMS["clamped"]
    traced, *_ = run_tf(LBFGS, lo, hi, tf.float64)
    record = Recorder(tf.float64)
    optimizer = LBFGS(tf.Variable(problem(lo, hi)[1]))
    evaluate = tape_evaluate(tf_loss(lo, hi, tf.float64), record)
    eager, twice = (lambda: optimizer.step(evaluate)), tf.function(lambda: optimizer.step(evaluate))
    eager(), twice(), eager()
    for (xa, la), (xb, lb) in zip(traced, record.calls(), strict=True):
        np.testing.assert_array_equal(xb, xa)
        assert lb == la


# torch.optim.LBFGS in float32 with the tutorial's clamp, in its own process (see the module's docstring).
TORCH_LBFGS = """
import sys
import numpy as np
import torch

problem = np.load(sys.argv[1])
A, c = (torch.tensor(problem[k], dtype=torch.float32) for k in ("A", "c"))
x = torch.tensor(problem["x0"], dtype=torch.float32, requires_grad=True)
optimizer = torch.optim.LBFGS([x])
xs, losses = [], []

def closure():
    with torch.no_grad():
        x.clamp_(0, 1)
    optimizer.zero_grad()
    r = A @ (x - c)
    loss = r @ r + 0.1 * torch.sum(x**4)
    loss.backward()
    xs.append(x.detach().numpy().copy())
    losses.append(float(loss))
    return loss

optimizer.step(closure)
np.savez(sys.argv[2], xs=np.array(xs), losses=np.array(losses))
"""


def test_float32_matches_torch_lbfgs(LBFGS, tmp_path):
    import tensorflow as tf

    if importlib.util.find_spec("torch") is None:
        pytest.skip("compared with torch.optim.LBFGS, and torch is not installed")
    lo, hi, _ = PROBLEMS["interior"]
    A, c = draws(lo, hi)
    np.savez(tmp_path / "problem.npz", A=A, c=c, x0=problem(lo, hi)[1])
    subprocess.run([sys.executable, "-c", TORCH_LBFGS, tmp_path / "problem.npz", tmp_path / "torch.npz"], check=True)
    torch_run = np.load(tmp_path / "torch.npz")
    theirs, _, _, _ = run_tf(LBFGS, lo, hi, tf.float32, steps=1)

    assert len(theirs) == len(torch_run["xs"]) == 20
    # The first step's 20 evaluations. Measured max |x| difference 9.1e-6 (at the 3rd, the first
    # two-loop step; <= 3.6e-6 from the 5th), loss relative difference <= 1.1e-6. That is float32
    # itself: each run is as far from the float64 oracle (TensorFlow 1.0e-5, torch 1.2e-5, both at
    # the 3rd) as from the other.
    for i, (xb, lb) in enumerate(theirs):
        np.testing.assert_allclose(xb, torch_run["xs"][i], rtol=0, atol=5e-5)
        assert lb == pytest.approx(torch_run["losses"][i], rel=1e-5)
