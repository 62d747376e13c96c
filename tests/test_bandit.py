"""Tests of advisor.bandit: known values, loop and Monte-Carlo oracles, thresholds, bad input."""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

from advisor.bandit import BanditProblem
from advisor.bandit import BanditRun
from advisor.bandit import classify
from advisor.bandit import empirical_threshold
from advisor.bandit import expected_update_finite_g
from advisor.bandit import fixed_point
from advisor.bandit import jacobian_stiffness
from advisor.bandit import simulate
from advisor.dynamics import Regime
from advisor.exceptions import AdvisorError
from advisor.exceptions import AdvisorWarning


# ------------------------------------------------------------------------------------------------
# independent oracles: the surrogate written as a scalar loss, differentiated numerically
# ------------------------------------------------------------------------------------------------

def _softmax(theta: np.ndarray) -> np.ndarray:
    z = np.exp(theta - theta.max())
    return z / z.sum()


def _surrogate(problem: BanditProblem, theta: np.ndarray, theta_old: np.ndarray) -> float:
    """GRPO loss (to ascend) with an infinite group: E_{a~pi_old}[rho_a A_a] - beta E[k3]."""
    r, ref = np.array(problem.rewards), np.array(problem.ref_probs)
    pi, pi_old = _softmax(theta), _softmax(theta_old)
    adv = r - pi_old @ r
    if problem.advantage == "std":
        adv = adv / (np.sqrt(pi_old @ adv**2) + problem.std_eps)
    if problem.surrogate == "logprob":
        reward_term = pi_old @ (np.log(pi) * adv)
    else:
        rho = pi / pi_old
        term = rho * adv
        if problem.clip is not None:
            term = np.minimum(term, np.clip(rho, 1 - problem.clip, 1 + problem.clip) * adv)
        reward_term = pi_old @ term
    k3 = pi_old @ (ref / pi - np.log(ref / pi) - 1)
    return float(reward_term - problem.beta * k3)


def _numeric_direction(problem: BanditProblem, theta: np.ndarray, theta_old: np.ndarray
                       ) -> np.ndarray:
    if problem.surrogate == "stale":  # the whole update evaluated at the sampling policy
        theta = theta_old
    h = 1e-6
    eye = np.eye(theta.size) * h
    return np.array([(_surrogate(problem, theta + e, theta_old)
                      - _surrogate(problem, theta - e, theta_old)) / (2 * h) for e in eye])


def _loop_run(problem: BanditProblem, eta: float, mu: float, lag: int, scheme: str,
              optimizer: str, n_steps: int) -> np.ndarray:
    """One configuration, plain Python: the oracle for the vectorised simulator."""
    r = np.array(problem.rewards)
    theta = problem.start_logits.copy()
    prev, history, theta_old = theta.copy(), [], theta.copy()
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    out = []
    for k in range(n_steps):
        history.append(theta.copy())
        if scheme == "piecewise" and k % lag == 0:
            theta_old = theta.copy()
        if scheme == "sliding":
            theta_old = history[k - lag] if k >= lag else history[0]
        out.append(_softmax(theta) @ r)
        g = _numeric_direction(problem, theta, theta_old)
        if optimizer == "adam":
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g * g
            step = eta * (m / (1 - 0.9 ** (k + 1))) / (np.sqrt(v / (1 - 0.999 ** (k + 1))) + 1e-8)
            theta = theta + step
        else:
            theta, prev = theta + eta * g + mu * (theta - prev), theta
    return np.array(out)


# ------------------------------------------------------------------------------------------------
# known values
# ------------------------------------------------------------------------------------------------

def test_reference_fixed_point_and_stiffness() -> None:
    problem = BanditProblem.reference()
    theta, p_star = fixed_point(problem)
    # closed form: sqrt(p(1-p)) = beta (p - 1/2)  =>  p* = (2 + sqrt 2)/4
    assert p_star == pytest.approx((2 + math.sqrt(2)) / 4, abs=1e-12)
    assert theta.sum() == pytest.approx(0.0, abs=1e-12)
    # central differences with step 1e-6: error ~1e-10 (bandit-findings.md section 3)
    np.testing.assert_allclose(jacobian_stiffness(problem), (0.5, 1.25, -0.75), atol=1e-7)


def test_mean_only_advantages_known_values() -> None:
    problem = BanditProblem.reference(advantage="mean")
    assert fixed_point(problem)[1] == pytest.approx(1 / math.sqrt(2), abs=1e-12)
    stiffness, current, sampler = jacobian_stiffness(problem)
    assert stiffness == pytest.approx(2 - math.sqrt(2), abs=1e-7)  # 0.586
    assert current + sampler == pytest.approx(stiffness, abs=1e-12)


@pytest.mark.parametrize(("group", "expected"), [(4, 0.760), (8, 0.808), (16, 0.833), (64, 0.849)])
@pytest.mark.parametrize("std_eps", [0.0, 1e-4])
def test_finite_group_plateau_known_values(group: int, expected: float, std_eps: float) -> None:
    # bandit-findings.md section 7 quotes 3 decimals; TRL's eps = 1e-4 moves p*_G by < 1e-4
    p_star = fixed_point(BanditProblem.reference(std_eps=std_eps), num_generations=group)[1]
    assert p_star == pytest.approx(expected, abs=6e-4)


def test_finite_group_stiffness_rises_at_small_group() -> None:
    # bandit-findings.md section 7: K_G = 0.62 at G = 4 against 0.50 at G = infinity
    assert jacobian_stiffness(BanditProblem.reference(), num_generations=4)[0] == pytest.approx(
        0.62, abs=0.005)


def test_hard_prompt_and_stale_split() -> None:
    hard = BanditProblem.hard_prompt()
    assert hard.start_reward == pytest.approx(0.05)
    assert fixed_point(hard)[1] < 0.5
    stiffness, _, sampler = jacobian_stiffness(hard)
    assert sampler > stiffness > 0  # lag erodes damping on hard prompts (K_o = +0.74 > K)
    assert sampler == pytest.approx(0.739, abs=1e-3)
    # pure delay: the whole restoring force acts through the sampler
    np.testing.assert_allclose(jacobian_stiffness(BanditProblem.reference(surrogate="stale")),
                               (0.5, 0.0, 0.5), atol=1e-7)


def _tail_stiffness(problem: BanditProblem, eta: float, window: tuple[float, float]) -> float:
    run = simulate(problem, learning_rate=eta, n_steps=6000)
    dev = np.abs(run.reward_current[0] - run.p_star)
    steps = np.arange(dev.size)
    tail = (dev > window[0]) & (dev < window[1])
    rate = -np.polyfit(steps[tail], np.log(dev[tail]), 1)[0]
    return (1 - math.exp(-rate)) / eta  # discrete GD: e_{k+1} = (1 - eta K) e_k


def test_pilot_tail_relaxation_recovers_jacobian_stiffness() -> None:
    problem = BanditProblem.reference()
    # one mode: the linear tail (1e-11 < |p - p*| < 1e-4) gives K to ~1e-5 (section 3: < 1e-4)
    assert _tail_stiffness(problem, 0.05, (1e-11, 1e-4)) == pytest.approx(
        jacobian_stiffness(problem)[0], rel=1e-4)


def test_five_arm_slowest_mode_recovered_along_its_eigenvector() -> None:
    problem = BanditProblem.five_arm()
    theta_star, _ = fixed_point(problem)
    # the test's own Jacobian of the numeric on-policy direction (outer step 1e-3: error ~1e-6)
    h = 1e-3
    jac = np.array([(_numeric_direction(problem, theta_star + e, theta_star + e)
                     - _numeric_direction(problem, theta_star - e, theta_star - e)) / (2 * h)
                    for e in np.eye(5) * h]).T
    rates, vectors = np.linalg.eig(-jac)
    order = np.argsort(rates.real)[1:]  # drop the gauge direction (rate 0)
    slow = vectors[:, order[rates.real[order] < rates.real[order[0]] + 1e-3]].real
    grad_p = _softmax(theta_star) * (np.array(problem.rewards) - problem.rewards @ _softmax(
        theta_star))
    direction = slow @ np.linalg.lstsq(slow, grad_p, rcond=None)[0]
    start = dataclasses.replace(problem, init_logits=theta_star + 1e-3 * direction)
    stiffness = jacobian_stiffness(problem)[0]
    assert stiffness == pytest.approx(rates.real[order[0]], rel=1e-4)
    # started on the slow eigenspace, p relaxes at the slowest rate K (fast residue ~1e-6)
    assert _tail_stiffness(start, 0.05, (1e-12, 1e-6)) == pytest.approx(stiffness, rel=1e-3)


def test_no_interior_fixed_point_raises() -> None:
    problem = BanditProblem.reference(kl="none", beta=0.0)
    with pytest.raises(AdvisorError, match="no interior fixed point"):
        fixed_point(problem)
    assert math.isnan(simulate(problem, learning_rate=0.1, n_steps=10).p_star)


# ------------------------------------------------------------------------------------------------
# vectorised simulator against the plain loop
# ------------------------------------------------------------------------------------------------

_LOOP_CASES = [
    (BanditProblem.reference(), "piecewise", "sgd"),
    (BanditProblem.reference(), "sliding", "sgd"),
    (BanditProblem.reference(surrogate="stale"), "piecewise", "sgd"),
    (BanditProblem.reference(surrogate="logprob", advantage="mean"), "sliding", "sgd"),
    (BanditProblem.reference(clip=0.2, std_eps=1e-4), "piecewise", "sgd"),
    (BanditProblem.five_arm(ref_probs=[0.3, 0.3, 0.2, 0.1, 0.1]), "piecewise", "sgd"),
    (BanditProblem.hard_prompt(), "sliding", "adam"),
]


@pytest.mark.parametrize(("problem", "scheme", "optimizer"), _LOOP_CASES)
def test_vectorised_simulator_matches_plain_loop(problem: BanditProblem, scheme: str,
                                                 optimizer: str) -> None:
    etas = np.array([0.05, 0.3, 0.8, 0.2])
    mus = np.array([0.0, 0.5, 0.0, 0.8]) if optimizer == "sgd" else np.zeros(4)
    lags = np.array([1, 3, 2, 5]) if scheme == "piecewise" else np.array([0, 1, 2, 4])
    run = simulate(problem, learning_rate=etas, momentum=mus, refresh_interval=lags,
                   refresh_scheme=scheme, optimizer=optimizer, n_steps=120)
    for i in range(etas.size):
        loop = _loop_run(problem, etas[i], mus[i], lags[i], scheme, optimizer, 120)
        # finite-difference gradients (step 1e-6) are accurate to ~1e-9 per step
        np.testing.assert_allclose(run.reward_current[i], loop, rtol=0, atol=1e-6,
                                   err_msg=f"config {i}")
    assert not run.diverged.any()


def test_single_configs_match_batch() -> None:
    problem = BanditProblem.reference()
    etas, lags = [0.2, 0.6, 0.9], [1, 4, 4]
    batch = simulate(problem, learning_rate=etas, momentum=0.5, refresh_interval=lags,
                     n_steps=300)
    for i in range(3):  # uniform-lag fast path against the mixed-lag path
        alone = simulate(problem, learning_rate=etas[i], momentum=0.5,
                         refresh_interval=lags[i], n_steps=300)
        np.testing.assert_array_equal(alone.reward_current[0], batch.reward_current[i])
        np.testing.assert_array_equal(alone.reward_used[0], batch.reward_used[i])


def test_piecewise_refresh_one_is_on_policy() -> None:
    problem = BanditProblem.reference()
    kw = dict(learning_rate=[0.1, 1.0, 3.0], momentum=0.8, n_steps=500)
    piecewise = simulate(problem, refresh_interval=1, **kw)
    sliding = simulate(problem, refresh_interval=0, refresh_scheme="sliding", **kw)
    np.testing.assert_array_equal(piecewise.reward_current, sliding.reward_current)
    np.testing.assert_array_equal(piecewise.reward_used, piecewise.reward_current)


def test_reward_used_is_the_sampling_policy_reward() -> None:
    problem = BanditProblem.reference()
    run = simulate(problem, learning_rate=0.4, momentum=0.5, refresh_interval=4, n_steps=40)
    k = np.arange(40)
    np.testing.assert_array_equal(run.reward_used[0], run.reward_current[0, 4 * (k // 4)])
    lagged = simulate(problem, learning_rate=0.4, refresh_interval=3, refresh_scheme="sliding",
                      n_steps=40)
    np.testing.assert_array_equal(lagged.reward_used[0, 3:], lagged.reward_current[0, :-3])
    np.testing.assert_array_equal(lagged.reward_used[0, :3], problem.start_reward)


def test_divergence_is_isolated_and_masked() -> None:
    problem = BanditProblem.reference()
    # eta = 3, mu = 0.8, K_ref = 4 overshoots to a saturated policy: std -> 0, NaN (section 5)
    run = simulate(problem, learning_rate=[0.3, 3.0, 0.3], momentum=0.8, refresh_interval=4,
                   n_steps=400)
    np.testing.assert_array_equal(run.diverged, [False, True, False])
    np.testing.assert_array_equal(run.learning_rate, [0.3, 3.0, 0.3])  # recorded as passed
    step = run.divergence_step[1]
    assert 0 < step < 400 and run.divergence_step[0] == -1
    assert np.isfinite(run.reward_current[1, :step]).all()
    assert np.isnan(run.reward_current[1, step:]).all() and np.isnan(run.final_logits[1]).all()
    alone = simulate(problem, learning_rate=0.3, momentum=0.8, refresh_interval=4, n_steps=400)
    np.testing.assert_array_equal(run.reward_current[0], alone.reward_current[0])
    assert run.regimes()[1] is Regime.DIVERGENT


# ------------------------------------------------------------------------------------------------
# finite G
# ------------------------------------------------------------------------------------------------

def _monte_carlo_direction(problem: BanditProblem, theta: np.ndarray, theta_old: np.ndarray,
                           group: int, n_groups: int, seed: int) -> np.ndarray:
    """Sampled-group directions written per completion (TRL's loss), shape (n_groups, n)."""
    rng = np.random.default_rng(seed)
    r, ref = np.array(problem.rewards), np.array(problem.ref_probs)
    pi, pi_old = _softmax(theta), _softmax(theta_old)
    arms = rng.choice(r.size, size=(n_groups, group), p=pi_old)
    rew = r[arms]
    sd = rew.std(axis=1, ddof=1, keepdims=True)
    with np.errstate(invalid="ignore"):  # degenerate groups: 0/0, set to 0 below as TRL's 0/1e-4
        adv = (rew - rew.mean(axis=1, keepdims=True)) / (sd + problem.std_eps)
    adv[np.broadcast_to(sd == 0, adv.shape)] = 0.0
    score = np.eye(r.size)[arms] - pi  # grad log pi_a = e_a - pi
    rho = pi[arms] / pi_old[arms]
    kl_grad = 1.0 - ref[arms] / pi[arms]
    return ((rho * adv)[..., None] * score).mean(1) - problem.beta * (
        kl_grad[..., None] * score).mean(1)


@pytest.mark.parametrize(("problem", "group"), [
    (BanditProblem.reference(), 4), (BanditProblem.reference(std_eps=1e-4), 16),
    (BanditProblem.five_arm(), 6)], ids=["2-arm-G4", "2-arm-G16-eps", "5-arm-G6"])
def test_exact_finite_group_update_matches_monte_carlo(problem: BanditProblem, group: int) -> None:
    rng = np.random.default_rng(7)
    theta = problem.start_logits + rng.normal(0, 0.5, problem.n_arms)
    theta_old = theta + rng.normal(0, 0.2, problem.n_arms)
    mean, cov = expected_update_finite_g(problem, theta, theta_old, num_generations=group)
    samples = _monte_carlo_direction(problem, theta, theta_old, group, 100_000, seed=1)
    se = samples.std(axis=0) / math.sqrt(len(samples))
    # 5 standard errors: a false failure has probability < 1e-5 per component
    np.testing.assert_allclose(mean, samples.mean(axis=0), atol=5 * se.max() + 1e-12)
    var = np.diag(cov)
    # SE of a sample covariance ~ sqrt((C_ii C_jj + C_ij^2)/M); 8 SE allow for skewed updates
    cov_se = np.sqrt((np.outer(var, var) + cov**2) / len(samples))
    assert np.all(np.abs(cov - np.cov(samples.T)) < 8 * cov_se + 1e-12)


def test_finite_group_simulation_settles_on_exact_plateau() -> None:
    problem = BanditProblem.reference(std_eps=1e-4)
    run = simulate(problem, learning_rate=np.full(400, 0.1), num_generations=8, n_steps=1200,
                   seed=3)
    window = run.reward_current[:, 600:]
    # stationary sd ~0.008 (Var 6.6e-5, section 7), ~20-step correlation: SE ~ 1e-4
    assert window.mean() == pytest.approx(fixed_point(problem, num_generations=8)[1], abs=1e-3)
    assert run.reward_used[:, 600:].mean() == pytest.approx(window.mean(), abs=2e-3)
    assert window.var(axis=0).mean() == pytest.approx(6.5e-5, rel=0.15)
    again = simulate(problem, learning_rate=np.full(400, 0.1), num_generations=8, n_steps=1200,
                     seed=3)
    np.testing.assert_array_equal(again.reward_current, run.reward_current)


@pytest.mark.parametrize("refresh", [[5, 5], [5, 2]], ids=["shared", "mixed"])
def test_finite_group_reuses_one_group_per_refresh(refresh: list[int]) -> None:
    run = simulate(BanditProblem.reference(), learning_rate=0.2, refresh_interval=refresh,
                   num_generations=8, n_steps=60, seed=0)
    for used, period in zip(run.reward_used, refresh, strict=True):
        blocks = used.reshape(-1, period)
        np.testing.assert_array_equal(blocks, np.repeat(blocks[:, :1], period, axis=1))
        assert set(np.round(blocks[:, 0] * 8, 9)) <= set(range(9))  # group means are c/G
        assert len(set(blocks[:, 0])) > 1  # a new group at each refresh


def test_finite_group_sliding_lag_settles_on_exact_plateau() -> None:
    problem = BanditProblem.reference(std_eps=1e-4)
    run = simulate(problem, learning_rate=np.full(300, 0.1), refresh_interval=3,
                   refresh_scheme="sliding", num_generations=8, n_steps=1200, seed=5)
    # the lag moves the plateau of the expected map by O(eta^2) only; SE ~1e-4 (300 runs)
    assert run.reward_current[:, 600:].mean() == pytest.approx(
        fixed_point(problem, num_generations=8)[1], abs=1.5e-3)


# ------------------------------------------------------------------------------------------------
# stability of the pure-delay surrogate: eta*K*K_ref < 2 exactly (piecewise, mu = 0)
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("refresh", [1, 2, 4, 8])
def test_stale_piecewise_threshold_is_two(refresh: int) -> None:
    base = BanditProblem.reference(surrogate="stale")
    theta_star, p_star = fixed_point(base)
    problem = dataclasses.replace(base, init_logits=theta_star + np.array([-0.01, 0.01]))
    stiffness = jacobian_stiffness(base)[0]
    edge = 2.0 / (stiffness * refresh)
    # the period map is e -> (1 - K_ref*eta*K) e: +-3% gives |factor| = 0.97 / 1.03
    run = simulate(problem, learning_rate=[0.97 * edge, 1.03 * edge], refresh_interval=refresh,
                   n_steps=400 * refresh)
    regimes = classify(run.reward_current, p_star, run.start_reward)
    assert regimes[0] is Regime.OSCILLATORY and regimes[1] is Regime.DIVERGENT


def test_paper_demo_point_regimes() -> None:
    # bandit-findings.md section 5, (eta, mu, beta) = (0.3, 0.8, 1): pure delay diverges from
    # K_ref = 5 (Floquet rho = 0.994 at 4, 1.011 at 5) and from d = 2 (sliding); the GRPO ratio
    # surrogate converges for every K_ref and is monotone from K_ref = 8 on.
    stale = BanditProblem.reference(surrogate="stale")
    kw = dict(learning_rate=0.3, momentum=0.8, n_steps=4000)
    piecewise = simulate(stale, refresh_interval=[4, 5], **kw).regimes()
    sliding = simulate(stale, refresh_interval=[1, 2], refresh_scheme="sliding", **kw).regimes()
    ratio = simulate(BanditProblem.reference(), refresh_interval=np.arange(1, 33), **kw).regimes()
    assert [r.value for r in piecewise] == ["oscillatory", "divergent"]
    assert [r.value for r in sliding] == ["oscillatory", "divergent"]
    assert Regime.DIVERGENT not in set(ratio)
    assert set(ratio[7:]) == {Regime.MONOTONE}


def test_empirical_threshold_reproduces_findings() -> None:
    # bandit-findings.md section 5, mu = 0.8, stale piecewise K_ref = 2 / 4: 0.892 / 0.323
    eta = empirical_threshold(BanditProblem.reference(surrogate="stale"), momentum=0.8,
                              refresh_interval=[2, 4], n_steps=4000)
    np.testing.assert_allclose(eta, [0.892, 0.323], rtol=0.01)  # table precision + bisection


def test_empirical_threshold_warns_and_reports_inf() -> None:
    problem = BanditProblem.reference()
    with pytest.warns(AdvisorWarning, match="upper bound"):
        low = empirical_threshold(problem, lr_range=(20.0, 40.0), n_steps=200, n_bisect=0)
    assert low[0] == pytest.approx(20.0)
    assert empirical_threshold(problem, lr_range=(0.1, 0.5), n_steps=500)[0] == math.inf


# ------------------------------------------------------------------------------------------------
# classify
# ------------------------------------------------------------------------------------------------

_T = np.arange(3000)


@pytest.mark.parametrize(("curve", "expected"), [
    (0.8 - 0.3 * 0.99**_T, Regime.MONOTONE),
    (0.8 - 0.3 * np.exp(-_T / 50) * np.cos(np.pi * _T / 200), Regime.OVERSHOOT),
    (0.8 - 0.3 * 0.995**_T * np.cos(0.3 * _T), Regime.OSCILLATORY),
    (0.8 - 0.3 * np.cos(0.3 * _T), Regime.DIVERGENT),            # limit cycle
    (0.8 - 0.3 * 0.9999**_T, Regime.DIVERGENT),                  # not converged
    (0.8 - 0.3 * 1.0001**_T * np.cos(0.3 * _T), Regime.DIVERGENT),
    (np.where(_T < 100, 0.5, np.nan), Regime.DIVERGENT),
])
def test_classify_rules(curve: np.ndarray, expected: Regime) -> None:
    assert classify(curve, 0.8, 0.5) is expected
    assert classify(np.stack([curve, curve]), 0.8)[1] is expected


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(reward_current=np.zeros((2, 2, 9)), p_star=0.8), "must have shape"),
    (dict(reward_current=np.zeros(5), p_star=0.8), "n_steps >= 8"),
    (dict(reward_current=np.zeros(20), p_star=float("nan")), "`p_star` must be finite"),
    (dict(reward_current=np.zeros(20), p_star=0.0), "`p0` must differ from `p_star`"),
    (dict(reward_current=np.zeros((3, 20)), p_star=[0.5, 0.6]), "length n_configs"),
    (dict(reward_current=np.zeros(20), p_star=0.8, dead_zone=0.0), "`dead_zone` must be"),
])
def test_classify_bad_input(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        classify(**kwargs)


# ------------------------------------------------------------------------------------------------
# problem and run objects, bad input
# ------------------------------------------------------------------------------------------------

def test_problem_is_frozen_hashable_keyword_only() -> None:
    problem = BanditProblem.reference()
    assert problem == BanditProblem(rewards=np.array([0, 1]), ref_probs=[0.5, 0.5])
    assert hash(problem) == hash(BanditProblem.reference())
    with pytest.raises(dataclasses.FrozenInstanceError):
        problem.beta = 2.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        BanditProblem((0.0, 1.0))  # type: ignore[misc]
    run = simulate(problem, learning_rate=0.1, n_steps=5)
    assert isinstance(run, BanditRun) and run.reward_current.flags.c_contiguous


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(rewards=[1.0]), ValueError, "at least 2 arms"),
    (dict(rewards=[1.0, 1.0]), ValueError, "different rewards"),
    (dict(rewards=[0.0, float("nan")]), ValueError, "`rewards` must be finite"),
    (dict(rewards="01"), TypeError, "`rewards` must be a sequence"),
    (dict(rewards=[0, 1], ref_probs=[0.5, 0.6]), ValueError, "sum to 1"),
    (dict(rewards=[0, 1], ref_probs=[1.5, -0.5]), ValueError, "positive"),
    (dict(rewards=[0, 1], ref_probs=[1.0]), ValueError, "length 2"),
    (dict(rewards=[0, 1], beta=-1.0), ValueError, "`beta` must be a finite number"),
    (dict(rewards=[0, 1], beta=float("nan")), ValueError, "`beta` must be a finite number"),
    (dict(rewards=[0, 1], beta="1"), TypeError, "`beta` must be a real number"),
    (dict(rewards=[0, 1], kl="none"), ValueError, "`beta` must be 0 when kl='none'"),
    (dict(rewards=[0, 1], kl="rev"), ValueError, "`kl` must be one of"),
    (dict(rewards=[0, 1], advantage="rank"), ValueError, "`advantage` must be one of"),
    (dict(rewards=[0, 1], surrogate="ppo"), ValueError, "`surrogate` must be one of"),
    (dict(rewards=[0, 1], clip=0.0), ValueError, r"`clip` must be a finite number in \(0, 1\)"),
    (dict(rewards=[0, 1], clip=0.2, surrogate="logprob"), ValueError, "`clip` must be None"),
    (dict(rewards=[0, 1], std_eps=-1e-4), ValueError, "`std_eps` must be"),
    (dict(rewards=[0, 1], init_logits=[0.0]), ValueError, "`init_logits` must be"),
])
def test_problem_bad_input(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        BanditProblem(**kwargs)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(learning_rate=float("nan")), ValueError, "`learning_rate` must be finite and > 0"),
    (dict(learning_rate=[0.1, 0.0]), ValueError, "got 0.0 at index 1"),
    (dict(learning_rate=-0.1), ValueError, "`learning_rate` must be finite and > 0"),
    (dict(learning_rate="0.1"), TypeError, "`learning_rate` must be a real number"),
    (dict(learning_rate=True), TypeError, "`learning_rate` must be a real number"),
    (dict(learning_rate=None), TypeError, "`learning_rate` must be a real number"),
    (dict(learning_rate=np.ones((2, 2))), ValueError, "scalar or 1-D"),
    (dict(momentum=1.0), ValueError, r"`momentum` must be in \[0, 1\)"),
    (dict(momentum=-0.5), ValueError, r"`momentum` must be in \[0, 1\)"),
    (dict(refresh_interval=0), ValueError, "`refresh_interval` must be an integer >= 1"),
    (dict(refresh_interval=2.5), ValueError, "`refresh_interval` must be an integer"),
    (dict(refresh_interval=-1, refresh_scheme="sliding"), ValueError, "integer >= 0"),
    (dict(refresh_scheme="async"), ValueError, "`refresh_scheme` must be one of"),
    (dict(optimizer="rmsprop"), ValueError, "`optimizer` must be one of"),
    (dict(optimizer="adam", momentum=0.9), ValueError, "`momentum` must be 0 with"),
    (dict(num_generations=1), ValueError, "`num_generations` must be an integer >= 2"),
    (dict(num_generations=2.5), TypeError, "`num_generations` must be an integer"),
    (dict(n_steps=0), ValueError, "`n_steps` must be an integer >= 1"),
    (dict(learning_rate=[0.1, 0.2, 0.3], momentum=[0.1, 0.2]), ValueError, "broadcast"),
    (dict(adam_betas=(0.9, 1.0)), ValueError, r"`adam_betas\[1\]` must be"),
    (dict(seed=-1), ValueError, "`seed` must be an integer >= 0"),
])
def test_simulate_bad_input(kwargs: dict, error: type, match: str) -> None:
    args = dict(learning_rate=0.1, n_steps=10) | kwargs
    with pytest.raises(error, match=match):
        simulate(BanditProblem.reference(), **args)


def test_other_entry_points_bad_input() -> None:
    with pytest.raises(TypeError, match="`problem` must be a BanditProblem"):
        simulate("reference", learning_rate=0.1, n_steps=10)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`problem` must be a BanditProblem"):
        fixed_point(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`num_generations` must be an integer >= 2"):
        fixed_point(BanditProblem.reference(), num_generations=1)
    with pytest.raises(ValueError, match="`logits` must be a 1-D sequence of length 2"):
        expected_update_finite_g(BanditProblem.reference(), [0.0], num_generations=4)
    with pytest.raises(ValueError, match="`old_logits` must be finite"):
        expected_update_finite_g(BanditProblem.reference(), [0, 0], [0, np.inf],
                                 num_generations=4)
    with pytest.raises(ValueError, match="compositions"):
        expected_update_finite_g(BanditProblem.five_arm(), np.zeros(5), num_generations=400)
    with pytest.raises(ValueError, match="`step` must be"):
        jacobian_stiffness(BanditProblem.reference(), step=0.0)
    with pytest.raises(ValueError, match=r"`lr_range\[1\]` must be"):
        empirical_threshold(BanditProblem.reference(), lr_range=(1.0, 0.5))
    with pytest.raises(ValueError, match="`refresh_interval` must be an integer >= 1"):
        empirical_threshold(BanditProblem.reference(), refresh_interval=0)


# Every module-level name of the former single-file advisor/bandit.py, by the submodule that now
# defines it. Other modules and benchmarks import some private ones (bandit_speed.py clears
# _solve_fixed_point's cache), so the package must re-export the very same objects: a copy
# would, for example, keep a second lru_cache that cache_clear() never reaches.
_FORMER_NAMES = {
    "_problem": ("BanditProblem", "_as_float_tuple"),
    "_result": ("BanditRun",),
    "_kernel": ("FloatArray", "_softmax", "_Kernel"),
    "_sampling": ("_sample_counts", "_Sampler"),
    "_optim": ("_Optimizer",),
    "_simulate": ("simulate", "_config_array", "_check_all", "_configs", "_run"),
    "_groups": ("expected_update_finite_g", "_MAX_COMPOSITIONS", "_compositions", "_logits",
                "_expected_group"),
    "_fixed_point": ("fixed_point", "jacobian_stiffness", "_gauge_basis", "_field",
                     "_solve_fixed_point", "_p_star"),
    "_classify": ("classify", "_REGIMES", "_regime_codes", "_codes"),
    "_threshold": ("empirical_threshold", "_default_lr_range"),
}


@pytest.mark.parametrize("submodule", sorted(_FORMER_NAMES))
def test_package_reexports_the_former_module_names(submodule: str) -> None:
    import importlib

    import advisor.bandit

    module = importlib.import_module(f"advisor.bandit.{submodule}")
    for name in _FORMER_NAMES[submodule]:
        assert getattr(advisor.bandit, name) is getattr(module, name), name


def test_package_public_api() -> None:
    import advisor
    import advisor.bandit

    public = sorted(n for names in _FORMER_NAMES.values() for n in names
                    if not n.startswith("_") and n != "FloatArray")
    assert sorted(advisor.bandit.__all__) == public
    assert advisor.BanditProblem is BanditProblem and advisor.BanditRun is BanditRun


def test_speed_benchmark_smoke() -> None:
    root = pathlib.Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "benchmarks/bandit_speed.py", "--n-configs", "40", "--n-steps", "100",
         "--finite-configs", "10", "--finite-steps", "20", "--repeats", "1"],
        cwd=root, env=env, capture_output=True, text=True, check=True, timeout=120)
    assert "grid, piecewise K_ref 1-32, G=inf" in out.stdout and "machine:" in out.stdout


# ------------------------------------------------------------- user-acceptance regressions
def test_simulate_rejects_an_empty_batch() -> None:
    # before: a bare IndexError from inside the simulator
    with pytest.raises(ValueError, match="`learning_rate` must hold at least one configuration"):
        simulate(BanditProblem.reference(), learning_rate=[], n_steps=5)


def test_classify_warns_when_p_star_is_off() -> None:
    # the rule calls a run whose envelope stops decaying divergent; a converged run compared
    # with a rounded p* (0.8536) was called divergent without a hint
    problem = BanditProblem.reference()
    run = simulate(problem, learning_rate=[0.1, 3.0], n_steps=500)
    exact = classify(run.reward_current, run.p_star, 0.5)
    assert exact.tolist() == [Regime.MONOTONE, Regime.OSCILLATORY]
    with pytest.warns(AdvisorWarning, match="settle flat at 0.853553.*Pass the exact fixed"):
        rounded = classify(run.reward_current, 0.8536, 0.5)
    assert rounded.tolist() == [Regime.DIVERGENT, Regime.DIVERGENT]  # the rule is unchanged
    diverging = simulate(problem, learning_rate=5.0, n_steps=500)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert classify(diverging.reward_current[0], run.p_star, 0.5) is Regime.DIVERGENT
