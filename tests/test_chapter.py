"""The chapter (docs/chapter.md, docs/chapter.html): complete, current, offline, and loud about drift.

The generator reads source text with ``ast`` and imports no framework, so these
tests need none and take well under a second each.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

import pytest

import helpers

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "docs" / "build_chapter.py"


def load_generator():
    spec = importlib.util.spec_from_file_location("build_chapter", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


chapter = load_generator()
content = chapter.content  # docs/chapter_content.py, the chapter's text and step tables, as the generator imported it


@pytest.fixture(scope="module")
def built() -> dict[str, str]:
    return chapter.build(REPO)


def protocol_methods() -> list[str]:
    """Backend's methods, read from common/interface.py independently of the generator."""
    tree = ast.parse((REPO / "common" / "interface.py").read_text(encoding="utf-8"))
    protocol = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Backend")
    return [n.name for n in protocol.body if isinstance(n, ast.FunctionDef)]


def test_every_interface_method_is_shown_for_every_backend(built):
    """Each backend tab of the page shows each Protocol method: its own, or BackendBase's, marked shared."""
    page = built["docs/chapter.html"]
    listings = re.findall(r'<div class="listing" data-tab="(\w+)" data-symbol="([\w.]+)">(.*?)</div>', page)
    methods = protocol_methods()
    assert len(methods) >= 15
    for tab, cls in chapter.BACKEND_CLASSES.items():
        own = {symbol for t, symbol, _ in listings if t == tab and symbol.startswith(f"{cls}.")}
        shared = {symbol for t, symbol, header in listings
                  if t == tab and symbol.startswith("BackendBase.") and "shared" in header}
        missing = [m for m in methods if f"{cls}.{m}" not in own and f"BackendBase.{m}" not in shared]
        assert not missing, f"the {tab} tab does not show {missing}"


def test_committed_page_is_what_the_source_builds(built):
    """CI's staleness check: edit a backend and forget the page, and this fails."""
    for path, text in built.items():
        committed = (REPO / path).read_text(encoding="utf-8") if (REPO / path).is_file() else None
        assert committed == text, f"{path} is stale: run `make docs` (python docs/build_chapter.py) and commit it"


def test_check_flag_passes_on_the_committed_page_without_importing_frameworks():
    helpers.check_importing_nothing_heavy(REPO, "build_chapter.py")


@pytest.fixture
def tree_copy(tmp_path) -> Path:
    """What the generator reads, copied, so a test can break it."""
    return helpers.copy_tree(REPO, tmp_path)


def test_check_flag_names_the_stale_file_and_writes_nothing(tree_copy):
    page = tree_copy / "docs" / "chapter.md"
    page.write_text(page.read_text(encoding="utf-8") + "an edit by hand\n", encoding="utf-8")
    result = helpers.run_check(tree_copy, "build_chapter.py")
    assert result.returncode == 1
    assert result.stderr.strip() == "docs/chapter.md is stale: run `make docs` (python docs/build_chapter.py)"
    assert page.read_text(encoding="utf-8").endswith("an edit by hand\n")


def test_a_renamed_method_fails_the_build_naming_it(tree_copy):
    source = tree_copy / "backends" / "torch_backend.py"
    text = source.read_text(encoding="utf-8")
    assert "    def tv_loss(self" in text
    source.write_text(text.replace("    def tv_loss(self", "    def total_variation(self"), encoding="utf-8")
    with pytest.raises(chapter.ChapterError, match=r"backends/torch_backend\.py has no TorchBackend\.tv_loss"):
        chapter.build(tree_copy)
    result = helpers.run_check(tree_copy, "build_chapter.py")
    assert result.returncode == 2 and "TorchBackend.tv_loss" in result.stderr


def test_a_listed_symbol_that_does_not_exist_fails_clearly():
    with pytest.raises(chapter.ChapterError, match=r"common/reference\.py has no gram_matrix"):
        chapter.Sources(REPO).listing("numpy", "numpy:gram_matrix")


def test_an_override_cannot_hide_behind_the_shared_listing(tree_copy):
    """A backend that overrides a BackendBase method must show its own code in its tab."""
    source = tree_copy / "backends" / "tensorflow_backend.py"
    text = source.read_text(encoding="utf-8")
    override = "    def preprocess(self, img, image_shape):\n        return super().preprocess(img, image_shape)\n\n"
    source.write_text(text.replace("    def from_numpy(self", override + "    def from_numpy(self", 1),
                      encoding="utf-8")
    with pytest.raises(chapter.ChapterError, match=r"TensorFlowBackend overrides BackendBase\.preprocess"):
        chapter.build(tree_copy)


def test_every_test_pointer_exists():
    pointers = [p for d in content.DIFFERENCES for p in d.tests]
    assert len(pointers) >= len(content.DIFFERENCES)
    for pointer in pointers:
        path, *names = pointer.split("::")
        tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
        body = tree.body
        for name in names:
            node = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name), None)
            assert node is not None, f"{pointer}: no {name} in {path}"
            body = node.body


def test_a_pointer_to_a_missing_test_fails_the_build(tree_copy):
    tests = tree_copy / "tests" / "test_agreement.py"
    text = tests.read_text(encoding="utf-8")
    tests.write_text(text.replace("def test_tv_gradient_where_neighbours_are_equal(", "def test_renamed("),
                     encoding="utf-8")
    with pytest.raises(chapter.ChapterError, match=r"no such test: tests/test_agreement\.py::test_tv_gradient"):
        chapter.build(tree_copy)


def test_the_page_loads_nothing_from_the_network_and_every_image_exists(built):
    page = built["docs/chapter.html"]
    assert "<link" not in page and "@import" not in page and "url(" not in page
    sources = re.findall(r'\bsrc="([^"]*)"', page)
    assert len(sources) >= 7  # the two inputs, three outputs, side by side, losses
    for src in sources:
        assert "//" not in src and ":" not in src, f"not a local, relative path: {src}"
        assert (REPO / "docs" / src).is_file(), f"{src} does not exist"
    # Links in the text are fine (they load nothing); a scheme anywhere else is not.
    outside_links = re.sub(r'<a href="https://[^"]*">', "", page)
    assert "http://" not in outside_links and "https://" not in outside_links


def test_markdown_images_exist(built):
    for src in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", built["docs/chapter.md"]):
        assert (REPO / "docs" / src).is_file(), f"{src} does not exist"
