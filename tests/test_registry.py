"""The registry: lazy imports, clear errors for unknown and missing backends."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import backends
from common.errors import BackendUnavailable

REPO = Path(__file__).resolve().parent.parent
FRAMEWORKS = ["torch", "torchvision", "tensorflow", "keras", "jax", "flax", "optax"]


def test_importing_common_and_backends_imports_no_framework():
    modules = ["backends", "compare"] + [
        f"{p.parent.name}.{p.stem}" for folder in ("common", "tools") for p in (REPO / folder).glob("*.py")
        if p.stem != "__init__"
    ]
    code = (
        "import sys, json\n"
        f"for m in {modules!r}: __import__(m)\n"
        f"print(json.dumps(sorted(set({FRAMEWORKS!r}) & set(sys.modules))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [], f"importing the project imported {out.stdout}"


def test_versions_come_from_package_metadata_without_importing_a_framework():
    code = ("import sys, json, backends\n"
            "found = {name: backends.versions(name) for name in backends.NAMES}\n"
            f"print(json.dumps([found, sorted(set({FRAMEWORKS!r}) & set(sys.modules))]))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    found, imported = json.loads(out.stdout)
    assert imported == []
    for name, info in backends.REGISTRY.items():
        assert {"python", "numpy"} <= set(found[name]) <= {"python", "numpy", *info.packages}
        if backends.installed(name):
            assert info.requires[0] in found[name]


def test_unknown_backend_names_the_choices():
    with pytest.raises(BackendUnavailable, match="unknown backend 'mxnet'.*torch, tensorflow, jax"):
        backends.get_backend("mxnet")


def test_missing_framework_says_what_to_install(monkeypatch):
    real = backends.importlib.util.find_spec
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda name, *a: None if name == "optax" else real(name, *a))
    assert not backends.installed("jax")
    with pytest.raises(BackendUnavailable, match="needs optax.*pip install"):
        backends.get_backend("jax")
    assert "pip install" in backends.why_unavailable("jax")


def test_available_lists_only_importable_backends():
    names = backends.available()
    assert set(names) <= set(backends.NAMES)
    for name in names:
        assert backends.installed(name)


@pytest.mark.parametrize("first", ["tensorflow", "torch"])
def test_any_creation_order_survives_the_torchvision_tensorflow_trap(first):
    """tensorflow then torchvision in one process aborts (LLVM); the registry orders imports."""
    for name in ("torch", "tensorflow"):
        if backends.why_unavailable(name):
            pytest.skip(backends.why_unavailable(name))
    second = "torch" if first == "tensorflow" else "tensorflow"
    code = (
        "import backends\n"
        f"a = backends.get_backend({first!r}, weights='random', device='cpu')\n"
        f"b = backends.get_backend({second!r}, weights='random', device='cpu')\n"
        "print(a.name, b.name)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [first, second]
