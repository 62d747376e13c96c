"""How numbers are rounded (JSON) and printed (Markdown, HTML, figure labels)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


_SIG = 4  # significant digits kept in JSON/Markdown, so golden files are stable across BLAS builds


def _r(x: Any, sig: int = _SIG) -> Any:
    """Round to ``sig`` significant digits (None/inf/nan kept, ints untouched)."""
    if x is None or isinstance(x, (bool, int, str)):
        return x
    x = float(x)
    if not math.isfinite(x) or x == 0.0:
        return x if math.isfinite(x) else None
    return float(f"{x:.{sig}g}")


def _g(x: Any) -> str:
    """Format a number for Markdown (3 significant digits, '-' for missing, 'inf' for an
    infinite value such as the damping ratio of a first-order response)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return str(x)
    return f"{float(x):.3g}"
