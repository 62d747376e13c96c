"""How the command line prints the advisor's caveats (also inside sweep worker processes)."""

from __future__ import annotations

from collections.abc import Callable

from advisor.exceptions import AdvisorWarning


def plain_warnings(fallback: Callable[..., str]) -> Callable[..., str]:
    """A ``warnings.formatwarning`` that formats each of the advisor's own caveats once, as one
    plain line (no source line), and anything else with ``fallback``. Only the printed text
    changes: code that records warnings (``pytest.warns``, ``catch_warnings(record=True)``)
    still receives them all.

    Example:
        >>> from advisor.exceptions import AdvisorWarning
        >>> fmt = plain_warnings(lambda message, *rest: f"python: {message}")
        >>> fmt(AdvisorWarning("K varies\\n  by 140%"), AdvisorWarning, "x.py", 1)
        'grpo-advisor: note: K varies by 140%\\n'
    """
    printed: set[str] = set()

    def fmt(message: Warning | str, category: type[Warning], filename: str, lineno: int,
            line: str | None = None) -> str:
        if issubclass(category, AdvisorWarning):
            text = " ".join(str(message).split())
            if text in printed:  # the same caveat from another call site: print nothing
                return ""
            printed.add(text)
            return f"grpo-advisor: note: {text}\n"
        return fallback(message, category, filename, lineno, line)

    return fmt
