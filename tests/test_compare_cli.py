"""compare.py as a user meets it: --help, one-line errors, a real small run, and every fault."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import backends
import compare
from common.config import PRESETS
from tools import report
from tools.jobs import Job

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args, cwd: Path, timeout=900):
    """compare.py as a user runs it: from their own folder (``cwd``, outside the checkout), paths relative to it."""
    return subprocess.run([sys.executable, str(REPO / "compare.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_help_explains_the_options(tmp_path):
    out = run_cli("--help", cwd=tmp_path)
    assert out.returncode == 0
    for option in ("--backends", "--content", "--style", "--size", "--epochs", "--lr", "--content-weight",
                   "--style-weight", "--tv-weight", "--weights", "--precision", "--device", "--repeat", "--out",
                   "--seed", "--quiet", "--ratio", "--taps", "--recipe", "--init", "--optimizer", "pytorch-tutorial",
                   "tf1-tutorial"):
        assert option in out.stdout
    assert "default" in out.stdout


@pytest.fixture
def bad_files(tmp_path):
    (tmp_path / "text.jpg").write_text("not an image")
    Image.new("RGB", (20, 20)).save(tmp_path / "tiny.png")
    full = tmp_path / "full.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(full)
    (tmp_path / "truncated.jpg").write_bytes(full.read_bytes()[:300])
    return tmp_path


BAD_INPUTS = {
    "missing content": (["--content", "missing.jpg"], "does not exist"),
    "not an image": (["--style", "text.jpg"], "not an image"),
    "truncated": (["--content", "truncated.jpg"], "could not be decoded"),
    "tiny image": (["--style", "tiny.png"], "poolings need at least"),
    "size too small": (["--size", "16x300"], "too small"),
    "size too large": (["--size", "300x90000"], "too large"),
    "size malformed": (["--size", "300by450"], "HEIGHTxWIDTH"),
    "lr zero": (["--lr", "0"], "must be > 0"),
    "lr negative": (["--lr", "-1"], "must be > 0"),
    "lr nan": (["--lr", "nan"], "must be finite"),
    "epochs zero": (["--epochs", "0"], "must be > 0"),
    "epochs fraction": (["--epochs", "2.5"], "whole number"),
    "style weight negative": (["--style-weight", "-3"], "must be >= 0"),
    "tv weight inf": (["--tv-weight", "inf"], "must be finite"),
    "unknown backend": (["--backends", "mxnet"], "unknown backend"),
    "bad precision": (["--precision", "fp8"], "invalid choice"),
    "unknown recipe": (["--recipe", "gatys"], "invalid choice: 'gatys'"),
    "lr for tf1-tutorial": (["--recipe", "tf1-tutorial", "--lr", "1"], "--lr is not used by recipe tf1-tutorial"),
    "adam for pytorch-tutorial": (["--recipe", "pytorch-tutorial", "--adam", "reference"],
                                  "--adam is not used by recipe pytorch-tutorial"),
    "optimizer for d2l": (["--optimizer", "native"], "--optimizer is not used by recipe d2l"),
    "diverge with a tutorial": (["--recipe", "tf1-tutorial", "--diverge", "torch,jax"], "--diverge steps d2l's"),
    "native L-BFGS for tensorflow": (["--recipe", "pytorch-tutorial", "--optimizer", "native", "--backends",
                                      "torch,tensorflow"], "--optimizer native: tensorflow has no stock L-BFGS"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_is_one_line_and_writes_nothing(bad_files, case):
    args, message = BAD_INPUTS[case]
    out_dir = bad_files / "out"
    result = run_cli(*args, "--out", "out", cwd=bad_files, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compare.py: error:") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not out_dir.exists()


def test_convertible_image_is_converted_and_said(tmp_path):
    gray = tmp_path / "gray.png"
    Image.new("L", (64, 64), 100).save(gray)
    result = run_cli("--content", "gray.png", "--backends", "torch", "--out", "out", "--quiet",
                     "--size", "32x32", "--epochs", "1", "--weights", "random", cwd=tmp_path)
    assert "converted from mode L" in result.stdout


def test_a_small_real_run_writes_the_whole_report(tmp_path):
    name = next((n for n in ("torch", "jax", "tensorflow") if not backends.why_unavailable(n)), None)
    if name is None:
        pytest.skip("no backend installed")
    out = tmp_path / "out"
    result = run_cli("--backends", name, "--size", "32x48", "--epochs", "3", "--weights", "random", "--out", "out",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "results.json").read_text())
    (row,) = summary["backends"]
    assert row["status"] == "ok" and len(row["history"]) == 3 and row["step_s_median"] > 0
    for key in ("setup_s", "first_step_s", "total_s", "peak_host_bytes", "final_losses", "versions"):
        assert key in row
    assert summary["config"]["image_shape"] == [32, 48] and summary["machine"]["python"]
    for file in (f"{name}.png", "content.png", "style.png", "summary.md", "side_by_side.png", "losses.png"):
        assert (out / file).stat().st_size > 0
    assert Image.open(out / f"{name}.png").size == (48, 32)
    assert "| backend |" in result.stdout and f"| {name} | ok |" in result.stdout
    assert not (out / ".jobs").exists()


# --- faults: a fake worker stands in for tools.stylize_worker -----------------------------------------

FAKE_WORKER = textwrap.dedent(
    """
    import json, os, signal, sys, time
    from pathlib import Path
    job = json.loads(Path(sys.argv[1]).read_text())
    out = Path(job["out_dir"])
    behaviour = json.loads(os.environ["FAKE_BEHAVIOUR"])[job["backend"]]
    if behaviour == "crash":
        sys.stderr.write("Traceback...\\nRuntimeError: CUDA error: an illegal memory access\\n")
        sys.exit(1)
    if behaviour == "oom-kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if behaviour == "hang":
        time.sleep(60)
    if behaviour == "interrupt":
        os.kill(os.getppid(), signal.SIGINT)
        time.sleep(60)
    from PIL import Image
    Image.new("RGB", (48, 32), (10, 20, 30)).save(out / (job["backend"] + ".png"))
    result = {"backend": job["backend"], "status": "ok", "setup_s": 1.0, "first_step_s": 0.5,
              "step_s_median": 0.1, "step_s_p10": 0.09, "step_s_p90": 0.11, "total_s": 2.0,
              "peak_host_bytes": 2**30, "peak_device_bytes": None,
              "final_losses": {"content": 1.0, "style": 2.0, "tv": 3.0, "total": 6.0},
              "history": [[1.0, 2.0, 3.0, 6.0]] * 3, "image": job["backend"] + ".png"}
    print(json.dumps({"event": "finished", "result": result}), flush=True)  # tools/worker.py's protocol
    """
)


@pytest.fixture
def fake_runs(tmp_path, monkeypatch):
    worker = tmp_path / "fake_worker.py"
    worker.write_text(FAKE_WORKER)
    monkeypatch.setattr(compare, "RUNNER", [sys.executable, str(worker)])
    monkeypatch.setattr(backends, "why_unavailable", lambda name: None)
    monkeypatch.chdir(tmp_path)  # a user's folder, not the checkout

    def run(behaviours: dict, *extra):
        monkeypatch.setenv("FAKE_BEHAVIOUR", json.dumps(behaviours))
        out = tmp_path / "out"
        code = compare.main(["--backends", ",".join(behaviours), "--size", "32x48", "--epochs", "3", "--quiet",
                             "--out", "out", *extra])
        return code, json.loads((out / "results.json").read_text()), out

    return run


def statuses(summary):
    return {row["backend"]: row["status"] for row in summary["backends"]}


def test_a_crash_gets_a_row_and_the_others_still_run(fake_runs):
    code, summary, out = fake_runs({"torch": "crash", "jax": "ok"})
    assert code == 0 and statuses(summary) == {"torch": "crashed", "jax": "ok"}
    assert "illegal memory access" in summary["backends"][0]["error"]
    assert (out / "jax.png").exists()


def test_out_of_memory_kill_gets_a_row(fake_runs):
    code, summary, _ = fake_runs({"torch": "ok", "tensorflow": "oom-kill", "jax": "ok"})
    assert statuses(summary) == {"torch": "ok", "tensorflow": "out of memory", "jax": "ok"}
    assert "signal 9" in summary["backends"][1]["error"]
    assert [row["pair"] for row in summary["agreement"]] == [["torch", "jax"]]


def test_timeout_gets_a_row(fake_runs):
    code, summary, _ = fake_runs({"torch": "hang", "jax": "ok"}, "--timeout", "3")
    assert statuses(summary) == {"torch": "timed out", "jax": "ok"}


def test_not_installed_gets_a_row(fake_runs, monkeypatch):
    monkeypatch.setattr(backends, "why_unavailable", lambda name: "needs jax: pip install jax" if name == "jax" else None)
    code, summary, _ = fake_runs({"torch": "ok", "jax": "ok"})
    assert statuses(summary) == {"torch": "ok", "jax": "not installed"}
    assert "pip install jax" in summary["backends"][1]["error"]


def test_ctrl_c_keeps_finished_results(fake_runs):
    # A process started in the background of a non-interactive shell (as CI may start us) begins
    # with SIGINT ignored; restore Python's handler so Ctrl-C means KeyboardInterrupt here.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code, summary, out = fake_runs({"torch": "ok", "tensorflow": "interrupt", "jax": "ok"}, "--timeout", "30")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == 130
    assert statuses(summary) == {"torch": "ok", "tensorflow": "interrupted"}
    assert (out / "torch.png").exists() and (out / "summary.md").exists()
    assert not list(out.glob(".*.tmp")) and not list(out.glob(".results*"))


def test_ratio_report(fake_runs, tmp_path):
    _, summary, out = fake_runs({"torch": "ok", "jax": "ok"})
    b = json.loads(json.dumps(summary))
    for row in b["backends"]:
        row["step_s_median"] /= 4
    (tmp_path / "b.json").write_text(json.dumps(b))
    assert compare.main(["--ratio", str(out / "results.json"), str(tmp_path / "b.json"), "--out", str(tmp_path)]) == 0
    text = (tmp_path / "ratio.md").read_text()
    assert "| torch | 100.0 | 25.0 | 0.25 |" in text
    assert all(line.endswith(" | - |") for line in text.splitlines() if line.startswith(("| torch", "| jax")))  # no images beside b.json


def test_ratio_report_measures_each_backends_image_against_the_other_runs(fake_runs, tmp_path):
    """The accuracy cost of a precision mode: --ratio float32/results.json bf16/results.json."""
    _, summary, out = fake_runs({"torch": "ok", "jax": "ok"})
    run_b = tmp_path / "b"
    run_b.mkdir()
    (run_b / "results.json").write_text(json.dumps(summary))
    pixels = np.asarray(Image.open(out / "torch.png").convert("RGB")).astype(np.int16)
    Image.fromarray(np.clip(pixels + 10, 0, 255).astype(np.uint8)).save(run_b / "torch.png")  # differs
    Image.open(out / "jax.png").save(run_b / "jax.png")  # identical
    assert compare.main(["--ratio", str(out / "results.json"), str(run_b / "results.json"), "--out", str(tmp_path)]) == 0
    rows = {line.split(" | ")[0].strip("| "): line for line in (tmp_path / "ratio.md").read_text().splitlines()}
    expected = report.psnr(np.clip(pixels + 10, 0, 255), pixels)
    assert rows["torch"].endswith(f" | {expected:.1f} |") and 25 < expected < 30
    assert rows["jax"].endswith(" | inf |")
    summary["config"]["num_epochs"] += 1  # another run's settings: its images are not comparable
    (run_b / "results.json").write_text(json.dumps(summary))
    assert compare.main(["--ratio", str(out / "results.json"), str(run_b / "results.json"), "--out", str(tmp_path)]) == 0
    assert "| inf |" not in (tmp_path / "ratio.md").read_text()


def test_diverge_reports_steps_and_layers(tmp_path):
    pair = [n for n in ("torch", "jax", "tensorflow") if not backends.why_unavailable(n)][:2]
    if len(pair) < 2:
        pytest.skip("needs two installed backends")
    # float64 with each framework's stock Adam: the schedules' float32 learning rates part the pair at step 1.
    code = compare.main(["--diverge", ",".join(pair), "--epochs", "3", "--size", "32x48", "--weights", "random",
                         "--precision", "float64", "--threshold", "1e-12", "--out", str(tmp_path)])
    assert code == 0
    text = (tmp_path / f"diverge-{pair[0]}-{pair[1]}.md").read_text()
    assert text.count("\n| 3 |") == 1  # one row per step
    assert "First step where the images differ by more than rounding: **1**" in text
    assert "| conv1_1 |" in text and "| conv5_1 |" in text


def test_diverge_needs_two_different_backends(capsys):
    with pytest.raises(SystemExit):
        compare.main(["--diverge", "torch,torch"])
    assert "two different backends" in capsys.readouterr().err


def test_a_workers_log_lines_go_to_its_stderr_file_and_its_messages_to_the_bars(tmp_path, monkeypatch, capsys):
    """Framework log lines never reach the terminal (no filter to keep up with); progress arrives as messages."""
    worker = tmp_path / "chatty_worker.py"
    worker.write_text(textwrap.dedent("""
        import json, sys
        sys.stderr.write("I0000 00:00:1795464722.675522 11956 port.cc:153] oneDNN custom operations are on.\\n")
        for step in (0, 1, 2):
            print(json.dumps({"event": "progress", "step": step, "num_epochs": 2, "run": [0, 1], "lr": 0.3,
                              "losses": {"content": 1.0, "style": 2.0, "tv": 3.0, "total": 6.0} if step else None}))
        print("a stray line a library printed")
        sys.stderr.write("Traceback (most recent call last):\\nRuntimeError: boom\\n")
        sys.exit(1)
    """))
    monkeypatch.setattr(compare, "RUNNER", [sys.executable, str(worker)])
    monkeypatch.setattr(backends, "why_unavailable", lambda name: None)
    job = Job(backend="jax", out_dir=str(tmp_path / "job"), config=PRESETS["cpu"], content="c.png", style="s.png")
    row = compare.run_backend(job, timeout=60, quiet=False)
    err = capsys.readouterr().err
    assert row.status == "crashed" and row.error == "exit code 1: RuntimeError: boom", row
    assert "oneDNN" not in err and "Traceback" not in err and "2/2" in err and "content 1 style 2 tv 3 lr 0.3" in err
    assert "oneDNN custom operations" in (tmp_path / "job" / "stderr.txt").read_text()


def test_the_command_lines_loss_weights_win_over_the_configs_in_training(backend_name, tmp_path):
    """--tv-weight 0 on a config that carries its own loss weights: the override is what trains and what is reported."""
    from common.config import LossWeights
    from tools import stylize_worker

    Image.open(REPO / "assets/chelsea.png").save(tmp_path / "c.png")
    config = PRESETS["cpu"].replace(image_shape=(32, 48), num_epochs=2, loss_weights=LossWeights(tv=10.0))
    job = Job(backend=backend_name, out_dir=str(tmp_path), config=config, content=str(tmp_path / "c.png"),
              style=str(tmp_path / "c.png"), weights="random", loss_weight_overrides={"tv": 0.0})
    result = stylize_worker.run(job, started=0.0)
    assert result.loss_weights == {"content": 1.0, "style": 1e4, "tv": 0.0}
    assert result.final_losses["tv"] == 0 and all(step[2] == 0 for step in result.history)
