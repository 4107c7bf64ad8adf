"""Write MPII annotations as a .mat file in the exact structure of the official release.

The official `mpii_human_pose_v1_u12_1.mat` could not be obtained for this project (see
../shared/data/mpii/PROVENANCE.md), so the .mat reader is tested on files written here, and the demo's
synthetic sample is written here too:

    from pipeline.sources.mpii_mat_writer import MatQuirks, write_release_mat
    write_release_mat("sample.mat", images, quirks=MatQuirks.real_world())

Structure written (scipy.io.savemat of nested structs and cells, MATLAB v5 format), one variable `RELEASE`:

    annolist       1xN struct: image.name, annorect (1xR struct, [] when no person), frame_sec, vididx
      annorect(r)  x1, y1, x2, y2 (head box), scale, objpos.x/.y, annopoints.point (1xK struct: id 0..15,
                   x, y, is_visible); a field is left out of an image's annorect when no person has it
    img_train      1xN uint8: 1 = train, 0 = test
    version        '12'
    single_person  Nx1 cell of 1-based annorect ids
    act            Nx1 struct: act_name, cat_name (text, [] when unlabelled), act_id (-1 when unlabelled)
    video_list     1xV cell of YouTube ids

Keypoints are written as they are held in records (the .mat's own pixel convention): x, y of every joint
with v > 0, is_visible = 1 for v = 2 and 0 for v = 1; joints with v = 0 are left out (absent ids).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from pipeline.records import OCCLUDED, ImageAnnotation, Person, known

# Joints for which the real file stores is_visible as [] most often (upper neck, head top).
HEAD_JOINTS = (8, 9)
VISIBILITY_ENCODINGS = ("numeric", "text", "mixed")


@dataclass(frozen=True, slots=True)
class MatQuirks:
    """Real-world irregularities of the official file that a writer can reproduce (defaults: none).

    visibility: how is_visible is stored: "numeric" (0/1), "text" ('0'/'1'), or "mixed" (people cycle
        through numeric, text, and numeric with [] for visible upper neck/head top, as in the real file).
    empty_visibility_joints: joints whose is_visible is [] when the joint is visible (any encoding).
    keypointless_annopoints: for a person without keypoints in an image where others have some: "empty"
        writes annopoints = [] (the real file's habit), "no_points" writes annopoints with an empty point.
    truncate_activity: cut act_name after this many characters (the real file cuts at 100).
    integer_ids: store point ids as uint8 and image indices as int (the file mixes integer and double
        types); otherwise every number is a double.

    Single-element arrays need no option: MATLAB has no scalars, so an image with one person or a person
    with one point is a 1x1 struct, which `loadmat(squeeze_me=True)` turns into a bare struct.
    """

    visibility: str = "numeric"
    empty_visibility_joints: tuple[int, ...] = ()
    keypointless_annopoints: str = "empty"
    truncate_activity: int | None = None
    integer_ids: bool = False

    def __post_init__(self) -> None:
        if self.visibility not in VISIBILITY_ENCODINGS:
            raise ValueError(f"visibility must be one of {VISIBILITY_ENCODINGS}, not {self.visibility!r}")
        if self.keypointless_annopoints not in ("empty", "no_points"):
            raise ValueError("keypointless_annopoints must be 'empty' or 'no_points'")

    @classmethod
    def real_world(cls) -> MatQuirks:
        """All the irregularities seen in the official file at once."""
        return cls(
            visibility="mixed",
            empty_visibility_joints=HEAD_JOINTS,
            keypointless_annopoints="empty",
            truncate_activity=100,
            integer_ids=True,
        )


_EMPTY = np.zeros((0, 0))


def _num(value: float) -> np.ndarray:
    return np.array([[float(value)]])


def _int(value: int, quirks: MatQuirks) -> np.ndarray:
    return np.array([[int(value)]], dtype=np.uint8 if quirks.integer_ids else np.float64)


def _visibility(v: float, joint: int, person_idx: int, quirks: MatQuirks):
    flag = 0 if int(v) == OCCLUDED else 1
    if flag == 1 and joint in quirks.empty_visibility_joints:
        return _EMPTY
    mode = quirks.visibility
    if mode == "mixed":
        mode = ("numeric", "text", "empty-head")[person_idx % 3]
        if mode == "empty-head":
            return _EMPTY if flag == 1 and joint in HEAD_JOINTS else float(flag)
    return str(flag) if mode == "text" else float(flag)


def _points(p: Person, person_idx: int, quirks: MatQuirks) -> np.ndarray:
    mask = known(p.keypoints)
    ids = np.flatnonzero(mask)
    pts = np.empty((1, len(ids)), dtype=[("x", "O"), ("y", "O"), ("id", "O"), ("is_visible", "O")])
    for k, j in enumerate(ids):
        x, y, v = p.keypoints[j]
        pts[0, k] = (_num(x), _num(y), _int(j, quirks), _visibility(v, int(j), person_idx, quirks))
    return pts


def _annorect(people: Sequence[Person], quirks: MatQuirks) -> np.ndarray:
    if not people:
        return _EMPTY
    fields: list[str] = []
    if any(p.head_box is not None for p in people):
        fields += ["x1", "y1", "x2", "y2"]
    any_points = any(p.num_known for p in people)
    if any_points:
        fields.append("annopoints")
    fields += ["scale", "objpos"]
    rects = np.empty((1, len(people)), dtype=[(f, "O") for f in fields])
    for r, p in enumerate(people):
        values: dict[str, object] = {}
        if "x1" in fields:
            box = p.head_box or (None,) * 4
            for f, v in zip(("x1", "y1", "x2", "y2"), box, strict=True):
                values[f] = _EMPTY if v is None else _num(v)
        if any_points:
            if p.num_known:
                values["annopoints"] = {"point": _points(p, r, quirks)}
            elif quirks.keypointless_annopoints == "no_points":
                values["annopoints"] = {"point": _EMPTY}
            else:
                values["annopoints"] = _EMPTY
        values["scale"] = _EMPTY if p.scale is None else _num(p.scale)
        values["objpos"] = _EMPTY if p.center is None else {"x": _num(p.center[0]), "y": _num(p.center[1])}
        rects[0, r] = tuple(values[f] for f in fields)
    return rects


def _text(value: str | None) -> str | np.ndarray:
    return _EMPTY if value is None else value


def write_release_mat(
    path: str | Path,
    images: Sequence[ImageAnnotation],
    *,
    video_list: Sequence[str] | None = None,
    vididx: Sequence[int | None] | None = None,
    frame_sec: Sequence[int | None] | None = None,
    single_person: Sequence[Sequence[int]] | None = None,
    quirks: MatQuirks | None = None,
    compress: bool = False,
) -> Path:
    """Write `images` as an official-structure MPII .mat; returns the path.

    split "test" gives img_train = 0, anything else 1 (the official file has no val split). video_list,
    vididx (1-based index into video_list) and frame_sec are per-image extras (default: empty).
    single_person: per image, 1-based ids of well separated people (default: every person with keypoints).
    compress: zlib-compress the variable, as MATLAB's default save (-v7) does for the official file.
    """
    quirks = quirks or MatQuirks()
    n = len(images)
    annolist = np.empty(
        (1, n), dtype=[("image", "O"), ("annorect", "O"), ("frame_sec", "O"), ("vididx", "O")]
    )
    act = np.empty((n, 1), dtype=[("cat_name", "O"), ("act_name", "O"), ("act_id", "O")])
    single = np.empty((n, 1), dtype=object)
    img_train = np.zeros((1, n), dtype=np.uint8)
    for i, ann in enumerate(images):
        fs = frame_sec[i] if frame_sec is not None else None
        vi = vididx[i] if vididx is not None else None
        annolist[0, i] = (
            {"name": ann.image},
            _annorect(ann.people, quirks),
            _EMPTY if fs is None else _num(fs),
            _EMPTY if vi is None else _num(vi),
        )
        name = ann.activity
        if name is not None and quirks.truncate_activity is not None:
            name = name[: quirks.truncate_activity]
        act_id = -1 if ann.activity_id is None else int(ann.activity_id)
        act_id_dtype = np.int16 if quirks.integer_ids else np.float64
        act[i, 0] = (_text(ann.category), _text(name), np.array([[act_id]], dtype=act_id_dtype))
        ids = (
            single_person[i]
            if single_person is not None
            else [r + 1 for r, p in enumerate(ann.people) if p.num_known]
        )
        single[i, 0] = np.asarray(ids, dtype=np.float64).reshape(-1, 1) if len(ids) else _EMPTY
        img_train[0, i] = 0 if ann.split == "test" else 1
    videos = np.empty((1, len(video_list or [])), dtype=object)
    for i, v in enumerate(video_list or []):
        videos[0, i] = v
    release = {
        "annolist": annolist,
        "img_train": img_train,
        "version": "12",
        "single_person": single,
        "act": act,
        "video_list": videos,
    }
    path = Path(path)
    # savemat seeks back to patch every element's size: far cheaper in memory than on a file.
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"RELEASE": release}, do_compression=compress, oned_as="row")
    path.write_bytes(buffer.getbuffer())
    return path
