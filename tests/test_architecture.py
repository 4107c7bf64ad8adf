"""The house rules, checked from the source (tests/import_graph.py draws the graph): no import circle, imports
inside functions included, none between sub-packages; no import from a lower layer up to a higher one; every
module placed in a layer; no file over 600 lines in pipeline/, training/, evaluation/."""

from __future__ import annotations

from pathlib import Path

import pytest
from import_graph import (
    MAX_LINES,
    circle_problems,
    circles,
    import_graph,
    long_file_problems,
    module_names,
    unplaced_problems,
    upward_problems,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def house():
    return module_names(ROOT), import_graph(ROOT)


def _fail_on(problems: list[str]) -> None:
    if problems:  # the problems say where and what to do; a traceback of this file would only hide them
        pytest.fail("\n".join(problems), pytrace=False)


def test_no_import_circle_even_through_imports_inside_functions(house):
    _, edges = house
    _fail_on(circle_problems(edges))


def test_no_import_runs_up_a_layer(house):
    _, edges = house
    _fail_on(upward_problems(edges))


def test_every_module_is_placed_in_a_layer(house):
    names, edges = house
    _fail_on(unplaced_problems(names, edges))


def test_no_file_over_600_lines(house):
    names, _ = house
    _fail_on(long_file_problems(ROOT, names))


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_graph_sees_imports_inside_functions_strings_and_relative_imports(tmp_path):
    root = _tree(
        tmp_path,
        {
            "pipeline/__init__.py": 'READERS = {"b": "pipeline.b"}  # for importlib.import_module\n',
            "pipeline/a.py": "def f():\n    from pipeline import b\n",
            "pipeline/b.py": "from .a import f\n",
            "pipeline/c.py": "import typing\n\nif typing.TYPE_CHECKING:\n    from pipeline import a\n",
        },
    )
    edges = import_graph(root)
    assert {(e.source, e.target, e.kind, e.where) for e in edges} == {
        ("pipeline", "pipeline.b", "str", "pipeline/__init__.py:1"),
        ("pipeline.a", "pipeline.b", "def", "pipeline/a.py:2"),
        ("pipeline.b", "pipeline.a", "top", "pipeline/b.py:1"),
    }
    assert circles(edges) == [["pipeline.a", "pipeline.b"]]
    (problem, advice) = circle_problems(edges)
    assert "pipeline.a <-> pipeline.b" in problem and "(def, pipeline/a.py:2)" in problem
    assert "move it down" in advice


def test_the_rules_catch_a_package_circle_an_upward_import_a_stray_module_and_a_long_file(tmp_path):
    root = _tree(
        tmp_path,
        {
            "pipeline/__init__.py": "",
            "pipeline/geometry.py": "",
            "pipeline/records.py": "import pipeline.describe.stage\n" + "x = 1\n" * MAX_LINES,
            "pipeline/describe/__init__.py": "",
            "pipeline/describe/stage.py": "from pipeline.annotate import models\nimport pipeline.newpose\n",
            "pipeline/annotate/__init__.py": "",
            "pipeline/annotate/models.py": "",
            "pipeline/annotate/stage.py": "from pipeline.describe import stage\n",
            "pipeline/newpose.py": "from pipeline.geometry import angle\n",
            "evaluation/__init__.py": "",
            "evaluation/tasks.py": "",
            "evaluation/stage.py": "",
            "training/__init__.py": "",
            "training/evaluate.py": "import evaluation.tasks\nimport evaluation.stage\n",
        },
    )
    names, edges = module_names(root), import_graph(root)
    assert circles(edges) == []
    assert (
        "sub-packages that import each other pipeline.annotate <-> pipeline.describe"
        in circle_problems(edges)[0]
    )
    # training may score with the eval's readers and tasks while it trains, not call the eval stage
    assert upward_problems(edges)[:-1] == [
        "pipeline.records (records) imports pipeline.describe.stage (stages) at pipeline/records.py:1 (top)",
        "training.evaluate (training) imports evaluation.stage (evaluation) at training/evaluate.py:2 (top)",
    ]
    stray, layers = unplaced_problems(names, edges)
    assert stray == (
        "pipeline.newpose is in no layer: add it to LAYERS in tests/import_graph.py, in one of: pose, "
        "sources, stages (it imports pipeline.geometry; pipeline.describe.stage imports it)"
    )
    assert layers.startswith("The layers, bottom to top: base: ")
    assert long_file_problems(root, names) == [
        f"pipeline/records.py has {MAX_LINES + 1} lines (at most {MAX_LINES}): split it so that each file "
        "has one job (STYLE.md 1, 13)"
    ]
