"""Every run setting in one place, plus a CPU-sized preset.

A config names its recipe (common/recipes.py: d2l 13.12, the PyTorch tutorial, the TF1
tutorial); each setting left at None takes that recipe's value, so ``StyleTransferConfig()``
is d2l's PyTorch listing and ``StyleTransferConfig(recipe="pytorch-tutorial")`` the
tutorial's. A setting the recipe does not use stays None, and setting it is an error. The
command line overrides any of them (see ``compare.py --help``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from common.errors import UserError
from common.loss_weights import LossWeights  # noqa: F401  (part of the config's vocabulary)

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


# d2l's Adam settings; recipes that use Adam take these as their defaults.
ADAM_DEFAULTS = {"lr_decay_epoch": 50, "lr_decay": 0.8, "adam_eps": 1e-8, "adam": "stock"}


@dataclass(frozen=True)
class StyleTransferConfig:
    """Everything one style-transfer run needs besides its images and weights.

    None: the recipe's value (common/recipes.py), filled in when the config is made.
    """

    image_shape: tuple[int, int] = (300, 450)  # (height, width), d2l's PyTorch listing
    # d2l, pytorch-tutorial or tf1-tutorial: the layers, formulas, image space and optimizer.
    recipe: str = "d2l"
    lr: float | None = None  # Adam's (d2l 0.3) or L-BFGS' (1.0); the TF1 step size is the recipe's
    num_epochs: int | None = None  # Adam and normalized steps: updates; L-BFGS: optimizer.step() calls
    lr_decay_epoch: int | None = None
    lr_decay: float | None = None
    # Adam's epsilon, set explicitly: PyTorch and optax default to 1e-8, Keras to 1e-7.
    adam_eps: float | None = None
    # "stock": each framework's own Adam, as its users run it; "reference": one formula in all
    # three (common/reference.py), so that float64 runs agree to rounding.
    adam: str | None = None
    # None means "the recipe's for this weight set" (d2l: the weight set's own, common/weights.py).
    loss_weights: LossWeights | None = None
    content_layers: tuple[int | str, ...] | None = None
    style_layers: tuple[int | str, ...] | None = None
    # How VGG indices become feature taps; see common/vgg.py. Recipes that name their layers have none.
    taps: str | None = None
    init: str | None = None  # "content" (the content image) or "noise" (the recipe's seeded noise)
    # L-BFGS: "same" (torch.optim.LBFGS's algorithm in every framework) or "native" (each one's stock L-BFGS).
    optimizer: str | None = None

    def __post_init__(self):
        recipe = self.recipe_data  # raises for an unknown name
        for name, value in recipe_defaults(recipe).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        for name in ("content_layers", "style_layers"):  # lists from JSON or a caller: hashable tuples
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def recipe_data(self):
        from common import recipes

        return recipes.get(self.recipe)

    def replace(self, **changes) -> "StyleTransferConfig":
        """``dataclasses.replace``. A new recipe also takes its own value of every setting not in
        ``changes`` that is still at the old recipe's value or that the new recipe does not use."""
        if changes.get("recipe", self.recipe) != self.recipe:
            from common import recipes

            old, uses = recipe_defaults(self.recipe_data), recipes.get(changes["recipe"]).uses
            for name in RECIPE_SETTINGS:
                value = getattr(self, name)
                if name not in changes and (name not in uses or value == old.get(name)):
                    changes[name] = None
        return dataclasses.replace(self, **changes)

    def resolved_loss_weights(self, weights) -> LossWeights:
        """The run's loss weights: this config's own if set, else the recipe's for ``weights``
        (a WeightSet: d2l takes the weight set's own); validated."""
        if self.loss_weights is not None:
            return self.loss_weights.validate()
        return self.recipe_data.loss_weights_for(weights.convention.name, weights.loss_weights).validate()

    def validate(self) -> "StyleTransferConfig":
        from common.vgg import feature_plan

        recipe = self.recipe_data
        check_image_shape(self.image_shape)
        unused = [name for name in RECIPE_SETTINGS if name not in recipe.uses and getattr(self, name) is not None]
        if unused:
            raise UserError(f"{unused[0]} is not used by recipe {recipe.name} ({recipe.why_unused})")
        if "lr" in recipe.uses:
            _check_positive("lr", self.lr)
        if "adam" in recipe.uses:
            _check_positive("lr_decay", self.lr_decay)
            if self.lr_decay > 1:
                raise UserError(f"lr_decay must be in (0, 1], got {self.lr_decay!r}")
            _check_positive("adam_eps", self.adam_eps)
            if self.adam not in ADAM_FORMULAS:
                raise UserError(f"adam must be one of {', '.join(ADAM_FORMULAS)}, got {self.adam!r}")
            _check_positive_int("lr_decay_epoch", self.lr_decay_epoch)
        if "optimizer" in recipe.uses:
            from common.recipes import OPTIMIZER_CHOICES

            if self.optimizer not in OPTIMIZER_CHOICES:
                raise UserError(f"optimizer must be one of {', '.join(OPTIMIZER_CHOICES)}, got {self.optimizer!r}")
        from common.recipes import INITS

        if self.init not in INITS:
            raise UserError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        _check_positive_int("num_epochs", self.num_epochs)
        if self.loss_weights is not None:
            self.loss_weights.validate()
        taps = check_taps(self.taps) if "taps" in recipe.uses else DEFAULT_TAPS
        if not (self.content_layers or self.style_layers):
            raise UserError("content_layers and style_layers are both empty; at least one layer is needed")
        try:
            feature_plan(self.content_layers, self.style_layers, taps)
        except (ValueError, TypeError, KeyError) as exc:
            raise UserError(f"content_layers {self.content_layers!r}, style_layers {self.style_layers!r}: {exc}") from None
        return self

    @property
    def feature_taps(self) -> str:
        """How the layers are read: the config's taps, or (for named layers) any reading, the names pass through."""
        return self.taps if self.taps is not None else DEFAULT_TAPS

    def lr_at(self, epoch: int) -> float:
        """The learning rate (or the normalized step's size) used at 0-based ``epoch``.

        Adam's follows PyTorch's StepLR: d2l calls ``scheduler.step()`` after each
        ``trainer.step()``, so epochs 0..49 use lr, 50..99 use lr * 0.8, and so on.
        """
        recipe = self.recipe_data
        if recipe.optimizer == "normalized-step":
            return recipe.step_size
        if recipe.optimizer == "lbfgs":
            return self.lr
        return self.lr * self.lr_decay ** (epoch // self.lr_decay_epoch)


def recipe_defaults(recipe) -> dict:
    """The config settings a recipe fills in when they are None: only those it uses."""
    values = {"lr": recipe.lr, "num_epochs": recipe.num_epochs, "content_layers": recipe.content_layers,
              "style_layers": recipe.style_layers, "taps": recipe.taps, "init": recipe.init,
              "optimizer": "same", **ADAM_DEFAULTS}
    return {name: value for name, value in values.items() if name in recipe.uses}


# What a run does is the config's alone; a backend is the machine and the model (weights, device, precision).
RUN_SETTINGS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(StyleTransferConfig))
# The settings a recipe fills in or leaves unused (None).
RECIPE_SETTINGS: tuple[str, ...] = ("lr", "num_epochs", "lr_decay_epoch", "lr_decay", "adam_eps", "adam",
                                    "content_layers", "style_layers", "taps", "init", "optimizer")


def misplaced_run_setting(name: str) -> UserError:
    """The error for a run setting given where it does not belong (to a backend, say)."""
    return UserError(f"{name} is a run setting: it belongs on StyleTransferConfig (config.replace({name}=...)), "
                     "not on the backend")


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


# d2l's own settings: the default on a GPU.
D2L = StyleTransferConfig()
# Small enough to finish in a few minutes per backend on two CPU cores.
CPU = StyleTransferConfig(image_shape=(150, 225), num_epochs=200)
PRESETS: dict[str, StyleTransferConfig] = {"d2l": D2L, "cpu": CPU}


def preset(name: str, recipe: str = "d2l") -> StyleTransferConfig:
    """A preset for a recipe: its image size; d2l's cpu preset shortens d2l's 500 epochs to 200,
    the tutorials run their own step counts (they are short at any size)."""
    base = PRESETS[name]
    return base if recipe == base.recipe else StyleTransferConfig(recipe=recipe, image_shape=base.image_shape)
