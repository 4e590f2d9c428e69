"""What the chapter is made of: sections, parts, the blocks in them, and the names a step table uses.

docs/chapter_content.py writes the chapter with these; docs/build_chapter.py renders them. A listing is
named by a spec "file:Symbol", where file is a key of ``FILES``.
"""

from __future__ import annotations

from dataclasses import dataclass

# Tabs in the order d2l shows them; "numpy" is the float64 reference the tests use.
TABS = ("torch", "tensorflow", "jax", "numpy")
TAB_LABELS = {"torch": "PyTorch", "tensorflow": "TensorFlow", "jax": "JAX", "numpy": "NumPy"}
BACKEND_CLASSES = {"torch": "TorchBackend", "tensorflow": "TensorFlowBackend", "jax": "JaxBackend"}
BASE_CLASS = "BackendBase"

# Short names for the files listings come from, so the step table reads "file:Symbol".
FILES = {
    "torch": "backends/torch_backend.py",
    "tensorflow": "backends/tensorflow_backend.py",
    "jax": "backends/jax_backend.py",
    "base": "common/backend.py",
    "numpy": "common/reference.py",
    "interface": "common/interface.py",
    "images": "common/images.py",
    "weights": "common/weights.py",
    "vgg": "common/vgg.py",
    "config": "common/config.py",
    "loss_weights": "common/loss_weights.py",
    "stylize": "common/stylize.py",
    "recipes": "common/recipes.py",
    "lbfgs": "common/lbfgs.py",
    "tf_lbfgs": "backends/tensorflow_lbfgs.py",
    "jax_lbfgs": "backends/jax_lbfgs.py",
}
# The files whose code a backend's tab may show: its module, and its framework's optimizer modules.
BACKEND_FILES = {"torch": ("torch",), "tensorflow": ("tensorflow", "tf_lbfgs"), "jax": ("jax", "jax_lbfgs")}


@dataclass(frozen=True)
class Code:
    """Listings shown once, for every framework: ``specs`` are "file:Symbol"."""

    specs: tuple[str, ...]


@dataclass(frozen=True)
class Tabs:
    """One listing group per framework; a reader's tab choice switches all groups at once."""

    torch: tuple[str, ...]
    tensorflow: tuple[str, ...]
    jax: tuple[str, ...]
    numpy: tuple[str, ...] = ()

    def groups(self) -> list[tuple[str, tuple[str, ...]]]:
        return [(tab, getattr(self, tab)) for tab in TABS if getattr(self, tab)]


@dataclass(frozen=True)
class Figures:
    """Images (paths relative to docs/) with captions; ``row`` puts them side by side."""

    items: tuple[tuple[str, str], ...]
    row: bool = False


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...]  # right-aligned columns


@dataclass(frozen=True)
class Shell:
    command: str


@dataclass(frozen=True)
class Tests:
    """Pointers "tests/test_x.py::test_name" that prove the text above them."""

    pointers: tuple[str, ...]


@dataclass(frozen=True)
class Part:
    title: str | None
    text: str  # paragraphs separated by blank lines; `code`, **bold** and [links](url)
    blocks: tuple = ()


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class Difference:
    """One way the frameworks differ: a part of its own in the differences section, with its tests."""

    title: str
    text: str
    tests: tuple[str, ...]


def own(tab: str, *methods: str) -> tuple[str, ...]:
    """Specs for methods of a backend's own class: own("jax", "gram") -> ("jax:JaxBackend.gram",)."""
    return tuple(f"{tab}:{BACKEND_CLASSES[tab]}.{method}" for method in methods)


def shared(*methods: str) -> tuple[str, ...]:
    """Specs for BackendBase methods every backend inherits."""
    return tuple(f"base:{BASE_CLASS}.{method}" for method in methods)


def each_backend(*methods: str, numpy: tuple[str, ...] = ()) -> Tabs:
    """The same methods of each backend's own class, side by side."""
    return Tabs(*(own(tab, *methods) for tab in BACKEND_CLASSES), numpy=numpy)


def all_shared(*methods: str, numpy: tuple[str, ...] = ()) -> Tabs:
    """BackendBase's methods in every backend tab, labelled as shared."""
    return Tabs(shared(*methods), shared(*methods), shared(*methods), numpy=numpy)
