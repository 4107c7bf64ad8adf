"""How many prompt tokens an image costs: the providers' documented formulas, with their numbers as data.

    family = family_for("gpt-4o-mini-2024-07-18")              # "gpt-4o-mini"
    image_tokens(768, 432, "high", family)                     # 2833 + 2 tiles * 5667 = 14167
    image_tokens(1280, 720, "low", "gpt-4o")                   # 85

The numbers live in image_token_families.json beside this file (one entry per model family, with where each
number comes from); `describe --image-families FILE` merges more over them. Four methods:

- tiles (GPT-4o class): detail low -> `low`; high -> fit in fit_px x fit_px, scale the short side down to
  short_side_px (never up), count tile_px squares: base + tiles * tile.
- patches (gpt-4.1-mini/nano, o4-mini): 32 px patches; above max_patches the image is scaled down so that
  whole patches fit; min(patches, max_patches) * multiplier, rounded up (a budget must not undercount).
  detail has no effect.
- pixels (Qwen2-VL): each side rounded to a multiple of `factor` with the area kept in [min_pixels,
  max_pixels] (the model's smart_resize), one token per factor x factor pixels.
- fixed (LLaVA-1.5): `tokens` per image whatever its size.

detail "auto" is counted as "high": the provider picks per image and a budget has to hold the worst case
(high is never cheaper than low).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

FAMILIES_FILE = Path(__file__).with_name("image_token_families.json")
DETAILS = ("low", "high", "auto")
METHODS = ("tiles", "patches", "pixels", "fixed")


def _check(name: str, spec: Any, where: Path) -> dict[str, Any]:
    need = {
        "tiles": ("low", "base", "tile", "tile_px", "fit_px", "short_side_px"),
        "patches": ("patch_px", "max_patches", "multiplier"),
        "pixels": ("factor", "min_pixels", "max_pixels"),
        "fixed": ("tokens",),
    }
    method = spec.get("method") if isinstance(spec, dict) else None
    if method not in need:
        raise PipelineError(f"{where}: family {name!r}: 'method' must be one of {', '.join(METHODS)}")
    missing = [k for k in (*need[method], "match") if k not in spec]
    if missing:
        raise PipelineError(f"{where}: family {name!r} ({method}) lacks {', '.join(missing)}")
    return spec


@functools.lru_cache(maxsize=8)
def load_families(extra: str | None = None) -> dict[str, dict[str, Any]]:
    """The shipped family table, with the families of `extra` (a JSON file of the same layout) over it."""
    table = {}
    for path in (FAMILIES_FILE, Path(extra) if extra else None):
        if path is None:
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise PipelineError(f"--image-families {path}: not readable JSON ({err})") from None
        if not isinstance(data, dict):
            raise PipelineError(f"{path}: expected an object {{family: {{method, match, ...}}}}")
        table |= {name: _check(name, spec, path) for name, spec in data.items() if not name.startswith("_")}
    return table


def family_for(model: str, extra: str | None = None) -> str | None:
    """The family whose longest `match` substring is in the model name, or None."""
    name = model.lower()
    best = max(
        ((len(m), fam) for fam, spec in load_families(extra).items() for m in spec["match"] if m in name),
        default=None,
    )
    return best[1] if best else None


def _tiles(w: int, h: int, detail: str, f: dict[str, Any]) -> int:
    if detail == "low":
        return int(f["low"])
    if max(w, h) > f["fit_px"]:
        s = f["fit_px"] / max(w, h)
        w, h = round(w * s), round(h * s)
    if min(w, h) > f["short_side_px"]:
        s = f["short_side_px"] / min(w, h)
        w, h = round(w * s), round(h * s)
    tiles = math.ceil(w / f["tile_px"]) * math.ceil(h / f["tile_px"])
    return int(f["base"] + tiles * f["tile"])


def _patches(w: int, h: int, f: dict[str, Any]) -> int:
    p, cap = f["patch_px"], f["max_patches"]
    patches = math.ceil(w / p) * math.ceil(h / p)
    if patches > cap:
        # Scale down to fit the cap, then a little more so that whole patches fit on the limiting side.
        r = math.sqrt(p * p * cap / (w * h))
        r *= min(math.floor(w * r / p) / (w * r / p), math.floor(h * r / p) / (h * r / p))
        patches = math.ceil(int(w * r) / p) * math.ceil(int(h * r) / p)
    return math.ceil(min(patches, cap) * f["multiplier"] - 1e-9)


def _pixels(w: int, h: int, f: dict[str, Any]) -> int:
    k = f["factor"]
    hb, wb = round(h / k) * k, round(w / k) * k
    if hb * wb > f["max_pixels"]:
        beta = math.sqrt(h * w / f["max_pixels"])
        hb, wb = max(k, math.floor(h / beta / k) * k), max(k, math.floor(w / beta / k) * k)
    elif hb * wb < f["min_pixels"]:
        beta = math.sqrt(f["min_pixels"] / (h * w))
        hb, wb = math.ceil(h * beta / k) * k, math.ceil(w * beta / k) * k
    return (hb // k) * (wb // k)


def image_tokens(width: int, height: int, detail: str, family: str, extra: str | None = None) -> int:
    """Prompt tokens of one width x height image sent at `detail` (low | high | auto) to a `family` model."""
    if detail not in DETAILS:
        raise PipelineError(f"image detail {detail!r}: choose one of {', '.join(DETAILS)}")
    if width < 1 or height < 1:
        raise PipelineError(f"image size {width}x{height}: both sides must be at least 1 pixel")
    families = load_families(extra)
    if family not in families:
        raise PipelineError(f"image token family {family!r}: choose one of {', '.join(sorted(families))}")
    f = families[family]
    method = f["method"]
    if method == "tiles":
        return _tiles(width, height, "high" if detail == "auto" else detail, f)
    if method == "patches":
        return _patches(width, height, f)
    if method == "pixels":
        return _pixels(width, height, f)
    return int(f["tokens"])
