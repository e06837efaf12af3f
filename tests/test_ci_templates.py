"""The release pipeline templates (deploy/ci/): valid for their CI system, and calling a real command.

They cannot run here (no Docker engine, no kind), so what can be checked is: each validates
against its CI system's schema (check-jsonschema's vendored github-workflows and gitlab-ci
schemas) and passes yamllint, the way ``make check`` runs them; deliberate breakages are
caught; and every option they pass to ``python -m orchestration release`` exists.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lab.paths import project_root

CI = project_root() / "deploy" / "ci"
BIN = Path(sys.executable).parent
TEMPLATES = {
    "github-release-e2e.yml": "vendor.github-workflows",
    "gitlab-release-e2e.yml": "vendor.gitlab-ci",
}


def _schema_ok(path: Path, schema: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "-q", "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_each_template_is_valid_for_its_ci_system(name: str) -> None:
    done = _schema_ok(CI / name, TEMPLATES[name])
    assert done.returncode == 0, done.stdout + done.stderr
    lint = subprocess.run(
        [str(BIN / "yamllint"), "-s", "-c", str(CI / "yamllint.yml"), str(CI / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("github-release-e2e.yml", "runs-on: ubuntu-24.04", "runs-on: 24"),
        ("github-release-e2e.yml", "timeout-minutes: 120", 'timeout-minutes: "two hours"'),
        ("github-release-e2e.yml", "permissions:\n  contents: read", "permissions:\n  contents: everything"),
        ("gitlab-release-e2e.yml", "  timeout: 2h", "  timeout: [2h]"),
        ("gitlab-release-e2e.yml", "    when: always", "    when: sometimes"),
    ],
)
def test_a_broken_template_is_caught(tmp_path: Path, name: str, old: str, new: str) -> None:
    text = (CI / name).read_text()
    assert text.count(old) == 1, old
    broken = tmp_path / name
    broken.write_text(text.replace(old, new))
    assert _schema_ok(broken, TEMPLATES[name]).returncode != 0, f"{new!r} passed the schema"


def test_the_templates_call_options_the_release_command_has() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "orchestration", "release", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    calls = 0
    for name in TEMPLATES:
        text = (CI / name).read_text()
        yaml.safe_load(text)  # the command lines below are the YAML's own (not a comment)
        for call in re.findall(r"-m orchestration release((?:[^\n]*\\\n)*[^\n]*)", text):
            calls += 1
            for option in re.findall(r"(--[a-z][a-z-]*)", call):
                assert option in help_text, f"{name} passes {option}, which the release command lacks"
    assert calls >= len(TEMPLATES)
