"""backends/jax_lbfgs.py is common/lbfgs.py (torch.optim.LBFGS, the tutorial's clamp included) in JAX."""

from __future__ import annotations

import numpy as np
import pytest

from common import lbfgs
from common.interface import LossParts
from test_lbfgs_reference import clamped, problem, torch_lbfgs_calls

jax = pytest.importorskip("jax", reason="backends/jax_lbfgs.py needs JAX (pip install jax optax)")
pytest.importorskip("optax", reason="backends/jax_lbfgs.py needs optax (pip install optax)")

import jax.numpy as jnp  # noqa: E402
from jax.experimental import io_callback  # noqa: E402

from backends import jax_lbfgs  # noqa: E402

# lo, hi of problem(): inside [0, 1] every step runs 20 evaluations; outside, the clamp stalls the
# iterations and torch's stopping tests end steps early (evaluations in 3 steps)
PROBLEMS = {"interior": (0.2, 0.8, 60), "clamped": (-0.05, 1.05, 22)}

jit_step = jax.jit(jax_lbfgs.step, static_argnames=("evaluate", "settings"))


def numpy_evaluate(loss_and_grad, calls: list, dtype):
    """The tutorial's closure for ``jax_lbfgs.step``: clamp in JAX, then a NumPy loss (the oracle's own).

    Both optimizers then see the same losses and gradients at the same points, so only their own
    arithmetic differs. The callback runs on an XLA thread where JAX's thread-local x64 mode is
    off, and a float64 argument arrived there truncated to float32 (3e-8 off, measured), so the
    values cross as their uint32 bits.
    """
    words = np.dtype(dtype).itemsize // 4

    def bits_shape(shape):
        return tuple(shape) + ((words,) if words > 1 else ())

    def callback(x_bits):
        x = np.ascontiguousarray(x_bits).view(dtype).reshape(x_bits.shape[: x_bits.ndim - (words > 1)])
        loss, grad = loss_and_grad(x)
        calls.append((x.copy(), float(loss)))
        return (np.asarray([loss], dtype).view(np.uint32).reshape(bits_shape(())),
                np.asarray(grad, dtype).view(np.uint32).reshape(bits_shape(x.shape)))

    def evaluate(x):
        x = jnp.clip(x, 0, 1)  # the tutorial's clamp, before the evaluation
        result = tuple(jax.ShapeDtypeStruct(bits_shape(shape), jnp.uint32) for shape in ((), x.shape))
        loss, grad = io_callback(callback, result, jax.lax.bitcast_convert_type(x, jnp.uint32), ordered=True)
        return x, jax.lax.bitcast_convert_type(loss, x.dtype), jax.lax.bitcast_convert_type(grad, x.dtype)

    return evaluate


def draws(lo, hi, n: int = 200, seed: int = 0):
    """problem(lo, hi)'s A, c and x0, for a loss written in another framework or dtype."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n)) / np.sqrt(n)
    c = rng.uniform(lo, hi, size=n)
    return A, c, rng.uniform(0, 1, size=n)


def run_oracle(lo, hi, settings, num_steps):
    loss_and_grad, x0 = problem(lo, hi)
    calls: list = []
    state = lbfgs.LBFGSState(x0.copy())
    evaluate = clamped(loss_and_grad, calls)
    first_losses, evals = [], []
    for _ in range(num_steps):
        first_losses.append(lbfgs.step(state, evaluate, settings))
        evals.append(state.func_evals)
    return calls, first_losses, evals, state


def run_jax(evaluate, x0, settings, num_steps):
    state = jax_lbfgs.init(jnp.asarray(x0), settings)
    first_losses, evals = [], []
    for _ in range(num_steps):
        state, losses = jit_step(state, evaluate, settings)
        first_losses.append(float(jax_lbfgs.last_loss(losses)))
        evals.append(int(state.func_evals))
    jax.effects_barrier()
    return first_losses, evals, state


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_float64_matches_the_oracle(name):
    lo, hi, num_calls = PROBLEMS[name]
    settings = lbfgs.LBFGSSettings()
    theirs, their_firsts, their_evals, their_state = run_oracle(lo, hi, settings, 3)
    loss_and_grad, x0 = problem(lo, hi)
    ours: list = []
    with jax.enable_x64(True):
        our_firsts, our_evals, state = run_jax(numpy_evaluate(loss_and_grad, ours, np.float64), x0, settings, 3)

    # The stopping pattern over all three steps: evaluations per step, iterations.
    assert len(ours) == len(theirs) == num_calls
    assert our_evals == their_evals
    assert int(state.n_iter) == their_state.n_iter
    # The first step's 20 evaluations: measured <= 1.7e-12 apart (max |x| difference, at the
    # clamped problem's 15th evaluation, where the clamp stalls; <= 4.2e-15 inside [0, 1]) and
    # losses <= 8.3e-14 (relative); torch against the oracle measured 8.2e-13. Later steps
    # amplify rounding (2.8e-5 by the 60th evaluation, as torch against the oracle).
    for (xa, la), (xb, lb) in list(zip(ours, theirs))[:20]:
        np.testing.assert_allclose(xa, xb, rtol=0, atol=1e-11)
        assert la == pytest.approx(lb, rel=1e-12)
    assert our_firsts[0] == their_firsts[0]  # step returns its first evaluation's losses
    assert our_firsts == pytest.approx(their_firsts, rel=1e-6)


def test_history_wraps_like_the_oracle():
    """history_size 3: the ring buffer wraps from the 5th iteration on, in a jnp loss with a LossParts nest."""
    lo, hi, num_calls = PROBLEMS["interior"]
    settings = lbfgs.LBFGSSettings(history_size=3)
    theirs, _, their_evals, _ = run_oracle(lo, hi, settings, 3)
    A, c, x0 = draws(lo, hi)
    ours: list = []
    with jax.enable_x64(True):
        A, c = jnp.asarray(A), jnp.asarray(c)

        def losses(x):
            r = A @ (x - c)
            quartic = 0.1 * jnp.sum(x**4)
            return LossParts(content=r @ r, style=quartic, tv=jnp.zeros(()), total=r @ r + quartic)

        def evaluate(x):
            x = jnp.clip(x, 0, 1)
            (_, parts), grad = jax.value_and_grad(lambda x: (losses(x).total, losses(x)), has_aux=True)(x)
            bits = [jax.lax.bitcast_convert_type(v, jnp.uint32) for v in (x, parts.total)]  # see numpy_evaluate
            jax.debug.callback(lambda xb, lb: ours.append((np.asarray(xb).view(np.float64).reshape(-1),
                                                           float(np.asarray(lb).view(np.float64)[0]))), *bits,
                               ordered=True)
            return x, parts, grad

        _, our_evals, state = run_jax(evaluate, x0, settings, 3)

    assert len(ours) == len(theirs) == num_calls
    assert our_evals == their_evals
    assert int(state.num_pairs) == 3
    # A jnp loss against the oracle's NumPy one, so the losses themselves round differently: the
    # first 20 evaluations measured <= 1.6e-14 apart, all 60 <= 3.2e-9 (the 58th).
    for i, ((xa, la), (xb, lb)) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(xa, xb, rtol=0, atol=1e-12 if i < 20 else 1e-7)
        assert la == pytest.approx(lb, rel=1e-12 if i < 20 else 1e-6)


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_float32_matches_torch(name):
    pytest.importorskip("torch", reason="compared with torch.optim.LBFGS")
    lo, hi, _ = PROBLEMS[name]
    A, c, x0 = (v.astype(np.float32) for v in draws(lo, hi))

    def loss_and_grad(x):
        r = A @ (x - c)
        return np.float32(r @ r + np.float32(0.1) * np.sum(x**4)), 2 * A.T @ r + np.float32(0.4) * x**3

    theirs = torch_lbfgs_calls(loss_and_grad, x0)
    ours: list = []
    _, our_evals, state = run_jax(numpy_evaluate(loss_and_grad, ours, np.float32), x0, lbfgs.LBFGSSettings(), 1)

    assert state.x.dtype == jnp.float32 and state.old_dirs.dtype == jnp.float32
    assert len(ours) == len(theirs) == our_evals[0]
    # float32 dot products summed in other orders: the first 10 evaluations measured <= 3e-6
    # apart (max |x|; the 3rd, where the first pair's y = g1 - g0 cancels), losses <= 7e-7
    # (relative). Both are as far from the float64 oracle (<= 3e-6): rounding, not a difference.
    for (xa, la), (xb, lb) in list(zip(ours, theirs))[:10]:
        np.testing.assert_allclose(xa, xb, rtol=0, atol=3e-5)
        assert la == pytest.approx(lb, rel=1e-5)


def test_optax_lbfgs_decreases_the_clamped_loss():
    """Stock optax.lbfgs() (zoom line search) with the clamp after each update, float32."""
    lo, hi, _ = PROBLEMS["clamped"]
    A, c, x0 = (jnp.asarray(v, jnp.float32) for v in draws(lo, hi))

    calls = [0]

    def value_fn(x):
        jax.debug.callback(lambda: calls.__setitem__(0, calls[0] + 1))
        r = A @ (x - c)
        return r @ r + 0.1 * jnp.sum(x**4)

    num_iterations = 20
    run = jax.jit(jax_lbfgs.optax_lbfgs, static_argnums=(1, 2))(x0, value_fn, num_iterations)
    jax.effects_barrier()
    num_calls = calls[0]

    assert run.x.dtype == jnp.float32
    assert float(jnp.min(run.x)) >= 0 and float(jnp.max(run.x)) <= 1
    assert run.losses[0] == pytest.approx(float(value_fn(x0)), rel=1e-6)
    assert float(value_fn(run.x)) < 0.5 * float(run.losses[0])
    # The line search's count plus the re-evaluations after a clamp: measured 40 in 20 iterations.
    assert int(run.evaluations) == num_calls >= num_iterations
