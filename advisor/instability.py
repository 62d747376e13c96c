"""The one instability rule shared by the pilot, the pruner and the diagnostics.

A run is **unstable** at the first optimizer step t at which any *event* fires (first passage;
`InstabilityDetector` checks them online, one log row at a time), or, for a finished run, if the
*end rule* holds. Rules and defaults (real-trl-findings.md sections 1, 6 and 9):

* ``nonfinite``: a logged ``reward``, ``loss``, ``grad_norm``, ``kl`` or ``entropy`` is NaN/inf;
  ``exception``: the run raised (``label_run(..., error=...)``).
* ``drop_from_peak``: the mean reward of the trailing ``window`` (30) steps is more than
  ``drop_threshold`` (0.15) below the run's peak, the maximum of that same trailing mean so far
  (over windows spanning at least min(window, 10) steps). real-trl-findings.md took the peak of
  a 3-point smooth; the same-window peak has no lag bias on a rising curve (a 30-step mean
  trails a fast rise by more than 0.15), so the online and offline forms agree.
* ``declined_below_start``: once min(window, 10) steps are logged, the trailing mean is more
  than ``decline_threshold`` (0.1) below ``start_reward`` (far above the edge the reward declines
  from step one). 0.1 is 3 standard errors of a 3-point start at 64 binary samples per step.
* ``kl_blowup``: the rolling median of the last ``kl_points`` (5) logged ``kl`` values exceeds
  ``kl_threshold`` (5.0). A median, because TRL's k3 estimate throws single-step spikes to 5-120
  in healthy runs (section 9).
* ``noise_collapse``: a ``grad_norm`` at least ``spike_factor`` (10) times the median of the
  previous ``grad_points`` (20, at least 5) non-zero values, followed within
  ``entropy_lag_steps`` (6) steps by an entropy at least ``entropy_jump`` (0.5 nats) above its
  median over the 5 points before the spike (the SGD collapse anatomy of section 4).
* end rule ``no_net_gain``: the final-window mean is below ``start_reward + margin`` (0.05):
  the run never rose, or fell back to where it started.

Rewards are carried forward over rows that do not log them (with K_ref > 1 TRL logs ``reward``
only on generation steps), and windows are measured in optimizer steps. ``start_reward``
defaults to the mean of the first 3 logged rewards.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from advisor._validation import check_int
from advisor._validation import check_interval
from advisor.exceptions import InsufficientDataError


__all__ = ["InstabilityDetector", "InstabilityLabel", "first_unstable_step", "label_run",
           "normalize_history", "trial_collapsed"]

_CHECKED_KEYS = ("reward", "loss", "grad_norm", "kl", "entropy")
_START_POINTS = 3  # logged rewards averaged for the default start reward
_PRE_SPIKE_POINTS = 5  # entropy points before a spike that set its baseline


@dataclasses.dataclass(frozen=True)
class InstabilityLabel:
    """The verdict of the instability rule on one run (or a prefix of it).

    Attributes:
        unstable: Whether any rule fired.
        reason: ``"stable"``, ``"nonfinite"``, ``"exception"``, ``"drop_from_peak"``,
            ``"declined_below_start"``, ``"kl_blowup"``, ``"noise_collapse"`` or
            ``"no_net_gain"``.
        step: Optimizer step at which the rule fired (``None`` if stable).
        evidence: The values compared and the threshold crossed (reason-specific keys).
        start_reward: The start reward used (``nan`` if fewer than 3 rewards were logged).
        n_steps: Last optimizer step seen.

    Example:
        >>> InstabilityLabel(unstable=False, reason="stable", step=None).unstable
        False
    """

    unstable: bool
    reason: str
    step: int | None
    evidence: Mapping[str, float] = dataclasses.field(default_factory=dict)
    start_reward: float = math.nan
    n_steps: int = 0


def _num(value: Any) -> float | None:
    """A logged number as float; None for missing or non-numeric entries."""
    if value is None or isinstance(value, (str, bytes, bool)):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def normalize_history(history: Any, *, nan_is_missing: bool | None = None) -> list[dict[str, Any]]:
    """Turn a TRL ``log_history``, a DataFrame or a dict of columns into per-step rows.

    Rows are sorted by ``step`` and rows of the same step are merged (TRL writes the train row,
    eval rows and a final summary row separately). ``None`` means "not logged". In the column
    forms (DataFrame, dict) NaN also means "not logged" (that is how missing keys show up there),
    while ``inf`` stays a non-finite value; in a list of dicts a NaN is a real NaN.

    Args:
        history: ``trainer.state.log_history`` (list of dicts), a ``pandas.DataFrame`` or a
            mapping of equal-length columns. A ``step`` column is optional (default 1..n).
        nan_is_missing: Override the NaN convention above.

    Returns:
        A list of dicts with an integer ``"step"`` key, sorted by step.

    Raises:
        TypeError: Unsupported type.
        InsufficientDataError: No rows.

    Example:
        >>> normalize_history({"reward": [0.1, float("nan"), 0.3]})[1]
        {'step': 2}
    """
    if hasattr(history, "to_dict") and hasattr(history, "columns"):  # pandas.DataFrame
        history = {str(c): history[c].tolist() for c in history.columns}
    if isinstance(history, Mapping):
        rows = _rows_from_columns(history)
        nan_missing = True if nan_is_missing is None else nan_is_missing
    elif isinstance(history, Sequence) and not isinstance(history, (str, bytes)):
        if not all(isinstance(r, Mapping) for r in history):
            raise TypeError("`history` must be a list of dicts (trainer.state.log_history), a "
                            "DataFrame or a dict of columns, got a list with non-dict items.")
        rows = [dict(r) for r in history]
        nan_missing = False if nan_is_missing is None else nan_is_missing
    else:
        raise TypeError("`history` must be a list of dicts (trainer.state.log_history), a "
                        f"DataFrame or a dict of columns, got {type(history).__name__}.")
    merged: dict[int, dict[str, Any]] = {}
    for i, row in enumerate(rows):
        step = row.get("step", i + 1)
        step = int(step) if step is not None and math.isfinite(float(step)) else i + 1
        target = merged.setdefault(step, {"step": step})
        for key, value in row.items():
            if key == "step" or value is None:
                continue
            if nan_missing and isinstance(value, (int, float)) and math.isnan(float(value)):
                continue
            target[key] = value
    if not merged:
        raise InsufficientDataError("`history` must contain at least one logged row, got none. "
                                    "Pass trainer.state.log_history after training started.")
    return [merged[s] for s in sorted(merged)]


def _rows_from_columns(columns: Mapping[str, Any]) -> list[dict[str, Any]]:
    cols = {str(k): list(v) for k, v in columns.items()}
    lengths = {len(v) for v in cols.values()}
    if len(lengths) > 1:
        raise ValueError(f"`history` columns must have equal lengths, got {sorted(lengths)}.")
    n = lengths.pop() if lengths else 0
    return [{k: v[i] for k, v in cols.items()} for i in range(n)]


class InstabilityDetector:
    """Incremental form of the rule: feed log rows in step order, read `label`.

    The first rule that fires is latched. The pruner and ``AdvisorCallback`` use this class;
    `label_run` feeds a whole history through it and adds the end rule.

    Args:
        start_reward: Reward before training; ``None`` = mean of the first 3 logged rewards.
        reward_key: Logged key of the mean reward.
        window: Trailing window in optimizer steps for the tail mean (default 30).
        drop_threshold: Drop of the tail mean below the peak that counts as a collapse (0.15).
        margin: Reward margin above the start for the end rule (0.05).
        decline_threshold: Fall of the trailing mean below the start that counts (0.1).
        kl_threshold: Threshold of the rolling median of ``kl`` (5.0).
        kl_points: Logged ``kl`` values in the rolling median (5).
        spike_factor: Grad-norm spike factor over the running median (10).
        grad_points: Previous grad-norm values in the running median (20).
        entropy_jump: Entropy rise in nats after a spike that marks a collapse (0.5).
        entropy_lag_steps: Steps after a spike within which the entropy must jump (6).

    Example:
        >>> det = InstabilityDetector(start_reward=0.3)
        >>> det.update({"step": 1, "reward": 0.3, "kl": 1e3}) is None
        True
        >>> det.update({"step": 2, "loss": float("nan")}).reason
        'nonfinite'
    """

    def __init__(self, *, start_reward: float | None = None, reward_key: str = "reward",
                 window: int = 30, drop_threshold: float = 0.15,
                 margin: float = 0.05, decline_threshold: float = 0.1,
                 kl_threshold: float = 5.0, kl_points: int = 5,
                 spike_factor: float = 10.0, grad_points: int = 20, entropy_jump: float = 0.5,
                 entropy_lag_steps: int = 6) -> None:
        self.start_reward = (None if start_reward is None
                             else check_interval("start_reward", start_reward))
        self.reward_key = reward_key
        self.window = check_int("window", window, low=1)
        self.drop_threshold = check_interval("drop_threshold", drop_threshold, low=0.0,
                                             low_closed=False)
        self.margin = check_interval("margin", margin, low=0.0)
        self.decline_threshold = check_interval("decline_threshold", decline_threshold, low=0.0,
                                                low_closed=False)
        self.kl_threshold = check_interval("kl_threshold", kl_threshold, low=0.0,
                                           low_closed=False)
        self.kl_points = check_int("kl_points", kl_points, low=1)
        self.spike_factor = check_interval("spike_factor", spike_factor, low=1.0,
                                           low_closed=False)
        self.grad_points = check_int("grad_points", grad_points, low=5)
        self.entropy_jump = check_interval("entropy_jump", entropy_jump, low=0.0,
                                           low_closed=False)
        self.entropy_lag_steps = check_int("entropy_lag_steps", entropy_lag_steps, low=0)
        self.label: InstabilityLabel | None = None
        self.steps: list[int] = []
        self.rewards: list[float] = []  # carried forward, one per row once a reward was logged
        self._logged_rewards: list[float] = []
        self._peak = -math.inf
        self._kl: list[float] = []
        self._grad: list[float] = []
        self._entropy: list[tuple[int, float]] = []
        self._spikes: list[tuple[int, float, float, float]] = []  # step, norm, median, H0

    @property
    def start(self) -> float:
        """The start reward in use (nan until it is known)."""
        if self.start_reward is not None:
            return self.start_reward
        if len(self._logged_rewards) >= _START_POINTS:
            return statistics.fmean(self._logged_rewards[:_START_POINTS])
        return math.nan

    @property
    def peak(self) -> float:
        """Maximum of the trailing-window mean so far (-inf before min(window, 10) steps)."""
        return self._peak

    @property
    def spikes(self) -> list[tuple[int, float, float, float]]:
        """Grad-norm spikes so far: (step, norm, running median, entropy median before)."""
        return list(self._spikes)

    def tail_mean(self) -> float:
        """Mean carried-forward reward over the trailing ``window`` steps (nan if none)."""
        if not self.rewards:
            return math.nan
        last = self.steps[-1]
        # steps are strictly increasing integers, so the window holds at most `window` rows:
        # look at those only (O(window) per update, not O(steps))
        n = min(self.window, len(self.rewards))
        vals = [r for s, r in zip(self.steps[-n:], self.rewards[-n:], strict=True)
                if s > last - self.window]
        return statistics.fmean(vals)

    def update(self, row: Mapping[str, Any]) -> InstabilityLabel | None:
        """Feed one log row (must contain ``step``); return the label when a rule first fires.

        Rows after the first firing are recorded but do not change the latched label.
        """
        raw = _num(row.get("step")) if isinstance(row, Mapping) else None
        if raw is None or not math.isfinite(raw):
            got = row.get("step") if isinstance(row, Mapping) else type(row).__name__
            raise ValueError(f"`row` must be a mapping with a numeric 'step' (the optimizer "
                             f"step, as in trainer.state.log_history), got step={got!r}.")
        step = int(row["step"])
        if self.steps and step <= self.steps[-1]:
            raise ValueError(f"`step` must increase, got {step} after {self.steps[-1]}.")
        self.steps.append(step)
        fired = self._check_nonfinite(step, row)
        self._record(row)
        if self.label is None:
            fired = fired or self._check_events(step)
            if fired is not None:
                self.label = fired
                return fired
        return None

    def _label(self, reason: str, step: int, **evidence: float) -> InstabilityLabel:
        return InstabilityLabel(unstable=True, reason=reason, step=step, evidence=evidence,
                                start_reward=self.start, n_steps=step)

    def _check_nonfinite(self, step: int, row: Mapping[str, Any]) -> InstabilityLabel | None:
        for key in (self.reward_key, *_CHECKED_KEYS):
            value = _num(row.get(key))
            if value is not None and not math.isfinite(value):
                return self._label("nonfinite", step, **{key: value})
        return None

    def _record(self, row: Mapping[str, Any]) -> None:
        step = int(row["step"])
        value = _num(row.get(self.reward_key))
        if value is not None and math.isfinite(value):
            self._logged_rewards.append(value)
            self.rewards.append(value)
        elif self.rewards:
            self.rewards.append(self.rewards[-1])
        if self.rewards and step - self.steps[-len(self.rewards)] + 1 >= min(self.window, 10):
            self._peak = max(self._peak, self.tail_mean())
        kl = _num(row.get("kl"))
        if kl is not None and math.isfinite(kl):
            self._kl.append(kl)
        norm = _num(row.get("grad_norm"))
        if norm is not None and math.isfinite(norm) and norm > 0:
            # a zero norm means every group was degenerate (no signal), not a small gradient
            self._grad_spike(step, norm)
            self._grad.append(norm)
        h = _num(row.get("entropy"))
        if h is not None and math.isfinite(h):
            self._entropy.append((step, h))

    def _grad_spike(self, step: int, norm: float) -> None:
        """Record a spike: ``norm`` >= spike_factor x median of the previous grad norms."""
        previous = self._grad[-self.grad_points:]
        if len(previous) < 5:  # too few points for a meaningful running median
            return
        median = statistics.median(previous)
        before = [h for _, h in self._entropy[-_PRE_SPIKE_POINTS:]]
        if median > 0 and norm >= self.spike_factor * median and before:
            self._spikes.append((step, norm, median, statistics.median(before)))

    def _check_events(self, step: int) -> InstabilityLabel | None:
        tail = self.tail_mean()
        if self.rewards and self._peak > -math.inf and tail < self._peak - self.drop_threshold:
            return self._label("drop_from_peak", step, tail_mean=tail, peak=self._peak,
                               drop=self._peak - tail, threshold=self.drop_threshold)
        start = self.start
        n = step - self.steps[-len(self.rewards)] + 1 if self.rewards else 0
        if n >= min(self.window, 10) and tail < start - self.decline_threshold:
            return self._label("declined_below_start", step, tail_mean=tail,
                               start_reward=start, threshold=start - self.decline_threshold)
        if len(self._kl) >= self.kl_points:
            med = statistics.median(self._kl[-self.kl_points:])
            if med > self.kl_threshold:
                return self._label("kl_blowup", step, kl_median=med,
                                   threshold=self.kl_threshold)
        return self._check_noise_collapse(step)

    def _check_noise_collapse(self, step: int) -> InstabilityLabel | None:
        if not self._entropy or self._entropy[-1][0] != step:
            return None
        h = self._entropy[-1][1]
        for s, norm, median, h0 in self._spikes:
            if s <= step <= s + self.entropy_lag_steps and h - h0 >= self.entropy_jump:
                return self._label("noise_collapse", step, spike_step=s, grad_norm=norm,
                                   grad_median=median, spike_factor=norm / median,
                                   entropy_before=h0, entropy=h, threshold=self.entropy_jump)
        return None


def _feed(history: Any, kwargs: Mapping[str, Any]) -> InstabilityDetector:
    det = InstabilityDetector(**kwargs)
    rows = normalize_history(history)
    for row in rows:
        det.update(row)
    if not det._logged_rewards:
        keys = sorted({k for r in rows for k in r if "reward" in k})
        raise InsufficientDataError(
            f"`history` must log the reward metric {det.reward_key!r}, got no finite value. "
            f"Reward-like keys present: {keys or 'none'}; pass reward_key=... to pick one.")
    return det


def first_unstable_step(history: Any, **kwargs: Any) -> int | None:
    """First optimizer step at which an event rule fires (``None`` if none does).

    This is the online form used on a prefix: it ignores the end rule. Keyword arguments are
    those of `InstabilityDetector`.

    Example:
        >>> hist = [{"step": s, "reward": 0.8 if s < 20 else 0.1} for s in range(1, 41)]
        >>> first_unstable_step(hist)  # the tail mean falls 0.1 below the start 4 steps later
        23
    """
    det = _feed(history, kwargs)
    return None if det.label is None else det.label.step


def label_run(history: Any, *, start_reward: float | None = None,
              error: BaseException | str | None = None, **kwargs: Any) -> InstabilityLabel:
    """Label a run stable or unstable with the shared rule (see the module docstring).

    Args:
        history: TRL ``log_history`` (list of dicts), a DataFrame or a dict of columns.
        start_reward: Reward before training (the pilot's p0); ``None`` = mean of the first 3
            logged rewards.
        error: The exception (or its message) if the run raised.
        **kwargs: Thresholds of `InstabilityDetector` (keyword-only, documented there).

    Returns:
        `InstabilityLabel`; the step is the earliest event, or for ``no_net_gain`` the first step
        from which the trailing mean stays below ``start + margin``.

    Raises:
        InsufficientDataError: Empty history or no finite reward logged.

    Example:
        >>> flat = {"reward": [0.3] * 50}
        >>> label_run(flat).reason
        'no_net_gain'
        >>> rising = {"reward": [0.3 + 0.01 * t for t in range(50)]}
        >>> label_run(rising).unstable
        False
    """
    det = _feed(history, {"start_reward": start_reward, **kwargs})
    last = det.steps[-1]
    if error is not None:
        return InstabilityLabel(unstable=True, reason="exception", step=last,
                                evidence={}, start_reward=det.start, n_steps=last)
    if det.label is not None:
        return dataclasses.replace(det.label, n_steps=last)
    tail, start = det.tail_mean(), det.start
    if tail < start + det.margin:
        return InstabilityLabel(unstable=True, reason="no_net_gain",
                                step=_stays_below_from(det, start + det.margin),
                                evidence={"tail_mean": tail, "start_reward": start,
                                          "threshold": start + det.margin},
                                start_reward=start, n_steps=last)
    return InstabilityLabel(unstable=False, reason="stable", step=None,
                            evidence={"tail_mean": tail, "peak": det.peak},
                            start_reward=start, n_steps=last)


def _stays_below_from(det: InstabilityDetector, level: float) -> int:
    """First step from which the trailing-window mean stays below ``level`` to the end."""
    steps = det.steps[-len(det.rewards):]
    first = steps[-1]
    for i in range(len(steps) - 1, -1, -1):
        window = [r for s, r in zip(steps[:i + 1], det.rewards[:i + 1], strict=True)
                  if s > steps[i] - det.window]
        if statistics.fmean(window) >= level:
            break
        first = steps[i]
    return first


def trial_collapsed(user_attrs: Mapping[str, Any]) -> bool:
    """Whether an Optuna trial collapsed, read from its ``advisor:`` user attributes.

    The one reading shared by the sampler's online update, the sweep summary and the report: the
    objective's ``advisor:collapsed`` (this rule fired during training) or the pruner's
    ``advisor:prune_reason == "collapse"``. A run that merely failed to improve is not a collapse.

    Example:
        >>> trial_collapsed({"advisor:prune_reason": "collapse"}), trial_collapsed({})
        (True, False)
    """
    return (user_attrs.get("advisor:collapsed") is True
            or user_attrs.get("advisor:prune_reason") == "collapse")
