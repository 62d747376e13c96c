"""`diagnose`: run every failure-mode check on one log history; `diagnose_main`: its command."""

from __future__ import annotations

import json
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from advisor._validation import check_int
from advisor._validation import check_interval
from advisor._validation import check_options
from advisor.diagnostics._dynamics import _check_dynamics
from advisor.diagnostics._dynamics import _check_noise_collapse
from advisor.diagnostics._dynamics import _check_too_slow
from advisor.diagnostics._findings import DiagnosisReport
from advisor.diagnostics._findings import Finding
from advisor.diagnostics._history import load_history
from advisor.diagnostics._run import _build_run
from advisor.diagnostics._run import _Context
from advisor.diagnostics._run import _NotChecked
from advisor.diagnostics._signal import _check_concentration
from advisor.diagnostics._signal import _check_degeneracy
from advisor.diagnostics._signal import _check_hacking
from advisor.exceptions import AdvisorError


_CHECKS = {"reward_hacking": _check_hacking, "advantage_degeneracy": _check_degeneracy,
           "policy_concentration": _check_concentration, "dynamical_instability": _check_dynamics,
           "noise_collapse": _check_noise_collapse, "too_slow": _check_too_slow}


def _drop_consequences(findings: list[Finding]) -> list[Finding]:
    """Drop degeneracy/concentration that began after a collapse: they are its consequences."""
    onsets = [f.steps[0] for f in findings
              if f.mode in ("dynamical_instability", "noise_collapse")]
    if not onsets:
        return findings
    onset = min(onsets)
    return [f for f in findings if not (f.mode in ("advantage_degeneracy", "policy_concentration")
                                        and f.steps[0] >= onset)]


def _resolve_knobs(config: Any, source: Any, defaults: Mapping[str, Any] | None = None) -> Any:
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

        # a dict names only some knobs: the model's defaults fill the rest (an SGD model reads
        # a dict without `optim` as SGD, as StabilityModel.assess does)
        return knobs_from_params({k: v for k, v in config.items() if k in MODEL_KNOB_NAMES},
                                 defaults=defaults)
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
    if model is not None and not callable(getattr(model, "assess", None)):
        raise TypeError(f"`model` must be a StabilityModel (anything with .assess(params)) or "
                        f"None, got {type(model).__name__}.")
    max_reward = check_interval("max_reward", max_reward)
    if total_steps is not None:
        total_steps = check_int("total_steps", total_steps, low=1)
    knobs = _resolve_knobs(config, source, getattr(model, "_defaults", None))
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
