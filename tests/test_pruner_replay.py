"""The pruner's incremental instability replay against a full replay (the oracle)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from advisor._pruner_replay import ReplayCache
from advisor.instability import InstabilityDetector
from advisor.instability import normalize_history


def full_replay(steps: np.ndarray, rewards: np.ndarray, health: dict[str, list] | None,
                start: float | None) -> str | None:
    rows: list[dict[str, Any]] = [{"step": int(s), "reward": float(r)}
                                  for s, r in zip(steps, rewards, strict=True)]
    if health and any(len(v) for v in health.values()):
        rows += normalize_history(dict(health))
    det = InstabilityDetector(start_reward=start)
    for row in normalize_history(rows):
        if det.update(row) is not None:
            break
    return None if det.label is None else str(det.label.reason)


def history(kind: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray,
                                                                  dict[str, list]]:
    t = np.arange(n)
    reward = 0.3 + 0.4 * (1 - np.exp(-t / 20)) + 0.03 * rng.normal(size=n)
    grad = 1.0 + 0.1 * rng.random(n)
    entropy = np.full(n, 0.5)
    kl = np.full(n, 0.01)
    at = int(rng.integers(n // 3, n - 5))
    if kind == "drop":
        reward[at:] -= 0.4
    elif kind == "decline":
        reward[at:] = 0.05
    elif kind == "kl":
        kl[at:] = 9.0
    elif kind == "noise":
        grad[at] = 50.0
        entropy[at + 1:] = 1.5
    elif kind == "nan_grad":
        grad[at] = math.inf
    health = {"step": [int(s) for s in t], "grad_norm": list(grad), "entropy": list(entropy),
              "kl": list(kl)}
    for col in ("entropy", "kl"):  # some steps log no entropy / kl
        for i in rng.choice(n, size=n // 5, replace=False):
            health[col][i] = None
    return t.astype(float), reward, health


@pytest.mark.parametrize("kind", ["stable", "drop", "decline", "kl", "noise", "nan_grad"])
@pytest.mark.parametrize("health_first", [True, False])
def test_incremental_replay_equals_full_replay(kind: str, health_first: bool) -> None:
    rng = np.random.default_rng(len(kind) + 7 * health_first)
    steps, rewards, health = history(kind, 150, rng)
    cache = ReplayCache()
    seen = {k: [] for k in health}
    fired = []
    for i in range(steps.size):
        # the objective stores the step's health before (or after) its report
        if health_first:
            for k in health:
                seen[k].append(health[k][i])
        got = cache.reason("t", steps[:i + 1], rewards[:i + 1], seen or None, 0.3)
        want = full_replay(steps[:i + 1], rewards[:i + 1], seen, 0.3)
        assert got == want, (kind, i)
        fired.append(got)
        if not health_first:
            for k in health:
                seen[k].append(health[k][i])
    if kind != "stable":  # the scenario really fires (else the test shows nothing)
        assert any(f is not None for f in fired)


def test_a_changed_history_or_start_is_replayed_from_scratch() -> None:
    rng = np.random.default_rng(3)
    steps, rewards, _ = history("drop", 120, rng)
    cache = ReplayCache()
    assert cache.reason("t", steps[:100], rewards[:100], None, None) == full_replay(
        steps[:100], rewards[:100], None, None)
    # same key, another trial's history (e.g. a reused id): must not reuse the cached state
    other = np.full(60, 0.5)
    assert cache.reason("t", steps[:60], other, None, None) is None
    # the start reward appears later (the objective stores it after a few steps)
    assert cache.reason("t", steps, rewards, None, 0.9) == full_replay(steps, rewards, None,
                                                                         0.9)


def test_many_trials_evict_least_recent_and_stay_correct() -> None:
    rng = np.random.default_rng(5)
    cache = ReplayCache(size=4)
    data = [history(k, 80, rng) for k in ("drop", "stable", "decline", "kl", "noise", "drop")]
    for i in range(10, 80, 7):
        for key, (s, r, h) in enumerate(data):
            part = {k: v[:i] for k, v in h.items()}
            assert cache.reason(key, s[:i], r[:i], part, None) == full_replay(
                s[:i], r[:i], part, None)


def test_bad_health_steps_raise_value_error_with_message() -> None:
    cache = ReplayCache()
    steps, rewards = np.arange(5.0), np.full(5, 0.5)
    with pytest.raises(ValueError, match="equal lengths"):
        cache.reason("t", steps, rewards, {"step": [0, 1], "kl": [0.1]}, None)
    with pytest.raises(ValueError, match="finite and increasing"):
        cache.reason("t", steps, rewards, {"step": [0, 2, 1], "kl": [0.1] * 3}, None)


@pytest.mark.parametrize("health_first", [True, False])
def test_replay_is_incremental(monkeypatch: pytest.MonkeyPatch, health_first: bool) -> None:
    """Each row reaches a detector O(1) times over the trial, not O(steps) times."""
    calls = []
    real = InstabilityDetector.update

    def counted(self: InstabilityDetector, row: Any) -> Any:
        calls.append(row["step"])
        return real(self, row)

    monkeypatch.setattr(InstabilityDetector, "update", counted)
    steps, rewards, health = history("stable", 300, np.random.default_rng(0))
    cache, seen = ReplayCache(), {k: [] for k in health}
    for i in range(steps.size):
        if health_first:
            for k in health:
                seen[k].append(health[k][i])
        assert cache.reason("t", steps[:i + 1], rewards[:i + 1], seen, 0.3) is None
        if not health_first:
            for k in health:
                seen[k].append(health[k][i])
    assert len(calls) <= 3 * steps.size  # a full replay per report would be ~45,000


def test_a_pickled_cache_starts_empty_and_still_answers() -> None:
    import pickle

    steps, rewards, health = history("drop", 120, np.random.default_rng(9))
    cache = ReplayCache()
    cache.reason("t", steps[:80], rewards[:80], None, None)
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.reason("t", steps, rewards, None, None) == full_replay(steps, rewards, None, None)


def test_a_failed_replay_drops_its_half_fed_entry() -> None:
    cache = ReplayCache()
    steps = np.arange(30.0)
    huge = np.where(steps % 2 == 1, 1e308, 0.0)  # the trailing mean overflows mid-feed
    cache.reason("t", steps[:5], huge[:5] * 0, None, None)
    with pytest.raises(OverflowError):
        cache.reason("t", steps, huge, None, None)
    # the next call starts from scratch instead of failing on the half-fed detector
    # ("`step` must increase" at every later report)
    calm = np.full(30, 0.5)
    assert cache.reason("t", steps, calm, None, None) == full_replay(steps, calm, None, None)
