"""Reading the image files a user points --images at: one pixel limit, one error type, one rule for links.

    path = find_image(images, "015601864.jpg")     # images/name; ImageError when it would leave the folder
    with decoding(name), open_image(path, name) as im:   # header read, size checked against the limit
        im.load()                                  # any decoder failure inside the block -> ImageError
    rgb = load_rgb(path, name)                     # the same, fully decoded and converted to RGB

describe (--with-image), build-dataset and analyze read every image through here, so a decompression bomb,
a truncated file or one that is no image at all is that row's error (ImageError, whose text names the file)
and the run goes on.

The pixel limit (`--max-image-pixels` before the command, or FOCUS_MAX_IMAGE_PIXELS) refuses a file whose
header announces more pixels before a single one is decoded. The default, 100 million, passes every photo of
the pose datasets (MPII frames are at most 1920x1080, COCO's at most 640 px a side) and a 100-megapixel camera
frame, and refuses the 20000x20000 PNG bomb (400 million pixels in a 48 kB file). Its RGB pixels alone are
300 MB (docs/input-checks.md has the measured peak), times build-dataset's workers. PIL's own bomb check (a
warning above its MAX_IMAGE_PIXELS, an error above twice that) is made to follow the same limit, its warning
silenced: the limit refuses those files first, with a message that says how to raise it.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from pipeline.errors import PipelineError
from pipeline.records import image_file

DEFAULT_MAX_PIXELS = 100_000_000
ENV_MAX_PIXELS = "FOCUS_MAX_IMAGE_PIXELS"
_HOW_TO_RAISE = f"--max-image-pixels or {ENV_MAX_PIXELS} raises it"


class ImageError(OSError):
    """An image that cannot be used; str() is one line naming the file and the reason. An OSError, so that
    code which already treats unreadable files as OSError treats these the same."""


class ImageTooLarge(ImageError):
    """The file's header announces more pixels than the limit."""


class LinkOutside(ImageError):
    """A link inside --images that resolves to a file outside it."""


_max_pixels = DEFAULT_MAX_PIXELS


def max_pixels() -> int:
    return _max_pixels


def set_max_pixels(limit: int) -> None:
    """Set the pixel limit for this process (and the workers it forks later)."""
    global _max_pixels
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise PipelineError(f"--max-image-pixels {limit!r}: must be a positive number of pixels")
    _max_pixels = limit
    Image.MAX_IMAGE_PIXELS = limit  # PIL warns above this and refuses above twice this: a backstop to ours


set_max_pixels(DEFAULT_MAX_PIXELS)
# Our own check refuses every file PIL would warn about, with a message that names the file and the setting.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def find_image(images: Path, name: str) -> Path:
    """images/name for a name taken from an annotation or description file; ImageError when the name would
    leave the folder ('..', absolute) or names a link that resolves outside it: a link inside --images that
    points elsewhere would embed, show or send a file the user never put there. Links that stay inside the
    folder are followed. Whether the file exists is the caller's question."""
    path = image_file(images, name)
    if path is None:
        raise ImageError(f"image name {name!r} points outside --images (refused)")
    target = path.resolve()  # every link on the way resolved, --images' own included
    if not target.is_relative_to(images.resolve()):
        raise LinkOutside(
            f"image {name!r} is a link to {target}, outside --images (refused: copy the file into the "
            f"folder instead)"
        )
    return path


def check_size(size: tuple[int, int], name: str) -> None:
    w, h = size
    if w * h > _max_pixels:
        raise ImageTooLarge(
            f"{name}: {w * h:,} pixels ({w}x{h}), over the limit of {_max_pixels:,} pixels ({_HOW_TO_RAISE})"
        )


@contextmanager
def decoding(name: str) -> Iterator[None]:
    """Any failure of PIL inside the block becomes an ImageError naming the file (`name`)."""
    try:
        yield
    except ImageError:
        raise
    # PIL's backstop, past twice the limit: its text has the count
    except Image.DecompressionBombError as err:
        found = re.search(r"\((\d+) pixels\)", str(err))
        pixels = f"{int(found.group(1)):,} pixels, over" if found else "more than twice"
        raise ImageTooLarge(
            f"{name}: {pixels} the limit of {_max_pixels:,} pixels ({_HOW_TO_RAISE})"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file (no format PIL can read)") from None
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    # Decoders raise many types on hostile bytes (OSError, SyntaxError, ValueError, struct.error, ...):
    # whatever they raise, the file is not a usable image, and the text says which error it was.
    except Exception as err:  # noqa: BLE001
        raise ImageError(f"{name}: cannot be decoded ({type(err).__name__}: {err})") from None


def open_image(source: Path | bytes, name: str) -> Image.Image:
    """The image opened lazily (only its header read) from a file or its bytes, its size within the limit.
    Use inside `decoding(name)`: the pixels are decoded later, by load() or convert()."""
    with decoding(name):
        im = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        try:
            check_size(im.size, name)
        except ImageTooLarge:
            im.close()
            raise
        return im


def image_size(source: Path | bytes, name: str) -> tuple[int, int]:
    """(width, height) from the header, within the limit."""
    with open_image(source, name) as im:
        return im.size


def load_rgb(source: Path | bytes, name: str) -> Image.Image:
    """The whole image decoded and converted to RGB."""
    with decoding(name), open_image(source, name) as im:
        return im.convert("RGB")
