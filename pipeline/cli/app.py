"""The Typer app every stage registers its command on, the global options, and error reporting."""

from __future__ import annotations

import logging
import sys
import traceback
from dataclasses import dataclass, field
from typing import Annotated

import typer
from typer.core import TyperCommand, TyperGroup

from pipeline.errors import PipelineError
from pipeline.images import DEFAULT_MAX_PIXELS, ENV_MAX_PIXELS, set_max_pixels
from pipeline.log import setup_logging
from pipeline.store import DEFAULT_ROOT, Store

log = logging.getLogger("pipeline")


@dataclass(slots=True)
class State:
    store_root: str = DEFAULT_ROOT
    verbose: bool = False
    _store: Store | None = field(default=None)

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.store_root)
        return self._store


state = State()


ERROR_EXIT = 2  # click's status for usage errors


class FocusGroup(TyperGroup):
    """Turns PipelineError (and, unless --verbose, any other exception) into a one-line error.

    Typer's own exceptions (usage errors, Exit, Abort) pass through to it. Public names only: since 0.26 typer
    vendors click as the private typer._click, and typer.TyperException, the base of its usage errors, is
    public from 0.27.2 (pyproject asks for 0.28.0, see there)."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except PipelineError as err:
            if state.verbose:
                traceback.print_exc()
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(ERROR_EXIT) from None
        except KeyboardInterrupt:
            raise typer.Abort() from None
        except BrokenPipeError:  # the reader went away (`... | head`): click exits quietly on EPIPE
            raise
        except Exception as err:  # an unexpected failure: still one line, the traceback on --verbose
            if state.verbose:
                traceback.print_exc()
            typer.echo(f"error: {type(err).__name__}: {err} (run with --verbose for the traceback)", err=True)
            raise typer.Exit(ERROR_EXIT) from None


class PanelCommand(TyperCommand):
    """A command whose --help lists its options by `rich_help_panel`, one section per panel, in order.

    Typer draws panels only in its rich mode, which this app leaves off: rich markup would eat the
    `[default: ...]` of help texts, and its table cuts long option names short in an 80-column terminal."""

    def format_options(self, ctx: typer.Context, formatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                default = "Arguments" if param.param_type_name == "argument" else "Options"
                sections.setdefault(getattr(param, "rich_help_panel", None) or default, []).append(record)
        for title in ("Arguments", *(t for t in sections if t not in ("Arguments", "Options")), "Options"):
            if title in sections:
                with formatter.section(title):
                    formatter.write_dl(sections[title])


app = typer.Typer(
    name="focus-pipeline",
    cls=FocusGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="FocusCLIP end to end: MPII annotations -> LLM pose descriptions -> dataset -> CLIP/FocusCLIP "
    "-> zero-shot evaluation. Every stage reads and writes one artifact store.",
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"focus-pipeline {version('focus-pipeline')}")
        except PackageNotFoundError:  # a source tree that was never installed
            typer.echo("focus-pipeline (not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    *,
    store: Annotated[
        str,
        typer.Option("--store", envvar="FOCUS_STORE", help="Artifact store root: a folder or an fsspec URL."),
    ] = DEFAULT_ROOT,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Debug logging and full tracebacks.")
    ] = False,
    max_image_pixels: Annotated[
        int,
        typer.Option(
            "--max-image-pixels",
            envvar=ENV_MAX_PIXELS,
            metavar="N",
            help="Image files with more pixels than this are refused, each as its row's error "
            "(decompression bombs); see pipeline/images.py.",
        ),
    ] = DEFAULT_MAX_PIXELS,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    state.store_root = store
    state.verbose = verbose
    state._store = None
    set_max_pixels(max_image_pixels)
    setup_logging(verbose)


def main() -> None:
    app(prog_name="focus-pipeline")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
