"""The notebooks (notebooks/neural-style-*.ipynb): current, valid, linked, and runnable top to bottom.

The staleness and structure tests read source text only (no framework, well under a second each).
``test_notebook_runs_in_quick_mode`` executes a notebook in a fresh Jupyter kernel, as a learner would
(nbclient, kernel ``python3``), at NST_QUICK=1's tiny size: about a minute or two per framework here.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

import helpers

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "docs" / "build_notebooks.py"


def load_generator():
    spec = importlib.util.spec_from_file_location("build_notebooks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


generator = load_generator()
NOTEBOOKS = generator.content.NOTEBOOKS  # {"torch": "notebooks/neural-style-pytorch.ipynb", ...}


@pytest.fixture(scope="module")
def built() -> dict[str, str]:
    return generator.build(REPO)


def test_committed_notebooks_are_what_the_source_builds(built):
    """CI's staleness check: edit a listed function, or the chapter's text, and forget the notebooks, and this fails."""
    assert sorted(built) == sorted(NOTEBOOKS.values())
    for path, text in built.items():
        committed = (REPO / path).read_text(encoding="utf-8") if (REPO / path).is_file() else None
        assert committed == text, f"{path} is stale: run `make notebooks` (docs/build_notebooks.py) and commit it"


@pytest.mark.parametrize("tab", list(NOTEBOOKS))
def test_notebook_is_valid_nbformat_4_with_outputs_stripped(tab):
    nbformat = pytest.importorskip("nbformat", reason="nbformat is in the test extra: pip install -e '.[test]'")
    path = REPO / NOTEBOOKS[tab]
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata.kernelspec.name == "python3"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert len(code) >= 15
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    # Saved from Jupyter unchanged, the file stays byte for byte the same: small diffs.
    assert nbformat.writes(nb) + "\n" == path.read_text(encoding="utf-8")
    assert f'backends.get_backend("{tab}")' in code[0].source


@pytest.mark.parametrize("tab", list(NOTEBOOKS))
def test_every_step_shows_this_frameworks_listings(tab):
    """Each listing the chapter's tab for this framework shows in d2l's steps appears in its notebook, in order."""
    nb = json.loads((REPO / NOTEBOOKS[tab]).read_text(encoding="utf-8"))
    markdown = "".join("".join(cell["source"]) for cell in nb["cells"] if cell["cell_type"] == "markdown")
    sources = generator.chapter.Sources(REPO)
    at = 0
    for section in generator.content.STEPS:
        for part in section.parts:
            listings = generator.listings(tab, part, sources).strip("\n")
            if listings:
                found = markdown.find(listings, at)
                assert found >= 0, f"{NOTEBOOKS[tab]} lacks (or misorders) the listings of {section.id}: {part.title}"
                at = found + len(listings)
    own_class = generator.chapter.BACKEND_CLASSES[tab]
    assert markdown.count(f"`{own_class}.") >= 10
    for other, cls in generator.chapter.BACKEND_CLASSES.items():
        if other != tab:
            assert f"`{cls}." not in markdown, f"{NOTEBOOKS[tab]} shows {cls}'s code"


def test_check_flag_passes_without_importing_frameworks_or_jupyter():
    helpers.check_importing_nothing_heavy(REPO, "build_notebooks.py",
                                          ("torch", "tensorflow", "jax", "numpy", "PIL", "nbformat", "nbclient"))


@pytest.fixture
def tree_copy(tmp_path) -> Path:
    """What the generator reads, and the committed notebooks, copied, so a test can break them."""
    return helpers.copy_tree(REPO, tmp_path)


def test_a_changed_listed_function_makes_its_notebook_stale(tree_copy):
    """Change a line of TorchBackend.tv_loss: the PyTorch notebook, and only it, is stale; nothing is written."""
    source = tree_copy / "backends" / "torch_backend.py"
    text = source.read_text(encoding="utf-8")
    marker = "    def tv_loss(self, Y_hat, scale=0.5):\n"
    assert marker in text
    source.write_text(text.replace(marker, marker + "        # a new comment\n"), encoding="utf-8")
    before = (tree_copy / NOTEBOOKS["torch"]).read_bytes()
    result = helpers.run_check(tree_copy, "build_notebooks.py")
    assert result.returncode == 1
    assert result.stderr.strip() == (f"{NOTEBOOKS['torch']} is stale: run `make notebooks` "
                                     "(python docs/build_notebooks.py)")
    assert (tree_copy / NOTEBOOKS["torch"]).read_bytes() == before


def test_a_renamed_listed_method_fails_the_build_naming_it(tree_copy):
    source = tree_copy / "backends" / "jax_backend.py"
    text = source.read_text(encoding="utf-8")
    assert "    def gram(self" in text
    source.write_text(text.replace("    def gram(self", "    def gram_matrix(self"), encoding="utf-8")
    result = helpers.run_check(tree_copy, "build_notebooks.py")
    assert result.returncode == 2
    assert "backends/jax_backend.py has no JaxBackend.gram" in result.stderr


def test_a_step_that_lists_code_needs_a_cell_that_runs_it(tree_copy):
    cells = tree_copy / "docs" / "notebook_content.py"
    text = cells.read_text(encoding="utf-8")
    key = '    ("losses", "Total variation loss"): """'
    assert key in text
    cells.write_text(text.replace(key, '    ("losses", "TV, renamed"): """'), encoding="utf-8")
    result = helpers.run_check(tree_copy, "build_notebooks.py")
    assert result.returncode == 2
    assert "'Total variation loss' of section 'losses' lists code but docs/notebook_content.py has no cell" in (
        result.stderr)


def test_the_chapter_and_the_readme_link_each_notebook():
    page = (REPO / "docs" / "chapter.html").read_text(encoding="utf-8")
    markdown = (REPO / "docs" / "chapter.md").read_text(encoding="utf-8")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for tab, path in NOTEBOOKS.items():
        assert (REPO / path).is_file()
        # In the HTML page, each framework's panel and the header's tab switch link its notebook.
        panels = re.findall(rf'<div class="panel" data-tab="{tab}">.*?</div></div>', page, flags=re.S)
        assert panels and all(f'href="../{path}"' in panel for panel in panels), f"a {tab} tab lacks its link"
        assert f'<a class="notebook" data-tab="{tab}" href="../{path}">' in page
        assert f"](../{path})" in markdown and f'<a href="../{path}">' in markdown
        assert f"]({path})" in readme, f"README.md does not link {path}"


@pytest.mark.parametrize("tab", list(NOTEBOOKS))
def test_notebook_runs_in_quick_mode(tab, monkeypatch):
    """Every cell of the notebook runs without error in a fresh kernel (NST_QUICK=1: 64x96, 10 epochs)."""
    helpers.require(tab, "the notebook runs this framework")
    nbformat = pytest.importorskip("nbformat", reason="nbformat is in the test extra: pip install -e '.[test]'")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is in the test extra: pip install -e '.[test]'")
    pytest.importorskip("ipykernel", reason="ipykernel is in the test extra: pip install -e '.[test]'")
    monkeypatch.setenv("NST_QUICK", "1")  # the kernel inherits this process's environment
    path = REPO / NOTEBOOKS[tab]
    nb = nbformat.read(path, as_version=4)
    # Kernel "python3" runs this interpreter's own ipykernel: jupyter_client starts sys.executable for it.
    nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()

    text = "".join(out.get("text", "") for cell in nb.cells for out in cell.get("outputs", []))
    assert f'<{tab} backend on' in text and "image 64x96, 10 epochs" in text
    assert "the same numbers: True" in text and "starts as the content image: True" in text
    epochs = [float(total) for total in re.findall(r"epoch +\d+/10 .* total +([\d.]+)", text)]
    assert len(epochs) == 10 and epochs[-1] < epochs[0], "training did not lower the loss"
    figures = [out for cell in nb.cells for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]
    assert len(figures) >= 5  # the two images, pictures of the preprocessed image, the results, the loss curve
    last = nb.cells[-1].outputs
    png = next(base64.b64decode(out["data"]["image/png"]) for out in last if "image/png" in out.get("data", {}))
    assert png.startswith(b"\x89PNG"), "the last cell does not show the stylized image"
