"""The README and docs/ say what is true: their commands name real options, the README's real run prints what
it shows, its file map names files that exist, and every relative link resolves.

The real run's cheap half (convert, describe, build-dataset, store ls) runs here on the files in
../shared/data; train, eval and analyze, a few seconds more each, run in the slow test.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pipeline.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
CHEAP = ("convert", "describe", "build-dataset", "store")
# where the real run's relative paths point in ../shared/data
REAL_RUN_FILES = {
    "mpii/images": "mpii/mmpose_tests",
    "mpii/test_mpii.json": "mpii/mmpose_tests/test_mpii.json",
    "mpii/mpii_dataset.csv": "mpii/csv_activity/mpii_dataset.csv",
    "eval-data/utkface": "utkface",
    "eval-data/fer2013": "fer2013/images_msambare_layout",
}


def _section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert match, f"README has no section '## {title}'"
    return match.group(1)


def _code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


@dataclass
class Step:
    """One command of a bash block, with the output lines shown under it (the `# ` lines that follow it)."""

    args: list[str]
    shown: list[str] = field(default_factory=list)
    run: bool = True  # False where the README says it was not run here


def _steps(block: str) -> list[Step]:
    steps: list[Step] = []
    for line in block.replace("\\\n", " ").splitlines():
        if line.startswith("# ") and steps:
            steps[-1].shown.append(line[2:])
        elif "focus-pipeline " in line and not line.lstrip().startswith("#"):
            command, _, comment = line.partition("  #")
            for part in re.split(r"&&|;|\|", command):
                if "focus-pipeline " in part:
                    args = shlex.split(part[part.index("focus-pipeline ") :], comments=True)[1:]
                    steps.append(Step(args, run="not run here" not in comment))
    return steps


def _all_commands() -> list[tuple[str, list[str]]]:
    """Every `focus-pipeline ...` line in a bash block of the README and docs/, as (file, arguments)."""
    out = []
    for path in DOCS:
        for block in _code_blocks(path.read_text(), "bash"):
            for step in _steps(block):
                out.append((path.name, step.args))
    return out


def test_every_command_in_the_docs_names_a_real_command_and_real_options():
    root = typer.main.get_command(app)
    global_flags = {o for p in root.params for o in p.opts}
    commands = _all_commands()
    assert len(commands) > 30
    valued = {o for p in root.params if not getattr(p, "is_flag", False) for o in p.opts}
    for source, args in commands:
        while args and args[0] in global_flags:  # focus-pipeline --store DIR demo ...
            args = args[2:] if args[0] in valued else args[1:]
        words = [a for a in args if not a.startswith("-")]
        cmd = root.commands.get(words[0])
        assert cmd is not None, f"{source}: focus-pipeline {words[0]}: no such command"
        if hasattr(cmd, "commands"):
            cmd = cmd.commands[words[1]]
        flags = {"--help"} | global_flags | {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
        unknown = [a.split("=")[0] for a in args if a.startswith("--") and a.split("=")[0] not in flags]
        assert not unknown, f"{source}: focus-pipeline {' '.join(args)}: unknown {unknown}"


def _same(shown: str, printed: str, cwd: Path) -> bool:
    """A shown line matches what was printed: `...` stands for anything, a wall time for any time."""
    wall_time = r"\(\d+\.\d+ s\)"
    printed = re.sub(wall_time, "(TIME)", printed.replace(f"{cwd}/", ""))
    pattern = ".*?".join(re.escape(re.sub(wall_time, "(TIME)", part)) for part in shown.split("..."))
    return re.search(pattern, printed) is not None


def _check_json(shown: str, printed: str) -> None:
    values = json.loads(printed)
    for key, value in re.findall(r'"(\w+)": ([^,{}]+)', shown):
        assert values[key] == json.loads(value), (key, values[key], value)


def _real_run(tmp_path: Path, shared_data: Path, monkeypatch, which) -> list[tuple[Step, str]]:
    for link, target in REAL_RUN_FILES.items():
        (tmp_path / link).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / link).symlink_to(shared_data / target)
    monkeypatch.chdir(tmp_path)
    for var in ("FOCUS_STORE", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    block = _code_blocks(_section(README.read_text(), "A real run, end to end"), "bash")
    assert len(block) == 1
    runner = CliRunner()
    done = []
    for step in _steps(block[0]):
        if step.run and which(step.args[0]):
            result = runner.invoke(app, step.args)
            assert result.exit_code == 0, f"focus-pipeline {' '.join(step.args)}:\n{result.output}"
            done.append((step, result.stdout))
    return done


def test_the_real_run_prints_what_the_readme_shows(tmp_path, shared_data, monkeypatch):
    done = _real_run(tmp_path, shared_data, monkeypatch, lambda command: command in CHEAP)
    assert [s.args[0] for s, _ in done] == ["convert", "describe", "describe", "build-dataset", "store"]
    for step, printed in done:
        for shown in step.shown:
            if shown.startswith("{"):
                _check_json(shown, printed)
            else:
                assert _same(shown, printed, tmp_path), f"{step.args[0]} printed:\n{printed}\nnot:\n{shown}"
    artifacts = {line.split()[0] for line in done[-1][1].splitlines()[1:]}
    assert artifacts == {"annotations/mpii", "descriptions/mpii-rules", "datasets/mpii"}


@pytest.mark.slow
def test_the_whole_real_run_runs(tmp_path, shared_data, monkeypatch):
    done = _real_run(tmp_path, shared_data, monkeypatch, lambda command: True)
    assert [s.args[0] for s, _ in done][4:7] == ["train", "eval", "analyze"]
    for step, printed in done[4:7]:  # losses and accuracies are the CPU's: compare up to the first figure
        for shown in step.shown:
            head = re.split(r"\d", shown, maxsplit=1)[0]
            assert head in printed.replace(f"{tmp_path}/", ""), f"{step.args[0]} printed:\n{printed}"


def _file_map() -> list[str]:
    """The paths of the README's commented tree: a name's indentation puts it under the folder above it."""
    block = _code_blocks(_section(README.read_text(), "Where things are"), "text")
    assert len(block) == 1
    paths, parents = [], []
    for line in block[0].splitlines():
        name = line.split("  #")[0].rstrip()
        if not name.strip():
            continue
        depth = (len(name) - len(name.lstrip())) // 4
        parents[depth:] = [name.strip()]
        paths.append("".join(parents))
    return paths


def test_every_path_in_the_file_map_exists():
    paths = _file_map()
    assert len(paths) > 40
    missing = [p for p in paths if not (ROOT / p.rstrip("/")).exists()]
    assert not missing, f"README file map names paths that do not exist: {missing}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.MULTILINE | re.DOTALL)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.MULTILINE | re.DOTALL)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    broken = []
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        if not file.exists() or (anchor and file.suffix == ".md" and anchor not in _anchors(file)):
            broken.append(link)
    assert not broken, f"{path.name}: broken links {broken}"


def _names_a_real_file(name: str) -> bool:
    file, _, test = name.partition("::")
    if not (ROOT / file).exists():
        return False
    return not test or f"def {test.split('[')[0]}(" in (ROOT / file).read_text()


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_the_docs_name_exists(path):
    """`pipeline/describe/validate.py` and the like, in backticks: a moved module is caught here, and a
    renamed test named as `tests/test_x.py::test_name`."""
    names = re.findall(r"`((?:pipeline|training|evaluation|tests|benchmarks|prompts|data|docs)/[^`\s<>*]+)`",
                       path.read_text())  # fmt: skip
    missing = sorted({n for n in names if not _names_a_real_file(n)})
    assert not missing, f"{path.name} names files that do not exist: {missing}"


def test_the_readme_is_an_entry_point():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    titles = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert titles == ["What you need for what", "Install", "Two commands", "A real run, end to end",
                      "Where things are", "Documentation"]  # fmt: skip


def test_the_readme_lists_every_doc():
    """A new docs/<topic>.md is one line in the README's list, or no one finds it."""
    listed = set(
        re.findall(r"^- \[[^]]+\]\(([^)]+)\)", _section(README.read_text(), "Documentation"), re.MULTILINE)
    )
    docs = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")} | {"benchmarks/README.md"}
    missing = sorted(docs - listed)
    assert not missing, f"the README's Documentation list does not link {missing}"
