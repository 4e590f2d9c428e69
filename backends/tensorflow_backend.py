"""TensorFlow backend: d2l 13.12's PyTorch listing, with explicit named taps.

Keras' own VGG19 (``keras.applications.VGG19``, NHWC), frozen; the
synthesized image is the only ``tf.Variable`` trained; Keras' Adam with an
``ExponentialDecay(staircase=True)`` schedule, which is PyTorch's StepLR; one
``tf.function`` per training run.
"""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# Before TensorFlow's first import, and only if the user chose nothing: fewer C++ log lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Keras 3 runs on whichever framework KERAS_BACKEND names; this backend needs TensorFlow.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# oneDNN's convolutions on every x86 CPU, unless the user chose. TensorFlow's own default
# (DefaultOneDnnPolicy in tensorflow/core/util/port.cc) turns them on only for CPUs with
# AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX: on an AVX2-only EPYC its convolutions were then
# Eigen's, 1.6x slower than on an AVX-512 one (benchmarks/RESULTS.md, "TensorFlow on AVX2").
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import backends  # noqa: E402
from backends.tensorflow_lbfgs import LBFGS  # noqa: E402
from common import devices, keras_weights  # noqa: E402
from common import weights as weight_sets  # noqa: E402
from common.backend import BackendBase, RunPlan  # noqa: E402
from common.errors import BackendUnavailable, UserError, WeightsUnavailable  # noqa: E402
from common.interface import LossParts  # noqa: E402
from common.reference import ADAM_BETAS, NORMALIZED_STEP_EPS  # noqa: E402
from common.vgg import FeaturePlan, conv_layers, keras_name, layers_of  # noqa: E402

# Native weights are Keras' ImageNet VGG19 file (common/keras_weights.py), downloaded
# by Keras when its cache lacks it; this bounds each connect or read, not the whole file.
DOWNLOAD_TIMEOUT_S = 30

# XLA or not for the training step. Measured at 150x225, bundled weights, TF 2.21
# on 2 shared CPU cores, seconds per step after 4 warm-up steps, best / median of
# 5-step blocks taken in turn: tf.function 0.26 / 0.32, tf.function(jit_compile=
# True) 0.31 / 0.61 (two runs agreed), and XLA's first step takes 2-4 s, not 1 s.
JIT_COMPILE = False

# Each architecture's Keras model (layers block{b}_conv{c}, block{b}_pool, as the weight files name them).
APPLICATIONS = {"vgg19": keras.applications.VGG19, "vgg16": keras.applications.VGG16}

@dataclass
class TensorFlowState:
    gen_img: tf.Variable  # d2l's SynthesizedImage: the image itself is the only trained variable
    # Adam (its schedule d2l's StepLR), the TF1 tutorial's NormalizedStep, or torch's L-BFGS (tensorflow_lbfgs)
    trainer: keras.optimizers.Optimizer | LBFGS
    contents_Y: list
    styles_Y_gram: list
    run: RunPlan  # the config's recipe, layers, taps and loss weights
    step: Callable[[], LossParts] | None = None  # this run's compiled training step


class TensorFlowBackend(BackendBase):
    name = "tensorflow"

    def __init__(self, **kwargs):
        if keras.backend.backend() != "tensorflow":
            raise BackendUnavailable(
                f"Keras runs on {keras.backend.backend()!r} in this process; the tensorflow backend needs "
                "KERAS_BACKEND=tensorflow"
            )
        _enable_gpu_memory_growth()  # before any op, and native weights build a model
        super().__init__(**kwargs)
        self.device = _device_name(self.requested_device)
        # Strict float32 unless asked: TensorFlow uses TF32 for convolutions and matmuls by default.
        tf.config.experimental.enable_tensor_float_32_execution(self.precision == "tf32")
        # bf16: Keras mixed precision, per layer (no global policy): bfloat16 compute, float32 variables.
        # float64: float64 layers, variables and image.
        self.dtype = tf.float64 if self.precision == "float64" else tf.float32
        self.dtype_policy = keras.DTypePolicy({"bf16": "mixed_bfloat16", "float64": "float64"}.get(self.precision,
                                                                                                  "float32"))
        self.jit_compile = JIT_COMPILE
        with tf.device(self.device):
            self.net = self._build_net()
            self.set_input_convention(tf.constant, (1, 1, 1, 3))  # NHWC

    def _build_net(self) -> list:
        """Keras' VGG19 (or VGG16, as the weights say) as a list of layers indexed like torchvision's
        ``features``."""
        # keras.applications takes no dtype: its layers are built under our policy, which is then restored.
        previous_policy = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.dtype_policy)
        try:
            application = APPLICATIONS[self.weights.architecture]  # the weights say which VGG they are
            vgg = application(include_top=False, weights=None, input_shape=(None, None, 3))
        finally:
            keras.config.set_dtype_policy(previous_policy)
        vgg.trainable = False
        net = []
        for layer in layers_of(self.weights.architecture):
            if layer.kind == "conv":
                conv = vgg.get_layer(keras_name(layer.name))
                conv.set_weights([
                    weight_sets.oihw_to_hwio(self.weights.params[layer.weight_key]),
                    self.weights.params[layer.bias_key],
                ])
                # Keras fuses the ReLU into the convolution; taps are explicit
                # (common/vgg.py), so the ReLU becomes its own entry, as in torchvision.
                conv.activation = None
                net.append(conv)
            elif layer.kind == "relu":
                net.append(keras.layers.ReLU(name=layer.name))
            else:
                net.append(vgg.get_layer(layer.name.replace("pool", "block") + "_pool"))  # pool3 -> block3_pool
        for module in net:
            module.dtype_policy = self.dtype_policy
        return net

    # --- tensors --------------------------------------------------------------------------

    def from_numpy(self, x: np.ndarray) -> tf.Tensor:
        x = np.asarray(x, dtype=self.numpy_dtype)
        if x.ndim == 4:
            x = np.transpose(x, (0, 2, 3, 1))  # NCHW -> NHWC
        with tf.device(self.device):
            return tf.constant(x)

    def to_numpy(self, t) -> np.ndarray:
        if isinstance(t, (tf.Tensor, tf.Variable)):
            t = tf.cast(t, self.dtype).numpy()
        t = np.asarray(t)
        if t.ndim == 4:
            t = np.transpose(t, (0, 3, 1, 2))  # NHWC -> NCHW
        return t

    # TensorFlow's .numpy() waits for the value, so synchronize needs nothing (BackendBase).

    def device_name(self) -> str | None:
        if not self.device.startswith("/GPU"):
            return None
        gpu = tf.config.list_physical_devices("GPU")[int(self.device.rpartition(":")[2])]
        return tf.config.experimental.get_device_details(gpu).get("device_name")

    def peak_device_bytes(self) -> int | None:
        if not self.device.startswith("/GPU"):
            return None
        return tf.config.experimental.get_memory_info(self.device.lstrip("/"))["peak"]

    def framework_cuda_version(self) -> str | None:
        return tf.sysconfig.get_build_info().get("cuda_version") if self.device.startswith("/GPU") else None

    def speed_settings(self) -> dict:
        from tensorflow.python.util import _pywrap_util_port

        return {"onednn": _pywrap_util_port.IsMklEnabled(), "jit_compile": self.jit_compile,
                "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
                "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads()}

    def square_matmul(self, n: int):
        with tf.device(self.device):
            a = tf.cast(tf.random.normal((n, n), seed=0), self.dtype_policy.compute_dtype)

        def product():
            with tf.device(self.device):
                return tf.linalg.matmul(a, a)

        return product

    # --- model and losses -----------------------------------------------------------------

    def _features(self, X, plan: FeaturePlan):
        wanted = set(plan.content + plan.style)
        outputs = {}
        with tf.device(self.device):
            transform = self.input_transforms[plan.space]
            if transform is not None:
                X = tf.gather(X, transform.order, axis=-1) * transform.scale + transform.shift
            for layer in plan.layers:
                X = self.net[layer.index](X)
                if layer.name in wanted:
                    outputs[layer.name] = tf.cast(X, self.dtype)  # bf16 computes only inside the network
        return [outputs[name] for name in plan.content], [outputs[name] for name in plan.style]

    def gram(self, X, normalized=True):
        num_channels, n = X.shape[-1], X.shape.num_elements() // X.shape[-1]
        X = tf.reshape(X, (n, num_channels))  # NHWC: one row per pixel, so X^T X is C x C
        G = tf.matmul(X, X, transpose_a=True)
        return G / (num_channels * n) if normalized else G

    def content_loss(self, Y_hat, Y):
        # Y is a target: no gradient flows into the content image.
        return tf.reduce_mean(tf.square(Y_hat - tf.stop_gradient(Y)))

    def style_loss(self, Y_hat, gram_Y, normalized=True):
        return tf.reduce_mean(tf.square(self.gram(Y_hat, normalized) - tf.stop_gradient(gram_Y)))

    def tv_loss(self, Y_hat, scale=0.5):
        return scale * (
            tf.reduce_mean(tf.abs(Y_hat[:, 1:, :, :] - Y_hat[:, :-1, :, :]))
            + tf.reduce_mean(tf.abs(Y_hat[:, :, 1:, :] - Y_hat[:, :, :-1, :]))
        )

    def stop_gradient(self, t):
        return tf.stop_gradient(t)

    # --- training -------------------------------------------------------------------------

    def init_state(self, X, contents_Y, styles_Y, config) -> TensorFlowState:
        run = self.run_plan(config)
        recipe = run.recipe
        with tf.device(self.device):
            gen_img = tf.Variable(tf.cast(X, self.dtype), name="gen_img")
            if recipe.optimizer == "lbfgs":
                if run.optimizer == "native":
                    raise UserError(f"optimizer native: {backends.REGISTRY[self.name].no_native_lbfgs}")
                trainer = LBFGS(gen_img, recipe.lbfgs)
            elif recipe.optimizer == "normalized-step":
                trainer = NormalizedStep(recipe.step_size, recipe.clamp)
            elif config.adam == "reference":
                lr = StepLR(config.lr, config.lr_decay_epoch, config.lr_decay, dtype=self.dtype)
                trainer = ReferenceAdam(learning_rate=lr, epsilon=config.adam_eps)
            else:
                # Keras adds epsilon to sqrt(v) before v's bias correction ("epsilon hat"),
                # PyTorch after it: the same adam_eps weighs 1/sqrt(1 - 0.999**t) times more here.
                # Its schedule computes the lr in float32 (Keras' floatx), whatever the image's dtype.
                lr = step_lr(config.lr, config.lr_decay_epoch, config.lr_decay)
                trainer = keras.optimizers.Adam(learning_rate=lr, epsilon=config.adam_eps)
            if isinstance(trainer, keras.optimizers.Optimizer):
                trainer.build([gen_img])  # Adam's moments, created now rather than inside tf.function
            styles_Y_gram = [self.gram(Y, run.formula.gram_normalized) for Y in styles_Y]
        state = TensorFlowState(gen_img, trainer, list(contents_Y), styles_Y_gram, run)

        def step() -> LossParts:
            with tf.GradientTape() as tape:
                losses = self._loss(state, state.gen_img)
            grad = tape.gradient(losses.total, state.gen_img)
            state.trainer.apply_gradients([(grad, state.gen_img)])
            return losses

        def evaluate(X):  # the PyTorch tutorial's closure: clamp, then the loss and its gradient there
            X = tf.clip_by_value(X, *recipe.clamp)
            with tf.GradientTape() as tape:
                tape.watch(X)
                losses = self._loss(state, X)
            return X, losses, tape.gradient(losses.total, X)

        if isinstance(trainer, LBFGS):
            step = lambda: state.trainer.step(evaluate)  # noqa: E731  one optimizer.step(closure)
        state.step = tf.function(step, jit_compile=self.jit_compile)
        return state

    def _loss(self, state: TensorFlowState, X) -> LossParts:
        contents_Y_hat, styles_Y_hat = self._features(X, state.run.features)
        return self.summed_losses(X, contents_Y_hat, styles_Y_hat, state)

    def train_step(self, state: TensorFlowState):
        with tf.device(self.device):
            losses = state.step()
        return state, losses

    def loss_and_grad(self, state: TensorFlowState):
        with tf.device(self.device), tf.GradientTape() as tape:
            losses = self._loss(state, state.gen_img)
        return losses, tape.gradient(losses.total, state.gen_img)

    def evaluations(self, state: TensorFlowState) -> int | None:
        return int(state.trainer.evaluations.numpy()) if isinstance(state.trainer, LBFGS) else None

    def current_image(self, state: TensorFlowState):
        X = state.gen_img.read_value()
        clamp = state.run.recipe.clamp
        return tf.clip_by_value(X, *clamp) if clamp else X  # the PyTorch tutorial clamps once more at the end

    # --- native weights -------------------------------------------------------------------

    def load_native_weights(self, architecture: str = "vgg19") -> weight_sets.WeightSet:
        """Keras' ImageNet VGG19 (or VGG16; no top) from Keras' cache folder."""
        return load_native_weights(architecture=architecture)


def _enable_gpu_memory_growth() -> None:
    """Let TensorFlow take GPU memory as it needs it, instead of nearly all of it at start."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # this GPU is initialized already; its setting can no longer change


def _device_name(requested: str | devices.Device | None) -> str:
    """A parsed device (None: a GPU if there is one) as TensorFlow's "/CPU:0" or "/GPU:i"."""
    requested = devices.parse(requested)
    gpus = tf.config.list_physical_devices("GPU")
    if requested is None:
        return "/GPU:0" if gpus else "/CPU:0"
    if requested.kind == "gpu" and requested.index >= len(gpus):
        raise devices.missing(requested, "TensorFlow", len(gpus))
    return f"/{requested.kind.upper()}:{requested.index}"


def step_lr(lr: float, lr_decay_epoch: int, lr_decay: float) -> keras.optimizers.schedules.LearningRateSchedule:
    """PyTorch's StepLR as a Keras schedule.

    Keras evaluates the schedule at the number of finished steps, so epoch e
    (0-based) uses lr * lr_decay ** (e // lr_decay_epoch).
    """
    return keras.optimizers.schedules.ExponentialDecay(
        lr, decay_steps=lr_decay_epoch, decay_rate=lr_decay, staircase=True
    )


class StepLR(keras.optimizers.schedules.LearningRateSchedule):
    """``step_lr`` computed in ``dtype`` throughout, for the reference Adam.

    ExponentialDecay, even given a float64 initial lr, rounds the decay rate to
    float32 (0.3 * 0.8 gives 0.24000000358): float64 runs part ways at the first decay.
    """

    def __init__(self, lr: float, lr_decay_epoch: int, lr_decay: float, dtype=tf.float32):
        self.lr, self.lr_decay_epoch, self.lr_decay, self.dtype = lr, lr_decay_epoch, lr_decay, dtype

    def __call__(self, step):
        decays = tf.cast(step // self.lr_decay_epoch, self.dtype)
        return tf.constant(self.lr, self.dtype) * tf.constant(self.lr_decay, self.dtype) ** decays

    def get_config(self):
        return {"lr": self.lr, "lr_decay_epoch": self.lr_decay_epoch, "lr_decay": self.lr_decay,
                "dtype": tf.as_dtype(self.dtype).name}


class ReferenceAdam(keras.optimizers.Optimizer):
    """Adam as ``common.reference.adam_step`` writes it, in the variable's dtype (``adam="reference"``).

    Keras' own Adam differs in one place: it adds epsilon to sqrt(v) before v's bias correction.
    """

    def __init__(self, learning_rate, epsilon: float, betas=ADAM_BETAS, name="reference_adam", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1, self.beta_2 = betas
        self.epsilon = epsilon

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._m = [self.add_variable_from_reference(v, "m") for v in var_list]
        self._v = [self.add_variable_from_reference(v, "v") for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        b1, b2 = self.beta_1, self.beta_2
        index = self._get_variable_index(variable)
        m, v = self._m[index], self._v[index]
        lr = tf.cast(learning_rate, variable.dtype)
        t = tf.cast(self.iterations + 1, variable.dtype)
        m.assign(b1 * m + (1 - b1) * gradient)
        v.assign(b2 * v + (1 - b2) * gradient * gradient)
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        variable.assign_sub(lr * (m_hat / (tf.sqrt(v_hat) + self.epsilon)))

    def get_config(self):
        return {**super().get_config(), "betas": (self.beta_1, self.beta_2), "epsilon": self.epsilon}


class NormalizedStep(keras.optimizers.Optimizer):
    """The TF1 tutorial's update (``common.reference.normalized_step``): X -= g * lr / (std(g) + eps), clipped."""

    def __init__(self, learning_rate: float, clamp: tuple[float, float], epsilon: float = NORMALIZED_STEP_EPS,
                 name="normalized_step", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.clamp, self.epsilon = clamp, epsilon

    def update_step(self, gradient, variable, learning_rate):
        lr = tf.cast(learning_rate, variable.dtype)
        variable.assign(tf.clip_by_value(variable - gradient * (lr / (tf.math.reduce_std(gradient) + self.epsilon)),
                                         *self.clamp))

    def get_config(self):
        return {**super().get_config(), "clamp": self.clamp, "epsilon": self.epsilon}


def load_native_weights(expected_md5: str | None = None, architecture: str = "vgg19") -> weight_sets.WeightSet:
    """Keras' VGG19 (or VGG16) weights as a WeightSet keyed like torchvision (OIHW), Caffe input convention.

    From Keras' cache folder; when it lacks the file, Keras downloads it (``keras.utils.get_file``).
    """
    path = keras_weights.cache_path(architecture)
    if not path.exists():
        path = _download(architecture)
    keras_weights.verify(path, expected_md5, architecture)
    # Keras reads its own file format: build the model from the file, then read the arrays back.
    vgg = APPLICATIONS[architecture](include_top=False, weights=os.fspath(path), input_shape=(None, None, 3))
    params = {}
    for conv in conv_layers(architecture):
        kernel, bias = vgg.get_layer(keras_name(conv.name)).get_weights()
        params[conv.weight_key] = np.ascontiguousarray(weight_sets.hwio_to_oihw(kernel), np.float32)
        params[conv.bias_key] = np.asarray(bias, dtype=np.float32)
    return keras_weights.weight_set(params, f"keras.applications {path.name}", weight_sets.native_name(architecture),
                                    architecture)


def _download(architecture: str = "vgg19") -> Path:
    """Keras' own download into its cache folder (Keras checks the md5 too); WeightsUnavailable offline."""
    folder = keras_weights.cache_dir()
    facts = keras_weights.keras_file(architecture)
    try:
        folder.mkdir(parents=True, exist_ok=True)  # else get_file, finding no writable folder, uses /tmp/.keras
    except OSError:
        pass  # read-only: get_file's /tmp/.keras it is
    timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # Keras' urlretrieve has none: a firewall would hang it
    try:
        return Path(keras.utils.get_file(
            facts.file_name, facts.url, file_hash=facts.md5,
            cache_dir=os.fspath(folder.parent), cache_subdir=folder.name,
        ))
    except Exception as exc:  # offline: Keras raises a bare Exception naming the URL
        # Keras words it "URL fetch failure on <url>: <code> -- <reason>"; keep the reason.
        reason = (str(exc).splitlines() or [type(exc).__name__])[0].rpartition(" -- ")[2]
        why = f"downloading it failed: {reason}"
        raise WeightsUnavailable(keras_weights.missing_message(why, architecture)) from None
    finally:
        socket.setdefaulttimeout(timeout)
