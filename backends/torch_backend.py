"""PyTorch backend: d2l 13.12's PyTorch listing, with explicit named taps.

torchvision's VGG19 ``features`` (NCHW), frozen; the synthesized image is the
only parameter; Adam plus StepLR, as in the book. The other recipes
(common/recipes.py): ``torch.optim.LBFGS`` driven by the PyTorch tutorial's
clamping closure, and the TF1 tutorial's normalized step as a ``torch.optim.Optimizer``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

from common import devices, weights as weight_sets
from common.backend import BackendBase, RunPlan
from common.errors import UserError, WeightsUnavailable
from common.interface import LossParts
from common.reference import ADAM_BETAS, NORMALIZED_STEP_EPS
from common.vgg import FeaturePlan, conv_layers

# torchvision's VGG19_Weights.IMAGENET1K_V1; the file name carries the first
# hex digits of its sha256, which torch checks on download and we on load.
NATIVE_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
NATIVE_FILE = "vgg19-dcbb9e9d.pth"
NATIVE_SHA256_PREFIX = "dcbb9e9d"
# VGG16_Weights.IMAGENET1K_V1, the TF1 tutorial's network (weights="native-vgg16").
VGG16_NATIVE_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
VGG16_NATIVE_FILE = "vgg16-397923af.pth"
VGG16_NATIVE_SHA256_PREFIX = "397923af"
# Each architecture's torchvision builder (ours keep only its ``features``).
BUILDERS = {"vgg19": torchvision.models.vgg19, "vgg16": torchvision.models.vgg16}


def native_file(architecture: str = "vgg19") -> tuple[str, str, str]:
    """(URL, file name, sha256 prefix) of torchvision's file, read from the constants now (tests seed their own)."""
    if architecture == "vgg16":
        return VGG16_NATIVE_URL, VGG16_NATIVE_FILE, VGG16_NATIVE_SHA256_PREFIX
    return NATIVE_URL, NATIVE_FILE, NATIVE_SHA256_PREFIX


class SynthesizedImage(nn.Module):
    """d2l's synthesized image: the image itself is the model's only parameter."""

    def __init__(self, img_shape):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(*img_shape))

    def forward(self):
        return self.weight


class ReferenceAdam(torch.optim.Optimizer):
    """Adam as ``common.reference.adam_step`` writes it, in the parameter's dtype (``adam="reference"``).

    ``torch.optim.Adam`` is the same formula, but computes the bias corrections
    as Python floats (float64 whatever the parameter's dtype) and rounds in
    another order (lr / (1 - b1^t) first, sqrt(v) / sqrt(1 - b2^t)).
    """

    def __init__(self, params, lr: float, eps: float, betas=ADAM_BETAS):
        super().__init__(params, {"lr": lr, "eps": eps, "betas": betas})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                state["step"] += 1
                t = torch.tensor(state["step"], dtype=p.dtype, device=p.device)
                m, v, g = state["exp_avg"], state["exp_avg_sq"], p.grad
                m.copy_(b1 * m + (1 - b1) * g)
                v.copy_(b2 * v + (1 - b2) * g * g)
                m_hat = m / (1 - b1**t)
                v_hat = v / (1 - b2**t)
                p.sub_(group["lr"] * (m_hat / (v_hat.sqrt() + group["eps"])))


class NormalizedStep(torch.optim.Optimizer):
    """The TF1 tutorial's update (``common.reference.normalized_step``): X -= g * lr / (std(g) + eps), clipped."""

    def __init__(self, params, lr: float, clamp: tuple[float, float], eps: float = NORMALIZED_STEP_EPS):
        super().__init__(params, {"lr": lr, "clamp": clamp, "eps": eps})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                p.sub_(g * (group["lr"] / (g.std(correction=0) + group["eps"])))  # np.std: the population's
                p.clamp_(*group["clamp"])


@dataclass
class TorchState:
    gen_img: SynthesizedImage
    trainer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None  # Adam's StepLR; the other optimizers have none
    contents_Y: list
    styles_Y_gram: list
    run: RunPlan  # the config's recipe, layers, taps and loss weights
    evaluations: int = 0  # closure calls


class TorchBackend(BackendBase):
    name = "torch"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.device = _torch_device(self.requested_device)
        # Strict float32 unless asked: PyTorch uses TF32 for cuDNN convolutions by default.
        tf32 = self.precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        self.autocast_dtype = torch.bfloat16 if self.precision == "bf16" else None
        # float64: the image, the network (converted once from the float32 weights), losses and Adam's moments.
        self.dtype = torch.float64 if self.precision == "float64" else torch.float32
        # Channels-last (NHWC in memory) is oneDNN's preferred layout: at 150x225 on 2 CPU cores a
        # step took 259 ms against 277 ms in NCHW. Not measured on a GPU, so not used there.
        # oneDNN has no float64 convolutions: float64 stays NCHW (64x96 on 2 loaded cores: 7.2 s/step against 8.6).
        self.memory_format = (torch.channels_last if self.device.type == "cpu" and self.dtype != torch.float64
                              else torch.contiguous_format)
        self.net = self._build_net()
        self.set_input_convention(lambda a: torch.from_numpy(a).to(self.device), (1, 3, 1, 1))  # NCHW

    def _build_net(self) -> nn.Sequential:
        architecture = self.weights.architecture  # the weights say which VGG they are
        net = BUILDERS[architecture](weights=None).features
        state_dict = {
            f"{i}.{kind}": torch.from_numpy(np.asarray(self.weights.params[f"features.{i}.{kind}"]))
            for conv in conv_layers(architecture)
            for i, kind in ((conv.index, "weight"), (conv.index, "bias"))
        }
        net.load_state_dict(state_dict)
        for module in net:
            if isinstance(module, nn.ReLU):
                # Taps are explicit (common/vgg.py): an in-place ReLU would
                # silently overwrite a kept pre-ReLU tap, as it does in d2l.
                module.inplace = False
        net.requires_grad_(False)
        return net.eval().to(self.device, dtype=self.dtype, memory_format=self.memory_format)

    # --- tensors --------------------------------------------------------------------------

    def from_numpy(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=self.numpy_dtype)).to(self.device)

    def to_numpy(self, t) -> np.ndarray:
        if isinstance(t, torch.Tensor):
            # A copy: .numpy() of a CPU tensor shares memory with it, and the
            # optimizer updates the synthesized image in place.
            return t.detach().to(self.dtype).cpu().numpy().copy()
        return np.asarray(t)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def device_name(self) -> str | None:
        return torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None

    def peak_device_bytes(self) -> int | None:
        return torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else None

    def framework_cuda_version(self) -> str | None:
        return torch.version.cuda if self.device.type == "cuda" else None

    def square_matmul(self, n: int):
        a = torch.randn(n, n, device=self.device, dtype=self.autocast_dtype or torch.float32)
        return lambda: a @ a

    # --- model and losses -----------------------------------------------------------------

    def _features(self, X, plan: FeaturePlan):
        wanted = set(plan.content + plan.style)
        transform = self.input_transforms[plan.space]
        if transform is not None:
            X = X[:, transform.order] * transform.scale + transform.shift
        X = X.contiguous(memory_format=self.memory_format)  # the network's layout; still NCHW to index
        outputs = {}
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            for layer in plan.layers:
                X = self.net[layer.index](X)
                if layer.name in wanted:
                    outputs[layer.name] = X.to(self.dtype)  # bf16 computes only inside the network
        return [outputs[name] for name in plan.content], [outputs[name] for name in plan.style]

    def gram(self, X, normalized=True):
        num_channels, n = X.shape[1], X.numel() // X.shape[1]
        X = X.reshape((num_channels, n))
        G = torch.matmul(X, X.T)
        return G / (num_channels * n) if normalized else G

    def content_loss(self, Y_hat, Y):
        # Y is a target: detach it so no gradient flows into the content image.
        return torch.square(Y_hat - Y.detach()).mean()

    def style_loss(self, Y_hat, gram_Y, normalized=True):
        return torch.square(self.gram(Y_hat, normalized) - gram_Y.detach()).mean()

    def tv_loss(self, Y_hat, scale=0.5):
        return scale * (
            torch.abs(Y_hat[:, :, 1:, :] - Y_hat[:, :, :-1, :]).mean()
            + torch.abs(Y_hat[:, :, :, 1:] - Y_hat[:, :, :, :-1]).mean()
        )

    def stop_gradient(self, t):
        return t.detach()

    # --- training -------------------------------------------------------------------------

    def init_state(self, X, contents_Y, styles_Y, config) -> TorchState:
        run = self.run_plan(config)
        recipe = run.recipe
        gen_img = SynthesizedImage(X.shape).to(self.device, self.dtype)
        with torch.no_grad():
            gen_img.weight.copy_(X)
        scheduler = None
        if recipe.optimizer == "lbfgs":  # torch's own L-BFGS is both "same" and "native"
            s = recipe.lbfgs
            trainer = torch.optim.LBFGS(gen_img.parameters(), lr=config.lr, max_iter=s.max_iter, max_eval=s.max_eval,
                                        tolerance_grad=s.tolerance_grad, tolerance_change=s.tolerance_change,
                                        history_size=s.history_size)
        elif recipe.optimizer == "normalized-step":
            trainer = NormalizedStep(gen_img.parameters(), lr=recipe.step_size, clamp=recipe.clamp)
        else:
            optimizer = ReferenceAdam if config.adam == "reference" else torch.optim.Adam
            trainer = optimizer(gen_img.parameters(), lr=config.lr, eps=config.adam_eps)
            scheduler = torch.optim.lr_scheduler.StepLR(trainer, config.lr_decay_epoch, config.lr_decay)
        styles_Y_gram = [self.gram(Y, run.formula.gram_normalized).detach() for Y in styles_Y]
        return TorchState(gen_img, trainer, scheduler, [Y.detach() for Y in contents_Y], styles_Y_gram, run)

    def _loss(self, state: TorchState, X) -> LossParts:
        contents_Y_hat, styles_Y_hat = self._features(X, state.run.features)
        return self.summed_losses(X, contents_Y_hat, styles_Y_hat, state)

    def train_step(self, state: TorchState):
        if isinstance(state.trainer, torch.optim.LBFGS):
            return state, self._lbfgs_step(state)
        state.trainer.zero_grad()
        losses = self._loss(state, state.gen_img())
        losses.total.backward()
        state.trainer.step()
        if state.scheduler is not None:
            state.scheduler.step()
        state.evaluations += 1
        return state, LossParts(*(v.detach() for v in losses))

    def _lbfgs_step(self, state: TorchState) -> LossParts:
        """One ``optimizer.step(closure)`` of the PyTorch tutorial: up to 20 closure calls; the first one's losses."""
        evaluated = []

        def closure():
            with torch.no_grad():  # the tutorial clamps before each evaluation
                state.gen_img.weight.clamp_(*state.run.recipe.clamp)
            state.trainer.zero_grad()
            losses = self._loss(state, state.gen_img())
            losses.total.backward()
            evaluated.append(losses)
            return losses.total

        state.trainer.step(closure)
        state.evaluations += len(evaluated)
        return LossParts(*(v.detach() for v in evaluated[0]))

    def evaluations(self, state: TorchState) -> int:
        return state.evaluations

    def loss_and_grad(self, state: TorchState):
        X = state.gen_img()
        losses = self._loss(state, X)
        (grad,) = torch.autograd.grad(losses.total, X)
        return LossParts(*(v.detach() for v in losses)), grad

    def current_image(self, state: TorchState):
        X = state.gen_img.weight.detach()
        clamp = state.run.recipe.clamp
        return X.clamp(*clamp) if clamp else X  # the tutorial clamps once more at the end

    # --- native weights -------------------------------------------------------------------

    def load_native_weights(self, architecture: str = "vgg19") -> weight_sets.WeightSet:
        """torchvision's VGG19_Weights.IMAGENET1K_V1 (or VGG16's) from torch hub's cache."""
        return load_native_weights(architecture=architecture)


def _torch_device(requested: str | devices.Device | None) -> torch.device:
    """A parsed device (None: a GPU if there is one) as PyTorch's device, or a one-line error."""
    requested = devices.parse(requested)
    if requested is None:
        requested = devices.Device("gpu" if torch.cuda.is_available() else "cpu")
    if requested.kind == "cpu":
        return torch.device("cpu")
    if requested.index >= torch.cuda.device_count():
        raise devices.missing(requested, "PyTorch", torch.cuda.device_count())
    return torch.device("cuda", requested.index)


def native_cache_path(architecture: str = "vgg19") -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / native_file(architecture)[1]


def load_native_weights(expected_sha256_prefix: str | None = None,
                        architecture: str = "vgg19") -> weight_sets.WeightSet:
    url, file_name, published_prefix = native_file(architecture)
    expected_sha256_prefix = expected_sha256_prefix or published_prefix
    path = native_cache_path(architecture)
    if not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, os.fspath(path), hash_prefix=expected_sha256_prefix, progress=False)
        except Exception as exc:  # offline: URLError, socket errors, ...
            raise WeightsUnavailable(
                f"torchvision's {architecture.upper()} weights ({file_name}) are not in the cache folder {path.parent} "
                f"and could not be downloaded ({type(exc).__name__}); use --weights bundled instead"
            ) from None
    digest = weight_sets.sha256_of(path)
    if not digest.startswith(expected_sha256_prefix):
        raise UserError(f"{path} has sha256 {digest[:16]}..., expected {expected_sha256_prefix}...; refusing to load it")
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    params = {key: value.numpy().astype(np.float32) for key, value in state_dict.items() if key.startswith("features.")}
    return weight_sets.WeightSet(
        weight_sets.native_name(architecture), params, weight_sets.IMAGENET_RGB, weight_sets.D2L_LOSS_WEIGHTS,
        f"torchvision {file_name}", architecture,
    )
