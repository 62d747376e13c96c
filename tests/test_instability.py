from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from advisor.exceptions import InsufficientDataError
from advisor.instability import InstabilityDetector
from advisor.instability import first_unstable_step
from advisor.instability import label_run
from advisor.instability import normalize_history


def _healthy(rng, n=150, p0=0.34, p_star=0.9, tau=25.0, noise=0.03):
    """Saturating reward (single exponential) with small noise; entropy drifts down."""
    t = np.arange(1, n + 1)
    reward = p_star - (p_star - p0) * np.exp(-t / tau) + rng.normal(0, noise, n)
    return [{"step": int(s), "reward": float(r), "loss": 0.01,
             "grad_norm": 0.4 + 0.05 * rng.random(),
             "entropy": 2.0 - 1.5 * (1 - math.exp(-s / 60)), "kl": 0.05 + 0.01 * rng.random()}
            for s, r in zip(t, reward, strict=True)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_healthy_run_is_stable(seed):
    label = label_run(_healthy(np.random.default_rng(seed)), start_reward=0.34)
    assert not label.unstable, label
    assert label.reason == "stable" and label.step is None
    # tail mean of the last 30 steps of p* - (p* - p0) e^{-t/25}: ~0.9 within noise 0.03/sqrt(30)
    assert label.evidence["tail_mean"] == pytest.approx(0.9, abs=0.02)


def test_collapse_after_plateau_drop_from_peak(rng):
    hist = _healthy(rng)
    for row in hist[99:]:  # reward falls to 0.02 at step 100
        row["reward"] = 0.02
    label = label_run(hist, start_reward=0.34)
    assert label.unstable and label.reason == "drop_from_peak"
    # tail over 30 steps falls by 0.88/30 per step below ~0.9: > 0.15 after 6 collapsed steps
    assert 100 <= label.step <= 106
    assert label.evidence["drop"] > label.evidence["threshold"] == 0.15
    assert first_unstable_step(hist, start_reward=0.34) == label.step


def test_reward_carried_forward_over_rows_without_reward():
    # K_ref = 4: reward logged every 4th step only; the carry-forward must keep the tail right
    steps = range(1, 121)
    hist = [{"step": s, "loss": 0.0, **({"reward": 0.8} if s % 4 == 1 else {})} for s in steps]
    hist[0]["reward"] = 0.3
    label = label_run(hist, start_reward=0.3)
    assert not label.unstable
    assert label.evidence["tail_mean"] == pytest.approx(0.8)
    # without carry-forward a 4-step window would see no reward on 3 of 4 steps; with it,
    # the collapse is dated by the first generation step that logs the low reward
    for row in hist[80:]:
        if "reward" in row:
            row["reward"] = 0.0
    label = label_run(hist, start_reward=0.3)
    assert label.reason == "drop_from_peak" and label.step >= 81


def test_kl_uses_rolling_median_not_single_spikes(rng):
    hist = _healthy(rng)
    for i in (20, 60, 61, 100):  # isolated k3 spikes to 5-120 are normal (section 9)
        hist[i]["kl"] = 120.0
    assert not label_run(hist, start_reward=0.34).unstable
    for row in hist[70:]:
        row["kl"] = 8.0
    label = label_run(hist, start_reward=0.34)
    assert label.reason == "kl_blowup"
    assert label.step == 73  # the median of 5 points exceeds 5 once 3 of them are 8 (steps 71-73)
    assert label.evidence["kl_median"] == pytest.approx(8.0)


def test_noise_collapse_needs_spike_then_entropy_jump(rng):
    hist = _healthy(rng)
    hist[80]["grad_norm"] = 20.0  # 50x the median; no entropy jump: not a collapse
    assert not label_run(hist, start_reward=0.34).unstable
    for row in hist[83:88]:
        row["entropy"] += 1.0  # jump 3 steps after the spike
    label = label_run(hist, start_reward=0.34)
    assert label.reason == "noise_collapse" and label.step == 84
    assert label.evidence["spike_step"] == 81
    assert label.evidence["spike_factor"] > 10
    # entropy jump too late (> 6 steps after the spike): not this event
    hist2 = _healthy(np.random.default_rng(5))
    hist2[80]["grad_norm"] = 20.0
    for row in hist2[90:95]:
        row["entropy"] += 1.0
    assert label_run(hist2, start_reward=0.34).reason == "stable"


def test_no_net_gain_and_decline(rng):
    flat = [{"step": s, "reward": 0.34 + rng.normal(0, 0.01)} for s in range(1, 151)]
    label = label_run(flat, start_reward=0.34)
    assert label.reason == "no_net_gain" and label.unstable
    assert first_unstable_step(flat, start_reward=0.34) is None  # end rule only
    declining = [{"step": s, "reward": 0.34 - 0.003 * s} for s in range(1, 151)]
    label = label_run(declining, start_reward=0.34)
    assert label.reason == "declined_below_start"
    # trailing 30-step mean 0.34 - 0.003 (s - 14.5) < 0.34 - 0.1 once s > 47.8
    assert label.step == 48


def test_default_start_is_mean_of_first_three_rewards():
    hist = {"reward": [0.2, 0.3, 0.4] + [0.5] * 60}
    label = label_run(hist)
    assert label.start_reward == pytest.approx(0.3)
    assert not label.unstable


def test_nonfinite_and_exception():
    hist = [{"step": 1, "reward": 0.3}, {"step": 2, "reward": 0.4, "grad_norm": math.inf},
            {"step": 3, "reward": math.nan}]
    label = label_run(hist)
    assert (label.reason, label.step) == ("nonfinite", 2)
    assert label.evidence == {"grad_norm": math.inf}
    label = label_run([{"step": 1, "reward": 0.3}], error=RuntimeError("CUDA OOM"))
    assert label.reason == "exception"


def test_history_forms_agree(rng):
    hist = _healthy(rng)
    for row in hist[99:]:
        row["reward"] = 0.02
    df = pd.DataFrame(hist)
    cols = {k: df[k].tolist() for k in df.columns}
    labels = [label_run(h, start_reward=0.34) for h in (hist, df, cols)]
    assert labels[0] == labels[1] == labels[2]


def test_trl_style_rows_are_merged():
    hist = [{"step": 1, "loss": 0.1, "reward": 0.3}, {"step": 1, "eval_reward": 0.2},
            {"step": 2, "loss": 0.1}, {"step": 2, "train_runtime": 3.0, "train_loss": 0.1}]
    rows = normalize_history(hist)
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["eval_reward"] == 0.2 and rows[1]["train_runtime"] == 3.0
    # column form: NaN means "not logged"
    assert "reward" not in normalize_history(pd.DataFrame(hist))[1]


def test_online_detector_equals_offline_on_every_prefix(rng):
    hist = _healthy(rng)
    for row in hist[60:]:
        row["reward"] = 0.1
    det = InstabilityDetector(start_reward=0.34)
    fired = [det.update(row) for row in hist]
    step = next(lab.step for lab in fired if lab is not None)
    assert sum(lab is not None for lab in fired) == 1  # latched
    for k in (step - 1, step):
        prefix = first_unstable_step(hist[:k], start_reward=0.34)
        assert prefix == (step if k == step else None)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window": 0}, "window"),
        ({"drop_threshold": 0.0}, "drop_threshold"),
        ({"kl_threshold": -1.0}, "kl_threshold"),
        ({"spike_factor": 1.0}, "spike_factor"),
        ({"grad_points": 3}, "grad_points"),
        ({"margin": -0.1}, "margin"),
        ({"start_reward": math.nan}, "start_reward"),
    ],
)
def test_bad_thresholds(kwargs, match):
    with pytest.raises(ValueError, match=match):
        InstabilityDetector(**kwargs)


def test_bad_histories():
    with pytest.raises(InsufficientDataError, match="at least one logged row"):
        label_run([])
    with pytest.raises(InsufficientDataError, match=r"Reward-like keys present: \['rewards/f"):
        label_run([{"step": 1, "loss": 0.1, "rewards/f/mean": 0.3}])
    with pytest.raises(TypeError, match="list of dicts"):
        label_run("run.json")
    with pytest.raises(TypeError, match="non-dict"):
        label_run([1, 2, 3])
    with pytest.raises(ValueError, match="equal lengths"):
        label_run({"reward": [0.1, 0.2], "step": [1]})
    with pytest.raises(ValueError, match="must increase"):
        det = InstabilityDetector()
        det.update({"step": 2, "reward": 0.1})
        det.update({"step": 2, "reward": 0.1})


# ------------------------------------------------------------- user-acceptance regressions
@pytest.mark.parametrize("row", [{"reward": 0.3}, {"step": None, "reward": 0.3},
                                 {"step": "x", "reward": 0.3}, {"step": float("nan")}])
def test_detector_row_without_step_is_a_clear_error(row) -> None:
    # before: a bare KeyError('step') / ValueError from int()
    with pytest.raises(ValueError, match="`row` must be a mapping with a numeric 'step'"):
        InstabilityDetector().update(row)
