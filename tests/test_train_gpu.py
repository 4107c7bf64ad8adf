"""The training data paths on CUDA (skipped without one; benchmarks/gpu_check.sh runs them): the cache mode's
pinned staging buffers and its whole-cache-on-the-GPU path, and the stream's pinned worker batches, give the
batches the CPU gives."""

from __future__ import annotations

import open_clip
import pytest
import torch

from pipeline.store import Store
from pipeline.synthetic.dataset import write_synthetic_dataset
from training import data as train_data
from training import views as train_views
from training.stream import StreamLoader, StreamOptions, StreamSource

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

TOKENIZER = open_clip.get_tokenizer("focus-tiny")


@pytest.fixture(scope="module")
def store(module_tmp) -> Store:
    s = Store(module_tmp("gpu") / "store")
    write_synthetic_dataset(s, "synth", n_train=48, size=(48, 40), seed=0, shards=2)
    return s


def _close(a: train_views.Batch, b: train_views.Batch) -> None:
    torch.testing.assert_close(a.images.cpu(), b.images.cpu(), atol=1e-5, rtol=0)
    torch.testing.assert_close(a.heatmaps.cpu(), b.heatmaps.cpu(), atol=1e-5, rtol=0)
    assert torch.equal(a.tokens.cpu(), b.tokens.cpu())


def test_cache_mode_on_cuda_gives_the_cpus_batches(store):
    data = train_data.load_train_data(
        store,
        "synth",
        split="train",
        image_size=32,
        cache_scale=1.125,
        tokenizer=TOKENIZER,
        context_length=77,
    )
    common = {"batch_size": 8, "image_size": 32, "seed": 0, "hflip": True}
    cpu = train_data.BatchLoader(data, device=torch.device("cpu"), **common)
    staged = train_data.BatchLoader(data, device=torch.device("cuda"), data_on_device=False, **common)
    resident = train_data.BatchLoader(data, device=torch.device("cuda"), data_on_device=True, **common)
    assert not staged.on_device and resident.on_device
    for step in range(4):  # more steps than staging buffers: each is reused after its copy completed
        expected = cpu.get(epoch=0, step=step)
        _close(staged.get(epoch=0, step=step), expected)
        _close(resident.get(epoch=0, step=step), expected)


def test_stream_on_cuda_gives_the_cpus_batches(store):
    source = StreamSource.open(str(store.path("datasets", "synth")), "train", with_heatmaps=False)
    loaders = []
    for device in ("cpu", "cuda"):
        views = train_views.BatchViews(
            image_size=32,
            side=36,
            device=torch.device(device),
            seed=0,
            rank=0,
            skeleton=train_data.MPII,
            crop_scale=(0.8, 1.0),
            hflip=True,
            focus=True,
            heatmap_parts=False,
            uniform_heatmap=False,
            stored_heatmaps=False,
            channels_last=False,
            masked_view="shared",
        )
        opts = StreamOptions(
            batch_size=8,
            world=1,
            rank=0,
            seed=0,
            workers=2,
            side=36,
            interpolation="bicubic",
            with_heatmaps=False,
        )
        loaders.append(
            StreamLoader(
                source, views, opts, skeleton=train_data.MPII, tokenizer=TOKENIZER, context_length=77
            )
        )
    cpu, cuda = loaders
    for step in range(cpu.steps_per_epoch):
        batch = cuda.get(0, step)
        assert batch.images.is_cuda
        _close(batch, cpu.get(0, step))
