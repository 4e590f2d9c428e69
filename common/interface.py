"""What every backend provides: d2l 13.12's functions, as one typing.Protocol.

Tensors are the framework's own (``Tensor`` below is any of them). Layout is
the framework's choice inside the backend (NCHW for PyTorch, NHWC for
TensorFlow and JAX); ``from_numpy`` and ``to_numpy`` speak NCHW, so callers
never see the difference. d2l works on a batch of one image and so do we.

The training step, for frameworks with mutable and immutable state alike::

    state = backend.init_state(X, contents_Y, styles_Y, config)
    for epoch in range(config.num_epochs):
        state, losses = backend.train_step(state)   # losses: device scalars
    X = backend.current_image(state)

``train`` runs that loop with a progress callback and returns the loss history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Protocol, Sequence, runtime_checkable

import numpy as np

from common.config import DEFAULT_TAPS, LossWeights, StyleTransferConfig
from common.weights import WeightSet

Tensor = Any
State = Any
PRECISIONS: tuple[str, ...] = ("float32", "tf32", "bf16", "float64")


def working_dtype(precision: str) -> type[np.floating]:
    """The dtype of the image, the features, the losses and the optimizer state (bf16 computes
    only inside the network; float64 is float64 throughout)."""
    return np.float64 if precision == "float64" else np.float32


class LossParts(NamedTuple):
    """One step's losses, each already multiplied by its weight (as d2l prints them)."""

    content: Any
    style: Any
    tv: Any
    total: Any


@dataclass(frozen=True)
class StepReport:
    """What ``train`` tells its callback after a reported epoch."""

    epoch: int  # 1-based: the number of finished steps
    num_epochs: int
    lr: float  # the learning rate the last step used
    losses: LossParts  # floats
    history: Sequence[LossParts]  # every finished step so far
    evaluations: int = 0  # loss evaluations so far: the steps, or L-BFGS' closure calls


Callback = Callable[[StepReport], None]


@runtime_checkable
class Backend(Protocol):
    name: str  # "torch", "tensorflow" or "jax"
    device: str  # e.g. "cpu", "cuda:0" (torch), "/GPU:0" (TensorFlow), "gpu:0" (JAX)
    precision: str  # one of PRECISIONS
    weights: WeightSet  # what a run does (taps, loss weights, ...) is its StyleTransferConfig's, not the backend's

    # Tensors in and out (NCHW at this boundary).
    def from_numpy(self, x: np.ndarray) -> Tensor: ...
    def to_numpy(self, t: Tensor) -> np.ndarray: ...
    def scalar(self, t: Tensor) -> float: ...
    def synchronize(self) -> None:
        """Wait for queued device work, so that a timer sees it finished."""
    def device_name(self) -> str | None: ...
    def peak_device_bytes(self) -> int | None: ...
    def cuda_version(self) -> str | None:
        """The CUDA version the framework runs with on this backend's GPU; None on the CPU or when unknown."""

    # Images.
    def preprocess(self, img, image_shape: tuple[int, int]) -> Tensor: ...
    def postprocess(self, X: Tensor): ...

    # The model and the losses.
    def extract_features(
        self, X: Tensor, content_layers: Sequence[int | str], style_layers: Sequence[int | str],
        taps: str = DEFAULT_TAPS,
    ) -> tuple[list[Tensor], list[Tensor]]:
        """The outputs at the layers, read as ``taps`` says (common/vgg.py)."""
    def gram(self, X: Tensor, normalized: bool = True) -> Tensor:
        """F Fᵀ over positions, divided by c·h·w unless ``normalized`` is False (the TF1 tutorial)."""
    def content_loss(self, Y_hat: Tensor, Y: Tensor) -> Tensor: ...
    def style_loss(self, Y_hat: Tensor, gram_Y: Tensor, normalized: bool = True) -> Tensor: ...
    def tv_loss(self, Y_hat: Tensor, scale: float = 0.5) -> Tensor:
        """scale * (mean |Δy| + mean |Δx|): d2l's 0.5, the TF1 tutorial's denoise loss 1."""
    def stop_gradient(self, t: Tensor) -> Tensor:
        """``t`` as a constant for differentiation (the TF1 recipe's adaptive factors)."""
    def compute_loss(
        self, X, contents_Y_hat, styles_Y_hat, contents_Y, styles_Y_gram, loss_weights: LossWeights, formula=...
    ) -> tuple[list[Tensor], list[Tensor], Tensor, Tensor]:
        """The recipe's ``formula`` (common/recipes.py; d2l's by default) over the features."""

    # Training.
    def init_state(self, X: Tensor, contents_Y, styles_Y, config: StyleTransferConfig) -> State: ...
    def train_step(self, state: State) -> tuple[State, LossParts]: ...
    steps_per_dispatch: int  # steps ``train_steps`` compiles into one program (JAX on the CPU: 5; else 1)
    def train_steps(self, state: State, num_steps: int) -> tuple[State, list[LossParts]]:
        """``num_steps`` steps; their losses on the device (a multi-step program's stacked in one LossParts)."""
    def losses_to_floats(self, pending: Sequence[LossParts]) -> list[LossParts]:
        """``train_steps``' losses as floats, one ``LossParts`` per step; waits for the device."""
    def current_image(self, state: State) -> Tensor:
        """The synthesized image, clamped to the recipe's bounds where it has them."""
    def evaluations(self, state: State) -> int | None:
        """Closure calls so far for L-BFGS; None where each step is one evaluation."""
    def loss_and_grad(self, state: State) -> tuple[LossParts, Tensor]:
        """The losses at the current image and the total loss's gradient there; no update."""
    def train(
        self, X, contents_Y, styles_Y, config: StyleTransferConfig, callback: Callback | None = None, report_every: int = 1
    ) -> tuple[Tensor, list[LossParts]]: ...
