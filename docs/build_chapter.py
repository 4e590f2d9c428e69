"""Build the chapter: d2l 13.12 step by step, each listing in a tab per framework.

    python docs/build_chapter.py           # write docs/chapter.md and docs/chapter.html
    python docs/build_chapter.py --check   # exit 1 if either would change; write nothing

Every listing is cut out of the project's own source with ``ast`` (nothing is
imported, so no framework is needed and the build takes well under a second),
and the results come from the files a ``compare.py`` run wrote into docs/. The
build fails, naming what is missing, when a listed symbol, a test the text
points at, or an image is gone, when a backend tab shows BackendBase's method
although that backend overrides it, or when a tab leaves out a method of the
Backend Protocol. The output has no timestamps, so ``--check`` is exact; CI
runs it through ``tests/test_chapter.py``.
"""

from __future__ import annotations

import argparse
import ast
import html
import io
import json
import keyword
import re
import sys
import textwrap
import tokenize
from dataclasses import dataclass
from functools import singledispatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import atomic  # noqa: E402  (stdlib only: common imports no framework)

OUTPUTS = ("docs/chapter.md", "docs/chapter.html")
COMMAND = "make docs"  # what the README names; it runs: python docs/build_chapter.py
D2L_URL = "https://d2l.ai/chapter_computer-vision/neural-style.html"

# Tabs in the order d2l shows them; "numpy" is the float64 reference the tests use.
TABS = ("torch", "tensorflow", "jax", "numpy")
TAB_LABELS = {"torch": "PyTorch", "tensorflow": "TensorFlow", "jax": "JAX", "numpy": "NumPy"}
BACKEND_CLASSES = {"torch": "TorchBackend", "tensorflow": "TensorFlowBackend", "jax": "JaxBackend"}
BASE_CLASS = "BackendBase"

# Short names for the files listings come from, so the step table reads "file:Symbol".
FILES = {
    "torch": "backends/torch_backend.py",
    "tensorflow": "backends/tensorflow_backend.py",
    "jax": "backends/jax_backend.py",
    "base": "common/backend.py",
    "numpy": "common/reference.py",
    "interface": "common/interface.py",
    "images": "common/images.py",
    "weights": "common/weights.py",
    "vgg": "common/vgg.py",
    "config": "common/config.py",
    "stylize": "common/stylize.py",
}


class ChapterError(Exception):
    """The source no longer has what the chapter shows: say what, and where."""


# --- what the chapter is made of ---------------------------------------------------------


@dataclass(frozen=True)
class Code:
    """Listings shown once, for every framework: ``specs`` are "file:Symbol"."""

    specs: tuple[str, ...]


@dataclass(frozen=True)
class Tabs:
    """One listing group per framework; a reader's tab choice switches all groups at once."""

    torch: tuple[str, ...]
    tensorflow: tuple[str, ...]
    jax: tuple[str, ...]
    numpy: tuple[str, ...] = ()

    def groups(self) -> list[tuple[str, tuple[str, ...]]]:
        return [(tab, getattr(self, tab)) for tab in TABS if getattr(self, tab)]


@dataclass(frozen=True)
class Figures:
    """Images (paths relative to docs/) with captions; ``row`` puts them side by side."""

    items: tuple[tuple[str, str], ...]
    row: bool = False


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...]  # right-aligned columns


@dataclass(frozen=True)
class Shell:
    command: str


@dataclass(frozen=True)
class Tests:
    """Pointers "tests/test_x.py::test_name" that prove the text above them."""

    pointers: tuple[str, ...]


@dataclass(frozen=True)
class Part:
    title: str | None
    text: str  # paragraphs separated by blank lines; `code`, **bold** and [links](url)
    blocks: tuple = ()


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    parts: tuple[Part, ...]


def own(tab: str, *methods: str) -> tuple[str, ...]:
    """Specs for methods of a backend's own class: own("jax", "gram") -> ("jax:JaxBackend.gram",)."""
    return tuple(f"{tab}:{BACKEND_CLASSES[tab]}.{method}" for method in methods)


def shared(*methods: str) -> tuple[str, ...]:
    """Specs for BackendBase methods every backend inherits."""
    return tuple(f"base:{BASE_CLASS}.{method}" for method in methods)


def each_backend(*methods: str, numpy: tuple[str, ...] = ()) -> Tabs:
    """The same methods of each backend's own class, side by side."""
    return Tabs(*(own(tab, *methods) for tab in BACKEND_CLASSES), numpy=numpy)


def all_shared(*methods: str, numpy: tuple[str, ...] = ()) -> Tabs:
    """BackendBase's methods in every backend tab, labelled as shared."""
    return Tabs(shared(*methods), shared(*methods), shared(*methods), numpy=numpy)


# --- the chapter's text and listings, in d2l's order -------------------------------------

INTRO = Part(None, f"""
This chapter follows [d2l.ai's section 13.12, Neural Style Transfer]({D2L_URL}) step by step, in
PyTorch, TensorFlow and JAX. Every listing is cut out of this project's source by
`docs/build_chapter.py`, so it is the code the tests run, not a copy of it. The tabs above a listing
switch **every** listing on the page at once; the NumPy tab, where there is one, is the float64
reference that the tests hold each framework to.

Style transfer, as Gatys et al. describe it, starts from the content image and changes it until its
deep features, taken from a pretrained VGG19, match the content image's at one layer; the
correlations between its feature channels (Gram matrices) match the style image's at five layers;
and it has little pixel noise (total variation). The network is frozen: the only thing trained is
the image itself.
""")

INTERFACE = Part("One interface for three frameworks", """
Each framework implements one `typing.Protocol`: d2l's functions, with one signature. One driver
(`common/stylize.py`) and one test suite then serve all three. Tensors stay the framework's own, and
`from_numpy` and `to_numpy` speak NCHW whatever layout the framework uses inside.
""", (Code(("interface:Backend",)),))

READING = Section("reading", "Reading the content and style images", (Part(None, """
d2l pairs a photo with a painting. Here the content image is scikit-image's `chelsea` (CC0) and the
style image is drawn by the project itself (`assets/make_style.py`: brush strokes along a swirling
flow field). Reading is the same for every framework, so it is written once, with PIL: anything PIL
can decode becomes an 8-bit RGB image, and anything it cannot becomes a one-line error instead of a
traceback.
""", (
    Figures((("../assets/chelsea.png", "content image: chelsea"), ("../assets/swirls.png", "style image: swirls")),
            row=True),
    Code(("images:load_image",)),
)),))

PREPROCESSING = Section("preprocessing", "Preprocessing and postprocessing", (
    Part(None, """
`preprocess` resizes the image, scales it to [0, 1] and normalizes each RGB channel with ImageNet's
mean and standard deviation, giving a batch of one image, 1×3×H×W. `postprocess` undoes the
normalization and clips to [0, 1]. The libraries resize differently (PIL, torchvision, `tf.image` and
`jax.image` disagree by a few grey levels at edges), so resizing and normalizing happen once, in
NumPy, for every backend.
""", (Code(("images:preprocess_array", "images:postprocess_array")),)),
    Part("Into each framework's tensors", """
PyTorch's convolutions take channels first (NCHW); TensorFlow's and JAX's take channels last (NHWC).
So `from_numpy` and `to_numpy` transpose at the boundary in TensorFlow and JAX, and the rest of the
program never sees the difference. PyTorch's `to_numpy` copies, because `.numpy()` of a CPU tensor
shares its memory and the optimizer updates the image in place. `preprocess` and `postprocess`
themselves are shared: NumPy's work plus the backend's own conversion.
""", (Tabs(
        own("torch", "from_numpy", "to_numpy") + shared("preprocess", "postprocess"),
        own("tensorflow", "from_numpy", "to_numpy") + shared("preprocess", "postprocess"),
        own("jax", "from_numpy", "to_numpy") + shared("preprocess", "postprocess"),
    ),)),
    Part("The weights' input convention", """
The normalized RGB image is what torchvision's VGG19 expects. The bundled weights are the original
Caffe VGG19 (as Keras distributes it), which expects BGR in [0, 255] minus a mean pixel. Changing the
image to suit them would change what the learning rate and the TV loss mean, so the image stays in
d2l's space and each backend maps it to the network's input at the top of `extract_features` (next
section): a channel permutation and one affine map per channel, which the weight set carries.
""", (Code(("weights:InputConvention", "weights:_caffe_bgr", "base:BackendBase.input_transform")),)),
))

FEATURES = Section("features", "Extracting features", (
    Part(None, """
d2l takes VGG19's convolutional part, `features`, reads the style at layers 0, 5, 10, 19 and 28 and
the content at layer 25, and drops every layer after the deepest one it reads. The architecture is
written once, as data (torchvision's configuration list), and every backend builds its network from
it, so that index i means `features[i]` in all three.
""", (Code(("vgg:VGG19_CONFIG", "vgg:vgg19_layers")),)),
    Part("Named taps", """
Which tensor is "the output of layer 0"? torchvision's VGG applies `ReLU(inplace=True)` after each
convolution, and the in-place ReLU overwrites the tensor that d2l's PyTorch listing keeps. So the
listing really reads relu1_1, relu2_1, relu3_1, relu4_1 (style) and relu4_4 (content), and, because
the truncated network ends at index 28 with no ReLU after it, a pre-ReLU conv5_1. `common/vgg.py`
turns indices into these names once (`taps="torch-inplace"`, the default; `taps="pre-relu"` is the
literal reading, which d2l's MXNet listing computes), and every backend keeps tensors by name.
""", (Code(("vgg:tap_names",)),)),
    Part("The network in each framework", """
PyTorch takes torchvision's `vgg19().features`, keeps it in channels-last memory (the layout
oneDNN and cuDNN prefer; indexing stays NCHW) and makes its ReLUs out-of-place, so a kept tensor is
never overwritten. TensorFlow takes Keras' `VGG19`, whose convolutions have the ReLU fused in, and
splits each into a convolution and a separate `ReLU` layer, so either can be a tap. JAX writes the
network as a Flax NNX module and splits it once into its structure and its weights, so that the
weights are an argument of the compiled function rather than constants baked into it; its
convolution and pooling layers carry hand-written gradients (`_max_pool_bwd`, `_frozen_conv3x3_bwd`),
which XLA runs faster on the CPU than the ones it derives; the docstrings give the measurements. The
weights arrive in PyTorch's OIHW kernel layout; TensorFlow and JAX
transpose them to HWIO. Each `__init__`
also sets the framework's precision (see the differences section) and the input convention above.
""", (Tabs(
        own("torch", "__init__", "_build_net", "extract_features"),
        own("tensorflow", "__init__", "_build_net", "extract_features"),
        ("jax:max_pool", "jax:_max_pool_bwd", "jax:conv3x3", "jax:input_grad_kernel", "jax:frozen_conv3x3",
         "jax:_frozen_conv3x3_bwd", "jax:FrozenConv", "jax:VGG19")
        + own("jax", "__init__", "_build_net", "extract_features", "_features"),
    ),)),
    Part("Content and style targets", """
d2l's `get_contents` and `get_styles` compute the targets once, before training: the content
image's features at the content layer and the style image's at the style layers. The same function
serves every backend.
""", (Code(("stylize:targets",)),)),
))

LOSSES = Section("losses", "Defining the loss function", (
    Part(None, """
The loss has three parts, each a mean, so that none grows with the size of the image.
""", ()),
    Part("Content loss", """
The squared difference between the synthesized image's features and the content image's, at the
content layer. The target is a constant, and each framework has its own way to say that no gradient
flows into it: `detach`, `tf.stop_gradient`, `jax.lax.stop_gradient`.
""", (each_backend("content_loss", numpy=("numpy:content_loss",)),)),
    Part("Style loss", """
Style is the correlation between channels. Reshape a c×h×w feature map into a c×hw matrix X and take
XXᵀ, divided by c·h·w so that layers of different sizes weigh alike. In NHWC the same memory
reshapes into an hw×c matrix, so TensorFlow and JAX compute XᵀX: the transpose moves to the other
side. Reshaping an NHWC map as if it were c×hw gives a matrix of the right shape and the wrong
numbers, which is why the Gram matrix is tested against the NumPy reference on many shapes.
""", (each_backend("gram", "style_loss", numpy=("numpy:gram", "numpy:style_loss")),)),
    Part("Total variation loss", """
Neighbouring pixels should be alike: the TV loss is half the sum of the mean absolute differences
between vertical and between horizontal neighbours. JAX writes |x| as sign(x)·x, because the
gradient of `jnp.abs` at 0 is 1 where PyTorch's and TensorFlow's is 0, and an 8-bit photo, where
training starts, has many exactly equal neighbours.
""", (Tabs(own("torch", "tv_loss"), own("tensorflow", "tv_loss"), ("jax:abs_",) + own("jax", "tv_loss"),
           numpy=("numpy:tv_loss",)),)),
    Part("The loss function", """
The weighted sum of the three. d2l writes `sum(10 * styles_l + contents_l + [tv_l])` with a style
weight of 1e3; `10 * styles_l` repeats the list ten times, so the style weight is really 1e4, which
`LossWeights` says directly. The bundled Caffe weights produce activations about 50 times larger, so
that weight set carries its own loss weights. `compute_loss` only adds and multiplies the backend's
tensors, so it is written once for all three.
""", (Code(("config:LossWeights",)), all_shared("compute_loss", numpy=("numpy:compute_loss",)))),
))

SYNTHESIZED = Section("synthesized", "Initializing the synthesized image", (Part(None, """
The image being optimized is the model's only parameter, and it starts as the content image. PyTorch
wraps it in an `nn.Module`, d2l's `SynthesizedImage`; TensorFlow makes it a `tf.Variable`; in JAX it
is an array in an immutable state that every step replaces. The state also holds the optimizer (Adam
with d2l's step schedule), the content targets and the style targets' Gram matrices, computed once
here. TensorFlow also wraps its training step in a `tf.function` here, traced into a graph on its
first call; JAX's Adam is an optax transformation whose state is a pytree of arrays beside the image.
""", (Tabs(
    ("torch:SynthesizedImage", "torch:TorchState") + own("torch", "init_state", "current_image"),
    ("tensorflow:TensorFlowState",) + own("tensorflow", "init_state", "current_image"),
    ("jax:JaxState",) + own("jax", "init_state", "current_image"),
),)),))

TRAINING = Section("training", "Training", (
    Part(None, """
Each step computes the features of the current image, the three losses and the gradient of the total
loss with respect to the image, then takes one Adam step. The learning rate starts at 0.3 and is
multiplied by 0.8 every 50 epochs: PyTorch's `StepLR` stepped after each epoch, Keras'
`ExponentialDecay(staircase=True)` and optax's `exponential_decay(staircase=True)`, both evaluated at
the number of finished steps. `config.lr_at(epoch)` is the definition all three are tested against.
""", (Code(("config:StyleTransferConfig",)),)),
    Part("One step in each framework", """
PyTorch runs the step eagerly: zero the gradient, compute the losses, `backward()`, step the
optimizer, then the scheduler. TensorFlow runs the `tf.function` that `init_state` traced: the same
step under a `GradientTape`, as one graph. JAX's step is a pure function from state to new state,
`jax.value_and_grad` with respect to the image only, compiled once with `jax.jit`; the old state's
buffers are donated, so XLA may write the new image into the old one's memory. `loss_and_grad` is the step without the
update, which the agreement tests and `compare.py --diverge` use.
""", (Tabs(
        own("torch", "train_step", "_loss") + shared("summed_losses") + own("torch", "loss_and_grad"),
        ("tensorflow:step_lr",) + own("tensorflow", "train_step", "_loss") + shared("summed_losses")
        + own("tensorflow", "loss_and_grad"),
        ("jax:step_lr", "jax:adam_with_step_lr")
        + own("jax", "_loss", "_value_and_grad", "_step", "_steps", "train_step") + shared("summed_losses")
        + own("jax", "loss_and_grad"),
    ),)),
    Part("The training loop", """
`train` is d2l's loop. It keeps each step's losses on the device and reads them only when it reports,
so the host does not wait for the device between reports. Between two reports it asks `train_steps`
for up to `steps_per_dispatch` steps at a time: PyTorch and TensorFlow run them one by one; JAX on
the CPU, when reports are at least five steps apart, runs five as one unrolled program (`_steps`
above), one dispatch for five steps. `compare.py` reports every step, so there it runs one at a time.
`stylize` is d2l's top-level script for any backend.
""", (Tabs(shared("train", "train_steps", "losses_to_floats"), shared("train", "train_steps", "losses_to_floats"),
           shared("train") + own("jax", "train_steps") + shared("losses_to_floats")),
      Code(("stylize:stylize",)))),
))

TIMING = Part("How the time was measured", """
A timer must wait for the device: PyTorch on a GPU and JAX everywhere return before their work is
done. Each backend waits in its framework's own way; TensorFlow's `.numpy()` waits for its value, so
it needs nothing more. `device_name` and `peak_device_bytes` fill the table's device columns.
""", (Tabs(
    own("torch", "synchronize", "device_name", "peak_device_bytes"),
    shared("synchronize") + own("tensorflow", "device_name", "peak_device_bytes"),
    own("jax", "synchronize", "device_name", "peak_device_bytes"),
),))


@dataclass(frozen=True)
class Difference:
    title: str
    text: str
    tests: tuple[str, ...]


DIFFERENCES = (
    Difference("Layout: NCHW and NHWC", """
PyTorch's convolutions take channels first; TensorFlow's and Flax's default to channels last. Each
backend keeps its own layout inside and speaks NCHW at the boundary. The layout matters beyond
bookkeeping in the Gram matrix, where reshaping an NHWC map as if it were NCHW still gives a c×c
matrix, of the wrong numbers.
""", ("tests/test_contract.py::test_numpy_round_trip_keeps_nchw",
          "tests/test_keras_file_backends.py::test_layout_at_the_boundary",
          "tests/test_reference.py::TestAgainstReference::test_gram",
          "tests/test_agreement.py::test_small_tensor_quantities")),
    Difference("In-place ReLU", """
torchvision's `ReLU(inplace=True)` overwrites the convolution outputs d2l's PyTorch listing keeps, so
its "convolution" features are post-ReLU, except conv5_1. Reading the pre-ReLU tensors instead
changes the features by about 10% (relative), far beyond rounding, so all backends read named taps
(`common/vgg.py`), and the PyTorch backend makes its ReLUs out-of-place so that a pre-ReLU tap
survives. The book's listing is run verbatim on torchvision's in-place VGG19 to prove the reading.
""", ("tests/test_torch_backend.py::test_torch_inplace_taps_reproduce_the_d2l_listing",
          "tests/test_config_and_taps.py::test_torch_inplace_reading_is_what_d2l_pytorch_computes",
          "tests/test_config_and_taps.py::test_pre_relu_reading_is_what_d2l_mxnet_computes",
          "tests/test_contract.py::test_extract_features_shapes_and_relu_taps",
          "tests/test_torch_backend.py::test_vgg_weights_are_frozen_and_only_the_image_trains",
          "tests/test_agreement.py::test_features_at_every_tap")),
    Difference("TF32", """
On recent NVIDIA GPUs all three frameworks use TF32, a 10-bit mantissa, for float32 work by default:
PyTorch in cuDNN convolutions, TensorFlow in convolutions and matrix products, JAX wherever the
precision is `DEFAULT`. That is about 1e-3 relative error per operation, which would swamp the
agreement table's 1e-6. `precision="float32"`, the default, turns it off in each framework's own way:
two PyTorch flags, one TensorFlow call, `Precision.HIGHEST` on every JAX convolution and matrix
product. `"tf32"` is opt-in. (On a CPU it changes nothing; the tests check the settings.)
""", ("tests/test_torch_backend.py::test_precision_sets_tf32",
          "tests/test_tensorflow_backend.py::test_tf32_flag",
          "tests/test_jax_backend.py::test_float32_is_strict",
          "tests/test_jax_backend.py::test_tf32_uses_default_precision")),
    Difference("Adam's epsilon", """
The defaults differ, PyTorch and optax 1e-8, Keras 1e-7, so `adam_eps` is set explicitly from one
config. Keras also adds epsilon to √v before the bias correction, where PyTorch and optax add it
after, so the same value acts like eps/√(1−0.999ᵗ), 3.2e-7 at step 1. Adam moves each pixel by
about lr·sign(g) wherever |g| is well above eps, so only pixels with tiny gradients notice, but
those move by a different amount: compare "image after 1 Adam step" for the TensorFlow pairs and
for torch vs jax in the agreement table. The pairs with TensorFlow get their own measured tolerances
(`tests/tolerances.py`).
""", ("tests/test_torch_backend.py::test_adam_epsilon_is_explicit",
          "tests/test_keras_file_backends.py::test_adam_uses_config_adam_eps",
          "tests/test_agreement.py::test_one_adam_step_from_the_same_state",
          "tests/test_agreement.py::test_short_training_run_agrees")),
    Difference("Learning-rate schedules", """
d2l steps PyTorch's `StepLR` after every epoch, so epochs 0 to 49 use 0.3 and epoch 50 is the first
at 0.24. Keras' `ExponentialDecay` and optax's `exponential_decay`, with `staircase=True` and 50
steps per decay, are evaluated at the number of finished steps and give the same sequence. One epoch
off is easy (a scheduler stepped before the optimizer, a count that starts at 1) and invisible in
the final image, so the tests replay each framework's real updates against `config.lr_at`, with a
fast-decaying schedule that makes an off-by-one a factor of 2.
""", ("tests/test_config_and_taps.py::test_lr_schedule_is_steplr",
          "tests/test_torch_backend.py::test_train_step_uses_config_lr_at_each_epoch",
          "tests/test_tensorflow_backend.py::test_keras_optimizer_reports_lr_at_each_epoch",
          "tests/test_keras_file_backends.py::test_step_lr_schedule_is_torch_step_lr",
          "tests/test_keras_file_backends.py::test_schedule_is_step_lr",
          "tests/test_keras_file_backends.py::test_training_matches_torch")),
    Difference("Weight conventions", """
torchvision's ImageNet weights take RGB in [0, 1] normalized by ImageNet's mean and standard
deviation; the original Caffe weights, which Keras distributes and this project bundles, take BGR in
[0, 255] minus the mean pixel. Feed one the other's input and nothing fails; the features are just
wrong. Kernels come as OIHW from PyTorch and HWIO for TensorFlow and JAX. And Caffe-scale
activations are about 50 times larger, so the content loss grows by that squared and the style loss
by its fourth power: each weight set carries its input convention and its loss weights.
""", ("tests/test_weights.py::test_caffe_convention_maps_normalized_rgb_to_bgr_minus_mean",
          "tests/test_weights.py::test_bundled_weights_dequantize_to_torchvision_keys_and_are_cached",
          "tests/test_keras_file_backends.py::test_features_match_torch",
          "tests/test_agreement.py::test_features_at_every_tap")),
    Difference("The gradient of |x| at 0", """
`jnp.abs` has gradient 1 at 0; PyTorch's and TensorFlow's `abs` have 0. The TV loss takes |x| of
differences between neighbours, and the content image, where training starts, is an 8-bit photo
with many exactly equal neighbours, so with `jnp.abs` the TV gradient differs from the first step.
JAX's backend writes |x| as sign(x)·x.
""", ("tests/test_agreement.py::test_tv_gradient_where_neighbours_are_equal",
          "tests/test_keras_file_backends.py::test_training_matches_torch")),
    Difference("Max-pool ties", """
Max pooling's gradient goes to the largest value of each 2×2 window; on an exact tie JAX's own
`select_and_scatter` picks the first, and the hand-written pooling gradient (written for speed) does
the same, bit for bit; PyTorch's and TensorFlow's kernels are not tested on ties here. Values that differ by less than float32's resolution are another matter: real images
have a few in every layer, and there the result depends on how each framework rounds its sums. The
agreement tests use inputs without exact ties (`common/agreement.py`, `images()`), and the near-ties
that remain are why an XLA CPU option that sums in another order, 6% faster, was turned down
(`benchmarks/RESULTS.md`).
""", ("tests/test_agreement.py::test_loss_and_gradient_at_the_content_image",
          "tests/test_jax_backend.py::test_max_pool_gradient_is_lax_reduce_windows_own_ties_included",
          "tests/test_keras_file_backends.py::test_loss_and_grad_match_torch")),
)

DIFFERENCES_INTRO = """
The three backends compute the same function, yet each framework has conventions that would make
them disagree, most of them silently. Each claim below names the tests that prove it. To check that the
tests can fail, `python benchmarks/mutation_check.py` breaks a backend in such ways, each on a copy
of the tree, and records which tests catch each one ([docs/mutations.md](mutations.md)).
"""

REBUILD = Part(None, f"""
`{COMMAND}` (that is, `python docs/build_chapter.py`) rebuilds `docs/chapter.md` and
`docs/chapter.html` from the source and from the latest run's files in `docs/`. `make test` runs
`tests/test_chapter.py`, which fails when the committed page differs from what the source builds.
""", (Shell(COMMAND),))


def chapter(root: Path) -> list[Section]:
    """The whole chapter; the results section reads the run's files under ``root``/docs."""
    intro = Section("intro", "Neural style transfer in PyTorch, TensorFlow and JAX", (INTRO, INTERFACE))
    differences = Section("differences", "What differs between the frameworks, and why it matters", (
        Part(None, DIFFERENCES_INTRO),
        *(Part(d.title, d.text, (Tests(d.tests),)) for d in DIFFERENCES),
    ))
    return [intro, READING, PREPROCESSING, FEATURES, LOSSES, SYNTHESIZED, TRAINING, results(root), differences,
            Section("rebuilding", "Rebuilding this page", (REBUILD,))]


# --- results: read from the files a compare.py run wrote --------------------------------

RUN = "docs/compare-cpu"
AGREEMENT = "docs/agreement.json"


def read_json(root: Path, path: str):
    try:
        return json.loads((root / path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ChapterError(f"{path} is missing: the results section is built from it") from None


def results(root: Path) -> Section:
    run = read_json(root, f"{RUN}/results.json")
    finished = [r for r in run["backends"] if r.get("status") == "ok"]
    command = run["command"].strip()
    intro = Part(None, f"""
Everything below comes from a run of `{command}` (what `make compare` runs), read from `{RUN}/`
when this page was built: {run["description"]}. Machine: {machine(run)}. Each backend ran in its own
process on the default pair, {repeats(finished)}.
""", (Shell(command),
      Figures(tuple((f"{RUN.removeprefix('docs/')}/{r['image']}", TAB_LABELS.get(r["backend"], r["backend"]))
                    for r in finished), row=True),
      Figures((("images/side_by_side.png", "content, style and each backend's result"),
               ("images/losses.png", "each loss part per epoch, log scale, one line per backend")))))
    speed = Part("Speed", f"""
Set-up is imports, weights and building the network; the first step includes tracing and
compilation; ms/step is the median over the steps after the first five, with the 10th to 90th
percentile; total is the whole training loop; host MiB is the process's peak resident memory.
Versions: {versions(run)}.
""", (speed_table(run), losses_table(run)))
    images_agree = Part("Do the images agree?", """
The runs start from the same image and the same numbers, and drift apart as Adam amplifies rounding
(see Adam's epsilon below): alike side by side, but not the same image.
""", (image_agreement_table(run),))
    numbers_agree = Part("Do the numbers agree?", """
Before training amplifies anything, the backends agree to float32 rounding. Each entry is
max |a − b| / max(|a|, |b|) over every element and case, float32 on the CPU, with the same NumPy
inputs fed to each backend ("numpy" is the float64 reference); `python benchmarks/agreement_table.py`
measured it, and `tests/test_agreement.py` enforces it with the tolerances in `tests/tolerances.py`.
""", (agreement_table(read_json(root, AGREEMENT)),))
    return Section("results", "Results", (intro, speed, images_agree, numbers_agree, TIMING))


def machine(run: dict) -> str:
    m = run.get("machine", {})
    gpus = ", ".join(m.get("gpus") or []) or "no GPU"
    return f"{m.get('cpu', '?')}, {m.get('cpu_count', '?')} cores, {gpus}; Python {m.get('python', '?')}"


def repeats(finished: list[dict]) -> str:
    n = max((len(r.get("repeat_step_s_medians") or [0]) for r in finished), default=1)
    return "once" if n == 1 else f"{n} times"


def versions(run: dict) -> str:
    """ "torch 2.15.0, torchvision 0.29.2; tensorflow ...": each backend's framework packages."""
    skip = {"python", "numpy"}
    return "; ".join(", ".join(f"{k} {v}" for k, v in r.get("versions", {}).items() if v and k not in skip)
                     for r in run["backends"] if r.get("versions"))


def speed_table(run: dict) -> Table:
    header = ("backend", "device", "setup s", "first step s", "ms/step (median)", "p10–p90 ms", "total s",
              "host MiB", "device MiB")
    rows = []
    for r in run["backends"]:
        if r.get("status") != "ok":
            rows.append((r["backend"], f"{r.get('status')}: {r.get('error', '')}") + ("",) * 7)
            continue
        rows.append((
            r["backend"], r.get("device_name") or r.get("device", "?"), f"{r['setup_s']:.1f}",
            f"{r['first_step_s']:.2f}", f"{r['step_s_median'] * 1e3:.1f}",
            f"{r['step_s_p10'] * 1e3:.0f}–{r['step_s_p90'] * 1e3:.0f}", f"{r['total_s']:.1f}",
            mib(r["peak_host_bytes"]), mib(r.get("peak_device_bytes")),
        ))
    return Table(header, tuple(rows), (False, False) + (True,) * 7)


def mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.0f}"


def losses_table(run: dict) -> Table:
    parts = ("content", "style", "tv", "total")
    rows = tuple((r["backend"], *(f"{r['final_losses'][k]:.4g}" for k in parts))
                 for r in run["backends"] if r.get("status") == "ok")
    return Table(("backend", *(f"final {k} loss" for k in parts)), rows, (False,) + (True,) * 4)


def image_agreement_table(run: dict) -> Table:
    rows = tuple((" vs ".join(a["pair"]), str(a["max_abs_pixel_diff"]), f"{a['psnr_db']:.1f}")
                 for a in run.get("agreement", []))
    return Table(("pair", "max abs pixel difference (0–255)", "PSNR dB"), rows, (False, True, True))


def agreement_table(measured: dict[str, dict[str, float]]) -> Table:
    pairs = sorted({pair for values in measured.values() for pair in values})
    rows = []
    for quantity, values in measured.items():
        cell = "{:.1f}" if quantity.startswith("PSNR") else "{:.1e}"
        rows.append((quantity, *(cell.format(values[p]) if p in values else "" for p in pairs)))
    return Table(("quantity", *pairs), tuple(rows), (False,) + (True,) * len(pairs))


# --- cutting listings out of the source --------------------------------------------------


@dataclass(frozen=True)
class Listing:
    path: str
    symbol: str
    code: str
    note: str  # "" or why this tab shows code from outside the framework's file


class Sources:
    """Each source file read and parsed once per build."""

    def __init__(self, root: Path):
        self.root = root
        self._parsed: dict[str, tuple[list[str], ast.Module]] = {}

    def parsed(self, path: str) -> tuple[list[str], ast.Module]:
        if path not in self._parsed:
            try:
                text = (self.root / path).read_text(encoding="utf-8")
            except FileNotFoundError:
                raise ChapterError(f"{path} does not exist (the chapter lists code from it)") from None
            self._parsed[path] = text.splitlines(), ast.parse(text, filename=path)
        return self._parsed[path]

    def node(self, path: str, symbol: str) -> ast.AST:
        """The definition of ``symbol`` ("func", "Class", "Class.method", "CONSTANT") in ``path``."""
        _, tree = self.parsed(path)
        body, node = tree.body, None
        for name in symbol.split("."):
            node = next((n for n in body if defines(n, name)), None)
            if node is None:
                raise ChapterError(f"{path} has no {symbol}: the chapter lists it (update the step table in "
                                   f"docs/build_chapter.py if it was renamed or removed)")
            body = getattr(node, "body", [])
        return node

    def segment(self, path: str, symbol: str) -> str:
        """The source of ``symbol``, decorators and the comment lines right above it included, dedented."""
        lines, _ = self.parsed(path)
        node = self.node(path, symbol)
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        while first > 1 and is_comment(lines[first - 2]):
            first -= 1
        return textwrap.dedent("\n".join(lines[first - 1: node.end_lineno])) + "\n"

    def class_methods(self, path: str, cls: str) -> set[str]:
        return {n.name for n in self.node(path, cls).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}

    def listing(self, tab: str | None, spec: str) -> Listing:
        alias, _, symbol = spec.partition(":")
        if alias not in FILES or not symbol:
            raise ChapterError(f"bad listing spec {spec!r}: expected 'file:Symbol' with file one of {sorted(FILES)}")
        path = FILES[alias]
        code = self.segment(path, symbol)
        return Listing(path, symbol, code, self.note(tab, alias, symbol))

    def note(self, tab: str | None, alias: str, symbol: str) -> str:
        if tab in BACKEND_CLASSES and alias == "base":
            method = symbol.removeprefix(f"{BASE_CLASS}.")
            if method in self.class_methods(FILES[tab], BACKEND_CLASSES[tab]):
                raise ChapterError(f"{BACKEND_CLASSES[tab]} overrides {symbol}: show "
                                   f"{tab}:{BACKEND_CLASSES[tab]}.{method} in the {TAB_LABELS[tab]} tab instead")
            return f"shared: inherited from {BASE_CLASS}, the same in every backend"
        if tab in BACKEND_CLASSES and alias != tab:
            raise ChapterError(f"{TAB_LABELS[tab]} tab lists {alias}:{symbol}, which is not the backend's own code")
        if tab == "numpy":
            return "NumPy float64 reference"
        return ""


def defines(node: ast.AST, name: str) -> bool:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name == name
    if isinstance(node, ast.Assign):
        return any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
    if isinstance(node, ast.AnnAssign):
        return isinstance(node.target, ast.Name) and node.target.id == name
    return False


def is_comment(line: str) -> bool:
    """A comment line that belongs to the definition below it (section rulers "# --- x ---" do not)."""
    stripped = line.strip()
    return stripped.startswith("#") and not stripped.startswith("# ---")


# --- checks that make drift fail the build ------------------------------------------------


def protocol_methods(root: Path) -> list[str]:
    """The methods of common/interface.py's Backend Protocol, in order."""
    sources = Sources(root)
    return [n.name for n in sources.node(FILES["interface"], "Backend").body if isinstance(n, ast.FunctionDef)]


def shown_per_tab(sections: list[Section]) -> dict[str, set[str]]:
    """Every "file:Symbol" spec shown in each backend tab."""
    shown: dict[str, set[str]] = {tab: set() for tab in BACKEND_CLASSES}
    for block in blocks(sections):
        if isinstance(block, Tabs):
            for tab, specs in block.groups():
                if tab in shown:
                    shown[tab].update(specs)
    return shown


def missing_methods(root: Path, sections: list[Section]) -> list[str]:
    """Protocol methods a backend tab never shows, neither its own nor BackendBase's."""
    shown = shown_per_tab(sections)
    missing = []
    for method in protocol_methods(root):
        for tab in BACKEND_CLASSES:
            if not ({*own(tab, method), *shared(method)} & shown[tab]):
                missing.append(f"{TAB_LABELS[tab]}: {method}")
    return missing


def known_tests(root: Path) -> set[str]:
    """Every "tests/test_x.py::test_name" and "tests/test_x.py::TestClass::test_name" in tests/."""
    ids = set()
    for path in sorted((root / "tests").glob("test_*.py")):
        rel = path.relative_to(root).as_posix()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
                ids.add(f"{rel}::{node.name}")
            elif isinstance(node, ast.ClassDef):
                ids.update(f"{rel}::{node.name}::{n.name}" for n in node.body
                           if isinstance(n, ast.FunctionDef) and n.name.startswith("test"))
    return ids


def missing_tests(root: Path, sections: list[Section]) -> list[str]:
    known = known_tests(root)
    return [p for block in blocks(sections) if isinstance(block, Tests) for p in block.pointers if p not in known]


def missing_images(root: Path, sections: list[Section]) -> list[str]:
    return [f"docs/{src}" for block in blocks(sections) if isinstance(block, Figures)
            for src, _ in block.items if not (root / "docs" / src).is_file()]


def blocks(sections: list[Section]):
    return (block for section in sections for part in section.parts for block in part.blocks)


def check_sources(root: Path, sections: list[Section]) -> None:
    problems = [f"the {m} tab leaves out this Protocol method" for m in missing_methods(root, sections)]
    problems += [f"no such test: {p}" for p in missing_tests(root, sections)]
    problems += [f"no such image: {p}" for p in missing_images(root, sections)]
    if problems:
        raise ChapterError("; ".join(problems))


# --- inline text: `code`, **bold**, [links](url) -------------------------------------------

INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|\[([^\]]+)\]\(([^)\s]+)\)")


def paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in text.strip().split("\n\n") if p.strip()]


def inline_html(text: str) -> str:
    out, pos = [], 0
    for m in INLINE.finditer(text):
        out.append(html.escape(text[pos:m.start()]))
        code, bold, label, url = m.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif bold is not None:
            out.append(f"<strong>{inline_html(bold)}</strong>")
        else:
            out.append(f'<a href="{html.escape(url)}">{inline_html(label)}</a>')
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


# --- Markdown ------------------------------------------------------------------------------


def fence(code: str) -> str:
    """A backtick fence longer than any backtick run in ``code``."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    return "`" * max(3, longest + 1)


def md_listing(listing: Listing) -> str:
    note = f" ({listing.note})" if listing.note else ""
    marks = fence(listing.code)
    return f"`{listing.path}` · `{listing.symbol}`{note}\n\n{marks}python\n{listing.code}{marks}\n"


@singledispatch
def md_block(block, sources: Sources) -> str:
    raise TypeError(f"no Markdown for {type(block).__name__}")


@md_block.register
def _(block: Code, sources: Sources) -> str:
    return "\n".join(md_listing(sources.listing(None, spec)) for spec in block.specs)


@md_block.register
def _(block: Tabs, sources: Sources) -> str:
    # Code hosts cannot switch tabs: each framework is a <details> block, the first one open.
    out = []
    for k, (tab, specs) in enumerate(block.groups()):
        listings = "\n".join(md_listing(sources.listing(tab, spec)) for spec in specs)
        out.append(f"<details{' open' if k == 0 else ''}>\n<summary><b>{TAB_LABELS[tab]}</b></summary>\n\n"
                   f"{listings}\n</details>\n")
    return "\n".join(out)


@md_block.register
def _(block: Figures, sources: Sources) -> str:
    if block.row:
        header = " | ".join(caption for _, caption in block.items)
        images = " | ".join(f"![{caption}]({src})" for src, caption in block.items)
        return f"| {header} |\n|{'---|' * len(block.items)}\n| {images} |\n"
    return "\n".join(f"![{caption}]({src})\n\n{caption[0].upper()}{caption[1:]}.\n" for src, caption in block.items)


@md_block.register
def _(block: Table, sources: Sources) -> str:
    align = "|" + "".join("---:|" if right else "---|" for right in block.numeric)
    lines = ["| " + " | ".join(block.header) + " |", align]
    lines += ["| " + " | ".join(row) + " |" for row in block.rows]
    return "\n".join(lines) + "\n"


@md_block.register
def _(block: Shell, sources: Sources) -> str:
    return f"```bash\n{block.command}\n```\n"


@md_block.register
def _(block: Tests, sources: Sources) -> str:
    return "Proved by: " + ", ".join(f"`{p}`" for p in block.pointers) + ".\n"


def markdown(sections: list[Section], sources: Sources) -> str:
    out = [f"<!-- Generated by docs/build_chapter.py from the project's source; edit that, then run "
           f"`{COMMAND}`. -->\n"]
    for number, section in enumerate(sections):
        heading = f"# {section.title}" if number == 0 else f"## {number}. {section.title}"
        out.append(heading + "\n")
        for part in section.parts:
            if part.title:
                out.append(f"{'##' if number == 0 else '###'} {part.title}\n")
            out += [p + "\n" for p in paragraphs(part.text)]
            out += [md_block(block, sources) for block in part.blocks]
    return "\n".join(out)


# --- HTML ----------------------------------------------------------------------------------

SPAN = {tokenize.COMMENT: "c", tokenize.STRING: "s", tokenize.NUMBER: "m"}
FSTRING_START = getattr(tokenize, "FSTRING_START", None)  # Python 3.12+ splits f-strings into tokens
FSTRING_END = getattr(tokenize, "FSTRING_END", None)


def highlight(code: str) -> str:
    """HTML for Python source: keywords, strings, comments, numbers and defined names in spans.

    A whole f-string is one string span on every Python version, so the page is the same whichever
    Python builds it.
    """
    starts = [0]
    for line in code.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))

    def offset(position):
        return starts[position[0] - 1] + position[1]

    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return html.escape(code)
    spans, depth, fstring_at, previous = [], 0, 0, ""
    for tok in tokens:
        if tok.type == FSTRING_START:
            fstring_at = offset(tok.start) if depth == 0 else fstring_at
            depth += 1
        elif tok.type == FSTRING_END:
            depth -= 1
            if depth == 0:
                spans.append((fstring_at, offset(tok.end), "s"))
        elif depth == 0:
            kind = SPAN.get(tok.type)
            if tok.type == tokenize.NAME:
                kind = "k" if keyword.iskeyword(tok.string) else "f" if previous in ("def", "class") else None
            if kind:
                spans.append((offset(tok.start), offset(tok.end), kind))
            if tok.type not in (tokenize.NL, tokenize.COMMENT):
                previous = tok.string
    out, pos = [], 0
    for start, end, kind in spans:
        out.append(html.escape(code[pos:start]))
        out.append(f'<span class="{kind}">{html.escape(code[start:end])}</span>')
        pos = end
    out.append(html.escape(code[pos:]))
    return "".join(out)


def html_listing(listing: Listing, tab: str | None) -> str:
    note = f' <span class="note">{html.escape(listing.note)}</span>' if listing.note else ""
    attrs = f' data-tab="{tab}" data-symbol="{html.escape(listing.symbol)}"' if tab else ""
    return (f'<div class="listing"{attrs}><div class="where">{html.escape(listing.path)} · '
            f"<code>{html.escape(listing.symbol)}</code>{note}</div>\n"
            f"<pre><code>{highlight(listing.code)}</code></pre></div>")


@singledispatch
def html_block(block, sources: Sources) -> str:
    raise TypeError(f"no HTML for {type(block).__name__}")


@html_block.register
def _(block: Code, sources: Sources) -> str:
    return "\n".join(html_listing(sources.listing(None, spec), None) for spec in block.specs)


def tab_buttons(tabs) -> str:
    return "".join(f'<button type="button" class="tab" data-tab="{tab}">{TAB_LABELS[tab]}</button>' for tab in tabs)


@html_block.register
def _(block: Tabs, sources: Sources) -> str:
    groups = block.groups()
    panels = "\n".join(
        f'<div class="panel" data-tab="{tab}"><div class="panel-label">{TAB_LABELS[tab]}</div>\n'
        + "\n".join(html_listing(sources.listing(tab, spec), tab) for spec in specs) + "</div>"
        for tab, specs in groups
    )
    return (f'<div class="tabs"><div class="tabbar" role="tablist">{tab_buttons(t for t, _ in groups)}</div>\n'
            f"{panels}</div>")


@html_block.register
def _(block: Figures, sources: Sources) -> str:
    figures = "".join(f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}">'
                      f"<figcaption>{html.escape(caption)}</figcaption></figure>" for src, caption in block.items)
    return f'<div class="figures{" row" if block.row else ""}">{figures}</div>'


@html_block.register
def _(block: Table, sources: Sources) -> str:
    def cells(row, tag):
        return "".join(f'<{tag}{" class=num" if right else ""}>{html.escape(value)}</{tag}>'
                       for value, right in zip(row, block.numeric))

    rows = "".join(f"<tr>{cells(row, 'td')}</tr>" for row in block.rows)
    return f'<div class="table"><table><thead><tr>{cells(block.header, "th")}</tr></thead><tbody>{rows}</tbody></table></div>'


@html_block.register
def _(block: Shell, sources: Sources) -> str:
    return f'<pre class="shell"><code>{html.escape(block.command)}</code></pre>'


@html_block.register
def _(block: Tests, sources: Sources) -> str:
    items = "".join(f"<li><code>{html.escape(p)}</code></li>" for p in block.pointers)
    return f'<div class="tests">Proved by:<ul>{items}</ul></div>'


CSS = """
:root { --ink: #1d2126; --muted: #5b6470; --rule: #dfe3e8; --accent: #2f6db5; --code-bg: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.6; font-size: 16.5px;
       font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 980px; margin: 0 auto; padding: 0 28px 80px; }
h1 { font-size: 2.1em; line-height: 1.2; margin: 0.9em 0 0.5em; }
h2 { font-size: 1.5em; margin: 2.2em 0 0.6em; padding-top: 0.4em; border-top: 1px solid var(--rule); }
h3 { font-size: 1.18em; margin: 1.6em 0 0.4em; }
a { color: var(--accent); }
code { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.88em; }
p code, li code, td code { background: var(--code-bg); padding: 0.05em 0.3em; border-radius: 3px; }
.switch { position: sticky; top: 0; z-index: 2; background: #fff;
          border-bottom: 1px solid var(--rule); }
.switch div { max-width: 980px; margin: 0 auto; padding: 8px 28px; display: flex; gap: 10px; align-items: center;
              font-size: 0.9em; color: var(--muted); }
.switch .title { margin-right: auto; font-weight: 600; color: var(--ink); }
nav.toc ol { columns: 2; margin: 0.5em 0 1.5em; padding-left: 1.4em; }
.tabs { margin: 1em 0 1.4em; }
.tabbar { display: flex; gap: 2px; border-bottom: 2px solid var(--rule); }
button.tab { font: inherit; font-size: 0.9em; padding: 5px 16px; border: 1px solid transparent; border-bottom: none;
             background: none; color: var(--muted); cursor: pointer; border-radius: 5px 5px 0 0; margin-bottom: -2px; }
button.tab:hover { color: var(--ink); background: var(--code-bg); }
button.tab.active { color: var(--accent); font-weight: 600; border-color: var(--rule); background: #fff;
                    box-shadow: inset 0 3px 0 var(--accent); }
.switch button.tab { border: 1px solid var(--rule); border-radius: 5px; margin: 0; padding: 2px 12px; }
.switch button.tab.active { box-shadow: none; background: var(--accent); color: #fff; border-color: var(--accent); }
.js .panel { display: none; }
.js .panel.active { display: block; }
.js .panel-label { display: none; }
.no-js .tabbar, .no-js .switch .choose { display: none; }
.panel-label { font-weight: 600; margin-top: 0.8em; }
.listing { margin: 0.7em 0; }
.where { font-size: 0.82em; color: var(--muted); padding: 3px 0; }
.where code { color: var(--ink); }
.note { margin-left: 0.6em; padding: 0 0.5em; border-radius: 3px; background: #fff4d6; color: #6b5200; }
pre { background: var(--code-bg); border: 1px solid var(--rule); border-radius: 5px; padding: 10px 12px; margin: 0;
      overflow-x: auto; line-height: 1.45; }
pre code { font-size: 12.5px; }
pre.shell { margin: 0.8em 0; }
.k { color: #a626a4; font-weight: 600; } .s { color: #2c7a3f; } .c { color: #7a828c; font-style: italic; }
.m { color: #b45309; } .f { color: #1f5fbf; font-weight: 600; }
.figures { margin: 1em 0; }
.figures figure { margin: 0 0 1em; }
.figures img { max-width: 100%; height: auto; display: block; border: 1px solid var(--rule); }
.figures.row { display: flex; gap: 12px; flex-wrap: wrap; }
.figures.row figure { flex: 1 1 200px; margin: 0; }
figcaption { font-size: 0.85em; color: var(--muted); margin-top: 3px; }
.table { overflow-x: auto; margin: 0.8em 0 1.2em; }
table { border-collapse: collapse; font-size: 0.84em; }
th, td { border-bottom: 1px solid var(--rule); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: var(--code-bg); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num, td:first-child { white-space: nowrap; }
.tests { font-size: 0.9em; color: var(--muted); }
.tests ul { margin: 0.2em 0 0; }
"""

# Tab choice: ?tab=jax or #jax (for links and screenshots), else the last click (localStorage), else PyTorch.
JS = """
(function () {
  var TABS = %s, KEY = "d2l-style-transfer-tab";
  function chosen() {
    var asked = new URLSearchParams(location.search).get("tab"), hash = location.hash.slice(1);
    if (TABS.indexOf(asked) >= 0) return asked;
    if (TABS.indexOf(hash) >= 0) return hash;
    try { var kept = localStorage.getItem(KEY); if (TABS.indexOf(kept) >= 0) return kept; } catch (e) {}
    return TABS[0];
  }
  function show(tab) {
    document.querySelectorAll(".tabs").forEach(function (group) {
      // A group without this framework (NumPy appears only with the losses) shows its first tab.
      var pick = group.querySelector('.panel[data-tab="' + tab + '"]') ? tab
                 : group.querySelector(".panel").getAttribute("data-tab");
      group.querySelectorAll(".tabbar .tab, .panel").forEach(function (el) {
        var on = el.getAttribute("data-tab") === pick;
        el.classList.toggle("active", on);
        if (el.tagName === "BUTTON") el.setAttribute("aria-selected", on ? "true" : "false");
      });
    });
    document.querySelectorAll(".switch button.tab").forEach(function (el) {
      el.classList.toggle("active", el.getAttribute("data-tab") === tab);
    });
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button.tab") : null;
    if (!button) return;
    var tab = button.getAttribute("data-tab"), before = button.getBoundingClientRect().top;
    try { localStorage.setItem(KEY, tab); } catch (e) {}
    show(tab);
    // Listings above change height: keep the clicked tab where the reader's eye is.
    if (!button.closest(".switch")) window.scrollBy(0, button.getBoundingClientRect().top - before);
  });
  window.addEventListener("hashchange", function () {
    var hash = location.hash.slice(1);
    if (TABS.indexOf(hash) >= 0) show(hash);
  });
  show(chosen());
})();
""" % json.dumps(list(TABS))


def slug(title: str) -> str:
    """ "The weights' input convention" -> "the-weights-input-convention", for links to a part."""
    return "-".join(re.findall(r"[a-z0-9]+", title.lower().replace("'", "")))


def html_page(sections: list[Section], sources: Sources) -> str:
    title = sections[0].title
    toc = "".join(f'<li><a href="#{s.id}">{html.escape(s.title)}</a></li>' for s in sections[1:])
    body = []
    for number, section in enumerate(sections):
        if number == 0:
            body.append(f'<h1 id="{section.id}">{html.escape(section.title)}</h1>')
        else:
            body.append(f'<h2 id="{section.id}">{number}. {html.escape(section.title)}</h2>')
        for k, part in enumerate(section.parts):
            if part.title:
                body.append(f'<h3 id="{section.id}-{slug(part.title)}">{html.escape(part.title)}</h3>')
            body += [f"<p>{inline_html(p)}</p>" for p in paragraphs(part.text)]
            body += [html_block(block, sources) for block in part.blocks]
            if number == 0 and k == 0:
                body.append(f'<nav class="toc"><strong>Contents</strong><ol>{toc}</ol></nav>')
    return f"""<!DOCTYPE html>
<!-- Generated by docs/build_chapter.py from the project's source; edit that, then run `{COMMAND}`. -->
<html lang="en" class="no-js">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{CSS}</style>
<script>document.documentElement.className = "js";</script>
</head>
<body>
<header class="switch"><div><span class="title">d2l 13.12, neural style transfer</span>
<span class="choose">Show code in</span><span class="choose">{tab_buttons(TABS)}</span></div></header>
<main>
{chr(10).join(body)}
</main>
<script>{JS}</script>
</body>
</html>
"""


# --- build, check, command line ------------------------------------------------------------


def build(root: Path = ROOT) -> dict[str, str]:
    """{output path relative to root: its text}. Raises ChapterError when the source has drifted."""
    sections = chapter(root)
    check_sources(root, sections)
    sources = Sources(root)
    return {"docs/chapter.md": markdown(sections, sources), "docs/chapter.html": html_page(sections, sources)}


def stale(root: Path, outputs: dict[str, str]) -> list[str]:
    def current(path: str) -> str | None:
        target = root / path
        return target.read_text(encoding="utf-8") if target.is_file() else None

    return [path for path, text in outputs.items() if current(path) != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build docs/chapter.md and docs/chapter.html (d2l 13.12 with a tab per framework) from the "
                    "project's source and the latest compare.py run in docs/.",
        epilog="The build fails when a listed symbol, a referenced test or an image is missing.")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if either file differs from what the source builds")
    args = parser.parse_args(argv)
    try:
        outputs = build(ROOT)
    except ChapterError as exc:
        print(f"build_chapter: {exc}", file=sys.stderr)
        return 2
    changed = stale(ROOT, outputs)
    if args.check:
        if changed:
            print(f"{' and '.join(changed)} {'is' if len(changed) == 1 else 'are'} stale: run `{COMMAND}` "
                  f"(python docs/build_chapter.py)", file=sys.stderr)
            return 1
        print(f"{' and '.join(outputs)} are up to date")
        return 0
    for path in outputs:
        if path in changed:
            atomic.write_text(ROOT / path, outputs[path])
        print(f"{'wrote' if path in changed else 'unchanged'} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
