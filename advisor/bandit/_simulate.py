"""The vectorised simulator: a batch of ``(eta, mu, K_ref or d)`` configurations in lock step.

Conventions:
    Kernels are arm-major ``(n, B)``, outputs configuration-major ``(n_configs, n_steps)``.
    eta: learning rate; mu: heavy-ball momentum; lag: ``K_ref`` (piecewise) or ``d`` (sliding);
    size: group size ``G`` (``None``: infinite group).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
from typing import Literal

import numpy as np
import numpy.typing as npt

from advisor._validation import check_int
from advisor._validation import check_interval
from advisor._validation import check_options
from advisor.bandit._fixed_point import _p_star
from advisor.bandit._kernel import FloatArray
from advisor.bandit._kernel import _Kernel
from advisor.bandit._kernel import _softmax
from advisor.bandit._optim import _Optimizer
from advisor.bandit._problem import BanditProblem
from advisor.bandit._result import BanditRun
from advisor.bandit._sampling import _sample_counts
from advisor.bandit._sampling import _Sampler


def _config_array(name: str, value: Any) -> FloatArray:
    """A scalar or 1-D array-like of real numbers as a 1-D float array (bools rejected)."""
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"`{name}` must be a real number or a 1-D array of them, "
                        f"got {type(value).__name__} {value!r}.")
    arr = np.asarray(value)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iuf":
        raise TypeError(f"`{name}` must be a real number or a 1-D array of them, got {value!r}.")
    if arr.ndim > 1:
        raise ValueError(f"`{name}` must be a scalar or 1-D, got shape {arr.shape}. "
                         "Flatten a grid with .ravel() first.")
    return arr.astype(np.float64).reshape(-1)


def _check_all(name: str, arr: FloatArray, ok: npt.NDArray[np.bool_], constraint: str,
               hint: str = "") -> None:
    if not np.all(ok):
        i = int(np.flatnonzero(~ok)[0])
        raise ValueError(f"`{name}` must be {constraint}, got {float(arr[i])!r} at index {i}. "
                         f"{hint}"
                         .strip())


def _configs(learning_rate: Any, momentum: Any, refresh_interval: Any, scheme: str
             ) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int64]]:
    eta = _config_array("learning_rate", learning_rate)
    mu = _config_array("momentum", momentum)
    lag = _config_array("refresh_interval", refresh_interval)
    with np.errstate(invalid="ignore"):
        _check_all("learning_rate", eta, np.isfinite(eta) & (eta > 0), "finite and > 0")
        _check_all("momentum", mu, np.isfinite(mu) & (mu >= 0) & (mu < 1), "in [0, 1)")
        low = 1 if scheme == "piecewise" else 0
        integral = np.isfinite(lag) & (lag == np.round(lag))
        _check_all("refresh_interval", lag, integral & (lag >= low),
                   f"an integer >= {low} for refresh_scheme={scheme!r}",
                   "K_ref = 1 (piecewise) or lag d = 0 (sliding) is on-policy.")
    try:
        eta, mu, lag = np.broadcast_arrays(eta, mu, lag)
    except ValueError:
        raise ValueError("`learning_rate`, `momentum` and `refresh_interval` must broadcast to "
                         f"one length, got lengths {eta.size}, {mu.size}, {lag.size}.") from None
    if eta.size == 0:
        raise ValueError("`learning_rate` must hold at least one configuration, got an empty "
                         "array.")
    return eta.copy(), mu.copy(), lag.astype(np.int64)


def simulate(
    problem: BanditProblem,
    *,
    learning_rate: float | Sequence[float] | FloatArray,
    momentum: float | Sequence[float] | FloatArray = 0.0,
    refresh_interval: int | Sequence[int] | npt.NDArray[np.int64] = 1,
    refresh_scheme: Literal["piecewise", "sliding"] = "piecewise",
    optimizer: Literal["sgd", "adam"] = "sgd",
    num_generations: int | None = None,
    n_steps: int,
    seed: int | None = None,
    adam_betas: tuple[float, float] = (0.9, 0.999),
    adam_eps: float = 1e-8,
) -> BanditRun:
    """Simulate GRPO on the bandit for a batch of configurations in lock step.

    Each configuration is ``(eta, mu, K_ref or d)``; the three broadcast to ``n_configs``. Heavy
    ball: ``theta_{k+1} = theta_k + eta*g_k + mu*(theta_k - theta_{k-1})``; Adam: the usual
    bias-corrected update with ``adam_betas`` (``momentum`` must then be 0). The sampling policy is
    ``theta_old = theta_k`` refreshed when ``k % K_ref == 0`` (``"piecewise"``, as TRL does) or
    ``theta_old = theta_{k-d}`` with ``d = refresh_interval`` (``"sliding"``; ``theta_j = theta_0``
    for ``j < 0``). A configuration that produces non-finite values is marked diverged and frozen;
    the others go on.

    Args:
        problem: The bandit.
        learning_rate: ``eta > 0``, scalar or 1-D.
        momentum: Heavy-ball ``mu`` in [0, 1), scalar or 1-D (SGD only).
        refresh_interval: ``K_ref >= 1`` (piecewise) or lag ``d >= 0`` (sliding), scalar or 1-D.
        refresh_scheme: ``"piecewise"`` or ``"sliding"``.
        optimizer: ``"sgd"`` (heavy ball) or ``"adam"``.
        num_generations: Group size ``G >= 2``; ``None`` uses the exact expected update
            (infinite group). A finite group is drawn from ``pi_old`` at each refresh and reused
            until the next (every step for ``"sliding"``).
        n_steps: Number of optimizer steps.
        seed: Seed of the group sampler (finite G only).
        adam_betas: Adam's ``(beta1, beta2)``, each in [0, 1).
        adam_eps: Adam's epsilon.

    Returns:
        The trajectories, see :class:`BanditRun`.

    Raises:
        TypeError: For non-numeric arguments.
        ValueError: For out-of-range values, see each argument.

    Example:
        >>> run = simulate(BanditProblem.reference(), learning_rate=0.3, momentum=0.8,
        ...                refresh_interval=[1, 4], n_steps=3000)
        >>> [round(float(p), 3) for p in run.reward_current[:, -1]]
        [0.854, 0.854]
    """
    if not isinstance(problem, BanditProblem):
        raise TypeError(f"`problem` must be a BanditProblem, got {type(problem).__name__}.")
    check_options("refresh_scheme", refresh_scheme, ("piecewise", "sliding"))
    check_options("optimizer", optimizer, ("sgd", "adam"))
    eta, mu, lag = _configs(learning_rate, momentum, refresh_interval, refresh_scheme)
    n_steps = check_int("n_steps", n_steps, low=1)
    if num_generations is not None:
        num_generations = check_int("num_generations", num_generations, low=2,
                                    hint="Use None for the infinite-group expected update.")
    if seed is not None:
        seed = check_int("seed", seed, low=0)
    if isinstance(adam_betas, (str, bytes)) or not hasattr(adam_betas, "__len__") or \
            len(adam_betas) != 2:
        raise TypeError(f"`adam_betas` must be a pair (beta1, beta2), got {adam_betas!r}. "
                        "Pass e.g. adam_betas=(0.9, 0.999).")
    betas = (check_interval("adam_betas[0]", adam_betas[0], low=0.0, high=1.0, high_closed=False),
             check_interval("adam_betas[1]", adam_betas[1], low=0.0, high=1.0, high_closed=False))
    adam_eps = check_interval("adam_eps", adam_eps, low=0.0, low_closed=False)
    if optimizer == "adam" and np.any(mu != 0):
        raise ValueError(f"`momentum` must be 0 with optimizer='adam', got {float(mu.max())!r}. "
                         "Adam's first-moment EMA is set by `adam_betas`, not by heavy-ball "
                         "momentum.")
    theta0 = problem.start_logits
    pi0 = np.repeat(_softmax(theta0[:, None]), eta.size, axis=1)
    cur, used, first_bad, final = _run(
        _Kernel.of(problem), theta0, _Optimizer(theta0, eta, mu, optimizer, betas, adam_eps),
        # a lag of n_steps or more never reaches back past theta_0 (theta_j = theta_0 for j < 0):
        # capping it keeps the sliding-lag history at n_steps + 1 entries instead of d + 1
        _Sampler(pi0, np.minimum(lag, n_steps), refresh_scheme), num_generations, n_steps,
        np.random.default_rng(seed))
    diverged = first_bad < n_steps
    if diverged.any():
        after = np.arange(n_steps)[None, :] >= first_bad[:, None]
        cur[after] = np.nan
        used[after] = np.nan
        final[diverged] = np.nan
    return BanditRun(
        reward_used=used, reward_current=cur, diverged=diverged,
        divergence_step=np.where(diverged, first_bad, -1), final_logits=final,
        p_star=_p_star(problem), start_reward=problem.start_reward, learning_rate=eta,
        momentum=mu, refresh_interval=lag, refresh_scheme=refresh_scheme, optimizer=optimizer,
        num_generations=num_generations, seed=seed, problem=problem)


def _run(kern: _Kernel, theta0: FloatArray, opt: _Optimizer, sampler: _Sampler,
         size: int | None, n_steps: int, rng: np.random.Generator
         ) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int64], FloatArray]:
    """The lock-step loop. Returns reward_current, reward_used (n_configs, n_steps), the first
    non-finite step per configuration (n_steps if none) and the final logits (n_configs, n)."""
    b = opt.eta.size
    cur, used = np.empty((b, n_steps)), np.empty((b, n_steps))
    # Rows are written step-major into small blocks and transposed block-wise into the
    # (n_configs, n_steps) outputs: a whole-array transpose copy costs as much as the simulation.
    block = min(n_steps, 256)
    cur_blk, used_blk = np.empty((block, b)), np.empty((block, b))
    first_bad = np.full(b, n_steps, dtype=np.int64)
    frozen = np.zeros(b, dtype=bool)
    r = kern.r[:, 0]
    adv = counts = used_row = sampler.pi_old  # placeholders: every column refreshes at k = 0
    with np.errstate(all="ignore"):
        for k in range(n_steps):
            pi = _softmax(opt.theta)
            row = k % block
            cur_blk[row] = r @ pi
            fresh = sampler.step(k, pi)
            pi_old = sampler.pi_old
            if size is None:
                if np.any(fresh):
                    adv, used_row = kern.advantages(pi_old), r @ pi_old
                g = kern.direction(pi, pi_old, adv)
            else:
                if np.any(fresh):
                    counts = np.where(fresh, _sample_counts(rng, pi_old, size), counts)
                    adv, used_row = kern.group_advantages(counts, size), r @ counts / size
                g = kern.group_direction(pi, pi_old, counts, adv, size)
            used_blk[row] = used_row
            if row == block - 1 or k == n_steps - 1:
                cur[:, k - row:k + 1] = cur_blk[:row + 1].T
                used[:, k - row:k + 1] = used_blk[:row + 1].T
            if frozen.any():
                g[:, frozen] = 0.0
            if not math.isfinite(float(cur_blk[row].sum() + g.sum())):
                bad = ~(np.isfinite(cur_blk[row]) & np.isfinite(g).all(axis=0))
                first_bad[bad & ~frozen] = k
                frozen |= bad
                g[:, bad] = 0.0
                opt.freeze(bad, theta0)
                sampler.reset(bad, _softmax(theta0[:, None]))
            opt.update(g, k)
    return cur, used, first_bad, np.ascontiguousarray(opt.theta.T)
