"""One grammar for device names, shared by every backend.

"cpu", "gpu", "gpu:1", "cuda", "cuda:1", "/GPU:1" and "/device:GPU:1" (any case)
all name a device the same way in every backend; None means "the framework's
default" (a GPU when there is one). Each backend maps the parsed ``Device`` to
its framework's own device and says, with ``missing``, when it is not there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from common.errors import UserError

KINDS = {"cpu": "cpu", "gpu": "gpu", "cuda": "gpu", "rocm": "gpu"}
_GRAMMAR = re.compile(r"/?(?:device:)?([a-z]+)(?::(\d+))?")
EXPECTED = "expected 'cpu', 'gpu', 'gpu:N', 'cuda:N' or '/GPU:N'"


@dataclass(frozen=True)
class Device:
    kind: str  # "cpu" or "gpu"
    index: int = 0

    def __str__(self) -> str:
        return f"{self.kind}:{self.index}"


def parse(requested: str | Device | None) -> Device | None:
    """A device name as a ``Device``; None stays None; anything else is a one-line ``UserError``."""
    if requested is None or isinstance(requested, Device):
        return requested
    if not isinstance(requested, str):
        raise UserError(f"device must be a string such as 'cpu' or 'gpu:0', got {type(requested).__name__}")
    match = _GRAMMAR.fullmatch(requested.strip().lower())
    if match is None or match[1] not in KINDS:
        raise UserError(f"unknown device {requested!r}; {EXPECTED}")
    return Device(KINDS[match[1]], int(match[2] or 0))


def missing(device: Device, framework: str, count: int) -> UserError:
    """The error for a device the framework does not have: ``count`` is how many of that kind it sees."""
    return UserError(f"device {str(device)!r}: {framework} sees {count} {device.kind.upper()}(s) here")
