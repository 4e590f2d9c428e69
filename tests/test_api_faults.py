"""The Python API checks what the command line checks, and says when a run blows up (issue 18 items 2 and 5).

Each test runs one backend (parametrized by name) on tiny images with random weights.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import backends
from common.config import StyleTransferConfig
from common.errors import DivergedError, UserError
from common.stylize import stylize

TINY = StyleTransferConfig(image_shape=(32, 48), num_epochs=3)


def tiny_images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (40, 60, 3), dtype=np.uint8) for _ in range(2)]


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lr_decay_epoch": 0}, "lr_decay_epoch must be a whole number > 0, got 0"),
        ({"num_epochs": 1.5}, "num_epochs must be a whole number > 0, got 1.5"),
        ({"num_epochs": 0}, "num_epochs must be a whole number > 0, got 0"),
        ({"num_epochs": -3}, "num_epochs must be a whole number > 0, got -3"),
        ({"lr": math.nan}, "lr must be a finite number > 0, got nan"),
        ({"image_shape": (16, 48)}, "image height 16 is too small"),
        ({"style_layers": (99,)}, "out of range"),
    ],
    ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else "",
)
def test_stylize_validates_what_the_command_line_validates(backend, changes, message):
    content, style = tiny_images()
    with pytest.raises(UserError, match=message) as exc:
        stylize(backend, content, style, TINY.replace(**changes))
    one_line(exc)


def test_train_validates_its_config_too(backend):
    from common.stylize import targets

    content, style = tiny_images()
    content_X, contents_Y, styles_Y = targets(backend, content, style, TINY)
    with pytest.raises(UserError, match="num_epochs must be a whole number > 0, got -3"):
        backend.train(content_X, contents_Y, styles_Y, TINY.replace(num_epochs=-3))


@pytest.mark.parametrize("report_every", [1, 3])
def test_a_run_whose_losses_blow_up_raises_diverged_with_its_step(backend, report_every):
    # lr 1e30: the first step's losses are finite; the image it makes overflows float32 in the Gram matrices.
    content, style = tiny_images()
    with pytest.raises(DivergedError, match=r"^diverged at step 2: the loss \(.*\) is not finite") as exc:
        backend.train(*_targets(backend, content, style), TINY.replace(lr=1e30, num_epochs=6), None, report_every)
    assert exc.value.step == 2
    one_line(exc)


def _targets(backend, content, style):
    from common.stylize import targets

    return targets(backend, content, style, TINY)


def test_stylize_raises_diverged_instead_of_returning_a_black_image(backend):
    content, style = tiny_images()
    with pytest.raises(DivergedError):
        stylize(backend, content, style, TINY.replace(lr=1e30))


def test_a_non_finite_image_after_the_last_step_is_diverged_too():
    from common.images import postprocess_array

    with pytest.raises(DivergedError, match="diverged after the last step: the image is not finite"):
        postprocess_array(np.full((1, 3, 32, 48), np.nan, np.float32))


# --- devices: one grammar (common/devices.py), every backend says when the device is not there ---


def has_gpu(name: str) -> bool:
    import subprocess

    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0
    except OSError:
        return False


@pytest.mark.parametrize("device", ["gpu", "cuda:0", "/GPU:0", "gpu:64", "tpu", "cpu:gpu", ""])
def test_a_device_that_is_missing_or_unknown_is_one_line(backend_name, device):
    if device in ("gpu", "cuda:0", "/GPU:0") and has_gpu(backend_name):
        pytest.skip("this machine has a GPU, so the first GPU is not missing here")
    with pytest.raises(UserError) as exc:
        backends.get_backend(backend_name, weights="random", device=device)
    message = one_line(exc)
    assert message.startswith(("unknown device", "device 'gpu:")), message

