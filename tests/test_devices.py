"""One device grammar for every backend (common/devices.py; no framework needed)."""

from __future__ import annotations

import pytest

from common.devices import Device, missing, parse
from common.errors import UserError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cpu", Device("cpu", 0)), ("CPU:0", Device("cpu", 0)), ("/device:CPU:0", Device("cpu", 0)),
        ("gpu", Device("gpu", 0)), ("gpu:1", Device("gpu", 1)), ("cuda", Device("gpu", 0)),
        ("cuda:2", Device("gpu", 2)), ("/GPU:3", Device("gpu", 3)), (" /device:GPU:1 ", Device("gpu", 1)),
        ("rocm:1", Device("gpu", 1)), (None, None), (Device("gpu", 1), Device("gpu", 1)),
    ],
)
def test_every_spelling_means_one_device(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize("text", ["tpu", "gpu:-1", "gpu:x", "cuda0", "", "gpu:1:2", 0, b"cpu"])
def test_anything_else_is_one_line(text):
    with pytest.raises(UserError) as exc:
        parse(text)
    assert "\n" not in str(exc.value) and ("unknown device" in str(exc.value) or "must be a string" in str(exc.value))


def test_a_missing_device_names_what_the_framework_sees():
    assert str(missing(Device("gpu", 1), "PyTorch", 1)) == "device 'gpu:1': PyTorch sees 1 GPU(s) here"
