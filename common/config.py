"""d2l section 13.12's hyperparameters in one place, plus a CPU-sized preset.

Every default here is the PyTorch listing's value; the command line overrides
any of them (see ``compare.py --help``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from common.errors import UserError

# VGG19 ``features`` indices, as in d2l.
STYLE_LAYERS: tuple[int, ...] = (0, 5, 10, 19, 28)
CONTENT_LAYERS: tuple[int, ...] = (25,)

# Smallest side VGG's five 2x2 poolings can take (2**5); the largest keeps a
# typo like ``--size 30000x45000`` from asking for hundreds of GB.
MIN_SIDE = 32
MAX_SIDE = 4096

ADAM_FORMULAS: tuple[str, ...] = ("stock", "reference")
# What d2l's PyTorch listing reads (common/vgg.py): the default wherever taps are an argument.
DEFAULT_TAPS = "torch-inplace"


@dataclass(frozen=True)
class LossWeights:
    """Weights of the content, style and total-variation terms.

    d2l writes ``sum(10 * styles_l + contents_l + [tv_l])`` with style weight
    1e3: ``10 * styles_l`` repeats the *list* ten times, which is the same as
    a style weight of 1e4. Newer d2l editions write 1e4 directly.
    """

    content: float = 1.0
    style: float = 1e4
    tv: float = 10.0

    def validate(self) -> "LossWeights":
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise UserError(f"{field.name} loss weight must be a finite number >= 0, got {value!r}")
        return self


@dataclass(frozen=True)
class StyleTransferConfig:
    """Everything one style-transfer run needs besides its images and weights."""

    image_shape: tuple[int, int] = (300, 450)  # (height, width), d2l's PyTorch listing
    lr: float = 0.3
    num_epochs: int = 500
    lr_decay_epoch: int = 50
    lr_decay: float = 0.8
    # Adam's epsilon, set explicitly: PyTorch and optax default to 1e-8, Keras to 1e-7.
    adam_eps: float = 1e-8
    # "stock": each framework's own Adam, as its users run it; "reference": one formula in all
    # three (common/adam.py), so that float64 runs agree to rounding.
    adam: str = "stock"
    # None means "the weight set's own defaults" (see common/weights.py).
    loss_weights: LossWeights | None = None
    content_layers: tuple[int, ...] = CONTENT_LAYERS
    style_layers: tuple[int, ...] = STYLE_LAYERS
    # How VGG indices become feature taps; see common/vgg.py.
    taps: str = DEFAULT_TAPS

    def replace(self, **changes) -> "StyleTransferConfig":
        return dataclasses.replace(self, **changes)

    def resolved_loss_weights(self, defaults: LossWeights) -> LossWeights:
        """The run's loss weights: this config's own if set, else ``defaults`` (the weight set's); validated."""
        return (defaults if self.loss_weights is None else self.loss_weights).validate()

    def validate(self) -> "StyleTransferConfig":
        from common.vgg import feature_plan

        check_image_shape(self.image_shape)
        _check_positive("lr", self.lr)
        _check_positive("lr_decay", self.lr_decay)
        if self.lr_decay > 1:
            raise UserError(f"lr_decay must be in (0, 1], got {self.lr_decay!r}")
        _check_positive("adam_eps", self.adam_eps)
        if self.adam not in ADAM_FORMULAS:
            raise UserError(f"adam must be one of {', '.join(ADAM_FORMULAS)}, got {self.adam!r}")
        _check_positive_int("num_epochs", self.num_epochs)
        _check_positive_int("lr_decay_epoch", self.lr_decay_epoch)
        if self.loss_weights is not None:
            self.loss_weights.validate()
        check_taps(self.taps)
        if not (self.content_layers or self.style_layers):
            raise UserError("content_layers and style_layers are both empty; at least one layer is needed")
        try:
            feature_plan(self.content_layers, self.style_layers, self.taps)
        except (ValueError, TypeError, KeyError) as exc:
            raise UserError(f"content_layers {self.content_layers!r}, style_layers {self.style_layers!r}: {exc}") from None
        return self

    def lr_at(self, epoch: int) -> float:
        """The learning rate used at 0-based ``epoch``, as PyTorch's StepLR sets it.

        d2l calls ``scheduler.step()`` after each ``trainer.step()``, so epochs
        0..49 use lr, 50..99 use lr * 0.8, and so on.
        """
        return self.lr * self.lr_decay ** (epoch // self.lr_decay_epoch)


# What a run does is the config's alone; a backend is the machine and the model (weights, device, precision).
RUN_SETTINGS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(StyleTransferConfig))


def misplaced_run_setting(name: str) -> UserError:
    """The error for a run setting given where it does not belong (to a backend, say)."""
    return UserError(f"{name} is a run setting: it belongs on StyleTransferConfig (config.replace({name}=...)), "
                     "not on the backend")


# d2l's own settings: the default on a GPU.
D2L = StyleTransferConfig()
# Small enough to finish in a few minutes per backend on two CPU cores.
CPU = StyleTransferConfig(image_shape=(150, 225), num_epochs=200)
PRESETS: dict[str, StyleTransferConfig] = {"d2l": D2L, "cpu": CPU}


def check_image_shape(image_shape) -> tuple[int, int]:
    try:
        height, width = (int(s) for s in image_shape)
        if (height, width) != tuple(image_shape):
            raise ValueError
    except (TypeError, ValueError):
        raise UserError(f"image shape must be two whole numbers (height, width), got {image_shape!r}") from None
    for side, value in (("height", height), ("width", width)):
        if value < MIN_SIDE:
            raise UserError(
                f"image {side} {value} is too small: VGG19's five 2x2 poolings need at least {MIN_SIDE} pixels"
            )
        if value > MAX_SIDE:
            raise UserError(f"image {side} {value} is too large (at most {MAX_SIDE} pixels per side)")
    return height, width


def check_taps(taps) -> str:
    """``taps`` if it names a reading in common/vgg.py, else a one-line ``UserError``."""
    from common.vgg import TAP_READINGS

    if taps not in TAP_READINGS:
        raise UserError(f"taps must be one of {', '.join(TAP_READINGS)}, got {taps!r}")
    return taps


def _check_positive(name: str, value) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise UserError(f"{name} must be a finite number > 0, got {value!r}")


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f"{name} must be a whole number > 0, got {value!r}")
