"""Schur-Cohn test of the sliding-lag characteristic polynomial (the fast sliding kernel).

``p(z) = z^{d+1} - (1 + mu - a rc) z^d + mu z^{d-1} + a (1 - rc)`` (``d >= 1``; ``d = 0``:
``z^2 - (1 + mu - a) z + mu``) has every root inside the unit circle iff each step of Schur's
recursion ``p -> (p_n p - p_0 p*) / z`` keeps ``|p_0| < |p_n|`` (real coefficients). That costs
``O(d^2)`` flops per configuration against ``O(d^3)`` for the companion eigenvalues of
`advisor.stability._theory._sliding_roots_batch`, and agrees with them except within rounding of
the unit circle (``tests/test_stability_speed_accuracy.py`` compares them).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


def _sliding_poly(a: Any, mu: Any, rc: Any, d: int) -> npt.NDArray[np.float64]:
    """Ascending coefficients ``(n, d + 2)`` (``(n, 3)`` for ``d = 0``) of the polynomial."""
    if d == 0:
        return np.stack([mu, -(1.0 + mu - a), np.ones_like(a)], axis=1)
    q = np.zeros((a.size, d + 2))
    q[:, d + 1] = 1.0
    q[:, d] = -(1.0 + mu - a * rc)
    q[:, d - 1] += mu
    q[:, 0] += a * (1.0 - rc)
    return q


def _schur_inside(q: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Whether every root of each row's polynomial (ascending coefficients) lies in |z| < 1."""
    ok = np.zeros(q.shape[0], bool)
    live = np.arange(q.shape[0])  # rows that passed every step so far
    with np.errstate(all="ignore"):
        while q.shape[1] > 1:
            lead, const = q[:, -1], q[:, 0]
            step_ok = np.abs(const) < np.abs(lead)
            if not step_ok.all():  # drop failed rows: the rest of the recursion is theirs
                live, q = live[step_ok], q[step_ok]
                lead, const = lead[step_ok], const[step_ok]
            # (lead p - const p*) / z, normalised by the new leading coefficient
            nxt = lead[:, None] * q[:, 1:] - const[:, None] * q[:, -2::-1]
            scale = nxt[:, -1:]
            q = nxt / np.where(scale != 0.0, scale, 1.0)
    ok[live] = np.isfinite(q).all(1)
    return ok


def sliding_stable(a: Any, mu: Any, rc: Any, lag: Any) -> npt.NDArray[np.bool_]:
    """Asymptotic stability of the sliding-lag recursion (all roots in the unit circle).

    Args:
        a: Per-step rate ``eta K``; mu, rc, lag: momentum, ``K_c / K`` and the lag (broadcast).

    Returns:
        Boolean array of the broadcast shape (the on-policy bound is the caller's).

    Example:
        >>> sliding_stable([0.39, 0.41], 0.6, 0.0, 1).tolist()  # edge 1 - mu = 0.4
        [True, False]
    """
    a, mu, rc, lag = np.broadcast_arrays(*(np.asarray(v, float) for v in (a, mu, rc, lag)))
    shape = a.shape
    a, mu, rc, lag = (np.ascontiguousarray(v).ravel() for v in (a, mu, rc, lag))
    lag = np.rint(lag).astype(np.int64)
    out = np.empty(a.size, bool)
    for d in np.unique(lag):
        idx = np.flatnonzero(lag == d)
        out[idx] = _schur_inside(_sliding_poly(a[idx], mu[idx], rc[idx], int(d)))
    return out.reshape(shape)
