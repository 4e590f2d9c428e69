"""VGG16, the TF1 tutorial's network (issue 15), as a second architecture in every backend.

The architecture is the weight set's (``WeightSet.architecture``): each backend builds
what its weights name. Native VGG16 weights are torchvision's ``vgg16-397923af.pth``
(torch) and Keras' ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`` (TensorFlow,
JAX); nothing is downloaded here, so the tests seed those caches with files of random
arrays of VGG16's shapes, and seed the expected hash as the VGG19 tests do.

Agreement with torch is ``rel_err`` (max|a - b| / max|b|), float32 on the CPU, random
He-normal VGG16 weights, 32x48: measured on 2 CPU cores (torch 2.15, TF 2.21, jax 0.10.2),
weight seeds 0 and 1 x image seeds 6 and 7, the worst over relu1_1..relu5_3 and pool5 was
1.6e-6..1.8e-6 (TensorFlow) and 1.6e-6..2.0e-6 (JAX), as VGG19's (test_keras_file_backends.py).
"""

from __future__ import annotations

import hashlib
import importlib

import numpy as np
import pytest

import backends
from common import keras_weights, weights as weight_sets
from common.config import StyleTransferConfig
from common.errors import UserError, WeightsUnavailable
from common.stylize import stylize_array
from common.vgg import VGG16_LAYERS, conv_layers
from helpers import make_backend, random_images, rel_err, require

BACKENDS = ("torch", "tensorflow", "jax")
# Measured at most 2.0e-6 (module docstring); 10x margin for other CPUs' instruction sets.
FEATURE_TOLERANCE = 2e-5
# VGG16's thirteen ReLUs and its last pool: every convolution's output, the deepest layer.
RELUS = tuple(layer.name for layer in VGG16_LAYERS if layer.kind == "relu")
EXPECTED_CONVENTION = {"torch": weight_sets.IMAGENET_RGB, "tensorflow": weight_sets.CAFFE_BGR,
                       "jax": weight_sets.CAFFE_BGR}


@pytest.fixture(params=BACKENDS)
def name(request) -> str:
    require(request.param)
    return request.param


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty torch hub and Keras caches of the test's own."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path


def module_of(name: str):
    return importlib.import_module(backends.REGISTRY[name].module)


def seed_native_cache(name: str, params) -> str:
    """Write ``params`` as the backend's native VGG16 file in its cache; returns the hash its loader checks."""
    if name == "torch":
        import torch

        path = module_of("torch").native_cache_path("vgg16")
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({k: torch.from_numpy(v) for k, v in params.items()}, path)
        return hashlib.sha256(path.read_bytes()).hexdigest()[:8]  # torch hub checks a sha256 prefix
    path = keras_weights.cache_path("vgg16")
    keras_weights.write_h5(params, path, architecture="vgg16")
    return keras_weights.md5_of(path)


@pytest.fixture
def seeded(name, caches, monkeypatch):
    """A native VGG16 file of random arrays in the backend's cache, its hash the one expected; returns the arrays."""
    params = weight_sets.random_weights(3, "vgg16").params
    digest = seed_native_cache(name, params)
    if name == "torch":
        monkeypatch.setattr(module_of("torch"), "VGG16_NATIVE_SHA256_PREFIX", digest)
    else:
        monkeypatch.setattr(keras_weights, "VGG16_MD5", digest)
    return params


def features(backend, X, content=("relu3_1",), style=(*RELUS, "pool5")):
    got = backend.extract_features(backend.from_numpy(X), list(content), list(style))
    return [backend.to_numpy(t) for group in got for t in group]


# --- the architecture as data -----------------------------------------------------------------


def test_vgg16_weight_sets_are_checked_against_vgg16s_shapes():
    vgg16 = weight_sets.random_weights(0, "vgg16")
    assert vgg16.architecture == "vgg16" and len(vgg16.params) == 2 * len(conv_layers("vgg16")) == 26
    assert weight_sets.resolve(vgg16) is vgg16
    # VGG19's arrays labelled VGG16: where the blocks differ, index 17 is a ReLU in VGG19, conv4_1 in VGG16
    as_vgg16 = weight_sets.WeightSet("mislabelled", weight_sets.random_weights(0).params, weight_sets.IMAGENET_RGB,
                                     weight_sets.D2L_LOSS_WEIGHTS, architecture="vgg16")
    with pytest.raises(UserError, match="lack features.17.weight"):
        weight_sets.resolve(as_vgg16)


# --- each backend builds VGG16 ------------------------------------------------------------------


def test_native_vgg16_loads_from_a_seeded_cache(name, seeded):
    params = seeded
    native = make_backend(name, weights="native-vgg16")
    assert native.weights.name == "native-vgg16" and native.weights.architecture == "vgg16"
    assert native.weights.convention == EXPECTED_CONVENTION[name]
    for key, value in params.items():
        np.testing.assert_array_equal(native.weights.params[key], value, err_msg=key)
    same = make_backend(name, weights=weight_sets.WeightSet("seeded", params, native.weights.convention,
                                                            native.weights.loss_weights, architecture="vgg16"))
    (X,) = random_images(5, (32, 48), 1)
    for got, want in zip(features(native, X), features(same, X)):
        np.testing.assert_array_equal(got, want)


def test_vgg16_features_agree_with_torch(name):
    if name == "torch":
        pytest.skip("torch is the reference")
    require("torch")
    vgg16 = weight_sets.random_weights(0, "vgg16")
    (X,) = random_images(6, (32, 48), 1)
    torch_features = features(make_backend("torch", weights=vgg16), X)
    got = features(make_backend(name, weights=vgg16), X)
    assert [g.shape for g in got] == [w.shape for w in torch_features]
    assert got[-1].shape == (1, 512, 1, 1)  # pool5 of 32x48, after five pools
    worst = max(rel_err(g, w) for g, w in zip(got, torch_features))
    assert worst < FEATURE_TOLERANCE


def test_native_vgg16_with_a_wrong_hash_is_refused(name, caches):
    seed_native_cache(name, weight_sets.random_weights(3, "vgg16").params)  # not the published file
    with pytest.raises(UserError, match="refusing to load it"):
        make_backend(name, weights="native-vgg16")


def test_native_vgg16_offline_and_uncached_is_one_line(name, caches, monkeypatch):
    if name == "torch":
        import torch

        def offline(*args, **kwargs):
            raise OSError("network is unreachable")

        monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
        file_name = "vgg16-397923af.pth"
    else:  # JAX never downloads; TensorFlow's Keras download is refused at once
        monkeypatch.setattr(keras_weights, "VGG16_URL", "http://127.0.0.1:9/unreachable.h5")
        file_name = keras_weights.VGG16_FILE_NAME
    with pytest.raises(WeightsUnavailable) as excinfo:
        make_backend(name, weights="native-vgg16")
    message = str(excinfo.value)
    assert "\n" not in message and file_name in message and "VGG16" in message


def test_a_vgg19_only_layer_on_vgg16_is_one_line(name):
    b = make_backend(name, weights=weight_sets.random_weights(0, "vgg16"))
    (X,) = random_images(7, (32, 48), 1)
    with pytest.raises(UserError) as excinfo:
        b.extract_features(b.from_numpy(X), ["conv3_4"], ["relu1_1"])
    message = str(excinfo.value)
    assert "\n" not in message and "'conv3_4'" in message and "VGG16" in message
    with pytest.raises(UserError, match="VGG16 features index 31 out of range 0..30"):
        b.extract_features(b.from_numpy(X), [31], [0])


def test_the_tf1_tutorial_runs_on_native_vgg16(name, seeded):
    b = make_backend(name, weights="native-vgg16")
    rng = np.random.default_rng(0)
    content, style = (rng.integers(0, 256, (32, 48, 3), np.uint8) for _ in range(2))
    config = StyleTransferConfig(recipe="tf1-tutorial", image_shape=(32, 48), num_epochs=2)
    assert b.run_plan(config).features.layers == VGG16_LAYERS[: VGG16_LAYERS[-2].index + 1]  # up to relu5_3
    X, history = stylize_array(b, content, style, config)
    assert X.shape == (1, 3, 32, 48) and 0 <= X.min() and X.max() <= 255
    assert len(history) == 2 and all(np.isfinite(h.total) for h in history)
