"""The chapter's content: its text, in d2l's order, and the step tables naming what each tab lists.

Edit the chapter here, then run ``make docs``. docs/build_chapter.py cuts the listings named here
out of the source, fails when one has drifted, and renders docs/chapter.md and docs/chapter.html.
Nothing here imports a framework or reads a file: the results section is text around the
measurements build_chapter reads from a compare.py run's files.
"""

from __future__ import annotations

from chapter_model import (
    TAB_LABELS, Code, Difference, Figures, Part, Section, Shell, Table, Tabs, Tests, all_shared, each_backend, own,
    shared,
)

COMMAND = "make docs"  # what the README names; it runs: python docs/build_chapter.py
D2L_URL = "https://d2l.ai/chapter_computer-vision/neural-style.html"
# One runnable notebook per framework, built from this file by docs/build_notebooks.py (`make notebooks`).
NOTEBOOKS = {
    "torch": "notebooks/neural-style-pytorch.ipynb",
    "tensorflow": "notebooks/neural-style-tensorflow.ipynb",
    "jax": "notebooks/neural-style-jax.ipynb",
}


# --- the chapter's text and listings, in d2l's order -------------------------------------

# What style transfer is: the chapter's introduction and each notebook's.
OVERVIEW = """
Style transfer, as Gatys et al. describe it, starts from the content image and changes it until its
deep features, taken from a pretrained VGG19, match the content image's at one layer; the
correlations between its feature channels (Gram matrices) match the style image's at five layers;
and it has little pixel noise (total variation). The network is frozen: the only thing trained is
the image itself.
"""

INTRO = Part(None, f"""
This chapter follows [d2l.ai's section 13.12, Neural Style Transfer]({D2L_URL}) step by step, in
PyTorch, TensorFlow and JAX. Every listing is cut out of this project's source by
`docs/build_chapter.py`, so it is the code the tests run, not a copy of it. The tabs above a listing
switch **every** listing on the page at once; the NumPy tab, where there is one, is the float64
reference that the tests hold each framework to.
""" + OVERVIEW)

INTERFACE = Part("One interface for three frameworks", """
Each framework implements one `typing.Protocol`: d2l's functions, with one signature. One driver
(`common/stylize.py`) and one test suite then serve all three. Tensors stay the framework's own, and
`from_numpy` and `to_numpy` speak NCHW whatever layout the framework uses inside.
""", (Code(("interface:Backend",)),))

RUN_IT = Part("Run it yourself", f"""
As in d2l, each framework has a notebook that runs these steps top to bottom, one cell at a time,
showing each step's code beside what it computes:
{", ".join(f"[{TAB_LABELS[tab]}](../{path})" for tab, path in NOTEBOOKS.items())}.
Each framework's tab below links its notebook. The notebooks are generated from the same source
and text as this page (`make notebooks`, that is `python docs/build_notebooks.py`), so they cannot
drift from it either. On a CPU they run the cpu preset (150×225, 200 epochs, a few minutes); on a
GPU, d2l's settings.
""")

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
        own("torch", "from_numpy", "to_numpy") + shared("scalar", "preprocess", "postprocess"),
        own("tensorflow", "from_numpy", "to_numpy") + shared("scalar", "preprocess", "postprocess"),
        own("jax", "from_numpy", "to_numpy") + shared("scalar", "preprocess", "postprocess"),
    ),)),
    Part("The weights' input convention", """
The normalized RGB image is what torchvision's VGG19 expects. The bundled weights are the original
Caffe VGG19 (as Keras distributes it), which expects BGR in [0, 255] minus a mean pixel. Changing the
image to suit them would change what the learning rate and the TV loss mean, so the image stays in
d2l's space and each backend maps it to the network's input at the top of `extract_features` (next
section): a channel permutation and one affine map per channel, which the weight set carries.
""", (Code(("weights:InputConvention", "weights:_caffe_bgr", "base:BackendBase.input_transform",
           "base:BackendBase.set_input_convention")),)),
))

FEATURES = Section("features", "Extracting features", (
    Part(None, """
d2l takes VGG19's convolutional part, `features`, reads the style at layers 0, 5, 10, 19 and 28 and
the content at layer 25, and drops every layer after the deepest one it reads. The architecture is
written once, as data (torchvision's configuration list), and every backend builds its network from
it, so that index i means `features[i]` in all three.
""", (Code(("vgg:VGG19_CONFIG", "vgg:vgg_layers")),)),
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
which XLA runs faster on the CPU than the ones it derives (the docstrings give the measurements), so
only on the CPU (`CUSTOM_GRADIENT_PLATFORMS`); elsewhere it keeps XLA's own. The weights arrive in
PyTorch's OIHW kernel layout; TensorFlow and JAX transpose them to HWIO (`oihw_to_hwio`). Each `__init__`
also sets the framework's precision (see the differences section) and the input convention above.
""", (Tabs(
        own("torch", "__init__", "_build_net") + shared("extract_features") + own("torch", "_features"),
        own("tensorflow", "__init__", "_build_net") + shared("extract_features") + own("tensorflow", "_features"),
        ("jax:CUSTOM_GRADIENT_PLATFORMS", "jax:pool2x2", "jax:max_pool", "jax:_max_pool_bwd", "jax:conv3x3",
         "jax:input_grad_kernel", "jax:frozen_conv3x3", "jax:_frozen_conv3x3_bwd", "jax:FrozenConv", "jax:VGG")
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
that weight set carries its own loss weights, which a config's own `loss_weights` replace.
`compute_loss` only adds and multiplies the backend's tensors, so it is written once for all three.
""", (Code(("loss_weights:LossWeights",)), all_shared("compute_loss", numpy=("numpy:compute_loss",)))),
))

SYNTHESIZED = Section("synthesized", "Initializing the synthesized image", (Part(None, """
The image being optimized is the model's only parameter, and it starts as the content image. PyTorch
wraps it in an `nn.Module`, d2l's `SynthesizedImage`; TensorFlow makes it a `tf.Variable`; in JAX it
is an array in an immutable state that every step replaces. The state also holds the optimizer (Adam
with d2l's step schedule), the content targets and the style targets' Gram matrices, computed once
here, and the run's plan: which layers' outputs to keep, read with the config's taps, and the config's
loss weights (else the weight set's), resolved once from the config, which alone owns them.
TensorFlow also wraps its training step in a `tf.function` here, traced into a graph on its
first call; JAX's Adam is an optax transformation whose state is a pytree of arrays beside the image.
""", (Code(("base:RunPlan", "base:BackendBase.run_plan")), Tabs(
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
so the host does not wait for the device between reports. It asks `train_steps` for the steps
between two reports: PyTorch and TensorFlow run them one by one; JAX on the CPU runs each whole group
of five as one unrolled program (`_steps` above), one dispatch for five steps, and the rest one by
one. `compare.py` reports every step, so there it runs one at a time.
`stylize` is d2l's top-level script for any backend.
""", (Tabs(shared("train", "train_steps", "losses_to_floats"), shared("train", "train_steps", "losses_to_floats"),
           shared("train") + own("jax", "train_steps") + shared("losses_to_floats")),
      Code(("stylize:stylize",)))),
))


RECIPES = Section("recipes", "Two more recipes: the PyTorch tutorial and the TF1 tutorial", (
    Part(None, """
d2l's is one of three recipes many people learned style transfer from. PyTorch's tutorial ("Neural
Transfer Using PyTorch") reads pre-ReLU convolutions, has no TV term, keeps its image in [0, 1] and
optimizes it with `torch.optim.LBFGS`, clamping the image inside the closure. The TensorFlow 1
tutorial (Hvass-Labs, #15) divides each loss by its own value and each step by the gradient's
standard deviation, on an image in 0..255. A recipe is data: its layers, loss formula, weights,
image space, start and optimizer. `StyleTransferConfig(recipe=...)` takes its defaults from it and
refuses, in one line, a setting the recipe does not use. The backends share the formulas
(`compute_loss` above reads the recipe's) and each writes its framework's optimizers.
""", (Code(("recipes:LossFormula", "recipes:Recipe", "recipes:PYTORCH_TUTORIAL", "recipes:TF1_TUTORIAL")),)),
    Part("Adaptive losses", """
The TF1 tutorial multiplies each loss by 1 / (loss + 1e-10), recomputed every step but held constant
in the gradient, so that every loss pulls with the strength of its weight whatever its scale. Holding
a value constant is each framework's stop-gradient, the same call the content target uses.
""", (Code(("base:BackendBase._adaptive_loss",)), each_backend("stop_gradient", numpy=("numpy:adaptive_factors",)))),
    Part("The normalized step", """
The update is X − g · 10 / (std(g) + 1e-8), clipped to 0..255: a step whose size does not depend on
the loss's scale. PyTorch and Keras write it as an optimizer class, optax as a gradient
transformation followed by a box projection; `std` is the population's in all three (`np.std`'s).
""", (Tabs(("torch:NormalizedStep",), ("tensorflow:NormalizedStep",), ("jax:normalized_step",),
           numpy=("numpy:normalized_step",)),)),
    Part("L-BFGS", """
`torch.optim.LBFGS` without a line search: each `step(closure)` makes up to 20 iterations, each a
two-loop recursion over up to 100 stored (s, y) pairs, then a fixed step. The tutorial's closure
clamps the image to [0, 1] before it evaluates, so the gradient belongs to the clamped image while the
step the optimizer stores is the unclamped one. TensorFlow's core has no L-BFGS, and optax's differs
from torch's in four places (the first step's norm, which pairs it keeps, the stored step, no
stopping tests), so the same algorithm is written in each: TF ops over `tf.Variable`s in one
`tf.function`, and JAX `lax` loops in one compiled program; both are tested against a NumPy
version, `common/lbfgs.py`. `evaluations` counts the closure calls: the tutorial's loop,
`while run[0] <= 300`, checks its counter only between steps, so it makes 16 steps, 320 calls.
""", (Tabs(own("torch", "_lbfgs_step", "evaluations"),
           ("tf_lbfgs:LBFGS",) + own("tensorflow", "evaluations"),
           ("jax_lbfgs:two_loop_direction", "jax_lbfgs:step") + own("jax", "_lbfgs_step", "evaluations"),
           numpy=("lbfgs:two_loop_direction", "lbfgs:step")),)),
))


# --- results: the text around what a compare.py run measured -----------------------------

TIMING = Part("How the time was measured", """
A timer must wait for the device: PyTorch on a GPU and JAX everywhere return before their work is
done. Each backend waits in its framework's own way; TensorFlow's `.numpy()` waits for its value, so
it needs nothing more. `device_name` and `peak_device_bytes` fill the table's device columns, and
`cuda_version` the versions line on a GPU.
""", (Tabs(
    own("torch", "synchronize", "device_name", "peak_device_bytes", "framework_cuda_version") + shared("cuda_version"),
    shared("synchronize") + own("tensorflow", "device_name", "peak_device_bytes", "framework_cuda_version")
    + shared("cuda_version"),
    own("jax", "synchronize", "device_name", "peak_device_bytes", "framework_cuda_version") + shared("cuda_version"),
),))


def results_section(*, command: str, folder: str, description: str, machine: str, repeats: str, versions: str,
                    images: tuple[tuple[str, str], ...], speed: Table, losses: Table, images_agree: Table,
                    numbers_agree: Table) -> Section:
    """The results section around what a compare.py run measured; build_chapter reads it from ``folder``.

    ``images`` are each backend's result (path relative to docs/, caption).
    """
    intro = Part(None, f"""
Everything below comes from a run of `{command}` (what `make compare` runs), read from `{folder}/`
when this page was built: {description}. Machine: {machine}. Each backend ran in its own
process on the default pair, {repeats}.
""", (Shell(command),
      Figures(images, row=True),
      Figures((("images/side_by_side.png", "content, style and each backend's result"),
               ("images/losses.png", "each loss part per epoch, log scale, one line per backend")))))
    speed_part = Part("Speed", f"""
Set-up is imports, weights and building the network; the first step includes tracing and
compilation; ms/step is the median over the steps after the first five, with the 10th to 90th
percentile; total is the whole training loop; host MiB is the process's peak resident memory.
Versions: {versions}.
""", (speed, losses))
    images_part = Part("Do the images agree?", """
The runs start from the same image and the same numbers, and drift apart as Adam amplifies rounding
(see Adam's epsilon below): alike side by side, but not the same image.
""", (images_agree,))
    numbers_part = Part("Do the numbers agree?", """
Before training amplifies anything, the backends agree to float32 rounding. Each entry is
max |a − b| / max(|a|, |b|) over every element and case, float32 on the CPU, with the same NumPy
inputs fed to each backend ("numpy" is the float64 reference); `python benchmarks/agreement_table.py`
measured it, and `tests/test_agreement.py` enforces it with the tolerances in `tests/tolerances.py`.
""", (numbers_agree,))
    return Section("results", "Results", (intro, speed_part, images_part, numbers_part, TIMING))


# --- what differs between the frameworks, each claim with the tests that prove it -------

DIFFERENCES_INTRO = """
The three backends compute the same function, yet each framework has conventions that would make
them disagree, most of them silently. Each claim below names the tests that prove it. To check that the
tests can fail, `python benchmarks/mutation_check.py` breaks a backend in such ways, each on a copy
of the tree, and records which tests catch each one ([docs/mutations.md](mutations.md)).
"""

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
    Difference("Rounding or formula: float64", """
In float32 the three runs drift apart during training, and rounding amplified by Adam could explain
it. In float64 rounding is ~1e-16, so `precision="float64"` separates rounding from formula. It
found three formula differences: Keras' epsilon hat (above); Keras' `ExponentialDecay`, which
computes the learning rate in float32 even for float64 variables (and, given a float64 rate, still
rounds the decay factor 0.8 to float32); optax's `exponential_decay`, which divides the int32 step
count and so gives a float32 learning rate even with JAX's x64 mode on (optax's Adam itself computes
its bias corrections in float64 then). `adam="reference"` runs one formula, PyTorch's and optax's,
in all three backends (`common/reference.py`, `adam_step`); with it, in float64, every pair agrees
to about 5e-15 (relative) after 20 epochs, where a single one of those differences shows as 1e-8.
Over 500 epochs training amplifies rounding too, so the yardstick is a **rounding control**: the
same backend with its learning rate one ulp up, the same math one rounding apart.
`python benchmarks/trajectories.py` measures the final images' PSNR (on the float images; 8-bit
images saturate). At the cpu preset, 150x225 and 500 epochs, float64 with the reference Adam:
the pairs' final images are 254.4 dB (torch vs tensorflow), 230.8 dB (torch vs jax) and 230.4 dB (tensorflow vs jax) apart, their 8-bit images identical, and torch against its own lr + 1 ulp run 253.5 dB. At 32x48 training amplifies rounding much more: each backend against its own
lr + 1 ulp run ends 65.5-68.6 dB apart, and the pairs 64.4-73.4 dB, so that drift is rounding too.
With each framework's stock Adam the pairs end 26.8-30.0 dB apart in float64 (32x48), as far as in
float32: that drift is formula, not rounding; in float32 the default run's images are 26-27 dB
apart after 200 epochs at 150x225 (the results above).
""", ("tests/test_float64.py::test_reference_adam_trajectories_agree",
          "tests/test_float64.py::test_reference_adam_matches_numpy",
          "tests/test_float64.py::test_diverge_in_float64_finds_the_formula_difference",
          "tests/test_float64.py::test_jax_x64_stays_inside_the_float64_backend")),
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
agreement tests use inputs without exact ties (`tools/agreement.py`, `images()`), and the near-ties
that remain are why an XLA CPU option that sums in another order, 6% faster, was turned down
(`benchmarks/RESULTS.md`).
""", ("tests/test_agreement.py::test_loss_and_gradient_at_the_content_image",
          "tests/test_jax_backend.py::test_max_pool_gradient_is_lax_reduce_windows_own_ties_included",
          "tests/test_keras_file_backends.py::test_loss_and_grad_match_torch")),
)


# --- the last section, and the whole chapter ------------------------------------------------

REBUILD = Part(None, f"""
`{COMMAND}` (that is, `python docs/build_chapter.py`) rebuilds `docs/chapter.md` and
`docs/chapter.html` from the source and from the latest run's files in `docs/`. `make test` runs
`tests/test_chapter.py`, which fails when the committed page differs from what the source builds.
""", (Shell(COMMAND),))


# d2l's steps, in its order: the chapter's middle and the notebooks' whole.
STEPS = (READING, PREPROCESSING, FEATURES, LOSSES, SYNTHESIZED, TRAINING, RECIPES)


def chapter(results: Section) -> list[Section]:
    """The whole chapter; ``results`` is the results section, filled in from a run's files."""
    intro = Section("intro", "Neural style transfer in PyTorch, TensorFlow and JAX", (INTRO, INTERFACE, RUN_IT))
    differences = Section("differences", "What differs between the frameworks, and why it matters", (
        Part(None, DIFFERENCES_INTRO),
        *(Part(d.title, d.text, (Tests(d.tests),)) for d in DIFFERENCES),
    ))
    return [intro, *STEPS, results, differences,
            Section("rebuilding", "Rebuilding this page", (REBUILD,))]
