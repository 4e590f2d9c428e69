"""The backend registry: names to modules, ``available()`` and ``get_backend()``.

Importing this package imports no framework; ``get_backend`` imports one
backend's module (and so its framework) on first use.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import platform
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache

from common.config import RUN_SETTINGS, misplaced_run_setting
from common.errors import BackendUnavailable, UserError


@dataclass(frozen=True)
class BackendInfo:
    name: str
    module: str  # the backend's module, imported lazily
    cls: str
    requires: tuple[str, ...]  # top-level modules the backend imports
    install: str  # what to tell a user who lacks them
    packages: tuple[str, ...]  # the distributions whose versions a result records
    # The framework's own stock L-BFGS (config.optimizer "native"), or "" and why there is none.
    native_lbfgs: str = ""
    no_native_lbfgs: str = ""


REGISTRY: dict[str, BackendInfo] = {
    info.name: info
    for info in (
        BackendInfo("torch", "backends.torch_backend", "TorchBackend", ("torch", "torchvision"),
                    "pip install torch torchvision   (or: pip install -e '.[torch]')", ("torch", "torchvision"),
                    native_lbfgs="torch.optim.LBFGS (also what 'same' runs)"),
        BackendInfo("tensorflow", "backends.tensorflow_backend", "TensorFlowBackend", ("tensorflow", "keras"),
                    "pip install tensorflow   (or: pip install -e '.[tensorflow]')", ("tensorflow", "keras"),
                    no_native_lbfgs="TensorFlow's core has none; tensorflow-probability's lbfgs_minimize needs "
                                    "tf_keras (Keras 2) beside Keras 3 and is not a dependency here"),
        BackendInfo("jax", "backends.jax_backend", "JaxBackend", ("jax", "flax", "optax"),
                    "pip install jax flax optax   (or: pip install -e '.[jax]')", ("jax", "jaxlib", "flax", "optax"),
                    native_lbfgs="optax.lbfgs with its zoom line search"),
    )
}
NAMES: tuple[str, ...] = tuple(REGISTRY)


def without_native_lbfgs() -> dict[str, str]:
    """The backends with no stock L-BFGS of their own, and why."""
    return {name: info.no_native_lbfgs for name, info in REGISTRY.items() if info.no_native_lbfgs}


def versions(name: str) -> dict[str, str]:
    """Python's, NumPy's and the backend's packages' versions, from their metadata (nothing is imported)."""
    found = {"python": platform.python_version()}
    for package in ("numpy", *_info(name).packages):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def installed(name: str) -> bool:
    """Whether the backend's framework packages are installed (nothing is imported)."""
    return all(importlib.util.find_spec(module) is not None for module in _info(name).requires)


@lru_cache(maxsize=1)
def available() -> list[str]:
    """The backends whose frameworks are installed and import.

    Each import is tried in a subprocess, all at once, so this process stays
    free of frameworks (and of their import-order traps).
    """
    candidates = [name for name in NAMES if installed(name)]
    checks = {
        name: subprocess.Popen(
            [sys.executable, "-c", "; ".join(f"import {m}" for m in REGISTRY[name].requires)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name in candidates
    }
    return [name for name, process in checks.items() if process.wait() == 0]


def why_unavailable(name: str) -> str | None:
    """None if the backend can be used, else a one-line reason with what to install."""
    info = _info(name)
    missing = [module for module in info.requires if importlib.util.find_spec(module) is None]
    if missing:
        return f"backend {name!r} needs {', '.join(missing)}, which is not installed: {info.install}"
    if name not in available():
        return f"backend {name!r}: importing {', '.join(info.requires)} fails; reinstall with: {info.install}"
    return None


def get_backend(name: str, *, weights="bundled", device: str | None = None, precision: str = "float32", **misplaced):
    """A ready backend: ``name`` is "torch", "tensorflow" or "jax".

    ``weights`` is "bundled" (default), "keras", "native", "native-vgg16" (VGG16), "random"
    or a mapping of arrays (or a ``WeightSet``, whose ``architecture`` the backend builds).
    A backend is the machine and the model; what a run does (taps, loss weights, ...) is
    its ``StyleTransferConfig``'s, and is rejected here.
    """
    for option in misplaced:
        if option in RUN_SETTINGS:
            raise misplaced_run_setting(option)
        raise UserError(f"get_backend takes weights, device and precision, not {option!r}")
    info = _info(name)
    reason = why_unavailable(name) if not installed(name) else None
    if reason:
        raise BackendUnavailable(reason)
    _import_in_safe_order(name)
    try:
        module = importlib.import_module(info.module)
    except ImportError as exc:
        raise BackendUnavailable(f"backend {name!r} failed to import ({exc}); {info.install}") from None
    return getattr(module, info.cls)(weights=weights, device=device, precision=precision)


def _info(name: str) -> BackendInfo:
    if name not in REGISTRY:
        raise BackendUnavailable(f"unknown backend {name!r}; choose from {', '.join(NAMES)}")
    return REGISTRY[name]


def _import_in_safe_order(name: str) -> None:
    """Import torchvision before TensorFlow, whichever backend comes first.

    ``import tensorflow`` then ``import torchvision`` in one process aborts with
    "LLVM ERROR: inconsistency in registered CommandLine options"; the other
    order works. So before TensorFlow is first imported, torchvision is too.
    """
    if name == "tensorflow" and "tensorflow" not in sys.modules and installed("torch"):
        importlib.import_module("torchvision")
    if name == "torch" and "tensorflow" in sys.modules and "torchvision" not in sys.modules:
        raise BackendUnavailable(
            "torchvision cannot be imported after tensorflow in one process (LLVM aborts); "
            "create the torch backend first, or use a separate process"
        )
