"""Writing a file so a reader never sees half of it: a temporary file beside it, then a rename."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["replace_text"]


def replace_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (``.<name>.<pid>.tmp`` renamed over it); returns the path.

    A reader (a report viewer, a scraper, a second process) sees the old content or the
    new, never a torn file. OSError is left to the caller, who knows what to tell the user.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
