"""One synthetic photograph: 1-3 people doing the same activity in a cluttered room, with exact keypoints.

rng = np.random.default_rng([seed, stream, index])
scene = render_scene("waving", rng, SceneSpec(size=(192, 160)))
scene.image.save("x.jpg"); scene.people[0].keypoints      # (16, 3): x, y in image pixels, v = 2
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from pipeline.records import VISIBLE, Person
from pipeline.synthetic.poses import Body, Pose, sample_body, sample_pose
from pipeline.synthetic.render import (
    add_noise,
    draw_background,
    draw_clutter,
    draw_person,
    draw_seat,
    head_box,
    person_extent,
    random_color,
    sample_outfit,
)

# Person height as a fraction of the image height, by the number of people in the image.
_HEIGHT_FRAC = {1: (0.5, 0.85), 2: (0.42, 0.66), 3: (0.36, 0.55)}
_PEOPLE_P = (0.55, 0.3, 0.15)  # P(1), P(2), P(3) people


@dataclass(frozen=True, slots=True)
class SceneSpec:
    size: tuple[int, int] = (192, 160)  # width, height of the written image
    max_people: int = 3
    clutter: tuple[int, int] = (8, 18)  # distractor shapes per image, inclusive range
    supersample: int = 2  # draw at this multiple, then downsample: anti-aliased edges
    noise: float = 4.0  # sensor-like Gaussian noise, in 8-bit levels
    # Person height as a fraction of the image height (None: by the number of people, _HEIGHT_FRAC).
    person_height: tuple[float, float] | None = None


@dataclass(slots=True)
class Scene:
    image: Image.Image
    people: list[Person]
    extents: list[tuple[float, float, float, float]] = field(default_factory=list)  # drawn boxes, image px


@dataclass(slots=True)
class _Placed:
    pose: Pose
    body: Body
    kps: np.ndarray  # (16, 2) canvas pixels, y down
    height: float  # standing height in canvas pixels
    floor: float  # canvas y of the floor contact


def _place(
    pose: Pose,
    body: Body,
    height: float,
    slot: tuple[float, float],
    canvas: tuple[int, int],
    horizon: float,
    rng: np.random.Generator,
) -> _Placed:
    w, h = canvas
    local = pose.keypoints * np.array([1.0, -1.0])  # y down
    # Shrink until the drawn person fits its slot and the canvas.
    for _ in range(20):
        x1, y1, x2, y2 = person_extent(local * height, height, body.build)
        if x2 - x1 <= (slot[1] - slot[0]) * 0.95 and y2 - y1 <= h * 0.92:
            break
        height *= 0.9
    kps = local * height
    x1, y1, x2, y2 = person_extent(kps, height, body.build)
    margin = 0.02 * h
    lo_x, hi_x = slot[0] - x1, slot[1] - x2
    dx = float(rng.uniform(lo_x, hi_x)) if hi_x > lo_x else (lo_x + hi_x) / 2
    # Feet on the floor: somewhere between the horizon and the bottom edge, the head inside the image.
    lo_y = max(horizon, margin - y1 + y2)
    hi_y = h - margin
    floor = float(rng.uniform(lo_y, hi_y)) if hi_y > lo_y else hi_y
    dy = floor - y2
    if not pose.on_floor:
        dy -= min(0.05 * height, max(dy + y1 - margin, 0.0))  # mid-air, but not off the top
    kps = kps + np.array([dx, dy])
    return _Placed(pose=pose, body=body, kps=kps, height=height, floor=floor)


def render_scene(
    activity: str, rng: np.random.Generator, spec: SceneSpec, n_people: int | None = None
) -> Scene:
    """Draw one image; every person does `activity`. Keypoints are exact (the skeleton that was drawn)."""
    ss = spec.supersample
    w, h = spec.size[0] * ss, spec.size[1] * ss
    if n_people is None:
        p = np.array(_PEOPLE_P[: spec.max_people])
        n_people = int(rng.choice(np.arange(1, len(p) + 1), p=p / p.sum()))
    canvas = Image.new("RGB", (w, h))
    horizon = float(rng.uniform(0.35, 0.7)) * h
    draw_background(canvas, rng, horizon)
    draw = ImageDraw.Draw(canvas)
    draw_clutter(draw, rng, (w, h), int(rng.integers(spec.clutter[0], spec.clutter[1] + 1)), unit=0.3 * h)

    lo, hi = spec.person_height or _HEIGHT_FRAC[min(n_people, 3)]
    placed = []
    for i in range(n_people):
        body = sample_body(rng)
        pose = sample_pose(activity, body, rng)
        slot = (i * w / n_people, (i + 1) * w / n_people)
        placed.append(_place(pose, body, float(rng.uniform(lo, hi)) * h, slot, (w, h), horizon, rng))
    people, extents = [], []
    for pl in sorted(placed, key=lambda p: p.floor):  # far (higher up) people first
        for kind, box in pl.pose.props:
            if kind == "seat":
                x1, y_floor, x2, y_top = box
                offset = pl.kps[0] - pl.pose.keypoints[0] * np.array([1.0, -1.0]) * pl.height
                seat = np.array([x1 * pl.height, -y_top * pl.height, x2 * pl.height, -y_floor * pl.height])
                seat += np.array([offset[0], offset[1], offset[0], offset[1]])
                draw_seat(draw, seat, random_color(rng, 40, 200), 0.04 * pl.height)
        draw_person(draw, pl.kps, pl.height, sample_outfit(rng), pl.body.build, pl.pose.view, pl.pose.facing)
        kps = np.empty((16, 3), dtype=np.float32)
        kps[:, :2] = pl.kps / ss
        kps[:, 2] = VISIBLE
        ext = tuple(float(v) / ss for v in person_extent(pl.kps, pl.height, pl.body.build))
        xy = kps[:, :2]
        center = (float((xy[:, 0].min() + xy[:, 0].max()) / 2), float((xy[:, 1].min() + xy[:, 1].max()) / 2))
        # MPII scale: person size / 200 px (a lying person's size is its length).
        scale = max(ext[2] - ext[0], ext[3] - ext[1]) / 200.0
        hb = tuple(float(v) / ss for v in head_box(pl.kps))
        people.append(Person(keypoints=kps, center=center, scale=float(scale), head_box=hb))
        extents.append(ext)
    image = canvas.resize(spec.size, Image.Resampling.BILINEAR, reducing_gap=None) if ss > 1 else canvas
    if spec.noise > 0:
        image = add_noise(image, rng, spec.noise)
    return Scene(image=image, people=people, extents=extents)
