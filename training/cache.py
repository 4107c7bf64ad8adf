"""The decoded training cache: a split's images squashed once to uint8 pixels, one copy per node, read through
a memory map by every process that trains from it.

    root = cache_root(store, cache_dir=None)           # --cache-dir, else $FOCUS_CACHE, else the store's
    cache = NodeCache(root / "mpii" / key)
    cache.ensure(lambda tmp: decode_into(tmp))         # one process per node builds it; the others wait
    images, heatmaps = cache.open()                    # (N, S, S, 3) / (N, S, S) uint8 memory maps

Memory: the arrays are memory maps of the cache's .npy files, so the pages live once in the OS page cache and
every local rank maps the same pages (PSS, not RSS, shows it: RSS counts a shared page in every process that
touched it). Nothing here is pinned; the loader pins only the staging buffers of the batches in flight.

Building: under an exclusive lock on `<key>.lock` beside the cache, the first process to take it decodes into
`<key>.tmp-<host>-<pid>/`, writes done.json last and renames the folder into place; the node's other processes
block on the lock (no collective, so no distributed timeout while a large cache decodes) and then map what it
wrote. On a filesystem shared by several nodes the lock serialises them where the filesystem honours it, and
where it does not, each node decodes into its own temporary folder and the first rename wins (the others find
the cache in place and drop theirs): either way the published cache is whole and identical.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pipeline.errors import PipelineError
from pipeline.log import progress
from pipeline.store import Store
from training.pixels import image_bytes, squash

log = logging.getLogger(__name__)

IMAGES, HEATMAPS, DONE = "images.npy", "heatmaps.npy", "done.json"


def cache_root(store: Store, cache_dir: str | Path | None = None) -> Path:
    """Where decoded caches live: --cache-dir, else $FOCUS_CACHE/train-cache, else the store's own cache
    folder (inside a local store's root). Point it at a node-local disk when the store is on a shared one."""
    if cache_dir:
        root = Path(cache_dir).expanduser()
    elif os.environ.get("FOCUS_CACHE"):
        root = Path(os.environ["FOCUS_CACHE"]).expanduser() / "train-cache"
    else:
        return store.cache_dir("train-cache")
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_bytes(n: int, side: int, *, with_heatmaps: bool) -> int:
    """The size of a cache of n images at side x side (and their heatmaps)."""
    return n * side * side * (4 if with_heatmaps else 3)


def free_bytes(path: Path) -> int:
    """Free space on the filesystem that holds path (its nearest existing parent)."""
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


class NodeCache:
    """A decoded cache folder: images.npy [+ heatmaps.npy] + done.json (written last: the cache is whole)."""

    def __init__(self, path: Path):
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")

    def ready(self) -> bool:
        return (self.path / DONE).is_file()

    def ensure(self, build: Callable[[Path], None]) -> None:
        """Build the cache unless it is in place: build(tmp) fills the folder tmp; it is published whole."""
        if self.ready():
            return
        with self._locked():
            if self.ready():  # built by another process while this one waited
                return
            self._remove_own_leftovers()
            tmp = self.path.with_name(f"{self.path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
            tmp.mkdir(parents=True)
            try:
                build(tmp)
                self._publish(tmp)
            finally:  # a bad image or Ctrl-C: leave no half-written cache behind
                shutil.rmtree(tmp, ignore_errors=True)
                pa.default_memory_pool().release_unused()  # the shards' bytes; not this process's to keep

    def open(self, *, with_heatmaps: bool, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The cache's arrays as tensors over read-only-in-practice memory maps (copy-on-write, so a stray
        write stays private instead of corrupting the file; reading pages never copies them)."""
        images = _mapped(self.path / IMAGES)
        heatmaps = _mapped(self.path / HEATMAPS) if with_heatmaps else None
        if images.shape[0] != n:
            raise PipelineError(
                f"decoded cache {self.path} has {images.shape[0]} images, expected {n}: delete it"
            )
        return images, heatmaps

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for %s: another process is decoding it", self.path)
                fcntl.flock(fh, fcntl.LOCK_EX)
            except OSError as err:  # a filesystem without locks: the atomic rename still keeps it whole
                log.warning("cannot lock %s (%s); building without the lock", self.lock_path, err)
            try:
                yield
            finally:
                with contextlib.suppress(OSError):
                    fcntl.flock(fh, fcntl.LOCK_UN)

    def _remove_own_leftovers(self) -> None:
        """Temporary folders this host left when a build was killed (under the lock none of them is live;
        other hosts' folders on a shared filesystem may be, and are theirs to remove)."""
        for old in self.path.parent.glob(f"{self.path.name}.tmp-{socket.gethostname()}-*"):
            shutil.rmtree(old, ignore_errors=True)

    def _publish(self, tmp: Path) -> None:
        try:
            tmp.rename(self.path)
        except OSError:
            if not self.ready():  # not "another node published it first": a real failure
                raise
            log.info("%s was published by another node first; using it", self.path)


def decode_into(
    tmp: Path,
    shards: list[Path],
    keep: list[tuple[int, int]],
    *,
    side: int,
    with_heatmaps: bool,
    interpolation: str,
) -> None:
    """Decode the kept (shard, row)s' images (and heatmaps) into tmp's .npy files, in keep's order, one row
    group in memory at a time; done.json last."""
    n = len(keep)
    images = np.lib.format.open_memmap(tmp / IMAGES, mode="w+", dtype=np.uint8, shape=(n, side, side, 3))
    heat = None
    if with_heatmaps:
        heat = np.lib.format.open_memmap(tmp / HEATMAPS, mode="w+", dtype=np.uint8, shape=(n, side, side))
    wanted: dict[int, dict[int, int]] = {}  # shard -> row -> output row
    for out_row, (s, r) in enumerate(keep):
        wanted.setdefault(s, {})[r] = out_row
    cols = ["image", "heatmap"] if with_heatmaps else ["image"]
    bar = progress(total=n, desc=f"decoding images to {side}px cache", unit="img")
    with ThreadPoolExecutor(max_workers=max(1, min(16, os.cpu_count() or 1))) as pool:
        for s, rows in wanted.items():
            pf = pq.ParquetFile(shards[s])
            first = 0
            for g in range(pf.num_row_groups):
                size = pf.metadata.row_group(g).num_rows
                todo = [(r, rows[r]) for r in range(first, first + size) if r in rows]
                if todo:
                    table = pf.read_row_group(g, columns=cols).to_pydict()

                    def work(item, table=table, first=first, name=shards[s].name):
                        r, out_row = item
                        where = f"{name} row {r}"
                        cell = image_bytes(table["image"][r - first], where)
                        images[out_row] = squash(cell, side, "RGB", where, interpolation)
                        if heat is not None:
                            cell = image_bytes(table["heatmap"][r - first], where + " heatmap")
                            heat[out_row] = squash(cell, side, "L", where)

                    for _ in pool.map(work, todo):
                        bar.update(1)
                first += size
    bar.close()
    images.flush()
    if heat is not None:
        heat.flush()
    (tmp / DONE).write_text(json.dumps({"n": n, "side": side}))


def _mapped(path: Path) -> torch.Tensor:
    try:
        array = np.load(path, mmap_mode="c")
    except (OSError, ValueError) as err:
        raise PipelineError(f"decoded cache file {path} cannot be read ({err}): delete its folder") from None
    return torch.from_numpy(array)
