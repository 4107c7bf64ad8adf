"""The decoded cache (training/cache.py): mapped, not copied, into each process; built once per node while
the node's other processes wait; and torchrun runs that share one cache per node (PSS grows by one copy of
the cache, not one per rank) or build one per node on two simulated nodes (the same losses)."""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from pipeline.store import Store
from pipeline.synthetic.dataset import write_synthetic_dataset
from training import data as train_data
from training.cache import NodeCache, cache_root

TOKENIZER = open_clip.get_tokenizer("focus-tiny")


@pytest.fixture(scope="module")
def store(module_tmp) -> Store:
    s = Store(module_tmp("cache") / "store")
    write_synthetic_dataset(s, "synth", n_train=32, size=(48, 40), seed=0)
    return s


def test_the_cache_is_mapped_and_serves_the_batches_of_an_in_memory_copy(store, tmp_path, monkeypatch):
    """The images are a map of the cache file (in /proc/self/maps), not a copy; batches from them equal,
    to the bit, those from the whole array read into memory (what training did before the map)."""
    monkeypatch.setenv("FOCUS_CACHE", str(tmp_path / "node-cache"))
    data = train_data.load_train_data(
        store,
        "synth",
        split="train",
        image_size=32,
        cache_scale=1.125,
        tokenizer=TOKENIZER,
        context_length=77,
    )
    (path,) = (tmp_path / "node-cache" / "train-cache" / "synth").glob("*/images.npy")
    assert str(path) in Path("/proc/self/maps").read_text()
    copied = train_data.TrainData(
        images=torch.from_numpy(np.load(path)),
        heatmaps=None,
        keypoints=data.keypoints,
        people_starts=data.people_starts,
        texts=data.texts,
        image_ids=data.image_ids,
        skipped=data.skipped,
        skeleton=data.skeleton,
    )
    common = {"batch_size": 8, "image_size": 32, "device": torch.device("cpu"), "seed": 1, "hflip": True}
    for step in range(4):
        a = train_data.BatchLoader(data, **common).get(epoch=1, step=step)
        b = train_data.BatchLoader(copied, **common).get(epoch=1, step=step)
        assert torch.equal(a.images, b.images) and torch.equal(a.heatmaps, b.heatmaps)
        assert torch.equal(a.tokens, b.tokens)
    assert cache_root(store, tmp_path / "given") == tmp_path / "given"  # --cache-dir wins over FOCUS_CACHE


def _build_slowly(cache_path: str, log: str) -> None:
    """A process of the node: builds the cache (slowly) unless another one holds the lock or has built it."""

    def build(tmp: Path) -> None:
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(1.0)
        np.save(tmp / "images.npy", np.zeros((2, 4, 4, 3), np.uint8))
        (tmp / "done.json").write_text("{}")

    NodeCache(Path(cache_path)).ensure(build)
    images, _ = NodeCache(Path(cache_path)).open(with_heatmaps=False, n=2)
    assert images.shape == (2, 4, 4, 3)


def test_one_process_builds_while_the_others_wait(tmp_path):
    cache, log = tmp_path / "node" / "key", tmp_path / "builds.log"
    procs = [
        mp.get_context("fork").Process(target=_build_slowly, args=(str(cache), str(log))) for _ in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert len(log.read_text().split()) == 1  # one build; the other two waited on the lock and mapped it
    assert sorted(p.name for p in cache.parent.iterdir()) == ["key", "key.lock"]  # no temporary left


def test_a_cache_another_node_published_first_is_used(tmp_path):
    """On a shared filesystem whose lock another node does not see: the node that finishes second finds the
    cache in place at its rename, keeps that one and drops its own."""
    cache = tmp_path / "shared" / "key"
    other = tmp_path / "other-node"
    other.mkdir()
    np.save(other / "images.npy", np.ones((2, 4, 4, 3), np.uint8))
    (other / "done.json").write_text("{}")

    def build(tmp: Path) -> None:
        np.save(tmp / "images.npy", np.zeros((2, 4, 4, 3), np.uint8))
        (tmp / "done.json").write_text("{}")
        shutil.copytree(other, cache)  # the other node's rename lands while this one decodes

    NodeCache(cache).ensure(build)
    images, _ = NodeCache(cache).open(with_heatmaps=False, n=2)
    assert int(images.sum()) == images.numel()  # the other node's
    assert sorted(p.name for p in cache.parent.iterdir()) == ["key", "key.lock"]


# ---- torchrun: one cache per node ----------------------------------------------------------------------
_TRAIN = """# focus-pipeline test rank
import json, sys
from pipeline.store import Store
from training.train import TrainConfig, train
cfg = TrainConfig(dataset=sys.argv[2], model_type="focusclip", arch="focus-tiny", name=sys.argv[3],
                  image_size=32, cache_scale=10.0, batch_size=16, epochs=100, max_steps=int(sys.argv[4]),
                  log_every=4, num_threads=1, device="cpu", overwrite=True)
train(cfg, Store(sys.argv[1]))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        out += [int(c) for c in children]
        todo += [int(c) for c in children]
    return out


def _ranks(launchers: list[subprocess.Popen]) -> list[int]:
    """The training processes under the torchrun launchers (the marker line of _TRAIN is in their argv)."""
    found = []
    for launcher in launchers:
        for pid in _descendants(launcher.pid):
            try:
                if b"focus-pipeline test rank" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
            except OSError:
                continue
    return found


def _launch(
    store: Store, dataset: str, name: str, *, steps: int, nodes: int, node_rank: int, port: int, cache: Path
):
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), f"--nnodes={nodes}", f"--nproc-per-node={2 // nodes}"]
    if nodes == 1:
        cmd += ["--standalone"]
    else:
        cmd += [f"--node-rank={node_rank}", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}"]
        cmd += ["--rdzv-id=two-nodes"]
    cmd += ["--no-python", sys.executable, "-c", _TRAIN, str(store.root), dataset, name, str(steps)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FOCUS_PROGRESS": "0", "FOCUS_CACHE": str(cache)}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


_MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")


_SHARED_OBJECT = re.compile(r"\.so(\.[0-9.]+)?$")


def _pss_mb(pid: int) -> tuple[float, float]:
    """(the process's PSS but its shared libraries', the part of it that maps a cache's images.npy), MiB.
    Libraries are left out: they do not grow with the data, and their PSS is split with every other process
    on the machine that maps libtorch, a number that changes between the two runs on a shared machine."""
    total = cache = 0
    in_cache = in_library = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if _MAPPING.match(line):
            in_cache = line.endswith("/images.npy")
            in_library = bool(_SHARED_OBJECT.search(line))
        elif line.startswith("Pss:"):
            kb = int(line.split()[1])
            total += 0 if in_library else kb
            cache += kb if in_cache else 0
    return total / 1024, cache / 1024


def _run(launchers: list[subprocess.Popen], cache_mb: float = 0.0, timeout: float = 400) -> float:
    """Wait for the launchers; returns the median summed PSS of their 2 training processes while the whole
    cache is mapped into them (the second epoch: every page touched)."""
    sums, end = [], time.monotonic() + timeout
    while any(p.poll() is None for p in launchers) and time.monotonic() < end:
        ranks = _ranks(launchers)
        if len(ranks) == 2 and cache_mb:
            with contextlib.suppress(OSError, ValueError):  # a rank exited since the listing
                (t0, c0), (t1, c1) = (_pss_mb(pid) for pid in ranks)
                if c0 + c1 >= 0.98 * cache_mb:
                    sums.append(t0 + t1)
        time.sleep(0.2)
    for p in launchers:
        out = p.communicate(timeout=max(1.0, end - time.monotonic()))[0]
        assert p.returncode == 0, out[-3000:]
    assert sums or not cache_mb, "no sample with the whole cache mapped"
    return float(np.median(sums)) if sums else 0.0


def _losses(store: Store, name: str) -> list[float]:
    lines = (store.path("runs", name) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(ln)["loss"] for ln in lines]


@pytest.mark.slow
@pytest.mark.timeout(900)  # 6 launches of torchrun: about 6 minutes on 2 busy cores
def test_ranks_share_one_cache_per_node_and_two_nodes_build_their_own(tmp_path):
    """2 ranks on one machine, 48 steps of 2 x 16 samples from a cache of 256 and of 1,024 images at 320 px
    (75 and 300 MiB; 6 and 1.5 epochs, so that the processes' own memory is that of the same work): their
    summed PSS while every page of the cache is mapped grows by less than 1.3x the cache's growth (one copy
    for both, not one each). The ranks' own memory grows with the rows too (texts, keypoints and what reading
    them leaves allocated: ~37 MB over both ranks for 768 more rows), which at a 228 px cache was already
    1.2-1.4x of the cache's growth; at 320 px one copy per rank reads ~2.1x and one per node ~1.15x.
    Then two nodes simulated on localhost (torchrun --nnodes 2, c10d rendezvous), each with its own cache
    folder and none shared: each node builds its own, and the losses equal the one-node run's."""
    store = Store(tmp_path / "store")
    for name, n in (("small", 256), ("large", 1024)):
        write_synthetic_dataset(store, name, n_train=n, size=(64, 48), seed=0)
    pss = {}
    for name, n in (("small", 256), ("large", 1024)):
        cache = tmp_path / f"cache-{name}"
        pss[f"{name}_cache"] = n * 320 * 320 * 3 / 2**20
        launcher = _launch(store, name, f"one-{name}", steps=48, nodes=1, node_rank=0, port=0, cache=cache)
        pss[name] = _run([launcher], cache_mb=pss[f"{name}_cache"])
        (built,) = (cache / "train-cache" / name).glob("*/images.npy")
        assert built.stat().st_size / 2**20 >= pss[f"{name}_cache"]
    growth = pss["large_cache"] - pss["small_cache"]
    assert pss["large_cache"] >= 150
    print(json.dumps(pss))
    assert pss["large"] - pss["small"] < 1.3 * growth, pss

    port = _free_port()
    nodes = [
        _launch(
            store,
            "small",
            "two-nodes",
            steps=48,
            nodes=2,
            node_rank=r,
            port=port,
            cache=tmp_path / f"node{r}",
        )
        for r in (0, 1)
    ]
    _run(nodes)
    for r in (0, 1):
        assert len(list((tmp_path / f"node{r}" / "train-cache" / "small").glob("*/done.json"))) == 1
    assert not (Path(store.root) / ".cache" / "train-cache").exists()  # nothing decoded into the shared store
    one, two = _losses(store, "one-small"), _losses(store, "two-nodes")
    assert len(one) == 48 and np.allclose(one, two, rtol=0, atol=1e-6)
