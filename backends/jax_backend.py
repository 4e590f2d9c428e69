"""JAX backend: d2l 13.12's listing as pure functions, with explicit named taps.

VGG19's ``features`` as a Flax NNX module (NHWC), split once into its graph
definition and its weights; the weights are an argument of every compiled
function but never differentiated and never in the optimizer state. The
synthesized image is the only thing trained: one ``jax.jit``-compiled step
computes the features, the losses, ``jax.value_and_grad`` with respect to the
image and the optax Adam update, whose staircase exponential decay is d2l's
StepLR.

Flax NNX rather than Linen: NNX is the API Flax recommends for new code (Linen
is maintained, not developed), and its functional API (``nnx.split`` /
``nnx.merge``) gives exactly the pure ``(weights, image) -> features`` function
that ``jax.jit`` wants, with the network written as plain Python objects that
index like torchvision's ``features[i]``.
"""

from __future__ import annotations

import os

# JAX reserves most of a GPU's memory at start-up unless told otherwise; the
# other backends in the same process (and the comparison's timings) need it.
# Only effective before jax is first imported.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from functools import lru_cache, partial, wraps
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct

from backends import jax_lbfgs
from common import devices, keras_weights
from common import weights as weight_sets
from common.backend import BackendBase, RunPlan
from common.config import DEFAULT_TAPS
from common.image_space import D2L_NORMALIZED
from common.interface import LossParts
from common.reference import ADAM_BETAS, NORMALIZED_STEP_EPS
from common.vgg import FeaturePlan, Layer, conv_layers, layers_of

# Steps per compiled program in ``train`` on the CPU when reports come at least
# this far apart: one dispatch, and XLA schedules the steps together. At 150x225
# on 2 CPU cores, 5 unrolled steps took 290 ms a step against 303 ms for single
# steps; a rolled lax.scan was 2.6x slower. Not measured on a GPU, so not used there.
STEPS_PER_DISPATCH = 5

# How each precision setting runs the convolutions and the Gram matmul.
CONV_PRECISION = {"float32": jax.lax.Precision.HIGHEST, "tf32": jax.lax.Precision.DEFAULT,
                  "bf16": jax.lax.Precision.DEFAULT, "float64": jax.lax.Precision.HIGHEST}
MATMUL_PRECISION = {"float32": jax.lax.Precision.HIGHEST, "tf32": jax.lax.Precision.DEFAULT,
                    "bf16": jax.lax.Precision.HIGHEST,  # bf16: losses stay strict float32
                    "float64": jax.lax.Precision.HIGHEST}
COMPUTE_DTYPE = {"float32": jnp.float32, "tf32": jnp.float32, "bf16": jnp.bfloat16, "float64": jnp.float64}

# Where the network uses the hand-written gradients of max_pool and frozen_conv3x3 below. Both replace
# XLA CPU code that measured slow (a serial select_and_scatter, a kernel transpose in every step);
# neither was measured on a GPU, where XLA's own gradients are kept.
CUSTOM_GRADIENT_PLATFORMS = ("cpu",)


def x64_as_needed(method):
    """Run a backend method with JAX's x64 mode set as the backend's precision needs it.

    x64 (64-bit dtypes) is a process-wide JAX setting; a float64 backend needs it
    on, and a float32 one needs JAX's 32-bit defaults. JAX sets it per thread
    with a context manager, so each backend sets it around its own calls only:
    other JAX code in the process, and float32 backends beside a float64 one,
    see no change. Arrays the backend returns keep their dtype.
    """

    @wraps(method)
    def scoped(self, *args, **kwargs):
        with jax.enable_x64(self.precision == "float64"):
            return method(self, *args, **kwargs)

    return scoped


def abs_(x):
    """|x| whose gradient at 0 is 0, as in PyTorch and TensorFlow; ``jnp.abs``'s is 1 there.

    It matters for the TV loss: the content image, where d2l starts, has many
    equal neighbouring pixels.
    """
    return jnp.sign(x) * x


def pool2x2(x):
    """VGG's 2x2, stride-2 max pooling (NHWC), with XLA's own gradient."""
    return nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))


@jax.custom_vjp
def max_pool(x):
    """``pool2x2`` with a gradient that XLA runs fast on the CPU.

    The gradient goes to the first maximum of each window in row-major order,
    bit for bit as ``lax.reduce_window``'s own (``select_and_scatter``) does,
    ties included (tests/test_jax_backend.py). XLA's CPU ``select_and_scatter`` is a
    serial loop: at 150x225 the four poolings' gradients took 42 ms of a 373 ms
    step; written with ``argmax`` and a one-hot they take 2 ms.
    """
    return pool2x2(x)


def _max_pool_fwd(x):
    return max_pool(x), x


def _max_pool_bwd(x, g):
    n, h, w, c = x.shape
    h2, w2 = h // 2, w // 2  # an odd last row or column is dropped, as in the forward pass
    windows = x[:, : 2 * h2, : 2 * w2].reshape(n, h2, 2, w2, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(n, h2, w2, c, 4)
    routed = jax.nn.one_hot(jnp.argmax(windows, axis=-1), 4, dtype=g.dtype) * g[..., None]
    dx = routed.reshape(n, h2, w2, c, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(n, 2 * h2, 2 * w2, c)
    return (jnp.pad(dx, ((0, 0), (0, h % 2), (0, w % 2), (0, 0))),)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def conv3x3(x, kernel, precision):
    """VGG's convolution: 3x3, stride 1, zero padding 1, NHWC activations and HWIO kernels."""
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        precision=precision)


def input_grad_kernel(kernel: np.ndarray) -> np.ndarray:
    """The kernel whose convolution is a 3x3 convolution's gradient w.r.t. its input: flipped in space, I and O swapped."""
    return np.ascontiguousarray(np.flip(kernel, (0, 1)).swapaxes(2, 3))


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def frozen_conv3x3(x, kernel, grad_kernel, precision):
    """``conv3x3`` differentiated w.r.t. ``x`` only, with the input-gradient kernel given.

    XLA derives that kernel inside every compiled step, with a transpose that
    took 45 of 343 ms per step at 150x225 on the CPU; VGG's weights never
    change, so the backend computes it once, when it loads them.
    """
    return conv3x3(x, kernel, precision)


def _frozen_conv3x3_fwd(x, kernel, grad_kernel, precision):
    return conv3x3(x, kernel, precision), grad_kernel


def _frozen_conv3x3_bwd(precision, grad_kernel, g):
    return conv3x3(g, grad_kernel.astype(g.dtype), precision), None, None  # None: no gradient for the weights


frozen_conv3x3.defvjp(_frozen_conv3x3_fwd, _frozen_conv3x3_bwd)


class FrozenConv(nnx.Module):
    """``nnx.Conv(in, out, (3, 3), padding="SAME")`` for pretrained weights that are never trained."""

    def __init__(self, in_channels, out_channels, *, precision, dtype, rngs: nnx.Rngs, custom_gradient=True):
        self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), (3, 3, in_channels, out_channels)))
        self.grad_kernel = nnx.Variable(jnp.zeros((3, 3, out_channels, in_channels)))  # input_grad_kernel(kernel)
        self.bias = nnx.Param(jnp.zeros((out_channels,)))
        self.precision, self.dtype, self.custom_gradient = precision, dtype, custom_gradient

    def __call__(self, x):
        x, kernel, bias = (a.astype(self.dtype) for a in (x, self.kernel[...], self.bias[...]))
        if self.custom_gradient:
            return frozen_conv3x3(x, kernel, self.grad_kernel[...], self.precision) + bias
        return conv3x3(x, kernel, self.precision) + bias


class VGG(nnx.Module):
    """torchvision's ``vgg19().features`` (or another table of common/vgg.py's, VGG16's) in NHWC:
    ``layers[i]`` is ``features[i]``."""

    def __init__(self, table: tuple[Layer, ...], *, precision, dtype, custom_gradients: bool, rngs: nnx.Rngs):
        def make(layer):
            if layer.kind == "conv":
                return FrozenConv(layer.in_channels, layer.out_channels, precision=precision, dtype=dtype, rngs=rngs,
                                  custom_gradient=custom_gradients)
            if layer.kind == "relu":
                return nnx.relu
            return max_pool if custom_gradients else pool2x2

        self.layers = nnx.List([make(layer) for layer in table])


@struct.dataclass
class JaxState:
    """Arrays are pytree leaves; the rest is static and keys the compiled step."""

    X: jax.Array  # the synthesized image (NHWC): the only thing trained
    opt_state: optax.OptState  # optax's, or jax_lbfgs.LBFGSState for torch's L-BFGS
    contents_Y: list
    styles_Y_gram: list
    evaluations: jax.Array  # L-BFGS' loss evaluations (closure calls) so far
    tx: optax.GradientTransformation | None = struct.field(pytree_node=False)  # None: jax_lbfgs
    run: RunPlan = struct.field(pytree_node=False)  # the config's recipe, layers, taps and loss weights


def step_lr(lr: float, lr_decay_epoch: int, lr_decay: float) -> optax.Schedule:
    """PyTorch's StepLR as an optax schedule: step e (0-based) uses lr * lr_decay ** (e // lr_decay_epoch)."""
    return optax.exponential_decay(lr, transition_steps=lr_decay_epoch, decay_rate=lr_decay, staircase=True)


@lru_cache(maxsize=16)
def adam_with_step_lr(lr: float, lr_decay_epoch: int, lr_decay: float, eps: float) -> optax.GradientTransformation:
    """d2l's optimizer: Adam whose step count drives StepLR (the first update uses count 0).

    Cached, so equal settings give the same object and the compiled step is reused.
    """
    schedule = step_lr(lr, lr_decay_epoch, lr_decay)
    # optax computes Adam's bias correction 1 - 0.999**t in JAX's default float
    # dtype: float32, unless x64 is on (float64 here), PyTorch always in float64.
    # In float32, optax's first steps are ~6.5e-6 (relative) shorter; with other
    # rounding, Adam's sign-like updates grow that to ~3e-4 in the losses by
    # step 5. Kept: it is what optax users get.
    return optax.adam(schedule, eps=eps)


@lru_cache(maxsize=16)
def reference_adam_with_step_lr(lr: float, lr_decay_epoch: int, lr_decay: float, eps: float):
    """The reference Adam (``adam="reference"``) chained with StepLR, like ``adam_with_step_lr``."""
    # Not optax's exponential_decay: it divides the int32 step count, which gives float32
    # even with x64 on; here lr_decay ** (whole decays) is in JAX's default float, float64 with x64.
    schedule = lambda count: lr * lr_decay ** (count // lr_decay_epoch)  # noqa: E731
    return optax.chain(scale_by_reference_adam(eps), optax.scale_by_learning_rate(schedule))


def normalized_step(step_size: float, eps: float = NORMALIZED_STEP_EPS) -> optax.GradientTransformation:
    """The TF1 tutorial's update (``common.reference.normalized_step``): -g * step_size / (std(g) + eps);
    the clip to its bounds is a projection after ``apply_updates``."""

    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda g: -g * (step_size / (jnp.std(g) + eps)), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


class ReferenceAdamState(NamedTuple):
    count: jax.Array  # finished steps
    mu: optax.Updates
    nu: optax.Updates


def scale_by_reference_adam(eps: float, betas=ADAM_BETAS) -> optax.GradientTransformation:
    """Adam's direction m_hat / (sqrt(v_hat) + eps) as ``common.reference.adam_step`` writes it,
    bias corrections included, in the updates' dtype; the learning rate is the next transformation's.
    """
    b1, b2 = betas

    def init(params):
        return ReferenceAdamState(jnp.zeros([], jnp.int32), jax.tree.map(jnp.zeros_like, params),
                                  jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del params
        count = state.count + 1
        mu = jax.tree.map(lambda g, m: b1 * m + (1 - b1) * g, updates, state.mu)
        nu = jax.tree.map(lambda g, v: b2 * v + (1 - b2) * g * g, updates, state.nu)

        def direction(m, v):
            t = count.astype(m.dtype)
            m_hat = m / (1 - b1**t)
            v_hat = v / (1 - b2**t)
            return m_hat / (jnp.sqrt(v_hat) + eps)

        return jax.tree.map(direction, mu, nu), ReferenceAdamState(count, mu, nu)

    return optax.GradientTransformation(init, update)


class JaxBackend(BackendBase):
    name = "jax"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.jax_device = pick_device(self.requested_device)
        self.device = "cpu" if self.jax_device.platform == "cpu" else f"{self.jax_device.platform}:{self.jax_device.id}"
        self.steps_per_dispatch = STEPS_PER_DISPATCH if self.jax_device.platform == "cpu" else 1
        self.custom_gradients = self.jax_device.platform in CUSTOM_GRADIENT_PLATFORMS
        # Strict float32 unless asked: on recent NVIDIA GPUs JAX's DEFAULT precision is TF32-class.
        self.matmul_precision = MATMUL_PRECISION[self.precision]
        self.compute_dtype = COMPUTE_DTYPE[self.precision]
        self.dtype = jnp.float64 if self.precision == "float64" else jnp.float32  # image, losses, Adam
        with jax.enable_x64(self.precision == "float64"):  # see x64_as_needed
            self.net_def, self.params = self._build_net()
            self.set_input_convention(lambda a: jax.device_put(a, self.jax_device), (3,))  # NHWC's last axis
        # Each pure method below becomes, on this instance, its own compiled self (same name), compiled
        # once per shape and static settings. The VGG weights are an argument (not closed over), so they
        # are not baked into each program.
        self._features = jax.jit(self._features, static_argnames="plan")
        # optax.lbfgs' state passes some of its input buffers through to two outputs: donated, the next
        # step would donate one buffer twice. Its steps keep their input state instead.
        self._step_keeping_state = jax.jit(self._step)
        self._step = jax.jit(self._step, donate_argnames="state")
        self._steps = jax.jit(self._steps, static_argnames="num_steps", donate_argnames="state")
        self._value_and_grad = jax.jit(self._value_and_grad)

    def _build_net(self) -> tuple[nnx.GraphDef, nnx.State]:
        # Flax's checkpoint-restoring idiom: an abstract module (no random init), then our arrays.
        architecture = self.weights.architecture  # the weights say which VGG they are
        abstract = nnx.eval_shape(lambda: VGG(layers_of(architecture), precision=CONV_PRECISION[self.precision],
                                              dtype=self.compute_dtype, custom_gradients=self.custom_gradients,
                                              rngs=nnx.Rngs(0)))
        net_def, params = nnx.split(abstract)
        convs = conv_layers(architecture)
        kernels = {conv.index: weight_sets.oihw_to_hwio(self.weights.params[conv.weight_key]).astype(self.numpy_dtype)
                   for conv in convs}
        arrays = {
            "layers": {
                conv.index: {
                    "kernel": kernels[conv.index],
                    "grad_kernel": input_grad_kernel(kernels[conv.index]),
                    "bias": np.asarray(self.weights.params[conv.bias_key], self.numpy_dtype),
                }
                for conv in convs
            }
        }
        nnx.replace_by_pure_dict(params, jax.device_put(arrays, self.jax_device))
        return net_def, params

    # --- tensors --------------------------------------------------------------------------

    @x64_as_needed
    def from_numpy(self, x: np.ndarray) -> jax.Array:
        x = np.asarray(x, dtype=self.numpy_dtype)
        if x.ndim == 4:
            x = np.transpose(x, (0, 2, 3, 1))  # NCHW -> NHWC
        return jax.device_put(x, self.jax_device)

    @x64_as_needed
    def to_numpy(self, t) -> np.ndarray:
        x = np.asarray(jax.device_get(t), dtype=self.numpy_dtype)
        return np.transpose(x, (0, 3, 1, 2)) if x.ndim == 4 else x  # NHWC -> NCHW

    def synchronize(self) -> None:
        # JAX dispatches asynchronously; every queued computation ends in some live array.
        jax.block_until_ready(jax.live_arrays(self.jax_device.platform))

    def device_name(self) -> str | None:
        return self.jax_device.device_kind if self.jax_device.platform != "cpu" else None

    def peak_device_bytes(self) -> int | None:
        if self.jax_device.platform == "cpu":
            return None
        return (self.jax_device.memory_stats() or {}).get("peak_bytes_in_use")

    def framework_cuda_version(self) -> str | None:
        # "gpu" is JAX's CUDA platform (ROCm is "rocm"); its client reports the CUDA version it runs with.
        return self.jax_device.client.platform_version if self.jax_device.platform == "gpu" else None

    def square_matmul(self, n: int):
        a = jax.device_put(np.random.default_rng(0).standard_normal((n, n), dtype=np.float32), self.jax_device)
        a = a.astype(self.compute_dtype)
        product = jax.jit(lambda x: jnp.matmul(x, x, precision=CONV_PRECISION[self.precision]))
        return lambda: product(a)

    # --- model and losses -----------------------------------------------------------------

    @x64_as_needed
    def extract_features(self, X, content_layers, style_layers, taps=DEFAULT_TAPS, space=D2L_NORMALIZED):
        return self._features(self.params, X, plan=self.plan(content_layers, style_layers, taps, space))

    def _features(self, params, X, plan: FeaturePlan):
        net = nnx.merge(self.net_def, params)
        wanted = set(plan.content + plan.style)
        transform = self.input_transforms[plan.space]
        if transform is not None:
            X = X[..., transform.order] * transform.scale + transform.shift
        outputs = {}
        for layer in plan.layers:
            X = net.layers[layer.index](X)
            if layer.name in wanted:
                outputs[layer.name] = X.astype(self.dtype)  # bf16 computes only inside the network
        return [outputs[name] for name in plan.content], [outputs[name] for name in plan.style]

    @x64_as_needed
    def gram(self, X, normalized=True):
        num_channels, n = X.shape[-1], X.size // X.shape[-1]
        X = X.reshape((n, num_channels))  # NHWC: channels last, so X.T @ X is torch's X @ X.T
        G = jnp.matmul(X.T, X, precision=self.matmul_precision)
        return G / (num_channels * n) if normalized else G

    @x64_as_needed
    def content_loss(self, Y_hat, Y):
        # Y is a target: stop_gradient so no gradient flows into the content image.
        return jnp.square(Y_hat - jax.lax.stop_gradient(Y)).mean()

    @x64_as_needed
    def style_loss(self, Y_hat, gram_Y, normalized=True):
        return jnp.square(self.gram(Y_hat, normalized) - jax.lax.stop_gradient(gram_Y)).mean()

    @x64_as_needed
    def tv_loss(self, Y_hat, scale=0.5):
        return scale * (
            abs_(Y_hat[:, 1:, :, :] - Y_hat[:, :-1, :, :]).mean()
            + abs_(Y_hat[:, :, 1:, :] - Y_hat[:, :, :-1, :]).mean()
        )

    def stop_gradient(self, t):
        return jax.lax.stop_gradient(t)

    # --- training -------------------------------------------------------------------------

    @x64_as_needed
    def init_state(self, X, contents_Y, styles_Y, config) -> JaxState:
        run = self.run_plan(config)
        recipe = run.recipe
        if recipe.optimizer == "lbfgs":
            tx = optax.lbfgs() if run.optimizer == "native" else None  # None: jax_lbfgs, torch's algorithm
        elif recipe.optimizer == "normalized-step":
            tx = normalized_step(recipe.step_size)
        else:
            adam = reference_adam_with_step_lr if config.adam == "reference" else adam_with_step_lr
            tx = adam(config.lr, config.lr_decay_epoch, config.lr_decay, config.adam_eps)
        # Copies: the compiled step donates the state's buffers, never the caller's arrays.
        X = jnp.array(X, dtype=self.dtype, copy=True)
        styles_Y_gram = [self.gram(Y, run.formula.gram_normalized) for Y in styles_Y]
        # tx.init's step counts would be uncommitted, default-device arrays: put them on ours
        # (else the second step compiles again, and on a GPU machine device="cpu" would split).
        # The image lives in JaxState.X alone (the state is donated: one buffer, one owner), so L-BFGS' x is None.
        opt_state = jax_lbfgs.init(X, recipe.lbfgs)._replace(x=None) if tx is None else tx.init(X)
        opt_state = jax.device_put(opt_state, self.jax_device)
        evaluations = jax.device_put(jnp.zeros((), jnp.int32), self.jax_device)
        return JaxState(X, opt_state, [jnp.array(Y, copy=True) for Y in contents_Y], styles_Y_gram, evaluations,
                        tx, run)

    def _loss(self, params, state: JaxState, X) -> LossParts:
        contents_Y_hat, styles_Y_hat = self._features(params, X, plan=state.run.features)
        return self.summed_losses(X, contents_Y_hat, styles_Y_hat, state)

    def _value_and_grad(self, params, state: JaxState) -> tuple[LossParts, jax.Array]:
        """The losses at the state's image and the total's gradient w.r.t. the image only."""

        def total(X):
            losses = self._loss(params, state, X)
            return losses.total, losses

        (_, losses), grad = jax.value_and_grad(total, has_aux=True)(state.X)
        return losses, grad

    def _step(self, params, state: JaxState) -> tuple[JaxState, LossParts]:
        if state.run.recipe.optimizer == "lbfgs":
            return self._lbfgs_step(params, state)
        losses, grad = self._value_and_grad(params, state)
        updates, opt_state = state.tx.update(grad, state.opt_state)
        X = optax.apply_updates(state.X, updates)
        if state.run.recipe.optimizer == "normalized-step":  # the TF1 tutorial clips after each step
            X = optax.projections.projection_box(X, *state.run.recipe.clamp)
        return state.replace(X=X, opt_state=opt_state), losses

    def _lbfgs_step(self, params, state: JaxState) -> tuple[JaxState, LossParts]:
        """One ``optimizer.step(closure)`` of the PyTorch tutorial (up to 20 closure calls): torch's
        algorithm (jax_lbfgs), or optax's stock L-BFGS for as many iterations; the first evaluation's losses."""
        recipe = state.run.recipe

        def total(X):
            losses = self._loss(params, state, X)
            return losses.total, losses

        if state.tx is None:
            def evaluate(X):  # the tutorial's closure: clamp, then the loss and its gradient there
                X = jnp.clip(X, *recipe.clamp)
                (_, losses), grad = jax.value_and_grad(total, has_aux=True)(X)
                return X, losses, grad

            opt_state, losses = jax_lbfgs.step(state.opt_state._replace(x=state.X), evaluate, recipe.lbfgs)
            calls = opt_state.func_evals - state.opt_state.func_evals
            return state.replace(X=opt_state.x, opt_state=opt_state._replace(x=None),
                                 evaluations=state.evaluations + calls), losses
        losses = self._loss(params, state, jnp.clip(state.X, *recipe.clamp))  # for the record; not counted
        run = jax_lbfgs.optax_lbfgs(state.X, lambda X: total(X)[0], recipe.lbfgs.max_iter, recipe.clamp, state.tx,
                                    state.opt_state)
        return state.replace(X=run.x, opt_state=run.opt_state, evaluations=state.evaluations + run.evaluations), losses

    def _steps(self, params, state: JaxState, num_steps: int) -> tuple[JaxState, LossParts]:
        """``num_steps`` steps in one program, unrolled; the losses stacked along a new first axis."""
        return jax.lax.scan(lambda state, _: self._step(params, state), state, length=num_steps, unroll=True)

    @x64_as_needed
    def train_step(self, state: JaxState):
        """One compiled step; ``state`` is donated: use only the returned one afterwards."""
        step = self._step_keeping_state if state.run.optimizer == "native" else self._step
        return step(self.params, state)

    @x64_as_needed
    def loss_and_grad(self, state: JaxState):
        return self._value_and_grad(self.params, state)

    def evaluations(self, state: JaxState) -> int | None:
        # Counted by L-BFGS steps only: elsewhere a step is one evaluation, and reading it would wait for the device.
        return int(state.evaluations) if state.run.recipe.optimizer == "lbfgs" else None

    @x64_as_needed
    def current_image(self, state: JaxState):
        clamp = state.run.recipe.clamp
        return jnp.clip(state.X, *clamp) if clamp else state.X  # the PyTorch tutorial clamps once more at the end

    compute_loss = x64_as_needed(BackendBase.compute_loss)

    @x64_as_needed
    def train_steps(self, state: JaxState, num_steps: int):
        """Whole groups of ``steps_per_dispatch`` steps as one compiled, unrolled program each (one
        ``LossParts``, stacked, per group); the rest step by step, so one multi-step program is ever compiled.
        """
        if self.steps_per_dispatch == 1 or state.run.recipe.optimizer == "lbfgs":  # an L-BFGS step is long already
            return super().train_steps(state, num_steps)
        groups, rest = divmod(num_steps, self.steps_per_dispatch)
        losses = []
        for _ in range(groups):
            state, stacked = self._steps(self.params, state, num_steps=self.steps_per_dispatch)
            losses.append(stacked)
        state, singles = super().train_steps(state, rest)
        return state, losses + singles

    # --- native weights -------------------------------------------------------------------

    def load_native_weights(self, architecture: str = "vgg19") -> weight_sets.WeightSet:
        """Keras' ImageNet VGG19 or VGG16 (the original Caffe weights) from Keras' download cache."""
        return load_native_weights(architecture=architecture)


def pick_device(requested: str | devices.Device | None) -> jax.Device:
    """A parsed device (None: JAX's default, a GPU when there is one) as a JAX device."""
    requested = devices.parse(requested)
    if requested is None:
        return jax.devices()[0]
    try:
        found = jax.devices(requested.kind)
    except RuntimeError:  # no backend of that kind is installed or initialises
        found = []
    if requested.index >= len(found):
        raise devices.missing(requested, "JAX", len(found))
    return found[requested.index]


def load_native_weights(expected_md5: str | None = None, architecture: str = "vgg19") -> weight_sets.WeightSet:
    """Keras' ImageNet VGG19 (or VGG16) file (common/keras_weights.py) from Keras' cache folder, read with h5py.

    JAX has no official model zoo of its own: this never downloads and never imports TensorFlow.
    """
    # The install step fetches VGG19's file only; Keras downloads VGG16's when TensorFlow first asks for it.
    how = keras_weights.NOT_FETCHED if architecture == "vgg19" else "the tensorflow backend's native-vgg16 fetches it"
    return keras_weights.load(weight_sets.native_name(architecture), why_missing=f"JAX has no model zoo; {how}",
                              expected_md5=expected_md5, architecture=architecture)
