from __future__ import annotations

import numpy as np
import pytest

from advisor.group_size import degenerate_group_probability
from advisor.group_size import finite_group_plateau
from advisor.group_size import group_size_table
from advisor.group_size import plateau_shift
from advisor.group_size import reward_variance
from advisor.group_size import stationary_variance


def test_degenerate_probability_known_values() -> None:
    assert float(degenerate_group_probability(0.5, 2)) == pytest.approx(0.5)
    assert float(degenerate_group_probability(0.9, 8)) == pytest.approx(0.9**8 + 0.1**8)
    np.testing.assert_allclose(degenerate_group_probability([0.0, 1.0], 16), [1.0, 1.0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_degenerate_probability_matches_sampling(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p, g, n = 0.8, 6, 200_000
    hits = rng.binomial(g, p, n)
    frac = np.mean((hits == 0) | (hits == g))
    expected = float(degenerate_group_probability(p, g))
    # binomial standard error sqrt(q(1-q)/n) ~ 1e-3; 5 sigma
    assert frac == pytest.approx(expected, abs=5 * np.sqrt(expected * (1 - expected) / n))


def test_plateau_shift_law() -> None:
    np.testing.assert_allclose(plateau_shift([4, 8, 64]), [-0.075, -0.0375, -0.3 / 64])


# bandit-findings.md section 7: exact finite-G fixed points of the 2-arm reference
@pytest.mark.parametrize(("g", "p_star"), [(4, 0.7601), (8, 0.8079), (16, 0.8332), (64, 0.8492)])
def test_finite_group_plateau_matches_findings(g: int, p_star: float) -> None:
    bandit = pytest.importorskip("advisor.bandit")
    assert finite_group_plateau(bandit.BanditProblem.reference(), g) == pytest.approx(
        p_star, abs=2e-4)
    # the -0.3/G rule is within 0.1/G of the exact shift (measured coefficient 0.28-0.39)
    shift = finite_group_plateau(bandit.BanditProblem.reference(), g) - 0.8536
    assert abs(shift - float(plateau_shift(g))) < 0.1 / g


# exact-G Lyapunov column of bandit-findings.md section 7 (eta = 0.1, mu = 0); 3 digits -> 1%
@pytest.mark.parametrize(("g", "var"), [(4, 1.36e-4), (8, 6.41e-5), (16, 3.76e-5),
                                        (64, 1.16e-5)])
def test_stationary_variance_matches_lyapunov_column(g: int, var: float) -> None:
    bandit = pytest.importorskip("advisor.bandit")
    got = stationary_variance(bandit.BanditProblem.reference(), g, learning_rate=0.1)
    assert got == pytest.approx(var, rel=0.01)


def test_corrected_law_beats_plain_one_over_g() -> None:
    # simulated stationary Var p (2000 seeds, bandit-findings.md section 7) and exact plateaus
    gs = np.array([4, 8, 16, 64, 256])
    sim = np.array([1.41e-4, 6.57e-5, 3.83e-5, 1.16e-5, 3.07e-6])
    plateaus = np.array([0.7601, 0.8079, 0.8332, 0.8492, 0.8525])
    c = 256 * 3.07e-6  # scale from the largest G, where the correction vanishes
    corrected = reward_variance(gs, scale=c, success_rate=plateaus)
    plain = reward_variance(gs, scale=c)
    assert np.max(np.abs(np.log(corrected / sim))) < np.log(1.25)
    assert np.max(np.abs(np.log(plain / sim))) > np.log(1.4)


def test_group_size_table_rows() -> None:
    rows = group_size_table(0.5, [2, 4, 8])
    assert [r.num_generations for r in rows] == [2, 4, 8]
    np.testing.assert_allclose([r.degenerate_probability for r in rows], [0.5, 0.125, 2 / 256])
    assert rows[0].relative_variance == pytest.approx(1.0)
    # (1 - q_G)/G relative to G = 2: (0.875/4)/(0.5/2)
    assert rows[1].relative_variance == pytest.approx(0.875)
    assert rows[1].completions_per_informative_group == pytest.approx(4 / 0.875)
    assert group_size_table(1.0, [4])[0].completions_per_informative_group == np.inf


@pytest.mark.parametrize(("call", "match"), [
    (lambda: degenerate_group_probability(1.5, 4),
     r"`success_rate` must be a finite number in \[0, 1\], got 1.5"),
    (lambda: degenerate_group_probability(0.5, 1), r"`num_generations` must be integers >= 2"),
    (lambda: degenerate_group_probability(0.5, 4.5), r"`num_generations` must be integers"),
    (lambda: reward_variance(4, scale=0.0), r"`scale` must be a finite number in \(0, inf\]"),
    (lambda: group_size_table(0.5, []), r"`num_generations` must be"),
])
def test_bad_input(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_stationary_variance_rejects_bad_input() -> None:
    bandit = pytest.importorskip("advisor.bandit")
    with pytest.raises(ValueError, match=r"`problem` must have 2 arms"):
        stationary_variance(bandit.BanditProblem.five_arm(), 8, learning_rate=0.1)
    with pytest.raises(ValueError, match=r"`learning_rate` must satisfy eta\*K_G < 2"):
        stationary_variance(bandit.BanditProblem.reference(), 8, learning_rate=10.0)


# ------------------------------------------------------------- user-acceptance regressions
def test_integral_float_group_sizes_are_integers() -> None:
    # before: 8.0 (e.g. a pandas column of G) was rejected as "must be integers"
    assert float(degenerate_group_probability(0.5, 8.0)) == pytest.approx(0.5**7)
    np.testing.assert_allclose(plateau_shift([4.0, 8.0]), [-0.075, -0.0375])
    with pytest.raises(ValueError, match="`num_generations` must be integers >= 2, got 2.5"):
        plateau_shift(2.5)


@pytest.mark.parametrize(("p", "error", "match"), [
    ("0.5", TypeError, "`success_rate` must be a real number or an array of them, got str"),
    (True, TypeError, "`success_rate` must be .* got booleans"),
    ([0.2, float("nan")], ValueError, r"`success_rate` must be a finite number in \[0, 1\], "
                                      r"got nan at index 1"),
])
def test_success_rate_rejects_non_numbers(p, error, match) -> None:
    # before: "0.5" and True were read as numbers
    with pytest.raises(error, match=match):
        degenerate_group_probability(p, 8)


def test_table_accepts_a_single_group_size_and_rejects_arrays_of_rates() -> None:
    # before: group_size_table(0.2, 8) raised "'int' object is not iterable" and an array of
    # rates "only 0-dimensional arrays can be converted to Python scalars"
    (row,) = group_size_table(0.2, 8)
    assert row.num_generations == 8
    assert row.degenerate_probability == pytest.approx(0.2**8 + 0.8**8)
    assert [r.num_generations for r in group_size_table(0.2, (g for g in (4, 8)))] == [4, 8]
    with pytest.raises(TypeError, match="`success_rate` must be one number in \\[0, 1\\]"):
        group_size_table([0.2, 0.3], [4, 8])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`scale` must be a real number"):
        reward_variance(4, scale="1e-3")  # type: ignore[arg-type]
    assert float(reward_variance(4, scale=np.array(1e-3))) == pytest.approx(2.5e-4)
