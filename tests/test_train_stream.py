"""Streaming mode (training/stream.py) on real Parquet shards: every usable row once per epoch, as the cache
mode; a mid-epoch restart gives the very batches of an uninterrupted epoch, for any number of workers; a
sample's batch row equals the cache mode's (pixels, tokens, heatmaps); fsspec URLs; memory that does not grow
with the dataset."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys

import fsspec
import open_clip
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.artifacts.datasets import SCHEMA
from pipeline.errors import PipelineError
from pipeline.store import Store
from pipeline.synthetic.dataset import synthetic_rows, write_synthetic_dataset
from training import data as train_data
from training import views
from training.stream import StreamLoader, StreamOptions, StreamOrder, StreamSource

TOKENIZER = open_clip.get_tokenizer("focus-tiny")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def store(module_tmp) -> Store:
    s = Store(module_tmp("stream") / "store")
    write_synthetic_dataset(s, "synth", n_train=96, size=(48, 40), seed=0, shards=3)
    return s


def _views(side: int, rank: int, *, stored: bool = False, crop=(0.8, 1.0)) -> views.BatchViews:
    return views.BatchViews(
        image_size=32,
        side=side,
        device=CPU,
        seed=0,
        rank=rank,
        skeleton=train_data.MPII,
        crop_scale=crop,
        hflip=True,
        focus=True,
        heatmap_parts=False,
        uniform_heatmap=False,
        stored_heatmaps=stored,
        channels_last=False,
        masked_view="shared",
    )


def _loader(source, *, rank=0, world=1, workers=0, batch=8, side=36, stored=False) -> StreamLoader:
    opts = StreamOptions(
        batch_size=batch,
        world=world,
        rank=rank,
        seed=0,
        workers=workers,
        side=side,
        interpolation="bicubic",
        with_heatmaps=stored,
    )
    views = _views(side, rank, stored=stored)
    return StreamLoader(source, views, opts, skeleton=train_data.MPII, tokenizer=TOKENIZER, context_length=77)


def test_order_covers_each_row_once_and_a_restart_continues_the_interleave():
    """Pure order: uneven row groups, 2 ranks; every position once per epoch; the DataLoader's round-robin
    over 1-4 workers maps step k to a batch, and a restart at any step maps the rest alike."""
    sizes = (70, 3, 55, 100, 12, 100, 40)  # 380 rows: spe 380 // 16 = 23 per rank, 12 left out
    for workers in (1, 3, 4):
        order = StreamOrder(sizes, batch_size=8, world=2, workers=workers, seed=5)
        assert order.steps_per_epoch == 23
        seen = collections.Counter()
        for rank in range(2):
            batches = sorted(order.batch_of_step(k) for k in range(23))
            assert batches == list(range(23))  # each of the rank's batches at exactly one step
            for k in range(23):
                seen.update(order.batch_positions(3, rank, order.batch_of_step(k)))
        assert len(seen) == 23 * 16 and max(seen.values()) == 1
        assert all(0 <= row < sizes[unit] for unit, row in seen)
        for start in (0, 1, 5, 22):  # physical worker p serves logical (start + p) % W from its next batch
            for p in range(workers):
                logical = (start + p) % workers
                j = order.first_batch(logical, start)
                owned = order.worker_batches(logical)
                if j < len(owned):
                    assert j * workers + logical >= start and (j - 1) * workers + logical < start
    other_epoch = StreamOrder(sizes, batch_size=8, world=2, workers=1, seed=5).batch_positions(4, 0, 0)
    assert other_epoch != StreamOrder(sizes, batch_size=8, world=2, workers=1, seed=5).batch_positions(
        3, 0, 0
    )


def test_each_epoch_streams_the_cache_modes_multiset_and_the_same_batch_rows(store):
    """96 rows, 2 ranks x 8: every image once per epoch, as the cache mode's epoch; and each streamed batch
    equals the cache mode's batch of the same images at that step (pixels and tokens exactly, views
    within float tolerance: heatmaps are summed over a padding of another length)."""
    data = train_data.load_train_data(
        store,
        "synth",
        split="train",
        image_size=32,
        cache_scale=1.125,
        tokenizer=TOKENIZER,
        context_length=77,
    )
    source = StreamSource.open(str(store.path("datasets", "synth")), "train", with_heatmaps=False)
    index = {image_id: i for i, image_id in enumerate(data.image_ids)}
    for epoch in (0, 1):
        cache_ids, stream_ids = collections.Counter(), collections.Counter()
        for rank in range(2):
            loader = _loader(source, rank=rank, world=2)
            cached = train_data.BatchLoader(
                data, batch_size=8, image_size=32, device=CPU, seed=0, rank=rank, world=2, hflip=True
            )
            assert loader.steps_per_epoch == cached.steps_per_epoch == 6
            for step in range(6):
                idx = train_data.local_indices(
                    96, batch_size=8, world=2, rank=rank, seed=0, epoch=epoch, step=step
                )
                cache_ids.update(data.image_ids[i] for i in idx.tolist())
            for step, host, ids in loader.host_batches(epoch):
                stream_ids.update(ids)
                if step < 2:
                    same = cached.host_batch(torch.tensor([index[i] for i in ids]), epoch, step)
                    assert torch.equal(host.images, same.images) and torch.equal(host.tokens, same.tokens)
                    a, b = loader.views.make(host, epoch, step), cached.views.make(same, epoch, step)
                    torch.testing.assert_close(a.images, b.images)
                    torch.testing.assert_close(a.heatmaps, b.heatmaps)
        assert stream_ids == cache_ids == collections.Counter(data.image_ids)


@pytest.mark.filterwarnings(
    "ignore:This DataLoader will create 3 worker processes"
)  # this machine has 2 cores
def test_a_restart_mid_epoch_gives_the_uninterrupted_batches(store):
    """2 and 3 worker processes over 13 steps (uneven), restarted at steps 1 and 8: the same batches."""
    source = StreamSource.open(str(store.path("datasets", "synth")), "train", with_heatmaps=False)
    for workers in (2, 3):
        loader = _loader(source, workers=workers, batch=7)
        whole = list(loader.host_batches(2))
        assert [s for s, _, _ in whole] == list(range(13))
        for start in (1, 8):
            rest = list(loader.host_batches(2, start))
            assert [s for s, _, _ in rest] == list(range(start, 13))
            for (_, a, ids_a), (_, b, ids_b) in zip(whole[start:], rest, strict=True):
                assert ids_a == ids_b and torch.equal(a.images, b.images) and torch.equal(a.tokens, b.tokens)
    inline = [ids for _, _, ids in _loader(source, workers=0, batch=7).host_batches(2)]
    assert inline == [ids for _, _, ids in _loader(source, workers=1, batch=7).host_batches(2)]
    batch = loader.get(
        2, 5
    )  # the training loop's call: workers restart at step 5 and, on a CPU, make the views
    assert loader.last_ids == whole[5][2]
    made_here = loader.views.make(whole[5][1], 2, 5)
    for got, expected in ((batch.images, made_here.images), (batch.heatmaps, made_here.heatmaps)):
        assert got.shape[0] == 7 and torch.equal(got, expected)


def test_stream_reads_fsspec_urls(store, tmp_path):
    """memory:// (in-process) and file:// (worker processes) give the local path's batches."""
    local = store.path("datasets", "synth")
    fs = fsspec.filesystem("memory")
    for shard in sorted((local / "data").glob("*.parquet")):
        fs.pipe(f"/synth-copy/data/{shard.name}", shard.read_bytes())
    plain = StreamSource.open(str(local), "train", with_heatmaps=False)

    def ids(source, workers=0):
        return [batch_ids for _, _, batch_ids in _loader(source, workers=workers).host_batches(0)]

    memory = StreamSource.open("memory://synth-copy", "train", with_heatmaps=False)
    assert ids(memory) == ids(plain)
    url = StreamSource.open(f"file://{local}", "train", with_heatmaps=False)
    assert ids(url, workers=2) == ids(plain, workers=2)
    with pytest.raises(PipelineError, match=r"memory://nothing-here: no 'train' shards"):
        StreamSource.open("memory://nothing-here", "train", with_heatmaps=False)


def test_stored_heatmaps_rows_without_descriptions_and_a_bad_image(tmp_path):
    """A shard the statistics cannot vouch for is read for its description columns (empty rows are left
    out); stored heatmaps travel with the pixels; an undecodable image is one line naming shard and row."""
    rows = synthetic_rows(20, size=(40, 40), seed=3, split="train")
    for r in (4, 11):
        rows[r]["description"], rows[r]["descriptions"] = None, []
    folder = tmp_path / "ds"
    (folder / "data").mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(rows, schema=SCHEMA), folder / "data" / "train-00000-of-00001.parquet"
    )
    source = StreamSource.open(str(folder), "train", with_heatmaps=True)
    assert source.num_usable == 18 and source.rows_total == 20
    loader = _loader(source, batch=6, stored=True)
    ids = collections.Counter(i for _, host, batch_ids in loader.host_batches(0) for i in batch_ids)
    assert set(ids) == {r["image_id"] for i, r in enumerate(rows) if i not in (4, 11)}
    _, host, _ = next(loader.host_batches(0))
    assert host.heatmaps.shape == (6, 36, 36) and host.heatmaps.max() > 200
    assert loader.get(0, 0).heatmaps.shape == (6, 32, 32)

    rows[7]["image"] = {"bytes": b"not an image", "path": None}
    pq.write_table(
        pa.Table.from_pylist(rows, schema=SCHEMA), folder / "data" / "train-00000-of-00001.parquet"
    )
    bad = _loader(StreamSource.open(str(folder), "train", with_heatmaps=False), batch=6, workers=2)
    with pytest.raises(PipelineError, match=r"^train-00000-of-00001.parquet row 7: cannot decode image"):
        for _ in bad.host_batches(0):
            pass


_RSS_SCRIPT = """
import json, resource, sys, torch, open_clip
from training import data as D
from training import views as V
from training.stream import StreamLoader, StreamOptions, StreamSource
source = StreamSource.open(sys.argv[1], "train", with_heatmaps=False)
opts = StreamOptions(batch_size=16, world=1, rank=0, seed=0, workers=1, side=224, interpolation="bilinear",
                     with_heatmaps=False, shuffle_rows=256)
views = V.BatchViews(image_size=32, side=224, device=torch.device("cpu"), seed=0, rank=0, skeleton=D.MPII,
                     crop_scale=(0.8, 1.0), hflip=False, focus=True, heatmap_parts=False,
                     uniform_heatmap=False, stored_heatmaps=False, channels_last=False, masked_view="shared")
loader = StreamLoader(source, views, opts, skeleton=D.MPII, tokenizer=open_clip.get_tokenizer("focus-tiny"),
                      context_length=77)
n = 0
for step in range(loader.steps_per_epoch):
    n += loader.get(0, step).images.shape[0]
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"samples": n, "rss_mb": own / 1024, "worker_rss_mb": workers / 1024}))
"""


@pytest.mark.slow
def test_stream_memory_does_not_grow_with_the_dataset(tmp_path):
    """One epoch at 224 px over 256 and 1,024 images in shuffle blocks of 256 (decoded: 39 and 154 MB): the
    peak RSS of the main process and of its worker grow by less than 10%."""
    peaks = {}
    for n in (256, 1024):
        store = Store(tmp_path / f"s{n}")
        write_synthetic_dataset(store, "big", n_train=n, size=(64, 48), seed=0, shards=n // 256)
        proc = subprocess.run(
            [sys.executable, "-c", _RSS_SCRIPT, str(store.path("datasets", "big"))],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        peaks[n] = json.loads(proc.stdout.strip().splitlines()[-1])
        assert peaks[n]["samples"] == n
    small, large = peaks[256], peaks[1024]
    for key in ("rss_mb", "worker_rss_mb"):
        assert large[key] < 1.10 * small[key], peaks  # holding the decoded data would add 115 MB
