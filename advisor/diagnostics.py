"""Failure-mode diagnostics from TRL GRPO logs, offline (`diagnose`) and live (`AdvisorCallback`).

Modes (theory.md section 5, real-trl-findings.md sections 4 and 6):

* ``reward_hacking``: train reward gains headroom while a held-out metric does not; compares
  the headroom-normalised gains (R(end) - R(0)) / (R_max - R(0)). Needs ``eval_metric``.
* ``advantage_degeneracy``: ``frac_reward_zero_std`` >= 0.5 with room left to learn, against the
  binary-reward prediction p^G + (1 - p)^G (G = ``num_generations``).
* ``policy_concentration``: token entropy below 0.3 of its start while the reward stopped
  rising well below the maximum.
* ``dynamical_instability``: divergence or collapse by the shared instability rule
  (`advisor.instability`), or a visible oscillation of the fitted reward trajectory; checked
  against a `StabilityModel` when one is given.
* ``noise_collapse``: a grad-norm spike (>= 10x its running median), then an entropy jump within
  6 steps, then a reward drop: the rare-event collapse that sets the edge for SGD.
* ``too_slow``: the fitted time constant exceeds the training horizon.

Rewards (and the other generation-time metrics) are carried forward over rows that do not log
them. Confidences are heuristic scores in [0.5, 1) that grow with how far a threshold is crossed.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from advisor._validation import check_options
from advisor.exceptions import AdvisorError
from advisor.instability import InstabilityDetector
from advisor.instability import InstabilityLabel
from advisor.instability import label_run
from advisor.instability import normalize_history


__all__ = ["MODES", "DiagnosisReport", "Finding", "diagnose", "diagnose_main", "load_history",
           "AdvisorCallback"]  # noqa: F822 (AdvisorCallback is built lazily by __getattr__)

MODES = ("reward_hacking", "advantage_degeneracy", "policy_concentration",
         "dynamical_instability", "noise_collapse", "too_slow")
_WINDOW = 20  # steps in the "final window" of the per-mode checks
_DEGENERATE = 0.5  # half the groups carry no gradient
_ENTROPY_RATIO = 0.3
_HEADROOM = 0.25  # reward left below max_reward that counts as "plateaued early"
_LOGGER = logging.getLogger("trl.advisor")


@dataclasses.dataclass(frozen=True)
class Finding:
    """One diagnosed failure mode.

    Attributes:
        mode: One of `MODES`.
        steps: First and last optimizer step of the evidence.
        evidence: The metric values compared and the thresholds they crossed.
        confidence: Heuristic score in [0.5, 1).
        recommendation: One plain recommendation.
        config_changes: Concrete ``GRPOConfig`` values that follow from it (may be empty).

    Example:
        >>> Finding(mode="too_slow", steps=(1, 50), evidence={}, confidence=0.7,
        ...         recommendation="raise learning_rate").mode
        'too_slow'
    """

    mode: str
    steps: tuple[int, int]
    evidence: Mapping[str, float]
    confidence: float
    recommendation: str
    config_changes: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class DiagnosisReport:
    """Findings of `diagnose` on one run.

    Attributes:
        findings: Diagnosed modes, most confident first.
        label: The shared instability label of the run.
        not_checked: Mode -> why it could not be checked (missing metric, too short).
        n_steps: Last optimizer step logged.
        start_reward: Start reward used (the given one, or the mean of the first 3 rewards).
        final_reward: Mean reward of the final window.
        n_dropped_nonfinite: Non-finite rewards dropped (``nan_policy="omit"``).

    Example:
        >>> rep = diagnose({"reward": [0.3 + 0.5 * (1 - 0.9 ** t) for t in range(60)]})
        >>> rep.healthy, sorted(rep.not_checked)[:2]
        (True, ['advantage_degeneracy', 'noise_collapse'])
    """

    findings: tuple[Finding, ...]
    label: InstabilityLabel
    not_checked: Mapping[str, str]
    n_steps: int
    start_reward: float
    final_reward: float
    n_dropped_nonfinite: int = 0

    @property
    def healthy(self) -> bool:
        """True when no mode was diagnosed."""
        return not self.findings

    def modes(self) -> list[str]:
        """The diagnosed modes, most confident first."""
        return [f.mode for f in self.findings]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes None)."""
        return _jsonable(dataclasses.asdict(self))

    def to_table(self) -> str:
        """A short fixed-width table of the findings and what was not checked."""
        lines = [f"{'mode':<22} {'steps':<11} {'conf':>4}  recommendation"]
        for f in self.findings:
            change = ", ".join(f"{k}={v!r}" for k, v in f.config_changes.items())
            lines.append(f"{f.mode:<22} {f'{f.steps[0]}-{f.steps[1]}':<11} "
                         f"{f.confidence:>4.2f}  {f.recommendation}"
                         + (f" [set {change}]" if change else ""))
        if not self.findings:
            lines.append(f"{'(none)':<22} {'':<11} {'':>4}  no failure mode found")
        lines += [f"not checked: {m}: {why}" for m, why in self.not_checked.items()]
        return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    return obj


# ------------------------------------------------------------------------------ loading
def load_history(source: Any) -> list[dict[str, Any]] | Any:
    """Return the log history held by ``source`` (file, Trainer, TrainerState, PilotResult).

    Files: ``.json`` (a list of rows, or a dict with ``log_history`` as in a checkpoint's
    ``trainer_state.json``), ``.jsonl`` (one row per line) or ``.csv`` (one column per metric).
    Anything else (a list of dicts, a DataFrame, a dict of columns) is returned unchanged.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file cannot be parsed or has an unsupported extension.

    Example:
        >>> load_history({"log_history": [{"step": 1, "reward": 0.2}]})
        [{'step': 1, 'reward': 0.2}]
    """
    if isinstance(source, (str, os.PathLike)):
        return _read_file(Path(source))
    for attr in ("log_history", "history"):  # TrainerState, one run
        if hasattr(source, attr) and not isinstance(source, Mapping):
            return getattr(source, attr)
    histories = getattr(source, "histories", None)  # PilotResult: name -> rows
    if isinstance(histories, Mapping) and not isinstance(source, Mapping):
        if len(histories) != 1:
            raise TypeError(f"`source` must hold one run, got a result with {len(histories)} "
                            f"runs; pass result.histories[name] (names: {sorted(histories)}).")
        return next(iter(histories.values()))
    state = getattr(source, "state", None)  # Trainer
    if state is not None and hasattr(state, "log_history"):
        return state.log_history
    if isinstance(source, Mapping) and "log_history" in source:
        return source["log_history"]
    return source


def _read_file(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"`source` must be an existing log file, got {str(path)!r}. "
                                "Save trainer.state.log_history with json.dump first.")
    suffix = path.suffix.lower()
    try:
        text = path.read_text()
        if suffix == ".json":
            return load_history(json.loads(text))
        if suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        if suffix == ".csv":
            rows = list(csv.DictReader(text.splitlines()))
            return [{k: _csv_value(v) for k, v in r.items() if k} for r in rows]
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"`source` must be a readable {suffix} log, got {str(path)!r}: {exc}. "
                         "Write trainer.state.log_history with json.dump.") from None
    raise ValueError(f"`source` must end in .json, .jsonl or .csv, got {str(path)!r}.")


def _csv_value(value: str | None) -> Any:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        return value


# ------------------------------------------------------------------------------ series
@dataclasses.dataclass(frozen=True)
class _Run:
    """Per-row arrays of one history (NaN where not logged; generation metrics carried)."""

    steps: np.ndarray
    reward: np.ndarray  # carried forward
    logged: np.ndarray  # True where the reward was logged
    cols: Mapping[str, np.ndarray]  # raw columns (NaN where missing)
    detector: InstabilityDetector
    label: InstabilityLabel
    lr: float
    knobs: Any

    def carried(self, key: str) -> np.ndarray:
        x = self.cols.get(key, np.full(len(self.steps), np.nan)).copy()
        for i in range(1, len(x)):
            if np.isnan(x[i]):
                x[i] = x[i - 1]
        return x

    def final(self, x: np.ndarray) -> float:
        sel = (self.steps > self.steps[-1] - _WINDOW) & np.isfinite(x)
        return float(np.mean(x[sel])) if sel.any() else math.nan

    @property
    def n_steps(self) -> int:
        return int(self.steps[-1])


def _build_run(history: Any, *, start_reward: float | None, reward_key: str, nan_policy: str,
               error: Any, knobs: Any) -> tuple[_Run, int]:
    rows = normalize_history(history)
    bad = [r["step"] for r in rows if isinstance(r.get(reward_key), (int, float))
           and not math.isfinite(float(r[reward_key]))]
    if bad and nan_policy == "raise":
        value = next(r[reward_key] for r in rows if r["step"] == bad[0])
        raise ValueError(f"`{reward_key}` must be finite, got {value!r}"
                         f" at step {bad[0]}. The run diverged there; pass nan_policy='omit' to "
                         "diagnose the finite part (the divergence is then reported).")
    label = label_run(rows, start_reward=start_reward, error=error, reward_key=reward_key)
    if bad:
        rows = [{k: v for k, v in r.items() if k != reward_key or r["step"] not in bad}
                for r in rows]
    det = InstabilityDetector(start_reward=start_reward, reward_key=reward_key)
    for r in rows:
        det.update(r)
    keys = {k for r in rows for k, v in r.items() if isinstance(v, (int, float))}
    cols = {k: np.array([float(r[k]) if isinstance(r.get(k), (int, float)) else np.nan
                         for r in rows]) for k in keys}
    logged = np.isfinite(cols.get(reward_key, np.full(len(rows), np.nan)))
    lrs = cols.get("learning_rate", np.array([np.nan]))
    lr = float(lrs[np.isfinite(lrs)][-1]) if np.isfinite(lrs).any() else math.nan
    if knobs is not None:
        lr = knobs.learning_rate
    reward = cols.get(reward_key, np.full(len(rows), np.nan)).copy()
    for i in range(1, len(reward)):  # carry forward over rows without a reward
        if np.isnan(reward[i]):
            reward[i] = reward[i - 1]
    run = _Run(steps=np.array([r["step"] for r in rows]), reward=reward, logged=logged,
               cols=cols, detector=det, label=label, lr=lr, knobs=knobs)
    return run, len(bad)


def _confidence(excess: float, scale: float) -> float:
    """0.5 at the threshold, towards 1 as the excess grows (heuristic, documented above)."""
    return round(min(0.99, 1.0 - 0.5 * math.exp(-max(excess, 0.0) / scale)), 2)


def _fmt_lr(lr: float) -> str:
    return f"{lr:.2g}"


# ------------------------------------------------------------------------------ modes
class _NotChecked(Exception):
    """A mode cannot be checked on this run; the message says why."""


@dataclasses.dataclass(frozen=True)
class _Context:
    max_reward: float
    horizon: int
    model: Any
    eval_metric: Any


def _lower_lr(run: _Run, factor: float, ctx: _Context) -> dict[str, Any]:
    """lr/factor, and at most half the model's edge when a model is given."""
    if not math.isfinite(run.lr):
        return {}
    lr = run.lr / factor
    verdict = _verdict(run, ctx)
    if verdict is not None and math.isfinite(verdict.max_learning_rate):
        lr = min(lr, 0.5 * verdict.max_learning_rate)
    return {"learning_rate": float(f"{lr:.2g}")}


def _verdict(run: _Run, ctx: _Context) -> Any:
    if ctx.model is None or run.knobs is None:
        return None
    return ctx.model.assess(run.knobs.to_params())


def _check_hacking(run: _Run, ctx: _Context) -> Finding | None:
    if ctx.eval_metric is None:
        raise _NotChecked("needs a held-out metric: pass eval_metric='eval_reward' (set "
                          "eval_strategy='steps' and an eval_dataset in GRPOConfig/GRPOTrainer)")
    if isinstance(ctx.eval_metric, str):
        ev = run.cols.get(ctx.eval_metric)
        if ev is None:
            keys = sorted(k for k in run.cols if k.startswith("eval_"))
            raise ValueError(f"`eval_metric` must be a logged key, got {ctx.eval_metric!r}. "
                             f"Logged eval keys: {keys or 'none'}.")
        sel = np.isfinite(ev)
        e_steps, e_vals = run.steps[sel], ev[sel]
    else:
        pairs = sorted(dict(ctx.eval_metric).items())
        e_steps = np.array([p[0] for p in pairs], dtype=float)
        e_vals = np.array([p[1] for p in pairs], dtype=float)
    if len(e_vals) < 3:
        raise _NotChecked(f"needs >= 3 held-out points, got {len(e_vals)}")
    start, end = run.detector.start, run.final(run.reward)
    g_train = (end - start) / max(ctx.max_reward - start, 1e-12)
    e0, e_end = float(e_vals[0]), float(np.mean(e_vals[-2:]))
    g_eval = (e_end - e0) / max(ctx.max_reward - e0, 1e-12)
    excess = g_train - g_eval
    if not (g_train >= 0.3 and excess >= 0.25 and g_eval < 0.5 * g_train):
        return None
    changes = {"beta": 0.04} if "kl" not in run.cols else {}
    return Finding(
        mode="reward_hacking", steps=(int(e_steps[0]), int(e_steps[-1])),
        evidence={"train_gain": g_train, "eval_gain": g_eval, "gap": excess,
                  "threshold_gap": 0.25, "n_eval_points": float(len(e_vals))},
        confidence=_confidence(excess - 0.25, 0.2) if len(e_vals) >= 5 else 0.5,
        recommendation="train reward gains headroom but the held-out metric does not: check "
                       "the reward function for exploits" + (", add a KL anchor (beta=0.04)"
                                                              if changes else ""),
        config_changes=changes)


def _predicted_degenerate(run: _Run, sel: np.ndarray) -> tuple[float, bool]:
    """Mean of p^G + (1-p)^G over ``sel``, and whether the rewards look binary.

    Binary check: TRL's ``reward_std`` is the batch std, sqrt(p(1-p)) for 0/1 rewards.
    """
    if run.knobs is None:
        return math.nan, False
    g, p = run.knobs.num_generations, run.reward[sel]
    std = run.carried("reward_std")[sel]
    binary = bool(np.isfinite(std).any()) and float(np.nanmedian(
        np.abs(std - np.sqrt(np.clip(p * (1 - p), 0, None))))) < 0.05
    return float(np.nanmean(p ** g + (1 - p) ** g)), binary


def _check_degeneracy(run: _Run, ctx: _Context) -> Finding | None:
    if "frac_reward_zero_std" not in run.cols:
        raise _NotChecked("needs the logged 'frac_reward_zero_std' (TRL >= 0.17 logs it)")
    frac = run.carried("frac_reward_zero_std")
    sel = run.steps > run.steps[-1] - _WINDOW
    f_obs, p = float(np.nanmean(frac[sel])), run.reward[sel]
    p_mean = float(np.nanmean(p))
    if f_obs < _DEGENERATE or p_mean >= ctx.max_reward - 0.15:
        return None  # near the maximum, equal rewards mean success, not a lack of signal
    predicted, binary = _predicted_degenerate(run, sel)
    ev = {"frac_reward_zero_std": f_obs, "threshold": _DEGENERATE, "reward": p_mean,
          "predicted_p^G+(1-p)^G": predicted if binary else math.nan}
    changes: dict[str, Any] = {}
    if binary and f_obs - predicted >= 0.2:
        text = (f"{f_obs:.0%} of groups have equal rewards, far above the {predicted:.0%} that "
                f"the success rate {p_mean:.2f} predicts: prompts are each always solved or "
                "always failed (policy concentration or a too easy/hard prompt set); filter "
                "prompts by pass rate or lower learning_rate")
        changes = _lower_lr(run, 2.0, ctx)
    elif run.knobs is not None and _group_size_for(p_mean, run.knobs.num_generations) is None:
        text = (f"{f_obs:.0%} of groups give zero advantage at success rate {p_mean:.2f}; no "
                "num_generations <= 64 fixes that: warm-start the policy or ease the prompts")
    elif run.knobs is not None:
        g_new = int(_group_size_for(p_mean, run.knobs.num_generations) or 64)
        bs = run.knobs.per_device_train_batch_size * g_new // run.knobs.num_generations
        changes = {"num_generations": g_new, "per_device_train_batch_size": bs}
        text = (f"{f_obs:.0%} of groups give zero advantage; raise num_generations to {g_new} "
                f"(per_device_train_batch_size={bs} keeps the prompts per step)")
    else:
        text = (f"{f_obs:.0%} of groups give zero advantage; raise num_generations (pass "
                "config= to get a concrete value)")
    first = run.steps[np.argmax(_rolling(frac, 5) >= _DEGENERATE)]
    return Finding(mode="advantage_degeneracy", steps=(int(first), run.n_steps), evidence=ev,
                   confidence=_confidence(f_obs - _DEGENERATE, 0.1), recommendation=text,
                   config_changes=changes)


def _group_size_for(p: float, g: int, target: float = 0.25) -> int | None:
    """Smallest even G' > G with p^G' + (1-p)^G' <= target (None if no G' <= 64 does)."""
    for g_new in range(max(g + 2, 4) - (g % 2), 65, 2):
        if p ** g_new + (1 - p) ** g_new <= target:
            return g_new
    return None


def _rolling(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    for i in range(len(x)):
        w = x[max(0, i - n + 1): i + 1]
        if np.isfinite(w).any():
            out[i] = np.nanmean(w)
    return out


def _check_concentration(run: _Run, ctx: _Context) -> Finding | None:
    if "entropy" not in run.cols:
        raise _NotChecked("needs the logged 'entropy'")
    h = run.cols["entropy"]
    h = h[np.isfinite(h)]
    if len(h) < 2 * _WINDOW:
        raise _NotChecked(f"needs >= {2 * _WINDOW} entropy points, got {len(h)}")
    h0, h_end = float(np.mean(h[:5])), run.final(run.cols["entropy"])
    r = run.reward
    mid = run.steps[-1] / 2  # mean reward of the window ending half-way through the run
    mid_sel = (run.steps > mid - _WINDOW) & (run.steps <= mid) & np.isfinite(r)
    late_gain = run.final(r) - float(np.mean(r[mid_sel])) if mid_sel.any() else math.nan
    end = run.final(r)
    plateaued = end <= ctx.max_reward - _HEADROOM and not late_gain >= 0.05  # nan: unknown
    if not (h_end < _ENTROPY_RATIO * h0 and plateaued):
        return None
    changes = _lower_lr(run, 2.0, ctx)
    if "kl" not in run.cols:
        changes["beta"] = 0.04
    hs = _rolling(run.cols["entropy"], 5)
    first = run.steps[np.argmax(hs < 0.5 * h0)] if (hs < 0.5 * h0).any() else run.steps[0]
    return Finding(
        mode="policy_concentration", steps=(int(first), run.n_steps),
        evidence={"entropy_start": h0, "entropy_end": h_end, "threshold_ratio": _ENTROPY_RATIO,
                  "reward_end": end, "late_reward_gain": late_gain,
                  "headroom_threshold": ctx.max_reward - _HEADROOM},
        confidence=_confidence((_ENTROPY_RATIO * h0 - h_end) / h0 + (ctx.max_reward - _HEADROOM
                                                                     - end), 0.2),
        recommendation="the policy concentrated (entropy collapsed) and the reward plateaued "
                       "early: lower learning_rate" + (" and anchor it with beta=0.04"
                                                       if "beta" in changes else ""),
        config_changes=changes)


def _check_dynamics(run: _Run, ctx: _Context) -> Finding | None:
    label, verdict = run.label, _verdict(run, ctx)
    ev: dict[str, float] = {}
    if verdict is not None:
        ev.update(model_margin=verdict.margin, model_max_learning_rate=verdict.max_learning_rate)
    osc = _oscillation(run)
    if osc is not None:
        ev.update(osc)
    diverged = label.unstable and label.reason not in ("no_net_gain", "noise_collapse")
    if not diverged and osc is None:
        return None
    if diverged:
        ev = {"reason_" + label.reason: 1.0, **label.evidence, **ev}
        peak_at = int(run.steps[int(np.nanargmax(_rolling(run.reward, 10)))])
        steps = (min(peak_at, int(label.step or peak_at)), int(label.step or peak_at))
        why = {"drop_from_peak": "the reward fell from its peak",
               "declined_below_start": "the reward declined below its start",
               "kl_blowup": "the KL to the reference blew up",
               "nonfinite": "a logged metric became non-finite",
               "exception": "the run raised"}.get(label.reason, label.reason)
        text = f"{why} at step {label.step}"
        confidence, factor = _label_confidence(label), 3.0
    else:
        steps = (int(run.steps[0]), run.n_steps)
        text = "the reward oscillates around its plateau (underdamped)"
        confidence, factor = _confidence(ev["oscillation_amplitude"] - 0.05, 0.05), 2.0
    if osc is not None and diverged:
        text += f"; it oscillates (damping ratio {osc['damping_ratio']:.2f})"
    text += ": lower learning_rate" + (" or the heavy-ball momentum" if osc else "")
    if verdict is not None:
        text += (" (the model predicted this: margin " if verdict.margin < 0
                 else " (the model predicted stable: margin ")
        text += (f"{verdict.margin:+.2f}, max learning_rate "
                 f"{_fmt_lr(verdict.max_learning_rate)})")
    return Finding(mode="dynamical_instability", steps=steps, evidence=ev,
                   confidence=confidence, recommendation=text,
                   config_changes=_lower_lr(run, factor, ctx))


def _label_confidence(label: InstabilityLabel) -> float:
    """How far the instability rule's threshold was crossed, as a confidence."""
    ev = label.evidence
    if label.reason == "drop_from_peak":
        return _confidence(ev["drop"] - ev["threshold"], 0.1)
    if label.reason == "declined_below_start":
        return _confidence(ev["threshold"] - ev["tail_mean"], 0.1)
    if label.reason == "kl_blowup":
        return _confidence(ev["kl_median"] / ev["threshold"] - 1.0, 1.0)
    return 0.99  # non-finite values or an exception are unambiguous


def _oscillation(run: _Run) -> dict[str, float] | None:
    """Evidence of a visible oscillation in the fitted trajectory, or None.

    Visible: the selected model is the underdamped oscillator, its curve crosses the plateau
    at least twice within the logged steps, with an amplitude above max(0.05, noise std).
    """
    from advisor.dynamics import fit_trajectory

    r, steps = run.reward[run.logged], run.steps[run.logged]
    try:
        fit = fit_trajectory(r, steps=steps - 1)
    except AdvisorError:
        return None
    if fit.regime.value != "oscillatory":
        return None
    dev = fit.predict(steps - 1)[0] - fit.plateau
    sign = np.sign(dev[np.abs(dev) > 1e-9])
    crossings = int(np.sum(sign[1:] != sign[:-1]))
    first = int(np.argmax(sign != sign[0])) if crossings else len(dev)
    amplitude = float(np.max(np.abs(dev[first:]))) if crossings else 0.0
    if crossings < 2 or amplitude < max(0.05, fit.noise_std):
        return None
    return {"oscillation_amplitude": amplitude, "amplitude_threshold": 0.05,
            "damping_ratio": fit.damping_ratio, "crossings": float(crossings)}


def _check_noise_collapse(run: _Run, ctx: _Context) -> Finding | None:
    if not {"grad_norm", "entropy"} <= set(run.cols):
        raise _NotChecked("needs the logged 'grad_norm' and 'entropy'")
    det, h = run.detector, run.cols["entropy"]
    for s, norm, median, h0 in det.spikes:
        after = (run.steps >= s) & (run.steps <= s + det.entropy_lag_steps) & np.isfinite(h)
        if not after.any() or float(np.max(h[after])) - h0 < det.entropy_jump:
            continue
        before = (run.steps > s - 5) & (run.steps < s)
        later = (run.steps > s) & (run.steps <= s + 10)
        r_before = float(np.nanmean(run.reward[before])) if before.any() else math.nan
        r_after = float(np.nanmean(run.reward[later])) if later.any() else math.nan
        drop = r_before - r_after
        changes = _lower_lr(run, 2.0, ctx)
        if run.knobs is not None:
            changes["gradient_accumulation_steps"] = 2 * run.knobs.gradient_accumulation_steps
        return Finding(
            mode="noise_collapse", steps=(int(s), int(s + det.entropy_lag_steps)),
            evidence={"grad_norm": norm, "grad_norm_median": median, "spike_threshold":
                      det.spike_factor * median, "entropy_before": h0,
                      "entropy_max_after": float(np.max(h[after])),
                      "entropy_jump_threshold": det.entropy_jump, "reward_drop": drop},
            confidence=0.9 if drop >= 0.1 else 0.6,
            recommendation=f"a gradient spike ({norm / median:.0f}x the median) threw the policy "
                           "into a high-entropy state: the stable learning rate is set by gradient"
                           " noise here; average more prompts per step and lower learning_rate",
            config_changes=changes)
    return None


def _check_too_slow(run: _Run, ctx: _Context) -> Finding | None:
    from advisor.dynamics import fit_trajectory

    label = run.label
    if label.unstable and label.reason != "no_net_gain":
        return None  # an unstable run is not slow
    r, steps = run.reward[run.logged], run.steps[run.logged]
    start, end = run.detector.start, run.final(run.reward)
    try:
        fit = fit_trajectory(r, steps=steps - 1, models=("exponential",))
        tau, plateau = fit.time_constant, fit.plateau
    except AdvisorError:
        tau, plateau = math.inf, end  # flat: no measurable rise
    if tau <= ctx.horizon or (plateau - start < 0.05 and label.reason != "no_net_gain"):
        return None
    factor = min(3.0 * tau / ctx.horizon, 3.0) if math.isfinite(tau) else 3.0
    changes: dict[str, Any] = {}
    if math.isfinite(run.lr):
        lr = run.lr * factor
        verdict = _verdict(run, ctx)
        if verdict is not None and math.isfinite(verdict.max_learning_rate):
            lr = min(lr, 0.5 * verdict.max_learning_rate)
        changes = {"learning_rate": float(f"{lr:.2g}")}
    return Finding(
        mode="too_slow", steps=(int(steps[0]), run.n_steps),
        evidence={"time_constant": tau, "horizon_steps": float(ctx.horizon),
                  "fitted_plateau": plateau, "reward_end": end, "start_reward": start},
        confidence=_confidence(math.log(tau / ctx.horizon) if math.isfinite(tau) else 2.0, 1.0),
        recommendation=(f"the fitted time constant ({tau:.0f} steps) exceeds the horizon "
                        f"({ctx.horizon} steps): raise learning_rate (the rate is ~linear in "
                        "learning_rate below about half the edge)"),
        config_changes=changes)


_CHECKS = {"reward_hacking": _check_hacking, "advantage_degeneracy": _check_degeneracy,
           "policy_concentration": _check_concentration, "dynamical_instability": _check_dynamics,
           "noise_collapse": _check_noise_collapse, "too_slow": _check_too_slow}


# ------------------------------------------------------------------------------ diagnose
def _drop_consequences(findings: list[Finding]) -> list[Finding]:
    """Drop degeneracy/concentration that began after a collapse: they are its consequences."""
    onsets = [f.steps[0] for f in findings
              if f.mode in ("dynamical_instability", "noise_collapse")]
    if not onsets:
        return findings
    onset = min(onsets)
    return [f for f in findings if not (f.mode in ("advantage_degeneracy", "policy_concentration")
                                        and f.steps[0] >= onset)]


def _resolve_knobs(config: Any, source: Any) -> Any:
    from advisor.knobs import Knobs
    from advisor.knobs import knobs_from_config
    from advisor.knobs import knobs_from_params

    if config is None:
        config = getattr(source, "args", None)  # a Trainer carries its GRPOConfig
        if config is None or not hasattr(config, "num_generations"):
            return None
    if isinstance(config, Knobs):
        return config
    if isinstance(config, Mapping):
        from advisor.knobs import MODEL_KNOB_NAMES

        return knobs_from_params({k: v for k, v in config.items() if k in MODEL_KNOB_NAMES})
    return knobs_from_config(config)


def diagnose(
    source: Any,
    *,
    model: Any = None,
    eval_metric: str | Mapping[int, float] | None = None,
    config: Any = None,
    start_reward: float | None = None,
    total_steps: int | None = None,
    max_reward: float = 1.0,
    reward_key: str = "reward",
    nan_policy: str = "raise",
    error: Any = None,
) -> DiagnosisReport:
    """Diagnose a GRPO run from its logs: which failure mode, where, why, and what to change.

    Args:
        source: ``trainer.state.log_history`` (list of dicts), a ``Trainer`` or ``TrainerState``,
            a ``.json``/``.jsonl``/``.csv`` file of logged rows, a DataFrame or dict of columns,
            or a ``PilotResult`` (anything with a ``.history``).
        model: Optional `StabilityModel`; explains instabilities (margin, max learning rate)
            and caps recommended learning rates at half its edge. Needs ``config``.
        eval_metric: Logged key of a held-out metric (e.g. ``"eval_reward"``), or a mapping
            step -> value; without it reward hacking is not checked (and the report says so).
        config: The run's ``GRPOConfig``, a knob mapping or `Knobs` (read from a Trainer
            source); needed for concrete ``num_generations`` advice and for ``model``.
        start_reward: Reward before training; default the mean of the first 3 logged rewards.
        total_steps: Planned training horizon for ``too_slow`` (default ``config.max_steps``
            when positive, else the logged length).
        max_reward: Maximum achievable reward (1.0 for binary verifiable rewards).
        reward_key: Logged key of the mean reward.
        nan_policy: ``"raise"`` on a non-finite reward; ``"omit"`` drops it and reports the
            divergence as ``dynamical_instability``.
        error: The exception if the run raised.

    Returns:
        A `DiagnosisReport`.

    Raises:
        InsufficientDataError: Empty history or no reward logged.
        ValueError: Non-finite rewards with ``nan_policy="raise"``, an unknown ``eval_metric``.
        FileNotFoundError: ``source`` names a missing file.

    Example:
        >>> hist = [{"step": s, "reward": 0.3, "frac_reward_zero_std": 0.9} for s in range(1, 41)]
        >>> diagnose(hist).modes()[0]
        'advantage_degeneracy'
    """
    check_options("nan_policy", nan_policy, ("raise", "omit"))
    knobs = _resolve_knobs(config, source)
    if start_reward is None and isinstance(getattr(source, "start_reward", None), float):
        start_reward = source.start_reward  # a PilotResult measured it
    run, n_bad = _build_run(load_history(source), start_reward=start_reward,
                            reward_key=reward_key, nan_policy=nan_policy, error=error,
                            knobs=knobs)
    if total_steps is None:
        max_steps = getattr(getattr(source, "args", config), "max_steps", -1)
        total_steps = max_steps if isinstance(max_steps, int) and max_steps > 0 else run.n_steps
    ctx = _Context(max_reward=float(max_reward), horizon=int(total_steps), model=model,
                   eval_metric=eval_metric)
    findings, not_checked = [], {}
    for mode, check in _CHECKS.items():
        try:
            found = check(run, ctx)
        except _NotChecked as why:
            not_checked[mode] = str(why)
            continue
        if found is not None:
            findings.append(found)
    findings = _drop_consequences(findings)
    if any(f.mode in ("advantage_degeneracy",) for f in findings):
        findings = [f for f in findings if not (f.mode == "too_slow"
                                                and run.label.reason == "no_net_gain")]
    findings.sort(key=lambda f: -f.confidence)
    return DiagnosisReport(findings=tuple(findings), label=run.label, not_checked=not_checked,
                           n_steps=run.n_steps, start_reward=run.detector.start,
                           final_reward=run.final(run.reward), n_dropped_nonfinite=n_bad)


# ------------------------------------------------------------------------------ callback
def _make_callback_class() -> type:
    """Build AdvisorCallback on first use, so importing this module does not load transformers."""
    from transformers import TrainerCallback

    class AdvisorCallback(TrainerCallback):  # type: ignore[misc]
        """Run the advisor's detectors live inside ``GRPOTrainer.train()``.

        On every training log row it feeds the shared instability rule, logs a warning through
        the ``trl.advisor`` logger when a rule fires or a new failure mode is diagnosed, and adds
        ``advisor/*`` metrics to the row (and to ``state.log_history``): the fitted reward
        trajectory's prediction, plateau and time constant, the model's stability margin, and
        ``advisor/unstable``. With ``stop_on_collapse=True`` it sets
        ``control.should_training_stop`` at the first firing of the instability rule.

        Args:
            model: Optional `StabilityModel` for the margin (needs ``config``).
            config: The run's GRPOConfig or knob mapping (default: the trainer's ``args``).
            start_reward: Reward before training (default: the first 3 logged rewards).
            stop_on_collapse: Stop training when the instability rule fires.
            diagnose_every: Run the full `diagnose` every this many steps (0 = never).
            fit_every: Refit the reward trajectory every this many steps (0 = never).
            **thresholds: Thresholds of `advisor.instability.InstabilityDetector`.

        Example:
            >>> from advisor.diagnostics import AdvisorCallback
            >>> cb = AdvisorCallback(stop_on_collapse=True)
            >>> cb.stopped_at is None
            True
        """

        def __init__(self, *, model: Any = None, config: Any = None,
                     start_reward: float | None = None, stop_on_collapse: bool = False,
                     diagnose_every: int = 25, fit_every: int = 10,
                     **thresholds: Any) -> None:
            self.model, self.config = model, config
            self.start_reward, self.stop_on_collapse = start_reward, bool(stop_on_collapse)
            self.diagnose_every, self.fit_every = int(diagnose_every), int(fit_every)
            self.thresholds = thresholds
            self.detector = InstabilityDetector(start_reward=start_reward, **thresholds)
            self.rows: list[dict[str, Any]] = []
            self.stopped_at: int | None = None
            self.warned: set[str] = set()
            self._fit: Any = None
            self._margin = math.nan

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            config = self.config if self.config is not None else args
            if self.model is not None:
                try:
                    knobs = _resolve_knobs(config, None)
                    self._margin = float(self.model.margin(knobs.to_params()))
                except (AdvisorError, ValueError, TypeError) as exc:
                    _LOGGER.warning("advisor: no stability margin for this config (%s)", exc)
            return control

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   **kwargs: Any) -> Any:
            if not logs or not any(k in logs for k in ("reward", "loss", "grad_norm")):
                return control  # eval rows and the final summary row
            row = {"step": int(state.global_step), **logs}
            if self.rows and row["step"] <= self.rows[-1]["step"]:
                return control
            self.rows.append(row)
            fired = self.detector.update(row)
            extra = self._metrics(row["step"])
            if fired is not None:
                _LOGGER.warning("advisor: instability at step %d (%s): %s", fired.step,
                                fired.reason, _short(fired.evidence))
                if self.stop_on_collapse:
                    control.should_training_stop = True
                    self.stopped_at = row["step"]
            self._maybe_diagnose(row["step"])
            logs.update(extra)
            if state.log_history and state.log_history[-1].get("step") == row["step"]:
                state.log_history[-1].update(extra)
            return control

        def _metrics(self, step: int) -> dict[str, float]:
            extra = {"advisor/unstable": float(self.detector.label is not None)}
            if math.isfinite(self._margin):
                extra["advisor/margin"] = self._margin
            if self.fit_every and step % self.fit_every == 0:
                self._fit = _quiet_fit(self.detector)
            if self._fit is not None:
                extra["advisor/predicted_reward"] = float(self._fit.predict([step - 1])[0][0])
                extra["advisor/plateau"] = float(self._fit.plateau)
                extra["advisor/time_constant"] = float(self._fit.time_constant)
            return extra

        def _maybe_diagnose(self, step: int) -> None:
            if not self.diagnose_every or step % self.diagnose_every != 0:
                return
            try:
                report = diagnose(self.rows, model=self.model, config=self.config,
                                  start_reward=self.start_reward, nan_policy="omit")
            except (AdvisorError, ValueError) as exc:
                _LOGGER.warning("advisor: diagnosis skipped at step %d (%s)", step, exc)
                return
            for f in report.findings:
                if f.mode not in self.warned:
                    self.warned.add(f.mode)
                    _LOGGER.warning("advisor: %s (steps %d-%d, confidence %.2f): %s %s",
                                    f.mode, *f.steps, f.confidence, f.recommendation,
                                    dict(f.config_changes) or "")

    return AdvisorCallback


def _quiet_fit(det: InstabilityDetector) -> Any:
    """Exponential fit of the rewards so far, or None while it is not identifiable."""
    from advisor.dynamics import fit_trajectory

    n = len(det.rewards)
    if n < 10:
        return None
    try:
        return fit_trajectory(det.rewards, steps=np.array(det.steps[-n:]) - 1,
                              models=("exponential",))
    except AdvisorError:
        return None


def _short(evidence: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:.3g}" for k, v in evidence.items())


_CALLBACK_CLASS: list[type] = []


def __getattr__(name: str) -> Any:
    if name == "AdvisorCallback":
        if not _CALLBACK_CLASS:
            _CALLBACK_CLASS.append(_make_callback_class())
        return _CALLBACK_CLASS[0]
    raise AttributeError(f"module 'advisor.diagnostics' has no attribute {name!r}")


# ------------------------------------------------------------------------------ entry point
def diagnose_main(argv: Sequence[str] | str | None = None) -> int:
    """``grpo-advisor diagnose LOGFILE``: print the findings as a table, then as JSON.

    Args:
        argv: ``[LOGFILE, options...]`` (a plain path string is accepted too); options are
            ``--eval-metric KEY``, ``--start-reward X``, ``--total-steps N``, ``--omit-nan``.

    Returns:
        0 when the run looks healthy, 1 when a failure mode was found, 2 for bad input.

    Example:
        >>> diagnose_main(["/nonexistent.json"])
        2
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="grpo-advisor diagnose",
                                     description="Diagnose a GRPO run from its logged metrics.")
    parser.add_argument("logfile", help="trainer_state.json, a log_history .json/.jsonl or .csv")
    parser.add_argument("--eval-metric", default=None)
    parser.add_argument("--start-reward", type=float, default=None)
    parser.add_argument("--total-steps", type=int, default=None)
    parser.add_argument("--omit-nan", action="store_true")
    args = parser.parse_args([argv] if isinstance(argv, str) else argv)
    try:
        report = diagnose(args.logfile, eval_metric=args.eval_metric,
                          start_reward=args.start_reward, total_steps=args.total_steps,
                          nan_policy="omit" if args.omit_nan else "raise")
    except (AdvisorError, ValueError, TypeError, OSError) as exc:
        print(f"grpo-advisor diagnose: error: {exc}", file=sys.stderr)
        return 2
    print(report.to_table())
    print(json.dumps(report.to_dict(), indent=2))
    return 0 if report.healthy else 1
