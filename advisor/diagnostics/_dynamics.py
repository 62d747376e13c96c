"""Failure modes of the training dynamics: instability, noise collapse, a too slow rise.

* ``dynamical_instability``: divergence or collapse by the shared instability rule
  (`advisor.instability`), or a visible oscillation of the fitted reward trajectory; checked
  against a `StabilityModel` when one is given.
* ``noise_collapse``: a grad-norm spike (>= 10x its running median), then an entropy jump within
  6 steps, then a reward drop: the rare-event collapse that sets the edge for SGD.
* ``too_slow``: the fitted time constant exceeds the training horizon.
"""

from __future__ import annotations

import math

import numpy as np

from advisor.diagnostics._findings import Finding
from advisor.diagnostics._run import _capped_lr
from advisor.diagnostics._run import _confidence
from advisor.diagnostics._run import _Context
from advisor.diagnostics._run import _lower_lr
from advisor.diagnostics._run import _NotChecked
from advisor.diagnostics._run import _rolling
from advisor.diagnostics._run import _Run
from advisor.diagnostics._run import _verdict
from advisor.exceptions import AdvisorError
from advisor.instability import InstabilityLabel


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
                 f"{verdict.max_learning_rate:.2g})")
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
    changes = _capped_lr(run, run.lr * factor, ctx) if math.isfinite(run.lr) else {}
    return Finding(
        mode="too_slow", steps=(int(steps[0]), run.n_steps),
        evidence={"time_constant": tau, "horizon_steps": float(ctx.horizon),
                  "fitted_plateau": plateau, "reward_end": end, "start_reward": start},
        confidence=_confidence(math.log(tau / ctx.horizon) if math.isfinite(tau) else 2.0, 1.0),
        recommendation=(f"the fitted time constant ({tau:.0f} steps) exceeds the horizon "
                        f"({ctx.horizon} steps): raise learning_rate (the rate is ~linear in "
                        "learning_rate below about half the edge)"),
        config_changes=changes)
