"""Large calls of `StabilityModel` (checked momentum tables, Schur-Cohn kernel) against the exact
per-config solver: accuracy on random subsamples, and bit-identical small calls."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from advisor.stability import EdgeEstimate
from advisor.stability import StabilityModel
from advisor.stability import _is_stable
from advisor.stability import critical_rate
from advisor.stability._schur import sliding_stable
from advisor.stability._theory import _radii


def _estimate(k: float, kc: float) -> SimpleNamespace:
    return SimpleNamespace(stiffness=k, stiffness_current=kc, stiffness_sampler=k - kc,
                           std_error=0.0, optimizer="sgd")


EDGE = EdgeEstimate(rate=0.025, low=0.02, high=0.03, samples_per_step=128, horizon_steps=150,
                    optimizer="sgd")
TOL = 1e-3  # stated max relative error of the table path against the exact solver


def _momenta(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform in [0, 0.95] plus momenta at the safety-factor kink (0.5), near 0.95 and 0."""
    special = np.concatenate([0.5 + np.array([-1e-4, -1e-9, 0.0, 1e-9, 1e-4]),
                              0.95 - np.geomspace(1e-7, 1e-2, 20), [0.0, 1e-9, 1e-6]])
    return np.concatenate([special, rng.uniform(0.0, 0.95, n - special.size)])


def _check_against(table: np.ndarray, exact: np.ndarray, mu: np.ndarray, lag: np.ndarray,
                   oracle) -> None:  # type: ignore[no-untyped-def]
    """Max error <= TOL, except at discontinuities of the exact solver itself.

    The exact solver's bisection steps over unstable bands narrower than its steps, so its
    edge jumps (up to ~15%) within 1e-5 in momentum there; a table cannot follow such jumps. Such
    configurations must be rare (<= 0.2%) and the table value must be the exact value at a
    momentum within 2e-3 of the query (``oracle(mu_array, lag)`` solves exactly).
    """
    err = np.abs(table / exact - 1.0)
    bad = np.flatnonzero(err > TOL)
    assert bad.size <= 0.002 * err.size, (bad.size, err.size)
    for i in bad:
        around = oracle(mu[i] + np.linspace(-2e-3, 2e-3, 81).clip(-mu[i], 0.999 - mu[i]),
                        lag[i])
        assert np.any(np.abs(table[i] / around - 1.0) <= TOL), (mu[i], lag[i], err[i])
    assert np.delete(err, bad).max() <= TOL


@pytest.mark.parametrize(("scheme", "kc", "n_check"), [
    ("piecewise", 1.25, 2500),  # the GRPO-faithful bandit: K_c / K = 2.5
    ("piecewise", 0.0, 2500),  # pure delay
    ("piecewise", 0.3, 2500),  # K_c / K = 0.6
    ("sliding", 1.25, 2000),
])
def test_table_path_matches_exact_solver(scheme: str, kc: float, n_check: int) -> None:
    rng = np.random.default_rng(11)
    k, n = 0.5, 60_000  # > 4096 distinct pairs: the checked-table path
    mu = _momenta(rng, n)
    lag = rng.integers(1, 33, n)
    model = StabilityModel(_estimate(k, kc))
    big = model.max_learning_rate(momentum=mu, refresh_interval=lag, refresh_scheme=scheme,
                                  method="exact")
    assert model._table_cache, "the large call must take the table path"
    idx = np.concatenate([np.arange(28), rng.choice(np.arange(28, n), n_check - 28,
                                                    replace=False)])
    exact = critical_rate(mu[idx], lag[idx], current_fraction=kc / k,
                          refresh_scheme=scheme) / k

    def oracle(m: np.ndarray, g: int) -> np.ndarray:
        return critical_rate(m, g, current_fraction=kc / k, refresh_scheme=scheme) / k

    _check_against(big[idx], exact, mu[idx], lag[idx], oracle)


def test_calibrated_and_safety_layers_on_the_table_path() -> None:
    # auto = min(theory with the safety factor, calibrated edge); the small call is exact
    rng = np.random.default_rng(5)
    n = 30_000
    mu, lag = _momenta(rng, n), rng.integers(1, 33, n)
    samples = rng.choice([64.0, 128.0, 512.0], n)
    model = StabilityModel(_estimate(0.5, 1.25), edge=EDGE)
    idx = np.concatenate([np.arange(28), rng.choice(np.arange(28, n), 2000, replace=False)])
    for method in ("auto", "theory", "calibrated"):
        big = model.max_learning_rate(momentum=mu, refresh_interval=lag,
                                      samples_per_step=samples, method=method)
        fresh = StabilityModel(_estimate(0.5, 1.25), edge=EDGE)
        small = fresh.max_learning_rate(momentum=mu[idx], refresh_interval=lag[idx],
                                        samples_per_step=samples[idx], method=method)
        if method == "calibrated":
            np.testing.assert_array_equal(big[idx], small)  # elementwise, no table
            continue
        err = np.abs(big[idx] / small - 1.0)
        bad = np.flatnonzero(err > TOL)
        assert bad.size <= 0.002 * idx.size
        for i in bad:  # a discontinuity of the exact solver: its value within 2e-3 in momentum
            around = fresh.max_learning_rate(
                momentum=mu[idx][i] + np.linspace(-2e-3, 2e-3, 81), refresh_interval=lag[idx][i],
                samples_per_step=samples[idx][i], method=method)
            assert np.any(np.abs(big[idx][i] / around - 1.0) <= TOL)
        assert np.delete(err, bad).max() <= TOL


def test_small_calls_are_exact_and_unchanged() -> None:
    # up to 4096 distinct (mu, K_ref) pairs every pair is solved exactly, whatever the size
    rng = np.random.default_rng(3)
    mu = np.repeat(rng.uniform(0, 0.95, 1000), 50)  # 50,000 rows, 1,000 distinct pairs
    lag = np.repeat(rng.integers(1, 33, 1000), 50)
    model = StabilityModel(_estimate(0.5, 1.25))
    got = model.max_learning_rate(momentum=mu, refresh_interval=lag, method="exact")
    assert not model._table_cache
    want = critical_rate(mu[::50], lag[::50], current_fraction=2.5) / 0.5
    np.testing.assert_array_equal(got[::50], want)


def test_horizon_models_stay_exact_for_large_calls() -> None:
    rng = np.random.default_rng(4)
    n = 4200  # above the table threshold
    mu, lag = rng.uniform(0, 0.9, n), rng.integers(1, 5, n)
    model = StabilityModel(_estimate(0.5, 1.25), horizon_steps=100)
    got = model.max_learning_rate(momentum=mu, refresh_interval=lag, method="exact")
    assert not model._table_cache
    idx = rng.choice(n, 50, replace=False)
    want = critical_rate(mu[idx], lag[idx], current_fraction=2.5, horizon_steps=100) / 0.5
    # exact per pair, to the solver's own rtol (its batched bisection rounds depend on the size)
    np.testing.assert_allclose(got[idx], want, rtol=1e-5)


def test_schur_kernel_matches_companion_eigenvalues() -> None:
    rng = np.random.default_rng(2)
    n = 20_000
    a = 10 ** rng.uniform(-3, 0.6, n)
    mu, rc = rng.uniform(0, 0.99, n), rng.choice([0.0, 0.6, 1.0, 2.5, -1.0], n)
    lag = rng.integers(0, 33, n)
    fast = _is_stable(a, mu, rc, lag, "sliding", fast=True)
    slow = _is_stable(a, mu, rc, lag, "sliding")
    rho, _ = _radii(a, mu, rc, lag, "sliding")
    clear = np.abs(rho - 1.0) > 1e-9  # away from rounding of the unit circle
    assert 0.2 < slow.mean() < 0.8  # both outcomes are exercised
    np.testing.assert_array_equal(fast[clear], slow[clear])
    # known value: lag 1, pure delay, the edge is 1 - mu
    assert sliding_stable([0.39, 0.41], 0.6, 0.0, 1).tolist() == [True, False]


def test_is_stable_large_call_matches_small_calls() -> None:
    rng = np.random.default_rng(6)
    n = 6000
    mu, lag = rng.uniform(0, 0.95, n), rng.integers(0, 17, n)
    lr = 10 ** rng.uniform(-2, 0.7, n)
    model = StabilityModel(_estimate(0.5, 1.25))
    big = model.is_stable(lr, momentum=mu, refresh_interval=lag, refresh_scheme="sliding")
    small = np.concatenate([model.is_stable(lr[i:i + 1000], momentum=mu[i:i + 1000],
                                            refresh_interval=lag[i:i + 1000],
                                            refresh_scheme="sliding")
                            for i in range(0, n, 1000)])
    assert 0.2 < small.mean() < 0.8
    np.testing.assert_array_equal(big, small)


def test_model_speed_benchmark_smoke(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[1]
    cmd = [sys.executable, str(root / "benchmarks" / "model_speed.py"), "--n-configs", "6000",
           "--repeats", "1", "--only", "piecewise method=exact (distinct),assess_many (few"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env,
                         cwd=tmp_path).stdout
    assert "| max_learning_rate piecewise method=exact (distinct) | K |" in out
    assert "| assess_many (few pairs) | K+edge |" in out


@pytest.mark.parametrize("rc", [0.0, 0.6, 2.5])
def test_small_sliding_calls_use_the_fast_kernel_with_identical_numbers(rc: float) -> None:
    """The model's exact path (Schur-Cohn kernel) equals the public eigenvalue path."""
    rng = np.random.default_rng(int(10 * rc))
    mu, lag = rng.uniform(0.0, 0.95, 300), rng.integers(1, 33, 300)
    model = StabilityModel(SimpleNamespace(stiffness=0.5, stiffness_current=0.5 * rc,
                                           stiffness_sampler=0.5 * (1 - rc), std_error=0.01))
    got = model.max_learning_rate(momentum=mu, refresh_interval=lag, refresh_scheme="sliding",
                                  method="exact")
    want = critical_rate(mu, lag, current_fraction=rc, refresh_scheme="sliding") / 0.5
    np.testing.assert_allclose(got, want, rtol=1e-12)
