"""The sampling side of the simulator: the refresh schedule of ``pi_old`` and group draws.

Conventions:
    pi, pi_old: arm-major ``(n, B)`` policies, one column per configuration.
    lag: per-configuration ``K_ref`` (piecewise refresh) or ``d`` (sliding lag), shape ``(B,)``.
    size: group size ``G``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from advisor.bandit._kernel import FloatArray


def _sample_counts(rng: np.random.Generator, pi_old: FloatArray, size: int) -> FloatArray:
    """Arm counts of one group of ``size`` draws per column (sequential conditional binomials)."""
    n, b = pi_old.shape
    counts = np.empty((n, b))
    left = np.full(b, size, dtype=np.int64)
    mass = np.ones(b)
    for a in range(n - 1):
        with np.errstate(divide="ignore", invalid="ignore"):
            q = pi_old[a] / mass
        # Rounding can push q a hair outside [0, 1] and frozen (diverged) columns may be NaN.
        q = np.where(np.isfinite(q), np.clip(q, 0.0, 1.0), 0.0)
        c = rng.binomial(left, q)
        counts[a] = c
        left -= c
        mass = mass - pi_old[a]
    counts[n - 1] = left
    return counts


class _Sampler:
    """The sampling policy ``pi_old`` of every configuration, step by step."""

    def __init__(self, pi0: FloatArray, lag: npt.NDArray[np.int64], scheme: str) -> None:
        self.scheme, self.lag = scheme, lag
        self.uniform = bool(np.all(lag == lag[0]))
        self.period = int(lag[0])
        self.on_policy = self.uniform and self.period == (1 if scheme == "piecewise" else 0)
        self.pi_old = pi0
        if scheme == "sliding" and not self.on_policy:
            self.depth = int(lag.max()) + 1
            self.history = np.repeat(pi0[None], self.depth, axis=0)  # theta_{j<0} = theta_0

    def step(self, k: int, pi: FloatArray) -> npt.NDArray[np.bool_] | bool:
        """Update ``pi_old`` for step ``k``; return which columns were refreshed."""
        if self.on_policy:
            self.pi_old = pi
            return True
        if self.scheme == "piecewise":
            if self.uniform:
                if k % self.period:
                    return False
                self.pi_old = pi
                return True
            fresh = (k % self.lag) == 0
            if fresh.any():
                self.pi_old = np.where(fresh, pi, self.pi_old)
            return fresh
        self.history[k % self.depth] = pi
        if self.uniform:
            self.pi_old = self.history[(k - self.period) % self.depth]
        else:
            idx = ((k - self.lag) % self.depth)[None, None, :]
            self.pi_old = np.take_along_axis(self.history, idx, axis=0)[0]
        return True

    def reset(self, cols: npt.NDArray[np.bool_], pi0: FloatArray) -> None:
        if self.scheme == "sliding" and not self.on_policy:
            self.history[:, :, cols] = pi0
