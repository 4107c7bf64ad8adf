"""The annotations artifact: annotations/<name>/annotations.parquet, one row per image with its people,
written by convert and annotate, read by describe, build-dataset and analyze.

    from pipeline.artifacts import annotations
    annotations.write(writer.dir / annotations.FILE, rows)      # rows: list[ImageAnnotation]
    rows = annotations.read(store, "mpii")                      # checked: a one-line error naming the file

Each person's keypoints are stored flat (3K floats, the image's skeleton's joints; pipeline.records explains
the x, y, v convention); the skeletons a table uses travel in its schema metadata.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.errors import PipelineError
from pipeline.records import NUM_KEYPOINTS, ImageAnnotation, Person, keypoint_boxes, known
from pipeline.skeletons import MPII, SKELETONS, Skeleton
from pipeline.store import Store

FILE = "annotations.parquet"
# Beside it in an artifact made by annotate: the model's raw output (what a re-run with other thresholds
# reads back instead of running the model again), and every image that gave no row, with its reason.
PREDICTIONS_FILE = "predictions.jsonl"
SKIPPED_FILE = "skipped.jsonl"
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
SCHEMA = pa.schema([
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
REQUIRED = SCHEMA.names[:8]
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


def to_table(rows: Iterable[ImageAnnotation]) -> pa.Table:
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
    return pa.table(cols, schema=SCHEMA.with_metadata(meta))


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


def from_table(table: pa.Table) -> list[ImageAnnotation]:
    """The rows of an annotations table (tables without the newer columns read as MPII-16)."""
    for name in SCHEMA.names[len(REQUIRED) :]:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, SCHEMA.field(name).type))
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


def write(path: str | Path, rows: Iterable[ImageAnnotation]) -> int:
    table = to_table(rows)
    pq.write_table(table, path, compression="zstd")
    return table.num_rows


def read_file(path: str | Path) -> list[ImageAnnotation]:
    """The rows of an annotations.parquet; PipelineError when it is missing or not an annotations table."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: missing (annotations/{path.parent.name} has no {FILE})")
    try:
        missing = [c for c in REQUIRED if c not in pq.read_schema(path).names]
        if missing:
            raise PipelineError(f"{path}: not an annotations table (missing column(s) {', '.join(missing)})")
        return from_table(pq.read_table(path))
    except (OSError, pa.ArrowException, KeyError, ValueError, TypeError) as err:
        raise PipelineError(f"{path}: not an annotations table ({type(err).__name__}: {err})") from None


def read(store: Store, name: str) -> list[ImageAnnotation]:
    """The rows of annotations/<name>."""
    return read_file(store.path("annotations", name) / FILE)
