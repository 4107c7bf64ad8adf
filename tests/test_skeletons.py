"""Skeletons as data: the built-ins match the real COCO-format files, map onto MPII, travel in tables."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.artifacts.annotations import REQUIRED as ANNOTATIONS_REQUIRED
from pipeline.artifacts.annotations import read_file as read_annotations
from pipeline.artifacts.annotations import to_table as annotations_to_table
from pipeline.artifacts.annotations import write as write_annotations
from pipeline.errors import PipelineError
from pipeline.records import ImageAnnotation, Person
from pipeline.skeletons import MPII, MPII_ROLES, SKELETONS, skeleton_for


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        ("coco/test_coco.json", "coco-17"),
        ("crowdpose/test_crowdpose.json", "crowdpose-14"),
        ("ap10k/test_ap10k.json", "ap10k-17"),
    ],
)
def test_real_categories_match_a_builtin(shared_data, file, expected):
    cat = json.loads((shared_data / "coco_format" / file).read_text())["categories"][0]
    sk = skeleton_for(cat["keypoints"], cat["skeleton"])
    assert sk.name == expected
    assert sk.num_joints == len(cat["keypoints"])


def test_every_builtin_is_consistent():
    for sk in SKELETONS.values():
        n = sk.num_joints
        assert all(0 <= a < n and 0 <= b < n for a, b in sk.edges)
        assert all(0 <= j < n for part in sk.parts.values() for j in part)
        for left, right in sk.flip_pairs:
            assert sk.joints[left].replace("left", "right", 1) == sk.joints[right]
        if sk.human:
            assert len(sk.mpii) == len(MPII_ROLES)
            # the twelve limb joints every human skeleton shares with MPII
            limb_roles = [
                r for r in MPII_ROLES if r.split()[-1] in {"ankle", "knee", "hip", "wrist", "elbow"}
            ]
            assert all(sk.joints[sk.mpii[MPII_ROLES.index(r)]] == r for r in limb_roles)


def test_coco_to_mpii_view_keeps_the_shared_joints_and_nothing_else():
    coco = SKELETONS["coco-17"]
    kps = np.zeros((17, 3), np.float32)
    kps[:, 0] = np.arange(17)
    kps[:, 2] = 2
    view = coco.to_mpii(kps)
    assert view.shape == (16, 3)
    for i, role in enumerate(MPII_ROLES):
        if role in coco.joints:
            assert view[i, 0] == coco.joints.index(role) and view[i, 2] == 2
        else:  # pelvis, thorax, upper neck, head top
            assert view[i, 2] == 0 and np.isnan(view[i, 0])
    assert SKELETONS["ap10k-17"].to_mpii(np.zeros((17, 3))) is None
    crowd = SKELETONS["crowdpose-14"]
    assert crowd.mpii[MPII_ROLES.index("head top")] == crowd.joints.index("head")


def test_custom_skeleton_travels_with_the_table(tmp_path):
    sk = skeleton_for(["beak", "left_wing", "right_wing", "tail"], [[1, 2], [1, 3], [1, 4]])
    assert sk.name.startswith("custom-") and sk.edges == ((0, 1), (0, 2), (0, 3))
    assert sk.flip_pairs == ((1, 2),) and not sk.human
    kps = np.array([[1, 2, 2], [3, 4, 2], [5, 6, 1], [np.nan, np.nan, 0]], np.float32)
    person = Person(keypoints=kps, label="sparrow", source_box=(0, 0, 9, 9), segmentation="[[0,0,9,0,9,9]]")
    bird = ImageAnnotation(
        image="b.jpg", people=[person], skeleton=sk, width=10, height=12, captions=("a bird",)
    )
    human = ImageAnnotation(image="m.jpg", people=[Person()])
    write_annotations(tmp_path / "a.parquet", [bird, human])
    back = read_annotations(tmp_path / "a.parquet")
    assert back[0].skeleton == sk and back[1].skeleton == MPII
    p = back[0].people[0]
    assert np.array_equal(p.keypoints, kps, equal_nan=True)
    assert (p.label, p.source_box, p.segmentation, p.crowd) == (
        "sparrow",
        (0, 0, 9, 9),
        "[[0,0,9,0,9,9]]",
        False,
    )
    assert (back[0].width, back[0].height, back[0].captions) == (10, 12, ("a bird",))
    assert back[1].people[0].keypoints.shape == (16, 3)


def test_wrong_keypoint_count_is_refused():
    with pytest.raises(PipelineError, match="coco-17 skeleton has 17 joints"):
        annotations_to_table(
            [ImageAnnotation(image="x.jpg", people=[Person()], skeleton=SKELETONS["coco-17"])]
        )


def test_a_table_from_before_skeletons_reads_as_mpii(tmp_path):
    table = annotations_to_table([ImageAnnotation(image="a.jpg", people=[Person()], activity="run")])
    old_person = pa.struct([f for f in table.schema.field("people").type.value_type][:5])
    old = table.select(list(ANNOTATIONS_REQUIRED)).replace_schema_metadata(None)
    old = old.set_column(7, "people", old.column("people").cast(pa.list_(old_person)))
    pq.write_table(old, tmp_path / "old.parquet")
    (row,) = read_annotations(tmp_path / "old.parquet")
    assert row.skeleton == MPII and row.activity == "run" and row.people[0].label is None
