"""`focus-pipeline store ...`: look inside the artifact store."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pipeline.cli.app import app, state
from pipeline.errors import PipelineError

store_app = typer.Typer(help="List, inspect and remove artifacts in the store.", no_args_is_help=True)
app.add_typer(store_app, name="store")


@store_app.command("ls")
def ls(
    kind: Annotated[
        str | None, typer.Argument(help="Only this kind (annotations, descriptions, ...).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List artifacts with their stage, creation time, counts and inputs (a corrupt meta.json: its path and
    what is wrong)."""
    rows = state.store.list(kind)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo(f"(no artifacts in {state.store.root})")
        return
    table = [("ARTIFACT", "CREATED", "COUNTS", "INPUTS")]
    for r in rows:
        if r["status"] == "corrupt":
            table.append((f"{r['kind']}/{r['name']}", "corrupt", "", r["problem"]))
            continue
        counts = ", ".join(f"{k}={v}" for k, v in list(r["counts"].items())[:4])
        created = (r["created_at"] or "")[:19].replace("T", " ")
        table.append((f"{r['kind']}/{r['name']}", created, counts, ", ".join(r["inputs"])))
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[3])


@store_app.command("show")
def show(
    kind: Annotated[str, typer.Argument(help="Artifact kind.")],
    name: Annotated[str, typer.Argument(help="Artifact name.")],
) -> None:
    """Print an artifact's meta.json (lineage, config, counts)."""
    typer.echo(json.dumps(state.store.meta(kind, name), indent=2))


@store_app.command("rm")
def rm(
    kind: Annotated[str, typer.Argument(help="Artifact kind.")],
    name: Annotated[str, typer.Argument(help="Artifact name.")],
    force: Annotated[
        bool, typer.Option("--force", help="Delete even when other artifacts were built from it.")
    ] = False,
) -> None:
    """Delete an artifact (refused while other artifacts list it as an input, or may do so because their
    meta.json is corrupt, unless --force)."""
    users = state.store.dependents(kind, name)
    unknown = state.store.unknown_lineage(kind, name)
    if users and not force:
        raise PipelineError(
            f"{kind}/{name} is an input of {', '.join(users)}; delete those first or pass --force"
        )
    if unknown and not force:
        raise PipelineError(
            f"{kind}/{name} may be an input of {'; '.join(unknown)}, whose inputs cannot be read; pass "
            f"--force to remove {kind}/{name} anyway, or first remove the corrupt one with --force"
        )
    state.store.delete(kind, name)
    typer.echo(f"removed {kind}/{name}" + (f" (its dependents remain: {', '.join(users)})" if users else ""))
