"""No module outside ``modelloop/families/`` names a task or an output kind: the stages ask the family or
the head instead (``families.head_of_task``, ``families.heads``), so a new family or head is one package,
not edits across the stages.

Read with ``ast`` (nothing of a module runs): every string constant equal to a registered config task
(``families.TASKS``) or output kind (``families.heads.KINDS``) is a finding, unless ``ALLOWED`` lists it
with the reason it is not a task (another program's vocabulary that happens to spell the same word).
Docstrings and messages that mention a task inside a sentence are not constants equal to it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import modelloop
from modelloop.families import TASKS
from modelloop.families.heads import KINDS

ROOT = Path(modelloop.__file__).parent

# (module, string): why the literal is not one of ours. Keep this list short.
ALLOWED = {
    ("modelloop.data._lgbm_capi", "binary"): "LightGBM's objective name (its C API's parameter string)",
    ("modelloop.data._lgbm_capi", "multiclass"): "LightGBM's objective name",
    ("modelloop.serving.app", "binary"): "OpenAPI's string format for an uploaded file",
    ("modelloop.scaffold", "anomaly"): "the name of a bundled example project",
    ("modelloop.examples.sensors", "anomaly"): "a label value of the example's data",
}


def _module(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _findings(words: set[str], root: Path = ROOT) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        if (root / "families") in path.parents:
            continue
        name = _module(path, root)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in words \
                    and (name, node.value) not in ALLOWED:
                found.append(f"{path.relative_to(root.parent)}:{node.lineno} names {node.value!r}")
    return found


def test_no_module_outside_the_families_names_a_task_or_an_output_kind():
    words = set(TASKS) | set(KINDS)
    assert {"classification", "regression", "text_classification", "binary", "multiclass"} <= words
    assert _findings(words) == []


def test_the_check_finds_a_task_named_outside_the_families(tmp_path):
    # the walk itself: a stage that branches on a task string is reported with its line; a family may
    root = tmp_path / "modelloop"
    (root / "families" / "tabular").mkdir(parents=True)
    (root / "stage.py").write_text('def metric(task):\n    """Say "regression"."""\n'
                                   '    return "rmse" if task == "regression" else "f1_macro"\n')
    (root / "families" / "tabular" / "head.py").write_text('KIND = "regression"\n')
    assert _findings({"regression"}, root) == ["modelloop/stage.py:3 names 'regression'"]


def test_every_allowed_literal_is_still_there():
    # an entry whose literal is gone is dead weight that would hide a new one
    for (module, word), why in ALLOWED.items():
        path = ROOT.parent / (module.replace(".", "/") + ".py")
        if not path.is_file():
            path = ROOT.parent / module.replace(".", "/") / "__init__.py"
        consts = {n.value for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                  if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        assert word in consts, f"{module}: {word!r} is allowed ({why}) but no longer there"
