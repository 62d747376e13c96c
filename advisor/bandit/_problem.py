"""The bandit problem: rewards, reference policy, KL term and surrogate of one GRPO prompt."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any
from typing import Literal

import numpy as np

from advisor._validation import _numeric_array
from advisor._validation import check_interval
from advisor._validation import check_options
from advisor.bandit._kernel import FloatArray
from advisor.bandit._kernel import _softmax


def _as_float_tuple(name: str, values: Any, *, n: int | None = None) -> tuple[float, ...]:
    # strings ("0", "1") and booleans are rejected, not converted (TypeError naming the entry)
    arr = _numeric_array(name, values, "a sequence of numbers")
    if arr.ndim != 1 or (n is not None and arr.size != n):
        want = f"a 1-D sequence of length {n}" if n is not None else "a 1-D sequence"
        raise ValueError(f"`{name}` must be {want}, got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` must be finite, got {arr.tolist()!r}.")
    return tuple(float(x) for x in arr)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BanditProblem:
    """A softmax bandit standing in for one GRPO prompt.

    Attributes:
        rewards: Reward of each arm (completion), length ``n >= 2``, not all equal.
        ref_probs: Reference policy ``pi_ref`` (positive, sums to 1); ``None`` means uniform.
        beta: KL coefficient ``beta >= 0`` of TRL's k3 estimator (0 with ``kl="none"``).
        advantage: ``"std"`` for TRL's ``(r - mean) / (std + std_eps)``; ``"mean"`` for the
            mean-only advantages of Dr GRPO.
        surrogate: ``"ratio"`` (GRPO importance ratio, the default), ``"stale"`` (the whole update
            evaluated at the sampling policy: the pure-delay model) or ``"logprob"`` (no ratio).
        kl: ``"k3"`` (TRL's estimator, not importance-weighted) or ``"none"``.
        clip: PPO clip epsilon in (0, 1), or ``None`` for no clipping.
        std_eps: Constant added to the std (TRL uses 1e-4; 0 is the exact limit).
        init_logits: Starting logits ``theta_0``; ``None`` means ``log(ref_probs)``.

    Example:
        >>> problem = BanditProblem(rewards=[0.0, 1.0], beta=1.0)
        >>> problem.n_arms, problem.start_reward
        (2, 0.5)
    """

    rewards: Sequence[float]
    ref_probs: Sequence[float] | None = None
    beta: float = 1.0
    advantage: Literal["std", "mean"] = "std"
    surrogate: Literal["ratio", "stale", "logprob"] = "ratio"
    kl: Literal["k3", "none"] = "k3"
    clip: float | None = None
    std_eps: float = 0.0
    init_logits: Sequence[float] | None = None

    def __post_init__(self) -> None:
        setf = functools.partial(object.__setattr__, self)
        rewards = _as_float_tuple("rewards", self.rewards)
        if len(rewards) < 2 or max(rewards) == min(rewards):
            raise ValueError(
                f"`rewards` must have at least 2 arms with different rewards, got {rewards!r}."
            )
        n = len(rewards)
        setf("rewards", rewards)
        ref = (1.0 / n,) * n if self.ref_probs is None else _as_float_tuple(
            "ref_probs", self.ref_probs, n=n)
        if min(ref) <= 0.0 or abs(sum(ref) - 1.0) > 1e-9:
            raise ValueError(
                f"`ref_probs` must be positive and sum to 1, got {ref!r}. Normalise it first."
            )
        setf("ref_probs", ref)
        check_options("advantage", self.advantage, ("std", "mean"))
        check_options("surrogate", self.surrogate, ("ratio", "stale", "logprob"))
        check_options("kl", self.kl, ("k3", "none"))
        setf("beta", check_interval("beta", self.beta, low=0.0))
        if self.kl == "none" and self.beta != 0.0:
            raise ValueError(f"`beta` must be 0 when kl='none', got {self.beta!r}. "
                             "Pass beta=0.0, or kl='k3' to keep the KL term.")
        if self.clip is not None:
            setf("clip", check_interval("clip", self.clip, low=0.0, high=1.0,
                                        low_closed=False, high_closed=False))
            if self.surrogate == "logprob":
                raise ValueError("`clip` must be None with surrogate='logprob', got "
                                 f"{self.clip!r}: clipping acts on the importance ratio.")
        setf("std_eps", check_interval("std_eps", self.std_eps, low=0.0))
        if self.init_logits is not None:
            setf("init_logits", _as_float_tuple("init_logits", self.init_logits, n=n))

    @classmethod
    def reference(cls, **overrides: Any) -> BanditProblem:
        """The reference problem: 2 arms, ``r = (0, 1)``, uniform ``pi_ref``, ``beta = 1``.

        Its fixed point is ``p* = (2 + sqrt 2)/4`` with ``K = 0.5`` (``K_c = 1.25``,
        ``K_o = -0.75``), bandit-findings.md section 2-3.

        Example:
            >>> BanditProblem.reference(advantage="mean").advantage
            'mean'
        """
        return cls(**{"rewards": (0.0, 1.0), "beta": 1.0, **overrides})

    @classmethod
    def hard_prompt(cls, **overrides: Any) -> BanditProblem:
        """A hard prompt: reference success 0.05, ``beta = 3`` (``p* < 1/2``, ``K_o > 0``).

        Example:
            >>> round(BanditProblem.hard_prompt().start_reward, 12)
            0.05
        """
        return cls(**{"rewards": (0.0, 1.0), "ref_probs": (0.95, 0.05), "beta": 3.0,
                      **overrides})

    @classmethod
    def five_arm(cls, **overrides: Any) -> BanditProblem:
        """Five arms with real rewards ``(0, 0.2, 0.5, 0.7, 1)``, uniform ``pi_ref``, ``beta = 1``.

        Example:
            >>> BanditProblem.five_arm().n_arms
            5
        """
        return cls(**{"rewards": (0.0, 0.2, 0.5, 0.7, 1.0), "beta": 1.0, **overrides})

    @property
    def n_arms(self) -> int:
        """Number of arms ``n``."""
        return len(self.rewards)

    @property
    def start_logits(self) -> FloatArray:
        """Starting logits ``theta_0``, shape ``(n,)``."""
        if self.init_logits is not None:
            return np.array(self.init_logits)
        return np.log(np.array(self.ref_probs))

    @property
    def start_reward(self) -> float:
        """Mean reward ``p_0`` of the starting policy."""
        pi = _softmax(self.start_logits[:, None])[:, 0]
        return float(pi @ np.array(self.rewards))
