"""Static checks of the pipeline definition: test isolation, declared files, declared params."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PIPELINE = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
TEST_SPLIT = "data/prepared/test.npz"


def _paths(entries):
    for entry in entries or []:
        yield next(iter(entry)) if isinstance(entry, dict) else entry


def declared_files(stage):
    spec = PIPELINE[stage]
    return {p for key in ("deps", "outs", "metrics", "plots") for p in _paths(spec.get(key))}


def test_only_evaluate_reads_the_test_split():
    readers = [name for name, spec in PIPELINE.items() if TEST_SPLIT in _paths(spec.get("deps"))]
    assert readers == ["evaluate"]
    assert list(PIPELINE)[-1] == "evaluate"


@pytest.mark.parametrize("stage", list(PIPELINE))
def test_stage_script_matches_its_name_and_declares_its_files(stage):
    script = REPO / "stages" / f"{stage}.py"
    assert PIPELINE[stage]["cmd"] == f"python stages/{stage}.py"
    tree = ast.parse(script.read_text())
    literals = {
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }
    # Files only: folder prefixes of f-strings (f"data/prepared/{name}.npz") have no suffix.
    paths = {s for s in literals if s.startswith(("data/", "reports/")) and Path(s).suffix}
    undeclared = paths - declared_files(stage)
    assert not undeclared, f"{stage} reads or writes undeclared files: {undeclared}"
    assert f"stages/{stage}.py" in declared_files(stage)


@pytest.mark.parametrize("stage", list(PIPELINE))
def test_declared_params_exist(stage):
    for name in PIPELINE[stage].get("params", []):
        node = PARAMS
        for part in name.split("."):
            assert part in node, f"{stage} declares {name}, missing from params.yaml"
            node = node[part]


@pytest.mark.parametrize("stage", list(PIPELINE))
def test_stage_reads_only_declared_param_sections(stage):
    tree = ast.parse((REPO / "stages" / f"{stage}.py").read_text())
    sections = {
        n.slice.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Subscript)
        and isinstance(n.value, ast.Name)
        and n.value.id == "params"
        and isinstance(n.slice, ast.Constant)
    }
    declared = {name.split(".")[0] for name in PIPELINE[stage].get("params", [])}
    assert sections <= declared, f"{stage} reads params sections {sections - declared} undeclared"


def test_every_dependency_exists_or_is_produced():
    produced = {
        p
        for spec in PIPELINE.values()
        for key in ("outs", "metrics", "plots")
        for p in _paths(spec.get(key))
    }
    for name, spec in PIPELINE.items():
        for dep in _paths(spec.get("deps")):
            assert dep in produced or (REPO / dep).exists(), f"{name}: missing dependency {dep}"
