"""Smoke test of benchmarks/refresh_recommendation.py (``--quick``: real TRL runs, < 60 s)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest


_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "refresh_recommendation.py"


def _load():
    spec = importlib.util.spec_from_file_location("refresh_recommendation", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_args_shrink_the_budgets():
    args = _load().parse_args(["--quick", "--out", "x.md"])
    assert (args.steps, args.pilot_budget, args.run_seeds, args.out) == (20, 116, (0, 1), "x.md")


@pytest.mark.slow
def test_quick_run_writes_table_and_verdict(tmp_path, capsys):
    out = tmp_path / "refresh.md"
    _load().main(["--quick", "--work-dir", str(tmp_path / "work"), "--out", str(out)])
    text = out.read_text()
    assert "Machine:" in text and "threads 1 per run" in text
    assert "--quick" in text
    assert "GRPOConfig(learning_rate=0.0003" in text  # explain() pasted
    arms = re.findall(r"^\| (\d+) \| (\d+) \| (on-policy|recommended|contrast) \| 2 \|", text,
                      flags=re.M)
    assert arms[0] == ("1", "1", "on-policy")
    assert len(arms) == 2 and arms[1][:2] != ("1", "1")
    for wall, final in re.findall(r"\| ([\d.]+) \+- [\d.]+ \| [\d.]+ \| [\d.]+ \| "
                                  r"([\d.]+) \+- [\d.]+ \|", text):
        assert float(wall) > 0.0 and 0.0 <= float(final) <= 1.0
    assert re.search(r"\*\*Verdict\*\*.*wall time x\d+\.\d\d", text)
    # a rerun resumes: every run reloads from the work dir, same table
    _load().main(["--quick", "--work-dir", str(tmp_path / "work"), "--out", str(out)])
    assert out.read_text().split("## Real runs")[1] == text.split("## Real runs")[1]
    assert "spg=1 n_iter=1 seed=0" in capsys.readouterr().out
