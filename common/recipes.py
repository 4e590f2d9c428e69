"""The three recipes as data: d2l 13.12, the PyTorch tutorial and the TF1 tutorial.

A recipe is everything that makes one published neural-style-transfer listing
what it is: the layers it reads and how, its Gram and loss formulas and their
weights, the space its image lives in, how the image starts, and its optimizer
with that optimizer's settings. ``StyleTransferConfig(recipe=...)`` takes its
defaults from here; the backends read the formulas through ``BackendBase`` and
write only their framework's ops, one optimizer of each kind per framework.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.loss_weights import LossWeights
from common.errors import UserError
from common.image_space import BYTE_RGB, D2L_NORMALIZED, UNIT_RGB, ImageSpace

# The TF1 tutorial adds this to a loss before dividing by it (common/reference.py's oracle uses it too).
ADAPTIVE_EPS = 1e-10

OPTIMIZERS: tuple[str, ...] = ("adam", "lbfgs", "normalized-step")
# config.optimizer: "same" runs the recipe's optimizer with one algorithm in every framework,
# "native" each framework's own stock one (only L-BFGS differs between frameworks).
OPTIMIZER_CHOICES: tuple[str, ...] = ("same", "native")
INITS: tuple[str, ...] = ("content", "noise")


@dataclass(frozen=True)
class LBFGSSettings:
    """torch.optim.LBFGS's settings, at its defaults (PyTorch 2.x); common/lbfgs.py is its algorithm."""

    lr: float = 1.0
    max_iter: int = 20
    max_eval: int | None = None  # None: max_iter * 5 // 4, as torch
    tolerance_grad: float = 1e-7
    tolerance_change: float = 1e-9
    history_size: int = 100

    @property
    def evals_allowed(self) -> int:
        return self.max_eval if self.max_eval is not None else self.max_iter * 5 // 4


@dataclass(frozen=True)
class Noise:
    """A seeded white-noise start, in the recipe's image space: uniform [low, high) or normal(low, high**2)."""

    kind: str  # "uniform" or "normal"
    low: float  # normal: the mean
    high: float  # normal: the standard deviation
    seed: int = 0


@dataclass(frozen=True)
class LossFormula:
    """How the features become the three losses and their total."""

    gram_normalized: bool = True  # divide F Fᵀ by c·h·w (d2l, PyTorch tutorial) or not (TF1 tutorial)
    layer_mean: bool = False  # each kind's losses averaged over its layers (TF1) instead of summed
    tv_scale: float = 0.5  # d2l's TV is 0.5 (mean |Δy| + mean |Δx|); the TF1 denoise loss has no 0.5
    # TF1: each loss times weight / (its own value + 1e-10), the factor a constant in the gradient.
    adaptive: bool = False
    adaptive_eps: float = ADAPTIVE_EPS


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str  # one line for --help
    source: str
    # The network: layers as VGG19 features indices read by `taps`, or as names (taps unused).
    content_layers: tuple[int | str, ...]
    style_layers: tuple[int | str, ...]
    taps: str | None
    formula: LossFormula
    # Loss weights per weight-set convention (common/weights.py); None: the weight set's own (d2l).
    loss_weights: dict[str, LossWeights] | None
    space: ImageSpace
    clamp: tuple[float, float] | None  # the image's bounds, enforced as the recipe does
    init: str  # "content" or "noise"
    noise: Noise
    optimizer: str  # one of OPTIMIZERS
    lr: float | None  # Adam's or L-BFGS' lr; None where the step size is fixed (step_size)
    num_epochs: int  # Adam and normalized steps: updates; L-BFGS: optimizer.step() calls
    lbfgs: LBFGSSettings | None = None
    step_size: float | None = None  # the normalized step's size
    note: str = ""  # said in the output, e.g. that VGG16's layers run on VGG19

    @property
    def uses(self) -> frozenset[str]:
        """The StyleTransferConfig fields this recipe reads; setting any other is an error."""
        used = {"recipe", "image_shape", "num_epochs", "loss_weights", "content_layers", "style_layers", "init"}
        if self.taps is not None:
            used.add("taps")
        if self.optimizer == "adam":
            used |= {"lr", "lr_decay_epoch", "lr_decay", "adam_eps", "adam"}
        if self.optimizer == "lbfgs":
            used |= {"lr", "optimizer"}
        return frozenset(used)

    @property
    def why_unused(self) -> str:
        """Why a setting outside ``uses`` does nothing here, for the one-line error."""
        if self.optimizer == "normalized-step":
            return f"its normalized steps have a fixed size, {self.step_size:g}, and its layers are named"
        if self.optimizer == "lbfgs":
            return "it optimizes with L-BFGS and names its layers; Adam's settings and taps do not apply"
        return "--optimizer chooses between L-BFGS implementations; d2l's Adam is chosen with --adam"

    def loss_weights_for(self, convention: str, weight_set_default: LossWeights) -> LossWeights:
        if self.loss_weights is None:
            return weight_set_default
        return self.loss_weights.get(convention, self.loss_weights["imagenet-rgb"])


# The input scale of Caffe-convention weights against torchvision's: 255·std ≈ 57 (common/weights.py).
# Features grow about that much, so a content weight shrinks by 57⁻² and a style weight by 57⁻⁴.
CAFFE_FEATURE_SCALE = 57.0

D2L = Recipe(
    name="d2l",
    summary="d2l 13.12: VGG19 relu1_1..conv5_1 style, relu4_4 content, TV, Adam lr 0.3 with StepLR, 500 epochs",
    source="Dive into Deep Learning, section 13.12 (PyTorch listing)",
    content_layers=(25,),
    style_layers=(0, 5, 10, 19, 28),
    taps="torch-inplace",
    formula=LossFormula(),
    loss_weights=None,
    space=D2L_NORMALIZED,
    clamp=None,
    init="content",
    noise=Noise("normal", 0.0, 1.0),
    optimizer="adam",
    lr=0.3,
    num_epochs=500,
)

PYTORCH_TUTORIAL = Recipe(
    name="pytorch-tutorial",
    summary="PyTorch's 'Neural Transfer Using PyTorch': pre-ReLU conv1_1..conv3_1 style, conv2_2 content, "
            "no TV, torch.optim.LBFGS (lr 1, 20 iterations a step) with the image clamped to [0, 1], 16 steps",
    source="pytorch.org/tutorials/advanced/neural_style_tutorial.html",
    content_layers=("conv2_2",),
    style_layers=("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"),
    taps=None,
    formula=LossFormula(),
    loss_weights={
        "imagenet-rgb": LossWeights(content=1.0, style=1e6, tv=0.0),
        # Style scaled by 57⁻⁴; content by 57⁻² would be 3.1e-4, where the cat's outline fades under the
        # swirls (also at 1e-3): 3e-3 keeps it, chosen by looking at the default pair at 150x225, as
        # common/weights.py's d2l weights were.
        "caffe-bgr": LossWeights(content=3e-3, style=1e6 / CAFFE_FEATURE_SCALE**4, tv=0.0),
    },
    space=UNIT_RGB,
    clamp=(0.0, 1.0),
    init="content",
    noise=Noise("normal", 0.0, 1.0),  # the tutorial's commented-out torch.randn start
    optimizer="lbfgs",
    lr=1.0,
    # The tutorial's loop, `while run[0] <= 300: optimizer.step(closure)`, checks its closure counter only
    # between steps: 16 steps of 20 closure calls, 320 calls (common.lbfgs.tutorial_steps).
    num_epochs=16,
    lbfgs=LBFGSSettings(),
)

TF1_TUTORIAL = Recipe(
    name="tf1-tutorial",
    summary="the TensorFlow 1 tutorial (Hvass-Labs #15): every loss divided by its own value, steps of 10 "
            "over the gradient's std, clipped to 0..255; relu3_1 content, all 13 VGG16 ReLUs style, 60 steps "
            "from noise",
    source="Hvass-Labs TensorFlow-Tutorials, 15_Style_Transfer",
    content_layers=("relu3_1",),
    style_layers=("relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_2", "relu3_3",
                  "relu4_1", "relu4_2", "relu4_3", "relu5_1", "relu5_2", "relu5_3"),
    taps=None,
    formula=LossFormula(gram_normalized=False, layer_mean=True, tv_scale=1.0, adaptive=True),
    # The adaptive factors make the weights independent of the features' scale: one set for every weight set.
    loss_weights={"imagenet-rgb": LossWeights(content=2.0, style=9.0, tv=0.4)},
    space=BYTE_RGB,
    clamp=(0.0, 255.0),
    init="noise",
    noise=Noise("uniform", 128.0, 129.0),
    optimizer="normalized-step",
    lr=None,
    num_epochs=60,
    step_size=10.0,
    note="VGG16's layer names on VGG19: --weights native-vgg16 runs VGG16 (torchvision's or Keras' ImageNet file, "
         "from the framework's cache or the network)",
)

RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (D2L, PYTORCH_TUTORIAL, TF1_TUTORIAL)}


def get(name) -> Recipe:
    if name not in RECIPES:
        raise UserError(f"recipe must be one of {', '.join(RECIPES)}, got {name!r}")
    return RECIPES[name]
