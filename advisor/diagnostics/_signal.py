"""Failure modes of the learning signal: reward hacking, advantage degeneracy, concentration.

* ``reward_hacking``: train reward gains headroom while a held-out metric does not; compares
  the headroom-normalised gains (R(end) - R(0)) / (R_max - R(0)). Needs ``eval_metric``.
* ``advantage_degeneracy``: ``frac_reward_zero_std`` >= 0.5 with room left to learn, against the
  binary-reward prediction p^G + (1 - p)^G (G = ``num_generations``).
* ``policy_concentration``: token entropy below 0.3 of its start while the reward stopped
  rising well below the maximum.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from advisor.diagnostics._findings import Finding
from advisor.diagnostics._run import _WINDOW
from advisor.diagnostics._run import _confidence
from advisor.diagnostics._run import _Context
from advisor.diagnostics._run import _lower_lr
from advisor.diagnostics._run import _NotChecked
from advisor.diagnostics._run import _rolling
from advisor.diagnostics._run import _Run


_DEGENERATE = 0.5  # half the groups carry no gradient
_ENTROPY_RATIO = 0.3
_HEADROOM = 0.25  # reward left below max_reward that counts as "plateaued early"


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
