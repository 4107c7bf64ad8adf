"""Shared fixtures: the real data beside the checkout, a temporary store, and a CLI runner bound to it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

# ../shared/data beside the checkout (CI has it too). Tests read real files from here; never copy them in.
SHARED_DATA = Path(
    os.environ.get("FOCUS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)

os.environ.setdefault("FOCUS_PROGRESS", "0")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module that asks (pytestmark = pytest.mark.usefixtures(...)): the suite
    shares 2 cores, where a second thread mostly waits on the first."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def module_tmp(request, tmp_path_factory):
    """module_tmp("store") makes a folder for a module's shared fixtures. They go when the module is done
    unless one of its tests failed: the suite's runs and checkpoints add up to gigabytes, more than a CI
    disk may have free."""
    root = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2].removeprefix("test_"))
    failed_before = request.session.testsfailed

    def mktemp(name: str) -> Path:
        path = root / name
        path.mkdir()
        return path

    yield mktemp
    if request.session.testsfailed == failed_before:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_root: Path):
    from pipeline.store import Store

    return Store(store_root)


@pytest.fixture
def cli(store_root: Path):
    """cli("convert", "x.json") runs the Typer app in-process on the temporary store."""
    from pipeline.cli import app

    runner = CliRunner()

    def invoke(*args: str, **kwargs):
        return runner.invoke(app, ["--store", str(store_root), *map(str, args)], **kwargs)

    return invoke
