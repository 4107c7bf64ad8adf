"""The embedded demo sample, written in the real source formats (deterministic by seed).

    cfg = SampleConfig(seed=0, images=1500)
    layout = generate_sample(cfg, Path("sample"))     # reuses a finished folder with the same config
    layout.mat          # sample/mpii/mpii_human_pose_v1_u12_1.mat  (RELEASE struct, as the official file)
    layout.images       # sample/mpii/images/*.jpg
    layout.eval_root    # sample/eval: stanford40/ (ImageSplits, XMLAnnotations, JPEGImages) and
                        #              fer2013/{train,test}/<body state>/*.jpg (image-folder layout)

Every image draws from its own random stream `default_rng([seed, stream, index])`, so an image does not
depend on how many others were asked for, and the streams of the training images, the action test set and
the body-state test set never overlap: the eval sets show people, outfits, rooms and clutter that
training never saw.
"""

from __future__ import annotations

import json
import logging
import shutil
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.geometry import body_state
from pipeline.log import progress
from pipeline.records import ImageAnnotation
from pipeline.synthetic.poses import ACTIVITIES, ACTIVITY_BY_NAME, BODY_STATES
from pipeline.synthetic.scene import SceneSpec, render_scene

log = logging.getLogger(__name__)

MAT_NAME = "mpii_human_pose_v1_u12_1.mat"  # the official file's name, so the layout reads like a download
MANIFEST = "manifest.json"  # written last: its presence marks a complete sample
# Random streams (the second seed word): training images, Stanford 40-style sets, body-state sets.
_MPII, _STANFORD_TRAIN, _STANFORD_TEST, _STATE_TRAIN, _STATE_TEST = range(5)


@dataclass(frozen=True, slots=True)
class SampleConfig:
    seed: int = 0
    images: int = 1500  # MPII-style training images (activities balanced)
    image_size: tuple[int, int] = (160, 160)  # width, height (square: training and eval resize alike)
    max_people: int = 3
    clutter: tuple[int, int] = (8, 18)
    person_height: tuple[float, float] | None = None  # fraction of the image height (None: by people count)
    activities: tuple[str, ...] = tuple(a.name for a in ACTIVITIES)
    action_test_per_class: int = 30  # Stanford 40-style test images per activity
    action_train_per_class: int = 2  # the layout's train list (not used by the demo's evaluation)
    state_test_per_class: int = 40  # FER2013-style person crops per body state
    state_train_per_class: int = 2
    crop_size: int = 96  # side of the body-state crops
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        unknown = [a for a in self.activities if a not in ACTIVITY_BY_NAME]
        if unknown:
            raise ValueError(f"unknown activities {unknown} (one of {', '.join(ACTIVITY_BY_NAME)})")
        if self.images < 1 or not 1 <= self.max_people <= 3:
            raise ValueError("images must be >= 1 and max_people in 1..3")

    @property
    def scene(self) -> SceneSpec:
        return SceneSpec(
            size=self.image_size,
            max_people=self.max_people,
            clutter=self.clutter,
            person_height=self.person_height,
        )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(slots=True)
class SampleLayout:
    root: Path
    mat: Path
    images: Path
    eval_root: Path
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def at(cls, root: Path) -> SampleLayout:
        root = Path(root)
        return cls(
            root=root, mat=root / "mpii" / MAT_NAME, images=root / "mpii" / "images", eval_root=root / "eval"
        )


def stanford_name(activity: str) -> str:
    """Stanford 40 class names are single tokens (actions.txt is whitespace separated): 'lying_down'."""
    return activity.replace(" ", "_")


def mpii_annotations(cfg: SampleConfig, images_dir: Path | None = None) -> list[ImageAnnotation]:
    """Render the MPII-style training images (saved to `images_dir` when given); returns their annotations."""
    rows = []
    for i in progress(range(cfg.images), desc="sample: MPII-style images", unit="img"):
        activity = ACTIVITY_BY_NAME[cfg.activities[i % len(cfg.activities)]]
        scene = render_scene(activity.name, np.random.default_rng([cfg.seed, _MPII, i]), cfg.scene)
        name = f"{i:09d}.jpg"  # MPII names are 9-digit numbers
        if images_dir is not None:
            scene.image.save(images_dir / name, quality=cfg.jpeg_quality)
        rows.append(
            ImageAnnotation(
                image=name,
                split="train",
                activity=activity.name,
                category=activity.category,
                activity_id=activity.act_id,
                people=scene.people,
            )
        )
    return rows


def _voc_xml(
    filename: str, action: str, box: tuple[float, float, float, float], size: tuple[int, int]
) -> str:
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = filename
    obj = ET.SubElement(root, "object")
    ET.SubElement(obj, "action").text = action
    bnd = ET.SubElement(obj, "bndbox")
    w, h = size
    x1, y1, x2, y2 = box
    for tag, value in (
        ("xmax", min(x2, w - 1)),
        ("xmin", max(x1, 0)),
        ("ymax", min(y2, h - 1)),
        ("ymin", max(y1, 0)),
    ):
        ET.SubElement(bnd, tag).text = str(int(round(value)))
    ET.SubElement(obj, "name").text = "person"
    sz = ET.SubElement(root, "size")
    ET.SubElement(sz, "depth").text = "3"
    ET.SubElement(sz, "height").text = str(h)
    ET.SubElement(sz, "width").text = str(w)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def write_stanford40(cfg: SampleConfig, root: Path) -> int:
    """Stanford 40 Actions layout: one person per image, the action in its VOC-like XML."""
    splits, xml_dir, jpg_dir = root / "ImageSplits", root / "XMLAnnotations", root / "JPEGImages"
    for d in (splits, xml_dir, jpg_dir):
        d.mkdir(parents=True, exist_ok=True)
    lists: dict[str, list[str]] = {"train": [], "test": []}
    counts = []
    for a in progress(cfg.activities, desc="sample: Stanford40-style set", unit="class"):
        cls = stanford_name(a)
        number = 0
        for split, stream, n in (
            ("train", _STANFORD_TRAIN, cfg.action_train_per_class),
            ("test", _STANFORD_TEST, cfg.action_test_per_class),
        ):
            per_class = []
            for k in range(n):
                rng = np.random.default_rng([cfg.seed, stream, ACTIVITIES.index(ACTIVITY_BY_NAME[a]), k])
                scene = render_scene(a, rng, cfg.scene, n_people=1)
                number += 1
                name = f"{cls}_{number:03d}.jpg"
                scene.image.save(jpg_dir / name, quality=cfg.jpeg_quality)
                (xml_dir / f"{cls}_{number:03d}.xml").write_text(
                    _voc_xml(name, cls, scene.extents[0], cfg.image_size)
                )
                per_class.append(name)
            (splits / f"{cls}_{split}.txt").write_text("".join(f"{n}\n" for n in per_class))
            lists[split] += per_class
        counts.append((cls, number))
    (splits / "actions.txt").write_text(
        "action_name\tnumber_of_images\n" + "".join(f"{c}\t{n}\n" for c, n in counts)
    )
    for split, names in lists.items():
        (splits / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    return len(lists["test"])


def _crop(image: Image.Image, box: tuple[float, float, float, float], size: int) -> Image.Image:
    """A square crop around the person (20% margin), shifted to stay inside the image, resized to `size`."""
    x1, y1, x2, y2 = box
    side = min(max(x2 - x1, y2 - y1) * 1.2, min(image.size))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left = float(np.clip(cx - side / 2, 0, image.size[0] - side))
    top = float(np.clip(cy - side / 2, 0, image.size[1] - side))
    return image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))


def write_body_states(cfg: SampleConfig, root: Path) -> int:
    """FER2013 image-folder layout (`<split>/<class>/*.jpg`) with body states as the classes: person crops
    whose state pipeline.geometry.body_state confirms (so the label is the word the descriptions use).
    Returns the number of test images."""
    total = 0
    for split, stream, n in (
        ("train", _STATE_TRAIN, cfg.state_train_per_class),
        ("test", _STATE_TEST, cfg.state_test_per_class),
    ):
        for s_index, state in enumerate(BODY_STATES):
            sources = [a for a in cfg.activities if ACTIVITY_BY_NAME[a].state == state]
            if not sources:
                continue
            folder = root / split / state
            folder.mkdir(parents=True, exist_ok=True)
            for k in progress(range(n), desc=f"sample: body state {split}/{state}", unit="img", leave=False):
                rng = np.random.default_rng([cfg.seed, stream, s_index, k])
                for _ in range(20):  # redraw the rare pose the geometry reads differently
                    scene = render_scene(sources[k % len(sources)], rng, cfg.scene, n_people=1)
                    if body_state(scene.people[0].keypoints)[0] == state:
                        break
                else:
                    raise RuntimeError(f"could not draw a {state!r} pose that the geometry confirms")
                crop = _crop(scene.image, scene.extents[0], cfg.crop_size)
                prefix = "PrivateTest" if split == "test" else "Training"
                crop.save(folder / f"{prefix}_{s_index}{k:05d}.jpg", quality=cfg.jpeg_quality)
                total += split == "test"
    return total


def generate_sample(cfg: SampleConfig, root: Path, *, fresh: bool = False) -> SampleLayout:
    """Write the whole sample under `root`; a complete sample with the same config is reused."""
    # scipy.io takes ~0.8 s to import, and every CLI command imports this module (through the demo)
    from pipeline.sources.mpii_mat_writer import write_release_mat

    layout = SampleLayout.at(root)
    manifest = layout.root / MANIFEST
    if not fresh and manifest.is_file():
        saved = json.loads(manifest.read_text())
        if saved.get("config") == json.loads(json.dumps(cfg.to_dict())):
            layout.counts = saved["counts"]
            log.info("reusing the synthetic sample in %s", layout.root)
            return layout
    if layout.root.exists():
        shutil.rmtree(layout.root)
    layout.images.mkdir(parents=True)
    rows = mpii_annotations(cfg, layout.images)
    write_release_mat(layout.mat, rows)
    layout.counts = {
        "images": len(rows),
        "people": sum(len(r.people) for r in rows),
        "stanford40_test": write_stanford40(cfg, layout.eval_root / "stanford40"),
        "body_state_test": write_body_states(cfg, layout.eval_root / "fer2013"),
    }
    manifest.write_text(json.dumps({"config": cfg.to_dict(), "counts": layout.counts}, indent=2) + "\n")
    log.info("wrote the synthetic sample to %s: %s", layout.root, layout.counts)
    return layout
