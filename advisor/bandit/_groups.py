"""Exact finite-group expectation: every composition of ``G`` completions, weighted.

Conventions:
    theta, theta_old: 1-D logits, shape ``(n,)``; size: group size ``G``.
    counts: arm counts of every composition, shape ``(n, M)`` with ``M = C(G + n - 1, n - 1)``.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from advisor._validation import check_int
from advisor.bandit._kernel import FloatArray
from advisor.bandit._kernel import _Kernel
from advisor.bandit._kernel import _softmax
from advisor.bandit._problem import BanditProblem
from advisor.bandit._problem import _as_float_tuple


# Exact finite-G enumeration visits every composition of G into n arms; above this count it is
# slower than Monte Carlo (2 arms never come close: G + 1 compositions).
_MAX_COMPOSITIONS = 2_000_000


@functools.lru_cache(maxsize=32)
def _compositions(n: int, size: int) -> FloatArray:
    """Every arm-count vector of a group of ``size`` draws from ``n`` arms, shape ``(n, M)``."""
    total = math.comb(size + n - 1, n - 1)
    if total > _MAX_COMPOSITIONS:
        raise ValueError(f"`num_generations` must give at most {_MAX_COMPOSITIONS} group "
                         f"compositions for exact enumeration, got {total} (n={n}, G={size}). "
                         "Average simulate(..., num_generations=G) runs instead.")
    if n == 2:
        c = np.arange(size + 1, dtype=np.float64)
        return np.stack([size - c, c])
    bars = np.array(list(itertools.combinations(range(size + n - 1), n - 1)))
    edges = np.concatenate([np.full((total, 1), -1), bars, np.full((total, 1), size + n - 1)], 1)
    return (np.diff(edges, axis=1) - 1).T.astype(np.float64)


def _logits(name: str, value: Any, n: int) -> FloatArray:
    return np.array(_as_float_tuple(name, value, n=n))


def _expected_group(kern: _Kernel, theta: FloatArray, theta_old: FloatArray, size: int
                    ) -> tuple[FloatArray, FloatArray]:
    from scipy.special import gammaln
    from scipy.special import xlogy

    pi, pi_old = _softmax(theta[:, None]), _softmax(theta_old[:, None])
    counts = _compositions(theta.size, size)
    logw = gammaln(size + 1) - gammaln(counts + 1).sum(0) + xlogy(counts, pi_old).sum(0)
    w = np.exp(logw)
    with np.errstate(all="ignore"):
        g = kern.group_direction(pi, pi_old, counts, kern.group_advantages(counts, size), size)
    g = np.where(w > 0, g, 0.0)  # impossible groups (probability 0) carry no weight
    mean = g @ w
    dev = g - mean[:, None]
    return mean, (dev * w) @ dev.T


def expected_update_finite_g(
    problem: BanditProblem,
    logits: Sequence[float] | FloatArray,
    old_logits: Sequence[float] | FloatArray | None = None,
    *,
    num_generations: int,
) -> tuple[FloatArray, FloatArray]:
    """Exact mean and covariance of the sampled-group ascent direction over all groups.

    Enumerates every composition of a group of ``G`` completions drawn from ``pi_old``
    (``c ~ Binom(G, p_old)`` for 2 arms; multinomial in general) with TRL's normalisation, so the
    finite-G plateau shift and the gradient noise are exact (bandit-findings.md section 7).

    Args:
        problem: The bandit.
        logits: Current logits ``theta``, shape ``(n,)``.
        old_logits: Sampling logits ``theta_old``; ``None`` means on-policy (``theta``).
        num_generations: Group size ``G >= 2``.

    Returns:
        ``(mean, covariance)`` of the direction, shapes ``(n,)`` and ``(n, n)``.

    Raises:
        ValueError: For bad logits or ``G``, or too many compositions to enumerate.

    Example:
        >>> problem = BanditProblem.reference()
        >>> mean, cov = expected_update_finite_g(problem, [0.0, 0.0], num_generations=4)
        >>> [round(float(x), 4) for x in mean]
        [-0.3499, 0.3499]
    """
    n = problem.n_arms
    theta = _logits("logits", logits, n)
    theta_old = theta if old_logits is None else _logits("old_logits", old_logits, n)
    size = check_int("num_generations", num_generations, low=2)
    return _expected_group(_Kernel.of(problem), theta, theta_old, size)
