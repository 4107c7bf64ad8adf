"""The data contract's readers: each artifact kind is read and checked in one place; errors name file, row."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import PipelineError
from pipeline.records import (
    DESCRIPTIONS_SCHEMA,
    ImageAnnotation,
    Person,
    empty_keypoints,
    keypoint_box,
    keypoint_boxes,
    read_annotations,
    read_descriptions,
    write_annotations,
)


def _descriptions(path, **overrides):
    row = {"image": "a.jpg", "source": "rules", "sample": 0, "description": "A person.", "status": "ok"}
    table = pa.Table.from_pylist([row | overrides], schema=DESCRIPTIONS_SCHEMA)
    pq.write_table(table, path)
    return path


def test_read_descriptions_checks_what_every_reader_needs(tmp_path):
    path = _descriptions(tmp_path / "descriptions.parquet")
    table = read_descriptions(path, ("image", "status", "cost_usd"))
    assert table.column_names == ["image", "status", "cost_usd"] and table.num_rows == 1
    pq.write_table(pq.read_table(path).drop(["cost_usd"]), path)  # an optional column comes back null
    assert read_descriptions(path, ("image", "cost_usd")).column("cost_usd").to_pylist() == [None]
    with pytest.raises(PipelineError, match=r"row 0: status 'weird' is not one of ok, truncated"):
        read_descriptions(_descriptions(path, status="weird"))
    with pytest.raises(PipelineError, match=r"row 0: image is null"):
        read_descriptions(_descriptions(path, image=None))
    pq.write_table(pq.read_table(path).drop(["status"]), path)
    with pytest.raises(PipelineError, match=r"missing column\(s\) status"):
        read_descriptions(path)
    path.write_bytes(b"not parquet")
    with pytest.raises(PipelineError, match="not a readable Parquet file"):
        read_descriptions(path)
    with pytest.raises(PipelineError, match=r"missing \(descriptions/\w+ has no descriptions.parquet\)"):
        read_descriptions(tmp_path / "nope" / "descriptions.parquet")


def test_read_annotations_round_trip_and_errors(tmp_path):
    kps = empty_keypoints()
    kps[[0, 9], :] = [[10, 80, 2], [30, 5, 1]]
    path = tmp_path / "annotations.parquet"
    write_annotations(path, [ImageAnnotation("a.jpg", people=[Person(kps)])])
    (back,) = read_annotations(path)
    assert back.image == "a.jpg" and back.people[0].box == (10.0, 5.0, 30.0, 80.0)
    pq.write_table(pa.table({"image": ["a.jpg"]}), path)
    with pytest.raises(PipelineError, match=r"not an annotations table \(missing column\(s\) split, "):
        read_annotations(path)
    path.write_bytes(b"not parquet")
    with pytest.raises(PipelineError, match="not an annotations table"):
        read_annotations(path)
    with pytest.raises(PipelineError, match="missing"):
        read_annotations(tmp_path / "none.parquet")


def test_keypoint_boxes_use_only_known_or_masked_joints():
    kps = np.stack([empty_keypoints(), empty_keypoints()])
    kps[0, [1, 4]] = [[4, 6, 2], [-2, 9, 1]]
    boxes, valid = keypoint_boxes(kps)
    assert valid.tolist() == [True, False]
    assert boxes.tolist() == [[-2, 6, 4, 9], [0, 0, 0, 0]]
    mask = np.zeros((2, 16), bool)
    mask[0, 1] = True
    assert keypoint_boxes(kps, mask)[0][0].tolist() == [4, 6, 4, 6]
    assert keypoint_box(kps[0]) == (-2.0, 6.0, 4.0, 9.0) and keypoint_box(kps[1]) is None
