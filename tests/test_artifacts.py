"""Each artifact kind's contract (pipeline.artifacts): what its writer writes, its reader reads back, and a
file whose columns are not the contract's (a column renamed) is a one-line error naming the file."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.artifacts import annotations, descriptions
from pipeline.artifacts.descriptions import DescribeMeta, DescriptionResult
from pipeline.errors import PipelineError
from pipeline.records import ImageAnnotation, Person, empty_keypoints
from pipeline.skeletons import SKELETONS

COCO = SKELETONS["coco-17"]


def _rename(path, old: str, new: str) -> None:
    table = pq.read_table(path)
    pq.write_table(table.rename_columns([new if c == old else c for c in table.column_names]), path)


def test_annotations_round_trip_and_a_renamed_column_fails(store, tmp_path):
    kps = empty_keypoints()
    kps[[0, 9], :] = [[10, 80, 2], [30, 5, 1]]
    coco = empty_keypoints(COCO.num_joints)
    coco[0] = [4, 5, 2]
    rows = [
        ImageAnnotation("a.jpg", split="train", activity="curling", people=[Person(kps, scale=1.5)]),
        ImageAnnotation("b.jpg", people=[Person(coco, label="person", crowd=False)], skeleton=COCO,
                        width=640, height=480, captions=("a person",)),
    ]  # fmt: skip
    with store.create("annotations", "a", stage="test", config={}) as w:
        assert annotations.write(w.dir / annotations.FILE, rows) == 2
    a, b = annotations.read(store, "a")
    assert (a.image, a.split, a.activity, a.people[0].scale) == ("a.jpg", "train", "curling", 1.5)
    assert a.people[0].box == (10.0, 5.0, 30.0, 80.0) and a.skeleton.name == "mpii-16"
    assert b.skeleton == COCO and b.people[0].label == "person" and b.captions == ("a person",)
    assert (b.width, b.height) == (640, 480) and b.people[0].keypoints.shape == (COCO.num_joints, 3)

    path = store.path("annotations", "a") / annotations.FILE
    _rename(path, "people", "persons")
    with pytest.raises(
        PipelineError, match=r"annotations.parquet: not an annotations table \(missing .*people"
    ):
        annotations.read(store, "a")
    path.write_bytes(b"not parquet")
    with pytest.raises(PipelineError, match="not an annotations table"):
        annotations.read_file(path)
    with pytest.raises(PipelineError, match=r"missing \(annotations/\w+ has no annotations.parquet\)"):
        annotations.read_file(tmp_path / "none" / annotations.FILE)


def _result(**overrides) -> DescriptionResult:
    row = {"cache_key": "k", "image": "a.jpg", "source": "rules", "sample": 0, "description": "A person.",
           "status": "ok", "model": "rules", "template": "rules", "template_hash": "h"}  # fmt: skip
    return DescriptionResult(**(row | overrides))


def test_descriptions_round_trip_and_a_renamed_column_fails(store, tmp_path):
    results = [_result(), _result(cache_key="j", sample=1, status="invalid", error="no pose", cost_usd=0.5)]
    with store.create("descriptions", "d", stage="test", config={"backend": "rules"},
                      inputs=[]) as w:  # fmt: skip
        descriptions.write(w.dir / descriptions.FILE, results)
    table = descriptions.read(store, "d", columns=descriptions.SCHEMA.names)
    assert table.schema.equals(descriptions.SCHEMA)
    assert [DescriptionResult(**row) for row in table.to_pylist()] == results
    assert descriptions.totals(results) | {"cost_usd": 0.5} == {
        "rows": 2, "images": 1, "ok": 1, "truncated": 0, "refused": 0, "invalid": 1, "error": 0,
        "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.5,
    }  # fmt: skip
    meta = DescribeMeta.read(store, "d")
    assert (meta.backend, meta.with_image, meta.annotations) == ("rules", False, None)

    path = store.path("descriptions", "d") / descriptions.FILE
    pq.write_table(pq.read_table(path).drop(["cost_usd"]), path)  # an optional column comes back null
    assert descriptions.read_file(path, ("image", "cost_usd")).column("cost_usd").to_pylist() == [None, None]
    _rename(path, "status", "state")
    with pytest.raises(PipelineError, match=r"descriptions.parquet: missing column\(s\) status"):
        descriptions.read(store, "d")


def test_descriptions_reader_checks_every_row(tmp_path):
    path = tmp_path / descriptions.FILE
    for bad, message in (({"status": "weird"}, r"row 1: status 'weird' is not one of ok, truncated"),
                         ({"image": None}, r"row 1: image is null")):  # fmt: skip
        rows = [_result(), _result(cache_key="j", **bad)]
        pq.write_table(pa.Table.from_pylist([vars_of(r) for r in rows], schema=descriptions.SCHEMA), path)
        with pytest.raises(PipelineError, match=message):
            descriptions.read_file(path)
    path.write_bytes(b"not parquet")
    with pytest.raises(PipelineError, match="not a readable Parquet file"):
        descriptions.read_file(path)
    with pytest.raises(PipelineError, match=r"missing \(descriptions/\w+ has no descriptions.parquet\)"):
        descriptions.read_file(tmp_path / "nope" / descriptions.FILE)


def vars_of(result: DescriptionResult) -> dict:
    return {name: getattr(result, name) for name in descriptions.SCHEMA.names}
