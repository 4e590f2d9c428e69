"""What crosses a process boundary: the ``Job`` a worker is given and the ``Result`` it sends back.

``job.json`` is a ``Job``; each row of a results.json's "backends" list is a ``Result``. Both are
frozen dataclasses read with ``from_dict``, which refuses a key it does not know (a typo, or a
file from another version) in one line instead of passing it on unread.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from common.config import LossWeights, StyleTransferConfig
from common.errors import UserError

# A row's status; the failure statuses of a crashed or out-of-memory worker are tools/failures.py's.
OK = "ok"
NOT_INSTALLED = "not installed"
TIMED_OUT = "timed out"
INTERRUPTED = "interrupted"
DIVERGED = "diverged"
ERROR = "error"  # a UserError inside the worker (weights not available, ...)


def __getattr__(name: str):
    """``LOSS_PARTS``, the loss names in ``LossParts`` order, read on first use: common.interface imports
    NumPy, and the chapter's build, which reads Results, must not (tests/test_chapter.py)."""
    if name == "LOSS_PARTS":
        from common.interface import LossParts

        return LossParts._fields
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Record:
    """``to_dict``/``from_dict`` and their JSON forms for a frozen dataclass whose fields are JSON values."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self, **kwargs) -> str:
        from tools import strict_json

        return strict_json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data):
        return cls(**_checked_keys(cls, data))

    @classmethod
    def from_json(cls, text: str):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{cls.__name__}: not JSON ({exc})") from None
        return cls.from_dict(data)


def _checked_keys(cls, data) -> dict:
    """``data`` if it has every required field of ``cls`` and nothing else, else a one-line ``UserError``."""
    if not isinstance(data, dict):
        raise UserError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    fields = dataclasses.fields(cls)
    unknown = sorted(set(data) - {f.name for f in fields})
    if unknown:
        raise UserError(f"{cls.__name__}: unknown key(s) {', '.join(map(repr, unknown))}; "
                        f"known: {', '.join(f.name for f in fields)}")
    missing = [f.name for f in fields if f.name not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise UserError(f"{cls.__name__}: missing key(s) {', '.join(map(repr, missing))}")
    return dict(data)


def config_from_dict(data) -> StyleTransferConfig:
    """A ``StyleTransferConfig`` from ``dataclasses.asdict`` of one (JSON turned its tuples into lists)."""
    data = _checked_keys(StyleTransferConfig, data)
    for name, value in data.items():
        if isinstance(value, list):
            data[name] = tuple(value)
    if isinstance(data.get("loss_weights"), dict):
        data["loss_weights"] = LossWeights(**_checked_keys(LossWeights, data["loss_weights"]))
    return StyleTransferConfig(**data)


@dataclass(frozen=True)
class Job(Record):
    """One backend's run in ``tools.stylize_worker``: what to run, and where its files go."""

    backend: str
    out_dir: str  # absolute: the worker runs in the checkout, not in the caller's folder
    config: StyleTransferConfig
    content: str  # image paths, absolute
    style: str
    weights: str = "bundled"  # a name get_backend knows, or "random"
    precision: str = "float32"
    device: str | None = None  # None: the backend picks a GPU if it has one
    seed: int = 0  # of weights "random"
    repeat: int = 1  # the whole run this many times, for the spread of step times
    warmup: int = 5  # first steps of each run left out of the step-time statistics
    loss_weight_overrides: dict[str, float] = field(default_factory=dict)  # content/style/tv from the command line

    @classmethod
    def from_dict(cls, data) -> "Job":
        data = _checked_keys(cls, data)
        return cls(**{**data, "config": config_from_dict(data["config"])})


@dataclass(frozen=True)
class Result(Record):
    """One backend's row: every measurement of a finished run, or why it did not finish.

    ``to_dict`` writes the keys results.json has always had: all the measurement keys for a
    finished run (``None`` where not measured, such as device memory on a CPU), and only
    backend, status, error (and diverged_at_step) for one that did not finish.
    """

    backend: str
    status: str
    # a finished run
    device: str | None = None
    device_name: str | None = None
    precision: str | None = None
    weights: str | None = None
    taps: str | None = None
    recipe: str | None = None  # common/recipes.py
    optimizer: str | None = None  # what optimized the image, in the framework's words
    evaluations: int | None = None  # loss evaluations in the first run: the steps, or L-BFGS' closure calls
    loss_weights: dict[str, float] | None = None
    versions: dict[str, str | None] | None = None
    setup_s: float | None = None  # process start to backend ready
    first_step_s: float | None = None  # includes compilation
    step_s_median: float | None = None  # after the warm-up steps
    step_s_p10: float | None = None
    step_s_p90: float | None = None
    repeat_step_s_medians: list[float] | None = None
    total_s: float | None = None  # the first run's training loop
    peak_host_bytes: int | None = None
    peak_device_bytes: int | None = None
    final_losses: dict[str, float] | None = None  # keyed by LOSS_PARTS
    history: list[list[float]] | None = None  # every step's losses, in LOSS_PARTS order
    image: str | None = None  # file name, beside results.json
    # a run that did not finish
    error: str | None = None  # one line
    diverged_at_step: int | None = None

    @classmethod
    def failed(cls, backend: str, status: str, error: str, **extra) -> "Result":
        return cls(backend=backend, status=status, error=error, **extra)

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_dict(self) -> dict:
        if self.ok:
            return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                    if f.name not in ("error", "diverged_at_step")}
        row = {"backend": self.backend, "status": self.status, "error": self.error}
        if self.diverged_at_step is not None:
            row["diverged_at_step"] = self.diverged_at_step
        return row
