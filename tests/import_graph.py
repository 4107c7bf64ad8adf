"""The import graph of pipeline/, training/ and evaluation/, read from the source, and the rules it keeps.

    python tests/import_graph.py [ROOT]    # every importing pair, then whatever breaks a rule

tests/test_architecture.py asserts the rules; this module draws the graph and words what breaks them.

An edge is every `import` / `from ... import` statement wherever it runs: at module level, under an `if`, in a
class body ("top") or inside a function ("def"), but not under `if TYPE_CHECKING:`, which never runs.
`from pkg import name` points at pkg.name when that is a module, else at pkg. A string literal that is
exactly a module's dotted name is an edge too ("str"): that is how an importlib dispatch table imports (a
bare "pipeline" is not: that is the CLI's logger). Importing a.b.c also runs a/__init__ and
a/b/__init__; those implied edges are left out, so that a package's __init__ may re-export its modules' names.
An import inside a function delays a circle to run time; it does not remove it, so those edges count.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("pipeline", "training", "evaluation")
MAX_LINES = 600


@dataclass(frozen=True, slots=True)
class Layer:
    name: str
    holds: str  # what belongs here: the message that places a new module quotes it
    modules: tuple[str, ...]  # each places itself and everything under it, except the root `pipeline`


# Bottom to top: a module imports from its own layer and those below, never from one above. The longest
# entry that covers a module places it. `pipeline` (the root package) places only its __init__, so a new
# module under pipeline/ is in no layer until it is added here.
LAYERS = (
    Layer("base", "errors, logging, skeleton and word tables",
          ("pipeline", "pipeline.errors", "pipeline.log", "pipeline.skeletons", "pipeline.lexicon")),
    Layer("records", "records, the store, and what every stage shares (pool, images, hub, torch devices)",
          ("pipeline.records", "pipeline.store", "pipeline.hub", "pipeline.pool", "pipeline.images",
           "pipeline.devices")),
    Layer("artifacts", "one module per artifact kind: its files, schema, statuses, reader and writer",
          ("pipeline.artifacts",)),
    Layer("pose", "pose facts and checks computed from records, and text parsed against them",
          ("pipeline.geometry", "pipeline.animals", "pipeline.instances", "pipeline.facts", "pipeline.claims",
           "pipeline.claim_patterns", "pipeline.pose_words", "pipeline.faithfulness", "pipeline.bystanders",
           "pipeline.heatmaps", "pipeline.marks", "pipeline.bounds")),
    Layer("sources", "annotation formats read into records, and the synthetic sample",
          ("pipeline.sources", "pipeline.synthetic")),
    Layer("stages", "the data stages: convert, annotate, describe, build-dataset",
          ("pipeline.convert", "pipeline.annotate", "pipeline.describe", "pipeline.build_dataset")),
    # Scoring sits below training so that a run can score itself while it trains with the eval's own code.
    Layer("scoring", "zero-shot scoring of any model: task readers, prompts, classifier, metrics",
          ("evaluation",)),
    Layer("training", "training and the model it writes", ("training",)),
    Layer("evaluation", "what reads finished runs: the eval stage, comparisons of evals, analyze",
          ("evaluation.stage", "evaluation.compare", "pipeline.analyze")),
    Layer("entry", "the command line and the demo", ("pipeline.demo", "pipeline.cli")),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    kind: str  # "top" (runs at import), "def" (inside a function), "str" (a module named in a string)
    where: str  # file:line of the statement


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module under PACKAGES (a package is its __init__.py)."""
    out = {}
    for path in sorted(p for package in PACKAGES for p in (root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _nearest(name: str, known: set[str]) -> str | None:
    while name and name not in known:  # `import a.b.c` where c is a name, not a module: a.b
        name = name.rpartition(".")[0]
    return name or None


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The package a `from ... import` reads from, relative imports resolved against `module`."""
    if not node.level:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, node.module] if node.module else parts)


def _never_runs(node: ast.AST) -> bool:
    """`if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`): imports for the type checker only."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING"


def _targets(module: str, is_package: bool, node: ast.AST, known: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        found = [_nearest(alias.name, known) for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = _absolute(module, is_package, node)
        found = [
            f"{base}.{a.name}" if f"{base}.{a.name}" in known else _nearest(base, known) for a in node.names
        ]
    elif (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and "." in node.value
        and node.value in known
    ):
        found = [node.value]
    else:
        found = []
    return [t for t in found if t and t != module]


def imports_of(module: str, path: Path, root: Path, known: set[str]) -> list[Edge]:
    is_package = path.name == "__init__.py"
    where = path.relative_to(root).as_posix()
    edges: list[Edge] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        if _never_runs(node):
            return
        kind = "str" if isinstance(node, ast.Constant) else "def" if in_function else "top"
        edges.extend(
            Edge(module, t, kind, f"{where}:{node.lineno}") for t in _targets(module, is_package, node, known)
        )
        function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, in_function or function)

    visit(ast.parse(path.read_text(), filename=str(path)), in_function=False)
    return list(dict.fromkeys(edges))  # `from m import a, b` is one edge


def import_graph(root: Path) -> list[Edge]:
    names = module_names(root)
    known = set(names)
    return [e for module, path in names.items() for e in imports_of(module, path, root, known)]


def circles(edges: list[Edge]) -> list[list[str]]:
    """Modules that import each other, directly or round a loop: Tarjan's strongly connected components."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = [stack.pop()]
            while component[-1] != node:
                component.append(stack.pop())
            on_stack.difference_update(component)
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(found)


def sub_package(module: str) -> str:
    """pipeline.describe.stage -> pipeline.describe; training.train stays training.train."""
    return ".".join(module.split(".")[:2])


def package_edges(edges: list[Edge]) -> list[Edge]:
    """The graph with each module counted as its sub-package (pipeline.describe.stage as pipeline.describe).
    A circle here means that two packages are one, or that a name lives in the wrong one."""
    out = [Edge(sub_package(e.source), sub_package(e.target), e.kind, e.where) for e in edges]
    return [e for e in out if e.source != e.target]


def layer_of(module: str) -> int | None:
    """The index in LAYERS of the layer that places `module`, or None."""
    matches = [
        (len(entry), i)
        for i, layer in enumerate(LAYERS)
        for entry in layer.modules
        if module == entry or (entry != "pipeline" and module.startswith(entry + "."))
    ]
    return max(matches)[1] if matches else None


def upward(edges: list[Edge]) -> list[Edge]:
    """Imports from a lower layer up to a higher one (modules in no layer are reported apart)."""
    placed = [(e, layer_of(e.source), layer_of(e.target)) for e in edges]
    return [e for e, low, high in placed if low is not None and high is not None and low < high]


# ---- what breaks a rule, in words that say where and what to do ------------------------------------------


def _loop(members: list[str], edges: list[Edge]) -> str:
    inside = set(members)
    lines = sorted(
        {
            f"    {e.source} -> {e.target} ({e.kind}, {e.where})"
            for e in edges
            if e.source in inside and e.target in inside
        }
    )
    return " <-> ".join(members) + ":\n" + "\n".join(lines)


def circle_problems(edges: list[Edge]) -> list[str]:
    """Circles over all edges, then between sub-packages."""
    found = circles(edges)
    out = [f"import circle {_loop(c, edges)}" for c in found]
    between = package_edges(edges)  # a circle of plain modules (training.a <-> training.b) is said once
    out += [
        f"sub-packages that import each other {_loop(c, between)}" for c in circles(between) if c not in found
    ]
    if out:
        out.append(
            "A name both sides need lives in the wrong module: move it down beside what it belongs to "
            "(STYLE.md 18). An import inside a function only hides a circle."
        )
    return out


def upward_problems(edges: list[Edge]) -> list[str]:
    out = [
        f"{e.source} ({LAYERS[layer_of(e.source)].name}) imports {e.target} "
        f"({LAYERS[layer_of(e.target)].name}) at {e.where} ({e.kind})"
        for e in upward(edges)
    ]
    if out:
        out.append(
            "Move the imported name down to the importer's layer or below, or the importer up "
            "(layers bottom to top: " + " < ".join(layer.name for layer in LAYERS) + ")."
        )
    return out


def placement(module: str, edges: list[Edge]) -> str:
    """Where an unplaced module may go: at or above what it imports, at or below what imports it."""
    needs = sorted(
        (i, e.target) for e in edges if e.source == module and (i := layer_of(e.target)) is not None
    )
    users = sorted(
        (i, e.source) for e in edges if e.target == module and (i := layer_of(e.source)) is not None
    )
    needs, users = needs or [(0, "")], users or [(len(LAYERS) - 1, "")]
    (lowest, needed), (highest, user) = needs[-1], users[0]
    why = "; ".join(w for w in (needed and f"it imports {needed}", user and f"{user} imports it") if w)
    because = f" ({why})" if why else ""
    if lowest > highest:
        return f"but no layer fits{because}: one of those imports runs the wrong way"
    return "in one of: " + ", ".join(layer.name for layer in LAYERS[lowest : highest + 1]) + because


def unplaced_problems(names: dict[str, Path], edges: list[Edge]) -> list[str]:
    out = [
        f"{m} is in no layer: add it to LAYERS in tests/import_graph.py, {placement(m, edges)}"
        for m in names
        if layer_of(m) is None
    ]
    if out:
        out.append("The layers, bottom to top: " + "; ".join(f"{x.name}: {x.holds}" for x in LAYERS) + ".")
    return out


def long_files(names: dict[str, Path]) -> list[tuple[Path, int]]:
    sizes = [(path, len(path.read_text().splitlines())) for path in names.values()]
    return sorted(((p, n) for p, n in sizes if n > MAX_LINES), key=lambda pn: -pn[1])


def long_file_problems(root: Path, names: dict[str, Path]) -> list[str]:
    return [
        f"{path.relative_to(root).as_posix()} has {n} lines (at most {MAX_LINES}): split it so that each "
        "file has one job (STYLE.md 1, 13)"
        for path, n in long_files(names)
    ]


def main(root: Path) -> int:
    names, edges = module_names(root), import_graph(root)
    pairs: dict[tuple[str, str], list[str]] = {}
    for e in edges:
        pairs.setdefault((e.source, e.target), []).append(f"{e.kind} {e.where.rpartition(':')[2]}")
    for (source, target), where in sorted(pairs.items()):
        print(f"{source} -> {target}  [{', '.join(dict.fromkeys(where))}]")
    print(f"\n{len(names)} modules, {len(pairs)} importing pairs")
    entry = len(LAYERS) - 1  # the CLI and the demo import each stage when its command runs, by design
    inside = sorted(
        {(e.source, e.target, e.where) for e in edges if e.kind == "def" and layer_of(e.source) != entry}
    )
    print("imports inside functions below the entry layer (legal where no circle runs through them):")
    print("\n".join(f"  {s} -> {t} ({w})" for s, t, w in inside) or "  none")
    problems = (
        circle_problems(edges)
        + upward_problems(edges)
        + unplaced_problems(names, edges)
        + long_file_problems(root, names)
    )
    print("\n" + ("\n".join(problems) if problems else "every rule holds"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()))
