"""The half of every backend that is the same in all frameworks.

A backend subclasses ``BackendBase`` and writes only what its framework does
differently: tensors in and out, the VGG forward pass, the Gram matrix, the
three losses and the training step. Everything here works on any framework's
tensors through ``+``, ``*`` and the subclass's own methods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Sequence

import numpy as np

from common import devices, images, machine, recipes, weights as weight_sets
from common.config import DEFAULT_TAPS, LossWeights, StyleTransferConfig, check_taps
from common.errors import DivergedError, UserError
from common.image_space import D2L_NORMALIZED, IMAGE_SPACES, ImageSpace
from common.interface import PRECISIONS, Callback, LossParts, StepReport, working_dtype
from common.recipes import LossFormula, Recipe
from common.vgg import FeaturePlan, feature_plan

D2L_FORMULA = LossFormula()


@dataclass(frozen=True)
class RunPlan:
    """What a training state reads from its config, resolved once: the outputs to keep (and the space of
    the network's input), the loss weights, and the recipe's formulas and optimizer."""

    features: FeaturePlan
    loss_weights: LossWeights
    recipe: Recipe = recipes.D2L
    optimizer: str = "same"  # or "native": the framework's stock L-BFGS

    @property
    def formula(self) -> LossFormula:
        return self.recipe.formula


@dataclass(frozen=True)
class InputTransform:
    """``input[c] = X[order[c]] * scale[c] + shift[c]``, with framework constants placed to broadcast."""

    order: list[int]
    scale: Any
    shift: Any


class BackendBase:
    name = "base"

    def __init__(self, *, weights="bundled", device: str | None = None, precision: str = "float32"):
        """What the machine and the model are; what a run does is its ``StyleTransferConfig``'s."""
        if precision not in PRECISIONS:
            raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.precision = precision
        self.numpy_dtype = working_dtype(precision)  # what from_numpy makes and to_numpy returns
        self.weights = weight_sets.resolve(weights, native=self.load_native_weights)
        self.requested_device = devices.parse(device)  # None: the framework's default

    def __repr__(self) -> str:
        return f"<{self.name} backend on {self.device}, {self.precision}, weights={self.weights.name}>"

    # --- what subclasses may provide ------------------------------------------------------

    def load_native_weights(self, architecture: str = "vgg19") -> weight_sets.WeightSet:
        raise UserError(f"the {self.name} backend has no native weights; use weights='bundled'")

    def synchronize(self) -> None:
        """Wait for queued device work; frameworks that run eagerly need nothing."""

    def device_name(self) -> str | None:
        """The accelerator's name, or None on the CPU."""
        return None

    def peak_device_bytes(self) -> int | None:
        """Peak accelerator memory this process used, where the framework reports it."""
        return None

    def framework_cuda_version(self) -> str | None:
        """The CUDA version the framework runs with on this backend's NVIDIA GPU, None on the CPU; may raise."""
        return None

    def square_matmul(self, n: int):
        """A function that queues one n x n matrix product in this backend's compute precision, on its device."""
        raise NotImplementedError(f"the {self.name} backend has no matmul probe")

    def speed_settings(self) -> dict:
        """The framework settings this backend chose for speed on this machine, for the record."""
        return {}

    # --- shared --------------------------------------------------------------------------

    def cuda_version(self) -> str | None:
        """``framework_cuda_version``, or None when the framework cannot say."""
        try:
            return self.framework_cuda_version()
        except Exception:  # a version string is not worth a failed run
            return None

    def peak_matmul_flops(self, sizes: Sequence[int] | None = None) -> float:
        """The best FLOP/s of this framework's square matrix products on this device (common/machine.py).

        ``sizes``: the n of the n x n products; by default large ones, for this device's peak.
        """
        on_gpu = self.device_name() is not None

        def wait(out):
            self.scalar(out[0, 0])  # waits for this product, and for everything queued before it
            self.synchronize()

        return machine.best_matmul_flops(self.square_matmul, wait,
                                         sizes=sizes or (machine.GPU_PEAK_SIZES if on_gpu else machine.CPU_PEAK_SIZES))

    def plan(self, content_layers: Sequence[int | str], style_layers: Sequence[int | str],
             taps: str = DEFAULT_TAPS, space: ImageSpace = D2L_NORMALIZED) -> FeaturePlan:
        # The plan indexes the network this backend built: the weight set's architecture.
        return _plan(tuple(content_layers), tuple(style_layers), check_taps(taps), space.name,
                     self.weights.architecture)

    def run_plan(self, config: StyleTransferConfig) -> RunPlan:
        """The config's recipe, layers, taps and loss weights (by default the recipe's for this weight set),
        as a training state keeps them."""
        recipe = config.recipe_data
        return RunPlan(self.plan(config.content_layers, config.style_layers, config.feature_taps, recipe.space),
                       config.resolved_loss_weights(self.weights), recipe, config.optimizer or "same")

    def extract_features(self, X, content_layers, style_layers, taps=DEFAULT_TAPS, space=D2L_NORMALIZED):
        """The outputs at the content and the style layers, read as ``taps`` says (common/vgg.py),
        of an image ``X`` in ``space`` (d2l's normalized RGB unless a recipe says otherwise)."""
        return self._features(X, self.plan(content_layers, style_layers, taps, space))

    def input_transform(self, space: ImageSpace = D2L_NORMALIZED) -> tuple[list[int], np.ndarray, np.ndarray] | None:
        """How an image in ``space`` becomes the network's input, as (channel order, scale, shift), or None if identity.

        The weight set's convention maps d2l's normalized RGB to its input; another space is first
        mapped to that one, folded into the same per-channel affine map (computed in float64).
        """
        convention = self.weights.convention
        if space == D2L_NORMALIZED:
            if convention.is_identity:
                return None
            scale = np.asarray(convention.scale, dtype=self.numpy_dtype)
            shift = np.asarray(convention.shift, dtype=self.numpy_dtype)
            return list(convention.order), scale, shift
        # normalized = value * a + b, with a, b per RGB channel
        a = np.asarray(space.std) / (space.top * np.asarray(D2L_NORMALIZED.std))
        b = (np.asarray(space.mean) / space.top - np.asarray(D2L_NORMALIZED.mean)) / np.asarray(D2L_NORMALIZED.std)
        order = list(convention.order)
        scale = a[order] * np.asarray(convention.scale)
        shift = b[order] * np.asarray(convention.scale) + np.asarray(convention.shift)
        return order, scale.astype(self.numpy_dtype), shift.astype(self.numpy_dtype)

    def set_input_convention(self, constant: Callable[[np.ndarray], Any], shape: tuple[int, ...]) -> None:
        """Keep ``input_transform`` of every image space for ``_features``: ``input_transforms[space name]``,
        an ``InputTransform`` whose scale and shift are framework constants of ``shape`` (one value per
        channel, placed to broadcast over the layout) made by ``constant`` on the backend's device, or None.
        """
        self.input_transforms: dict[str, InputTransform | None] = {}
        for name, space in IMAGE_SPACES.items():
            transform = self.input_transform(space)
            if transform is not None:
                order, scale, shift = transform
                transform = InputTransform(order, constant(scale.reshape(shape)), constant(shift.reshape(shape)))
            self.input_transforms[name] = transform

    def preprocess(self, img, image_shape: tuple[int, int], space: ImageSpace = D2L_NORMALIZED):
        return self.from_numpy(images.preprocess_array(img, image_shape, space))

    def postprocess(self, X, space: ImageSpace = D2L_NORMALIZED):
        return images.postprocess_array(self.to_numpy(X), space)

    def compute_loss(self, X, contents_Y_hat, styles_Y_hat, contents_Y, styles_Y_gram, loss_weights: LossWeights,
                     formula: LossFormula = D2L_FORMULA):
        """The weighted losses per layer and their total, as the recipe's ``formula`` combines them.

        With an adaptive formula (TF1) each kind is one entry, its raw value (its weighted value is
        its weight by construction), and the total is sum(weight * loss / constant(loss + 1e-10)).
        """
        w = loss_weights
        if formula.adaptive:
            return self._adaptive_loss(X, contents_Y_hat, styles_Y_hat, contents_Y, styles_Y_gram, w, formula)
        contents_l = [self.content_loss(Y_hat, Y) * w.content for Y_hat, Y in zip(contents_Y_hat, contents_Y)]
        # d2l: sum(10 * styles_l + ...) repeats the list; style weight 1e4 says the same once.
        styles_l = [self.style_loss(Y_hat, Y, formula.gram_normalized) * w.style
                    for Y_hat, Y in zip(styles_Y_hat, styles_Y_gram)]
        if formula.layer_mean:
            contents_l, styles_l = ([sum(l) / len(l)] if l else [] for l in (contents_l, styles_l))
        tv_l = self.tv_loss(X, formula.tv_scale) * w.tv
        l = sum(styles_l + contents_l + [tv_l])
        return contents_l, styles_l, tv_l, l

    def _adaptive_loss(self, X, contents_Y_hat, styles_Y_hat, contents_Y, styles_Y_gram, w, formula):
        def mean(losses):
            return sum(losses) / len(losses) if losses else 0.0

        content = mean([self.content_loss(Y_hat, Y) for Y_hat, Y in zip(contents_Y_hat, contents_Y)])
        style = mean([self.style_loss(Y_hat, Y, formula.gram_normalized) for Y_hat, Y in zip(styles_Y_hat, styles_Y_gram)])
        tv = self.tv_loss(X, formula.tv_scale)
        # The tutorial's weight * adj * loss, adj = 1 / (loss + 1e-10) held constant.
        l = sum(weight * (1.0 / self.stop_gradient(loss + formula.adaptive_eps)) * loss
                for weight, loss in ((w.content, content), (w.style, style), (w.tv, tv)))
        return [content], [style], tv, l

    def summed_losses(self, X, contents_Y_hat, styles_Y_hat, state) -> LossParts:
        """compute_loss against a training state's targets, each kind summed over its layers."""
        contents_l, styles_l, tv_l, l = self.compute_loss(
            X, contents_Y_hat, styles_Y_hat, state.contents_Y, state.styles_Y_gram, state.run.loss_weights,
            state.run.formula,
        )
        return LossParts(sum(contents_l), sum(styles_l), tv_l, l)

    def evaluations(self, state) -> int | None:
        """Loss evaluations (closure calls) so far where a step makes several (L-BFGS), else None."""
        return None

    def scalar(self, t) -> float:
        return float(np.asarray(self.to_numpy(t)))

    # Steps ``train_steps`` runs per dispatch: more than one where the framework compiles several into one program.
    steps_per_dispatch = 1

    def train_steps(self, state, num_steps: int):
        """``num_steps`` training steps; the losses stay on the device, one ``LossParts`` per step.

        A backend that compiles several steps into one program returns one
        ``LossParts`` whose fields are stacked along a first axis, one entry per step.
        """
        losses = []
        for _ in range(num_steps):
            state, step_losses = self.train_step(state)
            losses.append(step_losses)
        return state, losses

    def losses_to_floats(self, pending: Sequence[LossParts]) -> list[LossParts]:
        """Device losses from ``train_steps`` as one ``LossParts`` of floats per step (this waits for the device)."""
        history = []
        for parts in pending:
            values = [np.atleast_1d(np.asarray(self.to_numpy(v))) for v in parts]  # stacked: one entry per step
            history.extend(LossParts(*map(float, step)) for step in zip(*values))
        return history

    def train(
        self,
        X,
        contents_Y,
        styles_Y,
        config: StyleTransferConfig,
        callback: Callback | None = None,
        report_every: int = 1,
    ):
        """d2l's ``train``: returns the synthesized image and every step's losses.

        Loss values stay on the device between reports, so the loop waits for
        the device only every ``report_every`` steps.
        """
        config.validate()
        if not (isinstance(report_every, int) and report_every >= 1):
            raise UserError(f"report_every must be a positive integer, got {report_every!r}")
        state = self.init_state(X, contents_Y, styles_Y, config)
        history: list[LossParts] = []
        epoch = 0
        while epoch < config.num_epochs:
            num_steps = min(report_every, config.num_epochs - epoch)  # the steps until the next report
            state, losses = self.train_steps(state, num_steps)
            history.extend(self.losses_to_floats(losses))
            check_finite(history, epoch)
            epoch += num_steps
            if callback is not None:
                callback(StepReport(epoch, config.num_epochs, config.lr_at(epoch - 1), history[-1], history,
                                    self.evaluations(state) or epoch))
        return self.current_image(state), history


def check_finite(history: Sequence[LossParts], checked: int) -> None:
    """Raise ``DivergedError`` at the first step after ``checked`` whose losses are NaN or infinite."""
    for step, parts in enumerate(history[checked:], start=checked + 1):
        if not all(map(math.isfinite, parts)):
            raise DivergedError(step, "the loss (" + ", ".join(f"{k} {v:g}" for k, v in parts._asdict().items()) + ")")


@lru_cache(maxsize=32)
def _plan(content_layers, style_layers, taps, space, architecture) -> FeaturePlan:
    try:
        return feature_plan(content_layers, style_layers, taps, space, architecture)
    except ValueError as exc:  # e.g. conv3_4, which VGG16 lacks
        raise UserError(f"weights of architecture {architecture}: {exc}") from None
