"""``torch.optim.LBFGS``'s algorithm in JAX, as pure ``init``/``step`` functions; and optax's own L-BFGS.

``step`` is ``common/lbfgs.py`` (the NumPy oracle, line for line with
``torch/optim/lbfgs.py``) written with ``jax.lax`` control flow, so one
``optimizer.step(closure)`` is one compiled program::

    step = jax.jit(jax_lbfgs.step, static_argnames=("evaluate", "settings"))
    state = jax_lbfgs.init(x0, settings)
    state, first_losses = step(state, evaluate, settings)

``evaluate(x) -> (x_used, losses, grad)``: the closure may clamp and returns
the image it evaluated, ``losses`` is a nest of scalars whose last leaf is the
loss minimized (``LossParts`` ends in ``total``), ``grad`` is the gradient at
``x_used``. Everything is computed in ``x``'s dtype, as torch computes in the
parameter's; float64 needs ``jax.enable_x64(True)`` around init and step.

Why not optax's ``scale_by_lbfgs``: it differs from torch in four places. Its
first step is scaled by ``min(1, 1/||g||_2)``, torch's by ``min(1, 1/||g||_1)``;
it stores every pair (weight 0 when ``y.s == 0``), torch keeps a pair only when
``y.s > 1e-10``; it stores the parameters' difference, torch the unclamped step
``t * d`` (they differ when the closure clamps); and it has no stopping tests.
Its two-loop recursion (the private ``_precondition_by_lbfgs``) also runs over
all ``memory_size`` slots, empty ones included; here it runs over the pairs stored.

``optax_lbfgs`` below is the stock ``optax.lbfgs()`` with its zoom line search,
for comparison.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from common.lbfgs import LBFGSSettings

# torch's test for keeping an (s, y) pair: y . s > 1e-10
MIN_CURVATURE = 1e-10

# evaluate(x) -> (the x it evaluated, e.g. clamped; a nest of losses, the last one minimized; gradient at that x)
Evaluate = Callable[[jax.Array], tuple[jax.Array, Any, jax.Array]]


class LBFGSState(NamedTuple):
    """What torch keeps between ``step`` calls, as arrays; the history is a ring buffer.

    Pair ``i`` (0 = oldest) of the ``num_pairs`` stored is row ``(start + i) % history_size``.
    """

    x: jax.Array  # the image, any shape; everything else is flat
    n_iter: jax.Array  # iterations over all steps (int32)
    func_evals: jax.Array  # closure calls over all steps (int32)
    d: jax.Array  # [n] the last direction
    t: jax.Array  # the last step length
    old_dirs: jax.Array  # [history_size, n] y: gradient differences
    old_stps: jax.Array  # [history_size, n] s: steps taken, t * d
    ro: jax.Array  # [history_size] 1 / (y . s)
    num_pairs: jax.Array  # pairs stored (int32)
    start: jax.Array  # the oldest pair's row (int32)
    H_diag: jax.Array
    prev_flat_grad: jax.Array  # [n]
    prev_loss: jax.Array


def init(x: jax.Array, settings: LBFGSSettings = LBFGSSettings()) -> LBFGSState:
    """The state before the first ``step``: no history, nothing evaluated."""
    x = jnp.asarray(x)
    n, m, dtype = x.size, settings.history_size, x.dtype

    # A new array per field, never one shared: a caller may donate the state, and a buffer can be donated once.
    def zero():
        return jnp.zeros((), dtype)

    def int0():
        return jnp.zeros((), jnp.int32)

    return LBFGSState(x=x, n_iter=int0(), func_evals=int0(), d=jnp.zeros(n, dtype), t=zero(),
                      old_dirs=jnp.zeros((m, n), dtype), old_stps=jnp.zeros((m, n), dtype), ro=jnp.zeros(m, dtype),
                      num_pairs=int0(), start=int0(), H_diag=jnp.ones((), dtype), prev_flat_grad=jnp.zeros(n, dtype),
                      prev_loss=zero())


def two_loop_direction(g, old_dirs, old_stps, ro, num_pairs, start, H_diag):
    """-H g by the two-loop recursion over the ``num_pairs`` stored pairs, newest to oldest and back."""
    m = ro.shape[0]

    def newest_first(k, carry):
        q, al = carry
        i = num_pairs - 1 - k
        row = (start + i) % m
        al_i = (old_stps[row] @ q) * ro[row]
        return q - al_i * old_dirs[row], al.at[i].set(al_i)

    q, al = jax.lax.fori_loop(0, num_pairs, newest_first, (-g, jnp.zeros_like(ro)))

    def oldest_first(i, r):
        row = (start + i) % m
        be_i = (old_dirs[row] @ r) * ro[row]
        return r + (al[i] - be_i) * old_stps[row]

    return jax.lax.fori_loop(0, num_pairs, oldest_first, q * H_diag)


def last_loss(losses) -> jax.Array:
    """The loss minimized: the last leaf of the losses nest (``LossParts.total``)."""
    return jax.tree.leaves(losses)[-1]


def step(state: LBFGSState, evaluate: Evaluate, settings: LBFGSSettings = LBFGSSettings()):
    """One ``optimizer.step(closure)``: up to ``max_iter`` iterations; returns ``(state, first evaluation's losses)``.

    Jit-able with ``evaluate`` and ``settings`` static. Counts evaluations as torch does: the
    first, then one after each iteration but the last (``state.func_evals``, over all steps).
    """
    dtype, m = state.x.dtype, settings.history_size
    x, first_losses, g = evaluate(state.x)
    loss, g = last_loss(first_losses).astype(dtype), g.ravel()
    stop = jnp.max(jnp.abs(g)) <= settings.tolerance_grad

    def iterate(carry):
        s_, x, loss, g, n_iter, current_evals, _ = carry
        n_iter = n_iter + 1
        total_iter = s_.n_iter + 1
        first = total_iter == 1
        # The history: a pair (y, s = t d) is kept when y.s > 1e-10; full, the oldest is overwritten.
        # The very first iteration starts with an empty history and H_diag 1, where the recursion
        # below gives exactly -g, torch's first direction.
        y = g - s_.prev_flat_grad
        s = s_.d * s_.t
        ys = y @ s
        keep = ~first & (ys > MIN_CURVATURE)
        num_pairs = jnp.where(first, 0, s_.num_pairs)
        start = jnp.where(first, 0, s_.start)
        row = (start + num_pairs) % m
        old_dirs = s_.old_dirs.at[row].set(jnp.where(keep, y, s_.old_dirs[row]))
        old_stps = s_.old_stps.at[row].set(jnp.where(keep, s, s_.old_stps[row]))
        ro = s_.ro.at[row].set(jnp.where(keep, 1 / ys, s_.ro[row]))
        full = num_pairs == m
        start = jnp.where(keep & full, (start + 1) % m, start)
        num_pairs = jnp.where(keep & ~full, num_pairs + 1, num_pairs)
        H_diag = jnp.where(first, jnp.ones((), dtype), jnp.where(keep, ys / (y @ y), s_.H_diag))
        d = two_loop_direction(g, old_dirs, old_stps, ro, num_pairs, start, H_diag)
        prev_flat_grad, prev_loss = g, loss
        # The first step is scaled by the gradient's L1 norm (optax: its L2 norm), every later one is lr.
        t = jnp.where(first, jnp.minimum(1, 1 / jnp.sum(jnp.abs(g))) * settings.lr, jnp.asarray(settings.lr, dtype))
        gtd = g @ d
        no_descent = gtd > -settings.tolerance_change  # torch breaks here, before moving
        x = jnp.where(no_descent, x, x + t * d.reshape(x.shape))
        evaluated = ~no_descent & (n_iter != settings.max_iter)
        x, loss, g = jax.lax.cond(evaluated, lambda x: _evaluate_flat(evaluate, x, dtype),
                                  lambda x: (x, loss, g), x)
        current_evals = current_evals + evaluated
        new = s_._replace(x=x, n_iter=total_iter, func_evals=s_.func_evals + evaluated, d=d, t=t,
                          old_dirs=old_dirs, old_stps=old_stps, ro=ro, num_pairs=num_pairs, start=start,
                          H_diag=H_diag, prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        stop = (no_descent | (n_iter == settings.max_iter) | (current_evals >= settings.evals_allowed)
                | (jnp.max(jnp.abs(g)) <= settings.tolerance_grad)
                | (jnp.max(jnp.abs(d * t)) <= settings.tolerance_change)
                | (jnp.abs(loss - prev_loss) < settings.tolerance_change))  # torch: Python floats (float64)
        return new, x, loss, g, n_iter, current_evals, stop

    def running(carry):
        return ~carry[-1] & (carry[4] < settings.max_iter)

    state = state._replace(x=x, func_evals=state.func_evals + 1)
    carry = (state, x, loss, g, jnp.zeros((), jnp.int32), jnp.ones((), jnp.int32), stop)
    state = jax.lax.while_loop(running, iterate, carry)[0]
    return state, first_losses


def _evaluate_flat(evaluate: Evaluate, x, dtype):
    x, losses, g = evaluate(x)
    return x, last_loss(losses).astype(dtype), g.ravel()


# --- optax's own L-BFGS ------------------------------------------------------------------


class OptaxLBFGSRun(NamedTuple):
    x: jax.Array
    losses: jax.Array  # [num_iterations] the loss at each iteration's (clamped) start
    evaluations: jax.Array  # value_and_grad calls made, line search included (int32)
    opt_state: optax.OptState  # to go on from, in a later call


def optax_lbfgs(x0: jax.Array, value_fn: Callable[[jax.Array], jax.Array], num_iterations: int,
                clamp: tuple[float, float] | None = (0.0, 1.0),
                optimizer: optax.GradientTransformationExtraArgs | None = None,
                opt_state: optax.OptState | None = None) -> OptaxLBFGSRun:
    """``num_iterations`` of stock ``optax.lbfgs()`` (zoom line search) on ``value_fn``, clamping after each update.

    The line search evaluates ``value_fn`` at unclamped points: optax has no hook inside it, so
    the clamp can only follow the update. Jit-able with ``value_fn``, ``num_iterations``,
    ``clamp`` and ``optimizer`` static. ``opt_state``: a previous run's, to go on with its history.

    ``optax.value_and_grad_from_state`` reuses the value and gradient the line search computed
    at its accepted point; where the clamp moved that point they are stale, so the cached value
    is set to inf and the next call evaluates at the clamped image (counted).
    """
    optimizer = optimizer if optimizer is not None else optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(value_fn)

    def iteration(carry, _):
        x, opt_state, evaluations = carry
        cached = jnp.isfinite(optax.tree.get(opt_state, "value"))
        value, grad = value_and_grad(x, state=opt_state)
        updates, opt_state = optimizer.update(grad, opt_state, x, value=value, grad=grad, value_fn=value_fn)
        line_search = optax.tree.get(opt_state, "num_linesearch_steps")
        evaluations = evaluations + (~cached).astype(jnp.int32) + line_search.astype(jnp.int32)
        x_new = optax.apply_updates(x, updates)
        if clamp is not None:
            clamped = jnp.clip(x_new, *clamp)
            moved = jnp.any(clamped != x_new)
            stale = jnp.where(moved, jnp.inf, optax.tree.get(opt_state, "value"))
            opt_state = optax.tree.set(opt_state, value=stale)
            x_new = clamped
        return (x_new, opt_state, evaluations), value

    carry = (x0, optimizer.init(x0) if opt_state is None else opt_state, jnp.zeros((), jnp.int32))
    (x, opt_state, evaluations), losses = jax.lax.scan(iteration, carry, length=num_iterations)
    return OptaxLBFGSRun(x, losses, evaluations, opt_state)
