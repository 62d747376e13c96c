"""The theory layer without a known bandit (what a real TRL run gets): on-policy momentum factor.

On-policy the exact linear test over-predicted the bandit's edge at high momentum (mu = 0.9:
1.36x on the 2-arm reference, 1.95x on the hard prompt): false-safe. `momentum_factor` divides
it by the measured over-prediction (nodes from a build set of 2-arm problems; seed-23 hard
prompts held out).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.special import ndtr

from advisor.bandit import BanditProblem
from advisor.bandit import empirical_threshold
from advisor.bandit import jacobian_stiffness
from advisor.stability import StabilityModel
from advisor.stability._nonlinear import momentum_factor


def _model(problem: BanditProblem, **kw: object) -> StabilityModel:
    k, kc, ko = jacobian_stiffness(problem)
    est = SimpleNamespace(stiffness=k, stiffness_current=kc, stiffness_sampler=ko, std_error=0.0)
    return StabilityModel(est, horizon_steps=2000, **kw)


@pytest.mark.parametrize(
    ("problem", "was"),
    [(BanditProblem.reference(), 1.36), (BanditProblem.hard_prompt(), 1.95),
     # held out (not used to build the factor): seed-23 hard prompt #0 and #2
     (BanditProblem(rewards=[0.0, 1.0], ref_probs=[0.8940689437279099, 0.10593105627209005],
                    beta=2.1899198754634823), 1.84),
     (BanditProblem(rewards=[0.0, 1.0], ref_probs=[0.9077278678105876, 0.09227213218941248],
                    beta=3.568018605125865), 1.95)])
def test_on_policy_high_momentum_is_no_longer_false_safe(problem: BanditProblem,
                                                         was: float) -> None:
    model = _model(problem)
    truth = float(empirical_threshold(problem, momentum=0.9, refresh_interval=1,
                                      n_steps=2000)[0])
    linear = float(model.max_learning_rate(momentum=0.9, refresh_interval=1, method="exact"))
    bound = float(model.max_learning_rate(momentum=0.9, refresh_interval=1))
    assert linear / truth == pytest.approx(was, abs=0.02)  # the false-safe linear test
    assert bound < truth
    assert bound == pytest.approx(linear / 2.36, rel=1e-12)


def test_factor_values_and_scope() -> None:
    mu = np.array([0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99])
    on = momentum_factor(mu, np.ones(7, int), scheme="piecewise")
    np.testing.assert_allclose(on[:6], [1.0, 1.30, 1.30, 1.44, 2.36, 2.70])
    # beyond 0.95 along the last segment in decades of 1 / (1 - mu)
    assert on[6] == pytest.approx(2.70 + 0.34 * math.log10(5) / math.log10(2), rel=1e-12)
    np.testing.assert_array_equal(momentum_factor(mu, np.zeros(7, int), scheme="sliding"), on)
    np.testing.assert_array_equal(momentum_factor(mu, np.full(7, 2), scheme="piecewise"), 1.0)
    np.testing.assert_array_equal(momentum_factor(mu, np.ones(7, int), scheme="sliding"), 1.0)
    between = momentum_factor(np.linspace(0.0, 0.999, 500), np.ones(500, int),
                              scheme="piecewise")
    assert np.all(np.diff(between) >= 0)


def test_lagged_and_zero_momentum_bounds_are_unchanged() -> None:
    model = _model(BanditProblem.reference())
    kw = dict(momentum=[0.0, 0.3, 0.9, 0.0], refresh_interval=[1, 4, 3, 0])
    for scheme in ("piecewise", "sliding"):
        if scheme == "piecewise":
            kw["refresh_interval"] = [1, 4, 3, 2]
        exact = model.max_learning_rate(**kw, refresh_scheme=scheme, method="exact")
        theory = model.max_learning_rate(**kw, refresh_scheme=scheme)
        want = exact.copy()
        if scheme == "piecewise":
            want[2] /= 2.5  # the safety factor: K_ref > 1, mu >= 0.5
        np.testing.assert_allclose(theory, want, rtol=1e-12)


def test_verdict_names_the_factor_and_widens_its_uncertainty() -> None:
    model = _model(BanditProblem.reference())
    v = model.assess({"learning_rate": 3.5, "momentum": 0.9, "optim": "sgd"})
    assert v.layer == "theory" and not v.stable
    assert "momentum factor 2.36" in v.reason
    sigma = math.hypot(0.05, 0.5 * math.log(2.36))
    assert v.probability == pytest.approx(float(ndtr(v.margin / sigma)), rel=1e-9)
    off = _model(BanditProblem.reference(), nonlinear_check=False)
    assert off.assess({"learning_rate": 3.5, "momentum": 0.9, "optim": "sgd"}).stable
    on_policy = {"learning_rate": 1.0, "momentum": 0.0, "optim": "sgd"}
    assert model.assess(on_policy).reason.startswith("exact linear test (")
