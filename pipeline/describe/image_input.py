"""The image a vision request carries: found, hashed and sized when requests are built, rendered when sent.

    settings = ImageSettings(images=Path("mpii/images"), size=768, detail="auto", mark="box", family="gpt-4o")
    inp = prepare("015601864.jpg", settings)        # ImageInput: path, sha256, sizes, tokens, or a problem
    url = data_url(render(inp, ann.keypoints))       # data:image/jpeg;base64,... (the resized, marked JPEG)
    messages = with_image(req.messages, url, "auto")   # the user message gains an image_url content part

Two ways to send an image:
- local files (--images DIR, the default): the file's bytes are hashed when the requests are built; at send
  time the same bytes are read again (a file changed since is an error row, never a silent mismatch),
  decoded, converted to RGB, resized so that the long side is `size` (LANCZOS, never upscaled), marked
  (pipeline.marks) and encoded as a JPEG of JPEG_QUALITY, sent as a base64 data URL. EXIF orientation is not
  applied: keypoints are annotated on the stored pixels, and the re-encoded JPEG carries no EXIF.
- hosted files (--image-url-base URL): the URL is base + image name and no byte is read; the provider fetches
  and resizes it, so size and marks do not apply.

What determines the answer is in each row's cache key (`ImageInput.key`): for local files the source bytes'
sha256, the size, JPEG quality, detail, mark and RENDERING (the version of the pixels this code makes from
them); for hosted files the URL string and detail, so a file replaced at the same URL is not asked again
(put a version in the URL to force it). A name outside --images, a link inside it to a file outside it, a
missing file, or one that cannot be read as an image (pipeline.images: not an image, truncated, more pixels
than --max-image-pixels) is a row `problem`: the row is recorded as an error with that reason and nothing is
sent.

The token estimate (pipeline.describe.image_tokens) uses the size the provider sees: the resized size of a
local file, the original size of a hosted one (read from --images when given). When a size cannot be read
(a missing file, a hosted image not also under --images), the size the annotations record is used (COCO
files record it, MPII's do not), else `assume_size`; `size_known` says whether it was read.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from PIL import Image

from pipeline.describe.image_tokens import image_tokens
from pipeline.images import ImageError, find_image, image_size, load_rgb
from pipeline.marks import draw_people
from pipeline.records import image_file
from pipeline.skeletons import MPII

JPEG_QUALITY = 90  # fixed: recorded in meta.json and in every key
RENDERING = "rgb-lanczos-jpeg.1"  # bump when the same settings would send different pixels
MIN_SIZE, MAX_SIZE = 64, 4096


@dataclass(frozen=True, slots=True)
class ImageSettings:
    images: Path | None = None  # folder of the source images
    url_base: str | None = None  # hosted images: URL = url_base + name
    size: int = 768  # long side sent, never upscaled (local files)
    detail: str = "auto"  # low | high | auto, sent as image_url.detail
    mark: str = "none"  # none | box | skeleton (local files)
    family: str = "gpt-4o"  # pipeline.describe.image_tokens family for the token estimate
    families_file: str | None = None
    assume_size: tuple[int, int] = (1280, 720)  # width, height when an image's size cannot be read

    def key(self) -> dict[str, Any]:
        """The settings that change what the model is sent."""
        if self.url_base:
            return {"detail": self.detail}
        return {"size": self.size, "quality": JPEG_QUALITY, "detail": self.detail, "mark": self.mark,
                "rendering": RENDERING}  # fmt: skip


@dataclass(slots=True)
class ImageInput:
    name: str
    settings: ImageSettings
    path: Path | None = None
    url: str | None = None  # hosted images only
    sha256: str | None = None  # of the source file's bytes (local files)
    source_size: tuple[int, int] | None = None  # width, height read from the file's header
    annotated_size: tuple[int, int] | None = None  # width, height the annotations record
    problem: str | None = None  # why it cannot be sent (the row becomes an error, never a request)

    @property
    def size_known(self) -> bool:
        return self.source_size is not None

    @property
    def sent_size(self) -> tuple[int, int]:
        """The size the provider sees: the resized local file, the original hosted one, else assumed."""
        w, h = self.source_size or self.annotated_size or self.settings.assume_size
        return (w, h) if self.settings.url_base else fit_size(w, h, self.settings.size)

    @property
    def tokens(self) -> int:
        s = self.settings
        return image_tokens(*self.sent_size, s.detail, s.family, s.families_file)

    def key(self) -> dict[str, Any]:
        """What of this image is in the row's cache key."""
        if self.settings.url_base:
            return {"url": self.url} | self.settings.key()
        return {"sha256": self.sha256} | self.settings.key()

    def record(self) -> str:
        """What the journal and descriptions.parquet keep about the image sent (or meant to be)."""
        out = self.key() | {"sent_size": list(self.sent_size) if self.size_known else None}
        return json.dumps(out, sort_keys=True, separators=(",", ":"))


def fit_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(width, height) scaled so that the long side is `long_side`; unchanged when already smaller."""
    if max(width, height) <= long_side:
        return width, height
    s = long_side / max(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


def prepare(name: str, settings: ImageSettings, annotated_size: tuple[int, int] | None = None) -> ImageInput:
    """The image of one row as the requests are built: contained, found, hashed and sized, or a problem.
    `annotated_size`: the (width, height) the annotations record, for when the file's cannot be read."""
    inp = ImageInput(name=name, settings=settings, annotated_size=annotated_size)
    if settings.url_base:
        if image_file(Path("."), name) is None:
            inp.problem = f"image name {name!r} is not a relative path (refused: it would leave the URL base)"
            return inp
        inp.url = settings.url_base + quote(name)
        if settings.images is not None:  # for the token estimate only; a file that cannot be read counts none
            try:
                local = find_image(settings.images, name)
                inp.source_size = image_size(local, name) if local.is_file() else None
            except ImageError:
                pass
        return inp
    if settings.images is None:
        inp.problem = "no --images folder given"
        return inp
    try:
        path = inp.path = find_image(settings.images, name)
    except ImageError as err:
        inp.problem = str(err)
        return inp
    if not path.is_file():
        inp.problem = f"image {name!r} not found in --images {settings.images}"
        return inp
    try:
        data = path.read_bytes()
        inp.source_size = image_size(data, name)
    except OSError as err:  # ImageError included: its text names the file and says why
        inp.problem = str(err) if isinstance(err, ImageError) else f"image {name!r} cannot be read ({err})"
        return inp
    inp.sha256 = hashlib.sha256(data).hexdigest()
    return inp


class ImageChanged(OSError):
    """The file's bytes are not the ones its row was keyed with."""


def render(inp: ImageInput, kps: np.ndarray, *, edges: tuple = MPII.edges) -> bytes:
    """The JPEG sent for a local image: the file (checked against its hash) as RGB, resized, marked with the
    instances of `kps` ((P, K, 3) in source pixels, numbered as the prompt numbers them) and the skeleton's
    `edges`. Raises OSError (ImageChanged and ImageError included) when it cannot."""
    data = inp.path.read_bytes()
    if hashlib.sha256(data).hexdigest() != inp.sha256:
        raise ImageChanged(f"{inp.path} changed since the requests were built; run again to key it anew")
    src = load_rgb(data, inp.name)
    size = fit_size(*src.size, inp.settings.size)
    img = src if size == src.size else src.resize(size, Image.Resampling.LANCZOS)
    if inp.settings.mark != "none":
        scaled = np.asarray(kps, dtype=np.float32).copy()
        scaled[..., 0] *= size[0] / src.size[0]
        scaled[..., 1] *= size[1] / src.size[1]
        img = draw_people(img, scaled, inp.settings.mark, edges=edges)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def image_url(inp: ImageInput, kps: np.ndarray, *, edges: tuple = MPII.edges) -> str:
    """What goes into image_url.url: the hosted URL, or the rendered local file as a data URL."""
    return inp.url if inp.settings.url_base else data_url(render(inp, kps, edges=edges))


def with_image(messages: list[dict[str, Any]], url: str, detail: str) -> list[dict[str, Any]]:
    """The messages with the last user message's text followed by the image, as OpenAI content parts."""
    out = copy.deepcopy(messages)
    user = next(m for m in reversed(out) if m["role"] == "user")
    user["content"] = [
        {"type": "text", "text": user["content"]},
        {"type": "image_url", "image_url": {"url": url, "detail": detail}},
    ]
    return out
