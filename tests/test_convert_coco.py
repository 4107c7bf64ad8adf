"""convert on the real COCO-format files in ../shared/data/coco_format (COCO, CrowdPose, AP-10K) and MPII-TRB:
exact counts, the COCO conventions (v = 0 -> unknown, bbox -> x1 y1 x2 y2, masks kept as text), crowd regions
and keypoint-less instances as the user chooses, captions joined on the image id, bad input refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.artifacts.annotations import read_file as read_annotations
from pipeline.convert import ConvertConfig, convert
from pipeline.errors import PipelineError
from pipeline.records import MISSING, OCCLUDED, VISIBLE


@pytest.fixture(scope="module")
def coco_format(shared_data: Path) -> Path:
    return shared_data / "coco_format"


def _rows(store, name):
    return read_annotations(store.path("annotations", name) / "annotations.parquet")


# Counted by hand from the JSON files (annotations whose keypoints have some v > 0, their v > 0 and v = 1
# entries) and cross-checked by test_counts_match_the_json below.
EXPECTED = {
    "coco/test_coco.json": dict(
        skeleton="coco-17", images=4, people=12, keypoints=181, occluded=17, without_kps=2, masks=12,
        labels={"person": 12},
    ),
    "crowdpose/test_crowdpose.json": dict(
        skeleton="crowdpose-14", images=2, people=4, keypoints=47, occluded=17, without_kps=1, masks=0,
        labels={"person": 4},
    ),
    "ap10k/test_ap10k.json": dict(
        skeleton="ap10k-17", images=2, people=2, keypoints=32, occluded=0, without_kps=0, masks=0,
        labels={"jaguar": 1, "antelope": 1},
    ),
}  # fmt: skip


@pytest.mark.parametrize("file", list(EXPECTED))
def test_real_files_convert_with_exact_counts(cli, store, coco_format, file):
    want = EXPECTED[file]
    result = cli("convert", coco_format / file, "--name", "c", "--split", "train", "--json")
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    assert counts["images"] == want["images"] and counts["people"] == want["people"]
    assert counts["keypoints"] == want["keypoints"] and counts["occluded_keypoints"] == want["occluded"]
    assert counts["dropped"] == (
        {"person_without_keypoints": want["without_kps"]} if want["without_kps"] else {}
    )
    assert counts["skeletons"] == {want["skeleton"]: want["images"]}
    assert counts["labels"] == want["labels"]
    assert counts["instances"] == {
        "with_keypoints": want["people"], "with_box": want["people"], "with_mask": want["masks"], "crowd": 0,
    }  # fmt: skip
    assert counts["splits"] == {"train": want["images"]}
    assert counts["sources"][0]["format"] == "coco"
    assert store.meta("annotations", "c")["counts"]["keypoints"] == want["keypoints"]
    rows = _rows(store, "c")
    assert {r.skeleton.name for r in rows} == {want["skeleton"]}
    assert sum(len(r.people) for r in rows) == want["people"]


@pytest.mark.parametrize("file", list(EXPECTED))
def test_counts_match_the_json(coco_format, file):
    raw = json.loads((coco_format / file).read_text())
    with_kps = [a for a in raw["annotations"] if any(v > 0 for v in a["keypoints"][2::3])]
    want = EXPECTED[file]
    assert len(with_kps) == want["people"]
    assert len(raw["annotations"]) - len(with_kps) == want["without_kps"]
    assert sum(v > 0 for a in with_kps for v in a["keypoints"][2::3]) == want["keypoints"]
    assert sum(v == 1 for a in with_kps for v in a["keypoints"][2::3]) == want["occluded"]
    assert len({a["image_id"] for a in with_kps}) == want["images"]


def test_coco_conventions(store, coco_format):
    path = coco_format / "coco" / "test_coco.json"
    convert(ConvertConfig(sources=[path], name="coco", keep_people_without_keypoints=True), store)
    raw = json.loads(path.read_text())
    rows = {r.image: r for r in _rows(store, "coco")}
    images = {i["id"]: i for i in raw["images"]}
    assert len(rows) == 4 and sum(len(r.people) for r in rows.values()) == 14  # the 2 box-only ones kept
    seen = {}
    for a in raw["annotations"]:  # annotations come in image order, people in file order within an image
        row = rows[images[a["image_id"]]["file_name"]]
        person = row.people[seen.setdefault(row.image, 0)]
        seen[row.image] += 1
        assert (row.width, row.height) == (images[a["image_id"]]["width"], images[a["image_id"]]["height"])
        assert row.split == "unknown" and row.skeleton.name == "coco-17" and person.label == "person"
        x, y, w, h = a["bbox"]
        assert person.source_box == pytest.approx((x, y, x + w, y + h), abs=1e-4)
        assert json.loads(person.segmentation) == a["segmentation"]
        k = np.array(a["keypoints"], np.float32).reshape(17, 3)
        assert (person.keypoints[:, 2] == k[:, 2]).all()  # v: 0 / 1 occluded / 2 visible, as COCO
        unlabelled = k[:, 2] == MISSING
        assert np.isnan(person.keypoints[unlabelled, :2]).all()  # COCO's 0, 0, 0 is no position
        np.testing.assert_array_equal(person.keypoints[~unlabelled, :2], k[~unlabelled, :2])
    assert {OCCLUDED, VISIBLE} <= {int(v) for r in rows.values() for p in r.people for v in p.keypoints[:, 2]}


def _crowd_file(coco_format: Path, tmp_path: Path) -> Path:
    """The real COCO file with one crowd region (uncompressed RLE, as COCO writes crowds) and one instance's
    polygons replaced by a compressed RLE."""
    from pycocotools import mask as mask_utils

    raw = json.loads((coco_format / "coco" / "test_coco.json").read_text())
    image = raw["images"][0]
    h, w = image["height"], image["width"]
    region = np.zeros((h, w), np.uint8)
    region[20:60, 30:90] = 1
    flat = region.flatten(order="F")  # COCO's RLE runs are column-major, starting with a run of 0s
    change = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    crowd = {
        "id": 900001, "image_id": image["id"], "category_id": 1, "iscrowd": 1, "num_keypoints": 0,
        "keypoints": [0] * 51, "bbox": [30, 20, 60, 40], "area": 2400.0,
        "segmentation": {"size": [h, w], "counts": runs},
    }  # fmt: skip
    raw["annotations"].append(crowd)
    compressed = mask_utils.encode(np.asfortranarray(region))
    raw["annotations"][0]["segmentation"] = {"size": [h, w], "counts": compressed["counts"].decode()}
    out = tmp_path / "crowd.json"
    out.write_text(json.dumps(raw))
    return out


def test_crowd_regions_are_skipped_or_kept(cli, store, coco_format, tmp_path):
    path = _crowd_file(coco_format, tmp_path)
    default = json.loads(cli("convert", path, "--name", "skip", "--json").stdout)
    assert default["people"] == 12
    assert default["dropped"] == {"person_without_keypoints": 2, "crowd_region": 1}
    kept = json.loads(cli("convert", path, "--name", "keep", "--keep-crowd", "--json").stdout)
    assert kept["people"] == 13 and kept["dropped"] == {"person_without_keypoints": 2}
    assert kept["instances"]["crowd"] == 1 and kept["instances"]["with_keypoints"] == 12
    crowd = [p for r in _rows(store, "keep") for p in r.people if p.crowd]
    assert len(crowd) == 1 and crowd[0].num_known == 0 and crowd[0].source_box == (30, 20, 90, 60)
    runs = json.loads(crowd[0].segmentation)["counts"]
    assert runs[:2] == [
        30 * 425 + 20,
        40,
    ]  # column-major: 30 empty columns and 20 rows, then 40 of the region
    everything = json.loads(
        cli(
            "convert", path, "--name", "all", "--keep-crowd", "--keep-people-without-keypoints", "--json"
        ).stdout
    )
    assert everything["people"] == 15 and everything["dropped"] == {}
    rle = next(p for r in _rows(store, "all") for p in r.people if p.segmentation.startswith('{"size"'))
    assert isinstance(json.loads(rle.segmentation)["counts"], str | list)


def _captions(tmp_path: Path) -> Path:
    """The documented COCO captions format, for two of the four real images plus one image not in them."""
    texts = {
        785: ["A woman skiing down a snowy slope. ", "A skier in a red jacket on the snow.\n"],
        40083: ["Two people play frisbee on a lawn.", "People in a park.", "A frisbee game", "   "],
        999999: ["An image the keypoint file does not have."],
    }
    annotations = [
        {"image_id": image_id, "id": 100 * image_id + i, "caption": text}
        for image_id, captions in texts.items()
        for i, text in enumerate(captions)
    ]
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 640, "height": 480} for i in texts]
    path = tmp_path / "captions.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


def test_captions_join_on_the_image_id(cli, store, coco_format, tmp_path):
    coco = coco_format / "coco" / "test_coco.json"
    result = cli(
        "convert", coco, "--captions", _captions(tmp_path), "--name", "cap", "--split", "val", "--json"
    )
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)["captions"]
    assert counts["images_with_captions"] == 2 and counts["captions"] == 5
    assert counts["captions_for_images_not_in_instances"] == 1 and counts["images_not_in_instances"] == 1
    assert counts["empty_captions_skipped"] == 1 and counts["captions_of_dropped_images"] == 0
    rows = {r.image: r for r in _rows(store, "cap")}
    assert rows["000000000785.jpg"].captions == (
        "A woman skiing down a snowy slope.",
        "A skier in a red jacket on the snow.",
    )
    assert len(rows["000000040083.jpg"].captions) == 3 and rows["000000196141.jpg"].captions == ()
    files = store.meta("annotations", "cap")["source_files"]
    assert [f["format"] for f in files] == ["coco", "coco-captions"]
    plain = cli("convert", coco, "--name", "plain", "--split", "val")
    assert "captions:" not in plain.stdout and all(r.captions == () for r in _rows(store, "plain"))


def test_mpii_trb_converts_as_a_custom_skeleton(store, shared_data):
    """A COCO-format file whose joints match no built-in (MPII-TRB's 40): its own skeleton, center, scale."""
    path = shared_data / "mpii" / "mmpose_tests" / "test_mpii_trb.json"
    counts = convert(ConvertConfig(sources=[path], name="trb"), store)
    raw = json.loads(path.read_text())
    assert counts["people"] == len(raw["annotations"]) == 5
    rows = _rows(store, "trb")
    sk = rows[0].skeleton
    assert sk.name.startswith("custom-") and sk.num_joints == 40 and not sk.human
    assert sk.joints[:2] == ("left shoulder", "right shoulder")
    first = next(a for a in raw["annotations"] if a["image_id"] == raw["images"][0]["id"])
    person = next(r for r in rows if r.image == raw["images"][0]["file_name"]).people[0]
    assert person.center == tuple(first["center"]) and person.scale == pytest.approx(first["scale"])


def _edit(coco_format: Path, tmp_path: Path, change) -> Path:
    raw = json.loads((coco_format / "coco" / "test_coco.json").read_text())
    change(raw)
    out = tmp_path / "bad.json"
    out.write_text(json.dumps(raw))
    return out


def _ann(i: int, **fields):
    def change(raw):
        raw["annotations"][i].update(fields)

    return change


BAD = [
    (_ann(1, keypoints=[1, 2, 2] * 16), r"annotation 1 \(id 198196\): keypoints has 48 values, expected 51"),
    (_ann(2, keypoints=[1, 2, 3] * 17), r"annotation 2 \(id 230195\): nose has visibility 3, not 0, 1 or 2"),
    (_ann(0, image_id=12), r"annotation 0 \(id 442619\): image_id 12 is not in images"),
    (_ann(0, category_id=7), r"annotation 0 \(id 442619\): category_id 7 is not in categories"),
    (_ann(3, bbox=[1, 2, -3, 4]), r"annotation 3 \(id 1202706\): bbox \[1, 2, -3, 4\] is not \[x, y, width"),
    (_ann(0, keypoints="oops"), r"annotation 0 \(id 442619\): keypoints is not a list of numbers"),
    (
        _ann(0, segmentation={"size": [10, 10], "counts": [100]}),
        r"annotation 0 \(id 442619\): RLE size \[10, 10\] is not the image's \[height, width\] \[425, 640\]",
    ),
    (
        _ann(0, segmentation={"size": [425, 640], "counts": [5, 6]}),
        r"annotation 0 \(id 442619\): uncompressed RLE counts are not non-negative runs summing to 425 x 640",
    ),
    (_ann(0, iscrowd="yes"), r"annotation 0 \(id 442619\): iscrowd is \"yes\", not 0 or 1"),
    (
        lambda raw: raw["categories"].append(dict(raw["categories"][0], id=2, name="robot", keypoints=["a"])),
        r"categories 'person' \(17 joints\) and 'robot' \(1 joints\) list different keypoints; split",
    ),
    (lambda raw: raw["categories"][0].pop("keypoints"), r"no category lists keypoint names"),
    (lambda raw: raw["images"][1].update(id=785), r"images\[1\] \(id 785\): the id is used by another image"),
    (lambda raw: raw["images"][1].update(file_name=None), r"images\[1\] \(id 40083\): file_name is null"),
    (lambda raw: raw.pop("annotations"), r"JSON object with keys .*expected a COCO-format file"),
]


@pytest.mark.parametrize(("change", "message"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_coco_input_is_refused_without_artifact(cli, store, coco_format, tmp_path, change, message):
    path = _edit(coco_format, tmp_path, change)
    result = cli("convert", path, "--name", "bad")
    assert result.exit_code != 0
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "bad.json: " in line and __import__("re").search(message, line), line
    assert not store.exists("annotations", "bad")


def test_bad_captions_and_mixed_sources_are_refused(store, coco_format, shared_data, tmp_path):
    coco = coco_format / "coco" / "test_coco.json"
    bad = tmp_path / "captions.json"
    bad.write_text(json.dumps({"images": [], "annotations": [{"image_id": 785, "id": 7, "caption": 5}]}))
    with pytest.raises(
        PipelineError, match=r"captions\.json: annotation 0 \(id 7\): caption is int, not text"
    ):
        convert(ConvertConfig(sources=[coco], name="x", captions=bad), store)
    mpii = shared_data / "mpii" / "mmpose_tests" / "test_mpii.json"
    with pytest.raises(
        PipelineError, match=r"--captions .*the source must be one COCO-format keypoints file"
    ):
        convert(ConvertConfig(sources=[mpii], name="x", captions=_captions(tmp_path)), store)
    with pytest.raises(
        PipelineError, match=r"test_coco\.json: a COCO-format file .* is converted on its own"
    ):
        convert(ConvertConfig(sources=[mpii, coco], name="x"), store)
    with pytest.raises(PipelineError, match=r"nope\.json: cannot read"):
        convert(ConvertConfig(sources=[coco], name="x", captions=tmp_path / "nope.json"), store)
    assert not store.exists("annotations", "x")
