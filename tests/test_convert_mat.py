"""The official-structure .mat: write_release_mat writes it (with the real file's quirks); read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from pipeline.errors import PipelineError
from pipeline.records import MISSING, OCCLUDED, VISIBLE, ImageAnnotation, Person, empty_keypoints
from pipeline.sources.formats import read_source, sniff_format
from pipeline.sources.mpii_mat_writer import MatQuirks, write_release_mat

LONG_NAME = (
    "truck driving, loading and unloading truck, tying down load, standing, walking and carrying heavy loads"
)


def _person(
    joints: dict[int, tuple[float, float, int]],
    *,
    center=(500.0, 300.5),
    scale=3.25,
    head_box=(10.0, 20.0, 60.0, 90.0),
) -> Person:
    kps = empty_keypoints()
    for j, (x, y, v) in joints.items():
        kps[j] = (x, y, v)
    return Person(keypoints=kps, center=center, scale=scale, head_box=head_box)


def _full(dx: float = 0.0, occluded: tuple[int, ...] = ()) -> dict[int, tuple[float, float, int]]:
    return {
        j: (100.0 + 10 * j + dx, 400.0 - 20 * j + 0.25, OCCLUDED if j in occluded else VISIBLE)
        for j in range(16)
    }


def sample_images() -> list[ImageAnnotation]:
    """Every uneven case of the real file: keypoint-less people, lone people/points, unlabelled images."""
    return [
        ImageAnnotation(
            "015601864.jpg",
            "train",
            "curling",
            "sports",
            1,
            [_person(_full(occluded=(2, 9, 10))), _person(_full(dx=300.0)), _person({}, head_box=None)],
        ),
        ImageAnnotation(
            "015599452.jpg", "train", LONG_NAME, "occupation", 12, [_person({8: (682.0, 256.0, VISIBLE)})]
        ),  # a lone person with a lone point
        ImageAnnotation(
            "000001163.jpg", "test", None, None, None, [Person(center=(600.0, 300.0), scale=4.0)]
        ),  # test image: no head box, no points
        ImageAnnotation("000003072.jpg", "train", None, None, None, []),  # no annorect at all
        ImageAnnotation(
            "000004812.jpg",
            "train",
            "bicycling, mountain",
            "bicycling",
            3,
            [_person(_full(occluded=tuple(range(16))), center=None, scale=None)],
        ),
    ]


def _assert_same(
    expected: list[ImageAnnotation], got: dict[str, ImageAnnotation], truncate: int | None
) -> None:
    assert list(got) == [a.image for a in expected]
    for a in expected:
        b = got[a.image]
        assert (b.split, b.category, b.activity_id) == (a.split, a.category, a.activity_id)
        want_activity = a.activity if (a.activity is None or truncate is None) else a.activity[:truncate]
        assert b.activity == want_activity
        assert len(b.people) == len(a.people)
        for p, q in zip(a.people, b.people, strict=True):
            np.testing.assert_allclose(q.keypoints, p.keypoints, rtol=0, atol=1e-4)
            assert (q.center, q.scale, q.head_box) == (p.center, p.scale, p.head_box)


@pytest.mark.parametrize(
    "quirks",
    [
        None,
        MatQuirks(visibility="text"),
        MatQuirks(visibility="mixed", empty_visibility_joints=(8, 9)),
        MatQuirks(keypointless_annopoints="no_points", integer_ids=True),
        MatQuirks.real_world(),
    ],
    ids=["clean", "text-visibility", "mixed-visibility", "no-points-int-ids", "real-world"],
)
def test_mat_round_trip_with_quirks(tmp_path: Path, quirks: MatQuirks | None) -> None:
    images = sample_images()
    path = write_release_mat(tmp_path / "release.mat", images, quirks=quirks)
    assert sniff_format(path) == "mat"
    src = read_source(path)
    assert src.format == "mat" and src.has_activity and src.has_occlusion and src.split_per_image
    _assert_same(images, src.images, quirks.truncate_activity if quirks else None)
    assert src.counts["person_without_annopoints"] == 2


def test_written_file_has_the_official_structure(tmp_path: Path) -> None:
    images = sample_images()
    path = write_release_mat(
        tmp_path / "release.mat",
        images,
        video_list=["aAOusnrSsHI", "nMcpEf1Dvhw"],
        vididx=[1, 2, None, None, 1],
        frame_sec=[10, 20, None, None, 5],
        quirks=MatQuirks.real_world(),
    )
    raw = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=False)
    release = raw["RELEASE"][0, 0]
    assert set(release._fieldnames) == {
        "annolist",
        "img_train",
        "version",
        "single_person",
        "act",
        "video_list",
    }
    assert release.annolist.shape == (1, 5) and release.img_train.shape == (1, 5)
    assert release.act.shape == (5, 1) and release.single_person.shape == (5, 1)
    assert release.img_train.ravel().tolist() == [1, 1, 0, 1, 1]
    first = release.annolist[0, 0]
    assert first.image[0, 0].name[0] == "015601864.jpg"
    rects = first.annorect
    assert rects.shape == (1, 3)
    assert set(rects[0, 0]._fieldnames) == {"x1", "y1", "x2", "y2", "annopoints", "scale", "objpos"}
    points = rects[0, 0].annopoints[0, 0].point
    assert points.shape == (1, 16)
    assert rects[0, 2].annopoints.size == 0  # the keypoint-less person: annopoints = []
    # The test image's rectangle has only scale and objpos, as in the real file.
    assert set(release.annolist[0, 2].annorect[0, 0]._fieldnames) == {"scale", "objpos"}
    assert release.annolist[0, 3].annorect.size == 0
    assert release.act[1, 0].act_name[0] == LONG_NAME[:100]
    assert int(release.act[2, 0].act_id[0, 0]) == -1 and release.act[2, 0].act_name.size == 0
    assert release.video_list[0, 1][0] == "nMcpEf1Dvhw"
    assert int(release.annolist[0, 1].vididx[0, 0]) == 2
    assert release.single_person[0, 0].ravel().tolist() == [1, 2]
    # The mixed encoding really stores text and empty flags.
    kinds = {
        type(p.is_visible[0]).__name__ if p.is_visible.size else "empty"
        for r in range(2)
        for p in rects[0, r].annopoints[0, 0].point.ravel()
    }
    assert {"str_", "empty"} & kinds


def test_missing_joints_are_absent_ids(tmp_path: Path) -> None:
    images = [ImageAnnotation("a.jpg", people=[_person({0: (1.0, 2.0, VISIBLE), 15: (3.0, 4.0, OCCLUDED)})])]
    src = read_source(write_release_mat(tmp_path / "a.mat", images))
    kps = src.images["a.jpg"].people[0].keypoints
    assert kps[0, 2] == VISIBLE and kps[15, 2] == OCCLUDED
    assert (kps[1:15, 2] == MISSING).all() and np.isnan(kps[1:15, :2]).all()


def test_mat_of_another_kind_is_refused(shared_data: Path) -> None:
    with pytest.raises(PipelineError, match=r"groups_v12\.mat: .*without the MPII 'RELEASE' struct.*groups"):
        read_source(shared_data / "mpii" / "official_eval" / "groups_v12.mat")


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_mat_is_refused(tmp_path: Path, compress: bool) -> None:
    path = write_release_mat(tmp_path / "full.mat", sample_images(), compress=compress)
    _assert_same(sample_images(), read_source(path).images, None)
    cut = tmp_path / "cut.mat"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(PipelineError, match=r"cut\.mat: unreadable \.mat file"):
        read_source(cut)


def test_convert_stage_on_a_written_release(store, tmp_path: Path) -> None:
    from pipeline.artifacts.annotations import read_file as read_annotations
    from pipeline.convert import ConvertConfig, convert

    path = write_release_mat(
        tmp_path / "mpii_human_pose_v1_u12_1.mat", sample_images(), quirks=MatQuirks.real_world()
    )
    counts = convert(ConvertConfig(sources=[path], name="mat"), store)
    # Kept: the images with keypoints; dropped: the keypoint-less people and the images left empty.
    assert counts["images"] == 3 and counts["people"] == 4
    assert counts["dropped"] == {
        "person_without_keypoints": 2,
        "image_without_people_with_keypoints": 1,
        "image_without_people": 1,
    }
    assert counts["splits"] == {"train": 3} and counts["images_with_activity"] == 3
    assert counts["occluded_keypoints"] == 3 + 16
    rows = {a.image: a for a in read_annotations(store.path("annotations", "mat") / "annotations.parquet")}
    assert rows["015599452.jpg"].activity == LONG_NAME[:100] and rows["015599452.jpg"].activity_id == 12
    assert rows["015601864.jpg"].people[0].head_box == (10.0, 20.0, 60.0, 90.0)
    kept_all = convert(
        ConvertConfig(
            sources=[path], name="all", keep_people_without_keypoints=True, keep_images_without_people=True
        ),
        store,
    )
    assert kept_all["images"] == 5 and kept_all["people"] == 6 and kept_all["dropped"] == {}
    assert kept_all["splits"] == {"train": 4, "test": 1}
