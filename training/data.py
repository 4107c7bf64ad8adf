"""Training data: a datasets/<name> artifact decoded ONCE into a uint8 cache, batches served from its map.

    data = load_train_data(store, "mpii", split="train", image_size=224, cache_scale=1.125, ...)
    loader = BatchLoader(data, batch_size=64, device=dev, seed=0, rank=0, world=1, ...)
    batch = loader.get(epoch, step_in_epoch)      # images (B,3,224,224) [0,1], heatmaps (B,224,224), tokens

The cache (training/cache.py: one per node, keyed by the dataset's fingerprint, the split, the side and the
resize's interpolation) holds every image squashed to a square of side round(image_size * cache_scale), and
every process of the node maps the same file. Squashing rather than centre-cropping keeps every person in
frame: the descriptions talk about all of them and about who is left or right. No JPEG is decoded in the
training loop. (training/stream.py serves batches of the same kind from the Parquet shards instead, for data
that does not fit the cache disk.)

A step is two halves. The host half picks the step's samples and hands over a HostBatch: their uint8 pixels at
the cache side, keypoints, and tokens. The device half (training/views.py BatchViews) makes the views, on the
device: unless
crops are off (crop_scale (1, 1), no flip, cache side = image_size: the paper recipe, whose pixels are then
exactly eval's), a random square crop (and optional flip) applied to the image by one affine grid_sample, and
the SAME crop applied to the keypoints, from which the ROI heatmap is rendered at the output size
(pipeline.heatmaps.roi_heatmap_torch); with heatmap_source="dataset" the stored heatmap is cached and cropped
together with the image instead (the only source for a dataset built with --roi box or mask: its region is
not the keypoints'); with heatmap_source="uniform" every heatmap is all ones (the no-information control:
masked = image), with "shuffled" each image gets the keypoint heatmap of the next image in the batch (the
control that keeps the dimming and the blobs' statistics but not where the person is). Keypoints are
(K, 3) of the dataset's one skeleton (the rows' `skeleton`; MPII-16 for datasets without it).

Sharding is DistributedSampler-like and a pure function of (seed, epoch, step): the epoch's permutation
is split into global batches, and rank r takes every world-th sample of each. Augmentation and sentence
sampling use generators seeded from (seed, rank, epoch, step) too (step_generators), so a resumed run sees
the very same batches.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from pipeline.artifacts.datasets import (
    META_COLUMNS,
    check_columns,
    row_texts,
    shard_paths,
)
from pipeline.errors import PipelineError
from pipeline.skeletons import MPII, SKELETONS, Skeleton
from pipeline.store import Store
from training.cache import NodeCache, cache_root, decode_into
from training.text import TextBank, TextBankBuilder
from training.views import Batch, BatchViews, HostBatch, step_generators

log = logging.getLogger(__name__)


@dataclass(slots=True)
class TrainData:
    images: torch.Tensor  # (N, S, S, 3) uint8 over the node's memory-mapped cache
    heatmaps: torch.Tensor | None  # (N, S, S) uint8 when heatmap_source="dataset"
    # every image's people in turn, (people, K, 3) float32 in cache pixels (NaN where not annotated): image
    # i's are keypoints[people_starts[i]:people_starts[i + 1]] (not padded to the most people of any image,
    # which would cost a crowd image's size per image, in every process)
    keypoints: torch.Tensor
    people_starts: torch.Tensor  # (N + 1,) int64
    texts: TextBank
    image_ids: list[str]
    skipped: dict[str, int]
    skeleton: Skeleton = MPII  # the keypoints' (the part heatmap's body parts)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def side(self) -> int:
        return self.images.shape[1]

    def keypoints_of(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, P, K, 3) keypoints of images idx, P the most people among them; padding people have v = 0 and
        NaN coordinates."""
        starts = self.people_starts
        people = [self.keypoints[starts[i] : starts[i + 1]].numpy() for i in idx.tolist()]
        return torch.from_numpy(padded_keypoints(people, self.skeleton.num_joints))


def row_keypoints(row: dict, where: str, skeleton: Skeleton) -> np.ndarray:
    """(P, K, 3) keypoints as fractions of the stored image's width and height; NaN where not annotated."""
    w, h = row.get("width"), row.get("height")
    if not w or not h or w <= 0 or h <= 0:
        raise PipelineError(f"{where}: invalid width/height {w}x{h}")
    people = row.get("people") or []
    k = skeleton.num_joints
    out = np.zeros((len(people), k, 3), dtype=np.float32)
    for p, person in enumerate(people):
        values = np.asarray(person["keypoints"], dtype=np.float32)
        if values.size != 3 * k:
            raise PipelineError(
                f"{where}: person {p} has {values.size} keypoint values, expected {3 * k} ({k} x 3 of "
                f"{skeleton.name})"
            )
        out[p] = values.reshape(k, 3)
    out[out[..., 2] <= 0, :2] = np.nan
    out[..., 0] *= 1.0 / w  # to [0, 1] of the stored image; scaled to cache pixels later
    out[..., 1] *= 1.0 / h
    return out


def cache_key(fingerprint: str, split: str, side: int, interpolation: str, with_heat: bool) -> str:
    """What the decoded pixels depend on: the dataset's content, the split, the side and the resize."""
    return f"{fingerprint[:16]}-{split}-{side}px-squash-{interpolation}" + ("-hm" if with_heat else "")


def cache_side(image_size: int, cache_scale: float) -> int:
    """The side of the decoded squares (cache or stream): crops of image_size have pixels to spare."""
    return int(round(image_size * cache_scale))


def node_cache(
    store: Store,
    dataset: str,
    *,
    split: str,
    side: int,
    interpolation: str,
    with_heat: bool,
    cache_dir: str | Path | None = None,
) -> NodeCache:
    """The node's decoded cache of the split at this side (built or not)."""
    key = cache_key(store.meta("datasets", dataset)["fingerprint"], split, side, interpolation, with_heat)
    return NodeCache(cache_root(store, cache_dir) / dataset / key)


def load_train_data(
    store: Store,
    dataset: str,
    *,
    split: str,
    image_size: int,
    cache_scale: float,
    tokenizer,
    context_length: int,
    heatmap_source: str = "keypoints",
    interpolation: str = "bicubic",
    cache_dir: str | Path | None = None,
) -> TrainData:
    """Read the split's metadata, build (or reuse) the node's decoded cache, map it, tokenise the texts.

    Every process of a torchrun job calls this: the node's first one to take the cache's lock decodes it,
    the others wait for it (training/cache.py); cache_dir: where (default: training.cache.cache_root).
    """
    shards = shard_paths(store.path("datasets", dataset), split)
    with_heat = heatmap_source == "dataset"
    meta = store.meta("datasets", dataset)
    texts = TextBankBuilder(tokenizer, context_length=context_length)
    rows = _read_rows(shards, with_heat=with_heat, skeletons=dataset_skeletons(meta), texts=texts)
    if not rows.keep:
        raise PipelineError(f"datasets/{dataset}: no '{split}' rows with a description to train on")
    if rows.skipped:
        log.info("datasets/%s %s: kept %d rows, skipped %s", dataset, split, len(rows.keep), rows.skipped)
    side = cache_side(image_size, cache_scale)
    cache = node_cache(
        store,
        dataset,
        split=split,
        side=side,
        interpolation=interpolation,
        with_heat=with_heat,
        cache_dir=cache_dir,
    )
    cache.ensure(
        lambda tmp: decode_into(
            tmp, shards, rows.keep, side=side, with_heatmaps=with_heat, interpolation=interpolation
        )
    )
    images, heatmaps = cache.open(with_heatmaps=with_heat, n=len(rows.keep))
    return TrainData(
        images=images,
        heatmaps=heatmaps,
        keypoints=torch.from_numpy(to_side(np.concatenate(rows.keypoints), side)),
        people_starts=torch.from_numpy(np.cumsum([0] + [len(k) for k in rows.keypoints])),
        texts=rows.texts.build(),
        image_ids=rows.ids,
        skipped=rows.skipped,
        skeleton=rows.skeleton,
    )


@dataclass(slots=True)
class _Rows:
    """The rows training uses: where each sits (shard, row), its descriptions, keypoints in [0, 1], id."""

    texts: TextBankBuilder
    keep: list[tuple[int, int]] = field(default_factory=list)
    keypoints: list[np.ndarray] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    skeleton: Skeleton | None = None  # of the first row; every row must have it


def row_skeleton(current: Skeleton | None, row: dict, where: str, skeletons: dict[str, Skeleton]) -> Skeleton:
    """The row's skeleton, which must be the one of the rows before it (`current`, None for the first)."""
    name = row.get("skeleton") or MPII.name  # datasets built before skeletons existed are MPII
    if current is not None and name != current.name:
        raise PipelineError(
            f"{where}: skeleton {name}, but earlier rows have {current.name}; training reads one "
            f"skeleton per dataset (build one dataset per skeleton)"
        )
    if name not in skeletons:
        raise PipelineError(
            f"{where}: skeleton {name!r} is neither built in nor defined in the dataset's meta.json"
        )
    return skeletons[name]


def dataset_skeletons(meta: dict) -> dict[str, Skeleton]:
    """The skeletons a dataset's rows may name: the built-ins and the (custom) ones its meta.json defines."""
    return SKELETONS | {d["name"]: Skeleton.from_dict(d) for d in meta.get("skeletons", [])}


def dataset_roi(meta: dict) -> str:
    """Where the dataset's stored heatmaps come from (build-dataset --roi; keypoints before the option)."""
    return meta.get("config", {}).get("roi") or "keypoints"


def heatmap_source_for(requested: str | None, roi: str, dataset: str) -> str:
    """The heatmap source a run uses: as asked, or (None) the stored heatmap for a dataset whose ROI is a box
    or mask and the keypoints otherwise. Keypoints on a box or mask dataset would train on another region
    than the one the user built, so that is refused."""
    if roi == "keypoints":
        return requested or "keypoints"
    if requested in ("keypoints", "shuffled"):
        raise PipelineError(
            f"--heatmap-source {requested}: datasets/{dataset} was built with --roi {roi}, and a keypoint "
            f"heatmap is not that region; leave --heatmap-source unset (its stored heatmaps) or use uniform"
        )
    return requested or "dataset"


def _read_rows(
    shards: list[Path], *, with_heat: bool, skeletons: dict[str, Skeleton], texts: TextBankBuilder
) -> _Rows:
    """The shards' metadata columns, 256 rows at a time (the descriptions go straight into `texts`)."""
    rows = _Rows(texts)
    for s, path in enumerate(shards):
        pf = pq.ParquetFile(path)
        schema_names = set(pf.schema_arrow.names)
        check_columns(schema_names, path, heatmaps=with_heat)
        cols = [c for c in META_COLUMNS if c in schema_names]
        r = 0
        for batch in pf.iter_batches(batch_size=256, columns=cols):
            for row in batch.to_pylist():
                _read_row(rows, row, s, r, f"{path.name} row {r}", skeletons)
                r += 1
    return rows


def _read_row(rows: _Rows, row: dict, s: int, r: int, where: str, skeletons: dict[str, Skeleton]) -> None:
    descs = row_texts(row)
    if not descs:
        rows.skipped["no description"] = rows.skipped.get("no description", 0) + 1
        return
    rows.skeleton = row_skeleton(rows.skeleton, row, where, skeletons)
    rows.keep.append((s, r))
    rows.texts.add(descs)
    rows.keypoints.append(row_keypoints(row, where, rows.skeleton))
    rows.ids.append(str(row.get("image_id", f"{s}:{r}")))


def padded_keypoints(kps: list[np.ndarray], num_joints: int) -> np.ndarray:
    """(N, P, K, 3) from N images' (P_i, K, 3), P the most people of any (at least 1); padding people have
    v = 0 and NaN coordinates."""
    p = max((k.shape[0] for k in kps), default=0) or 1
    keypoints = np.zeros((len(kps), p, num_joints, 3), dtype=np.float32)
    keypoints[..., :2] = np.nan
    for i, k in enumerate(kps):
        keypoints[i, : k.shape[0]] = k
    return keypoints


def to_side(keypoints: np.ndarray, side: int) -> np.ndarray:
    """Keypoints given as fractions of the stored image (row_keypoints) in pixels of a side x side square."""
    return keypoints * np.float32([side, side, 1])


@functools.lru_cache(maxsize=2)  # one permutation per epoch, not one per step
def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def local_indices(
    n: int, *, batch_size: int, world: int, rank: int, seed: int, epoch: int, step: int
) -> torch.Tensor:
    """This rank's sample indices for step `step` of `epoch` (global batch = batch_size * world)."""
    g = batch_size * world
    perm = epoch_permutation(n, seed, epoch)
    return perm[step * g : (step + 1) * g][rank::world]


class BatchLoader:
    """Serves this rank's batches from the memory-mapped cache, prepared on the device.

    On CUDA the whole cache is copied to the GPU when it takes under a quarter of its memory; otherwise
    each step gathers its samples from the map into one of two pinned staging buffers (all that is pinned)
    and copies them asynchronously."""

    def __init__(
        self,
        data: TrainData,
        *,
        batch_size: int,
        image_size: int,
        device: torch.device,
        seed: int,
        rank: int = 0,
        world: int = 1,
        crop_scale: tuple[float, float] = (0.8, 1.0),
        hflip: bool = False,
        focus: bool = True,
        heatmap_parts: bool = False,
        uniform_heatmap: bool = False,
        shuffled_heatmap: bool = False,
        sample_sentences: bool = True,
        all_descriptions: bool = True,
        channels_last: bool = False,
        data_on_device: bool | None = None,
        masked_view: str = "shared",
    ):
        self.data = data
        self.batch_size, self.device, self.seed, self.rank, self.world = batch_size, device, seed, rank, world
        self.sample_sentences, self.all_descriptions = sample_sentences, all_descriptions
        self.views = BatchViews(
            image_size=image_size,
            side=data.side,
            device=device,
            seed=seed,
            rank=rank,
            skeleton=data.skeleton,
            crop_scale=crop_scale,
            hflip=hflip,
            focus=focus,
            heatmap_parts=heatmap_parts,
            uniform_heatmap=uniform_heatmap,
            shuffled_heatmap=shuffled_heatmap,
            stored_heatmaps=data.heatmaps is not None,
            channels_last=channels_last,
            masked_view=masked_view,
        )
        n = len(data)
        if n < batch_size * world:
            raise PipelineError(
                f"the split has {n} usable images, fewer than one global batch "
                f"({batch_size} x {world} processes): lower --batch-size"
            )
        self.steps_per_epoch = n // (batch_size * world)  # drop_last, as DistributedSampler + drop_last
        cuda = device.type == "cuda"
        if data_on_device is None:  # the whole cache on the GPU when it takes under a quarter of its memory
            nbytes = data.images.numel() + (data.heatmaps.numel() if data.heatmaps is not None else 0)
            data_on_device = cuda and nbytes < 0.25 * torch.cuda.get_device_properties(device).total_memory
        self.on_device = data_on_device or not cuda
        self.images = data.images.to(device) if self.on_device else data.images
        self.heatmaps = None
        if data.heatmaps is not None:
            self.heatmaps = data.heatmaps.to(device) if self.on_device else data.heatmaps
        self._slot = 0
        self._buffers: list[dict[str, torch.Tensor]] = []
        self._events: list[torch.cuda.Event | None] = [None, None]

    def _gather_host(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Index the mapped cache into one of two pinned staging buffers, then copy asynchronously."""
        if not self._buffers:
            for _ in range(2):
                buf = {
                    "images": torch.empty((len(idx), *self.images.shape[1:]), dtype=torch.uint8).pin_memory()
                }
                if self.heatmaps is not None:
                    buf["heatmaps"] = torch.empty(
                        (len(idx), *self.heatmaps.shape[1:]), dtype=torch.uint8
                    ).pin_memory()
                self._buffers.append(buf)
        slot, self._slot = self._slot, 1 - self._slot
        if self._events[slot] is not None:  # the copy from two steps ago must be done before reuse
            self._events[slot].synchronize()
        buf = self._buffers[slot]
        torch.index_select(self.images, 0, idx, out=buf["images"])
        imgs = buf["images"].to(self.device, non_blocking=True)
        heat = None
        if self.heatmaps is not None:
            torch.index_select(self.heatmaps, 0, idx, out=buf["heatmaps"])
            heat = buf["heatmaps"].to(self.device, non_blocking=True)
        ev = torch.cuda.Event()
        ev.record()
        self._events[slot] = ev
        return imgs, heat

    def host_batch(self, idx: torch.Tensor, epoch: int, step: int) -> HostBatch:
        """The samples idx (indices into the data) as step `step` of `epoch` hands them to the device half."""
        _, rng = step_generators(self.seed, self.rank, epoch, step)
        tokens, stats = self.data.texts.batch(
            idx.numpy(), rng, sample_sentences=self.sample_sentences, all_descriptions=self.all_descriptions
        )
        if self.on_device:
            didx = idx.to(self.device, non_blocking=True)
            imgs = self.images.index_select(0, didx)
            heat = self.heatmaps.index_select(0, didx) if self.heatmaps is not None else None
        else:
            imgs, heat = self._gather_host(idx)
        kps = self.data.keypoints_of(idx)
        return HostBatch(images=imgs, heatmaps=heat, keypoints=kps, tokens=tokens, text_stats=stats)

    def get(self, epoch: int, step: int) -> Batch:
        idx = local_indices(
            len(self.data),
            batch_size=self.batch_size,
            world=self.world,
            rank=self.rank,
            seed=self.seed,
            epoch=epoch,
            step=step,
        )
        return self.views.make(self.host_batch(idx, epoch, step), epoch, step)
