"""`focus-pipeline build-dataset`: placeholder until the stage lands (exits non-zero, writes nothing)."""

from __future__ import annotations

import typer

from pipeline.cli.app import app
from pipeline.errors import PipelineError


@app.command("build-dataset", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def _build_dataset(ctx: typer.Context) -> None:
    """Not built yet."""
    raise PipelineError("the 'build-dataset' stage is not built yet in this version of focus-pipeline")
