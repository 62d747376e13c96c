from __future__ import annotations

import subprocess
import sys


def test_import_is_light() -> None:
    code = (
        "import sys, advisor; "
        "heavy = [m for m in ('torch', 'trl', 'transformers') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import advisor pulled in: {out.stdout.strip()}"


def test_public_names_resolve() -> None:
    import advisor

    for name in ("AdvisorError", "FitError", "InsufficientDataError", "AdvisorWarning"):
        assert getattr(advisor, name).__name__ == name
