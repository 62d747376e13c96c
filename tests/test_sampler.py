from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
from optuna.testing.pytest_samplers import BasicSamplerTestCase
from optuna.testing.pytest_samplers import RelativeSamplerTestCase
from optuna.trial import TrialState
from scipy.stats import norm

from advisor.exceptions import AdvisorWarning
from advisor.sampler import FRACTION_KEY
from advisor.sampler import StableRegionSampler
from advisor.sampler import _map_fraction
from advisor.sampler import _View
from advisor.sampler import edge_factor


optuna.logging.set_verbosity(optuna.logging.WARNING)

SIGMA = 0.3  # log-sd of the stand-in's edge


class EdgeModel:
    """Stand-in with the StabilityModel contract and a closed-form edge.

    eta_max = X (1 - momentum) / sqrt(steps_per_generation); P(stable) = Phi(margin / SIGMA);
    zeta = (1 - momentum) / (2 sqrt(eta K)) with K = 10.
    """

    def __init__(self, x: float = 0.05) -> None:
        self.x = x
        self.estimate = SimpleNamespace(plateau=0.8)

    def _cols(self, p: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lr = np.asarray(p["learning_rate"], dtype=float)
        mu = np.broadcast_to(np.asarray(p.get("momentum", 0.0), dtype=float), lr.shape)
        spg = np.broadcast_to(np.asarray(p.get("steps_per_generation", 1), dtype=float),
                              lr.shape)
        return lr, mu, spg

    def assess_many(self, p: Any, *, details: bool = False) -> dict[str, Any]:
        lr, mu, spg = self._cols(p)
        top = self.x * (1 - mu) / np.sqrt(spg)
        margin = np.log(top / lr)
        zeta = (1 - mu) / (2 * np.sqrt(10 * lr))
        out = {"max_learning_rate": top, "margin": margin, "stable": margin > 0,
               "probability": norm.cdf(margin / SIGMA)}
        if details:
            out.update(damping_ratio=zeta, time_constant=(1 - mu) / (10 * lr),
                       regime=np.where(zeta >= 1, "monotone", "overshoot"))
        return out

    def assess(self, p: Any) -> SimpleNamespace:
        out = self.assess_many({k: np.atleast_1d(v) for k, v in p.items()}, details=True)
        return SimpleNamespace(**{k: v[0].item() for k, v in out.items()})


def top_of(params: dict[str, Any], x: float = 0.05) -> float:
    return x * (1 - params.get("momentum", 0.0)) / math.sqrt(params.get("steps_per_generation", 1))


SPACE = {
    "learning_rate": FloatDistribution(1e-6, 1e-1, log=True),
    "momentum": FloatDistribution(0.0, 0.95),
    "steps_per_generation": IntDistribution(1, 16),
}


def objective(trial: optuna.Trial) -> float:
    mu = trial.suggest_float("momentum", 0.0, 0.95)
    spg = trial.suggest_int("steps_per_generation", 1, 16)
    lr = trial.suggest_float("learning_rate", 1e-6, 1e-1, log=True)
    return math.log(lr) - 0.1 * spg - mu


# ------------------------------------------------------------------------------ conformance
class TestConformance(BasicSamplerTestCase, RelativeSamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Any:
        def make() -> StableRegionSampler:
            warnings.simplefilter("ignore", AdvisorWarning)  # "no learning_rate" notices
            return StableRegionSampler(model=EdgeModel(), seed=0)

        return make


class TestConformanceWithKnobSpace(RelativeSamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Any:
        def make() -> StableRegionSampler:
            warnings.simplefilter("ignore", AdvisorWarning)
            return StableRegionSampler(model=EdgeModel(), search_space=SPACE, seed=0)

        return make


# ------------------------------------------------------------------------------ in the region
@pytest.mark.parametrize("base", [
    None,
    optuna.samplers.RandomSampler(seed=1),
    optuna.samplers.TPESampler(seed=1, n_startup_trials=5),
    optuna.samplers.CmaEsSampler(seed=1, n_startup_trials=5),
])
@pytest.mark.parametrize("with_space", [True, False])
def test_every_trial_inside_region(base: Any, with_space: bool) -> None:
    sampler = StableRegionSampler(model=EdgeModel(), base_sampler=base, seed=0,
                                  search_space=SPACE if with_space else None, safety_margin=0.0)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    study.optimize(objective, n_trials=25)
    for t in study.trials:
        lr = t.params["learning_rate"]
        assert lr <= top_of(t.params) * (1 + 1e-9), t.params
        assert t.user_attrs["advisor:in_region"] is True
        assert t.user_attrs["advisor:learning_rate"] == lr


def test_gp_base_in_region_and_learns_the_box() -> None:
    pytest.importorskip("torch")
    sampler = StableRegionSampler(model=EdgeModel(), search_space=SPACE, seed=0,
                                  base_sampler=optuna.samplers.GPSampler(seed=0,
                                                                         n_startup_trials=4))
    study = optuna.create_study(sampler=sampler, direction="maximize")
    study.optimize(objective, n_trials=10)
    assert all(t.params["learning_rate"] <= top_of(t.params) for t in study.trials)
    # the optimum sits on the edge at spg = 1, mu = 0: GP should find u close to 1
    assert study.best_trial.user_attrs[FRACTION_KEY] > 0.8


def test_base_sampler_sees_fraction_not_learning_rate() -> None:
    sampler = StableRegionSampler(model=EdgeModel(), search_space=SPACE, seed=0)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    study.optimize(objective, n_trials=3)
    seen = _View(study, sampler).get_trials(states=(TrialState.COMPLETE,))
    for raw, t in zip(study.trials, seen, strict=True):
        assert "learning_rate" not in t.params
        assert t.params[FRACTION_KEY] == raw.user_attrs[FRACTION_KEY]
        assert t.distributions[FRACTION_KEY] == FloatDistribution(0.0, 1.0)
    assert "learning_rate" in study.trials[0].params  # the user's view is unchanged


def test_lr_is_the_declared_map_of_the_fraction() -> None:
    # known value: eta = lo (upper / lo)^u with upper = eta_max e^{-m}
    sampler = StableRegionSampler(model=EdgeModel(), search_space=SPACE, seed=3,
                                  safety_margin=0.2, alpha=None)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=8)
    for t in study.trials:
        upper = top_of(t.params) * math.exp(-0.2)
        u = t.user_attrs[FRACTION_KEY]
        expected = 1e-6 * (upper / 1e-6) ** u
        assert t.params["learning_rate"] == pytest.approx(expected, rel=1e-12)
        assert t.user_attrs["advisor:margin"] == pytest.approx(
            math.log(top_of(t.params) / expected), rel=1e-9)
        assert t.user_attrs["advisor:plateau"] == 0.8


@pytest.mark.parametrize(("u", "log", "expected"), [
    (0.0, True, 1e-6), (1.0, True, 1e-2), (0.5, True, 1e-4),
    (0.5, False, 1e-6 + 0.5 * (1e-2 - 1e-6)),
])
def test_map_fraction_known_values(u: float, log: bool, expected: float) -> None:
    dist = FloatDistribution(1e-6, 1.0, log=log)
    assert _map_fraction(u, dist, 1e-2) == pytest.approx(expected, rel=1e-12)


def test_map_fraction_respects_step() -> None:
    dist = FloatDistribution(0.0, 1.0, step=0.25)
    assert _map_fraction(1.0, dist, 0.6) == 0.5  # the largest grid point <= the bound


# ------------------------------------------------------------------------------ constraints
def test_chance_constraint_known_value() -> None:
    # P = Phi(log(top/eta) / SIGMA) >= 1 - alpha  <=>  eta <= top exp(-SIGMA z_{1-alpha})
    alpha = 0.05
    sampler = StableRegionSampler(model=EdgeModel(), search_space=SPACE, alpha=alpha,
                                  safety_margin=0.0, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=6)
    for t in study.trials:
        expected = top_of(t.params) * math.exp(-SIGMA * norm.ppf(1 - alpha))
        # probit-linear interpolation is exact for a lognormal edge (round-off only)
        assert t.user_attrs["advisor:lr_upper"] == pytest.approx(expected, rel=1e-9)
        assert t.user_attrs["advisor:p_stable"] >= 1 - alpha - 1e-9


def test_damping_floor_known_value() -> None:
    # zeta = (1 - mu) / (2 sqrt(10 eta)) >= z  <=>  eta <= (1 - mu)^2 / (40 z^2)
    sampler = StableRegionSampler(model=EdgeModel(x=10.0), search_space=SPACE,
                                  min_damping_ratio=1.0, safety_margin=0.0, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=6)
    for t in study.trials:
        expected = (1 - t.params["momentum"]) ** 2 / 40.0
        assert t.user_attrs["advisor:lr_upper"] == pytest.approx(min(0.1, expected), rel=0.01)
        assert t.user_attrs["advisor:damping_ratio"] >= 1.0 - 0.01


def test_time_constant_floor_known_value() -> None:
    # stand-in tau = (1 - mu) / (10 eta): tau <= 20  <=>  eta >= (1 - mu) / 200
    sampler = StableRegionSampler(model=EdgeModel(), search_space=SPACE, seed=0,
                                  safety_margin=0.0, max_time_constant=20.0, alpha=None)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=8)
    for t in study.trials:
        lower = (1 - t.params["momentum"]) / 200.0
        upper = top_of(t.params)
        u = t.user_attrs[FRACTION_KEY]
        if lower < upper:  # tau is a power law in eta: the log interpolation is exact
            expected = lower * (upper / lower) ** u
        else:  # nothing stable is fast enough: no floor
            expected = 1e-6 * (upper / 1e-6) ** u
        assert t.params["learning_rate"] == pytest.approx(expected, rel=1e-9)


def test_edge_bias_skews_startup_draws_to_the_edge() -> None:
    # Random never proposes (always start-up): u = U^(1/3) ~ Beta(3, 1), mean 3/4, sd 0.19;
    # 3 standard errors over 80 draws = 0.065
    sampler = StableRegionSampler(model=EdgeModel(), search_space=SPACE, edge_bias=3.0,
                                  base_sampler=optuna.samplers.RandomSampler(seed=0))
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=80)
    u = np.array([t.user_attrs[FRACTION_KEY] for t in study.trials])
    assert abs(u.mean() - 0.75) < 0.065
    assert all(t.user_attrs["advisor:in_region"] for t in study.trials)


def test_infeasible_knobs_are_repaired_not_rejected() -> None:
    # lr >= 1e-3 needs (1 - mu) / sqrt(spg) >= 0.02 e^{0.1}: mu = 0.95, spg = 16 cannot
    space = {**SPACE, "learning_rate": FloatDistribution(1e-3, 1e-1, log=True)}

    def fixed(trial: optuna.Trial) -> float:
        trial.suggest_float("momentum", 0.0, 0.95)
        trial.suggest_int("steps_per_generation", 1, 16)
        return trial.suggest_float("learning_rate", 1e-3, 1e-1, log=True)

    sampler = StableRegionSampler(model=EdgeModel(), search_space=space, seed=0,
                                  base_sampler=optuna.samplers.RandomSampler(seed=0))
    study = optuna.create_study(sampler=sampler)
    study.optimize(fixed, n_trials=30)
    for t in study.trials:
        assert t.params["learning_rate"] <= top_of(t.params) * math.exp(-0.1) * (1 + 1e-9)
        assert t.user_attrs["advisor:in_region"] is True


# ------------------------------------------------------------------------------ online update
@pytest.mark.parametrize(("ratios", "collapsed", "expected"), [
    ([], [], 1.0),
    ([0.2, 0.5, 0.9], [False, False, False], 1.0),  # agrees with the model
    ([0.2, 0.5, 0.7], [False, False, True], math.sqrt(0.5 * 0.7)),
    ([0.7], [True], 0.35),  # no stable run below: half the collapse ratio
    ([0.01, 0.25], [False, True], 0.125),  # a stable run far below does not lower it further
    ([0.5, 1.5], [False, False], 1.5),  # stable above the edge raises it
    ([0.5, 1.5, 2.0], [False, False, True], 1.5),
    ([0.3, 0.6, 0.8, 0.9], [False, True, False, False], 1.0),  # one stray collapse: 1 error
    ([1.2, 1.3], [True, True], 1.0),  # collapses above the edge agree with the model
])
def test_edge_factor_table(ratios: list[float], collapsed: list[bool], expected: float) -> None:
    assert edge_factor(ratios, collapsed) == pytest.approx(expected, rel=1e-12)


def test_edge_factor_against_brute_force(rng: np.random.Generator) -> None:
    # oracle: scan s on a fine grid; the chosen s must reach the minimum error count
    for _ in range(50):
        r = np.exp(rng.normal(0, 0.7, 12))
        y = rng.random(12) < 1 / (1 + np.exp(-4 * np.log(r / 0.8)))
        s = edge_factor(r, y)
        grid = np.exp(np.linspace(-4, 4, 20001))
        err = ((~y)[None] & (r[None] > grid[:, None])).sum(1) + \
              (y[None] & (r[None] <= grid[:, None])).sum(1)
        err_s = int(((~y) & (r > s)).sum() + (y & (r <= s)).sum())
        assert err_s == err.min()


def test_incremental_edge_factor_matches_the_batch_rule(rng: np.random.Generator) -> None:
    from advisor._sampler_evidence import _Errors

    for _ in range(20):
        errors, r, y = _Errors(), [], []
        for _ in range(40):  # one trial at a time, in arrival order, ties included
            r.append(float(np.round(np.exp(rng.normal(0, 0.7)), 1)))
            y.append(bool(rng.random() < 1 / (1 + np.exp(-4 * np.log(r[-1] / 0.8)))))
            errors.insert(r[-1], y[-1])
            assert errors.factor(1.0) == edge_factor(r, y)


def _add(study: optuna.Study, params: dict[str, Any], ratio: float, collapsed: bool) -> None:
    lr_max = top_of(params)
    study.add_trial(optuna.create_trial(
        params={**params, "learning_rate": ratio * lr_max},
        distributions=SPACE, value=0.0 if collapsed else 1.0,
        user_attrs={"advisor:lr_max_model": lr_max, "advisor:collapsed": collapsed}))


def test_collapse_inside_region_lowers_edge_across_restarts(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'online.db'}"
    study = optuna.create_study(storage=url, study_name="s", direction="maximize")
    knobs = {"momentum": 0.5, "steps_per_generation": 4}
    _add(study, knobs, 0.3, False)
    _add(study, knobs, 0.6, True)  # collapse inside the predicted-stable region
    # a fresh sampler on a reloaded study (a restart / another worker): no hidden state
    sampler = StableRegionSampler(model=EdgeModel(), search_space=SPACE, seed=0,
                                  safety_margin=0.0)
    study = optuna.load_study(study_name="s", storage=url, sampler=sampler)
    study.optimize(objective, n_trials=5)
    new = study.trials[2:]
    # the first new trial sees the bracket (0.3 stable, 0.6 collapsed): its geometric midpoint
    assert new[0].user_attrs["advisor:edge_scale"] == pytest.approx(math.sqrt(0.18), rel=1e-12)
    for t in new:  # later trials add stable evidence inside; the edge stays below the collapse
        s = t.user_attrs["advisor:edge_scale"]
        assert math.sqrt(0.18) <= s < 0.6
        assert t.params["learning_rate"] <= s * top_of(t.params) * (1 + 1e-9)


def test_stable_run_above_edge_raises_it() -> None:
    study = optuna.create_study(direction="maximize")
    _add(study, {"momentum": 0.0, "steps_per_generation": 1}, 1.5, False)
    study.sampler = StableRegionSampler(model=EdgeModel(), search_space=SPACE, seed=0)
    study.optimize(objective, n_trials=2)
    assert study.trials[-1].user_attrs["advisor:edge_scale"] == pytest.approx(1.5)


def test_pruned_for_collapse_counts_and_online_update_can_be_off() -> None:
    study = optuna.create_study(direction="maximize")
    params = {"momentum": 0.0, "steps_per_generation": 1}
    lr_max = top_of(params)
    study.add_trial(optuna.create_trial(
        params={**params, "learning_rate": 0.4 * lr_max}, distributions=SPACE,
        state=TrialState.PRUNED, intermediate_values={0: 0.1},
        user_attrs={"advisor:lr_max_model": lr_max, "advisor:prune_reason": "collapse"}))
    study.sampler = StableRegionSampler(model=EdgeModel(), search_space=SPACE, seed=0)
    study.optimize(objective, n_trials=1)
    assert study.trials[-1].user_attrs["advisor:edge_scale"] == pytest.approx(0.2)
    study.sampler = StableRegionSampler(model=EdgeModel(), search_space=SPACE, seed=0,
                                        online_update=False)
    study.optimize(objective, n_trials=1)
    assert study.trials[-1].user_attrs["advisor:edge_scale"] == 1.0


def _unit_knobs(params: dict[str, Any]) -> np.ndarray:
    """The numeric knobs in the unit box of SPACE (the local rule's coordinates)."""
    return np.array([params["momentum"] / 0.95, (params["steps_per_generation"] - 1) / 15])


def _oracle(before: list[Any], params: dict[str, Any], radius: float = 0.25,
            margin: float = 0.1) -> tuple[float, float | None]:
    """Brute-force (global, local) edge factors from the finished trials ``before``."""
    ev = []
    for t in before:
        top, lr = t.user_attrs.get("advisor:lr_max_model"), t.params.get("learning_rate")
        bad = t.user_attrs.get("advisor:collapsed") is True or \
            t.user_attrs.get("advisor:prune_reason") == "collapse"
        if top and lr and (bad or t.state == TrialState.COMPLETE):
            near = np.linalg.norm(_unit_knobs(t.params) - _unit_knobs(params)) <= radius
            ev.append((lr / top, bad, near))
    glob = edge_factor([r for r, _, _ in ev], [b for _, b, _ in ev])
    r_bad = [r for r, b, near in ev if b and near]
    if not r_bad:
        return glob, None
    r_c = min(r_bad)
    below = [r for r, b, near in ev if not b and near and r < r_c]
    if not below:
        return glob, r_c / 2
    return glob, max(r_c / 2, min(math.sqrt(r_c * max(below)), max(below) * math.exp(margin)))


def _check_against_oracle(study: optuna.Study, new: list[Any]) -> None:
    for t in new:
        before = [u for u in study.trials if u.number < t.number]
        glob, local = _oracle(before, t.params)
        assert t.user_attrs["advisor:edge_scale"] == pytest.approx(glob, rel=1e-12)
        if local is None:
            assert t.user_attrs["advisor:local_scale"] is None
        else:
            assert t.user_attrs["advisor:local_scale"] == pytest.approx(local, rel=1e-12)
        cap = min(glob, local or math.inf) * top_of(t.params) * math.exp(-0.1)
        assert t.params["learning_rate"] <= cap * (1 + 1e-9)


def test_collapse_inside_region_shrinks_its_neighbourhood_at_the_next_trial() -> None:
    # stable runs far away keep the global factor at 1 (one stray collapse is 1 error either
    # way); the collapse still caps its own neighbourhood at half its ratio at once
    study = optuna.create_study(direction="maximize")
    far = {"momentum": 0.9, "steps_per_generation": 16}
    for r in (0.5, 0.6, 0.7, 0.8):
        _add(study, far, r, False)
    x = {"momentum": 0.1, "steps_per_generation": 2}
    _add(study, x, 0.4, True)
    study.sampler = StableRegionSampler(
        model=EdgeModel(), search_space=SPACE, seed=0, alpha=None, n_guided_trials=0,
        base_sampler=optuna.samplers.RandomSampler(seed=3))
    study.enqueue_trial({**x, "learning_rate": 0.9 * top_of(x)})  # fixed: runs as given
    study.optimize(objective, n_trials=40)
    first = study.trials[5]  # the enqueued trial at x records its local cap
    assert first.user_attrs["advisor:edge_scale"] == 1.0
    assert first.user_attrs["advisor:local_scale"] == pytest.approx(0.2, rel=1e-12)
    assert first.user_attrs["advisor:in_region"] is False  # 0.9 is above the local cap
    new = study.trials[6:]
    near = [t for t in new if t.user_attrs["advisor:local_scale"] is not None]
    assert near and len(near) < len(new)  # both sides of the radius were sampled
    _check_against_oracle(study, new)


def test_no_widening_without_stable_evidence_above_the_cap() -> None:
    study = optuna.create_study(direction="maximize")
    x = {"momentum": 0.2, "steps_per_generation": 3}
    _add(study, x, 0.6, True)  # a collapse: the local factor is 0.3, the cap 0.3 e^-0.1
    for _ in range(6):  # stable runs AT the cap do not raise it
        study.sampler = StableRegionSampler(model=EdgeModel(), search_space=SPACE,
                                            alpha=None, n_guided_trials=0)
        cap = 0.3 * math.exp(-0.1) if len(study.trials) == 1 else \
            study.trials[-1].user_attrs["advisor:local_scale"] * math.exp(-0.1)
        study.enqueue_trial({**x, "learning_rate": cap * top_of(x)})
        study.optimize(objective, n_trials=1)
        assert study.trials[-1].user_attrs["advisor:local_scale"] == pytest.approx(0.3,
                                                                                  rel=1e-9)
    # a stable run between the model's cap and its edge does not raise the global factor
    study = optuna.create_study(direction="maximize")
    _add(study, x, 0.95, False)
    study.sampler = StableRegionSampler(model=EdgeModel(), search_space=SPACE, seed=0)
    study.optimize(objective, n_trials=1)
    assert study.trials[-1].user_attrs["advisor:edge_scale"] == 1.0
    # a stable run above the cap widens the local cap, but never past the midpoint
    study = optuna.create_study(direction="maximize")
    _add(study, x, 0.6, True)
    _add(study, x, 0.5, False)
    study.sampler = StableRegionSampler(model=EdgeModel(), search_space=SPACE, seed=0)
    study.enqueue_trial(x)  # the knobs of the collapse; the sampler places the rate
    study.optimize(objective, n_trials=1)
    assert study.trials[-1].params["learning_rate"] <= 0.5 * top_of(x) * (1 + 1e-9)
    assert study.trials[-1].user_attrs["advisor:local_scale"] == pytest.approx(
        min(math.sqrt(0.3), 0.5 * math.exp(0.1)), rel=1e-12)


@pytest.mark.parametrize("storage_kind", ["memory", "sqlite"])
def test_evidence_cache_sees_trials_of_another_sampler(storage_kind: str, tmp_path: Any) -> None:
    storage: Any = optuna.storages.InMemoryStorage() if storage_kind == "memory" else \
        f"sqlite:///{tmp_path / 'workers.db'}"
    ours = StableRegionSampler(model=EdgeModel(), search_space=SPACE, seed=0,
                               base_sampler=optuna.samplers.RandomSampler(seed=1))
    a = optuna.create_study(storage=storage, study_name="w", direction="maximize",
                            sampler=ours)
    a.optimize(objective, n_trials=3)  # our sampler has read and cached these
    b = optuna.load_study(study_name="w", storage=storage, sampler=StableRegionSampler(
        model=EdgeModel(), search_space=SPACE, seed=2))
    running = b.ask()  # another worker's trial (number 3), running while we sample 4 and 5
    objective(running)
    a.optimize(objective, n_trials=2)
    running.set_user_attr("advisor:prune_reason", "collapse")  # the pruner's collapse rule
    running.report(0.0, 0)
    b.tell(running, state=TrialState.PRUNED)
    x = {k: running.params[k] for k in ("momentum", "steps_per_generation")}
    _add(b, x, 0.3, True)  # and a collapse added by the other worker (number 6)
    a.optimize(objective, n_trials=6)
    new = a.trials[7:]
    _check_against_oracle(a, new)  # our cache saw both collapses and everything else
    assert a.trials[3].state == TrialState.PRUNED
    assert all(t.user_attrs["advisor:edge_scale"] == pytest.approx(_oracle(
        a.trials[:t.number], t.params)[0]) for t in new)
    # a fresh sampler (a restart) reads the same evidence from the storage
    fresh = StableRegionSampler(model=EdgeModel(), search_space=SPACE, seed=0)
    ev_old, ev_new = ours._refresh(a), fresh._refresh(a)
    assert ev_old is not None and ev_new is not None
    assert ev_old.scale() == ev_new.scale() and ev_old.n_collapsed == ev_new.n_collapsed == 2
    assert ev_old.next_number == ev_new.next_number == 13 and not ev_old.pending
    for t in a.trials:
        assert ev_old.local_scale(t.params, 0.25, 0.1) == ev_new.local_scale(t.params, 0.25,
                                                                             0.1)


def test_evidence_cache_with_threads_reads_each_trial_once() -> None:
    ours = StableRegionSampler(model=EdgeModel(), search_space=SPACE, seed=0)
    study = optuna.create_study(direction="maximize", sampler=ours)
    study.optimize(objective, n_trials=16, n_jobs=2)
    fresh = StableRegionSampler(model=EdgeModel(), search_space=SPACE, seed=0)
    ev_old, ev_new = ours._refresh(study), fresh._refresh(study)
    assert ev_old is not None and ev_new is not None
    assert ev_old.n_finished == ev_new.n_finished == 16
    assert ev_old._errors.n == ev_new._errors.n == 16


def test_evidence_large_backlog_is_read_in_bulk() -> None:
    study = optuna.create_study(direction="maximize")
    sampler = StableRegionSampler(model=EdgeModel(), search_space=SPACE, seed=0)
    study.sampler = sampler
    study.optimize(objective, n_trials=1)
    rng = np.random.default_rng(0)
    for _ in range(150):  # more than one incremental refresh reads
        knobs = {"momentum": float(rng.uniform(0, 0.95)),
                 "steps_per_generation": int(rng.integers(1, 17))}
        r = float(np.exp(rng.uniform(-3, 0.5)))
        _add(study, knobs, r, bool(r > 0.7 and rng.random() < 0.5))
    study.optimize(objective, n_trials=1)
    ev = sampler._refresh(study)
    assert ev is not None and ev.next_number == 152 and not ev.pending
    _check_against_oracle(study, study.trials[-1:])


def test_stable_run_far_below_a_collapse_does_not_narrow_the_region() -> None:
    study = optuna.create_study(direction="maximize")
    x = {"momentum": 0.2, "steps_per_generation": 3}
    _add(study, x, 0.6, True)
    _add(study, x, 0.01, False)
    study.sampler = StableRegionSampler(model=EdgeModel(), search_space=SPACE, seed=0)
    study.enqueue_trial(x)
    study.optimize(objective, n_trials=1)
    attrs = study.trials[-1].user_attrs
    assert attrs["advisor:edge_scale"] == pytest.approx(0.3, rel=1e-12)
    assert attrs["advisor:local_scale"] == pytest.approx(0.3, rel=1e-12)


def test_local_radius_none_turns_the_local_rule_off() -> None:
    study = optuna.create_study(direction="maximize")
    x = {"momentum": 0.2, "steps_per_generation": 3}
    _add(study, x, 0.6, True)
    _add(study, {"momentum": 0.9, "steps_per_generation": 16}, 0.9, False)
    _add(study, {"momentum": 0.8, "steps_per_generation": 15}, 0.9, False)
    study.sampler = StableRegionSampler(model=EdgeModel(), search_space=SPACE, seed=0,
                                        local_radius=None)
    study.enqueue_trial(x)
    study.optimize(objective, n_trials=1)
    assert study.trials[-1].user_attrs["advisor:local_scale"] is None
    assert study.trials[-1].user_attrs["advisor:edge_scale"] == 1.0


# ------------------------------------------------------------------------------ hooks
class Recording(optuna.samplers.RandomSampler):
    def __init__(self) -> None:
        super().__init__(seed=0)
        self.calls: list[str] = []

    def before_trial(self, study: Any, trial: Any) -> None:
        self.calls.append("before")

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self.calls.append("after")

    def reseed_rng(self) -> None:
        self.calls.append("reseed")
        super().reseed_rng()


def test_every_hook_is_forwarded() -> None:
    base = Recording()
    sampler = StableRegionSampler(model=EdgeModel(), base_sampler=base, search_space=SPACE)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=2)
    sampler.reseed_rng()
    assert base.calls == ["before", "after", "before", "after", "reseed"]


def test_enqueued_trial_gets_its_prediction_recorded() -> None:
    sampler = StableRegionSampler(model=EdgeModel(), search_space=SPACE, seed=0)
    study = optuna.create_study(sampler=sampler)
    # enqueued params bypass the sampler: 5e-3 is above eta_max = 0.05 (1 - 0.9) / 2
    study.enqueue_trial({"learning_rate": 5e-3, "momentum": 0.9, "steps_per_generation": 4})
    study.optimize(objective, n_trials=1)
    ua = study.trials[0].user_attrs
    assert ua["advisor:lr_max_model"] == pytest.approx(2.5e-3, rel=1e-12)
    assert ua["advisor:in_region"] is False
    assert ua["advisor:margin"] == pytest.approx(math.log(2.5e-3 / 5e-3), rel=1e-12)


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"safety_margin": -0.1}, ValueError, r"`safety_margin` must be a finite number in \[0, inf"),
    ({"safety_margin": math.nan}, ValueError, "`safety_margin` must be a finite number"),
    ({"alpha": 0.0}, ValueError, r"`alpha` must be a finite number in \(0, 1\)"),
    ({"alpha": 1.5}, ValueError, "`alpha` must be"),
    ({"min_damping_ratio": -1.0}, ValueError, "`min_damping_ratio` must be"),
    ({"n_candidates": 0}, ValueError, "`n_candidates` must be an integer >= 1"),
    ({"n_guided_trials": -1}, ValueError, "`n_guided_trials` must be an integer >= 0"),
    ({"local_radius": -0.1}, ValueError, r"`local_radius` must be a finite number in \[0, inf"),
    ({"edge_bias": 0.5}, ValueError, r"`edge_bias` must be a finite number in \[1, inf"),
    ({"max_time_constant": 0.0}, ValueError, r"`max_time_constant` must be a finite number"),
    ({"search_space": {"momentum": FloatDistribution(0, 0.9)}}, ValueError,
     "`search_space` must contain 'learning_rate'"),
    ({"search_space": {**SPACE, "learning_rat": FloatDistribution(0, 1)}}, ValueError,
     "unknown knob 'learning_rat'. Did you mean 'learning_rate'"),
    ({"defaults": {"num_generation": 8}}, ValueError,
     "`defaults` must use trl.GRPOConfig field names.*Did you mean 'num_generations'"),
    ({"search_space": {"learning_rate": IntDistribution(1, 5)}}, ValueError,
     "must be a FloatDistribution with low > 0"),
    ({"base_sampler": "tpe"}, TypeError, "`base_sampler` must be an optuna BaseSampler"),
])
def test_bad_constructor_arguments(kwargs: dict[str, Any], exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        StableRegionSampler(model=EdgeModel(), **kwargs)


def test_model_without_assess_is_rejected() -> None:
    with pytest.raises(TypeError, match="`model` must have an assess"):
        StableRegionSampler(model=object())


def test_space_without_learning_rate_warns() -> None:
    study = optuna.create_study(sampler=StableRegionSampler(model=EdgeModel()))
    with pytest.warns(AdvisorWarning, match="no `learning_rate` parameter"):
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)


def test_learning_rate_before_knobs_warns() -> None:
    sampler = StableRegionSampler(model=EdgeModel(), seed=0)
    sampler._space = dict(SPACE)  # knob names known, but nothing suggested before lr
    study = optuna.create_study(sampler=sampler)
    with pytest.warns(AdvisorWarning, match=r"not suggested before `learning_rate`"):
        sampler.sample_independent(study, study.ask()._cached_frozen_trial, "learning_rate",
                                   SPACE["learning_rate"])


class Broken(EdgeModel):
    def assess_many(self, p: Any, *, details: bool = False) -> dict[str, Any]:
        raise ArithmeticError("model exploded")


def test_model_failure_warns_and_falls_back() -> None:
    sampler = StableRegionSampler(model=Broken(), search_space=SPACE, seed=0)
    study = optuna.create_study(sampler=sampler)
    with pytest.warns(AdvisorWarning, match="the stability model failed on trial 0"):
        study.optimize(objective, n_trials=1)
    assert study.trials[0].state == TrialState.COMPLETE


def test_model_failure_warns_once_per_reason() -> None:
    sampler = StableRegionSampler(model=Broken(), search_space=SPACE, seed=0)
    study = optuna.create_study(sampler=sampler)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        study.optimize(objective, n_trials=4)
    failed = [w for w in seen if "the stability model failed" in str(w.message)]
    assert len(failed) == 1 and "not warned again" in str(failed[0].message)


class RejectsAdamW(EdgeModel):
    """Like StabilityModel: momentum with AdamW is an error (the knob does not exist there)."""

    def assess_many(self, p: Any, *, details: bool = False) -> dict[str, Any]:
        if "momentum" in p and "optim" in p and np.any(np.asarray(p["optim"]) != "sgd"):
            raise ValueError("`momentum` must be 0 (or absent) with an AdamW optimizer")
        return super().assess_many(p, details=details)


def test_conditional_momentum_is_dropped_for_adamw_trials() -> None:
    # momentum exists only under optim="sgd"; the relative sample still carries it
    def conditional(trial: optuna.Trial) -> float:
        optim = trial.suggest_categorical("optim", ["sgd", "adamw_torch"])
        if optim == "sgd":
            trial.suggest_float("momentum", 0.0, 0.95)
        lr = trial.suggest_float("learning_rate", 1e-6, 1e-1, log=True)
        return math.log(lr)

    space = {"learning_rate": SPACE["learning_rate"], "momentum": SPACE["momentum"],
             "optim": CategoricalDistribution(["sgd", "adamw_torch"])}
    sampler = StableRegionSampler(model=RejectsAdamW(), search_space=space, seed=0)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    with warnings.catch_warnings():
        warnings.simplefilter("error", AdvisorWarning)  # no model failure at all
        study.optimize(conditional, n_trials=12)
    adamw = [t for t in study.trials if t.params["optim"] == "adamw_torch"]
    assert adamw and all(t.params["learning_rate"] <= 0.05 for t in adamw)


class FailsAtSixteen(EdgeModel):
    """Fails on steps_per_generation = 16 (e.g. a batch TRL would reject)."""

    def assess_many(self, p: Any, *, details: bool = False) -> dict[str, Any]:
        if np.any(np.asarray(p.get("steps_per_generation", 1)) == 16):
            raise ValueError("`generation_batch_size` must be divisible by num_generations")
        return super().assess_many(p, details=details)


@pytest.mark.parametrize("base", ["gp", "cmaes"])
def test_trials_without_a_recorded_coordinate_do_not_break_the_base(base: str) -> None:
    # the model fails on an enqueued config, so that trial completes with no recorded
    # advisor:lr_fraction; GPSampler reads the coordinate from EVERY completed trial
    make = {"gp": lambda: optuna.samplers.GPSampler(seed=0, n_startup_trials=3),
            "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=0, n_startup_trials=3)}[base]
    sampler = StableRegionSampler(model=FailsAtSixteen(), search_space=SPACE,
                                  base_sampler=make(), seed=0)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    study.enqueue_trial({"learning_rate": 1e-3, "momentum": 0.5, "steps_per_generation": 16})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.optimize(objective, n_trials=8)
    first = study.trials[0]
    assert FRACTION_KEY not in first.user_attrs
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    view = sampler._rewrite(None, first)  # its place in the declared log range
    assert view.params[FRACTION_KEY] == pytest.approx(math.log(1e-3 / 1e-6) / math.log(1e5))


# ------------------------------------------------------------------------------ packaging
HUB = Path(__file__).resolve().parents[1] / "optunahub"


@pytest.mark.parametrize(("folder", "name", "tag"), [
    ("samplers/stable_region", "StableRegionSampler", "sampler"),
    ("pruners/trajectory", "TrajectoryPruner", "pruner"),
])
def test_optunahub_package_layout(folder: str, name: str, tag: str) -> None:
    yaml = pytest.importorskip("yaml")
    pkg = HUB / folder
    assert {"README.md", "LICENSE", "__init__.py", "example.py"} <= {p.name for p in pkg.iterdir()}
    assert (pkg / "LICENSE").read_text().startswith("MIT License")
    front = yaml.safe_load((pkg / "README.md").read_text().split("---")[1])
    assert set(front) == {"author", "title", "description", "tags", "optuna_versions", "license"}
    assert tag in front["tags"] and front["license"] == "MIT License"
    # load it the way optunahub.load_local_module does: the folder as a package
    spec = importlib.util.spec_from_file_location(f"hub_{tag}", pkg / "__init__.py",
                                                  submodule_search_locations=[str(pkg)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.__all__ == [name]
    assert getattr(module, name) is getattr(__import__("advisor"), name)


@pytest.mark.parametrize("script", [
    "optunahub/samplers/stable_region/example.py",
    "optunahub/pruners/trajectory/example.py",
    "examples/optuna_bandit.py",
])
def test_examples_run(script: str, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    args = ["3"] if script.startswith("examples/") else []
    out = subprocess.run([sys.executable, str(root / script), *args], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.parametrize("cmd", [
    ["benchmarks/overhead.py", "--sizes", "20", "--n-sampler-trials", "2", "--n-tpe-trials", "1",
     "--n-steps", "20", "--long-steps", "30"],
    ["benchmarks/sweep_efficiency.py", "--n-instances", "1", "--n-trials", "3",
     "--n-steps", "60", "--value-steps", "30", "--pilot-steps", "40"],
])
def test_benchmarks_smoke(cmd: list[str], tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "table.md"
    run = subprocess.run([sys.executable, str(root / cmd[0]), *cmd[1:], "--out", str(out)],
                         cwd=root, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert run.returncode == 0, run.stderr[-2000:]
    assert out.read_text().count("|") > 20


class NanEdge(EdgeModel):
    def assess_many(self, p: Any, *, details: bool = False) -> dict[str, Any]:
        out = super().assess_many(p, details=details)
        out["max_learning_rate"] = np.full(np.shape(out["max_learning_rate"]), np.nan)
        return out


def test_nan_edge_warns_instead_of_silently_unconstraining() -> None:
    study = optuna.create_study(sampler=StableRegionSampler(model=NanEdge(), search_space=SPACE))
    with pytest.warns(AdvisorWarning, match="max_learning_rate is nan"):
        study.optimize(objective, n_trials=1)
    assert "advisor:in_region" not in study.trials[0].user_attrs


# ------------------------------------------------------------------------------ guided start
class SqrtEdgeModel(EdgeModel):
    """eta_max = X sqrt(1 - mu) / sqrt(spg), tau = (1 - mu) / (10 eta): the rate at the cap,
    10 X e^{-m} / (sqrt(1 - mu) sqrt(spg)), has a unique argmax at mu = 0.95, spg = 1."""

    def assess_many(self, p: Any, *, details: bool = False) -> dict[str, Any]:
        lr, mu, spg = self._cols(p)
        top = self.x * np.sqrt(1 - mu) / np.sqrt(spg)
        margin = np.log(top / lr)
        out = {"max_learning_rate": top, "margin": margin, "stable": margin > 0,
               "probability": norm.cdf(margin / SIGMA)}
        if details:
            out.update(damping_ratio=np.full(lr.shape, 2.0), time_constant=(1 - mu) / (10 * lr),
                       regime=np.full(lr.shape, "monotone", dtype=object))
        return out


@pytest.mark.parametrize("alpha", [None, 0.05, 0.2])
def test_guided_first_trial_is_the_argmax_of_the_predicted_rate(alpha: float | None) -> None:
    # known value: cap = top e^{-m} (alpha None) or top e^{-SIGMA z_{1-alpha}} (tighter here);
    # tau falls with eta, so the fastest rate sits at the cap of (mu = 0.95, spg = 1)
    sampler = StableRegionSampler(model=SqrtEdgeModel(), search_space=SPACE, seed=0,
                                  safety_margin=0.1, alpha=alpha)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=3)
    first = study.trials[0]
    cut = 0.1 if alpha is None else max(0.1, SIGMA * norm.ppf(1 - alpha))
    assert first.params["momentum"] == 0.95
    assert first.params["steps_per_generation"] == 1
    expected = 0.05 * math.sqrt(0.05) * math.exp(-cut)
    assert first.params["learning_rate"] == pytest.approx(expected, rel=1e-6)
    assert first.user_attrs["advisor:guided"] is True
    assert "advisor:guided" not in study.trials[1].user_attrs  # n_guided_trials = 1
    # oracle: brute force over the guide grid (5 levels of mu, spg rounded) agrees
    rates = {(mu, spg): 10 * 0.05 * math.exp(-cut) / math.sqrt((1 - mu) * spg)
             for mu in np.linspace(0, 0.95, 5) for spg in (1, 5, 8, 12, 16)}
    best = max(rates, key=rates.get)
    assert best == (0.95, 1)
    assert first.user_attrs["advisor:time_constant"] == pytest.approx(1 / rates[best], rel=1e-6)


def test_guided_trial_fraction_maps_back_to_its_learning_rate() -> None:
    # the base sampler learns from the guided trial: its u must map to the lr it ran
    sampler = StableRegionSampler(model=SqrtEdgeModel(), search_space=SPACE, seed=0,
                                  max_time_constant=50.0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=1)
    t = study.trials[0]
    upper, lower = t.user_attrs["advisor:lr_upper"], 1e-6
    lr = _map_fraction(t.user_attrs[FRACTION_KEY], SPACE["learning_rate"], upper,
                       (1 - 0.95) / (10 * 50.0))  # tau = 50 floor at mu = 0.95
    assert lower < lr
    assert t.params["learning_rate"] == pytest.approx(lr, rel=1e-6)


def test_second_guided_trial_is_the_second_fastest() -> None:
    # rates at the cap ~ 1 / sqrt((1 - mu) spg): 4.47 at (0.95, 1), then 2.0 at (0.95, 5),
    # ahead of 1.86 at (0.7125, 1)
    sampler = StableRegionSampler(model=SqrtEdgeModel(), search_space=SPACE, seed=0,
                                  n_guided_trials=2)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=2)
    second = study.trials[1].params
    assert (second["momentum"], second["steps_per_generation"]) == (0.95, 5)
    assert study.trials[1].user_attrs["advisor:guided"] is True


def test_guided_start_off_follows_the_base_sampler() -> None:
    sampler = StableRegionSampler(model=SqrtEdgeModel(), search_space=SPACE, seed=0,
                                  n_guided_trials=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=2)
    assert all("advisor:guided" not in t.user_attrs for t in study.trials)
    assert study.trials[0].params["momentum"] != 0.95


def test_guided_start_without_search_space_picks_the_fastest_rate_for_the_knobs() -> None:
    # independent path: the knobs come from the objective, the lr goes to the cap (tau falls
    # with eta up to the edge)
    sampler = StableRegionSampler(model=SqrtEdgeModel(), seed=0, alpha=None)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=1)
    t = study.trials[0]
    top = 0.05 * math.sqrt(1 - t.params["momentum"]) / math.sqrt(
        t.params["steps_per_generation"])
    assert t.params["learning_rate"] == pytest.approx(top * math.exp(-0.1), rel=1e-6)
    assert t.user_attrs["advisor:guided"] is True
