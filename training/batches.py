"""Which batches a run trains on: the node's decoded cache (training/data.py; one process per node decodes
it, the others wait and map it) or the Parquet shards streamed (training/stream.py; --data stream, or auto
when the cache would not fit its disk), with the views (training/views.py) made the same way for both.

    data = run_data(cfg, store, info, device, tokenizer, focus=True, channels_last=False)
    batch = data.loader.get(epoch, step)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from pipeline.artifacts.datasets import shard_paths
from pipeline.store import Store
from training.config import TrainConfig
from training.data import (
    BatchLoader,
    TrainData,
    cache_side,
    dataset_skeletons,
    load_train_data,
    node_cache,
)
from training.distributed import DistInfo
from training.stream import StreamOptions, choose_data_mode, split_rows, stream_loader


@dataclass(frozen=True, slots=True)
class RunData:
    loader: Any  # BatchLoader or the stream's loader: get(epoch, step) -> Batch, steps_per_epoch
    mode: str  # "cache" or "stream"
    images: int  # the training images the run sees
    cache: TrainData | None  # the decoded cache's rows (cache mode)
    order: dict[str, Any]  # what the batches' order depends on besides seed and batch size (resume keeps it)


def run_data(
    cfg: TrainConfig,
    store: Store,
    info: DistInfo,
    device: torch.device,
    tokenizer: Any,
    *,
    focus: bool,
    channels_last: bool,
) -> RunData:
    views = {
        "image_size": cfg.image_size,
        "device": device,
        "seed": cfg.seed,
        "rank": info.rank,
        "crop_scale": cfg.crop_scale,
        "hflip": cfg.hflip,
        "focus": focus,
        "heatmap_parts": cfg.heatmap_parts,
        "uniform_heatmap": cfg.heatmap_source == "uniform",
        "shuffled_heatmap": cfg.heatmap_source == "shuffled",
        "channels_last": channels_last,
        "masked_view": cfg.masked_view,
    }
    text = {"sample_sentences": cfg.sentence_sampling, "all_descriptions": cfg.all_descriptions}
    if data_mode(cfg, store, info, device) == "stream":
        opts = StreamOptions(
            batch_size=cfg.batch_size,
            world=info.world,
            rank=info.rank,
            seed=cfg.seed,
            workers=cfg.workers,
            side=cache_side(cfg.image_size, cfg.cache_scale),
            interpolation=cfg.interpolation,
            with_heatmaps=cfg.heatmap_source == "dataset",
            **text,
        )
        loader = stream_loader(
            cfg.data_url or str(store.path("datasets", cfg.dataset)),
            split=cfg.split,
            skeletons=dataset_skeletons(store.meta("datasets", cfg.dataset)),
            opts=opts,
            tokenizer=tokenizer,
            context_length=cfg.context_length,
            **views,
        )
        order = {"data": "stream", "workers": loader.order.workers}
        return RunData(loader, "stream", loader.source.num_usable, None, order)
    cache = load_train_data(
        store,
        cfg.dataset,
        split=cfg.split,
        image_size=cfg.image_size,
        cache_scale=cfg.cache_scale,
        tokenizer=tokenizer,
        context_length=cfg.context_length,
        heatmap_source=cfg.heatmap_source,
        interpolation=cfg.interpolation,
        cache_dir=cfg.cache_dir,
    )
    loader = BatchLoader(cache, batch_size=cfg.batch_size, world=info.world, **views, **text)
    return RunData(loader, "cache", len(cache), cache, {"data": "cache"})


def data_mode(cfg: TrainConfig, store: Store, info: DistInfo, device: torch.device) -> str:
    """--data as this run uses it (training/stream.py choose_data_mode); with several processes, auto
    streams on every rank when any node's cache disk is short, so that all ranks read one order."""
    if cfg.data_url:
        return "stream"
    with_heat = cfg.heatmap_source == "dataset"
    side = cache_side(cfg.image_size, cfg.cache_scale)
    cache = node_cache(
        store,
        cfg.dataset,
        split=cfg.split,
        side=side,
        interpolation=cfg.interpolation,
        with_heat=with_heat,
        cache_dir=cfg.cache_dir,
    )
    rows = split_rows(shard_paths(store.path("datasets", cfg.dataset), cfg.split))
    mode = choose_data_mode(cfg.data, cache, rows=rows, side=side, with_heatmaps=with_heat)
    if cfg.data == "auto" and info.world > 1:
        streams = torch.tensor([float(mode == "stream")], device=device)
        dist.all_reduce(streams, op=dist.ReduceOp.MAX)
        mode = "stream" if streams.item() > 0 else "cache"
    return mode
