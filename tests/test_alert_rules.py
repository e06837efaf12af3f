"""The backup/restore alert rules in ``deploy/alerts``: promtool accepts them, their rule unit
tests (``tests/alerts/*.yaml``) pass, the PrometheusRule carries exactly the same groups, and
the alerts other parts of the harness rely on exist with the labels and annotations they need.

promtool comes with Debian's ``prometheus`` package; without it these tests fail (set
``HARNESS_ALLOW_NO_PROMTOOL=1`` to skip them instead).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "alerts"
RULES = ALERTS / "mssql-harness.rules.yaml"
PROMETHEUS_RULE = ALERTS / "prometheusrule.yaml"
README = ALERTS / "README.md"
RULE_TESTS_DIR = ROOT / "tests" / "alerts"

#: alert name -> (severity, longest ``for`` in seconds the drill may rely on, or None).
CONTRACT: dict[str, tuple[str, int | None]] = {
    "MSSQLBackupJobFailed": ("critical", 60),
    "MSSQLRestoreJobFailed": ("critical", 60),
    "MSSQLLogBackupTooOld": ("critical", None),
    "MSSQLScheduledBackupNotRun": ("warning", None),
    "MSSQLOperatorDown": ("critical", 60),
}

Obj = dict[str, Any]


def promtool() -> str:
    """The promtool binary; fails (or skips, with HARNESS_ALLOW_NO_PROMTOOL=1) without one."""
    path = shutil.which("promtool")
    if path:
        return path
    if os.environ.get("HARNESS_ALLOW_NO_PROMTOOL") == "1":
        pytest.skip("promtool is not on PATH and HARNESS_ALLOW_NO_PROMTOOL=1")
    pytest.fail(
        "promtool is not on PATH: install Debian's prometheus package (make setup does), "
        "or set HARNESS_ALLOW_NO_PROMTOOL=1 to skip the alert rule checks",
        pytrace=False,
    )


def run_promtool(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def rule_tests() -> list[Path]:
    return sorted(RULE_TESTS_DIR.glob("*.yaml"))


def load(path: Path) -> Obj:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path}: not a YAML mapping"
    return data


def alerts() -> dict[str, Obj]:
    rules = [rule for group in load(RULES)["groups"] for rule in group["rules"]]
    return {rule["alert"]: rule for rule in rules if "alert" in rule}


def seconds(duration: str) -> int:
    """A Prometheus duration made of s/m/h parts (e.g. ``1m30s``) in seconds."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert parts and duration, f"unexpected duration {duration!r}"
    h, m, s = (int(p or 0) for p in parts.groups())
    return h * 3600 + m * 60 + s


def group_differences(plain: list[Obj], operator: list[Obj]) -> list[str]:
    """One line per difference between two ``groups`` lists, naming the group and rule."""
    out: list[str] = []
    plain_names = [g.get("name") for g in plain]
    operator_names = [g.get("name") for g in operator]
    if plain_names != operator_names:
        return [f"group names differ: {plain_names} vs {operator_names}"]
    for a, b in zip(plain, operator, strict=True):
        name = a.get("name")
        if {k: v for k, v in a.items() if k != "rules"} != {k: v for k, v in b.items() if k != "rules"}:
            out.append(f"group {name}: settings differ")
        rules_a, rules_b = a.get("rules") or [], b.get("rules") or []
        if len(rules_a) != len(rules_b):
            out.append(f"group {name}: {len(rules_a)} rules vs {len(rules_b)}")
        for i, (ra, rb) in enumerate(zip(rules_a, rules_b, strict=False)):
            if ra != rb:
                label = ra.get("alert") or ra.get("record") or f"rule {i}"
                keys = sorted(k for k in set(ra) | set(rb) if ra.get(k) != rb.get(k))
                out.append(f"group {name}, {label}: {', '.join(keys)} differ")
    return out


def test_promtool_checks_the_rules_file() -> None:
    result = run_promtool("check", "rules", RULES)
    assert result.returncode == 0, f"promtool check rules {RULES}:\n{result.stdout}{result.stderr}"
    rules = [rule for group in load(RULES)["groups"] for rule in group["rules"]]
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout, result.stdout


def test_rule_unit_tests_pass() -> None:
    files = rule_tests()
    assert files, f"no rule unit tests in {RULE_TESTS_DIR}"
    result = run_promtool("test", "rules", *(f.relative_to(ROOT) for f in files))
    assert result.returncode == 0, f"promtool test rules:\n{result.stdout}{result.stderr}"
    assert result.stdout.count("SUCCESS") == len(files), result.stdout


def test_every_alert_has_unit_tests_that_expect_it_and_its_absence() -> None:
    text = "\n".join(f.read_text() for f in rule_tests())
    for name in alerts():
        assert f"alertname: {name}" in text, f"{name}: no case in {RULE_TESTS_DIR}"
        assert re.search(rf"alertname: {name}\n\s+exp_alerts: \[\]", text), (
            f"{name}: no case where it must not fire"
        )
        assert re.search(rf"alertname: {name}\n\s+exp_alerts:\n", text), f"{name}: no case where it fires"


#: (what is broken, text of the rules file, its replacement, the alert whose tests must fail)
BREAKAGES = [
    (
        "for shorter than 1m",
        "        for: 1m\n        labels:\n          severity: critical",
        "        for: 30s\n        labels:\n          severity: critical",
        "MSSQLBackupJobFailed",
    ),
    (
        "owner not required to be the controller",
        'owner_kind="MSSQLBackup", owner_is_controller="true"',
        'owner_kind="MSSQLBackup"',
        "MSSQLBackupJobFailed",
    ),
    (
        "no wait for the policy to be older than the budget",
        "mssql_backup_policy_info offset 15m == 1",
        "mssql_backup_policy_info == 1",
        "MSSQLLogBackupTooOld",
    ),
    (
        "a suspended CronJob also reported as overdue",
        "unless on (namespace, cronjob)\n",
        "or on (namespace, cronjob)\n",
        "MSSQLScheduledBackupNotRun",
    ),
    (
        "no alert when the operator target vanishes",
        '          or\n          absent(up{job="mssql-operator"})\n',
        "\n",
        "MSSQLOperatorDown",
    ),
]


@pytest.mark.parametrize(("change", "before", "after", "broken"), BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_rule_unit_tests_fail_on_a_broken_rule(
    tmp_path: Path, change: str, before: str, after: str, broken: str
) -> None:
    text = RULES.read_text()
    assert before in text, f"{change}: the rules file no longer contains {before!r}"
    copy = tmp_path / "deploy" / "alerts" / RULES.name
    copy.parent.mkdir(parents=True)
    copy.write_text(text.replace(before, after))
    tests = tmp_path / "tests" / "alerts"
    shutil.copytree(RULE_TESTS_DIR, tests)
    result = run_promtool("test", "rules", *sorted(tests.glob("*.yaml")), cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"{change}: the rule unit tests still pass:\n{output}"
    assert f"alertname: {broken}," in output, output


def test_prometheusrule_has_the_same_groups() -> None:
    manifest = load(PROMETHEUS_RULE)
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest["kind"] == "PrometheusRule"
    assert manifest["metadata"]["name"] == "mssql-harness-alerts"
    assert manifest["metadata"]["labels"]["role"] == "alert-rules"
    assert set(manifest["spec"]) == {"groups"}, f"unexpected spec keys {sorted(manifest['spec'])}"
    differences = group_differences(load(RULES)["groups"], manifest["spec"]["groups"])
    assert not differences, (
        f"{PROMETHEUS_RULE.name} drifted from {RULES.name}: {'; '.join(differences)}; "
        "regenerate it (deploy/alerts/README.md, 'Keeping the two forms equal')"
    )


def test_group_comparison_names_a_drift() -> None:
    groups = load(RULES)["groups"]
    changed = yaml.safe_load(yaml.safe_dump(groups))
    changed[0]["rules"][0]["for"] = "2m"
    assert group_differences(groups, changed) == [
        f"group {groups[0]['name']}, MSSQLBackupJobFailed: for differ"
    ]
    changed[0]["rules"].pop()
    assert f"group {groups[0]['name']}: 5 rules vs 4" in group_differences(groups, changed)
    assert group_differences(groups, [{**groups[0], "name": "x"}])[0].startswith("group names differ")
    assert group_differences(groups, yaml.safe_load(yaml.safe_dump(groups))) == []


def test_readme_regeneration_command_reproduces_the_manifest(tmp_path: Path) -> None:
    readme = README.read_text()
    block = re.search(r"## Keeping the two forms equal.*?```sh\n(.*?)```", readme, re.S)
    assert block, "README.md: no sh block under 'Keeping the two forms equal'"
    work = tmp_path / "deploy" / "alerts"
    work.mkdir(parents=True)
    shutil.copy(RULES, work)
    shutil.copy(PROMETHEUS_RULE, work)
    (work / RULES.name).write_text(RULES.read_text().replace("for: 1m", "for: 45s", 1))
    subprocess.run(["bash", "-euo", "pipefail", "-c", block.group(1)], cwd=tmp_path, check=True, timeout=30)
    regenerated = load(work / PROMETHEUS_RULE.name)
    assert regenerated["metadata"] == load(PROMETHEUS_RULE)["metadata"]
    assert regenerated["spec"]["groups"][0]["rules"][0]["for"] == "45s"
    assert regenerated["spec"]["groups"] == load(work / RULES.name)["groups"]


def test_contract_alerts_exist_with_labels_and_annotations() -> None:
    found = alerts()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in README.read_text().splitlines()
        if line.startswith("#")
    }
    assert set(CONTRACT) <= set(found), f"missing alerts: {sorted(set(CONTRACT) - set(found))}"
    for name, (severity, longest_for) in CONTRACT.items():
        rule = found[name]
        assert rule.get("labels", {}).get("severity") == severity, f"{name}: severity"
        notes = rule.get("annotations", {})
        assert notes.get("summary"), f"{name}: no summary"
        assert "{{ $labels." in notes.get("description", ""), f"{name}: description names no label"
        anchor = str(notes.get("runbook_url", "")).partition("#")[2]
        assert anchor in anchors, f"{name}: runbook_url anchor #{anchor} is not a heading of {README}"
        if longest_for is not None:
            assert seconds(rule.get("for", "0s")) <= longest_for, f"{name}: for longer than {longest_for}s"


def test_rpo_budget_is_one_number_everywhere() -> None:
    rule = alerts()["MSSQLLogBackupTooOld"]
    budgets = {int(n) for n in re.findall(r">\s*(\d+)\s*\)", rule["expr"])}
    budgets |= {seconds(d) for d in re.findall(r"offset (\w+)", rule["expr"])}
    notes = rule["annotations"]["summary"] + rule["annotations"]["description"]
    budgets |= {seconds(d) for d in re.findall(r"(\d+m)\b", notes)}
    assert budgets == {900}, f"MSSQLLogBackupTooOld: the RPO budget appears as {sorted(budgets)} seconds"


def test_missing_promtool_fails_with_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("HARNESS_ALLOW_NO_PROMTOOL", raising=False)
    with pytest.raises(
        pytest.fail.Exception, match=r"install Debian's prometheus package \(make setup does\)"
    ):
        promtool()
    monkeypatch.setenv("HARNESS_ALLOW_NO_PROMTOOL", "1")
    with pytest.raises(pytest.skip.Exception):
        promtool()
