"""`focus-pipeline convert`: placeholder until the stage lands (exits non-zero, writes nothing)."""

from __future__ import annotations

import typer

from pipeline.cli.app import app
from pipeline.errors import PipelineError


@app.command("convert", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def _convert(ctx: typer.Context) -> None:
    """Not built yet."""
    raise PipelineError("the 'convert' stage is not built yet in this version of focus-pipeline")
