"""`StableRegionSampler` in the Optuna setups users run: every kind of base sampler, wrappers,
conditional spaces, discrete learning rates, pickling and sampler reuse."""

from __future__ import annotations

import math
import pickle
import warnings
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
from optuna.trial import TrialState
from test_sampler import SPACE
from test_sampler import EdgeModel
from test_sampler import objective
from test_sampler import top_of

from advisor.exceptions import AdvisorWarning
from advisor.sampler import FRACTION_KEY
from advisor.sampler import StableRegionSampler
from advisor.sampler import _View


optuna.logging.set_verbosity(optuna.logging.WARNING)
M = math.exp(-0.1)  # the default safety margin's factor on the edge
KNOBS = {"momentum": SPACE["momentum"], "steps_per_generation": SPACE["steps_per_generation"]}


class SgdOnly(EdgeModel):
    """Like `advisor.StabilityModel` built from an SGD pilot: any other optimizer is an error."""

    def assess_many(self, p: Any, *, details: bool = False) -> dict[str, Any]:
        if "optim" in p and np.any(np.asarray(p["optim"]) != "sgd"):
            raise ValueError("`optimizer` must be 'sgd' (the optimizer K was measured with)")
        return super().assess_many(p, details=details)


def conditional(trial: optuna.Trial) -> float:
    """momentum exists only under optim="sgd"; the learning rate is suggested last."""
    optim = trial.suggest_categorical("optim", ["sgd", "adamw_torch"])
    if optim == "sgd":
        trial.suggest_float("momentum", 0.0, 0.95)
    return math.log(trial.suggest_float("learning_rate", 1e-6, 1e-1, log=True))


COND_SPACE = {"optim": CategoricalDistribution(["sgd", "adamw_torch"]),
              "momentum": SPACE["momentum"], "learning_rate": SPACE["learning_rate"]}


# ------------------------------------------------------------------------- relative samplers
def test_gp_with_a_conditional_knob_in_the_search_space() -> None:
    # GPSampler reads every parameter of the space it is given from every completed trial: a
    # knob that AdamW trials lack must not be forced into it (it raised KeyError('momentum'))
    sampler = StableRegionSampler(model=EdgeModel(), search_space=COND_SPACE, seed=0,
                                  base_sampler=optuna.samplers.GPSampler(
                                      seed=0, n_startup_trials=3, warn_independent_sampling=False))
    study = optuna.create_study(sampler=sampler, direction="maximize")
    study.optimize(conditional, n_trials=7)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert {t.params["optim"] for t in study.trials} == {"sgd", "adamw_torch"}
    assert all(t.user_attrs["advisor:in_region"] for t in study.trials)


def test_gp_with_hand_made_trials_that_lack_a_knob() -> None:
    study = optuna.create_study(direction="maximize", sampler=StableRegionSampler(
        model=EdgeModel(), search_space=SPACE, seed=0,
        base_sampler=optuna.samplers.GPSampler(seed=0, n_startup_trials=2)))
    for lr in (1e-4, 1e-3, 1e-2):
        study.add_trial(optuna.create_trial(
            params={"learning_rate": lr, "momentum": 0.5, "steps_per_generation": 2},
            distributions=SPACE, value=math.log(lr)))
    study.add_trial(optuna.create_trial(params={"learning_rate": 1e-3},
                                        distributions={"learning_rate": SPACE["learning_rate"]},
                                        value=-7.0))
    study.optimize(objective, n_trials=3)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    for t in study.trials[4:]:
        assert t.params["learning_rate"] <= top_of(t.params) * M * (1 + 1e-9)


@pytest.mark.parametrize("with_space", [True, False])
def test_conditional_knob_suggested_after_the_relative_sample_bounds_the_rate(
        with_space: bool) -> None:
    # without search_space momentum is not in the relative space (it is conditional): the rate
    # was placed for momentum = 0 while the trial ran at its real momentum
    sampler = StableRegionSampler(model=EdgeModel(), seed=0, online_update=False, alpha=None,
                                  search_space=COND_SPACE if with_space else None,
                                  base_sampler=optuna.samplers.TPESampler(
                                      seed=0, n_startup_trials=2, multivariate=True))
    study = optuna.create_study(sampler=sampler, direction="maximize")
    with warnings.catch_warnings():
        warnings.simplefilter("error", AdvisorWarning)
        study.optimize(conditional, n_trials=25)
    sgd = [t for t in study.trials if t.params["optim"] == "sgd"]
    assert len(sgd) >= 5
    for t in study.trials:
        assert t.params["learning_rate"] <= top_of(t.params) * M * (1 + 1e-9), t.params
        assert t.user_attrs["advisor:lr_max_model"] == pytest.approx(top_of(t.params), rel=1e-12)


# ------------------------------------------------------------------------- enumerating samplers
def test_grid_sampler_over_the_knobs_places_the_rate_at_each_grid_point() -> None:
    # GridSampler enumerates the knobs; each grid point gets its predicted-fastest stable rate
    # (the cap: the stand-in's time constant falls with the rate); the study stops when the
    # grid is exhausted (the base's study.stop() must reach the study being optimised)
    grid = {"momentum": [0.0, 0.5], "steps_per_generation": [1, 4]}
    sampler = StableRegionSampler(model=EdgeModel(), search_space=SPACE, seed=0, alpha=None,
                                  base_sampler=optuna.samplers.GridSampler(grid, seed=0))
    study = optuna.create_study(sampler=sampler, direction="maximize")
    study.optimize(objective, n_trials=20)
    assert len(study.trials) == 4
    assert {(t.params["momentum"], t.params["steps_per_generation"])
            for t in study.trials} == {(0.0, 1), (0.0, 4), (0.5, 1), (0.5, 4)}
    for t in study.trials:
        assert t.params["learning_rate"] == pytest.approx(top_of(t.params) * M, rel=1e-9)
        assert t.user_attrs["advisor:in_region"] is True


def test_grid_sampler_with_the_learning_rate_in_its_grid_is_rejected() -> None:
    grid = {"momentum": [0.0], "learning_rate": [1e-4, 1e-2]}
    with pytest.raises(ValueError, match="must not be a GridSampler whose grid holds "
                                         "'learning_rate'.*remove 'learning_rate' from the grid"):
        StableRegionSampler(model=EdgeModel(), base_sampler=optuna.samplers.GridSampler(grid))


@pytest.mark.parametrize("lr_step", [None, 1e-3])
def test_brute_force_sampler_enumerates_the_knobs(lr_step: float | None) -> None:
    def small(trial: optuna.Trial) -> float:
        trial.suggest_categorical("momentum", [0.0, 0.5])
        trial.suggest_int("steps_per_generation", 1, 3)
        return trial.suggest_float("learning_rate", 1e-3, 1e-1, step=lr_step)

    sampler = StableRegionSampler(model=EdgeModel(), seed=0, alpha=None,
                                  base_sampler=optuna.samplers.BruteForceSampler(seed=0))
    study = optuna.create_study(sampler=sampler, direction="maximize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.optimize(small, n_trials=30)
    combos = [(t.params["momentum"], t.params["steps_per_generation"]) for t in study.trials]
    assert sorted(combos) == sorted((m, s) for m in (0.0, 0.5) for s in (1, 2, 3))
    for t in study.trials:
        lr = t.params["learning_rate"]
        assert lr <= top_of(t.params) * M * (1 + 1e-9)
        assert t.user_attrs["advisor:in_region"] is True
        if lr_step is not None:  # on the declared grid
            assert abs(lr / lr_step - round(lr / lr_step)) < 1e-6


# ------------------------------------------------------------------------- wrappers
def test_partial_fixed_sampler_around_it_bounds_the_rate_for_the_fixed_knob() -> None:
    # PartialFixedSampler removes momentum from the relative space: the rate must still be
    # bounded for momentum = 0.9 (it was bounded for the default, momentum = 0: 10x too high)
    inner = StableRegionSampler(model=EdgeModel(), search_space=SPACE, seed=0, alpha=None,
                                online_update=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.PartialFixedSampler({"momentum": 0.9}, inner)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    study.optimize(objective, n_trials=12)
    for t in study.trials:
        assert t.params["momentum"] == 0.9
        assert t.params["learning_rate"] <= top_of(t.params) * M * (1 + 1e-9), t.params
        assert t.user_attrs["advisor:lr_max_model"] == pytest.approx(top_of(t.params), rel=1e-12)


def test_partial_fixed_base_sampler_keeps_its_values_in_the_guided_trial() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        base = optuna.samplers.PartialFixedSampler({"momentum": 0.3},
                                                   optuna.samplers.TPESampler(seed=0))
    sampler = StableRegionSampler(model=EdgeModel(), search_space=SPACE, seed=0,
                                  base_sampler=base)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    study.optimize(objective, n_trials=6)
    assert [t.params["momentum"] for t in study.trials] == [0.3] * 6
    assert all(t.user_attrs["advisor:in_region"] for t in study.trials)


# ------------------------------------------------------------------------- define-by-run order
def test_rate_suggested_before_the_knobs_warns_and_records_the_knobs_it_ran_with() -> None:
    def rate_first(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("learning_rate", 1e-6, 1e-1, log=True)
        trial.suggest_float("momentum", 0.0, 0.95)
        trial.suggest_int("steps_per_generation", 1, 16)
        return math.log(lr)

    study = optuna.create_study(sampler=StableRegionSampler(model=EdgeModel(), seed=0),
                                direction="maximize")
    with pytest.warns(AdvisorWarning, match=r"\['momentum', 'steps_per_generation'\] of trial 0 "
                                            "were not known when its learning rate was placed"):
        study.optimize(rate_first, n_trials=1)
    t = study.trials[0]  # bounded with the defaults (momentum 0, one step per generation)
    assert t.user_attrs["advisor:lr_max_model"] == pytest.approx(top_of(t.params), rel=1e-12)
    assert t.user_attrs["advisor:in_region"] is (
        t.params["learning_rate"] <= t.user_attrs["advisor:lr_upper"] * (1 + 1e-9))
    assert t.user_attrs["advisor:margin"] == pytest.approx(
        math.log(top_of(t.params) / t.params["learning_rate"]), rel=1e-9)


def test_failed_trial_before_the_rate_is_not_reported_as_a_space_without_it() -> None:
    def fails(trial: optuna.Trial) -> float:
        trial.suggest_float("momentum", 0.0, 0.95)
        raise RuntimeError("out of memory")

    study = optuna.create_study(sampler=StableRegionSampler(model=EdgeModel(), seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", AdvisorWarning)
        study.optimize(fails, n_trials=2, catch=(RuntimeError,))
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 2


# ------------------------------------------------------------------------- the rate's distribution
@pytest.mark.parametrize("with_space", [True, False])
def test_linear_rate_from_zero(with_space: bool) -> None:
    # suggest_float("learning_rate", 0.0, 0.1): the model's grid starts 6 decades below the
    # top; it warned "float division by zero" and left the rate unconstrained
    space = {**KNOBS, "learning_rate": FloatDistribution(0.0, 0.1)}

    def linear(trial: optuna.Trial) -> float:
        trial.suggest_float("momentum", 0.0, 0.95)
        trial.suggest_int("steps_per_generation", 1, 16)
        return trial.suggest_float("learning_rate", 0.0, 0.1)

    sampler = StableRegionSampler(model=EdgeModel(), seed=0, alpha=None,
                                  search_space=space if with_space else None)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    with warnings.catch_warnings():
        warnings.simplefilter("error", AdvisorWarning)
        study.optimize(linear, n_trials=10)
    for t in study.trials:
        upper = top_of(t.params) * M
        assert t.params["learning_rate"] <= upper * (1 + 1e-9)
        assert t.user_attrs["advisor:in_region"] is True
        u = t.user_attrs[FRACTION_KEY]  # linear map from 0: eta = u * upper
        assert t.params["learning_rate"] == pytest.approx(u * upper, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("dist", [
    CategoricalDistribution([1e-4, 1e-3, 1e-2, 3e-2, 1e-1]),
    IntDistribution(1, 100),
])
def test_discrete_rate_is_kept_under_the_cap(dist: Any) -> None:
    # an int or categorical rate is not reparametrised (the base learns on it): a value above
    # the cap moves to the largest value under it
    x = 0.05 if isinstance(dist, CategoricalDistribution) else 50.0

    def discrete(trial: optuna.Trial) -> float:
        trial.suggest_float("momentum", 0.0, 0.95)
        trial.suggest_int("steps_per_generation", 1, 16)
        if isinstance(dist, CategoricalDistribution):
            return trial.suggest_categorical("learning_rate", dist.choices)
        return trial.suggest_int("learning_rate", dist.low, dist.high)

    sampler = StableRegionSampler(model=EdgeModel(x=x), seed=0, alpha=None,
                                  online_update=False,
                                  base_sampler=optuna.samplers.RandomSampler(seed=0))
    study = optuna.create_study(sampler=sampler, direction="maximize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AdvisorWarning)  # "no stable value" for some knobs
        study.optimize(discrete, n_trials=30)
    values = (list(dist.choices) if isinstance(dist, CategoricalDistribution) else
              list(range(dist.low, dist.high + 1)))
    for t in study.trials:
        cap = top_of(t.params, x) * M
        stable = [v for v in values if v <= cap * (1 + 1e-9)]
        lr = t.params["learning_rate"]
        if stable:
            assert lr <= cap * (1 + 1e-9), (t.params, cap)
            assert t.user_attrs["advisor:in_region"] is True
        else:
            assert lr == min(values) and t.user_attrs["advisor:in_region"] is False
        assert t.user_attrs["advisor:lr_max_model"] == pytest.approx(top_of(t.params, x))
    # the base learns on the rate itself, not on a stability coordinate
    seen = _View(study, sampler).get_trials()
    assert all("learning_rate" in t.params and FRACTION_KEY not in t.params for t in seen)


def test_guided_trial_skips_knob_combinations_the_model_rejects() -> None:
    sampler = StableRegionSampler(model=SgdOnly(), search_space=COND_SPACE, seed=0)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        study.optimize(conditional, n_trials=1)
    assert not [w for w in seen if "could not pick the predicted-fastest" in str(w.message)]
    first = study.trials[0]
    assert first.user_attrs["advisor:guided"] is True and first.params["optim"] == "sgd"


def test_guided_trial_rate_lies_on_the_declared_step_grid() -> None:
    space = {**KNOBS, "learning_rate": FloatDistribution(1e-3, 5e-2, step=1e-3)}

    def stepped(trial: optuna.Trial) -> float:
        trial.suggest_float("momentum", 0.0, 0.95)
        trial.suggest_int("steps_per_generation", 1, 16)
        return trial.suggest_float("learning_rate", 1e-3, 5e-2, step=1e-3)

    for with_space in (True, False):
        sampler = StableRegionSampler(model=EdgeModel(), seed=0,
                                      search_space=space if with_space else None)
        study = optuna.create_study(sampler=sampler, direction="maximize")
        study.optimize(stepped, n_trials=1)
        lr = study.trials[0].params["learning_rate"]
        assert study.trials[0].user_attrs["advisor:guided"] is True
        assert abs(lr / 1e-3 - round(lr / 1e-3)) < 1e-9, lr


# ------------------------------------------------------------------------- state
def test_sampler_and_study_pickle_after_use() -> None:
    sampler = StableRegionSampler(model=EdgeModel(), search_space=SPACE, seed=0)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    study.optimize(objective, n_trials=4)
    loaded = pickle.loads(pickle.dumps(sampler))
    study.sampler = loaded
    study.optimize(objective, n_trials=2)
    again = pickle.loads(pickle.dumps(study))
    again.optimize(objective, n_trials=2)
    assert len(again.trials) == 8
    assert all(t.user_attrs["advisor:in_region"] for t in again.trials)
    assert loaded._refresh(study).n_finished == 6  # the caches were rebuilt from the storage


def test_sampler_reused_for_a_second_study_with_the_same_study_id() -> None:
    # two in-memory studies both have study id 0: the second must not inherit the first's
    # intersection search space (it did: only learning_rate was left of it)
    sampler = StableRegionSampler(model=EdgeModel(), seed=0)
    first = optuna.create_study(sampler=sampler, direction="maximize")
    first.optimize(objective, n_trials=3)

    def generations(trial: optuna.Trial) -> float:
        trial.suggest_categorical("num_generations", [2, 4, 8])
        return math.log(trial.suggest_float("learning_rate", 1e-6, 1e-1, log=True))

    second = optuna.create_study(sampler=sampler, direction="maximize")
    assert first._study_id == second._study_id
    second.optimize(generations, n_trials=3)
    space = sampler.infer_relative_search_space(second, second.ask()._cached_frozen_trial)
    assert set(space) == {"num_generations", "learning_rate"}


def test_non_numeric_categorical_rate_warns_that_it_is_not_constrained() -> None:
    def strings(trial: optuna.Trial) -> float:
        trial.suggest_float("momentum", 0.0, 0.95)
        return float(trial.suggest_categorical("learning_rate", ["1e-4", "1e-3"]))

    study = optuna.create_study(sampler=StableRegionSampler(model=EdgeModel(), seed=0))
    with pytest.warns(AdvisorWarning, match="`learning_rate` must take numbers >= 0 to be kept "
                                            "inside the stable region"):
        study.optimize(strings, n_trials=2)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


@pytest.mark.parametrize("make", [
    lambda c: optuna.samplers.TPESampler(seed=0, constraints_func=c, n_startup_trials=2),
    lambda c: optuna.samplers.NSGAIISampler(seed=0, constraints_func=c, population_size=4),
])
def test_base_constraints_func_sees_the_learning_rate(make: Any) -> None:
    # the base's after_trial got the trial with learning_rate replaced by the coordinate, so a
    # constraints_func reading trial.params["learning_rate"] raised KeyError
    def constraints(t: optuna.trial.FrozenTrial) -> list[float]:
        return [t.params["learning_rate"] - 1e-3]

    sampler = StableRegionSampler(model=EdgeModel(), search_space=SPACE, seed=0,
                                  base_sampler=make(constraints))
    study = optuna.create_study(sampler=sampler, direction="maximize")
    study.optimize(objective, n_trials=5)
    for t in study.trials:
        assert list(t.system_attrs["constraints"]) == [t.params["learning_rate"] - 1e-3]
