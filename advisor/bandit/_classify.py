"""Regime classification of reward trajectories (the rules of bandit-findings.md section 5).

Conventions:
    p: reward trajectories, shape ``(n_configs, n_steps)``; p_star, p0: fixed point and start,
    shape ``(n_configs,)``; codes 0..3 index ``_REGIMES``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from advisor._validation import _numeric_array
from advisor._validation import check_interval
from advisor.bandit._kernel import FloatArray
from advisor.dynamics import Regime
from advisor.exceptions import AdvisorWarning


_REGIMES = np.array([Regime.MONOTONE, Regime.OVERSHOOT, Regime.OSCILLATORY, Regime.DIVERGENT],
                    dtype=object)
_STUCK_FLOOR = 1e-2
"""The smallest non-decaying envelope, as a fraction of ``tolerance * Delta``, that is stuck."""


def _regime_codes(p: FloatArray, p_star: FloatArray, p0: FloatArray, dead_zone: float,
                  tail_fraction: float, tolerance: float) -> npt.NDArray[np.int64]:
    n = p.shape[1]
    scale = np.abs(p_star - p0)[:, None]
    dev = p - p_star[:, None]
    finite = np.isfinite(dev).all(axis=1)
    dev = np.where(np.isfinite(dev), dev, 0.0)
    size = np.abs(dev)
    tail = size[:, int(n * (1 - tail_fraction)):].max(axis=1)
    third, last = size[:, n // 2: 3 * n // 4].max(axis=1), size[:, 3 * n // 4:].max(axis=1)
    # Not decaying: the last quarter's envelope is not below the third quarter's. The rule is
    # there for limit cycles and plateaus inside the tolerance band, so it needs an envelope of
    # at least 1% of the band (1e-4 of Delta at the default tolerance): below that the run has
    # settled, and a soft mode (decaying < 2% a quarter) or two decaying modes crossing (|p - p*|
    # grows for a while) there is not a divergence.
    stuck = (last >= 0.98 * third) & (last > _STUCK_FLOOR * tolerance * scale[:, 0])
    diverged = ~finite | (tail > tolerance * scale[:, 0]) | stuck
    # Sign of p - p* outside the dead zone, with the start as the first signed point;
    # forward-fill the dead zone with the last sign, then count sign flips.
    sign = np.where(size > dead_zone * scale, np.sign(dev), 0.0)
    sign = np.concatenate([np.sign(p0 - p_star)[:, None], sign], axis=1)
    idx = np.where(sign != 0, np.arange(n + 1), 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    filled = np.take_along_axis(sign, idx, axis=1)
    flips = (filled[:, 1:] * filled[:, :-1] < 0).sum(axis=1)
    return np.where(diverged, 3, np.minimum(flips, 2))


def _codes(p: FloatArray, p_star: FloatArray, p0: FloatArray, dead_zone: float = 0.01,
           tail_fraction: float = 0.1, tolerance: float = 0.01) -> npt.NDArray[np.int64]:
    """Regime codes 0..3 (index into ``_REGIMES``); chunks bound the temporaries' memory."""
    if p.shape[0] == 0:  # no configurations: no chunks to concatenate
        return np.zeros(0, np.int64)
    return np.concatenate([
        _regime_codes(p[i:i + 256], p_star[i:i + 256], p0[i:i + 256], dead_zone, tail_fraction,
                      tolerance)
        for i in range(0, p.shape[0], 256)])


def classify(
    reward_current: Sequence[float] | FloatArray,
    p_star: float | FloatArray,
    p0: float | FloatArray | None = None,
    *,
    dead_zone: float = 0.01,
    tail_fraction: float = 0.1,
    tolerance: float = 0.01,
) -> Regime | npt.NDArray[np.object_]:
    """Regime of each trajectory by the rules of bandit-findings.md section 5.

    With ``Delta = |p* - p0|``: **divergent** if non-finite, or ``max|p - p*|`` over the last
    ``tail_fraction`` of steps exceeds ``tolerance*Delta``, or the envelope is stuck: it does
    not decay (last quarter's max >= 0.98 x third quarter's) and it is above the settled floor
    ``0.01*tolerance*Delta`` (1e-4 of Delta by default). A residual below the floor has
    converged, even if a soft mode still decays by < 2% a quarter; like the tail test, the floor
    reads a cycle or a growing mode that is still below it at the last step as settled within
    the horizon. Else **oscillatory** with >= 2 sign changes of ``p - p*`` outside the dead
    zone ``dead_zone*Delta`` (the start counts as a signed point), **overshoot** with exactly 1,
    **monotone** otherwise.

    Args:
        reward_current: ``p`` per step, shape ``(n_steps,)`` or ``(n_configs, n_steps)``,
            ``n_steps >= 8``.
        p_star: Fixed point ``p*``, scalar or per configuration.
        p0: Starting reward, scalar or per configuration; ``None`` takes the first column.
        dead_zone: Dead zone as a fraction of ``Delta``.
        tail_fraction: Fraction of steps in the convergence check.
        tolerance: Convergence tolerance as a fraction of ``Delta``.

    Returns:
        A :class:`~advisor.dynamics.Regime` for a 1-D input, else an object array of them,
        shape ``(n_configs,)``.

    Raises:
        ValueError: For a wrong shape, non-finite ``p*`` or ``p0``, or ``p0 == p*``.

    Example:
        >>> import numpy as np
        >>> t = np.arange(400)
        >>> classify(0.8 - 0.3 * 0.9 ** t, 0.8).value
        'monotone'
        >>> classify(0.8 - 0.3 * (-0.9) ** t, 0.8).value
        'oscillatory'
    """
    p = _numeric_array("reward_current", reward_current, "an array of rewards")
    single = p.ndim == 1
    p = np.atleast_2d(p)
    if p.ndim != 2 or p.shape[1] < 8:
        raise ValueError("`reward_current` must have shape (n_steps,) or (n_configs, n_steps) "
                         f"with n_steps >= 8, got shape {np.shape(reward_current)}.")
    start = p[:, 0] if p0 is None else np.asarray(p0, dtype=np.float64)
    target = np.asarray(p_star, dtype=np.float64)
    try:
        target, start = (np.broadcast_to(x, p.shape[:1]).astype(np.float64)
                         for x in (target, start))
    except ValueError:
        raise ValueError("`p_star` and `p0` must be scalars or have length n_configs = "
                         f"{p.shape[0]}.") from None
    for name, x in (("p_star", target), ("p0", start)):
        if not np.all(np.isfinite(x)):
            raise ValueError(f"`{name}` must be finite, got {x.tolist()!r}.")
    if np.any(target == start):
        raise ValueError("`p0` must differ from `p_star`: the regime is measured relative to "
                         "|p* - p0|.")
    for name, x, hi in (("dead_zone", dead_zone, 1.0), ("tail_fraction", tail_fraction, 0.5),
                        ("tolerance", tolerance, 1.0)):
        check_interval(name, x, low=0.0, high=hi, low_closed=False)
    codes = _codes(p, target, start, dead_zone, tail_fraction, tolerance)
    _warn_offset_plateau(p, target, start, codes, tolerance)
    out = _REGIMES[codes]
    return out[0] if single else out


def _warn_offset_plateau(p: FloatArray, p_star: FloatArray, p0: FloatArray,
                         codes: npt.NDArray[np.int64], tolerance: float) -> None:
    """Warn when a run called divergent has settled, flat, within tolerance of a wrong p*.

    The rule calls a trajectory whose envelope stops decaying divergent; a converged run
    compared with a rounded p* (0.8536 for 0.853553...) stops "decaying" at the offset.
    """
    n = p.shape[1]
    last = p[:, 3 * n // 4:]
    with np.errstate(invalid="ignore"):
        offset = np.abs(last.mean(axis=1) - p_star)
        flat = np.ptp(last, axis=1) <= 1e-3 * offset
    suspect = (codes == 3) & np.isfinite(last).all(axis=1) & flat & (
        offset <= tolerance * np.abs(p_star - p0))
    if suspect.any():
        i = int(np.flatnonzero(suspect)[0])
        warnings.warn(
            f"{int(suspect.sum())} trajectory(ies) called divergent settle flat at "
            f"{last[i].mean():.6g}, {offset[i]:.2g} away from p_star={p_star[i]:.6g} (e.g. row "
            f"{i}): the envelope cannot decay toward a p_star that is off. Pass the exact fixed "
            "point (advisor.bandit.fixed_point(problem)[1] or BanditRun.p_star).",
            AdvisorWarning, stacklevel=3)
