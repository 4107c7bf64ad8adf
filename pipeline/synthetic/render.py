"""Drawing with PIL: cluttered backgrounds, distractor shapes and articulated people made of capsules.

Everything draws on a supersampled canvas (the scene composer downsamples it for anti-aliasing), takes
its randomness from the caller's numpy Generator, and is deterministic given that Generator's state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from pipeline.geometry import (
    HEAD,
    L_ANKLE,
    L_ELBOW,
    L_HIP,
    L_KNEE,
    L_SHOULDER,
    L_WRIST,
    NECK,
    PELVIS,
    R_ANKLE,
    R_ELBOW,
    R_HIP,
    R_KNEE,
    R_SHOULDER,
    R_WRIST,
    THORAX,
)

Color = tuple[int, int, int]

SKIN_TONES: tuple[Color, ...] = (
    (255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 96),
    (161, 102, 64), (120, 75, 45), (84, 52, 32),
)  # fmt: skip


def random_color(rng: np.random.Generator, lo: int = 20, hi: int = 235) -> Color:
    return tuple(int(c) for c in rng.integers(lo, hi, size=3))  # type: ignore[return-value]


def shade(color: Color, factor: float) -> Color:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in color)  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Outfit:
    skin: Color
    shirt: Color
    trousers: Color
    shoes: Color
    long_sleeves: bool


def sample_outfit(rng: np.random.Generator) -> Outfit:
    return Outfit(
        skin=SKIN_TONES[int(rng.integers(len(SKIN_TONES)))],
        shirt=random_color(rng),
        trousers=random_color(rng, 10, 200),
        shoes=random_color(rng, 0, 90),
        long_sleeves=bool(rng.random() < 0.5),
    )


def capsule(draw: ImageDraw.ImageDraw, p: np.ndarray, q: np.ndarray, width: float, fill: Color) -> None:
    """A thick segment with round ends (a limb)."""
    r = width / 2.0
    draw.line([tuple(p), tuple(q)], fill=fill, width=max(1, int(round(width))))
    for c in (p, q):
        draw.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=fill)


def draw_background(canvas: Image.Image, rng: np.random.Generator, horizon: float) -> None:
    """A wall with a vertical gradient above `horizon` (a y in pixels), a floor below it."""
    w, h = canvas.size
    top, bottom, floor = random_color(rng), random_color(rng), random_color(rng)
    t = np.linspace(0.0, 1.0, max(int(horizon), 1))[:, None]
    wall = (np.array(top)[None] * (1 - t) + np.array(bottom)[None] * t).astype(np.uint8)  # (horizon, 3)
    arr = np.empty((h, w, 3), dtype=np.uint8)
    arr[: wall.shape[0]] = wall[:, None, :]
    arr[wall.shape[0] :] = np.array(floor, dtype=np.uint8)
    canvas.paste(Image.fromarray(arr))


def draw_clutter(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: tuple[int, int], count: int, unit: float
) -> None:
    """Random shapes, and distractors that look like body parts (skin-coloured blobs, limb-like capsules)
    but never form a person, so the model has to find where the person is."""
    w, h = size
    for _ in range(count):
        kind = rng.choice(
            ["rect", "ellipse", "polygon", "line", "limb", "blob"], p=[0.25, 0.15, 0.15, 0.1, 0.2, 0.15]
        )
        color = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))] if kind == "blob" else random_color(rng)
        x, y = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        s = float(rng.uniform(0.3, 1.6)) * unit
        if kind == "rect":
            draw.rectangle([x, y, x + s * rng.uniform(0.3, 2.0), y + s * rng.uniform(0.3, 2.0)], fill=color)
        elif kind == "ellipse":
            draw.ellipse([x, y, x + s * rng.uniform(0.3, 1.5), y + s * rng.uniform(0.3, 1.5)], fill=color)
        elif kind == "polygon":
            pts = [
                (x + s * rng.uniform(-1, 1), y + s * rng.uniform(-1, 1))
                for _ in range(int(rng.integers(3, 6)))
            ]
            draw.polygon(pts, fill=color)
        elif kind == "line":
            draw.line(
                [x, y, x + s * rng.uniform(-2, 2), y + s * rng.uniform(-2, 2)],
                fill=color,
                width=max(1, int(unit * rng.uniform(0.02, 0.08))),
            )
        elif kind == "limb":
            angle = rng.uniform(0, 2 * np.pi)
            q = np.array([x, y]) + 0.5 * s * np.array([np.cos(angle), np.sin(angle)])
            capsule(draw, np.array([x, y]), q, unit * rng.uniform(0.05, 0.1), color)
        else:
            r = unit * rng.uniform(0.04, 0.08)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=color)


def draw_seat(draw: ImageDraw.ImageDraw, box: np.ndarray, color: Color, thickness: float) -> None:
    """A stool: a seat slab and two legs, `box` = x1, y1 (top), x2, y2 (floor) in canvas pixels."""
    x1, y1, x2, y2 = (float(v) for v in box)
    slab = max(thickness, 2.0)
    draw.rectangle([x1, y1, x2, y1 + slab], fill=color)
    leg = max(thickness * 0.6, 2.0)
    draw.rectangle([x1, y1, x1 + leg, y2], fill=shade(color, 0.8))
    draw.rectangle([x2 - leg, y1, x2, y2], fill=shade(color, 0.8))


_ARM = {"left": (L_SHOULDER, L_ELBOW, L_WRIST), "right": (R_SHOULDER, R_ELBOW, R_WRIST)}
_LEG = {"left": (L_HIP, L_KNEE, L_ANKLE), "right": (R_HIP, R_KNEE, R_ANKLE)}


def draw_person(
    draw: ImageDraw.ImageDraw,
    kps: np.ndarray,
    height: float,
    outfit: Outfit,
    build: float,
    view: str,
    facing: int,
) -> None:
    """A person from keypoints (16, 2) in canvas pixels (y down); `height` = standing height in pixels.

    Side views draw the far side first, darker, so it reads as behind the body; facing image right, the
    person's left side is the far one.
    """
    limb_w = 0.065 * height * build
    far, near = ("left", "right") if facing > 0 else ("right", "left")
    if view == "front":
        far, near = near, far  # both sides are equally near; draw order does not matter much

    def arm(side: str, dim: float) -> None:
        s, e, w = (kps[j] for j in _ARM[side])
        capsule(draw, s, e, limb_w * 0.9, shade(outfit.shirt, dim))
        capsule(draw, e, w, limb_w * 0.8, shade(outfit.shirt if outfit.long_sleeves else outfit.skin, dim))
        r = limb_w * 0.55
        draw.ellipse([w[0] - r, w[1] - r, w[0] + r, w[1] + r], fill=shade(outfit.skin, dim))

    def leg(side: str, dim: float) -> None:
        hip, knee, ankle = (kps[j] for j in _LEG[side])
        capsule(draw, hip, knee, limb_w * 1.15, shade(outfit.trousers, dim))
        capsule(draw, knee, ankle, limb_w, shade(outfit.trousers, dim))
        foot_dir = np.array([facing * 1.0, 0.0]) if view == "side" else np.array([0.0, 0.0])
        capsule(draw, ankle, ankle + foot_dir * limb_w * 1.4, limb_w * 0.8, shade(outfit.shoes, dim))

    dim = 0.72 if view == "side" else 1.0
    leg(far, dim)
    arm(far, dim)
    # Torso: a quadrilateral over shoulders and hips, widened to the limbs' thickness, plus a neck.
    pts = np.stack([kps[R_SHOULDER], kps[L_SHOULDER], kps[L_HIP], kps[R_HIP]])
    center = pts.mean(axis=0)
    axis = kps[THORAX] - kps[PELVIS]
    axis = axis / max(np.linalg.norm(axis), 1e-6)
    across = np.array([-axis[1], axis[0]])
    half = limb_w * 1.2 if view == "side" else limb_w * 0.35
    corners = []
    for p in pts:
        side = np.sign(np.dot(p - center, across)) or 1.0
        corners.append(tuple(p + across * side * half))
    draw.polygon(corners, fill=outfit.shirt)
    capsule(draw, kps[THORAX], kps[PELVIS], limb_w * (2.2 if view == "side" else 1.4), outfit.shirt)
    capsule(draw, kps[L_HIP], kps[R_HIP], limb_w * 1.2, outfit.trousers)
    capsule(draw, kps[THORAX], kps[NECK], limb_w * 0.7, outfit.skin)
    leg(near, 1.0)
    # Head: a disc spanning upper neck -> head top (MPII's two head joints).
    hc = (kps[NECK] + kps[HEAD]) / 2.0
    hr = max(np.linalg.norm(kps[HEAD] - kps[NECK]) / 2.0, limb_w * 0.8)
    draw.ellipse([hc[0] - hr, hc[1] - hr, hc[0] + hr, hc[1] + hr], fill=outfit.skin)
    if view == "front":  # hair on the upper half of the head
        draw.chord([hc[0] - hr, hc[1] - hr, hc[0] + hr, hc[1] + hr], 180, 360, fill=outfit.shoes)
    arm(near, 1.0)


def person_extent(kps: np.ndarray, height: float, build: float) -> tuple[float, float, float, float]:
    """Box (x1, y1, x2, y2) of the drawn person: the keypoints grown by half a limb and the head disc."""
    pad = 0.065 * height * build * 0.7
    head_r = np.linalg.norm(kps[HEAD] - kps[NECK]) / 2.0
    hc = (kps[NECK] + kps[HEAD]) / 2.0
    xs = np.concatenate([kps[:, 0], [hc[0] - head_r, hc[0] + head_r]])
    ys = np.concatenate([kps[:, 1], [hc[1] - head_r, hc[1] + head_r]])
    return float(xs.min() - pad), float(ys.min() - pad), float(xs.max() + pad), float(ys.max() + pad)


def head_box(kps: np.ndarray) -> tuple[float, float, float, float]:
    """MPII's head rectangle: the square around the head disc."""
    hc = (kps[NECK] + kps[HEAD]) / 2.0
    r = np.linalg.norm(kps[HEAD] - kps[NECK]) / 2.0
    return float(hc[0] - r), float(hc[1] - r), float(hc[0] + r), float(hc[1] + r)


def add_noise(image: Image.Image, rng: np.random.Generator, sigma: float) -> Image.Image:
    arr = np.asarray(image, dtype=np.float32)
    arr = arr + rng.normal(0.0, sigma, size=arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
