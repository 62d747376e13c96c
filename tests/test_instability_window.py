"""The trailing-window mean of the instability rule, against a full-scan oracle."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from advisor.instability import InstabilityDetector


@pytest.mark.parametrize("stride", [1, 3, 7])
def test_tail_mean_matches_full_scan_on_sparse_steps(stride: int) -> None:
    rng = np.random.default_rng(stride)
    det = InstabilityDetector(start_reward=0.0, window=30)
    steps, rewards = [], []
    step = 0
    for _ in range(400):
        step += int(rng.integers(1, stride + 1))
        r = float(rng.uniform(0.3, 0.4))
        row = {"step": step}
        if rng.random() < 0.7:  # some steps log no reward: it is carried forward
            row["reward"] = r
        det.update(row)
        steps.append(step)
        if "reward" in row:
            rewards.append(r)
        elif rewards:
            rewards.append(rewards[-1])
        got = det.tail_mean()
        if rewards:
            aligned = list(zip(steps[-len(rewards):], rewards, strict=True))
            want = statistics.fmean(v for s, v in aligned if s > step - 30)
            assert got == pytest.approx(want, abs=1e-12)
