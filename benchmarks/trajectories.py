#!/usr/bin/env python
"""Rounding or formula? The three backends' final images after d2l's 500 epochs, in four settings.

For each of float32 and float64, with each framework's stock Adam and with the
reference Adam (one formula in all three, ``--adam reference``), this runs
``compare.py`` (each backend in its own process) and reads the pairwise PSNR of
the final images. The PSNR is computed on the float images, before rounding to
8 bits: two images closer than half a grey level give the same PNG, so the
8-bit PSNR saturates (identical PNGs give infinity) long before float64 does.

    python benchmarks/trajectories.py                      # 150x225, 500 epochs, all four settings: long
    python benchmarks/trajectories.py --settings float64-reference --epochs 100
    python benchmarks/trajectories.py --settings float64-reference,float64-reference-lr-ulp

The rounding control, ``float64-reference-lr-ulp``, reruns float64 with the
reference Adam and the learning rate one ulp larger (0.30000000000000004): the
same math, perturbed by one rounding. Each backend's image against its own
``float64-reference`` image says how far rounding alone carries a run; a pair of
backends no farther apart than that differs by rounding, not by formula.

Writes ``benchmarks/results/trajectories/``: one compare.py folder per setting,
``trajectories.json`` and ``trajectories.md``, after every setting, so an
interrupted run keeps what finished.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

import backends  # noqa: E402  (imports no framework)
from common import atomic  # noqa: E402
from common.config import PRESETS  # noqa: E402
from common.images import postprocess_float  # noqa: E402
from tools.report import psnr  # noqa: E402

# (precision, adam): float64 first, the proof; float32 after.
SETTINGS = {
    "float64-reference": ("float64", "reference"),
    "float64-reference-lr-ulp": ("float64", "reference"),  # the rounding control: lr one ulp up
    "float64-stock": ("float64", "stock"),
    "float32-reference": ("float32", "reference"),
    "float32-stock": ("float32", "stock"),
}


CONTROL, CONTROLLED = "float64-reference-lr-ulp", "float64-reference"


def run_setting(name: str, args) -> dict:
    precision, adam = SETTINGS[name]
    out = args.out / name
    command = [sys.executable, str(REPO / "compare.py"), "--preset", "cpu", "--device", "cpu",
               "--size", args.size, "--epochs", str(args.epochs), "--precision", precision, "--adam", adam,
               "--backends", ",".join(args.backends), "--out", str(out)]
    if name == CONTROL:
        command += ["--lr", repr(math.nextafter(PRESETS["cpu"].lr, math.inf))]
    print(" ".join(["python", *command[1:]]), flush=True)
    subprocess.run(command, cwd=REPO, check=False)
    results = json.loads((out / "results.json").read_text())
    return {
        "precision": precision, "adam": adam,
        "command": "python " + " ".join(os.path.relpath(c, REPO) if c.startswith(str(REPO)) else c
                                        for c in command[1:]),
        "status": {r["backend"]: r["status"] for r in results["backends"]},
        "step_s_median": {r["backend"]: r.get("step_s_median") for r in results["backends"]},
        "pairs": {f"{row['pair'][0]} vs {row['pair'][1]}": {"float_psnr_db": row.get("float_psnr_db"),
                                                            "psnr_db_8bit": row["psnr_db"],
                                                            "max_abs_pixel_diff": row["max_abs_pixel_diff"]}
                  for row in results["agreement"]},
    }


def self_psnr(args) -> dict[str, float | None]:
    """Each backend's control image against its own float64-reference image (float PSNR, dB)."""
    found = {}
    for name in args.backends:
        a, b = (args.out / setting / f"{name}.npy" for setting in (CONTROLLED, CONTROL))
        if a.exists() and b.exists():
            db = psnr(postprocess_float(np.load(a)), postprocess_float(np.load(b)))
            found[name] = db if math.isfinite(db) else None
    return found


def _db(value) -> str:
    return "-" if value is None else ("identical" if math.isinf(value) else f"{value:.1f}")


def markdown(report: dict) -> str:
    pairs = [f"{a} vs {b}" for a, b in itertools.combinations(report["backends"], 2)]
    lines = [
        f"# Final-image agreement after {report['epochs']} epochs at {report['size']}\n",
        "PSNR (dB) between each pair's final images, computed on the float images before rounding to 8 bits "
        "(higher is closer; float32 rounding alone allows ~150 dB, float64 ~300 dB).\n",
        "| setting | " + " | ".join(pairs) + " |",
        "|---|" + "---:|" * len(pairs),
    ]
    for name, row in report["settings"].items():
        cells = [_db(row["pairs"].get(pair, {}).get("float_psnr_db")) for pair in pairs]
        label = "float64, reference Adam, lr + 1 ulp" if name == CONTROL else f"{name.replace('-', ', ')} Adam"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    control = report["settings"].get(CONTROL, {}).get("self_psnr_db")
    if control:
        lines += ["", "The rounding control: each backend against itself, float64 reference Adam with lr 0.3 and "
                      "with lr one ulp larger (the same math, one rounding apart).", "",
                  "| backend | " + " | ".join(control) + " |", "|---|" + "---:|" * len(control),
                  "| PSNR, lr vs lr + 1 ulp | " + " | ".join(_db(v) for v in control.values()) + " |"]
    lines.append("")
    lines += [f"- `{row['command']}`" for row in report["settings"].values()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, from {', '.join(SETTINGS)}")
    p.add_argument("--size", default="150x225", help="HxW")
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--backends", default=",".join(backends.NAMES))
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "trajectories")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.settings.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown or not names:
        p.exit(2, f"trajectories.py: error: unknown setting {', '.join(unknown) or args.settings!r}; "
                  f"choose from {', '.join(SETTINGS)}\n")
    args.backends = [n.strip() for n in args.backends.split(",") if n.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    report_path = args.out / "trajectories.json"
    report = {"size": args.size, "epochs": args.epochs, "backends": args.backends, "settings": {}}
    if report_path.exists():  # keep settings measured before with the same size and epochs
        previous = json.loads(report_path.read_text())
        if (previous.get("size"), previous.get("epochs")) == (args.size, args.epochs):
            report["settings"] = previous.get("settings", {})
            report["backends"] = [n for n in backends.NAMES if n in {*previous.get("backends", []), *args.backends}]
    for name in names:
        report["settings"][name] = run_setting(name, args)
        if CONTROL in report["settings"]:
            report["settings"][CONTROL]["self_psnr_db"] = self_psnr(args)
        report["settings"] = {n: report["settings"][n] for n in SETTINGS if n in report["settings"]}
        atomic.write_text(report_path, json.dumps(report, indent=1))
        atomic.write_text(args.out / "trajectories.md", markdown(report))
        print(markdown(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
