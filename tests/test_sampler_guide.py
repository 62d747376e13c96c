"""The guided first trial: fastest predicted rate first, then the model's measured conditions."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution

from advisor import StableRegionSampler


class Model:
    """eta_max = 0.01 / spg; tau = 1 / (10 lr): blind to num_generations and adam_beta1."""

    def __init__(self, defaults: dict[str, Any] | None) -> None:
        if defaults is not None:
            self.defaults = defaults

    def assess(self, p: dict[str, Any]) -> SimpleNamespace:
        spg = p.get("steps_per_generation", 1)
        return SimpleNamespace(max_learning_rate=0.01 / spg, probability=0.99,
                               regime="monotone", damping_ratio=1.0,
                               time_constant=1.0 / (10.0 * p["learning_rate"]))


SPACE = {"adam_beta1": FloatDistribution(0.0, 0.95),
         "steps_per_generation": IntDistribution(1, 16),
         "num_generations": CategoricalDistribution((2, 4, 8, 16)),
         "learning_rate": FloatDistribution(1e-6, 1e-1, log=True)}


def _guided(defaults: dict[str, Any] | None) -> dict[str, Any]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = StableRegionSampler(model=Model(defaults), search_space=SPACE, seed=0,
                                  safety_margin=0.0, alpha=None)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    trial = study.ask(SPACE)
    assert study.trials[0].user_attrs.get("advisor:guided") is True
    return trial.params


def test_ties_go_to_the_conditions_the_model_was_measured_at() -> None:
    params = _guided({"num_generations": 8, "adam_beta1": 0.9})
    assert params["num_generations"] == 8
    assert params["adam_beta1"] == 0.9  # the reference value joins the guide grid
    assert params["steps_per_generation"] == 1  # the rate decides first: spg 1 has the top cap
    assert abs(params["learning_rate"] - 0.01) < 1e-9


def test_a_reference_out_of_range_or_absent_keeps_the_first_grid_point() -> None:
    params = _guided({"num_generations": 8, "adam_beta1": 0.99})  # beta1 outside the range
    assert params["num_generations"] == 8
    assert params["adam_beta1"] == 0.95  # nearest grid level to 0.99
    params = _guided(None)  # a model without defaults: the first combination, as before
    assert params["num_generations"] == 2 and params["adam_beta1"] == 0.0


def test_a_faster_combination_beats_the_reference() -> None:
    params = _guided({"num_generations": 8, "steps_per_generation": 4})
    assert params["steps_per_generation"] == 1  # 4x higher cap, so 4x faster: not a tie
    assert params["num_generations"] == 8
