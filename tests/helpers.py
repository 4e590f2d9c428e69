"""Helpers shared by the backend test files (``from helpers import ...``: pytest puts tests/ on sys.path).

Backends are made on the CPU; ``cached_backend`` and ``torch_pair`` build each
(name, weights, precision) once per session, whichever file asks first.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

import backends
from common.config import CPU

# d2l's indices, and explicit names that read pre-ReLU convolutions, ReLUs and pools.
TAPS = {
    "d2l": (CPU.content_layers, CPU.style_layers),
    "names": (("conv4_2",), ("conv1_1", "relu1_1", "pool1", "conv3_1", "pool4", "conv5_1")),
}


def require(name: str, why: str = "") -> None:
    """Skip the test, with the reason and the install line, unless backend ``name`` can be used."""
    reason = backends.why_unavailable(name)
    if reason:
        pytest.skip(f"{why}: {reason}" if why else reason)


def make_backend(name: str, **options):
    """A new backend on the CPU (for tests that need a fresh one or its construction's side effects)."""
    return backends.get_backend(name, device="cpu", **options)


@lru_cache(maxsize=None)
def _cached(name: str, weights: str, precision: str):
    return make_backend(name, weights=weights, precision=precision)


def cached_backend(name: str, weights: str = "random", precision: str = "float32"):
    """One backend per (name, weights, precision) for the whole session; skips if unavailable."""
    require(name)
    return _cached(name, weights, precision)


def torch_pair(name: str, weights: str):
    """(torch backend, backend ``name``) with the same weights; torch is made first."""
    require("torch", "comparing with PyTorch")
    return cached_backend("torch", weights), cached_backend(name, weights)


def rel_err(actual, expected) -> float:
    """max|a - b| / max|b|, in float64."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-300))


def random_images(seed: int, shape: tuple[int, int], count: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((1, 3, *shape)).astype(np.float32) for _ in range(count)]


def targets_for(backend, content_X, style_X, config):
    """The content targets of ``content_X`` and the style targets of ``style_X`` (backend tensors)."""
    layers = (config.content_layers, config.style_layers, config.taps)
    contents_Y, _ = backend.extract_features(backend.from_numpy(content_X), *layers)
    _, styles_Y = backend.extract_features(backend.from_numpy(style_X), *layers)
    return contents_Y, styles_Y


def state_for(backend, X, content_X, style_X, config):
    """A training state that starts at ``X`` (NumPy, NCHW)."""
    return backend.init_state(backend.from_numpy(X), *targets_for(backend, content_X, style_X, config), config)


def image_of(backend, state) -> np.ndarray:
    """The state's image as float64 NumPy (NCHW)."""
    return backend.to_numpy(backend.current_image(state)).astype(np.float64)


def dtype_name(t) -> str:
    """"float32", "bfloat16", ...: TensorFlow's DType and NumPy's dtype both have ``.name``."""
    return t.dtype.name


# What docs/build_chapter.py and docs/build_notebooks.py read, and what they write.
DOCS_INPUTS = ("backends", "common", "tools", "tests", "docs", "assets", "notebooks")


def copy_tree(source: Path, destination: Path, folders=DOCS_INPUTS) -> Path:
    """The project's ``folders`` copied under ``destination``, so a test can break them."""
    for folder in folders:
        shutil.copytree(source / folder, destination / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return destination


def run_check(root: Path, script: str) -> subprocess.CompletedProcess:
    """``python root/docs/<script> --check``: a generator's staleness check, run on the tree at ``root``."""
    return subprocess.run([sys.executable, str(root / "docs" / script), "--check"],
                          capture_output=True, text=True, timeout=60)


def check_importing_nothing_heavy(root: Path, script: str, heavy=("torch", "tensorflow", "jax", "numpy", "PIL")):
    """Run a generator's ``--check`` in a fresh interpreter; it must pass and import none of ``heavy``."""
    code = (f"import runpy, sys; namespace = runpy.run_path({str(root / 'docs' / script)!r}); "
            "code = namespace['main'](['--check']); "
            f"heavy = sorted({set(heavy)!r} & set(sys.modules)); "
            "print('imported:', heavy); sys.exit(code or bool(heavy))")
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "imported: []" in result.stdout
