from __future__ import annotations

import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def test_model_speed_benchmark_runs() -> None:
    out = subprocess.run([sys.executable, "benchmarks/model_speed.py", "--n-configs", "2000",
                          "--repeats", "1"], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=300)
    assert "| assess_many | 2,000 |" in out.stdout
    assert "predicted stable:" in out.stdout
