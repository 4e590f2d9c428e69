"""One compare.py run per recipe, then the README's grid of images and its table of times.

    python benchmarks/recipes.py                         # runs/recipes/<recipe>/, then the grid and the table
    python benchmarks/recipes.py --read runs/recipes     # only the grid and the table, from earlier runs

Each recipe runs at the cpu preset (150x225; d2l 200 epochs, the tutorials their own step counts)
with every installed backend, one compare.py after another, so the machine runs one backend at a time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

from common import atomic, recipes  # noqa: E402
from tools.report import side_by_side  # noqa: E402

# (folder, recipe, compare.py options): each recipe, and the PyTorch tutorial with each framework's own
# stock L-BFGS (TensorFlow has none: tensorflow-probability's needs tf_keras, Keras 2).
RUNS = tuple((name, name, []) for name in recipes.RECIPES) + (
    ("pytorch-tutorial-native", "pytorch-tutorial", ["--optimizer", "native", "--backends", "torch,jax"]),)


def run(out: Path, extra: list[str]) -> None:
    for folder, recipe, options in RUNS:
        command = [sys.executable, str(REPO / "compare.py"), "--recipe", recipe, "--out", str(out / folder),
                   *options, *extra]
        print("$", " ".join(command[1:]), flush=True)
        subprocess.run(command, check=True)


def grid(out: Path, picture: Path) -> None:
    """Rows: recipes; columns: content, style, then each backend's result."""
    rows = []
    for name, _, _ in RUNS:
        folder = out / name
        results = json.loads((folder / "results.json").read_text())
        panels = [(name, Image.open(folder / "content.png").convert("RGB")),  # the row's label
                  ("style", Image.open(folder / "style.png").convert("RGB"))]
        panels += [(row["backend"], Image.open(folder / row["image"]).convert("RGB"))
                   for row in results["backends"] if row["status"] == "ok"]
        row_png = folder / "row.png"
        side_by_side(row_png, panels, height=180)
        rows.append(Image.open(row_png))
    canvas = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows) + 8 * (len(rows) - 1)), "white")
    y = 0
    for r in rows:
        canvas.paste(r, (0, y))
        y += r.height + 8
    with atomic.atomic_path(picture) as tmp:
        canvas.save(tmp, format="PNG")


def table(out: Path) -> str:
    """Time to finish each recipe per backend (the training loop, compilation included), and per step and call."""
    lines = ["| recipe | backend | optimizer | steps | closure calls | total s | first step s | ms/step (median) "
             "| ms/call | final total loss |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, _, _ in RUNS:
        results = json.loads((out / name / "results.json").read_text())
        for row in results["backends"]:
            if row["status"] != "ok":
                lines.append(f"| {name} | {row['backend']} | {row['status']}: {row.get('error', '')} |" + " |" * 7)
                continue
            steps, calls = len(row["history"]), row["evaluations"] or len(row["history"])
            lines.append(f"| {name} | {row['backend']} | {row['optimizer']} | {steps} | {calls} | "
                         f"{row['total_s']:.1f} | {row['first_step_s']:.2f} | {row['step_s_median'] * 1e3:.0f} | "
                         f"{row['total_s'] / calls * 1e3:.0f} | {row['final_losses']['total']:.4g} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/recipes"), help="where the three runs go")
    parser.add_argument("--read", type=Path, help="read earlier runs from this folder instead of running")
    parser.add_argument("--grid", type=Path, default=REPO / "docs/images/recipes_grid.png", help="the picture")
    args, extra = parser.parse_known_args()  # anything else goes to compare.py (--backends, --size, ...)
    out = args.read or args.out
    if not args.read:
        run(out, extra)
    grid(out, args.grid)
    text = table(out)
    atomic.write_text(out / "recipes.md", text)
    print(text)
    print(f"wrote {args.grid} and {out / 'recipes.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
