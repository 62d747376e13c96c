"""The boundary locus of the sliding-lag polynomial (`advisor.stability._boundary`) against
closed forms, a dense Schur-Cohn scan of the rate axis, the companion eigenvalues, and itself
element by element."""

from __future__ import annotations

import numpy as np
import pytest

from advisor.stability import _pure_delay_sliding_rate
from advisor.stability import critical_rate
from advisor.stability._boundary import sliding_edge
from advisor.stability._schur import sliding_stable
from advisor.stability._theory import _first_edge
from advisor.stability._theory import _sliding_roots_batch


def _edge(mu: float, rc: float, lag: int) -> tuple[float, bool]:
    a, ok = sliding_edge(np.array([mu]), np.array([rc]), np.array([lag]))
    return float(a[0]), bool(ok[0])


@pytest.mark.parametrize("mu", [0.0, 0.3, 0.6, 0.9])
def test_known_values(mu: float) -> None:
    # d = 1, pure delay: z^2 - (1 + mu) z + mu + a has |z|^2 = mu + a, so a* = 1 - mu
    assert _edge(mu, 0.0, 1) == (pytest.approx(1.0 - mu, rel=1e-8), True)
    # d = 0 (on-policy heavy ball): the root reaches z = -1 at the bound 2(1 + mu)
    a0, _ = _edge(mu, 0.4, 0)
    assert a0 == pytest.approx(2.0 * (1.0 + mu), rel=1e-12)
    # pure delay, any lag: the semi-closed form of bandit-findings.md section 4
    for lag in (2, 5, 13, 32):
        a, ok = _edge(mu, 0.0, lag)
        assert ok
        assert a == pytest.approx(_pure_delay_sliding_rate(lag, mu), rel=1e-9)


def test_no_delay_is_the_on_policy_bound() -> None:
    # K_c / K = 1: D(z) = z^d, the lag drops out and heavy ball's edge 2(1 + mu) is all
    mu = np.array([0.0, 0.5, 0.9, 0.99])
    a, ok = sliding_edge(mu, np.ones(4), np.array([1, 4, 16, 32]))
    assert np.allclose(a, 2.0 * (1.0 + mu), rtol=1e-12) and ok.all()


@pytest.mark.parametrize("rc", [-0.2, 0.0, 0.6, 2.5])
def test_against_a_dense_scan_of_the_rate_axis(rc: float) -> None:
    """The first unstable point of a 1e-3-step scan lies within one step above the edge."""
    rng = np.random.default_rng(3)
    n = 30
    mu, lag = rng.uniform(0.0, 0.95, n), rng.integers(0, 33, n)
    a, ok = sliding_edge(mu, np.full(n, rc), lag)
    assert ok.all()
    for m, g, edge in zip(mu, lag, a, strict=True):
        grid = np.geomspace(1e-4, 2.0 * (1.0 + m), 10_000)  # ratio 1.001 per step
        st = sliding_stable(grid, m, rc, g) & (grid < 2.0 * (1.0 + m))
        first = grid[np.argmin(st)] if not st.all() else 2.0 * (1.0 + m)
        assert edge <= first <= edge * 1.0011, (m, g)


def test_finds_a_narrow_band_that_the_scan_steps_over() -> None:
    # mu = 0.797, d = 18, K_c/K = 2.5: unstable on [0.0503, 0.0608], stable again up to 0.0882;
    # the 48-point scan + bisection misses the band and returns 0.0882
    mu, rc, d = 0.797377025604652, 2.5, 18
    edge, ok = _edge(mu, rc, d)
    assert ok and edge == pytest.approx(0.050264, rel=1e-4)
    assert not sliding_stable(0.055, mu, rc, d)
    _, rho, _ = _sliding_roots_batch(np.array([0.055]), np.array([mu]), np.array([rc]),
                                     np.array([d]))
    assert rho[0] > 1.0  # the eigenvalues agree: a root is outside inside the band
    scanned = _first_edge(np.array([mu]), np.array([d]), np.array([rc]), "sliding", 1.0)
    assert scanned[0] == pytest.approx(0.0882, rel=1e-2)
    assert critical_rate(mu, d, current_fraction=rc, refresh_scheme="sliding") == \
        pytest.approx(edge, rel=1e-12)


def test_agrees_with_the_scan_where_there_is_no_band() -> None:
    rng = np.random.default_rng(7)
    n = 3000
    mu, lag = rng.uniform(0.0, 0.95, n), rng.integers(0, 33, n)
    rc = rng.choice([-0.2, 0.0, 0.6, 2.5], n)
    a, ok = sliding_edge(mu, rc, lag)
    scanned = _first_edge(mu, lag, rc, "sliding", 1.0, fast=True)
    rel = np.abs(a / scanned - 1.0)
    assert ok.mean() > 0.99
    # where they differ, the locus found an unstable band below the scan's edge (never above)
    far = np.flatnonzero(ok & (rel > 1e-4))
    assert far.size <= 0.005 * n
    assert (a[far] < scanned[far]).all()
    assert not sliding_stable(a[far] * (1 + 1e-4), mu[far], rc[far], lag[far]).any()
    assert np.median(rel[ok]) < 1e-5


def test_vectorised_equals_elementwise() -> None:
    rng = np.random.default_rng(5)
    n = 40
    mu, lag, rc = rng.uniform(0.0, 0.95, n), rng.integers(0, 33, n), rng.uniform(-0.5, 3.0, n)
    a, ok = sliding_edge(mu, rc, lag)
    one = [_edge(m, r, g) for m, r, g in zip(mu, rc, lag, strict=True)]
    assert np.array_equal(a, [x for x, _ in one]) and np.array_equal(ok, [y for _, y in one])


def test_unconfirmed_configurations_fall_back_to_the_scan() -> None:
    # near mu = 1 the Schur-Cohn check loses its resolution: `critical_rate` must still answer
    mu = 1.0 - np.array([1.4e-6, 1.5e-6])
    lag = np.array([26, 32])
    _, ok = sliding_edge(mu, np.zeros(2), lag)
    out = critical_rate(mu, lag, refresh_scheme="sliding")
    assert np.isfinite(out).all() and (out > 0).all()
    assert not ok.all()  # (what this test is about: the fallback path runs)


@pytest.mark.parametrize(("args", "kwargs", "error", "match"), [
    ((1.0, 4), {}, ValueError, r"`momentum` must be a finite number in \[0, 1\), got 1"),
    ((-0.5, 4), {}, ValueError, r"`momentum` must be a finite number in \[0, 1\)"),
    ((float("nan"), 4), {}, ValueError, r"`momentum` must be a finite number"),
    ((0.5, -3), {}, ValueError, r"`lag` must be a finite number in \[1, inf\].*K_ref"),
    ((0.5, 0), {}, ValueError, r"`lag` must be a finite number in \[1, inf\]"),
    ((0.5, -1), {"refresh_scheme": "sliding"}, ValueError, r"\[0, inf\].*sliding lag"),
    ((0.5, 2.5), {}, ValueError, r"`lag` must be a whole number.*got 2.5"),
    ((0.5, 4), {"current_fraction": float("inf")}, ValueError, r"`current_fraction`"),
    (("0.5", 4), {}, TypeError, r"`momentum` must be a real number"),
])
def test_critical_rate_rejects_bad_input(args: tuple, kwargs: dict, error: type,
                                          match: str) -> None:
    with pytest.raises(error, match=match):
        critical_rate(*args, **kwargs)


def test_closed_form_rate_checks_and_keeps_lag_zero() -> None:
    from advisor.stability import closed_form_rate

    assert closed_form_rate(0.5, [0, 2]).tolist() == [np.inf, 0.25]  # on-policy: no bound
    with pytest.raises(ValueError, match=r"`lag` must be a finite number in \[0, inf\]"):
        closed_form_rate(0.5, -2)
    with pytest.raises(ValueError, match=r"`momentum` must be a finite number in \[0, 1\)"):
        closed_form_rate(1.2, 2)
