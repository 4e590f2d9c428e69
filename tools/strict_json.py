"""Results as strict JSON: NaN and infinity, which strict parsers reject, become null with the reason beside them."""

from __future__ import annotations

import json
import math

# The key, at the top of a written object, listing where a non-finite number became null and what it was.
NOT_FINITE_KEY = "null_because_not_finite"


def dumps(obj, **kwargs) -> str:
    """``json.dumps`` with ``allow_nan=False``, after replacing every NaN and infinity by None."""
    replaced: list[str] = []
    clean = _finite(obj, "", replaced)
    if replaced and isinstance(clean, dict):
        clean[NOT_FINITE_KEY] = replaced
    return json.dumps(clean, allow_nan=False, **kwargs)


def _finite(value, where: str, replaced: list[str]):
    if isinstance(value, float) and not math.isfinite(value):
        replaced.append(f"{where or '.'}: {value}")
        return None
    if isinstance(value, dict):
        return {key: _finite(item, f"{where}.{key}", replaced) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item, f"{where}[{i}]", replaced) for i, item in enumerate(value)]
    return value
