"""How the TRL objective stores the health columns the pruner reads (no TRL run needed)."""

from __future__ import annotations

from typing import Any

from advisor.instability import InstabilityDetector
from advisor.pilot._trial_callback import _HEALTH_KEYS
from advisor.pilot._trial_callback import _set_health


class FakeTrial:
    def __init__(self) -> None:
        self.user_attrs: dict[str, Any] = {}
        self.writes = 0

    def set_user_attr(self, key: str, value: Any) -> None:
        if key == "advisor:health":
            self.writes += 1
            value = {k: list(v) for k, v in value.items()}  # storage keeps a snapshot
        self.user_attrs[key] = value


def run(n: int) -> tuple[FakeTrial, dict[str, list]]:
    trial, det = FakeTrial(), InstabilityDetector()
    health: dict[str, list] = {key: [] for key in ("step", *_HEALTH_KEYS)}
    for step in range(1, n + 1):
        row = {"step": step, "reward": 0.5, "grad_norm": 1.0}
        det.update(row)
        _set_health(trial, row, det, health)
    return trial, health


def test_short_runs_write_every_row() -> None:
    trial, health = run(200)
    assert trial.writes == 200
    assert trial.user_attrs["advisor:health"]["step"] == list(range(1, 201))
    assert trial.user_attrs["advisor:start_reward"] == 0.5


def test_long_runs_write_a_bounded_number_of_times_and_never_lag_far() -> None:
    trial, health = run(5000)
    assert trial.writes < 700  # one write per row would be 5,000 (O(steps^2) traffic)
    stored = trial.user_attrs["advisor:health"]["step"]
    assert stored == list(range(1, len(stored) + 1))  # a prefix, in order
    assert 5000 - len(stored) <= 5000 // 128 + 1  # at most ~1% of the run behind


def test_a_firing_rule_is_written_at_once() -> None:
    trial, det = FakeTrial(), InstabilityDetector()
    health: dict[str, list] = {key: [] for key in ("step", *_HEALTH_KEYS)}
    for step in range(1, 1001):
        row = {"step": step, "reward": 0.5, "grad_norm": float("inf") if step == 777 else 1.0}
        det.update(row)
        _set_health(trial, row, det, health)
        if step == 777:
            assert trial.user_attrs["advisor:health"]["step"][-1] == 777
