"""Static checks of the pipeline definition: test isolation, declared files, code and params."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from cifarlab.params import RUNTIME_SECTIONS

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PIPELINE = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
TEST_SPLIT = "data/prepared/test.npz"
EVALUATIONS = ["knn_evaluate", "svm_evaluate"]

# Modules a stage runs whose code cannot change its outputs, and so are not its deps (a change
# to them must not rerun anything): MLflow tracking (logs what the stage computed, writes no
# output), the entry point (turns errors into one line), the error classes (messages only),
# process lifetime (stops a stage whose parent died). Whatever only they import
# (cifarlab.lineage, cifarlab.serving) is not followed.
NOT_OUTPUTS = ("cifarlab.tracking", "cifarlab.cli", "cifarlab.errors", "cifarlab.process")


def _paths(entries):
    for entry in entries or []:
        yield next(iter(entry)) if isinstance(entry, dict) else entry


def declared_files(stage):
    spec = PIPELINE[stage]
    return {p for key in ("deps", "outs", "metrics", "plots") for p in _paths(spec.get(key))}


def _module_file(name: str) -> Path | None:
    path = SRC.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _imported_modules(path: Path) -> set[str]:
    """Every cifarlab module ``path`` imports, at the top or inside a function, and the
    packages Python runs on the way (``cifarlab.knn`` for ``cifarlab.knn.cv``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from cifarlab.data import archive` imports a module, `from x import f` a name.
            found = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in found:
            parts = name.split(".")
            names.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {n for n in names if n.startswith("cifarlab") and _module_file(n) is not None}


def _runs_nothing(path: Path) -> bool:
    """A module holding only a docstring and constants cannot change what a stage computes."""
    body = ast.parse(path.read_text()).body
    return all(isinstance(n, ast.Expr | ast.Assign | ast.ImportFrom) for n in body) and not any(
        isinstance(n, ast.ImportFrom) and n.module != "__future__" for n in body
    )


def code_closure(script: Path) -> set[str]:
    """The src/ files (repository-relative) whose code ``script`` runs and that can change its
    outputs: its cifarlab imports followed transitively, NOT_OUTPUTS left out."""
    todo, seen, files = [script], set(), set()
    while todo:
        for name in _imported_modules(todo.pop()) - seen:
            seen.add(name)
            if name.startswith(NOT_OUTPUTS):
                continue
            path = _module_file(name)
            todo.append(path)
            if not _runs_nothing(path):
                files.add(path.relative_to(REPO).as_posix())
    return files


def test_only_the_evaluations_read_the_test_split():
    readers = [name for name, spec in PIPELINE.items() if TEST_SPLIT in _paths(spec.get("deps"))]
    assert readers == EVALUATIONS
    # Each model's evaluation depends on nothing of the other model.
    knn_files = {p for p in declared_files("knn_evaluate") if "svm" in p or "linear" in p}
    svm_files = {p for p in declared_files("svm_evaluate") if "knn" in p}
    assert not knn_files and not svm_files


@pytest.mark.parametrize("stage", list(PIPELINE))
def test_stage_deps_are_exactly_the_code_it_runs(stage):
    script = f"stages/{stage}.py"
    declared = {p for p in _paths(PIPELINE[stage].get("deps")) if p.startswith("src/")}
    needed = code_closure(REPO / script)
    assert not needed - declared, f"{stage} runs code it does not declare: {needed - declared}"
    assert not declared - needed, f"{stage} declares code it does not run: {declared - needed}"


def test_code_closure_follows_imports_transitively():
    closure = code_closure(REPO / "stages" / "knn_evaluate.py")
    assert "src/cifarlab/knn/_kernels.py" in closure  # estimator -> neighbors -> _kernels
    assert "src/cifarlab/checks.py" in closure
    assert not any("tracking" in path or "linear" in path for path in closure)


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
    undeclared = sections - declared - set(RUNTIME_SECTIONS)
    assert not undeclared, f"{stage} reads params sections {undeclared} undeclared"


def test_settings_that_cannot_change_a_result_are_no_dvc_params():
    declared = {name.split(".")[0] for spec in PIPELINE.values() for name in spec.get("params", [])}
    assert not declared & set(RUNTIME_SECTIONS)


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


TOP_LEVEL_PLOTS = yaml.safe_load((REPO / "dvc.yaml").read_text()).get("plots", [])


def test_the_summary_is_the_only_metrics_file():
    # `dvc exp show` / `dvc metrics diff` then open on the test accuracies, not on choices.
    metrics = [(name, m) for name, spec in PIPELINE.items() for m in _paths(spec.get("metrics"))]
    assert metrics == [("summarize", "reports/metrics.json")]


@pytest.mark.parametrize("stage", list(PIPELINE))
def test_no_uncached_plain_out_so_the_run_cache_works(stage):
    # DVC keeps no run-cache entry for a stage with an uncached plain output.
    for entry in PIPELINE[stage].get("outs", []):
        if isinstance(entry, dict):
            ((path, props),) = entry.items()
            assert props.get("cache", True), f"{stage}: {path} is an uncached out"


def _templates():
    for spec in PIPELINE.values():
        for entry in spec.get("plots", []):
            if isinstance(entry, dict):
                yield from (props.get("template") for props in entry.values() if props)
    for entry in TOP_LEVEL_PLOTS:
        yield from (props.get("template") for props in entry.values())


def test_every_plot_template_is_built_in_or_in_dvc_plots():
    from dvc_render.vega_templates import TEMPLATES

    built_in = {cls.DEFAULT_NAME for cls in TEMPLATES}
    for template in set(_templates()) - {None}:
        custom = REPO / ".dvc" / "plots" / f"{template}.json"
        assert template in built_in or custom.is_file(), f"unknown plot template {template}"


def test_top_level_plots_read_files_a_stage_produces():
    produced = {
        p for spec in PIPELINE.values() for key in ("outs", "plots") for p in _paths(spec.get(key))
    }
    for entry in TOP_LEVEL_PLOTS:
        ((name, props),) = entry.items()
        for path in props["y"]:
            assert path in produced, f"plot {name} reads {path}, which no stage writes"
