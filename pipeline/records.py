"""The contract between stages: the records that flow, the artifacts' file names, schemas and statuses,
and one checked reader per artifact kind (each raises a one-line PipelineError naming the file and row).

    rows = read_annotations(store.path("annotations", "mpii") / ANNOTATIONS_FILE)
    table = read_descriptions(store.path("descriptions", "rules") / DESCRIPTIONS_FILE)

Keypoints are a float32 array of shape (K, 3) in the order of the image's skeleton (pipeline.skeletons;
MPII's 16 joints, KEYPOINT_NAMES, unless the source says otherwise): x, y in source image pixels and a
flag v (the COCO convention):
    v = 0  not annotated: x and y are NaN, and nothing may be claimed about the joint
    v = 1  annotated but marked occluded by the source (MPII is_visible = 0): the position is known
    v = 2  annotated and visible, or annotated where the source records no visibility (mmpose JSON, CSV)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.errors import PipelineError
from pipeline.skeletons import MPII, SKELETONS, Skeleton

KEYPOINT_NAMES: tuple[str, ...] = MPII.joints
NUM_KEYPOINTS = MPII.num_joints
MISSING, OCCLUDED, VISIBLE = 0, 1, 2
SPLITS = ("train", "val", "test", "unknown")

ANNOTATIONS_FILE = "annotations.parquet"  # annotations/<name>/, written by convert
DESCRIPTIONS_FILE = "descriptions.parquet"  # descriptions/<name>/, written by describe
STATUSES = ("ok", "truncated", "refused", "invalid", "error")  # a description row's status
FAILED_STATUSES = tuple(s for s in STATUSES if s != "ok")  # what describe --retry-failed re-runs


def empty_keypoints(num_joints: int = NUM_KEYPOINTS) -> np.ndarray:
    kps = np.full((num_joints, 3), np.nan, dtype=np.float32)
    kps[:, 2] = MISSING
    return kps


def known(kps: np.ndarray) -> np.ndarray:
    """Boolean mask of joints whose position is known (v > 0 and finite coordinates)."""
    return (kps[..., 2] > 0) & np.isfinite(kps[..., 0]) & np.isfinite(kps[..., 1])


def keypoint_boxes(kps: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) x1, y1, x2, y2 of the joints in `mask` (default: the known ones) of (N, K, 3) keypoints,
    and whether each has one (N,); rows without any joint get a zero box."""
    mask = known(kps) if mask is None else mask
    valid = mask.any(axis=1)
    # Other joints become +/-inf so min/max skip them without NaN warnings (rows with none are zeroed).
    x, y = kps[..., 0], kps[..., 1]
    boxes = np.stack(
        [
            np.where(mask, x, np.inf).min(1, initial=np.inf),
            np.where(mask, y, np.inf).min(1, initial=np.inf),
            np.where(mask, x, -np.inf).max(1, initial=-np.inf),
            np.where(mask, y, -np.inf).max(1, initial=-np.inf),
        ],
        axis=1,
    )
    return np.where(valid[:, None], boxes, 0.0), valid


def keypoint_box(kps: np.ndarray) -> tuple[float, float, float, float] | None:
    """(x1, y1, x2, y2) of the known keypoints of one person, or None when none is known."""
    boxes, valid = keypoint_boxes(kps[None])
    return tuple(float(c) for c in boxes[0]) if valid[0] else None


@dataclass(slots=True)
class Person:
    keypoints: np.ndarray = field(default_factory=empty_keypoints)  # (K, 3) float32, see module doc
    center: tuple[float, float] | None = None  # MPII objpos (x, y)
    scale: float | None = None  # MPII scale: person height / 200 px
    head_box: tuple[float, float, float, float] | None = None  # x1, y1, x2, y2
    label: str | None = None  # the instance's category as the source names it ("person", "zebra")
    source_box: tuple[float, float, float, float] | None = None  # the source's instance box, x1, y1, x2, y2
    segmentation: str | None = None  # the source's instance mask as COCO JSON text (polygons or RLE)
    crowd: bool = False  # a COCO iscrowd region: several people under one box/mask, no keypoints
    score: float | None = None  # a pose model's detection score for the person (annotate); None: people's
    keypoint_scores: np.ndarray | None = None  # (K,) float32, the model's confidence in each joint (annotate)

    @property
    def num_known(self) -> int:
        return int(known(self.keypoints).sum())

    @property
    def box(self) -> tuple[float, float, float, float] | None:
        return keypoint_box(self.keypoints)


@dataclass(slots=True)
class ImageAnnotation:
    image: str  # file name as the source gives it, e.g. "015601864.jpg"
    split: str = "unknown"  # one of SPLITS
    activity: str | None = None  # MPII act_name (may be cut at 100 characters in the source)
    category: str | None = None  # MPII cat_name
    activity_id: int | None = None
    people: list[Person] = field(default_factory=list)
    skeleton: Skeleton = MPII  # the joints of every person's keypoints
    width: int | None = None  # source image size in pixels, when the source records it
    height: int | None = None
    captions: tuple[str, ...] = ()  # human-written captions from the source (COCO captions)

    @property
    def keypoints(self) -> np.ndarray:
        """(P, K, 3) stacked keypoints of all people (P may be 0)."""
        if not self.people:
            return np.zeros((0, self.skeleton.num_joints, 3), dtype=np.float32)
        return np.stack([p.keypoints for p in self.people]).astype(np.float32)


def image_file(images: Path, name: str) -> Path | None:
    """images/name, or None when the name could point outside `images` (absolute, '..', NUL, empty).

    Image names come from annotation and description files, which may be anyone's: build-dataset embeds the
    file it opens and analyze's gallery shows it, so a name like ../../home/me/.ssh/id_rsa must not be read.
    This check is lexical; pipeline.images.find_image also refuses a link that resolves outside `images`.
    """
    parts = PurePosixPath(name).parts if isinstance(name, str) else ()
    if not parts or name.startswith("/") or ".." in parts or "\0" in name:
        return None
    return images / name


_F32_LIST = pa.list_(pa.float32())
PERSON_TYPE = pa.struct([
    ("keypoints", _F32_LIST),  # 3K floats: x, y, v per joint of the image's skeleton
    ("center", _F32_LIST),
    ("scale", pa.float32()),
    ("head_box", _F32_LIST),
    ("box", _F32_LIST),  # of the known keypoints
    ("label", pa.string()),
    ("source_box", _F32_LIST),
    ("segmentation", pa.string()),
    ("crowd", pa.bool_()),
    ("score", pa.float32()),  # detection score of a predicted person (annotate)
    ("keypoint_scores", _F32_LIST),  # K per-joint confidences of a predicted person (annotate)
])  # fmt: skip
ANNOTATIONS_SCHEMA = pa.schema([
    ("image", pa.string()),
    ("split", pa.string()),
    ("activity", pa.string()),
    ("category", pa.string()),
    ("activity_id", pa.int32()),
    ("num_people", pa.int32()),
    ("num_keypoints", pa.int32()),
    ("people", pa.list_(PERSON_TYPE)),
    ("skeleton", pa.string()),  # a name: pipeline.skeletons built-in, or defined in SKELETONS_METADATA
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("captions", pa.list_(pa.string())),
])  # fmt: skip
# Columns an annotations table must have; tables written before skeletons existed lack the rest (MPII then).
ANNOTATIONS_REQUIRED = ANNOTATIONS_SCHEMA.names[:8]
SKELETONS_METADATA = b"focus_pipeline.skeletons"  # parquet key: JSON list of the skeletons the table uses


def _nullable_lists(values: np.ndarray, present: np.ndarray) -> pa.ListArray:
    """(N, k) float values -> list<float32> array with a null where present is False."""
    n, k = values.shape
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    return pa.ListArray.from_arrays(
        offsets, pa.array(values.reshape(-1), type=pa.float32()), mask=pa.array(~present)
    )


def _keypoint_lists(kps: list[np.ndarray]) -> pa.ListArray:
    """Each person's (K, 3) keypoints flattened, as one list<float32> array (K may differ per skeleton)."""
    sizes = np.array([k.size for k in kps], dtype=np.int64)
    offsets = pa.array(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32))
    flat = np.concatenate([k.reshape(-1) for k in kps]).astype(np.float32) if kps else np.zeros(0, np.float32)
    return pa.ListArray.from_arrays(offsets, pa.array(flat, type=pa.float32()))


def _optional_boxes(boxes: list[tuple | None], width: int) -> pa.ListArray:
    present = np.array([b is not None for b in boxes], dtype=bool)
    values = np.array([b if b is not None else (0.0,) * width for b in boxes], dtype=np.float64)
    return _nullable_lists(values.reshape(len(boxes), width), present)


def _person_structs(people: list[Person]) -> tuple[pa.StructArray, np.ndarray]:
    """The people column's structs and each person's number of known joints."""
    kps = [np.asarray(p.keypoints, dtype=np.float32) for p in people]
    box, has_box, num_known = np.zeros((len(kps), 4)), np.zeros(len(kps), dtype=bool), np.zeros(len(kps), int)
    # One NumPy pass per skeleton size (usually a single one) for the keypoint boxes.
    for k in {a.shape[0] for a in kps}:
        idx = [i for i, a in enumerate(kps) if a.shape[0] == k]
        stacked = np.stack([kps[i] for i in idx])
        mask = known(stacked)
        box[idx], has_box[idx] = keypoint_boxes(stacked, mask)
        num_known[idx] = mask.sum(axis=1)
    scale = pa.array([None if p.scale is None else float(p.scale) for p in people], type=pa.float32())
    structs = pa.StructArray.from_arrays(
        [
            _keypoint_lists(kps),
            _optional_boxes([p.center for p in people], 2),
            scale,
            _optional_boxes([p.head_box for p in people], 4),
            _nullable_lists(box, has_box),
            pa.array([p.label for p in people], type=pa.string()),
            _optional_boxes([p.source_box for p in people], 4),
            pa.array([p.segmentation for p in people], type=pa.string()),
            pa.array([bool(p.crowd) for p in people], type=pa.bool_()),
            pa.array([p.score for p in people], type=pa.float32()),
            pa.array([_opt_scores(p.keypoint_scores) for p in people], type=_F32_LIST),
        ],
        fields=list(PERSON_TYPE),
    )
    return structs, num_known


def annotations_to_table(rows: Iterable[ImageAnnotation]) -> pa.Table:
    """The annotations table; built column-wise with NumPy (25k images in well under a second). The
    skeletons it uses are stored in the schema metadata, so a custom one travels with the table."""
    rows = list(rows)
    for r in rows:
        bad = next((p for p in r.people if p.keypoints.shape != (r.skeleton.num_joints, 3)), None)
        if bad is not None:
            raise PipelineError(
                f"{r.image}: keypoints of shape {bad.keypoints.shape}, the {r.skeleton.name} skeleton has "
                f"{r.skeleton.num_joints} joints"
            )
    people = [p for r in rows for p in r.people]
    per_image = np.array([len(r.people) for r in rows], dtype=np.int64)
    persons, known_per_person = _person_structs(people)
    image_offsets = pa.array(np.concatenate([[0], np.cumsum(per_image)]).astype(np.int32))
    person_image = np.repeat(np.arange(len(rows)), per_image)
    num_known = np.bincount(person_image, weights=known_per_person, minlength=len(rows)).astype(np.int32)
    cols = {
        "image": pa.array([r.image for r in rows], type=pa.string()),
        "split": pa.array([r.split for r in rows], type=pa.string()),
        "activity": pa.array([r.activity for r in rows], type=pa.string()),
        "category": pa.array([r.category for r in rows], type=pa.string()),
        "activity_id": pa.array([r.activity_id for r in rows], type=pa.int32()),
        "num_people": pa.array(per_image.astype(np.int32)),
        "num_keypoints": pa.array(num_known),
        "people": pa.ListArray.from_arrays(image_offsets, persons),
        "skeleton": pa.array([r.skeleton.name for r in rows], type=pa.string()),
        "width": pa.array([r.width for r in rows], type=pa.int32()),
        "height": pa.array([r.height for r in rows], type=pa.int32()),
        "captions": pa.array([list(r.captions) for r in rows], type=pa.list_(pa.string())),
    }
    used = {r.skeleton.name: r.skeleton for r in rows}
    meta = {SKELETONS_METADATA: json.dumps([s.to_dict() for s in used.values()]).encode()}
    return pa.table(cols, schema=ANNOTATIONS_SCHEMA.with_metadata(meta))


def _opt_tuple(values: Sequence[float] | None) -> tuple | None:
    return None if values is None else tuple(float(v) for v in values)


def _opt_scores(values: Sequence[float] | np.ndarray | None) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=np.float32)


def _fixed_lists(arr: pa.Array, width: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(values (N, width), valid (N,)) of a list<float> column, or None when a list has another length."""
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False)
    if (lengths[valid] != width).any():
        return None
    values = np.full((len(arr), width), np.nan, dtype=np.float64)
    values[valid] = arr.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
    return values, valid


def _people_fast(people: pa.ListArray) -> list[Person] | None:
    """Every person of the column at once with NumPy; None when the data is irregular (slow path then)."""
    structs = people.flatten()
    if structs.null_count:
        return None
    fields = dict(zip([f.name for f in PERSON_TYPE], structs.flatten(), strict=True))
    lengths = pc.list_value_length(fields["keypoints"]).fill_null(0).to_numpy(zero_copy_only=False)
    width = int(lengths[0]) if len(lengths) else 3 * NUM_KEYPOINTS
    kps = _fixed_lists(fields["keypoints"], width)
    center = _fixed_lists(fields["center"], 2)
    head = _fixed_lists(fields["head_box"], 4)
    source_box = _fixed_lists(fields["source_box"], 4)
    if kps is None or not kps[1].all() or width % 3 or center is None or head is None or source_box is None:
        return None
    keypoints = kps[0].astype(np.float32).reshape(-1, width // 3, 3)

    def boxes(values: tuple[np.ndarray, np.ndarray]) -> list[tuple | None]:
        return [
            tuple(v) if ok else None for v, ok in zip(values[0].tolist(), values[1].tolist(), strict=True)
        ]

    centers, heads, sources = boxes(center), boxes(head), boxes(source_box)
    scales, labels = fields["scale"].to_pylist(), fields["label"].to_pylist()
    segmentations, crowds = fields["segmentation"].to_pylist(), fields["crowd"].to_pylist()
    scores, keypoint_scores = fields["score"].to_pylist(), fields["keypoint_scores"].to_pylist()
    return [
        Person(
            keypoints=keypoints[i],
            center=centers[i],
            scale=scales[i],
            head_box=heads[i],
            label=labels[i],
            source_box=sources[i],
            segmentation=segmentations[i],
            crowd=bool(crowds[i]),
            score=scores[i],
            keypoint_scores=_opt_scores(keypoint_scores[i]),
        )  # fmt: skip
        for i in range(len(keypoints))
    ]


def _people_slow(people: pa.ListArray) -> list[Person]:
    return [
        Person(
            keypoints=np.asarray(p["keypoints"], dtype=np.float32).reshape(-1, 3),
            center=_opt_tuple(p["center"]),
            scale=p["scale"],
            head_box=_opt_tuple(p["head_box"]),
            label=p["label"],
            source_box=_opt_tuple(p["source_box"]),
            segmentation=p["segmentation"],
            crowd=bool(p["crowd"]),
            score=p["score"],
            keypoint_scores=_opt_scores(p["keypoint_scores"]),
        )
        for ps in people.to_pylist()
        for p in ps or []
    ]


def _skeletons(table: pa.Table) -> dict[str, Skeleton]:
    """The skeletons a table names: those stored in its metadata, then the built-ins."""
    stored = (table.schema.metadata or {}).get(SKELETONS_METADATA)
    defined = [Skeleton.from_dict(d) for d in json.loads(stored)] if stored else []
    return SKELETONS | {s.name: s for s in defined}


def table_to_annotations(table: pa.Table) -> list[ImageAnnotation]:
    """The rows of an annotations table (tables without the newer columns read as MPII-16)."""
    for name in ANNOTATIONS_SCHEMA.names[len(ANNOTATIONS_REQUIRED) :]:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, ANNOTATIONS_SCHEMA.field(name).type))
    people_col = table.column("people").combine_chunks()
    if people_col.type != pa.list_(PERSON_TYPE):
        people_col = people_col.cast(pa.list_(PERSON_TYPE))  # older tables: the new person fields are null
    counts = pc.list_value_length(people_col).fill_null(0).to_numpy(zero_copy_only=False)
    people = _people_fast(people_col)
    if people is None:
        people = _people_slow(people_col)
    skeletons = _skeletons(table)
    rows = table.drop_columns(["people"]).to_pylist()
    starts = np.concatenate([[0], np.cumsum(counts)]).tolist()
    out = []
    for i, r in enumerate(rows):
        skeleton = skeletons.get(r["skeleton"] or MPII.name)
        if skeleton is None:
            raise ValueError(
                f"row {i}: skeleton {r['skeleton']!r} is neither built in nor defined in the file"
            )
        mine = people[starts[i] : starts[i + 1]]
        if any(p.keypoints.shape[0] != skeleton.num_joints for p in mine):
            raise ValueError(
                f"row {i}: keypoints do not have the {skeleton.num_joints} joints of {skeleton.name}"
            )
        out.append(
            ImageAnnotation(
                image=r["image"],
                split=r["split"],
                activity=r["activity"],
                category=r["category"],
                activity_id=r["activity_id"],
                people=mine,
                skeleton=skeleton,
                width=r["width"],
                height=r["height"],
                captions=tuple(r["captions"] or ()),
            )  # fmt: skip
        )
    return out


def write_annotations(path: str | Path, rows: Iterable[ImageAnnotation]) -> int:
    table = annotations_to_table(rows)
    pq.write_table(table, path, compression="zstd")
    return table.num_rows


def read_annotations(path: str | Path) -> list[ImageAnnotation]:
    """The rows of an annotations.parquet; PipelineError when it is missing or not an annotations table."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: missing (annotations/{path.parent.name} has no {ANNOTATIONS_FILE})")
    try:
        missing = [c for c in ANNOTATIONS_REQUIRED if c not in pq.read_schema(path).names]
        if missing:
            raise PipelineError(f"{path}: not an annotations table (missing column(s) {', '.join(missing)})")
        return table_to_annotations(pq.read_table(path))
    except (OSError, pa.ArrowException, KeyError, ValueError, TypeError) as err:
        raise PipelineError(f"{path}: not an annotations table ({type(err).__name__}: {err})") from None


DESCRIPTIONS_SCHEMA = pa.schema([
    ("image", pa.string()),
    ("source", pa.string()),
    ("sample", pa.int32()),
    ("description", pa.string()),
    ("status", pa.string()),
    ("model", pa.string()),
    ("template", pa.string()),
    ("template_hash", pa.string()),
    ("finish_reason", pa.string()),
    ("prompt_tokens", pa.int64()),
    ("completion_tokens", pa.int64()),
    ("cost_usd", pa.float64()),
    ("latency_s", pa.float64()),
    ("attempts", pa.int32()),
    ("error", pa.string()),
    ("response_id", pa.string()),
    ("cache_key", pa.string()),
])  # fmt: skip
DESCRIPTIONS_REQUIRED = ("image", "source", "sample", "description", "status")  # what every reader needs


def read_descriptions(path: str | Path, columns: Sequence[str] = DESCRIPTIONS_REQUIRED) -> pa.Table:
    """`columns` of a descriptions.parquet, checked: the required columns are there, image, source and
    status are never null and every status is one of STATUSES. Absent optional columns come back null."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: missing (descriptions/{path.parent.name} has no {DESCRIPTIONS_FILE})")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise PipelineError(f"{path}: not a readable Parquet file ({err})") from None
    missing = [c for c in DESCRIPTIONS_REQUIRED if c not in table.column_names]
    if missing:
        raise PipelineError(f"{path}: missing column(s) {', '.join(missing)} (see the describe schema)")
    for col in ("image", "source", "status"):
        nulls = table.column(col).is_null().to_numpy(zero_copy_only=False)
        if nulls.any():
            raise PipelineError(f"{path}: row {int(nulls.argmax())}: {col} is null")
    unknown = pc.invert(pc.is_in(table.column("status"), value_set=pa.array(STATUSES)))
    if pc.any(unknown).as_py():
        row = int(np.argmax(unknown.to_numpy(zero_copy_only=False)))
        raise PipelineError(
            f"{path}: row {row}: status {table.column('status')[row].as_py()!r} is not one of "
            f"{', '.join(STATUSES)}"
        )
    for col in columns:
        if col not in table.column_names:
            table = table.append_column(
                DESCRIPTIONS_SCHEMA.field(col),
                pa.nulls(table.num_rows, type=DESCRIPTIONS_SCHEMA.field(col).type),
            )
    return table.select(list(columns))
