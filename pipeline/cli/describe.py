"""`focus-pipeline describe`: placeholder until the stage lands (exits non-zero, writes nothing)."""

from __future__ import annotations

import typer

from pipeline.cli.app import app
from pipeline.errors import PipelineError


@app.command("describe", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def _describe(ctx: typer.Context) -> None:
    """Not built yet."""
    raise PipelineError("the 'describe' stage is not built yet in this version of focus-pipeline")
