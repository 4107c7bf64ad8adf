"""A small synthetic datasets/<name> artifact written directly in the published layout (pipeline.artifacts.
datasets, with its writer), for training tests and benchmarks that need a dataset in a second, not a pipeline
run.

    write_synthetic_dataset(store, "synth", n_train=64, size=(96, 80), seed=0)

(The demo's sample, pipeline/synthetic/sample.py, goes through convert, describe and build-dataset instead.)

Each image shows one or two "people" (a bright stick figure whose colour and pose depend on the activity)
on a noisy background; the description names the activity and the figure's side, then adds limb
sentences, so captions are long enough to exercise sentence sampling. The parquet columns follow the
interface in DESIGN.md (image/heatmap as {bytes, path} structs, people keypoints in stored-image pixels).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipeline.artifacts import datasets
from pipeline.errors import PipelineError
from pipeline.heatmaps import roi_heatmap, to_uint8
from pipeline.store import Recorded, Store

ACTIVITIES = [
    ("sports", "running"),
    ("sports", "cycling"),
    ("home activities", "sitting"),
    ("dancing", "dancing"),
    ("occupation", "standing"),
    ("water activities", "swimming"),
]
_COLOURS = [(230, 60, 50), (50, 200, 80), (60, 90, 230), (230, 200, 40), (200, 60, 220), (40, 210, 220)]
# Limb segments between MPII keypoints (ankle-knee-hip, wrist-elbow-shoulder, pelvis-thorax-head).
_BONES = [
    (0, 1),
    (1, 2),
    (5, 4),
    (4, 3),
    (10, 11),
    (11, 12),
    (15, 14),
    (14, 13),
    (6, 7),
    (7, 8),
    (8, 9),
    (2, 6),
    (3, 6),
    (12, 7),
    (13, 7),
]


def _figure(rng: np.random.Generator, cx: float, cy: float, h: float, act: int) -> np.ndarray:
    """(16, 3) keypoints of a stick figure whose pose depends on the activity."""
    s = h / 8
    arm_up = act in (3, 5)
    legs_bent = act in (1, 2)
    pts = {
        9: (0, -4),
        8: (0, -3.2),
        7: (0, -2.6),
        6: (0, 0),
        12: (-0.8, -2.6),
        13: (0.8, -2.6),
        11: (-1.4, -3.6 if arm_up else -1.4),
        14: (1.4, -3.6 if arm_up else -1.4),
        10: (-1.6, -4.6 if arm_up else -0.2),
        15: (1.6, -4.6 if arm_up else -0.2),
        2: (-0.5, 0.1),
        3: (0.5, 0.1),
        1: (-0.6 - legs_bent * 1.2, 1.8),
        4: (0.6 + legs_bent * 1.2, 1.8),
        0: (-0.6, 3.6),
        5: (0.6, 3.6),
    }
    k = np.zeros((16, 3), np.float32)
    for j, (dx, dy) in pts.items():
        k[j] = (cx + (dx + rng.normal(0, 0.1)) * s, cy + (dy + rng.normal(0, 0.1)) * s, 2)
    return k


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG" if arr.ndim == 2 else "JPEG", quality=90)
    return buf.getvalue()


def synthetic_rows(n: int, *, size: tuple[int, int], seed: int, split: str) -> list[dict]:
    rng = np.random.default_rng(seed)
    w, h = size
    rows = []
    for i in range(n):
        act = int(rng.integers(len(ACTIVITIES)))
        category, activity = ACTIVITIES[act]
        n_people = 1 + int(rng.random() < 0.3)
        img = (rng.normal(110, 35, (h, w, 3))).clip(0, 255).astype(np.uint8)
        pil = Image.fromarray(img)
        draw = ImageDraw.Draw(pil)
        people, kps, sides = [], [], []
        for p in range(n_people):
            cx = w * (0.25 + 0.5 * p if n_people == 2 else rng.uniform(0.3, 0.7))
            ph = h * rng.uniform(0.55, 0.8)
            k = _figure(rng, cx, h * 0.5, ph, act)
            for a, b in _BONES:
                draw.line([tuple(k[a, :2]), tuple(k[b, :2])], fill=_COLOURS[act], width=max(2, w // 40))
            hx, hy = k[9, :2]
            r = ph / 14
            draw.ellipse([hx - r, hy - r, hx + r, hy + r], fill=_COLOURS[act])
            if rng.random() < 0.2:  # an occluded ankle, as in real annotations
                k[0] = (np.nan, np.nan, 0)
            kps.append(k)
            people.append(
                {
                    "keypoints": k.reshape(-1).tolist(),
                    "center": [float(cx), float(h * 0.5)],
                    "scale": float(ph / 200),
                }
            )
            sides.append("left" if cx < w / 3 else "right" if cx > 2 * w / 3 else "center")
        count = "One person is" if n_people == 1 else "Two people are"
        limbs = [
            f"The {side} person's left arm is {'raised above the head' if act in (3, 5) else 'lowered'}."
            for side in sides
        ]
        limbs += [
            f"The {side} person's legs are {'bent at the knees' if act in (1, 2) else 'straight'}."
            for side in sides
        ]
        limbs += [
            "The torso is upright and the head faces forward.",
            "Both shoulders are level and relaxed, and the hips are aligned with the shoulders.",
            "The weight is spread evenly over both feet, which rest flat on the ground.",
        ]
        desc = f"{count} {activity} in this image, an activity from {category}. " + " ".join(limbs)
        alt = f"A photo of {count.lower()} {activity}. " + " ".join(reversed(limbs))
        hm = roi_heatmap(np.stack(kps), image_size=(w, h))
        rows.append(
            {
                "image": {"bytes": _png(np.asarray(pil)), "path": None},
                "heatmap": {"bytes": _png(to_uint8(hm)), "path": None},
                "image_id": f"{split}-{i:05d}.jpg",
                "split": split,
                "activity": activity,
                "category": category,
                "activity_id": act,
                "description": desc,
                "descriptions": [
                    {"source": "rules", "model": "synthetic", "text": desc},
                    {"source": "rules-alt", "model": "synthetic", "text": alt},
                ],
                "width": w,
                "height": h,
                "people": people,
            }
        )
    return rows


def write_synthetic_dataset(
    store: Store,
    name: str,
    *,
    n_train: int,
    n_val: int = 0,
    size: tuple[int, int] = (96, 80),
    seed: int = 0,
    shards: int = 1,
    overwrite: bool = False,
) -> Path:
    """Write datasets/<name> (train and optional val rows, each in `shards` shards of near-equal row counts
    or one per row when fewer, + README.md); returns its folder."""
    if shards < 1:
        raise PipelineError(f"shards={shards}: must be at least 1")
    config = Recorded.plain({"n_train": n_train, "n_val": n_val, "size": size, "seed": seed})
    with store.create("datasets", name, stage="synthetic", config=config, overwrite=overwrite) as w:
        (w.dir / datasets.DATA_DIR).mkdir()
        for split, n, sd in (("train", n_train, seed), ("val", n_val, seed + 1)):
            if n == 0:
                continue
            rows = synthetic_rows(n, size=size, seed=sd, split=split)
            writer = datasets.SplitWriter(w.dir / datasets.DATA_DIR, split)
            for part in np.array_split(np.arange(n), min(shards, n)):  # no empty shard
                for i in part:
                    writer.add(rows[i], len(rows[i]["image"]["bytes"]) + len(rows[i]["heatmap"]["bytes"]))
                writer.close_shard()
            writer.finish()
            w.counts[split] = n
        (w.dir / datasets.CARD_FILE).write_text(
            f"# {name}\n\nSynthetic stick-figure images for tests ({n_train} train, {n_val} val).\n"
        )
    return store.path("datasets", name)
