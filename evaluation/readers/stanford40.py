"""Stanford 40 Actions: `ImageSplits/actions.txt` (a header line, then `<action>\t<count>`), the split lists
`ImageSplits/{train,test}.txt` (one image file name per line), `XMLAnnotations/<image>.xml` (VOC-like:
object/action and object/bndbox) and `JPEGImages/`.

The class list (in index order) is actions.txt's; each image's label is its XML's action. The whole image
is scored, as in the paper's protocol; the `crop=person` option scores the annotated person box instead.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from evaluation.readers.base import ReaderInput, ReadResult, Sample, require

# Where a user officially obtains the files this reader parses (`eval --check-data` prints it).
SOURCE = "http://vision.stanford.edu/Datasets/40actions.html (JPEGImages, XMLAnnotations, ImageSplits)"


def read_actions(path: Path) -> tuple[str, ...]:
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if lines and lines[0][0] == "action_name":  # the header row of the release file
        lines = lines[1:]
    return tuple(parts[0] for parts in lines)


def read_xml(path: Path) -> tuple[str, tuple[float, float, float, float] | None]:
    """(action, person box or None) from one annotation file."""
    root = ET.parse(path).getroot()
    action = root.findtext("object/action")
    if not action:
        raise ValueError("no object/action")
    box = None
    bnd = root.find("object/bndbox")
    if bnd is not None and all(bnd.findtext(t) for t in ("xmin", "ymin", "xmax", "ymax")):
        box = tuple(float(bnd.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))
    return action.strip(), box


def read(inp: ReaderInput) -> ReadResult:
    splits = inp.root / "ImageSplits"
    actions = require([splits / "actions.txt"], "Stanford 40 ImageSplits/actions.txt")
    split_file = require([splits / f"{inp.split}.txt"], f"Stanford 40 split list {inp.split}.txt")
    crop = inp.options.get("crop", "none")
    out = ReadResult(classes=read_actions(actions))
    for name in (line.strip() for line in split_file.read_text().splitlines()):
        if not name:
            continue
        image = inp.root / "JPEGImages" / name
        xml = inp.root / "XMLAnnotations" / (Path(name).stem + ".xml")
        if not xml.is_file():
            out.skipped["annotation missing"] += 1
            continue
        try:
            action, box = read_xml(xml)
        except (ET.ParseError, ValueError):
            out.skipped["bad annotation"] += 1
            continue
        if not image.is_file():
            out.skipped["image missing"] += 1
            continue
        out.samples.append(
            Sample(str(image), {"action": action}, box=box if crop == "person" else None, name=name)
        )
    return out
