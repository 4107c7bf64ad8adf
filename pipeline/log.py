"""One logging set-up for the whole tool, and the progress bar every long loop uses."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def setup_logging(verbose: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    # httpx logs every request at INFO; that would bury our own counters. datasets logs "JAX version ...
    # available" when jax is installed (mediapipe, the annotate extra, brings it).
    for noisy in ("httpx", "httpcore", "httpx2", "httpcore2", "openai", "urllib3", "filelock", "fsspec",
                  "datasets"):  # fmt: skip
        logging.getLogger(noisy).setLevel(logging.WARNING)


def progress(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    **kwargs,
) -> Iterator[T] | tqdm:
    """tqdm on stderr; FOCUS_PROGRESS=0 turns it off (the tests do)."""
    disable = os.environ.get("FOCUS_PROGRESS", "1") == "0"
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        dynamic_ncols=True,
        file=sys.stderr,
        disable=disable,
        mininterval=0.5,
        **kwargs,
    )
