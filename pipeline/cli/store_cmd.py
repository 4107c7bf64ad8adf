"""`focus-pipeline store ...`: look inside the artifact store."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pipeline.cli.app import app, state

store_app = typer.Typer(help="List, inspect and remove artifacts in the store.", no_args_is_help=True)
app.add_typer(store_app, name="store")


@store_app.command("ls")
def ls(
    kind: Annotated[
        str | None, typer.Argument(help="Only this kind (annotations, descriptions, ...).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List artifacts with their stage, creation time, counts and inputs."""
    rows = state.store.list(kind)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo(f"(no artifacts in {state.store.root})")
        return
    for r in rows:
        counts = ", ".join(f"{k}={v}" for k, v in list(r["counts"].items())[:4])
        inputs = f"  <- {', '.join(r['inputs'])}" if r["inputs"] else ""
        typer.echo(f"{r['kind']}/{r['name']:<24} {r['created_at'] or '':<26} {counts}{inputs}")


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
) -> None:
    """Delete an artifact."""
    state.store.delete(kind, name)
    typer.echo(f"removed {kind}/{name}")
