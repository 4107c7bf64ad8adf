"""People drawn onto a picture: a numbered box or a numbered skeleton per person (pure PIL, no I/O).

    marked = draw_people(img, kps, "box")                                 # kps (P, K, 3) in img's pixels
    marked = draw_people(img, kps, "skeleton", edges=ann.skeleton.edges)  # any skeleton: edges are data

describe --with-image --image-mark box|skeleton draws these on the image it sends, so that a vision model
describes the annotated people (and knows which one is "person 2") in a crowd. Joints with v = 0 (unknown)
are never drawn and take no part in a box. Each person gets its own colour, and its number (1-based, as the
prompt's "Person 1") on a filled label at its top-left.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.records import keypoint_boxes, known
from pipeline.skeletons import MPII

MARKS = ("none", "box", "skeleton")
# Saturated colours that stay apart from each other and from skin, sky and grass; person i gets i % 8.
PERSON_COLOURS = (
    (255, 40, 40), (40, 120, 255), (255, 210, 0), (0, 220, 120),
    (255, 0, 255), (0, 230, 255), (255, 140, 0), (160, 80, 255),
)  # fmt: skip
BOX_MARGIN = 0.06  # of the box's larger side, so that a box around wrists and ankles still frames the hands


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _label(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, colour, size: int, bounds) -> None:
    """The person's number in black on a filled tag of its colour, kept inside the picture."""
    font = _font(size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(2, size // 5)
    w, h = right - left + 2 * pad, bottom - top + 2 * pad
    x = min(max(0.0, xy[0]), bounds[0] - w)
    y = min(max(0.0, xy[1] - h), bounds[1] - h)
    draw.rectangle([x, y, x + w, y + h], fill=colour)
    draw.text((x + pad - left, y + pad - top), text, fill=(0, 0, 0), font=font)


def draw_people(
    img: Image.Image,
    kps: np.ndarray,
    mode: str,
    *,
    edges: Sequence[tuple[int, ...]] = MPII.edges,
) -> Image.Image:
    """A copy of `img` with each person of `kps` (P, K, 3: x, y in img's pixels, v) marked: `box` = the box
    of its known joints (with a margin), `skeleton` = the lines of `edges` ((joint, joint) pairs of its
    skeleton, pipeline.skeletons) between known joints and a dot per joint; both labelled with the person's
    number. `none` returns an unchanged copy."""
    if mode not in MARKS:
        raise ValueError(f"mark {mode!r}: choose one of {', '.join(MARKS)}")
    out = img.convert("RGB")  # a copy even when img is RGB already
    if mode == "none" or len(kps) == 0:
        return out
    draw = ImageDraw.Draw(out)
    width = max(2, round(max(out.size) / 256))
    label_size = max(12, round(max(out.size) / 32))
    boxes, has_box = keypoint_boxes(kps)
    for p, person in enumerate(kps):
        if not has_box[p]:
            continue
        colour = PERSON_COLOURS[p % len(PERSON_COLOURS)]
        x1, y1, x2, y2 = (float(c) for c in boxes[p])
        if mode == "box":
            m = BOX_MARGIN * max(x2 - x1, y2 - y1) + width
            x1, y1 = max(0.0, x1 - m), max(0.0, y1 - m)
            x2, y2 = min(out.size[0] - 1.0, x2 + m), min(out.size[1] - 1.0, y2 + m)
            draw.rectangle([x1, y1, x2, y2], outline=colour, width=width)
        else:
            ok = known(person)
            for a, b, *_ in edges:
                if ok[a] and ok[b]:
                    draw.line([tuple(person[a, :2]), tuple(person[b, :2])], fill=colour, width=width)
            r = width + 1
            for x, y in person[ok, :2]:
                draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
        _label(draw, (x1, y1), str(p + 1), colour, label_size, out.size)
    return out
