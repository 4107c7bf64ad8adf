"""The `focus-pipeline` command line: one Typer app, one module per stage command."""

from pipeline.cli import (  # noqa: F401  (importing a module registers its command)
    analyze,
    annotate,
    build_dataset,
    convert,
    demo,
    describe,
    evaluate,
    push,
    store_cmd,
    train,
)
from pipeline.cli.app import app, main

__all__ = ["app", "main"]
