"""compare.py run as a new user would: from any folder, with relative paths, odd names, signals, two at once.

Every test runs with a temporary folder outside the checkout as its working folder and gives
each path option relative to it. A fake worker (test_compare_cli's) stands in for
tools.stylize_worker where the point is process handling; one tiny real run proves the whole path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_compare_cli import FAKE_WORKER

import backends
import compare

REPO = Path(__file__).resolve().parent.parent

# Before the usual fake: note each worker's pid, and "slow" sleeps like a long run, set up as the
# real runner is (stop_with_parent) so that a parent killed outright takes it down too.
WORKER_PREFIX = """
import json, os, sys, time
from pathlib import Path
_job = json.loads(Path(sys.argv[1]).read_text())
_slow = json.loads(os.environ["FAKE_BEHAVIOUR"])[_job["backend"]] == "slow"
if _slow:
    from tools.worker import stop_with_parent
    stop_with_parent()
if os.environ.get("FAKE_PIDS"):
    with open(os.environ["FAKE_PIDS"], "a") as f:
        f.write(f"{_job['backend']} {os.getpid()}\\n")
if _slow:
    time.sleep(60)
"""

# compare.py as the command line runs it, with the fake worker and every backend "installed".
DRIVER = """
import sys
sys.path.insert(0, {repo!r})
import backends, compare
compare.RUNNER = [sys.executable, {worker!r}]
backends.why_unavailable = lambda name: None
sys.exit(compare.main(sys.argv[1:]))
"""

TINY = ["--size", "32x48", "--epochs", "3", "--quiet"]


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working folder outside the checkout holding a fake worker, its driver and two small images."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "worker.py").write_text(WORKER_PREFIX + FAKE_WORKER)
    (tmp_path / "driver.py").write_text(DRIVER.format(repo=str(REPO), worker=str(tmp_path / "worker.py")))
    rng = np.random.default_rng(0)
    for name in ("content.png", "style.png"):
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), np.uint8)).save(tmp_path / name)
    monkeypatch.setattr(compare, "RUNNER", [sys.executable, str(tmp_path / "worker.py")])
    monkeypatch.setattr(backends, "why_unavailable", lambda name: None)
    monkeypatch.setenv("FAKE_PIDS", str(tmp_path / "pids"))
    return tmp_path


def fake(monkeypatch, behaviours: dict) -> list[str]:
    monkeypatch.setenv("FAKE_BEHAVIOUR", json.dumps(behaviours))
    return ["--backends", ",".join(behaviours), "--content", "content.png", "--style", "style.png", *TINY]


def worker_pids(folder: Path) -> dict[str, int]:
    path = folder / "pids"
    lines = path.read_text().split("\n") if path.exists() else []
    return {name: int(pid) for name, pid in (line.split() for line in lines if line)}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def one_error_line(err: str, *fragments: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compare.py: error:"), err
    assert all(f in lines[0] for f in fragments), lines[0]
    return lines[0]


# --- a relative --out (the default is one) ----------------------------------------------------


def test_the_default_relative_out_works_from_another_folder(elsewhere, monkeypatch):
    code = compare.main(fake(monkeypatch, {"torch": "ok", "jax": "ok"}))
    summary = json.loads((elsewhere / "runs/compare/results.json").read_text())
    assert code == 0 and [r["status"] for r in summary["backends"]] == ["ok", "ok"], summary["backends"]
    assert (elsewhere / "runs/compare/torch.png").exists() and not (elsewhere / "runs/compare/.jobs").exists()


def test_a_tiny_real_run_from_another_folder(tmp_path):
    if backends.why_unavailable("torch"):
        pytest.skip(backends.why_unavailable("torch"))
    Image.open(REPO / "assets/chelsea.png").save(tmp_path / "c.png")
    Image.open(REPO / "assets/swirls.png").save(tmp_path / "s.png")
    result = subprocess.run([sys.executable, str(REPO / "compare.py"), "--size", "32x48", "--epochs", "2",
                             "--weights", "random", "--backends", "torch", "--content", "c.png", "--style", "s.png",
                             "--out", "out", "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (row,) = json.loads((tmp_path / "out/results.json").read_text())["backends"]
    assert row["status"] == "ok", row
    assert Image.open(tmp_path / "out/torch.png").size == (48, 32)
    assert result.stdout.strip().splitlines()[-1].startswith("wrote out/: results.json, summary.md")


# --- exit status and the closing line ---------------------------------------------------------


def test_no_backend_finished_exits_nonzero_and_says_what_was_not_written(elsewhere, monkeypatch, capsys):
    code = compare.main([*fake(monkeypatch, {"torch": "crash", "jax": "oom-kill"}), "--out", "out"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert code == 1
    assert last.startswith("no backend finished; wrote out/: results.json, summary.md, side_by_side.png"), last
    assert "not written: torch.png (crashed), jax.png (out of memory)" in last
    assert "losses.png" not in last and not (elsewhere / "out/losses.png").exists()


def test_the_closing_line_lists_the_images_that_exist(elsewhere, monkeypatch, capsys):
    code = compare.main([*fake(monkeypatch, {"torch": "ok", "jax": "crash"}), "--out", "out"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert code == 0
    assert last == "wrote out/: results.json, summary.md, side_by_side.png, losses.png, torch.png; " \
                   "not written: jax.png (crashed)"


# --- an --out that cannot be used: one line, exit 2, no work ---------------------------------

def _unusable_out(folder: Path, case: str) -> str:
    (folder / "a_file").write_text("x")
    if case == "read-only folder":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders; the /sys case covers root")
        (folder / "ro").mkdir(mode=0o555)
        return "ro/out"
    if case == "a system folder":
        if not Path("/sys/kernel").is_dir():
            pytest.skip("no /sys here")
        return os.path.relpath("/sys/compare-out", folder)
    return {"an existing file": "a_file", "under a file": "a_file/out"}[case]


UNUSABLE = ["an existing file", "under a file", "read-only folder", "a system folder"]
OUT_MESSAGES = {"an existing file": "is a file", "under a file": "is a file",
                "read-only folder": "cannot write there", "a system folder": "cannot write there"}


@pytest.mark.parametrize("case", UNUSABLE)
def test_an_unusable_out_is_one_line_before_any_run(elsewhere, monkeypatch, capsys, case):
    out = _unusable_out(elsewhere, case)
    code = compare.main([*fake(monkeypatch, {"torch": "ok"}), "--out", out])
    assert code == 2
    one_error_line(capsys.readouterr().err, "--out", OUT_MESSAGES[case])
    assert worker_pids(elsewhere) == {}


@pytest.mark.parametrize("mode", ["--ratio", "--diverge"])
def test_ratio_and_diverge_check_out_before_any_work(elsewhere, monkeypatch, capsys, mode):
    (elsewhere / "a_file").write_text("x")
    checked = []
    monkeypatch.setattr(backends, "why_unavailable", lambda name: checked.append(name))  # the slow import check
    if mode == "--ratio":
        compare.main([*fake(monkeypatch, {"torch": "ok"}), "--out", "run"])
        capsys.readouterr()
        argv = ["--ratio", "run/results.json", "run/results.json", "--out", "a_file"]
    else:
        argv = ["--diverge", "torch,jax", "--content", "content.png", "--style", "style.png", "--out", "a_file",
                *TINY, "--weights", "random"]  # tiny, should a regression run it
    checked.clear()
    assert compare.main(argv) == 2
    one_error_line(capsys.readouterr().err, "--out 'a_file' is a file")
    assert checked == [] and (elsewhere / "a_file").read_text() == "x"


def test_diverge_reads_its_images_before_the_slow_checks(elsewhere, monkeypatch, capsys):
    checked = []
    monkeypatch.setattr(backends, "why_unavailable", lambda name: checked.append(name))
    assert compare.main(["--diverge", "torch,jax", "--content", "missing.png", "--out", "out"]) == 2
    one_error_line(capsys.readouterr().err, "'missing.png' does not exist")
    assert checked == []


# --- names that are not UTF-8 -----------------------------------------------------------------


def test_file_names_that_are_not_utf8_are_recorded_escaped(elsewhere):
    content = os.fsencode(elsewhere) + b"/caf\xe9-\xff.png"  # Latin-1 bytes: legal on Linux, not UTF-8
    Image.new("L", (60, 40), 100).save(content.decode("utf-8", "surrogateescape"))  # grayscale: a note names it
    result = subprocess.run(
        [sys.executable, "driver.py", "--backends", "torch", "--content", b"caf\xe9-\xff.png", "--style", "style.png",
         "--out", b"out-\xff", *TINY],
        cwd=elsewhere, capture_output=True, timeout=120,
        env=dict(os.environ, FAKE_BEHAVIOUR=json.dumps({"torch": "ok"}), PYTHONIOENCODING="utf-8"))  # strict, as a UTF-8 locale
    stdout, stderr = result.stdout.decode("utf-8"), result.stderr.decode("utf-8")
    assert result.returncode == 0, stderr
    assert "caf\\xe9-\\xff.png: converted from mode L" in stdout
    assert stdout.strip().splitlines()[-1].startswith("wrote out-\\xff/: results.json, summary.md")
    out = elsewhere / os.fsdecode(b"out-\xff")
    summary_md = (out / "summary.md").read_bytes().decode("utf-8")  # valid UTF-8
    assert "--content caf\\xe9-\\xff.png" in summary_md and "--out out-\\xff" in summary_md
    results = json.loads((out / "results.json").read_bytes().decode("utf-8"))
    assert "--content caf\\xe9-\\xff.png" in results["command"] and results["backends"][0]["status"] == "ok"


# --- signals: a cancelled CI job, a closed terminal, a parent killed outright -------------------


def start_driver(folder: Path, behaviours: dict, *args) -> subprocess.Popen:
    env = dict(os.environ, FAKE_BEHAVIOUR=json.dumps(behaviours), FAKE_PIDS=str(folder / "pids"))
    return subprocess.Popen([sys.executable, "driver.py", "--backends", ",".join(behaviours), "--content",
                             "content.png", "--style", "style.png", *TINY, *args],
                            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def cleanup_pids(elsewhere):
    yield
    for pid in worker_pids(elsewhere).values():  # whatever a failing test left running
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_the_worker_and_keep_what_finished(elsewhere, cleanup_pids, sig):
    parent = start_driver(elsewhere, {"torch": "ok", "jax": "slow", "tensorflow": "ok"}, "--out", "out")
    wait_for(lambda: "jax" in worker_pids(elsewhere))
    parent.send_signal(sig)
    stdout, stderr = parent.communicate(timeout=30)
    worker = worker_pids(elsewhere)["jax"]
    wait_for(lambda: not alive(worker), 10)
    assert parent.returncode == 128 + sig, stderr
    summary = json.loads((elsewhere / "out/results.json").read_text())
    assert [(r["backend"], r["status"]) for r in summary["backends"]] == [("torch", "ok"), ("jax", "interrupted")]
    assert summary["backends"][1]["error"] == sig.name
    assert (elsewhere / "out/torch.png").exists() and (elsewhere / "out/summary.md").exists()
    assert not (elsewhere / "out/.jobs").exists() and not list((elsewhere / "out").glob(".*.tmp"))
    assert "not written: jax.png (interrupted)" in stdout.strip().splitlines()[-1]


def test_a_worker_stops_when_its_parent_is_killed_outright(elsewhere, cleanup_pids):
    parent = start_driver(elsewhere, {"jax": "slow"}, "--out", "out")
    wait_for(lambda: "jax" in worker_pids(elsewhere))
    parent.kill()
    parent.communicate(timeout=30)
    worker = worker_pids(elsewhere)["jax"]
    wait_for(lambda: not alive(worker), 10)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_whose_parent_died_during_its_start_up_stops_at_once(tmp_path):
    """The parent's pid comes in the environment: a kill before the worker reached prctl is not missed."""
    result = subprocess.run([sys.executable, "-c", "from tools.worker import stop_with_parent\n"
                             "stop_with_parent()\nprint('still running')"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO), WORKER_PARENT_PID="1"))
    assert result.returncode == -signal.SIGTERM and "still running" not in result.stdout, result.stderr


# --- two runs, one folder ---------------------------------------------------------------------


def test_a_second_run_into_a_busy_out_is_refused(elsewhere, monkeypatch, capsys, cleanup_pids):
    first = start_driver(elsewhere, {"torch": "slow"}, "--out", "out")
    wait_for(lambda: "torch" in worker_pids(elsewhere))
    code = compare.main([*fake(monkeypatch, {"jax": "ok"}), "--out", "out"])
    err = capsys.readouterr().err
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=30)
    assert code == 2
    one_error_line(err, "another compare.py run is writing to --out 'out'")
    assert set(worker_pids(elsewhere)) == {"torch"}  # the second run started nothing
    summary = json.loads((elsewhere / "out/results.json").read_text())
    assert [r["backend"] for r in summary["backends"]] == ["torch"]  # the first run's results, whole


def test_a_rerun_with_fewer_backends_leaves_no_stale_files(elsewhere, monkeypatch):
    assert compare.main([*fake(monkeypatch, {"torch": "ok", "jax": "ok"}), "--out", "out"]) == 0
    (elsewhere / "out/tensorflow-traceback.txt").write_text("from a run before")
    assert compare.main([*fake(monkeypatch, {"torch": "ok"}), "--out", "out"]) == 0
    assert not (elsewhere / "out/jax.png").exists() and not (elsewhere / "out/tensorflow-traceback.txt").exists()
    assert (elsewhere / "out/torch.png").exists()
    assert "jax" not in (elsewhere / "out/summary.md").read_text()


# --- --ratio reads only what compare.py writes ------------------------------------------------

BAD_RESULTS = {
    "an empty object": (b"{}", "no 'backends' list"),
    "a list": (b"[]", "expected an object, got list"),
    "rows not objects": (b'{"backends": [1]}', "backends[0] is not an object"),
    "an ok row without times": (b'{"backends": [{"backend": "torch", "status": "ok", "image": "t.png"}]}',
                                "lacks a valid step_s_median, setup_s, first_step_s, total_s"),
    "a zero time": (json.dumps({"backends": [{"backend": "jax", "status": "ok", "image": "j.png", "step_s_median": 0,
                                              "setup_s": 1, "first_step_s": 1, "total_s": 1}]}).encode(),
                    "lacks a valid step_s_median"),
    "machine not an object": (b'{"backends": [], "machine": "x"}', "'machine' is not an object"),
    "not UTF-8": (b'{"backends": [], "note": "\xff"}', "is not UTF-8 text"),
    "not JSON": (b"{backends", "is not JSON"),
}


@pytest.mark.parametrize("case", list(BAD_RESULTS))
def test_ratio_of_a_file_that_is_not_a_results_json_is_one_line(elsewhere, monkeypatch, capsys, case):
    data, message = BAD_RESULTS[case]
    Path("good.json").write_text(json.dumps({"backends": [{"backend": "torch", "status": "crashed"}]}))
    Path("bad.json").write_bytes(data)
    assert compare.main(["--ratio", "good.json", "bad.json", "--out", "ratio"]) == 2
    one_error_line(capsys.readouterr().err, "--ratio: 'bad.json'", message)
    assert not Path("ratio").exists()


# --- arguments refused at parse time ------------------------------------------------------------

REFUSED = {
    "a negative seed": (["--weights", "random", "--seed", "-1"], "--seed: must be >= 0"),
    "a repeated backend": (["--backends", "torch,jax,torch"], "torch given more than once"),
    "an empty --out": (["--out", ""], "--out: must name a folder"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_arguments_that_cannot_work_are_refused_at_once(elsewhere, monkeypatch, capsys, case):
    args, message = REFUSED[case]
    with pytest.raises(SystemExit) as exit_info:
        compare.main([*fake(monkeypatch, {"torch": "ok", "jax": "ok"}), *args])
    assert exit_info.value.code == 2
    one_error_line(capsys.readouterr().err, message)
    assert worker_pids(elsewhere) == {} and not Path("runs").exists() and not Path("results.json").exists()
