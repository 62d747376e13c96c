"""The GRPO update of the bandit for a batch of configurations: the arm-major kernels.

Conventions:
    Arrays are arm-major, shape ``(n, B)``: one row per arm, one column per configuration.
    pi, pi_old: current and sampling policies ``softmax(theta)``, ``softmax(theta_old)``.
    A (``adv``): advantages; r: rewards; ref: ``pi_ref``; beta: k3 KL coefficient;
    counts: arm counts of a sampled group of ``size = G`` completions.
    The update equations are in the :mod:`advisor.bandit` docstring (bandit-findings.md
    section 1).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt


if TYPE_CHECKING:
    from advisor.bandit._problem import BanditProblem


FloatArray = npt.NDArray[np.float64]


def _softmax(theta: FloatArray) -> FloatArray:
    z = np.exp(theta - theta.max(axis=0))
    return z / z.sum(axis=0)


@dataclasses.dataclass(frozen=True)
class _Kernel:
    """The problem's constants as column vectors, so that they broadcast against ``(n, B)``."""

    r: FloatArray
    ref: FloatArray
    beta: float
    std: bool
    surrogate: str
    clip: float | None
    eps: float

    @classmethod
    def of(cls, problem: BanditProblem) -> _Kernel:
        return cls(r=np.array(problem.rewards)[:, None], ref=np.array(problem.ref_probs)[:, None],
                   beta=problem.beta if problem.kl == "k3" else 0.0,
                   std=problem.advantage == "std", surrogate=problem.surrogate,
                   clip=problem.clip, eps=problem.std_eps)

    def advantages(self, pi_old: FloatArray) -> FloatArray:
        """Infinite-group advantages ``A`` of every arm under ``pi_old``."""
        a = self.r - (self.r * pi_old).sum(axis=0)
        if self.std:
            a = a / (np.sqrt((pi_old * a * a).sum(axis=0)) + self.eps)
        return a

    def clipped(self, adv: FloatArray, pi: FloatArray, pi_old: FloatArray) -> FloatArray:
        if self.clip is None or self.surrogate != "ratio":
            return adv
        rho = pi / pi_old
        off = ((adv > 0) & (rho > 1 + self.clip)) | ((adv < 0) & (rho < 1 - self.clip))
        return np.where(off, 0.0, adv)

    def direction(self, pi: FloatArray, pi_old: FloatArray, adv: FloatArray) -> FloatArray:
        """Expected ascent direction ``g(theta, theta_old)`` for an infinite group."""
        if self.surrogate == "stale":
            pi = pi_old
        if self.surrogate == "logprob":
            w = pi_old * adv
        else:
            w = pi * self.clipped(adv, pi, pi_old)
        g = w - pi * w.sum(axis=0)
        if self.beta:
            c = pi_old * (1.0 - self.ref / pi)
            g -= self.beta * (c - pi * c.sum(axis=0))
        return g

    def group_advantages(self, counts: FloatArray, size: int) -> FloatArray:
        """Per-arm advantages of a sampled group (TRL: unbiased std, ``+ std_eps``)."""
        mean = (counts * self.r).sum(axis=0) / size
        a = self.r - mean
        if self.std:
            sd = np.sqrt((counts * a * a).sum(axis=0) / (size - 1))
            # A degenerate group (all rewards equal) has r_i - mean = 0 for every sampled arm, so
            # its advantages are 0 (TRL's 0 / (0 + 1e-4)); unsampled arms carry no weight.
            a = np.divide(a, sd + self.eps, out=np.zeros_like(a), where=(sd + self.eps) > 0)
        return a

    def group_direction(self, pi: FloatArray, pi_old: FloatArray, counts: FloatArray,
                        adv: FloatArray, size: int) -> FloatArray:
        """Sampled-group ascent direction ``(1/G) sum_i rho_i A_i (e_{a_i} - pi)`` minus k3."""
        if self.surrogate == "stale":
            pi = pi_old
        if self.surrogate == "logprob":
            coef = counts * adv
        else:
            coef = counts * (pi / pi_old) * self.clipped(adv, pi, pi_old)
        g = coef - pi * coef.sum(axis=0)
        if self.beta:
            c = counts * (1.0 - self.ref / pi)
            g -= self.beta * (c - pi * c.sum(axis=0))
        return g / size
