"""The weights of the three losses: part of a config, of a weight set and of a recipe."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from common.errors import UserError


@dataclass(frozen=True)
class LossWeights:
    """Weights of the content, style and total-variation terms.

    d2l writes ``sum(10 * styles_l + contents_l + [tv_l])`` with style weight
    1e3: ``10 * styles_l`` repeats the *list* ten times, which is the same as
    a style weight of 1e4. Newer d2l editions write 1e4 directly.
    """

    content: float = 1.0
    style: float = 1e4
    tv: float = 10.0

    def validate(self) -> "LossWeights":
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise UserError(f"{field.name} loss weight must be a finite number >= 0, got {value!r}")
        return self
