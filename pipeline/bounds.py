"""Sanity bounds on COCO instance geometry, checked before any C library sees it, and the rule that matches an
image file to the size its annotations record.

    problem = instance_problem(person, (width, height), mask=True)   # None, or Problem(reason, detail)
    problem = segmentation_problem(segmentation_json, (width, height))
    factor = rescale_factor(recorded=(640, 425), actual=(320, 213))   # (0.5, 0.501); None: another picture

pycocotools decodes masks in C without checking what it is given: a polygon coordinate of 1e9 overflows its
int arithmetic (the process dies of SIGSEGV or runs out of memory), and compressed RLE counts that run past
the image write past the mask's buffer. So every polygon, RLE and box is checked here against the size of the
image its coordinates refer to (the size the annotations record, else the file's): numbers finite and within
one image size beyond each edge (SLACK), a polygon outline at most MAX_OUTLINE times the image's width plus
height, an RLE of exactly the image's size whose runs add up to its pixel count. convert skips an instance
that fails (pipeline.sources.coco_keypoints), and so does build-dataset (for annotations converted before
these checks, or without a recorded size); heatmaps.decode_mask refuses such a mask too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.records import Person

# Coordinates may lie up to one image size beyond each edge: annotation tools let outlines and boxes run a
# few pixels off the picture; anything farther is not a drawing of this image.
SLACK = 1.0
# A polygon's outline (the sum of max(|dx|, |dy|) over its edges, what pycocotools walks pixel by pixel at
# 5x) is at most this many times width + height: ten times around the border. Real masks stay under ~1.2
# (the shared COCO file's largest is 1.18).
MAX_OUTLINE = 20.0
# The largest side a JPEG can have. A recorded width or height beyond it is an encoding error, and it bounds
# the coordinates convert accepts when an image records no size.
MAX_SIDE = 65_535
# compressed RLE (pycocotools' rleToString): 5 bits per character, offset by 48 ('0'), 0x20 = more follows
_RLE_FIRST, _RLE_LAST, _RLE_MAX_CHARS = 48, 48 + 63, 7  # 7 x 5 bits hold any run of a 2^32-pixel image


@dataclass(frozen=True, slots=True)
class Problem:
    reason: str  # counted: box_out_of_range, polygon_out_of_range, polygon_outline_too_long, ...
    detail: str  # said: which number, against which bound

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


def _range(size: tuple[int, int]) -> tuple[float, float, float, float]:
    w, h = size
    return -SLACK * w, (1 + SLACK) * w, -SLACK * h, (1 + SLACK) * h


def box_problem(box: tuple[float, float, float, float] | None, size: tuple[int, int]) -> Problem | None:
    """A box x1, y1, x2, y2 that is not finite, inverted, or beyond SLACK of an image of `size`."""
    if box is None:
        return None
    x1, y1, x2, y2 = box
    lo_x, hi_x, lo_y, hi_y = _range(size)
    if not all(math.isfinite(v) for v in box) or x2 < x1 or y2 < y1:
        return Problem("box_out_of_range", f"box {list(box)} is not finite x1 <= x2, y1 <= y2")
    if x1 < lo_x or x2 > hi_x or y1 < lo_y or y2 > hi_y:
        return Problem(
            "box_out_of_range",
            f"box {[round(v, 1) for v in box]} lies beyond x {lo_x:g}..{hi_x:g}, y {lo_y:g}..{hi_y:g} "
            f"(image {size[0]}x{size[1]})",
        )
    return None


def _polygon_problem(poly: Any, size: tuple[int, int]) -> Problem | None:
    try:
        xy = np.asarray(poly, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return Problem("polygon_malformed", "a polygon is not a list of numbers")
    if xy.ndim != 1 or xy.size % 2 or xy.size < 6:
        return Problem("polygon_malformed", f"a polygon of {xy.size} values is not 3 or more x, y pairs")
    xy = xy.reshape(-1, 2)
    lo_x, hi_x, lo_y, hi_y = _range(size)
    x, y = xy[:, 0], xy[:, 1]
    inside = np.isfinite(xy).all() and (x >= lo_x).all() and (x <= hi_x).all()
    if not (inside and (y >= lo_y).all() and (y <= hi_y).all()):
        bad = xy[~(np.isfinite(xy).all(1) & (x >= lo_x) & (x <= hi_x) & (y >= lo_y) & (y <= hi_y))][0]
        return Problem(
            "polygon_out_of_range",
            f"point ({bad[0]:g}, {bad[1]:g}) lies beyond x {lo_x:g}..{hi_x:g}, y {lo_y:g}..{hi_y:g} "
            f"(image {size[0]}x{size[1]})",
        )
    outline = float(np.abs(np.diff(np.vstack([xy, xy[:1]]), axis=0)).max(axis=1).sum())
    if outline > MAX_OUTLINE * (size[0] + size[1]):
        return Problem(
            "polygon_outline_too_long",
            f"outline of {outline:,.0f} px, over {MAX_OUTLINE:g} x (width + height) of a "
            f"{size[0]}x{size[1]} image",
        )
    return None


def rle_string_counts(text: str) -> list[int] | None:
    """The runs of a compressed RLE string (pycocotools' rleFrString, in Python), or None when the string is
    not one: characters outside '0'..'o', a run of more than 7 characters, a string that stops mid-run or a
    negative run."""
    counts: list[int] = []
    p, n = 0, len(text)
    while p < n:
        x = k = 0
        more = True
        while more:
            if p >= n or k >= _RLE_MAX_CHARS:
                return None
            c = ord(text[p]) - _RLE_FIRST
            if not 0 <= c <= _RLE_LAST - _RLE_FIRST:
                return None
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x -= 1 << (5 * k)  # sign-extend the last 5-bit group
        if len(counts) > 2:
            x += counts[-2]  # runs after the second are stored as differences to the run two before
        if x < 0:
            return None
        counts.append(x)
    return counts


def _rle_problem(rle: dict, size: tuple[int, int]) -> Problem | None:
    w, h = size
    shape = rle.get("size")
    if not (isinstance(shape, list) and len(shape) == 2 and all(type(v) is int and v > 0 for v in shape)):
        return Problem("rle_malformed", f"RLE size {json.dumps(shape)} is not [height, width]")
    if shape != [h, w]:
        return Problem("rle_size_not_image", f"mask of {shape[1]}x{shape[0]} px on an image of {w}x{h} px")
    counts = rle.get("counts")
    if isinstance(counts, str):
        runs = rle_string_counts(counts)
        if runs is None:
            return Problem("rle_malformed", "compressed RLE counts are not pycocotools' encoding")
    elif isinstance(counts, list) and all(type(c) is int and c >= 0 for c in counts):
        runs = counts
    else:
        return Problem("rle_malformed", "RLE counts are neither a string nor a list of non-negative integers")
    if sum(runs) != h * w:
        return Problem("rle_malformed", f"RLE runs add up to {sum(runs):,} pixels, not {w} x {h} = {w * h:,}")
    return None


def segmentation_problem(segmentation: str, size: tuple[int, int]) -> Problem | None:
    """A mask (COCO JSON text: polygons or RLE) that pycocotools must not be given for an image of `size`
    (width, height)."""
    try:
        seg = json.loads(segmentation)
    except (TypeError, ValueError):
        return Problem("segmentation_malformed", "the mask is not JSON text")
    if isinstance(seg, dict):
        return _rle_problem(seg, size)
    if not isinstance(seg, list) or not seg:
        return Problem("segmentation_malformed", "the mask is neither polygons nor RLE")
    for poly in seg:
        problem = _polygon_problem(poly, size)
        if problem is not None:
            return problem
    return None


def instance_problem(person: Person, size: tuple[int, int], *, mask: bool) -> Problem | None:
    """What is wrong with an instance's box, or with its mask when `mask` (it will be decoded), on an image of
    `size` (width, height) in the instance's own pixels; None when nothing is."""
    problem = box_problem(person.source_box, size)
    if problem is None and mask and person.segmentation is not None:
        problem = segmentation_problem(person.segmentation, size)
    return problem


def rescale_factor(recorded: tuple[int, int], actual: tuple[int, int]) -> tuple[float, float] | None:
    """(x, y) factors from the recorded size to the file's, when the file is the recorded picture resized:
    scaling the recorded size by either side's factor gives the other side to within one pixel (the rounding
    of a resize). None when it is not (another aspect ratio: a crop, a rotation, another picture)."""
    (rw, rh), (aw, ah) = recorded, actual
    fx, fy = aw / rw, ah / rh
    if abs(fx * rh - ah) <= 1 and abs(fy * rw - aw) <= 1:
        return fx, fy
    return None
