"""`critical_rate` (piecewise refresh) at very long refresh intervals, against oracles.

Up to K_ref = 1e8 the plain Floquet product was right; at 1e9 and beyond the per-step tolerance
|lambda|^(1/K_ref) < 1 - 1e-12 called every stable multiplier unstable (K_ref 1e10, mu 0: 1e-13
for 2e-10), and 1 + mu - eta K_c lost eta K_c to rounding (1e-4 relative at 1e12).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from advisor.stability import critical_rate
from advisor.stability._theory import _affine_compose
from advisor.stability._theory import _piecewise_pair
from advisor.stability._theory import _piecewise_pair_long


LAGS = [10**3, 10**5, 10**6, 10**8, 10**9, 10**10, 10**12]


def _mu0_edge(rc: float, lag: int) -> float:
    """Exact mu = 0 edge, log domain: lambda = ((1 - a rc)^K - (1 - rc)) / rc reaches -1."""
    if rc == 0.0:
        return 2.0 / lag
    return math.expm1(math.log1p(-2.0 * rc) / lag) / -rc


@pytest.mark.parametrize("rc", [0.0, 0.2, -0.3])
def test_mu0_matches_the_closed_form_up_to_1e12(rc: float) -> None:
    got = critical_rate(0.0, LAGS, current_fraction=rc, rtol=1e-9)
    want = np.array([_mu0_edge(rc, k) for k in LAGS])
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize(("mu", "rc"), [(0.5, 0.0), (0.5, 0.2), (0.9, -0.3), (0.9, 0.2)])
def test_asymptote_at_1e12(mu: float, rc: float) -> None:
    # eta K_ref / (1 - mu) is the per-period step: a* K_ref -> (1 - mu) ln(1/(1 - 2 rc)) / rc
    # (2 (1 - mu) for a pure delay), with O(1/K_ref) corrections
    limit = 2.0 * (1.0 - mu) if rc == 0.0 else (1.0 - mu) * -math.log1p(-2.0 * rc) / rc
    got = float(critical_rate(mu, 10**12, current_fraction=rc, rtol=1e-9)[()]) * 1e12
    assert got == pytest.approx(limit, rel=1e-6)


def _mp_edge(mu: float, rc: float, lag: int) -> float:
    """First a with |lambda| >= 1, the monodromy in 50-digit arithmetic (scan + bisection)."""
    mp = pytest.importorskip("mpmath").mp
    mp.dps = 50
    one, zero = mp.mpf(1), mp.mpf(0)

    def radius(a: object) -> object:
        base = (1 + mp.mpf(mu) - a * rc, -mp.mpf(mu), one, zero, -a * (1 - mp.mpf(rc)), zero)
        acc, k = None, lag
        while k:
            if k & 1:
                acc = base if acc is None else _affine_compose(acc, base)
            k >>= 1
            if k:
                base = _affine_compose(base, base)
        m00, m01, m10, m11 = acc[0] + acc[4], acc[1], acc[2] + acc[5], acc[3]
        tr, det = m00 + m11, m00 * m11 - m01 * m10
        d = mp.sqrt(mp.mpc(tr * tr - 4 * det))
        return max(abs((tr + d) / 2), abs((tr - d) / 2))

    lo = None
    for j in range(-40, 41):
        hi = mp.mpf(10) ** (mp.mpf(j) / 20) / lag
        if radius(hi) >= 1:
            break
        lo = hi
    assert lo is not None
    for _ in range(45):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if radius(mid) >= 1 else (mid, hi)
    return float(hi)


@pytest.mark.parametrize(("mu", "rc"), [(0.5, 0.2), (0.9, -0.3), (0.8, 0.0)])
def test_momentum_matches_high_precision_oracle(mu: float, rc: float) -> None:
    lags = [10**4, 10**9, 10**12]
    got = critical_rate(mu, lags, current_fraction=rc, rtol=1e-9)
    want = np.array([_mp_edge(mu, rc, k) for k in lags])
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_long_kernel_agrees_with_the_product_kernel_where_both_are_exact() -> None:
    rng = np.random.default_rng(3)
    n = 200
    mu, rc = rng.uniform(0.0, 0.95, n), rng.uniform(-1.0, 2.5, n)
    lag = rng.integers(1, 4000, n)
    a = rng.uniform(0.05, 3.0, n) * (1.0 - mu) / lag
    d_long, s_long = _piecewise_pair_long(a, mu, rc, lag)
    d_plain, s_plain = _piecewise_pair(a, mu, rc, lag)
    np.testing.assert_allclose(d_long, d_plain, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(s_long, s_plain, rtol=1e-7, atol=1e-12)


def test_edges_are_continuous_across_the_kernel_switch() -> None:
    # K_ref 4096 uses the product kernel, 4097 the long one; a* K_ref barely moves
    lags = np.array([4096, 4097])
    for mu, rc in [(0.0, 0.0), (0.9, 0.2), (0.5, 2.5), (0.8, -0.11 / 0.63)]:
        a = critical_rate(mu, lags, current_fraction=rc, rtol=1e-9) * lags
        assert a[1] == pytest.approx(a[0], rel=1e-3)
