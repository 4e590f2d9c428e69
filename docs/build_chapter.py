"""Build the chapter: d2l 13.12 step by step, each listing in a tab per framework.

    python docs/build_chapter.py           # write docs/chapter.md and docs/chapter.html
    python docs/build_chapter.py --check   # exit 1 if either would change; write nothing

The chapter's text and its step tables (which listings each tab shows) are in
docs/chapter_content.py, written with the blocks of docs/chapter_model.py; this file
is the machinery that turns them into the two pages. Every listing is cut out of the
project's own source with ``ast`` (nothing is imported, so no framework is needed and
the build takes well under a second), and the results come from the files a
``compare.py`` run wrote into docs/. The build fails, naming what is missing, when a
listed symbol, a test the text points at, or an image is gone, when a backend tab
shows BackendBase's method although that backend overrides it, or when a tab leaves
out a method of the Backend Protocol. The output has no timestamps, so ``--check`` is
exact; CI runs it through ``tests/test_chapter.py``.
"""

from __future__ import annotations

import argparse
import ast
import html
import io
import json
import keyword
import re
import sys
import textwrap
import tokenize
from dataclasses import dataclass
from functools import singledispatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# chapter_content and chapter_model sit beside this file: on the path when it runs as a script, not when
# the tests load it by path.
sys.path.insert(0, str(ROOT / "docs"))

import chapter_content as content  # noqa: E402  (stdlib only, like chapter_model and common)
from chapter_model import (  # noqa: E402
    BACKEND_CLASSES, BACKEND_FILES, BASE_CLASS, FILES, TAB_LABELS, TABS, Code, Figures, Section, Shell, Table,
    Tabs, Tests, own, shared,
)
from common import atomic  # noqa: E402  (stdlib only: common imports no framework)
from tools.jobs import Result  # noqa: E402  (the rows of a results.json; imports no NumPy)

OUTPUTS = ("docs/chapter.md", "docs/chapter.html")


class ChapterError(Exception):
    """The source no longer has what the chapter shows: say what, and where."""


# --- results: read from the files a compare.py run wrote --------------------------------

RUN = "docs/compare-cpu"
AGREEMENT = "docs/agreement.json"


def read_json(root: Path, path: str):
    try:
        return json.loads((root / path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ChapterError(f"{path} is missing: the results section is built from it") from None


def results(root: Path) -> Section:
    """The results section, filled in from the files a compare.py run wrote under ``root``/docs."""
    run = read_json(root, f"{RUN}/results.json")
    rows = [Result.from_dict(r) for r in run["backends"]]
    finished = [r for r in rows if r.ok]
    return content.results_section(
        command=run["command"].strip(), folder=RUN, description=run["description"], machine=machine(run),
        repeats=repeats(finished), versions=versions(rows),
        images=tuple((f"{RUN.removeprefix('docs/')}/{r.image}", TAB_LABELS.get(r.backend, r.backend))
                     for r in finished),
        speed=speed_table(rows), losses=losses_table(finished), images_agree=image_agreement_table(run),
        numbers_agree=agreement_table(read_json(root, AGREEMENT)))


def machine(run: dict) -> str:
    m = run.get("machine", {})
    gpus = ", ".join(m.get("gpus") or []) or "no GPU"
    return f"{m.get('cpu', '?')}, {m.get('cpu_count', '?')} cores, {gpus}; Python {m.get('python', '?')}"


def repeats(finished: list[Result]) -> str:
    n = max((len(r.repeat_step_s_medians or [0]) for r in finished), default=1)
    return "once" if n == 1 else f"{n} times"


def versions(rows: list[Result]) -> str:
    """ "torch 2.15.0, torchvision 0.29.2; tensorflow ...": each backend's framework packages."""
    skip = {"python", "numpy"}
    return "; ".join(", ".join(f"{k} {v}" for k, v in r.versions.items() if v and k not in skip)
                     for r in rows if r.versions)


def speed_table(rows_in: list[Result]) -> Table:
    header = ("backend", "device", "setup s", "first step s", "ms/step (median)", "p10–p90 ms", "total s",
              "host MiB", "device MiB")
    rows = []
    for r in rows_in:
        if not r.ok:
            rows.append((r.backend, f"{r.status}: {r.error or ''}") + ("",) * 7)
            continue
        rows.append((
            r.backend, r.device_name or r.device or "?", f"{r.setup_s:.1f}",
            f"{r.first_step_s:.2f}", f"{r.step_s_median * 1e3:.1f}",
            f"{r.step_s_p10 * 1e3:.0f}–{r.step_s_p90 * 1e3:.0f}", f"{r.total_s:.1f}",
            mib(r.peak_host_bytes), mib(r.peak_device_bytes),
        ))
    return Table(header, tuple(rows), (False, False) + (True,) * 7)


def mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.0f}"


def losses_table(finished: list[Result]) -> Table:
    parts = tuple(finished[0].final_losses) if finished else ()  # LossParts' order, as the run wrote them
    rows = tuple((r.backend, *(f"{r.final_losses[k]:.4g}" for k in parts)) for r in finished)
    return Table(("backend", *(f"final {k} loss" for k in parts)), rows, (False,) + (True,) * len(parts))


def image_agreement_table(run: dict) -> Table:
    rows = tuple((" vs ".join(a["pair"]), str(a["max_abs_pixel_diff"]), f"{a['psnr_db']:.1f}")
                 for a in run.get("agreement", []))
    return Table(("pair", "max abs pixel difference (0–255)", "PSNR dB"), rows, (False, True, True))


def agreement_table(measured: dict[str, dict[str, float]]) -> Table:
    pairs = sorted({pair for values in measured.values() for pair in values})
    rows = []
    for quantity, values in measured.items():
        cell = "{:.1f}" if quantity.startswith("PSNR") else "{:.1e}"
        rows.append((quantity, *(cell.format(values[p]) if p in values else "" for p in pairs)))
    return Table(("quantity", *pairs), tuple(rows), (False,) + (True,) * len(pairs))


# --- cutting listings out of the source --------------------------------------------------


@dataclass(frozen=True)
class Listing:
    path: str
    symbol: str
    code: str
    note: str  # "" or why this tab shows code from outside the framework's file


class Sources:
    """Each source file read and parsed once per build."""

    def __init__(self, root: Path):
        self.root = root
        self._parsed: dict[str, tuple[list[str], ast.Module]] = {}

    def parsed(self, path: str) -> tuple[list[str], ast.Module]:
        if path not in self._parsed:
            try:
                text = (self.root / path).read_text(encoding="utf-8")
            except FileNotFoundError:
                raise ChapterError(f"{path} does not exist (the chapter lists code from it)") from None
            self._parsed[path] = text.splitlines(), ast.parse(text, filename=path)
        return self._parsed[path]

    def node(self, path: str, symbol: str) -> ast.AST:
        """The definition of ``symbol`` ("func", "Class", "Class.method", "CONSTANT") in ``path``."""
        _, tree = self.parsed(path)
        body, node = tree.body, None
        for name in symbol.split("."):
            node = next((n for n in body if defines(n, name)), None)
            if node is None:
                raise ChapterError(f"{path} has no {symbol}: the chapter lists it (update the step table in "
                                   f"docs/chapter_content.py if it was renamed or removed)")
            body = getattr(node, "body", [])
        return node

    def segment(self, path: str, symbol: str) -> str:
        """The source of ``symbol``, decorators and the comment lines right above it included, dedented."""
        lines, _ = self.parsed(path)
        node = self.node(path, symbol)
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        while first > 1 and is_comment(lines[first - 2]):
            first -= 1
        return textwrap.dedent("\n".join(lines[first - 1: node.end_lineno])) + "\n"

    def class_methods(self, path: str, cls: str) -> set[str]:
        return {n.name for n in self.node(path, cls).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}

    def listing(self, tab: str | None, spec: str) -> Listing:
        alias, _, symbol = spec.partition(":")
        if alias not in FILES or not symbol:
            raise ChapterError(f"bad listing spec {spec!r}: expected 'file:Symbol' with file one of {sorted(FILES)}")
        path = FILES[alias]
        code = self.segment(path, symbol)
        return Listing(path, symbol, code, self.note(tab, alias, symbol))

    def note(self, tab: str | None, alias: str, symbol: str) -> str:
        if tab in BACKEND_CLASSES and alias == "base":
            method = symbol.removeprefix(f"{BASE_CLASS}.")
            if method in self.class_methods(FILES[tab], BACKEND_CLASSES[tab]):
                raise ChapterError(f"{BACKEND_CLASSES[tab]} overrides {symbol}: show "
                                   f"{tab}:{BACKEND_CLASSES[tab]}.{method} in the {TAB_LABELS[tab]} tab instead")
            return f"shared: inherited from {BASE_CLASS}, the same in every backend"
        if tab in BACKEND_CLASSES and alias not in BACKEND_FILES[tab]:
            raise ChapterError(f"{TAB_LABELS[tab]} tab lists {alias}:{symbol}, which is not the backend's own code")
        if tab == "numpy":
            return "NumPy float64 reference"
        return ""


def defines(node: ast.AST, name: str) -> bool:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name == name
    if isinstance(node, ast.Assign):
        return any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
    if isinstance(node, ast.AnnAssign):
        return isinstance(node.target, ast.Name) and node.target.id == name
    return False


def is_comment(line: str) -> bool:
    """A comment line that belongs to the definition below it (section rulers "# --- x ---" do not)."""
    stripped = line.strip()
    return stripped.startswith("#") and not stripped.startswith("# ---")


# --- checks that make drift fail the build ------------------------------------------------


def protocol_methods(root: Path) -> list[str]:
    """The methods of common/interface.py's Backend Protocol, in order."""
    sources = Sources(root)
    return [n.name for n in sources.node(FILES["interface"], "Backend").body if isinstance(n, ast.FunctionDef)]


def shown_per_tab(sections: list[Section]) -> dict[str, set[str]]:
    """Every "file:Symbol" spec shown in each backend tab."""
    shown: dict[str, set[str]] = {tab: set() for tab in BACKEND_CLASSES}
    for block in blocks(sections):
        if isinstance(block, Tabs):
            for tab, specs in block.groups():
                if tab in shown:
                    shown[tab].update(specs)
    return shown


def missing_methods(root: Path, sections: list[Section]) -> list[str]:
    """Protocol methods a backend tab never shows, neither its own nor BackendBase's."""
    shown = shown_per_tab(sections)
    missing = []
    for method in protocol_methods(root):
        for tab in BACKEND_CLASSES:
            if not ({*own(tab, method), *shared(method)} & shown[tab]):
                missing.append(f"{TAB_LABELS[tab]}: {method}")
    return missing


def known_tests(root: Path) -> set[str]:
    """Every "tests/test_x.py::test_name" and "tests/test_x.py::TestClass::test_name" in tests/."""
    ids = set()
    for path in sorted((root / "tests").glob("test_*.py")):
        rel = path.relative_to(root).as_posix()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
                ids.add(f"{rel}::{node.name}")
            elif isinstance(node, ast.ClassDef):
                ids.update(f"{rel}::{node.name}::{n.name}" for n in node.body
                           if isinstance(n, ast.FunctionDef) and n.name.startswith("test"))
    return ids


def missing_tests(root: Path, sections: list[Section]) -> list[str]:
    known = known_tests(root)
    return [p for block in blocks(sections) if isinstance(block, Tests) for p in block.pointers if p not in known]


def missing_images(root: Path, sections: list[Section]) -> list[str]:
    return [f"docs/{src}" for block in blocks(sections) if isinstance(block, Figures)
            for src, _ in block.items if not (root / "docs" / src).is_file()]


def blocks(sections: list[Section]):
    return (block for section in sections for part in section.parts for block in part.blocks)


def check_sources(root: Path, sections: list[Section]) -> None:
    problems = [f"the {m} tab leaves out this Protocol method" for m in missing_methods(root, sections)]
    problems += [f"no such test: {p}" for p in missing_tests(root, sections)]
    problems += [f"no such image: {p}" for p in missing_images(root, sections)]
    if problems:
        raise ChapterError("; ".join(problems))


# --- inline text: `code`, **bold**, [links](url) -------------------------------------------

INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|\[([^\]]+)\]\(([^)\s]+)\)")


def paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in text.strip().split("\n\n") if p.strip()]


def inline_html(text: str) -> str:
    out, pos = [], 0
    for m in INLINE.finditer(text):
        out.append(html.escape(text[pos:m.start()]))
        code, bold, label, url = m.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif bold is not None:
            out.append(f"<strong>{inline_html(bold)}</strong>")
        else:
            out.append(f'<a href="{html.escape(url)}">{inline_html(label)}</a>')
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


# --- Markdown ------------------------------------------------------------------------------


def fence(code: str) -> str:
    """A backtick fence longer than any backtick run in ``code``."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    return "`" * max(3, longest + 1)


def md_listing(listing: Listing) -> str:
    note = f" ({listing.note})" if listing.note else ""
    marks = fence(listing.code)
    return f"`{listing.path}` · `{listing.symbol}`{note}\n\n{marks}python\n{listing.code}{marks}\n"


@singledispatch
def md_block(block, sources: Sources) -> str:
    raise TypeError(f"no Markdown for {type(block).__name__}")


@md_block.register
def _(block: Code, sources: Sources) -> str:
    return "\n".join(md_listing(sources.listing(None, spec)) for spec in block.specs)


def notebook_href(tab: str) -> str | None:
    """The framework's notebook, relative to docs/ (the NumPy tab has none)."""
    return f"../{content.NOTEBOOKS[tab]}" if tab in content.NOTEBOOKS else None


def md_notebook_link(tab: str) -> str:
    href = notebook_href(tab)
    return f' · <a href="{href}">run it in the notebook</a>' if href else ""


@md_block.register
def _(block: Tabs, sources: Sources) -> str:
    # Code hosts cannot switch tabs: each framework is a <details> block, the first one open.
    out = []
    for k, (tab, specs) in enumerate(block.groups()):
        listings = "\n".join(md_listing(sources.listing(tab, spec)) for spec in specs)
        out.append(f"<details{' open' if k == 0 else ''}>\n<summary><b>{TAB_LABELS[tab]}</b>{md_notebook_link(tab)}"
                   f"</summary>\n\n{listings}\n</details>\n")
    return "\n".join(out)


@md_block.register
def _(block: Figures, sources: Sources) -> str:
    if block.row:
        header = " | ".join(caption for _, caption in block.items)
        images = " | ".join(f"![{caption}]({src})" for src, caption in block.items)
        return f"| {header} |\n|{'---|' * len(block.items)}\n| {images} |\n"
    return "\n".join(f"![{caption}]({src})\n\n{caption[0].upper()}{caption[1:]}.\n" for src, caption in block.items)


@md_block.register
def _(block: Table, sources: Sources) -> str:
    align = "|" + "".join("---:|" if right else "---|" for right in block.numeric)
    lines = ["| " + " | ".join(block.header) + " |", align]
    lines += ["| " + " | ".join(row) + " |" for row in block.rows]
    return "\n".join(lines) + "\n"


@md_block.register
def _(block: Shell, sources: Sources) -> str:
    return f"```bash\n{block.command}\n```\n"


@md_block.register
def _(block: Tests, sources: Sources) -> str:
    return "Proved by: " + ", ".join(f"`{p}`" for p in block.pointers) + ".\n"


def markdown(sections: list[Section], sources: Sources) -> str:
    out = [f"<!-- Generated by docs/build_chapter.py from the project's source and docs/chapter_content.py; edit those, then run "
           f"`{content.COMMAND}`. -->\n"]
    for number, section in enumerate(sections):
        heading = f"# {section.title}" if number == 0 else f"## {number}. {section.title}"
        out.append(heading + "\n")
        for part in section.parts:
            if part.title:
                out.append(f"{'##' if number == 0 else '###'} {part.title}\n")
            out += [p + "\n" for p in paragraphs(part.text)]
            out += [md_block(block, sources) for block in part.blocks]
    return "\n".join(out)


# --- HTML ----------------------------------------------------------------------------------

SPAN = {tokenize.COMMENT: "c", tokenize.STRING: "s", tokenize.NUMBER: "m"}
FSTRING_START = getattr(tokenize, "FSTRING_START", None)  # Python 3.12+ splits f-strings into tokens
FSTRING_END = getattr(tokenize, "FSTRING_END", None)


def highlight(code: str) -> str:
    """HTML for Python source: keywords, strings, comments, numbers and defined names in spans.

    A whole f-string is one string span on every Python version, so the page is the same whichever
    Python builds it.
    """
    starts = [0]
    for line in code.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))

    def offset(position):
        return starts[position[0] - 1] + position[1]

    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return html.escape(code)
    spans, depth, fstring_at, previous = [], 0, 0, ""
    for tok in tokens:
        if tok.type == FSTRING_START:
            fstring_at = offset(tok.start) if depth == 0 else fstring_at
            depth += 1
        elif tok.type == FSTRING_END:
            depth -= 1
            if depth == 0:
                spans.append((fstring_at, offset(tok.end), "s"))
        elif depth == 0:
            kind = SPAN.get(tok.type)
            if tok.type == tokenize.NAME:
                kind = "k" if keyword.iskeyword(tok.string) else "f" if previous in ("def", "class") else None
            if kind:
                spans.append((offset(tok.start), offset(tok.end), kind))
            if tok.type not in (tokenize.NL, tokenize.COMMENT):
                previous = tok.string
    out, pos = [], 0
    for start, end, kind in spans:
        out.append(html.escape(code[pos:start]))
        out.append(f'<span class="{kind}">{html.escape(code[start:end])}</span>')
        pos = end
    out.append(html.escape(code[pos:]))
    return "".join(out)


def html_listing(listing: Listing, tab: str | None) -> str:
    note = f' <span class="note">{html.escape(listing.note)}</span>' if listing.note else ""
    attrs = f' data-tab="{tab}" data-symbol="{html.escape(listing.symbol)}"' if tab else ""
    return (f'<div class="listing"{attrs}><div class="where">{html.escape(listing.path)} · '
            f"<code>{html.escape(listing.symbol)}</code>{note}</div>\n"
            f"<pre><code>{highlight(listing.code)}</code></pre></div>")


@singledispatch
def html_block(block, sources: Sources) -> str:
    raise TypeError(f"no HTML for {type(block).__name__}")


@html_block.register
def _(block: Code, sources: Sources) -> str:
    return "\n".join(html_listing(sources.listing(None, spec), None) for spec in block.specs)


def html_notebook_link(tab: str) -> str:
    href = notebook_href(tab)
    return (f'<div class="run"><a href="{html.escape(href)}">Run it in the {TAB_LABELS[tab]} notebook</a></div>'
            if href else "")


def notebook_links() -> str:
    """The header's link to the chosen framework's notebook (all of them without JavaScript)."""
    return "".join(f'<a class="notebook" data-tab="{tab}" href="{html.escape(notebook_href(tab))}">'
                   f"{TAB_LABELS[tab]} notebook</a>" for tab in content.NOTEBOOKS)


def tab_buttons(tabs) -> str:
    return "".join(f'<button type="button" class="tab" data-tab="{tab}">{TAB_LABELS[tab]}</button>' for tab in tabs)


@html_block.register
def _(block: Tabs, sources: Sources) -> str:
    groups = block.groups()
    panels = "\n".join(
        f'<div class="panel" data-tab="{tab}"><div class="panel-label">{TAB_LABELS[tab]}</div>\n'
        + "\n".join(html_listing(sources.listing(tab, spec), tab) for spec in specs) + html_notebook_link(tab)
        + "</div>"
        for tab, specs in groups
    )
    return (f'<div class="tabs"><div class="tabbar" role="tablist">{tab_buttons(t for t, _ in groups)}</div>\n'
            f"{panels}</div>")


@html_block.register
def _(block: Figures, sources: Sources) -> str:
    figures = "".join(f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}">'
                      f"<figcaption>{html.escape(caption)}</figcaption></figure>" for src, caption in block.items)
    return f'<div class="figures{" row" if block.row else ""}">{figures}</div>'


@html_block.register
def _(block: Table, sources: Sources) -> str:
    def cells(row, tag):
        return "".join(f'<{tag}{" class=num" if right else ""}>{html.escape(value)}</{tag}>'
                       for value, right in zip(row, block.numeric))

    rows = "".join(f"<tr>{cells(row, 'td')}</tr>" for row in block.rows)
    return f'<div class="table"><table><thead><tr>{cells(block.header, "th")}</tr></thead><tbody>{rows}</tbody></table></div>'


@html_block.register
def _(block: Shell, sources: Sources) -> str:
    return f'<pre class="shell"><code>{html.escape(block.command)}</code></pre>'


@html_block.register
def _(block: Tests, sources: Sources) -> str:
    items = "".join(f"<li><code>{html.escape(p)}</code></li>" for p in block.pointers)
    return f'<div class="tests">Proved by:<ul>{items}</ul></div>'


CSS = """
:root { --ink: #1d2126; --muted: #5b6470; --rule: #dfe3e8; --accent: #2f6db5; --code-bg: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.6; font-size: 16.5px;
       font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 980px; margin: 0 auto; padding: 0 28px 80px; }
h1 { font-size: 2.1em; line-height: 1.2; margin: 0.9em 0 0.5em; }
h2 { font-size: 1.5em; margin: 2.2em 0 0.6em; padding-top: 0.4em; border-top: 1px solid var(--rule); }
h3 { font-size: 1.18em; margin: 1.6em 0 0.4em; }
a { color: var(--accent); }
code { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.88em; }
p code, li code, td code { background: var(--code-bg); padding: 0.05em 0.3em; border-radius: 3px; }
.switch { position: sticky; top: 0; z-index: 2; background: #fff;
          border-bottom: 1px solid var(--rule); }
.switch div { max-width: 980px; margin: 0 auto; padding: 8px 28px; display: flex; gap: 10px; align-items: center;
              font-size: 0.9em; color: var(--muted); }
.switch .title { margin-right: auto; font-weight: 600; color: var(--ink); }
nav.toc ol { columns: 2; margin: 0.5em 0 1.5em; padding-left: 1.4em; }
.tabs { margin: 1em 0 1.4em; }
.tabbar { display: flex; gap: 2px; border-bottom: 2px solid var(--rule); }
button.tab { font: inherit; font-size: 0.9em; padding: 5px 16px; border: 1px solid transparent; border-bottom: none;
             background: none; color: var(--muted); cursor: pointer; border-radius: 5px 5px 0 0; margin-bottom: -2px; }
button.tab:hover { color: var(--ink); background: var(--code-bg); }
button.tab.active { color: var(--accent); font-weight: 600; border-color: var(--rule); background: #fff;
                    box-shadow: inset 0 3px 0 var(--accent); }
.switch button.tab { border: 1px solid var(--rule); border-radius: 5px; margin: 0; padding: 2px 12px; }
.switch button.tab.active { box-shadow: none; background: var(--accent); color: #fff; border-color: var(--accent); }
.js .panel { display: none; }
.js .panel.active { display: block; }
.js .panel-label { display: none; }
.no-js .tabbar, .no-js .switch .choose { display: none; }
.panel-label { font-weight: 600; margin-top: 0.8em; }
.listing { margin: 0.7em 0; }
.where { font-size: 0.82em; color: var(--muted); padding: 3px 0; }
.where code { color: var(--ink); }
.note { margin-left: 0.6em; padding: 0 0.5em; border-radius: 3px; background: #fff4d6; color: #6b5200; }
pre { background: var(--code-bg); border: 1px solid var(--rule); border-radius: 5px; padding: 10px 12px; margin: 0;
      overflow-x: auto; line-height: 1.45; }
pre code { font-size: 12.5px; }
pre.shell { margin: 0.8em 0; }
.k { color: #a626a4; font-weight: 600; } .s { color: #2c7a3f; } .c { color: #7a828c; font-style: italic; }
.m { color: #b45309; } .f { color: #1f5fbf; font-weight: 600; }
.figures { margin: 1em 0; }
.figures figure { margin: 0 0 1em; }
.figures img { max-width: 100%; height: auto; display: block; border: 1px solid var(--rule); }
.figures.row { display: flex; gap: 12px; flex-wrap: wrap; }
.figures.row figure { flex: 1 1 200px; margin: 0; }
figcaption { font-size: 0.85em; color: var(--muted); margin-top: 3px; }
.table { overflow-x: auto; margin: 0.8em 0 1.2em; }
table { border-collapse: collapse; font-size: 0.84em; }
th, td { border-bottom: 1px solid var(--rule); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: var(--code-bg); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num, td:first-child { white-space: nowrap; }
.run { font-size: 0.82em; text-align: right; }
.switch .notebooks { display: flex; gap: 10px; }
.js .switch a.notebook { display: none; }
.js .switch a.notebook.active { display: inline; }
.tests { font-size: 0.9em; color: var(--muted); }
.tests ul { margin: 0.2em 0 0; }
"""

# Tab choice: ?tab=jax or #jax (for links and screenshots), else the last click (localStorage), else PyTorch.
JS = """
(function () {
  var TABS = %s, KEY = "d2l-style-transfer-tab";
  function chosen() {
    var asked = new URLSearchParams(location.search).get("tab"), hash = location.hash.slice(1);
    if (TABS.indexOf(asked) >= 0) return asked;
    if (TABS.indexOf(hash) >= 0) return hash;
    try { var kept = localStorage.getItem(KEY); if (TABS.indexOf(kept) >= 0) return kept; } catch (e) {}
    return TABS[0];
  }
  function show(tab) {
    document.querySelectorAll(".tabs").forEach(function (group) {
      // A group without this framework (NumPy appears only with the losses) shows its first tab.
      var pick = group.querySelector('.panel[data-tab="' + tab + '"]') ? tab
                 : group.querySelector(".panel").getAttribute("data-tab");
      group.querySelectorAll(".tabbar .tab, .panel").forEach(function (el) {
        var on = el.getAttribute("data-tab") === pick;
        el.classList.toggle("active", on);
        if (el.tagName === "BUTTON") el.setAttribute("aria-selected", on ? "true" : "false");
      });
    });
    document.querySelectorAll(".switch button.tab, .switch a.notebook").forEach(function (el) {
      el.classList.toggle("active", el.getAttribute("data-tab") === tab);
    });
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button.tab") : null;
    if (!button) return;
    var tab = button.getAttribute("data-tab"), before = button.getBoundingClientRect().top;
    try { localStorage.setItem(KEY, tab); } catch (e) {}
    show(tab);
    // Listings above change height: keep the clicked tab where the reader's eye is.
    if (!button.closest(".switch")) window.scrollBy(0, button.getBoundingClientRect().top - before);
  });
  window.addEventListener("hashchange", function () {
    var hash = location.hash.slice(1);
    if (TABS.indexOf(hash) >= 0) show(hash);
  });
  show(chosen());
})();
""" % json.dumps(list(TABS))


def slug(title: str) -> str:
    """ "The weights' input convention" -> "the-weights-input-convention", for links to a part."""
    return "-".join(re.findall(r"[a-z0-9]+", title.lower().replace("'", "")))


def html_page(sections: list[Section], sources: Sources) -> str:
    title = sections[0].title
    toc = "".join(f'<li><a href="#{s.id}">{html.escape(s.title)}</a></li>' for s in sections[1:])
    body = []
    for number, section in enumerate(sections):
        if number == 0:
            body.append(f'<h1 id="{section.id}">{html.escape(section.title)}</h1>')
        else:
            body.append(f'<h2 id="{section.id}">{number}. {html.escape(section.title)}</h2>')
        for k, part in enumerate(section.parts):
            if part.title:
                body.append(f'<h3 id="{section.id}-{slug(part.title)}">{html.escape(part.title)}</h3>')
            body += [f"<p>{inline_html(p)}</p>" for p in paragraphs(part.text)]
            body += [html_block(block, sources) for block in part.blocks]
            if number == 0 and k == 0:
                body.append(f'<nav class="toc"><strong>Contents</strong><ol>{toc}</ol></nav>')
    return f"""<!DOCTYPE html>
<!-- Generated by docs/build_chapter.py from the project's source and docs/chapter_content.py; edit those, then run `{content.COMMAND}`. -->
<html lang="en" class="no-js">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{CSS}</style>
<script>document.documentElement.className = "js";</script>
</head>
<body>
<header class="switch"><div><span class="title">d2l 13.12, neural style transfer</span>
<span class="choose">Show code in</span><span class="choose">{tab_buttons(TABS)}</span>
<span class="notebooks">{notebook_links()}</span></div></header>
<main>
{chr(10).join(body)}
</main>
<script>{JS}</script>
</body>
</html>
"""


# --- build, check, command line ------------------------------------------------------------


def build(root: Path = ROOT) -> dict[str, str]:
    """{output path relative to root: its text}. Raises ChapterError when the source has drifted."""
    sections = content.chapter(results(root))
    check_sources(root, sections)
    sources = Sources(root)
    return {"docs/chapter.md": markdown(sections, sources), "docs/chapter.html": html_page(sections, sources)}


def stale(root: Path, outputs: dict[str, str]) -> list[str]:
    def current(path: str) -> str | None:
        target = root / path
        return target.read_text(encoding="utf-8") if target.is_file() else None

    return [path for path, text in outputs.items() if current(path) != text]


def main(argv: list[str] | None = None) -> int:
    return run_cli(
        argv, "build_chapter", build,
        description="Build docs/chapter.md and docs/chapter.html (d2l 13.12 with a tab per framework) from the "
                    "project's source and the latest compare.py run in docs/.",
        epilog="The build fails when a listed symbol, a referenced test or an image is missing.",
        check_help="write nothing; exit 1 if either file differs from what the source builds",
        rebuild=f"`{content.COMMAND}` (python docs/build_chapter.py)")


def run_cli(argv, prog: str, build_outputs, *, description: str, epilog: str, check_help: str, rebuild: str) -> int:
    """The command line of a generator: build (or ``--check``) its outputs; a drifted source is one line, exit 2."""
    parser = argparse.ArgumentParser(description=description, epilog=epilog)
    parser.add_argument("--check", action="store_true", help=check_help)
    args = parser.parse_args(argv)
    try:
        outputs = build_outputs(ROOT)
    except ChapterError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    return write_or_check(ROOT, outputs, args.check, rebuild)


def write_or_check(root: Path, outputs: dict[str, str], check: bool, rebuild: str) -> int:
    """Write each output that changed; or, with ``check``, write nothing and return 1 naming the stale ones."""
    changed = stale(root, outputs)
    if check:
        if changed:
            print(f"{enumeration(changed)} {'is' if len(changed) == 1 else 'are'} stale: run {rebuild}",
                  file=sys.stderr)
            return 1
        print(f"{enumeration(list(outputs))} are up to date")
        return 0
    for path in outputs:
        if path in changed:
            atomic.write_text(root / path, outputs[path])
        print(f"{'wrote' if path in changed else 'unchanged'} {path}")
    return 0


def enumeration(items: list[str]) -> str:
    """ "a", "a and b", "a, b and c". """
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


if __name__ == "__main__":
    sys.exit(main())
