"""Build the notebooks: d2l 13.12 step by step, one runnable Jupyter notebook per framework.

    python docs/build_notebooks.py           # write notebooks/neural-style-{pytorch,tensorflow,jax}.ipynb
    python docs/build_notebooks.py --check   # exit 1 if any would change; write nothing

Each notebook is the chapter's steps (docs/chapter_content.py) for one framework: a Markdown cell with
the chapter's text, a Markdown cell with that framework's listings, cut out of the source with
docs/build_chapter.py's machinery (so a renamed or missing symbol fails here as it does there), and a
code cell from docs/notebook_content.py that runs the step. Outputs are left empty and cell ids are
derived from the steps, so the files depend on nothing but the source: ``--check`` is exact, and CI
runs it through ``tests/test_notebooks.py``. Like the chapter's build, this imports no framework and
no Jupyter package; the JSON is written the way nbformat writes it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # build_chapter and the content files sit beside this one

import build_chapter as chapter  # noqa: E402  (it puts the project root on the path too)
import chapter_content as content  # noqa: E402
import notebook_content as cells  # noqa: E402
from chapter_model import TAB_LABELS, Code, Figures, Part, Section, Tabs  # noqa: E402

ROOT = chapter.ROOT
ChapterError = chapter.ChapterError
# The notebook's own sections around d2l's steps: the introduction's interface part first, the results last.
INTRO = Section("intro", "Before the steps", (content.INTERFACE,))
KERNEL = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def lines(text: str) -> list[str]:
    """Cell source as nbformat stores it: a list of lines, each but the last ending in a newline."""
    return text.strip("\n").splitlines(keepends=True)


def markdown_cell(cell_id: str, text: str) -> dict:
    return {"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": lines(text)}


def code_cell(cell_id: str, code: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": cell_id, "metadata": {}, "outputs": [],
            "source": lines(code)}


def listings(tab: str, part: Part, sources: chapter.Sources) -> str:
    """The part's listings for ``tab``, as the chapter's Markdown shows them; "" if it lists none."""
    out = []
    for block in part.blocks:
        if isinstance(block, Code):
            out += [chapter.md_listing(sources.listing(None, spec)) for spec in block.specs]
        elif isinstance(block, Tabs):
            out += [chapter.md_listing(sources.listing(tab, spec)) for spec in getattr(block, tab)]
        elif not isinstance(block, Figures):  # the step's cell shows the pictures itself
            raise ChapterError(f"a notebook cannot show the {type(block).__name__} block in part {part.title!r}: "
                               "teach docs/build_notebooks.py how, or move it out of the steps")
    return "\n".join(out)


def code_label(tab: str, part: Part) -> str:
    if any(isinstance(block, Tabs) for block in part.blocks):
        return f"The {TAB_LABELS[tab]} code"
    return "The code (the same for every framework)"


def heading(section: Section, number: int | None, part: Part, first: bool) -> str:
    """A numbered step's title above its first part; parts of the introduction are sections of their own."""
    out = f"## {number}. {section.title}\n\n" if number and first else ""
    if part.title:
        out += f"{'###' if number else '##'} {part.title}\n\n"
    return out


def section_cells(tab: str, section: Section, number: int | None, sources: chapter.Sources, used: set) -> list[dict]:
    out = []
    for k, part in enumerate(section.parts):
        cell_id = f"{section.id}-{k}"
        text = "\n\n".join(chapter.paragraphs(part.text))
        out.append(markdown_cell(f"{cell_id}-text", heading(section, number, part, k == 0) + text))
        code = listings(tab, part, sources)
        key = (section.id, part.title)
        if not code:
            continue
        if key not in cells.RUN:
            raise ChapterError(f"part {part.title or '(untitled)'!r} of section {section.id!r} lists code but "
                               f"docs/notebook_content.py has no cell that runs it: add RUN[{key!r}]")
        used.add(key)
        out.append(markdown_cell(f"{cell_id}-code", f"**{code_label(tab, part)}**\n\n{code}"))
        out.append(code_cell(f"{cell_id}-run", cells.RUN[key]))
    return out


def notebook(tab: str, sources: chapter.Sources) -> dict:
    used: set = set()
    introduction = "\n\n".join(chapter.paragraphs(cells.introduction(tab)))
    nb_cells = [markdown_cell("introduction", introduction), code_cell("setup", cells.setup(tab))]
    nb_cells += section_cells(tab, INTRO, None, sources, used)
    for number, section in enumerate((*content.STEPS, cells.RESULTS), start=1):
        nb_cells += section_cells(tab, section, number, sources, used)
    nb_cells += [code_cell(f"results-{k}-run", code) for k, code in enumerate(cells.RESULTS_CELLS)]
    unused = sorted(set(cells.RUN) - used, key=str)
    if unused:
        raise ChapterError(f"docs/notebook_content.py has cells for parts no step lists code in: {unused}")
    return {"cells": nb_cells, "metadata": {"kernelspec": KERNEL, "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def to_json(nb: dict) -> str:
    """nbformat.writes' layout, so that saving the notebook from Jupyter changes as little as possible."""
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def build(root: Path = ROOT) -> dict[str, str]:
    """{notebook path relative to root: its text}. Raises ChapterError when the source has drifted."""
    sources = chapter.Sources(root)
    return {path: to_json(notebook(tab, sources)) for tab, path in content.NOTEBOOKS.items()}


def main(argv: list[str] | None = None) -> int:
    return chapter.run_cli(
        argv, "build_notebooks", build,
        description="Build notebooks/neural-style-*.ipynb (d2l 13.12, one runnable notebook per framework) from "
                    "the project's source, docs/chapter_content.py and docs/notebook_content.py.",
        epilog="The build fails when a listed symbol is missing or a step that lists code has no cell to run it.",
        check_help="write nothing; exit 1 if any notebook differs from what the source builds",
        rebuild=f"`{cells.COMMAND}` (python docs/build_notebooks.py)")


if __name__ == "__main__":
    sys.exit(main())
