"""Writer numbers that are unique across every load process of a run.

Locust's ``--processes`` hands users to worker processes in an order the locustfile
cannot see, so users claim numbers themselves: the smallest number whose claim file
they can create with ``O_EXCL`` in the run folder. Creation is atomic, so two users
never share a number, and N users always hold exactly 0..N-1.

Cluster load (workers in pods, no shared folder) claims nothing: there a writer's number
follows from its worker's index (:func:`loadgen.shipping.writer_number`).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["claim_writer"]


def claim_writer(folder: Path, limit: int = 100_000) -> int:
    """Claim and return the smallest free writer number under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(limit):
        try:
            fd = os.open(folder / f"writer-{number}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        return number
    raise RuntimeError(f"no free writer number below {limit} in {folder}")
