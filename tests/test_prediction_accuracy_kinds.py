"""The unseen-instance generator of benchmarks/prediction_accuracy.py (its problem kinds)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from advisor.bandit import fixed_point


_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "prediction_accuracy.py"


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("prediction_accuracy_bench", _PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _draw(bench, kind: str, seed: int = 11, n: int = 4) -> list:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    return [bench.random_problem(rng, kind) for _ in range(n)]


def test_mixed_draw_is_unchanged(bench) -> None:  # type: ignore[no-untyped-def]
    # the session-4 kinds must not change what `--seed N` (kind mixed) draws: seed 19's
    # random #1 is the problem the results file diagnoses (3 arms, 0.41/0.437/0.613)
    problem = _draw(bench, "mixed", seed=19, n=2)[1]
    assert np.round(problem.rewards, 3).tolist() == [0.41, 0.437, 0.613]


@pytest.mark.parametrize(("kind", "check"), [
    ("smallbeta", lambda p: 0.01 <= p.beta <= 0.2 and p.n_arms in (2, 3, 5)),
    ("clip", lambda p: 0.1 <= p.clip <= 0.3 and p.std_eps == 1e-4),
    ("trl", lambda p: p.clip == 0.2 and p.std_eps == 1e-4 and 0.01 <= p.beta <= 0.1),
    ("many", lambda p: 10 <= p.n_arms <= 16),
    ("binary", lambda p: 3 <= p.n_arms <= 8 and set(p.rewards) == {0.0, 1.0}),
    ("surrogate", lambda p: p.surrogate in ("logprob", "stale")),
    ("veryhard", lambda p: p.n_arms == 2 and 0.005 <= p.ref_probs[1] <= 0.05
     and 0.05 <= p.beta <= 3.0),
])
def test_new_kinds_draw_what_they_say(bench, kind, check) -> None:  # type: ignore[no-untyped-def]
    for problem in _draw(bench, kind):
        assert check(problem), problem
        p_star = fixed_point(problem)[1]  # an interior fixed point away from the start
        assert abs(p_star - problem.start_reward) > 0.05 * np.ptp(problem.rewards)


def test_unknown_kind_is_rejected(bench) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="`kind` must be one of"):
        bench.random_problem(np.random.default_rng(0), "beta0")


# ----------------------------------------------------------------------------------------------
# slow runs: read divergent at the horizon, but not diverging (results file, session 5)
# ----------------------------------------------------------------------------------------------
_T = np.arange(2000)


def _p(residual: np.ndarray) -> np.ndarray:
    """p = p* - Delta x residual with p* = 0.8, p0 = 0.5 (residual 1 at the start)."""
    return 0.8 - 0.3 * residual


_PLATEAU = 0.98**_T * 0.67 + 0.33 * 0.9999**_T  # onto a plateau at 1/3 of Delta, crawling on


@pytest.mark.parametrize(("residual", "slow"), [
    (_PLATEAU, True),                                         # metastable plateau, crawling
    (np.where(_T < 1700, _PLATEAU, _PLATEAU * 0.97 ** (_T - 1700)), True),  # leaves it late
    (0.9995**_T, True),                                       # one soft mode, 37% left
    (np.where(_T < 1600, _PLATEAU, _PLATEAU * np.exp(-(_T - 1600) / 20.0)
              * np.cos((_T - 1600) / 15.0)), True),          # leaves it late, overshoots
    (0.99995**_T, False),                                     # 90% left: not half way
    (np.full(_T.shape, 1.0), False),                          # stuck at the start
    (0.98**_T * 0.67 + 0.33, False),                          # a plateau that stopped decaying
    (0.98**_T * 0.9 + 0.1 * np.cos(0.05 * _T), False),        # oscillation without decay
    (0.98**_T * 0.9 + 0.005 * (1 + np.cos(0.05 * _T)), False),  # a small cycle (< rebound)
    (0.98**_T * 0.9 + 0.1 + 1e-4 * 1.003**_T, False),         # a growing mode, however small
    (0.98**_T * 0.9 + 0.1 * 1.001**_T, False),                # a slow blow-up
    (np.where(_T < 1000, 0.98**_T, np.nan), False),           # non-finite
    (np.where(_T < 50, 1 + 0.02 * _T, 2 * 0.98 ** (_T - 50.0)), False),  # away first (2 x Delta)
])
def test_slow_runs(bench, residual: np.ndarray, slow: bool) -> None:  # type: ignore[no-untyped-def]
    with np.errstate(over="ignore", invalid="ignore"):
        p = _p(residual)
    assert bench.slow_runs(p[None, :], 0.8, 0.5).tolist() == [slow]


def test_slow_runs_are_the_real_plateau_of_seed_1234(bench) -> None:  # type: ignore[no-untyped-def]
    # `--seed 1234 --kind smallbeta` #2, piecewise, mu = 0: 0.043-0.175 sit on the second-best
    # arm (1/3 of Delta short of p*) at step 2,000 and read divergent; 8.9 at K_ref 8 blows up
    from advisor.bandit import classify
    from advisor.bandit import simulate
    from advisor.dynamics import Regime

    problem = _draw(bench, "smallbeta", seed=1234, n=3)[2]
    p_star = fixed_point(problem)[1]
    run = simulate(problem, learning_rate=[0.05, 0.15, 8.9], refresh_interval=[1, 1, 8],
                   n_steps=2000)
    assert all(r is Regime.DIVERGENT for r in classify(run.reward_current, p_star))
    assert bench.slow_runs(run.reward_current, p_star, problem.start_reward).tolist() == [
        True, True, False]
