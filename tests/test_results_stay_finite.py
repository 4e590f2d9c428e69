"""A run that blows up is reported as diverged, results stay strict JSON, no agreement is claimed (issue 18 item 2)."""

from __future__ import annotations

import json
import math

import numpy as np
from PIL import Image

from tools import report, strict_json
from tools.jobs import LOSS_PARTS, Result


def strict_loads(text: str):
    """json.loads that refuses NaN and Infinity, as strict parsers (JavaScript's JSON.parse, jq) do."""
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_become_null_with_the_reason():
    text = strict_json.dumps({"psnr_db": math.inf, "history": [[1.0, math.nan]], "ok": 2.5})
    assert strict_loads(text) == {"psnr_db": None, "history": [[1.0, None]], "ok": 2.5,
                                  "null_because_not_finite": [".psnr_db: inf", ".history[0][1]: nan"]}


def ok_row(name: str, losses=(1.0, 2.0, 3.0, 6.0)) -> Result:
    return Result(backend=name, status="ok", image=f"{name}.png", final_losses=dict(zip(LOSS_PARTS, losses)))


def test_no_agreement_is_claimed_for_runs_that_are_not_finite(tmp_path):
    for name in ("torch", "tensorflow", "jax"):
        Image.new("RGB", (48, 32)).save(tmp_path / f"{name}.png")  # all black: "identical"
    results = [ok_row("torch"), Result.failed("tensorflow", "diverged", "diverged at step 2: ..."),
               ok_row("jax", (math.nan, 1.0, 1.0, math.nan))]
    assert report.image_agreement(tmp_path, results) == []
    assert report.agreement_table([]) == "(fewer than two backends finished)\n"


def test_identical_images_are_said_identical_not_inf(tmp_path):
    for name in ("torch", "jax"):
        Image.new("RGB", (48, 32), (9, 9, 9)).save(tmp_path / f"{name}.png")
    rows = report.image_agreement(tmp_path, [ok_row("torch"), ok_row("jax")])
    assert rows == [{"pair": ["torch", "jax"], "max_abs_pixel_diff": 0, "psnr_db": None, "identical": True,
                     "float_psnr_db": None, "float_identical": False}]  # no float images saved: not measured
    assert "| torch vs jax | 0 | identical | - |" in report.agreement_table(rows)
    strict_loads(strict_json.dumps({"agreement": rows}))
    # The float images (compare.py saves them beside the PNGs) are identical too: said so, not "inf".
    for name in ("torch", "jax"):
        np.save(tmp_path / f"{name}.npy", np.full((1, 3, 32, 48), 0.25, np.float32))
    rows = report.image_agreement(tmp_path, [ok_row("torch"), ok_row("jax")])
    assert rows[0]["float_psnr_db"] is None and rows[0]["float_identical"] is True
    assert "| torch vs jax | 0 | identical | identical |" in report.agreement_table(rows)
    strict_loads(strict_json.dumps({"agreement": rows}))


def test_compare_with_a_huge_lr_reports_diverged_at_its_step(backend_name, tmp_path, capsys):
    import compare

    out = tmp_path / "out"
    code = compare.main(["--backends", backend_name, "--lr", "1e30", "--weights", "random", "--size", "32x48",
                         "--epochs", "4", "--quiet", "--out", str(out)])
    summary = strict_loads((out / "results.json").read_text())
    row = summary["backends"][0]
    assert row["status"] == "diverged" and row["diverged_at_step"] == 2, row
    assert row["error"].startswith("diverged at step 2: the loss (") and "\n" not in row["error"]
    assert summary["agreement"] == [] and not (out / f"{backend_name}.png").exists()
    assert f"| {backend_name} | diverged: diverged at step 2" in (out / "summary.md").read_text()
    assert code in (0, 1)  # how a run with no finished backend exits is issue 12's (compare.py's) business
