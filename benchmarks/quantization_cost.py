"""What the bundled weights' 8-bit quantization costs, against Keras' full-precision file.

    python benchmarks/quantization_cost.py                  # runs both compare.py runs if missing
    python benchmarks/quantization_cost.py --runs runs/quantization --backend jax --json q.json

Needs Keras' file in Keras' cache (the install step fetches it: python -m
common.fetch_weights). Prints the README's tables:

- weights: per layer, max |W_q - W| / max |W| and ||W_q - W|| / ||W|| (NumPy only);
- features: the same two measures for every tap on the default content image at
  the cpu preset's size, and for the Gram matrices at the style taps (one backend);
- images: ``compare.py --preset cpu`` once with ``--weights bundled`` and once with
  ``--weights keras`` (written under ``--runs``, reused when there), per backend the
  PSNR of the quantized run's image against the full-precision one, beside the
  PSNR between backends within each run for scale, and each run's final weighted
  loss parts (the loss weights' balance).
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import backends  # noqa: E402
from common import atomic, images, keras_weights  # noqa: E402
from tools import agreement  # noqa: E402
from common import weights as weight_sets  # noqa: E402
from common.config import CPU  # noqa: E402
from common.errors import UserError  # noqa: E402
from tools.report import psnr, rgb_pixels  # noqa: E402
from common.vgg import CONV_LAYERS  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
WEIGHT_SETS = ("bundled", "keras")  # quantized, full precision


def relative(q: np.ndarray, f: np.ndarray) -> tuple[float, float]:
    """(max |q - f| / max |f|, ||q - f|| / ||f||), in float64."""
    q, f = np.asarray(q, np.float64), np.asarray(f, np.float64)
    return float(np.abs(q - f).max() / np.abs(f).max()), float(np.linalg.norm(q - f) / np.linalg.norm(f))


def weight_rows(quantized, full) -> list[dict]:
    rows = []
    for conv in CONV_LAYERS:
        q, f = quantized[conv.weight_key], full[conv.weight_key]
        max_rel, rms_rel = relative(q, f)
        rows.append({"layer": conv.name, "distinct_q": int(len(np.unique(q))), "distinct_full": int(len(np.unique(f))),
                     "max_rel": max_rel, "rms_rel": rms_rel})
    return rows


def feature_rows(backend_name: str, image_shape) -> list[dict]:
    """Every tap (and the Grams at the style taps) on the default content image, quantized vs full."""
    x = images.preprocess_array(images.load_image(images.DEFAULT_CONTENT), image_shape)
    names = agreement.all_tap_names(CPU)
    made = {w: backends.get_backend(backend_name, weights=w, device="cpu") for w in WEIGHT_SETS}
    feats = {w: agreement.features(b, x, names) for w, b in made.items()}
    style_taps = set(made["keras"].plan(CPU.content_layers, CPU.style_layers).style)
    content_taps = set(made["keras"].plan(CPU.content_layers, CPU.style_layers).content)
    rows = []
    for name in names:
        q, f = feats["bundled"][name], feats["keras"][name]
        row = {"tap": name, "role": ("content" if name in content_taps else "style" if name in style_taps else ""),
               **dict(zip(("max_rel", "rms_rel"), relative(q, f)))}
        if name in style_taps:
            row["gram_max_rel"], row["gram_rms_rel"] = relative(*(_gram(a) for a in (q, f)))
        rows.append(row)
    return rows


def _gram(y: np.ndarray) -> np.ndarray:
    c = y.shape[1]
    m = y.reshape(c, -1).astype(np.float64)
    return m @ m.T / m.size


def run_compare(out: Path, weights: str, epochs: int | None) -> dict:
    """compare.py's cpu preset with ``weights`` into ``out``, unless ``out`` already holds that run."""
    results = out / "results.json"
    if not results.exists():
        command = [sys.executable, str(REPO / "compare.py"), "--preset", "cpu", "--weights", weights, "--out", str(out),
                   "--quiet"] + (["--epochs", str(epochs)] if epochs else [])
        subprocess.run(command, cwd=REPO, check=True)
    return json.loads(results.read_text())


def image_rows(runs: Path, epochs: int | None) -> tuple[list[dict], dict]:
    """Per backend: PSNR quantized vs full, and each run's final weighted loss parts; plus within-run PSNRs."""
    results = {w: run_compare(runs / w, w, epochs) for w in WEIGHT_SETS}
    finished = {w: {r["backend"]: r for r in results[w]["backends"] if r.get("status") == "ok"} for w in WEIGHT_SETS}
    pixels = {w: {b: rgb_pixels(runs / w / r["image"]) for b, r in finished[w].items()} for w in WEIGHT_SETS}
    rows = []
    for name in backends.NAMES:
        if not all(name in finished[w] for w in WEIGHT_SETS):
            continue
        row = {"backend": name, "psnr_db": psnr(pixels["bundled"][name], pixels["keras"][name]),
               "max_abs_pixel_diff": int(np.abs(pixels["bundled"][name].astype(int) - pixels["keras"][name]).max())}
        for w in WEIGHT_SETS:
            r = finished[w][name]
            lw, final = r["loss_weights"], r["final_losses"]
            row[w] = {part: lw[part] * final[part] for part in ("content", "style", "tv")}
        rows.append(row)
    within = {w: {f"{a} vs {b}": psnr(pixels[w][a], pixels[w][b]) for a, b in itertools.combinations(pixels[w], 2)}
              for w in WEIGHT_SETS}
    settings = {w: {k: results[w][k] for k in ("config", "preset", "machine") if k in results[w]} for w in WEIGHT_SETS}
    return rows, {"within_run_psnr_db": within, "settings": settings}


def markdown(weights_rows, features_rows, images_rows, extra, backend_name) -> str:
    out = ["| layer | distinct values (bundled) | max rel | rms rel |", "|---|---:|---:|---:|"]
    out += [f"| {r['layer']} | {r['distinct_q']} | {r['max_rel']:.1e} | {r['rms_rel']:.1e} |" for r in weights_rows]
    out += ["", f"Features on the content image ({backend_name}; rms rel = ||q - f|| / ||f||):", "",
            "| tap | role | max rel | rms rel | Gram rms rel |", "|---|---|---:|---:|---:|"]
    for r in features_rows:
        gram = f"{r['gram_rms_rel']:.1e}" if "gram_rms_rel" in r else ""
        out.append(f"| {r['tap']} | {r['role']} | {r['max_rel']:.1e} | {r['rms_rel']:.1e} | {gram} |")
    if images_rows:
        out += ["", "| backend | PSNR bundled vs keras, dB | max abs pixel diff | weighted content / style / tv, "
                "bundled | same, keras |", "|---|---:|---:|---|---|"]
        for r in images_rows:
            parts = {w: " / ".join(f"{r[w][p]:.3g}" for p in ("content", "style", "tv")) for w in WEIGHT_SETS}
            out.append(f"| {r['backend']} | {r['psnr_db']:.1f} | {r['max_abs_pixel_diff']} | {parts['bundled']} | "
                       f"{parts['keras']} |")
        for w, pairs in extra["within_run_psnr_db"].items():
            out.append(f"\nBetween backends, {w} run: " + ", ".join(f"{p} {v:.1f} dB" for p, v in pairs.items()))
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="torch", choices=backends.NAMES, help="the backend that computes the features")
    p.add_argument("--runs", type=Path, default=REPO / "runs" / "quantization",
                   help="where the two compare.py runs are (made when missing)")
    p.add_argument("--epochs", type=int, help="epochs of the compare.py runs (default: the cpu preset's 200)")
    p.add_argument("--features-only", action="store_true", help="skip the compare.py runs")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    args = p.parse_args(argv)
    try:
        full = keras_weights.load().params
        quantized = weight_sets.bundled().params
        rows_w = weight_rows(quantized, full)
        rows_f = feature_rows(args.backend, CPU.image_shape)
        rows_i, extra = ([], {}) if args.features_only else image_rows(args.runs, args.epochs)
    except UserError as exc:
        print(f"quantization_cost: {exc}", file=sys.stderr)
        return 1
    text = markdown(rows_w, rows_f, rows_i, extra, args.backend)
    print(text)
    if args.json:
        data = {"weights": rows_w, "features": rows_f, "images": rows_i, **extra, "feature_backend": args.backend}
        atomic.write_text(args.json, json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
