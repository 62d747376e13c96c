"""The result of :func:`~advisor.bandit.simulate`: trajectories of a batch of configurations."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import numpy.typing as npt

from advisor.bandit._classify import classify
from advisor.bandit._kernel import FloatArray
from advisor.bandit._problem import BanditProblem
from advisor.exceptions import AdvisorWarning


@dataclasses.dataclass(frozen=True, kw_only=True)
class BanditRun:
    """Trajectories of a batch of simulated configurations (one row per configuration).

    Attributes:
        reward_used: Mean reward of the completions used at step ``k`` (TRL's logged ``reward``):
            ``pi_old . r`` for an infinite group, the sampled group mean for finite ``G``.
            Shape ``(n_configs, n_steps)``; NaN from the step a configuration diverged.
        reward_current: Mean reward ``pi_k . r`` of the current policy at step ``k`` (before the
            update of step ``k``, so column 0 is ``p_0``). Same shape and NaN rule.
        diverged: True where the run produced non-finite values; it was then frozen.
        divergence_step: First non-finite step, or -1.
        final_logits: Logits after the last update, shape ``(n_configs, n)``; NaN if diverged.
        p_star: Fixed point ``p*`` of the infinite-G update (NaN if there is none). For finite G
            the plateau is ``fixed_point(problem, num_generations=G)``.
        start_reward: ``p_0``.
        learning_rate, momentum, refresh_interval: Per-configuration values, shape
            ``(n_configs,)``.
        refresh_scheme, optimizer, num_generations, seed: As passed to :func:`simulate`.
        problem: The simulated problem.

    Example:
        >>> from advisor.bandit import BanditProblem, simulate
        >>> run = simulate(BanditProblem.reference(), learning_rate=0.2, n_steps=50)
        >>> run.n_configs, run.n_steps, bool(run.diverged[0])
        (1, 50, False)
    """

    reward_used: FloatArray
    reward_current: FloatArray
    diverged: npt.NDArray[np.bool_]
    divergence_step: npt.NDArray[np.int64]
    final_logits: FloatArray
    p_star: float
    start_reward: float
    learning_rate: FloatArray
    momentum: FloatArray
    refresh_interval: npt.NDArray[np.int64]
    refresh_scheme: str
    optimizer: str
    num_generations: int | None
    seed: int | None
    problem: BanditProblem

    @property
    def n_configs(self) -> int:
        """Number of configurations."""
        return int(self.reward_current.shape[0])

    @property
    def n_steps(self) -> int:
        """Number of optimizer steps."""
        return int(self.reward_current.shape[1])

    def regimes(self) -> npt.NDArray[np.object_]:
        """Regime of each configuration by :func:`classify` (bandit-findings.md section 5).

        Example:
            >>> from advisor.bandit import BanditProblem, simulate
            >>> run = simulate(BanditProblem.reference(), learning_rate=0.05, n_steps=3000)
            >>> run.regimes()[0].value
            'monotone'
        """
        if self.num_generations is not None:
            warnings.warn(
                f"regimes() of a finite-group run (num_generations={self.num_generations}): the "
                "rules compare a noise-free trajectory with the infinite-group p*, so sampling "
                "noise and the finite-G plateau shift make stable runs read 'divergent'. "
                "Classify a re-run with num_generations=None instead.",
                AdvisorWarning, stacklevel=2)
        out = classify(self.reward_current, self.p_star, self.start_reward)
        assert isinstance(out, np.ndarray)
        return out
