"""common/lbfgs.py is torch.optim.LBFGS's algorithm, the tutorial's clamp included."""

from __future__ import annotations

import numpy as np
import pytest

from common import lbfgs


def problem(lo: float, hi: float, n: int = 200, seed: int = 0):
    """A smooth, non-quadratic loss whose unconstrained minimum has coordinates in [lo, hi]."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n)) / np.sqrt(n)
    c = rng.uniform(lo, hi, size=n)

    def loss_and_grad(x):
        r = A @ (x - c)
        return float(r @ r + 0.1 * np.sum(x**4)), 2 * A.T @ r + 0.4 * x**3

    return loss_and_grad, rng.uniform(0, 1, size=n)


def clamped(loss_and_grad, calls: list):
    def evaluate(x):
        x = np.clip(x, 0, 1)  # the tutorial's clamp, before the evaluation
        loss, grad = loss_and_grad(x)
        calls.append((x.copy(), loss))
        return x, loss, grad

    return evaluate


def test_tutorial_loop_makes_16_steps_of_20_calls():
    assert lbfgs.tutorial_steps(300, max_iter=20) == 16


# Inside [0, 1] every step runs its 20 evaluations; pulled outside it, the clamp stalls the
# iterations and torch's stopping tests end steps early: both paths must match.
@pytest.mark.parametrize("lo, hi, calls", [(0.2, 0.8, 60), (-0.05, 1.05, 22)], ids=["interior", "clamped"])
def test_matches_torch_lbfgs_with_the_tutorials_clamp(lo, hi, calls):
    pytest.importorskip("torch", reason="the oracle is checked against torch.optim.LBFGS")
    loss_and_grad, x0 = problem(lo, hi)
    ours: list = []
    state = lbfgs.LBFGSState(x0.copy())
    evaluate = clamped(loss_and_grad, ours)
    for _ in range(3):
        lbfgs.step(state, evaluate)

    theirs = torch_lbfgs_calls(loss_and_grad, x0, num_steps=3)
    assert len(ours) == len(theirs) == calls
    # The first step's 20 evaluations: the same float64 operations, dot products summed in another
    # order, measured <= 8.2e-13 apart (max |x| difference). Later, near the minimum, lr 1 without a
    # line search amplifies that rounding about 10x every two evaluations (3e-5 by the 60th), so
    # only the first step is compared tightly; the stopping pattern (the count above) over all three.
    for (xa, la), (xb, lb) in list(zip(ours, theirs))[:20]:
        np.testing.assert_allclose(xa, xb, rtol=0, atol=1e-11)
        assert la == pytest.approx(lb, rel=1e-11)
    assert min(loss for _, loss in ours) < 0.5 * ours[0][1]  # and it does minimize


def torch_lbfgs_calls(loss_and_grad, x0: np.ndarray, num_steps: int = 1) -> list:
    """``torch.optim.LBFGS`` at its defaults, in ``x0``'s dtype, driven by the tutorial's clamping closure on a
    NumPy ``loss_and_grad``: (the image, the loss) of every closure call."""
    import torch

    calls: list = []
    x = torch.tensor(x0, requires_grad=True)
    optimizer = torch.optim.LBFGS([x])

    def closure():
        with torch.no_grad():
            x.clamp_(0, 1)
        optimizer.zero_grad()
        loss, grad = loss_and_grad(x.detach().numpy().copy())
        x.grad = torch.from_numpy(grad)
        calls.append((x.detach().numpy().copy(), float(loss)))
        return torch.tensor(loss, dtype=x.dtype)

    for _ in range(num_steps):
        optimizer.step(closure)
    return calls
