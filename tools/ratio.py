"""--ratio: two compare runs' results.json files, checked as far as they are read, and B's times over A's."""

from __future__ import annotations

import json
import math
from pathlib import Path

from common import atomic
from common.errors import UserError
from tools import report
from tools.report import RATIO_TIMES
from tools.cli import printable
from tools.jobs import OK
from tools.run_folder import prepare_out


def ratio(a_path: Path, b_path: Path, out_arg: Path) -> int:
    """Print and write ``ratio.md`` into ``out_arg``; a file that is not a results.json is a one-line ``UserError``."""
    a, b = read_results(a_path), read_results(b_path)
    out = prepare_out(out_arg)
    psnr_db = report.image_psnr_between_runs(a_path.parent, a, b_path.parent, b)
    text = printable(report.ratio_table(a, b, str(a_path), str(b_path), psnr_db))
    print(text)
    atomic.write_text(out / "ratio.md", text)
    print(f"wrote {printable(str(out_arg / 'ratio.md'))}")
    return 0


def read_results(path: Path) -> dict:
    """A results.json as compare.py writes it, checked as far as --ratio reads it, or a one-line ``UserError``."""
    shown = printable(str(path))
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise UserError(f"--ratio: cannot read {shown!r} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"--ratio: {shown!r} is not UTF-8 text, so not a results.json") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"--ratio: {shown!r} is not JSON ({exc})") from None
    problem = results_shape_problem(data)
    if problem:
        raise UserError(f"--ratio: {shown!r} is not a compare.py results.json: {problem}")
    return data


def results_shape_problem(data) -> str | None:
    if not isinstance(data, dict):
        return f"expected an object, got {type(data).__name__}"
    if not isinstance(data.get("backends"), list):
        return "no 'backends' list"
    if not isinstance(data.get("machine", {}), dict):
        return "'machine' is not an object"
    for i, row in enumerate(data["backends"]):
        if not (isinstance(row, dict) and isinstance(row.get("backend"), str) and isinstance(row.get("status"), str)):
            return f"backends[{i}] is not an object with 'backend' and 'status' strings"
        if row["status"] != OK:
            continue
        bad = [key for key in RATIO_TIMES if not (isinstance(row.get(key), (int, float)) and not isinstance(row[key], bool)
                                                   and math.isfinite(row[key]) and row[key] > 0)]
        if not isinstance(row.get("image"), str):
            bad.append("image")
        if bad:
            return f"backends[{i}] ({printable(row['backend'])!r}, ok) lacks a valid {', '.join(bad)}"
    return None
