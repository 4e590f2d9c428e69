"""``torch.optim.LBFGS``'s algorithm in NumPy float64: the oracle for every backend's L-BFGS.

The PyTorch tutorial ("Neural Transfer Using PyTorch") optimizes the image with
``torch.optim.LBFGS`` at its defaults: no line search, a fixed step ``lr``
after the first, up to 100 (s, y) pairs. TensorFlow's core has no L-BFGS, and
optax's ``scale_by_lbfgs`` differs in four places (the first step's norm, the
test for keeping a pair, the stored step vector, no stopping tests), so each
backend writes this algorithm in its own framework and is checked against this
file, line for line with ``torch/optim/lbfgs.py``.

The tutorial's closure clamps the image to [0, 1] *before* evaluating it. So the
gradient is taken at the clamped image, while the step stored in the history is
the unclamped ``t * d``: ``evaluate`` returns the image it actually used, and the
optimizer carries on from that image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from common.recipes import LBFGSSettings  # noqa: F401  (the settings are recipe data)

# evaluate(x) -> (the x it evaluated, e.g. clamped; loss; gradient at that x)
Evaluate = Callable[[np.ndarray], tuple[np.ndarray, float, np.ndarray]]


@dataclass
class LBFGSState:
    """What torch keeps between ``step`` calls (its ``state`` of the first parameter)."""

    x: np.ndarray
    n_iter: int = 0
    func_evals: int = 0
    d: np.ndarray | None = None
    t: float | None = None
    old_dirs: list = field(default_factory=list)  # y: gradient differences
    old_stps: list = field(default_factory=list)  # s: steps taken, t * d
    ro: list = field(default_factory=list)  # 1 / (y . s)
    H_diag: float = 1.0
    prev_flat_grad: np.ndarray | None = None
    prev_loss: float | None = None


def two_loop_direction(g: np.ndarray, old_dirs, old_stps, ro, H_diag: float) -> np.ndarray:
    """-H g by the two-loop recursion over the stored pairs, oldest first in the lists."""
    al = [0.0] * len(old_dirs)
    q = -g
    for i in range(len(old_dirs) - 1, -1, -1):
        al[i] = float(old_stps[i] @ q) * ro[i]
        q = q - al[i] * old_dirs[i]
    r = q * H_diag
    for i in range(len(old_dirs)):
        be_i = float(old_dirs[i] @ r) * ro[i]
        r = r + (al[i] - be_i) * old_stps[i]
    return r


def step(state: LBFGSState, evaluate: Evaluate, settings: LBFGSSettings = LBFGSSettings()) -> float:
    """One ``optimizer.step(closure)``: up to ``max_iter`` iterations; returns the first evaluation's loss.

    Counts like torch: the first evaluation, then one after each iteration but the last.
    """
    state.x, loss, g = evaluate(state.x)
    orig_loss = loss
    current_evals = 1
    state.func_evals += 1
    if np.abs(g).max() <= settings.tolerance_grad:
        return orig_loss
    n_iter = 0
    while n_iter < settings.max_iter:
        n_iter += 1
        state.n_iter += 1
        if state.n_iter == 1:
            state.d = -g
            state.old_dirs, state.old_stps, state.ro, state.H_diag = [], [], [], 1.0
        else:
            y = g - state.prev_flat_grad
            s = state.d * state.t
            ys = float(y @ s)
            if ys > 1e-10:
                if len(state.old_dirs) == settings.history_size:
                    state.old_dirs.pop(0)
                    state.old_stps.pop(0)
                    state.ro.pop(0)
                state.old_dirs.append(y)
                state.old_stps.append(s)
                state.ro.append(1.0 / ys)
                state.H_diag = ys / float(y @ y)
            state.d = two_loop_direction(g, state.old_dirs, state.old_stps, state.ro, state.H_diag)
        state.prev_flat_grad = g.copy()
        state.prev_loss = loss
        # The first step is scaled by the gradient's L1 norm, every later one is lr.
        state.t = min(1.0, 1.0 / float(np.abs(g).sum())) * settings.lr if state.n_iter == 1 else settings.lr
        gtd = float(g @ state.d)
        if gtd > -settings.tolerance_change:
            break
        ls_func_evals = 0
        state.x = state.x + state.t * state.d
        if n_iter != settings.max_iter:
            state.x, loss, g = evaluate(state.x)
            ls_func_evals = 1
        opt_cond = np.abs(g).max() <= settings.tolerance_grad
        current_evals += ls_func_evals
        state.func_evals += ls_func_evals
        if n_iter == settings.max_iter or current_evals >= settings.evals_allowed or opt_cond:
            break
        if np.abs(state.d * state.t).max() <= settings.tolerance_change:
            break
        if abs(loss - state.prev_loss) < settings.tolerance_change:
            break
    return orig_loss


def tutorial_steps(num_closure_calls: int, max_iter: int) -> int:
    """How many ``.step()`` calls the tutorial's loop makes when no step stops early: it checks its
    closure counter only between steps (``while run[0] <= num_steps``), so 300 with max_iter 20 is
    16 steps, 320 calls."""
    calls = steps = 0
    while calls <= num_closure_calls:
        calls += max_iter
        steps += 1
    return steps
