"""The finite-horizon rule of the theory layer: does the linear trajectory settle in time?

Conventions as in `advisor.stability._theory` (a = eta K, mu, rc = K_c / K, lag = K_ref or d;
flat arrays of one length).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _settles(a: Any, mu: Any, rc: Any, lag: Any, scheme: str, n_steps: int) -> Any:
    """Whether the linear trajectory from rest at unit offset passes the horizon rule.

    The recurrence is iterated for ``n_steps`` from ``e = 1`` everywhere in its history (the
    start at rest of bandit-findings.md section 5) and classified by that section's rule:
    unsettled if non-finite, if ``max|e|`` over the last 10% of steps exceeds 1% of the start, or
    if the envelope does not decay (last quarter's max >= 0.98 x the third quarter's).
    """
    a, mu, rc, lag = (np.ascontiguousarray(v, dtype=float).ravel()
                      for v in np.broadcast_arrays(a, mu, rc, lag))
    lag = lag.astype(np.int64)
    n = a.size
    c1, c0 = 1.0 + mu - a * rc, a * (1.0 - rc)
    # Only the sliding lag reads the history. A lag of n_steps or more always reaches back
    # before step 0 (e = 1 there), so capping it bounds the ring buffer by the horizon, not by
    # d (or K_ref: a piecewise K_ref of 10^9 used to allocate 8 GB per configuration).
    if scheme == "sliding":
        lag = np.minimum(lag, n_steps)
    depth = int(lag.max(initial=0)) + 1 if scheme == "sliding" else 1
    hist = np.ones((depth, n))  # ring buffer of e_k (sliding lag)
    cols = np.arange(n)
    e_prev, e, e_old = np.ones(n), np.ones(n), np.ones(n)
    tail0, q3, q4 = n_steps - max(1, math.ceil(0.1 * n_steps)), n_steps // 2, 3 * n_steps // 4
    m_tail, m_q3, m_q4 = np.zeros(n), np.zeros(n), np.zeros(n)
    with np.errstate(all="ignore"):
        for k in range(n_steps):
            if scheme == "piecewise":
                e_old = np.where(k % lag == 0, e, e_old)
            else:
                e_old = hist[(k - lag) % depth, cols]
            ae = np.abs(e)
            if k >= tail0:
                m_tail = np.maximum(m_tail, ae)
            if q3 <= k < q4:
                m_q3 = np.maximum(m_q3, ae)
            elif k >= q4:
                m_q4 = np.maximum(m_q4, ae)
            e_prev, e = e, c1 * e - mu * e_prev - c0 * e_old
            hist[(k + 1) % depth] = e
        return (np.isfinite(m_tail) & (m_tail <= 0.01) & np.isfinite(m_q4)
                & (m_q4 < 0.98 * m_q3))
