"""Turning backend results into tables and pictures (no framework imports).

This run's rows are ``Result``s; --ratio's two files are read as plain dicts, checked by tools/ratio.py.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from common import atomic, machine
from common.image_space import D2L_NORMALIZED, ImageSpace
from common.images import postprocess_float
from tools import strict_json
from tools.cli import printable
from tools.jobs import LOSS_PARTS, OK, Result


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def rgb_pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def finished(results: list[Result]) -> list[Result]:
    """The runs that finished with finite losses: the only ones whose images are compared or plotted."""
    return [r for r in results if r.ok
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in (r.final_losses or {}).values())]


def image_agreement(out_dir: Path, results: list[Result], space: ImageSpace = D2L_NORMALIZED) -> list[dict]:
    """Max absolute pixel difference and PSNR between each pair of finished backends, and PSNR of
    the float images (before rounding to 8 bits, in the recipe's image ``space``) where both were saved.

    Identical images have an infinite PSNR, which JSON cannot hold: ``psnr_db`` is then None and ``identical`` True.
    """
    pixels = {r.backend: rgb_pixels(out_dir / r.image) for r in finished(results)}
    floats = {name: postprocess_float(np.load(out_dir / f"{name}.npy"), space) for name in pixels
              if (out_dir / f"{name}.npy").exists()}
    rows = []
    for a, b in itertools.combinations(pixels, 2):
        diff = np.abs(pixels[a].astype(np.int16) - pixels[b].astype(np.int16))
        db = psnr(pixels[a], pixels[b])
        float_db = psnr(floats[a], floats[b]) if a in floats and b in floats else None
        rows.append({"pair": [a, b], "max_abs_pixel_diff": int(diff.max()),
                     "psnr_db": db if math.isfinite(db) else None, "identical": not math.isfinite(db),
                     "float_psnr_db": float_db if float_db is None or math.isfinite(float_db) else None,
                     "float_identical": float_db is not None and not math.isfinite(float_db)})
    return rows


def _ms(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.1f}"


def _mib(n) -> str:
    return "-" if n is None else f"{n / 2**20:.0f}"


def _several_per_step(r: Result) -> bool:
    return r.ok and r.evaluations is not None and r.history is not None and r.evaluations != len(r.history)


def summary_table(results: list[Result]) -> str:
    """One row per backend; closure calls and the time per call where a step makes several (L-BFGS)."""
    calls = any(map(_several_per_step, results))
    extra_head, extra_rule = (" closure calls | ms/call |", "---:|---:|") if calls else ("", "")
    header = (
        f"| backend | status | setup s | first step s | ms/step (median) | p10-p90 ms | total s |{extra_head} "
        "host MiB | device MiB | content | style | tv |\n"
        f"|---|---|---:|---:|---:|---:|---:|{extra_rule}---:|---:|---:|---:|---:|\n"
    )
    rows = []
    for r in results:
        if not r.ok:
            rows.append(f"| {r.backend} | {r.status}: {r.error or ''} |" + " |" * (12 if calls else 10))
            continue
        f = r.final_losses
        per_call = f" {r.evaluations} | {_ms(r.total_s / r.evaluations)} |" if calls and r.evaluations else (
            " - | - |" if calls else "")
        rows.append(
            f"| {r.backend} | ok | {r.setup_s:.1f} | {r.first_step_s:.2f} | {_ms(r.step_s_median)} | "
            f"{_ms(r.step_s_p10)}-{_ms(r.step_s_p90)} | {r.total_s:.1f} |{per_call} {_mib(r.peak_host_bytes)} | "
            f"{_mib(r.peak_device_bytes)} | {f['content']:.4g} | {f['style']:.4g} | {f['tv']:.4g} |"
        )
    return header + "\n".join(rows) + "\n"


def agreement_table(rows: list[dict]) -> str:
    if not rows:
        return "(fewer than two backends finished)\n"
    lines = ["| pair | max abs pixel diff (0-255) | PSNR dB | PSNR dB, float images |", "|---|---:|---:|---:|"]
    for row in rows:
        db = "identical" if row.get("psnr_db") is None else f"{row['psnr_db']:.1f}"
        float_db = ("identical" if row.get("float_identical") else "-" if row.get("float_psnr_db") is None
                    else f"{row['float_psnr_db']:.1f}")
        lines.append(f"| {' vs '.join(row['pair'])} | {row['max_abs_pixel_diff']} | {db} | {float_db} |")
    return "\n".join(lines) + "\n"


# The times --ratio divides, B's over A's (tools/ratio.py checks each is > 0).
RATIO_TIMES = ("step_s_median", "setup_s", "first_step_s", "total_s")


def ratio_table(a: dict, b: dict, label_a: str, label_b: str, psnr_db: dict[str, float] | None = None) -> str:
    """Per backend, B's times over A's (below 1: B is faster) and, where given, the PSNR of B's image against A's."""
    psnr_db = psnr_db or {}
    by_a = {r["backend"]: r for r in a["backends"] if r.get("status") == OK}
    by_b = {r["backend"]: r for r in b["backends"] if r.get("status") == OK}
    lines = [
        f"A: {label_a} ({a.get('machine', {}).get('device', '?')}, {a.get('precision', '?')})  \n"
        f"B: {label_b} ({b.get('machine', {}).get('device', '?')}, {b.get('precision', '?')})\n",
        *_machine_line(a.get("machine", {}), b.get("machine", {})),
        "| backend | A ms/step | B ms/step | B/A step | B/A setup | B/A first step | B/A total | B vs A image, PSNR dB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in sorted(set(by_a) | set(by_b)):
        if name not in by_a or name not in by_b:
            lines.append(f"| {name} | {'-' if name not in by_a else _ms(by_a[name]['step_s_median'])} | "
                         f"{'-' if name not in by_b else _ms(by_b[name]['step_s_median'])} | - | - | - | - | - |")
            continue
        ra, rb = by_a[name], by_b[name]
        ratios = [rb[k] / ra[k] for k in RATIO_TIMES]
        psnr_cell = f"{psnr_db[name]:.1f}" if name in psnr_db else "-"
        lines.append(f"| {name} | {_ms(ra['step_s_median'])} | {_ms(rb['step_s_median'])} | "
                     + " | ".join(f"{x:.2f}" for x in ratios) + f" | {psnr_cell} |")
    return "\n".join(lines) + "\n"


def _machine_line(a: dict, b: dict) -> list[str]:
    """A warning line when the two runs came from different machines or thread settings."""
    found = machine.differences(a, b)
    if not found:
        return []
    return [f"**Different machines: {'; '.join(found)}.** Time ratios compare machines as well as runs.\n"]


# What must match for two runs' images to be compared; precision, device and versions may differ.
SAME_RUN_SETTINGS = ("config", "weights")


def image_psnr_between_runs(dir_a: Path, a: dict, dir_b: Path, b: dict) -> dict[str, float]:
    """Per backend finished in both runs, PSNR of run B's image against run A's; none if the runs' settings differ."""
    if any(a.get(key) != b.get(key) for key in SAME_RUN_SETTINGS):
        return {}
    images_a = {r["backend"]: dir_a / r["image"] for r in a["backends"] if r.get("status") == OK}
    result = {}
    for r in b["backends"]:
        if r.get("status") != OK or r["backend"] not in images_a:
            continue
        try:
            pixels_a, pixels_b = rgb_pixels(images_a[r["backend"]]), rgb_pixels(dir_b / r["image"])
        except OSError:
            continue  # a results.json moved without its images: times only
        result[r["backend"]] = psnr(pixels_a, pixels_b)
    return result


def side_by_side(out_path: Path, panels: list[tuple[str, Image.Image]], height: int = 240) -> None:
    """Content, style and each backend's result in one row, labelled."""
    scaled = [(label, img.resize((max(1, round(img.width * height / img.height)), height))) for label, img in panels]
    label_h, gap = 30, 6
    width = sum(img.width for _, img in scaled) + gap * (len(scaled) - 1)
    canvas = Image.new("RGB", (width, height + label_h), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=20)
    x = 0
    for label, img in scaled:
        canvas.paste(img, (x, label_h))
        draw.text((x + 4, 3), label, fill="black", font=font)
        x += img.width + gap
    with atomic.atomic_path(out_path) as tmp:
        canvas.save(tmp, format="PNG")


def loss_plot(out_path: Path, results: list[Result]) -> None:
    """Each loss part against the epoch, one line per backend, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for k, part in enumerate(LOSS_PARTS):
        ax = axes[k]
        positive = False
        for r in finished(results):
            history = np.asarray(r.history)
            positive |= bool((history[:, k] > 0).any())
            ax.plot(np.arange(1, len(history) + 1), history[:, k], label=r.backend, lw=1.2)
        ax.set_title(f"{part} loss" if positive else f"{part} loss (zero: not in this recipe)")
        ax.set_xlabel("step")
        if positive:  # a recipe without a part (the PyTorch tutorial's TV) has nothing to log-scale
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    with atomic.atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _space(summary: dict) -> ImageSpace:
    """The image space of the run's recipe (results.json before recipes: d2l's)."""
    from common import recipes

    return recipes.get(summary.get("config", {}).get("recipe", "d2l")).space


def write_report(out: Path, summary: dict, results: list[Result], content_img, style_img) -> None:
    """results.json (``summary`` with the rows), summary.md, side_by_side.png and, once a backend finished,
    losses.png; each written whole."""
    summary["backends"] = [r.to_dict() for r in results]
    summary["agreement"] = image_agreement(out, results, _space(summary))
    atomic.write_text(out / "results.json", strict_json.dumps(summary, indent=1))
    text = (
        f"# Style transfer comparison\n\n{summary['description']}\n\n"
        + summary_table(results)
        + "\n## Output agreement\n\n"
        + agreement_table(summary["agreement"])
        + f"\n![side by side](side_by_side.png)\n\n![losses](losses.png)\n\nCommand: `{summary['command']}`\n"
    )
    atomic.write_text(out / "summary.md", printable(text))
    panels = [("content", content_img), ("style", style_img)]
    for r in results:
        if r.ok:
            with Image.open(out / r.image) as img:
                panels.append((r.backend, img.convert("RGB")))
    side_by_side(out / "side_by_side.png", panels)
    if any(r.ok for r in results):
        loss_plot(out / "losses.png", results)
