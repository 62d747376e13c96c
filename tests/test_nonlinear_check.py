"""The simulated check of `StabilityModel` with a known bandit, against `empirical_threshold`
(regressions found on unseen instances: a too-stiff K, and the stale surrogate)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from advisor.bandit import BanditProblem
from advisor.bandit import empirical_threshold
from advisor.bandit import jacobian_stiffness
from advisor.stability import StabilityModel


def test_downward_extension_keeps_the_top_of_the_scan() -> None:
    # K 10x too stiff: the scan's bottom diverges and is extended two decades down; the edge
    # (~1.2) sits near the top of the row, which the extension used to drop ("stable" to 3.04)
    est = SimpleNamespace(stiffness=5.0, stiffness_current=12.5, stiffness_sampler=-7.5,
                          std_error=0.0)
    problem = BanditProblem.reference()
    model = StabilityModel(est, problem=problem, simulation_steps=2000)
    bound = float(model.max_learning_rate(momentum=0.9, refresh_interval=32))
    truth = float(empirical_threshold(problem, momentum=0.9, refresh_interval=32,
                                      n_steps=2000)[0])
    assert bound == pytest.approx(truth, rel=0.06)
    assert bound < 1.3  # the bandit diverges at 1.3


def test_stale_surrogate_is_simulated_when_the_bandit_is_known() -> None:
    # on-policy every surrogate is one update, and the linear test over-predicts it at mu 0.8
    problem = BanditProblem(rewards=[0.0, 1.0], ref_probs=[0.532, 0.468], beta=0.687,
                            surrogate="stale")
    k, kc, ko = jacobian_stiffness(problem)
    est = SimpleNamespace(stiffness=k, stiffness_current=kc, stiffness_sampler=ko, std_error=0.0)
    truth = float(empirical_threshold(problem, momentum=0.8, refresh_interval=1)[0])
    linear = float(StabilityModel(est).max_learning_rate(momentum=0.8, refresh_interval=1))
    checked = float(StabilityModel(est, problem=problem).max_learning_rate(momentum=0.8,
                                                                           refresh_interval=1))
    assert linear > 1.3 * truth  # what the check is for (9.97 vs 7.27)
    assert checked == pytest.approx(truth, rel=0.01)
