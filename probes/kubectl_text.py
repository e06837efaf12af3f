"""What the evidence files say when ``kubectl`` did not answer: written here, read by the gates.

:mod:`probes.k8s.evidence` keeps kubectl's failure in the file it was asked to write (so a
reviewer sees why a snapshot is missing); :func:`kubectl_failure` recognises such a file, so
``reports`` never mistakes it for a snapshot. One module owns the wording for both sides.
"""

from __future__ import annotations

__all__ = ["ERROR_PREFIX", "LOG_LINE_PREFIX", "kubectl_failure", "missing_kubectl", "timed_out"]

ERROR_PREFIX = "# error:"
#: ``kubectl logs --prefix`` starts every line of a pod's log with this.
LOG_LINE_PREFIX = "[pod/"
_MISSING = "kubectl not found on PATH"
_TIMED_OUT = ": timed out after "


def missing_kubectl() -> str:
    return f"{_MISSING}: install kubectl to capture this snapshot\n"


def timed_out(args: list[str], seconds: int) -> str:
    return f"kubectl {' '.join(args)}{_TIMED_OUT}{seconds} s\n"


def kubectl_failure(text: str) -> str | None:
    """The line saying why ``text`` holds no kubectl output (missing kubectl, a timeout, only
    ``# error:`` lines), ``"empty"`` for nothing at all, or None when kubectl answered."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return "empty"
    first = lines[0]
    if first.startswith(_MISSING) or (first.startswith("kubectl ") and _TIMED_OUT in first):
        return first[:200]
    if all(line.startswith(ERROR_PREFIX) for line in lines):
        return first[:200]
    return None
