"""tools/jobs.py: the Job and Result records survive JSON whole, refuse what they do not know, and keep their keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.config import PRESETS, LossWeights
from common.errors import UserError
from common.interface import LossParts
from tools.jobs import Job, Result, config_from_dict

REPO = Path(__file__).resolve().parent.parent


def a_job(**changes) -> Job:
    config = PRESETS["cpu"].replace(image_shape=(32, 48), num_epochs=3, loss_weights=LossWeights(style=2.0))
    return Job(**{"backend": "jax", "out_dir": "/tmp/out", "config": config, "content": "/tmp/c.png",
                  "style": "/tmp/s.png", "weights": "random", "seed": 7, "repeat": 2,
                  "loss_weight_overrides": {"tv": 0.5}, **changes})


def test_a_job_round_trips_through_json():
    job = a_job()
    again = Job.from_json(job.to_json())
    assert again == job
    assert isinstance(again.config.image_shape, tuple) and isinstance(again.config.loss_weights, LossWeights)


def test_a_job_has_real_defaults():
    job = Job(backend="torch", out_dir="/o", config=PRESETS["cpu"], content="/c.png", style="/s.png")
    assert (job.weights, job.precision, job.device, job.seed, job.repeat, job.warmup) == \
           ("bundled", "float32", None, 0, 1, 5)
    assert job.loss_weight_overrides == {}
    assert Job.from_dict({k: v for k, v in json.loads(job.to_json()).items() if k not in ("warmup", "seed")}) == job


@pytest.mark.parametrize(("record", "data", "message"), [
    (Job, {"backend": "torch", "out_dir": "/o", "config": {}, "content": "c", "style": "s", "quiet": True},
     "Job: unknown key(s) 'quiet'"),
    (Job, {"backend": "torch", "out_dir": "/o"}, "Job: missing key(s) 'config', 'content', 'style'"),
    (Result, {"backend": "torch", "status": "ok", "step_ms": 3}, "Result: unknown key(s) 'step_ms'"),
    (Result, ["torch"], "Result: expected an object, got list"),
])
def test_unknown_and_missing_keys_are_one_line_errors(record, data, message):
    with pytest.raises(UserError) as info:
        record.from_dict(data)
    assert str(info.value).startswith(message) and "\n" not in str(info.value), str(info.value)


def test_a_config_with_a_key_it_does_not_know_is_refused():
    with pytest.raises(UserError, match="StyleTransferConfig: unknown key"):
        config_from_dict({"lr": 0.1, "learning_rate": 0.1})


def test_every_finished_row_of_the_committed_results_reads_and_writes_back_unchanged():
    rows = json.loads((REPO / "docs/compare-cpu/results.json").read_text())["backends"]
    assert rows
    for row in rows:
        result = Result.from_dict(row)
        assert result.ok and result.to_dict() == row
        assert list(result.to_dict()) == list(row)  # the same keys in the same order
        assert tuple(result.final_losses) == LossParts._fields


@pytest.mark.parametrize("row", [
    {"backend": "jax", "status": "timed out", "error": "stopped after 3 s (--timeout)"},
    {"backend": "torch", "status": "diverged", "error": "diverged at step 2: ...", "diverged_at_step": 2},
])
def test_a_row_that_did_not_finish_keeps_only_its_own_keys(row):
    result = Result.from_dict(row)
    assert not result.ok and result.to_dict() == row


def test_a_finished_row_keeps_its_unmeasured_keys_as_null():
    row = Result(backend="torch", status="ok", peak_device_bytes=None).to_dict()
    assert "peak_device_bytes" in row and row["peak_device_bytes"] is None and "error" not in row
