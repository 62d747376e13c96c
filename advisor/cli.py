"""``grpo-advisor``: the command line (parse, call the library, print).

Subcommands live in one ``_COMMANDS`` dict. Exit codes: 0 ok, 1 an advisor error (one line on
stderr; the traceback only with ``--debug``), 2 a usage error.

Example:
    >>> main(["--version"])  # doctest: +ELLIPSIS
    grpo-advisor ...
    0
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from advisor._validation import finite_json
from advisor.exceptions import AdvisorError
from advisor.workflow._console import plain_warnings as _plain_warnings


__all__ = ["main"]

_EPILOG = "Exit codes: 0 ok, 1 advisor error (add --debug for a traceback), 2 usage error."


def _load(path: str) -> Any:
    from advisor.study_file import load_study_file

    return load_study_file(path)


def _number(kind: type, *, low: float | None = None, low_closed: bool = True,
            high: float | None = None, high_closed: bool = True) -> Callable[[str], Any]:
    """An argparse ``type`` for a finite int/float in an interval: a bad value is a usage
    error (exit 2) that names the option, the allowed range and the value given."""
    lo = "" if low is None else f"{'>=' if low_closed else '>'} {low:g}"
    hi = "" if high is None else f"{'<=' if high_closed else '<'} {high:g}"
    what = ("an integer " if kind is int else "a number ") + " and ".join(x for x in (lo, hi) if x)

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what.strip()}, got {text!r}") from None
        ok = math.isfinite(value)
        if ok and low is not None:
            ok = value >= low if low_closed else value > low
        if ok and high is not None:
            ok = value <= high if high_closed else value < high
        if not ok:
            raise argparse.ArgumentTypeError(f"must be {what.strip()}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


_POSITIVE = _number(float, low=0.0, low_closed=False)
_NON_NEGATIVE = _number(float, low=0.0)
_COUNT = _number(int, low=1)


def _print_json(data: Any) -> None:
    print(json.dumps(finite_json(data), indent=2, allow_nan=False))


# ------------------------------------------------------------------------------------------
# commands
# ------------------------------------------------------------------------------------------
def _cmd_pilot(args: argparse.Namespace) -> int:
    from advisor.workflow import run_study_pilot

    study = _load(args.study)
    t0 = time.perf_counter()
    pilot = run_study_pilot(study, force=args.force, progress=not args.quiet)
    print(pilot.summary())
    print(f"pilot saved to {study.pilot_path} ({time.perf_counter() - t0:.1f} s)")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from advisor.workflow import load_optuna_study
    from advisor.workflow import load_study_pilot

    study = _load(args.study)
    out = Path(args.output) if args.output else study.report_dir
    if out.exists() and not out.is_dir():  # before the (slow) build, not after it
        raise AdvisorError(f"the report folder {str(out)!r} is a file. Pass --output with a "
                           "folder (it is created if missing).")
    # a --storage named on the command line must hold the study: a typo must not read as
    # "no trials yet"
    optuna_study = load_optuna_study(study, storage=args.storage,
                                     must_exist=args.storage is not None)
    if args.stiffness is None:
        report = load_study_pilot(study).report(study, optuna_study=optuna_study)
    else:  # theory only, from a stiffness measured elsewhere
        from types import SimpleNamespace

        from advisor.report import build_report
        from advisor.stability import StabilityModel

        est = SimpleNamespace(stiffness=args.stiffness, std_error=args.stiffness_error,
                              stiffness_current=None, stiffness_sampler=None, plateau=None)
        report = build_report(StabilityModel(est), study=study, optuna_study=optuna_study)
    paths = report.write(out)
    if args.format == "markdown":
        print(report.to_markdown())
    elif args.format == "json":
        _print_json(report.to_dict())
    print(f"report: {paths['html']}", file=sys.stderr if args.format else sys.stdout)
    return 0


def _cmd_recommend_refresh(args: argparse.Namespace) -> int:
    from advisor.refresh import RefreshTiming
    from advisor.refresh import recommend_refresh
    from advisor.workflow import load_pilot

    pilot = load_pilot(args.pilot)
    timing = None
    if args.seconds_per_step is not None or args.seconds_per_generation is not None:
        if args.seconds_per_step is None or args.seconds_per_generation is None:
            raise ValueError("`--seconds-per-step` and `--seconds-per-generation` must be given "
                             "together.")
        timing = RefreshTiming(seconds_per_step=args.seconds_per_step,
                               seconds_per_generation=args.seconds_per_generation,
                               generation_overhead=args.generation_overhead)
    elif args.generation_overhead is not None:
        raise ValueError("`--generation-overhead` must come with `--seconds-per-step` and "
                         "`--seconds-per-generation` (the pilot's timing is used otherwise).")
    elif pilot.result is None:
        raise AdvisorError(f"the pilot at {str(pilot.path)!r} has no wall-clock timing (a "
                           f"{pilot.objective} pilot simulates, it does not time generation). "
                           "Pass --seconds-per-step and --seconds-per-generation measured on "
                           "your machine.")
    rec = recommend_refresh(pilot.result if pilot.result is not None else pilot.model(),
                            timing=timing, learning_rate=args.learning_rate,
                            momentum=args.momentum, max_refresh=args.max_refresh,
                            min_damping_ratio=args.min_damping_ratio,
                            min_probability=args.min_probability,
                            num_iterations=(1, 2, 4) if args.allow_reuse else (1,),
                            params=dict(pilot.defaults))
    if args.format == "json":
        _print_json(rec.to_dict())
    else:
        print(rec.explain())
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from advisor.workflow import run_study_sweep

    study = _load(args.study)
    summary = run_study_sweep(study, storage=args.storage, n_trials=args.n_trials,
                              n_workers=args.n_workers, guided=not args.no_advisor,
                              progress=not args.quiet)
    print(summary.explain())
    return 0


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from advisor.diagnostics import diagnose

    model = None
    if args.pilot:
        from advisor.workflow import load_pilot

        model = load_pilot(args.pilot).model()
    try:
        report = diagnose(args.logfile, model=model, eval_metric=args.eval_metric,
                          start_reward=args.start_reward, total_steps=args.total_steps,
                          nan_policy="omit" if args.omit_nan else "raise")
    except (AdvisorError, ValueError, TypeError, OSError) as exc:
        # the library names its arguments; on the command line they are options
        msg = str(exc)
        for name, option in _DIAGNOSE_OPTIONS.items():
            msg = msg.replace(name, option)
        raise AdvisorError(msg) from exc
    if args.format == "json":
        _print_json(report.to_dict())
    else:
        print(report.to_table())
    return 1 if args.strict and not report.healthy else 0


_DIAGNOSE_OPTIONS = {"pass nan_policy='omit'": "pass --omit-nan",
                     "`eval_metric`": "`--eval-metric`", "`start_reward`": "`--start-reward`",
                     "`total_steps`": "`--total-steps`", "`source`": "LOGFILE"}


def _cmd_demo(args: argparse.Namespace) -> int:
    from advisor.workflow import run_demo

    t0 = time.perf_counter()
    summary = run_demo(Path(args.output), objective=args.objective, n_trials=args.n_trials,
                       progress=not args.quiet)
    print(summary.explain())
    print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    print(f"open the report: {summary.report_path}")
    return 0


# name -> (handler, help, example, add-arguments)
_Adder = Callable[[argparse.ArgumentParser], None]


def _add_study(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", metavar="STUDY.toml", help="study file (examples in studies/)")


def _add_pilot(p: argparse.ArgumentParser) -> None:
    _add_study(p)
    p.add_argument("--force", action="store_true", help="rerun even if a pilot is saved")


def _add_report(p: argparse.ArgumentParser) -> None:
    _add_study(p)
    p.add_argument("--output", help="report folder (default: <study dir>/<name>-report)")
    p.add_argument("--storage", help="Optuna storage URL (default: the study file's)")
    p.add_argument("--format", choices=("markdown", "json"),
                   help="also print the report to stdout in this format")
    p.add_argument("--stiffness", type=_POSITIVE,
                   help="no pilot: a stiffness K per unit lr measured elsewhere (theory only)")
    p.add_argument("--stiffness-error", type=_NON_NEGATIVE, default=0.0,
                   help="standard error of --stiffness")


def _add_refresh(p: argparse.ArgumentParser) -> None:
    p.add_argument("pilot", metavar="PILOT",
                   help="a saved pilot (<name>.pilot folder) or a study file")
    p.add_argument("--learning-rate", type=_POSITIVE, required=True,
                   help="planned learning_rate")
    p.add_argument("--momentum", type=_number(float, low=0.0, high=1.0, high_closed=False),
                   default=0.0, help="heavy-ball momentum in [0, 1) (SGD; 0 for AdamW)")
    p.add_argument("--max-refresh", type=_COUNT, default=16,
                   help="largest steps_per_generation * num_iterations to consider")
    p.add_argument("--min-damping-ratio", type=_NON_NEGATIVE, default=0.7,
                   help="stay where the theory's damping ratio is at least this")
    p.add_argument("--min-probability", type=_number(float, low=0.0, high=1.0), default=0.8,
                   help="keep settings predicted stable with at least this probability")
    p.add_argument("--seconds-per-step", type=_POSITIVE,
                   help="override the pilot's timing: seconds per on-policy optimizer step")
    p.add_argument("--seconds-per-generation", type=_POSITIVE,
                   help="override: seconds of generation within one on-policy step")
    p.add_argument("--generation-overhead", type=_NON_NEGATIVE,
                   help="fixed seconds per generate call, if measured")
    p.add_argument("--allow-reuse", action="store_true",
                   help="also consider num_iterations 2 and 4 (reusing completions)")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="text: reasoning and table (default); json: machine-readable")


def _add_sweep(p: argparse.ArgumentParser) -> None:
    _add_study(p)
    p.add_argument("--storage", help="Optuna storage URL, e.g. "
                   "postgresql+psycopg2://user:pass@host/db "
                   "(default: the study file's, SQLite beside it)")
    p.add_argument("--n-workers", type=_COUNT, default=1, help="worker processes (default 1)")
    p.add_argument("--n-trials", type=_COUNT,
                   help="finished trials the study should have (default: budget.n_trials); "
                   "a rerun resumes and runs only the missing ones")
    p.add_argument("--no-advisor", action="store_true",
                   help="plain TPE + MedianPruner, for comparison")


def _add_diagnose(p: argparse.ArgumentParser) -> None:
    p.add_argument("logfile", metavar="LOGFILE",
                   help="TRL log history: trainer_state.json, JSONL or CSV of logged metrics")
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="table: findings as text (default); json: machine-readable")
    p.add_argument("--pilot", help="a saved pilot (or its study file): explains instabilities "
                   "with the calibrated model")
    p.add_argument("--eval-metric", help="logged held-out reward key, for reward hacking")
    p.add_argument("--start-reward", type=_number(float),
                   help="reward at step 0, if not logged")
    p.add_argument("--total-steps", type=_COUNT, help="planned steps (for 'too slow')")
    p.add_argument("--omit-nan", action="store_true", help="drop NaN rewards instead of failing")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when a failure mode is found (for CI)")


def _add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", default="studies/demo",
                   help="working folder for the study, pilot and report")
    p.add_argument("--objective", choices=("tiny", "bandit"), default="tiny",
                   help="tiny: real TRL GRPO on the built-in task (CPU, about 1-2 min); "
                   "bandit: the exact softmax-bandit reduction (no TRL; about 1 min on 2 "
                   "cores, most of it the model's nonlinear checks)")
    p.add_argument("--n-trials", type=_COUNT,
                   help="sweep trials (default: the demo study's); a rerun resumes")


_COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str, str, _Adder]] = {
    "pilot": (_cmd_pilot, "run (or resume) the pilot of a study and save it beside the study",
              "grpo-advisor pilot studies/tiny-sgd.toml", _add_pilot),
    "report": (_cmd_report, "write the pre-sweep feasibility report (Markdown, HTML, JSON, PNG)",
               "grpo-advisor report studies/tiny-sgd.toml --format markdown", _add_report),
    "recommend-refresh": (
        _cmd_recommend_refresh,
        "recommend steps_per_generation/num_iterations for the most reward per second",
        "grpo-advisor recommend-refresh studies/tiny-sgd.pilot --learning-rate 0.01",
        _add_refresh),
    "sweep": (_cmd_sweep, "run an advisor-guided Optuna sweep and update the report",
              "grpo-advisor sweep studies/tiny-sgd.toml --n-workers 2", _add_sweep),
    "diagnose": (_cmd_diagnose, "diagnose a GRPO run from its logged metrics",
                 "grpo-advisor diagnose output/trainer_state.json", _add_diagnose),
    "demo": (_cmd_demo, "pilot, report and a short guided sweep on the built-in task (<10 min)",
             "grpo-advisor demo --output /tmp/demo", _add_demo),
}


def _parser() -> argparse.ArgumentParser:
    from advisor import __version__

    parser = argparse.ArgumentParser(
        prog="grpo-advisor",
        description="Predict which GRPO hyperparameters train stably, and sweep only those.",
        epilog="Example: grpo-advisor demo\n" + _EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"grpo-advisor {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (handler, help_, example, add) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".",
                           epilog=f"Example:\n  {example}\n\n{_EPILOG}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add(p)
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.add_argument("--debug", action="store_true", dest="debug_here",
                       help="show tracebacks of errors")
        p.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``grpo-advisor`` with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Args:
        argv: Command-line arguments without the program name.

    Returns:
        0 on success, 1 on an advisor error, 2 on a usage error.

    Example:
        >>> main(["no-such-command"])  # usage goes to stderr
        2
    """
    parser = _parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # argparse: --help/--version exit 0, usage errors exit 2
        return int(exc.code or 0)
    try:
        with warnings.catch_warnings():
            # transformers' own deprecation notices say nothing the user can act on here
            warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
            # restored when the block exits
            warnings.formatwarning = _plain_warnings(warnings.formatwarning)
            return int(args.handler(args))
    except BrokenPipeError:  # stdout closed early (`| head`): stop quietly
        _silence_stdout()
        return 1
    except (AdvisorError, ValueError, TypeError, OSError) as exc:
        if args.debug or args.debug_here:
            traceback.print_exc()
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"grpo-advisor {args.command}: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        hint = _RESUME.get(args.command, "")
        print(f"grpo-advisor {args.command}: interrupted.{hint}", file=sys.stderr)
        return 130


_RESUME = {
    "pilot": " Rerun the same command to resume: finished pilot runs are kept.",
    "sweep": " Rerun the same command to resume: finished trials are kept in the storage and "
             "only the missing ones run.",
    "demo": " Rerun the same command to resume: the pilot and finished trials are kept.",
}


def _silence_stdout() -> None:
    """Point stdout at /dev/null so Python's exit flush does not fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (tests capture stdout)
        pass
