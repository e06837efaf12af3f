"""The experiments folder: the matrix a loop runs, opt-in experiments apart, var files apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.paths import project_root
from loadgen.errors import LoadgenError
from orchestration import control
from orchestration.configuration import RUN_KEYS, SCHEMA
from orchestration.control import check_var_files
from orchestration.experiment_tree import (
    OPT_IN,
    VARS,
    declared_keys,
    experiment_files,
    find_experiment,
    tree_home,
)
from orchestration.release import RUN_ORDER, ReleaseSettings
from orchestration.release_preflight import measured_experiment
from tests.test_experiments import EXPERIMENTS


def _experiment(path: Path, *keys: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    configuration = {key: {"type": "env", "key": key.upper()} for key in keys}
    doc = {"title": path.stem, "method": [], "configuration": configuration}
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    _experiment(tmp_path / "b-fault.json", "namespace")
    _experiment(tmp_path / "a-fault.json", "namespace", "fault_key")
    _experiment(tmp_path / OPT_IN / "search.json", "search_key")
    (tmp_path / VARS).mkdir()
    (tmp_path / VARS / "lab.vars.json").write_text(json.dumps({"configuration": {"namespace": "x"}}))
    (tmp_path / "broken.json").write_text('{"method": [')
    (tmp_path / "notes.json").write_text('{"configuration": {"not_an_experiment": 1}}')
    return tmp_path


def test_the_tree_lists_the_matrix_then_opt_in_and_never_var_files(tree: Path) -> None:
    assert [p.relative_to(tree).as_posix() for p in experiment_files(tree)] == [
        "a-fault.json",
        "b-fault.json",
        f"{OPT_IN}/search.json",
    ]
    assert tree_home(tree / "a-fault.json") == tree.resolve()
    assert tree_home(tree / OPT_IN / "search.json") == tree.resolve()
    assert find_experiment(tree, "search") == tree / OPT_IN / "search.json"
    assert find_experiment(tree, "a-fault") == tree / "a-fault.json"
    assert find_experiment(tree, "lab.vars") is None and find_experiment(tree, "nope") is None


def test_one_var_file_serves_the_whole_tree(tree: Path) -> None:
    expected = {"namespace", "fault_key", "search_key"}
    assert declared_keys(tree / "b-fault.json") == expected
    assert declared_keys(tree / OPT_IN / "search.json") == expected
    var_file = tree / VARS / "both.json"
    var_file.write_text(json.dumps({"configuration": {"fault_key": 1, "search_key": 2}}))
    check_var_files(["chaos", "--var-file", str(var_file)], declared_keys(tree / "a-fault.json"))
    var_file.write_text(json.dumps({"configuration": {"serch_key": 2}}))
    with pytest.raises(LoadgenError, match=r"sets \['serch_key'\], which the experiment does not declare"):
        check_var_files(["chaos", "--var-file", str(var_file)], declared_keys(tree / "a-fault.json"))


def test_the_repository_folder_holds_only_experiments_and_every_var_file_fits_it() -> None:
    """``for e in experiments/*.json`` must meet only experiments of bounded time."""
    matrix = sorted(EXPERIMENTS.glob("*.json"))
    assert matrix and [p for p in experiment_files(EXPERIMENTS) if p.parent == EXPERIMENTS] == matrix
    assert "capacity" not in {p.stem for p in matrix}
    assert find_experiment(EXPERIMENTS, "capacity") == EXPERIMENTS / OPT_IN / "capacity.json"
    var_files = sorted((EXPERIMENTS / VARS).glob("*.json"))
    assert {p.name for p in var_files} == {"lab.vars.json", "cluster.vars.example.json"}
    # Every var file the repository ships (the CI templates' too) passes the control's check
    # for every experiment: no key that Chaos Toolkit would drop unnoticed.
    for var_file in [*var_files, project_root() / "deploy" / "ci" / "kind.vars.json"]:
        assert "method" not in json.loads(var_file.read_text())
        for experiment in experiment_files(EXPERIMENTS):
            check_var_files(["chaos", "--var-file", str(var_file)], declared_keys(experiment))


def test_a_release_runs_the_matrix_in_its_order_and_opt_in_only_when_asked(tree: Path) -> None:
    settings = ReleaseSettings(var_files=(), experiments_dir=EXPERIMENTS)
    names = [p.stem for p in settings.experiment_paths()]
    assert sorted(names) == sorted(p.stem for p in EXPERIMENTS.glob("*.json"))
    assert names == [n for n in RUN_ORDER if n in names]
    with_capacity = ReleaseSettings(var_files=(), experiments_dir=EXPERIMENTS, capacity=True)
    assert with_capacity.experiment_paths()[-1] == EXPERIMENTS / OPT_IN / "capacity.json"
    both = ReleaseSettings(
        var_files=(), experiments_dir=EXPERIMENTS, capacity=True, soak=True
    ).experiment_paths()
    assert both[-2:] == [EXPERIMENTS / OPT_IN / "capacity.json", EXPERIMENTS / OPT_IN / "soak.json"]
    assert "soak" not in names  # a day-long soak only when asked
    # A folder's own experiments not in the run order run after it, by name.
    _experiment(tree / "operator-restart.json")
    assert ReleaseSettings(var_files=(), experiments_dir=tree).matrix_names() == [
        "operator-restart",
        "a-fault",
        "b-fault",
    ]


def test_every_experiment_of_the_matrix_declares_every_key_a_run_reads() -> None:
    """Chaos Toolkit drops a var file's value for a key the experiment does not declare, so a key
    every run reads (the operator's namespace and selector, the Helm release) must be declared
    by every experiment, or a cluster's setting silently gives way to the default."""
    for path in experiment_files(EXPERIMENTS):
        if path.parent == EXPERIMENTS:
            declared = set(json.loads(path.read_text())["configuration"])
            assert not RUN_KEYS - declared, (path.name, sorted(RUN_KEYS - declared))


def test_run_json_names_the_operator_pods_and_the_resources_the_evidence_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configuration = {
        "operator_namespace": "sql-system",
        "operator_selector": "app.kubernetes.io/name=mssql",
        "mssql_group": "sql.example.org",
        "backup_plural": "sqlbackups",
    }
    monkeypatch.setattr(control, "_state", {"configuration": configuration})
    control._write_run_json(tmp_path, status="completed")
    doc = json.loads((tmp_path / "run.json").read_text())
    assert doc["operator"] == {"namespace": "sql-system", "selector": "app.kubernetes.io/name=mssql"}
    # ... and the custom resources the snapshots list: the configured CRDs, not the defaults.
    assert doc["custom_resources"] == [
        "mssqlinstances.sql.example.org",
        "mssqlbackuppolicies.sql.example.org",
        "sqlbackups.sql.example.org",
        "mssqlrestores.sql.example.org",
    ]
    monkeypatch.setattr(control, "_state", {"configuration": {}})
    monkeypatch.setenv("HARNESS_OPERATOR_NAMESPACE", "from-env")
    control._write_run_json(tmp_path, status="completed")
    operator = json.loads((tmp_path / "run.json").read_text())["operator"]
    assert operator == {"namespace": "from-env", "selector": "app=mssql-operator"}


def test_every_key_the_harness_checks_is_declared_by_some_experiment() -> None:
    """A key no experiment declares can never be set: a var file is refused, ``--var`` dropped."""
    declared: set[str] = set()
    for path in experiment_files(EXPERIMENTS):
        declared |= set(json.loads(path.read_text())["configuration"])
    assert not set(SCHEMA) - declared, sorted(set(SCHEMA) - declared)


@pytest.mark.parametrize("key", ["fault", "experiment_name"])
def test_a_var_file_may_not_rename_the_experiments(tmp_path: Path, key: str) -> None:
    var_file = tmp_path / "v.json"
    var_file.write_text(json.dumps({"configuration": {key: "pitr-restore"}}))
    with pytest.raises(LoadgenError, match=rf"sets \['{key}'\], which name what each experiment is"):
        check_var_files(["--var-file", str(var_file)], declared_keys(EXPERIMENTS / "node-drain.json"))


def test_links_keep_the_tree_the_user_named(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    _experiment(elsewhere / "linked.json", "linked_key")
    (tree / OPT_IN / "linked.json").symlink_to(elsewhere / "linked.json")
    assert tree_home(tree / OPT_IN / "linked.json") == tree
    assert "fault_key" in declared_keys(tree / OPT_IN / "linked.json")
    linked_tree = tmp_path_factory.mktemp("linked-tree")
    (linked_tree / OPT_IN).symlink_to(tree / OPT_IN)
    assert tree_home(linked_tree / OPT_IN / "search.json") == linked_tree


def test_only_an_experiment_of_the_tree_is_found_by_name(tree: Path) -> None:
    assert find_experiment(tree, f"{VARS}/lab.vars") is None
    assert find_experiment(tree, "notes") is None  # JSON, but no method
    assert find_experiment(tree, "../a-fault") is None and find_experiment(tree, "") is None


def test_the_release_preflight_judges_a_matrix_experiment() -> None:
    """The capacity sweep does not declare the target's keys: its steps run matrix experiments."""
    capacity = EXPERIMENTS / OPT_IN / "capacity.json"
    declares = set(json.loads(capacity.read_text())["configuration"])
    assert RUN_KEYS - declares
    judged = measured_experiment([capacity])
    assert judged.parent == EXPERIMENTS
    assert not RUN_KEYS - set(json.loads(judged.read_text())["configuration"])
    assert measured_experiment([capacity, EXPERIMENTS / "node-drain.json"]) == EXPERIMENTS / "node-drain.json"
