"""annotate: keypoints from a pose model for a folder of images, on the real COCO and MPII images in shared/.

BlazePose (mediapipe, the annotate extra) runs offline and is measured against the real COCO ground truth;
Keypoint R-CNN runs end to end with random weights (its real ones are a download); a raw folder goes through
annotate -> describe -> build-dataset -> train in one test. Tests that need mediapipe skip without it.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from pycocotools import mask as mask_utils

from pipeline.annotate.prediction import COCO17, Prediction, to_person
from pipeline.artifacts.annotations import PREDICTIONS_FILE, SKIPPED_FILE
from pipeline.artifacts.annotations import read_file as read_annotations
from pipeline.artifacts.annotations import write as write_annotations
from pipeline.records import ImageAnnotation
from pipeline.store import file_sha256

needs_mediapipe = pytest.mark.skipif(
    importlib.util.find_spec("mediapipe") is None,
    reason="mediapipe (the annotate extra) is not installed: pip install -e '.[dev,annotate]'",
)

# BlazePose (mediapipe 0.10.14, full landmark model) on the 4 real COCO val2017 images of shared/, against
# their ground truth (12 people with keypoints), measured with `focus-pipeline annotate --images
# ../shared/data/coco_format/coco --ground-truth .../test_coco.json` (docs/annotate.md). The OKS of the four
# people it finds are 0.91, 0.84, 0.67 and 0.53; one person is worth ~0.08 AP here, so 0.03 lets an OKS cross
# a few of COCOeval's ten thresholds (another CPU's float rounding), not a person be found or lost.
BLAZEPOSE_COCO = {"ap": 0.1792, "ap50": 0.3366, "found": 4, "missed": 8, "false_positives": 0}
AP_TOLERANCE = 0.03


def _line(result) -> str:
    """The error of a failed command: one line, the last (INFO log lines may come before it)."""
    lines = result.output.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert result.exit_code != 0 and errors == lines[-1:], result.output
    return errors[0]


def _copy_folder(dst: Path, *sources: Path) -> Path:
    """A folder of copies of real images (sub-folder per source), as a user's unannotated collection."""
    for src in sources:
        sub = dst / src.parent.name
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, sub / src.name)
    return dst


def test_a_prediction_becomes_a_person_with_unknown_joints_under_the_threshold():
    scores = np.linspace(0, 1, 17, dtype=np.float32)
    xy = np.arange(34, dtype=np.float32).reshape(17, 2)
    pred = Prediction(xy, scores, (1.0, 2.0, 30.0, 40.0), 0.9, '{"size":[4,4],"counts":"04"}')
    person = to_person(pred, min_keypoint_score=0.5)
    keep = scores >= 0.5
    assert person.keypoints.shape == (17, 3) and person.num_known == keep.sum() == 9  # 0.5 itself is kept
    np.testing.assert_array_equal(person.keypoints[keep, :2], xy[keep])
    assert np.isnan(person.keypoints[~keep, :2]).all() and (person.keypoints[~keep, 2] == 0).all()
    assert (person.keypoints[keep, 2] == 2).all()
    np.testing.assert_array_equal(person.keypoint_scores, scores)  # every joint's score is kept
    assert person.score == pytest.approx(0.9) and person.source_box == (1.0, 2.0, 30.0, 40.0)
    assert person.label == "person" and person.segmentation == pred.segmentation
    assert Prediction.from_json(json.loads(json.dumps(pred.to_json()))).to_json() == pred.to_json()


def test_scores_round_trip_through_the_annotations_table(tmp_path):
    pred = Prediction(np.ones((17, 2), np.float32), np.full(17, 0.75, np.float32), (0, 0, 5, 5), 0.625)
    ann = ImageAnnotation("a.jpg", people=[to_person(pred, 0.5)], skeleton=COCO17, width=8, height=8)
    write_annotations(tmp_path / "a.parquet", [ann])
    (back,) = read_annotations(tmp_path / "a.parquet")
    assert back.people[0].score == pytest.approx(0.625)
    np.testing.assert_allclose(back.people[0].keypoint_scores, np.full(17, 0.75))
    # tables written before the fields existed read as None
    table = pq.read_table(tmp_path / "a.parquet")
    people = table.column("people").combine_chunks()
    structs = people.values
    kept = [f.name for f in structs.type if f.name not in ("score", "keypoint_scores")]
    older = pa.StructArray.from_arrays([structs.field(n) for n in kept], names=kept)
    old_people = pa.ListArray.from_arrays(people.offsets, older)
    old = table.set_column(table.schema.get_field_index("people"), "people", old_people)
    pq.write_table(old, tmp_path / "old.parquet")
    (back,) = read_annotations(tmp_path / "old.parquet")
    assert back.people[0].score is None and back.people[0].keypoint_scores is None


@needs_mediapipe
def test_blazepose_on_the_real_coco_images_scores_what_was_measured(cli, store, shared_data):
    coco = shared_data / "coco_format" / "coco"
    result = cli(
        "annotate", "--images", coco, "--name", "coco", "--ground-truth", coco / "test_coco.json",
        "--workers", "0",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = store.meta("annotations", "coco")
    acc = meta["counts"]["accuracy"]
    assert acc["images"] == 4 and acc["people"] == 12 and acc["predictions"] == 4
    assert acc["ap"] == pytest.approx(BLAZEPOSE_COCO["ap"], abs=AP_TOLERANCE)
    assert acc["ap50"] == pytest.approx(BLAZEPOSE_COCO["ap50"], abs=2 * AP_TOLERANCE)
    assert {k: acc[k] for k in ("found", "missed", "false_positives")} == {
        k: BLAZEPOSE_COCO[k] for k in ("found", "missed", "false_positives")
    }
    assert "AP 0.1" in result.output and "found 4, missed 8" in result.output
    assert meta["stage"] == "annotate" and meta["model"]["version"] == "0.10.14"
    assert meta["model"]["landmark_model"] == "pose_landmark_full"
    # what convert writes: COCO-17 people with box, mask, detection and joint scores, readable by every stage
    rows = read_annotations(store.path("annotations", "coco") / "annotations.parquet")
    assert sorted(r.image for r in rows) == sorted(p.name for p in coco.glob("*.jpg"))
    for row in rows:
        assert row.skeleton.name == "coco-17" and row.split == "train" and len(row.people) == 1
        person = row.people[0]
        assert person.label == "person" and person.score >= 0.5 and person.keypoint_scores.shape == (17,)
        x1, y1, x2, y2 = person.source_box
        assert 0 <= x1 < x2 <= row.width and 0 <= y1 < y2 <= row.height
        mask = mask_utils.decode(json.loads(person.segmentation))
        assert mask.shape == (row.height, row.width) and mask.any()
        known = person.keypoints[:, 2] > 0
        assert known.sum() >= 10 and (person.keypoint_scores[known] >= 0.5).all()
    lines = (store.path("annotations", "coco") / PREDICTIONS_FILE).read_text().splitlines()
    assert len(lines) == 4 and {json.loads(ln)["sha256"] for ln in lines} == {
        file_sha256(p) for p in coco.glob("*.jpg")
    }


@needs_mediapipe
def test_a_stopped_run_resumes_and_other_thresholds_cost_no_model_call(store, shared_data, tmp_path):
    from pipeline.annotate.stage import AnnotateConfig, annotate

    mpii = sorted((shared_data / "mpii" / "mmpose_tests").glob("*.jpg"))
    folder = _copy_folder(tmp_path / "photos", *mpii[:3])
    first = annotate(AnnotateConfig(images=folder, name="a", workers=0), store)
    assert first["predicted_now"] == 3 and first["images"] == 3
    done = (store.path("annotations", "a") / PREDICTIONS_FILE).read_text().splitlines()
    # A run of "b" that stopped after two images, in the middle of writing the third line.
    staging = store.staging_dir("annotations", "b")
    staging.mkdir(parents=True)
    (staging / PREDICTIONS_FILE).write_text(done[0] + "\n" + done[1] + "\n" + done[2][:40])
    resumed = annotate(AnnotateConfig(images=folder, name="b", workers=0), store)
    assert (resumed["from_journal"], resumed["predicted_now"]) == (2, 1)
    same = (store.path("annotations", "b") / PREDICTIONS_FILE).read_text().splitlines()
    assert same == done  # the model gives what it gave before, and the cut line is gone
    # a re-run of the same name with other thresholds: no model call; --overwrite starts over
    strict = annotate(AnnotateConfig(images=folder, name="b", min_keypoint_score=0.9, workers=0), store)
    assert strict["predicted_now"] == 0 and strict["keypoints"] < resumed["keypoints"]
    assert store.meta("annotations", "b")["config"]["min_keypoint_score"] == 0.9
    again = annotate(AnnotateConfig(images=folder, name="b", overwrite=True, workers=0), store)
    assert again["predicted_now"] == 3


@needs_mediapipe
def test_images_without_people_and_unreadable_files_are_counted_and_listed(cli, store, shared_data, tmp_path):
    from PIL import Image

    folder = _copy_folder(tmp_path / "photos", shared_data / "coco_format" / "coco" / "000000000785.jpg")
    Image.new("RGB", (320, 240), (128, 128, 128)).save(folder / "empty.png")
    (folder / "broken.jpg").write_bytes((folder / "coco" / "000000000785.jpg").read_bytes()[:500])
    (folder / "notes.txt").write_text("not an image")
    (tmp_path / "elsewhere.jpg").write_bytes((folder / "coco" / "000000000785.jpg").read_bytes())
    (folder / "outside.jpg").symlink_to(tmp_path / "elsewhere.jpg")  # refused, as in describe and build
    result = cli("annotate", "--images", folder, "--name", "mixed", "--workers", "0")
    assert result.exit_code == 0, result.output
    counts = store.meta("annotations", "mixed")["counts"]
    assert counts["image_files"] == 4 and counts["images"] == 1
    assert counts["dropped"] == {"corrupt_image": 1, "image_without_people": 1, "link_outside_images": 1}
    assert "dropped: corrupt_image=1, image_without_people=1, link_outside_images=1" in result.output
    skipped = [json.loads(ln) for ln in (store.path("annotations", "mixed") / SKIPPED_FILE).open()]
    assert {(s["image"], s["reason"]) for s in skipped} == {
        ("broken.jpg", "corrupt_image"), ("empty.png", "image_without_people"),
        ("outside.jpg", "link_outside_images"),
    }  # fmt: skip
    # nobody in any image: an error, nothing published
    only_empty = tmp_path / "empty"
    only_empty.mkdir()
    shutil.copyfile(folder / "empty.png", only_empty / "empty.png")
    line = _line(cli("annotate", "--images", only_empty, "--name", "nobody", "--workers", "0"))
    assert "no person found in its 1 images" in line and not store.exists("annotations", "nobody")


def test_bad_input_is_one_line_and_writes_nothing(cli, store, shared_data, tmp_path):
    coco = shared_data / "coco_format" / "coco"
    empty = tmp_path / "empty"
    empty.mkdir()
    weights = tmp_path / "w.pth"
    torch.save({"w": torch.zeros(1)}, weights)
    crowdpose = shared_data / "coco_format" / "crowdpose" / "test_crowdpose.json"
    cases = {
        ("--images", tmp_path / "nope", "--name", "x"): "not a folder",
        ("--images", empty, "--name", "x"): "no image files",
        ("--images", coco, "--name", "x", "--model", "openpose"): "--model 'openpose': one of blazepose",
        ("--images", coco, "--name", "x", "--weights", weights): "--weights: blazepose runs the models",
        ("--images", coco, "--name", "x", "--input-size", "320"): "--input-size: blazepose fixes it",
        ("--images", coco, "--name", "x", "--model", "keypointrcnn", "--max-people", "0"): (
            "--max-people 0: must be at least 1"
        ),
        ("--images", coco, "--name", "bad name"): "invalid artifact name",
        ("--images", coco, "--name", "x", "--device", "cuda"): "--model blazepose runs on the CPU",
        ("--images", coco, "--name", "x", "--model", "keypointrcnn", "--device", "bogus"): (
            "--device 'bogus': not a torch device"
        ),
        ("--images", coco, "--name", "x", "--split", "dev"): "--split must be one of",
        ("--images", coco, "--name", "x", "--model", "keypointrcnn", "--weights", tmp_path / "no.pth"): (
            "no such file"
        ),
        # the ground truth is checked before any model runs (CrowdPose has 14 joints)
        ("--images", coco, "--name", "x", "--model", "keypointrcnn", "--weights", weights, "--ground-truth",
         crowdpose): "joints are not COCO-17's",
    }  # fmt: skip
    for args, message in cases.items():
        assert message in _line(cli("annotate", *args)), args
    assert store.list("annotations") == []


@pytest.mark.skipif(importlib.util.find_spec("mediapipe") is not None, reason="mediapipe is installed")
def test_without_the_extra_blazepose_names_it(cli, shared_data):
    line = _line(cli("annotate", "--images", shared_data / "coco_format" / "coco", "--name", "x"))
    assert "pip install 'focus-pipeline[annotate]'" in line


@pytest.mark.slow
def test_keypoint_rcnn_runs_end_to_end_with_random_weights(cli, store, shared_data, tmp_path):
    from torchvision.models.detection import keypointrcnn_resnet50_fpn

    torch.manual_seed(0)
    weights = tmp_path / "random.pth"
    torch.save(keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict(), weights)
    image = shared_data / "coco_format" / "coco" / "000000040083.jpg"
    folder = _copy_folder(tmp_path / "photos", image)
    # random weights score people and joints anywhere: keep them all to check every one's shape
    # (at 320 px instead of 800 and 3 people at most instead of 20, for the suite's time)
    args = ["--images", folder, "--model", "keypointrcnn", "--weights", weights, "--device", "cpu",
            "--input-size", "320", "--max-people", "3", "--min-score", "0",
            "--min-keypoint-score", "-1e9"]  # fmt: skip
    result = cli("annotate", *args, "--name", "rcnn")
    assert result.exit_code == 0, result.output
    meta = store.meta("annotations", "rcnn")
    assert meta["model"]["weights"] == {"sha256": file_sha256(weights)}
    assert meta["config"]["weights"] == str(weights.resolve())
    assert meta["model"]["package"] == "torchvision"
    assert (meta["model"]["input_size"], meta["model"]["max_people"]) == (320, 3)
    (row,) = read_annotations(store.path("annotations", "rcnn") / "annotations.parquet")
    assert row.image == "coco/000000040083.jpg" and (row.width, row.height) == (500, 333)
    assert 1 <= len(row.people) <= 3 and row.skeleton.name == "coco-17"
    for p in row.people:
        assert p.keypoints.shape == (17, 3) and (p.keypoints[:, 2] == 2).all()
        assert p.keypoint_scores.shape == (17,) and 0 <= p.score <= 1 and p.segmentation is None
        x1, y1, x2, y2 = p.source_box
        assert 0 <= x1 <= x2 <= row.width and 0 <= y1 <= y2 <= row.height
        inside = (p.keypoints[:, 0] >= x1 - 1) & (p.keypoints[:, 0] <= x2 + 1)
        assert inside.all()  # Keypoint R-CNN places each joint inside its person's box
    # weights that are not its state dict, or not loadable without running pickled code: one line, nothing
    torch.save({"w": torch.zeros(1)}, other := tmp_path / "other.pth")
    assert "not keypointrcnn_resnet50_fpn's state dict" in _line(
        cli("annotate", *args[:4], "--weights", other, "--name", "other")
    )
    torch.save({"roi_heads.keypoint_predictor.kps_score_lowres.bias": torch.zeros(14)}, other)  # 14 joints
    assert "size mismatch for roi_heads.keypoint_predictor.kps_score_lowres.bias" in _line(
        cli("annotate", *args[:4], "--weights", other, "--name", "other")
    )
    (code := tmp_path / "code.pth").write_bytes(pickle.dumps(Path("x"), protocol=2))
    assert "not a state dict that loads with weights_only=True" in _line(
        cli("annotate", *args[:4], "--weights", code, "--name", "code")
    )
    assert [a["name"] for a in store.list("annotations")] == ["rcnn"]


@pytest.mark.slow
@needs_mediapipe
def test_a_raw_folder_goes_from_annotate_to_training(cli, store, shared_data, tmp_path):
    """The real COCO and MPII images, their ground truth unused: annotate -> describe (rules) ->
    build-dataset (keypoint and mask ROI) -> FocusCLIP, 3 steps; analyze checks the descriptions."""
    images = sorted((shared_data / "coco_format" / "coco").glob("*.jpg"))
    images += sorted((shared_data / "mpii" / "mmpose_tests").glob("*.jpg"))
    folder = _copy_folder(tmp_path / "photos", *images)
    steps = [
        ("annotate", "--images", folder, "--name", "photos"),
        ("describe", "--annotations", "photos", "--backend", "rules"),
        ("build-dataset", "--annotations", "photos", "--descriptions", "photos", "--images", folder,
         "--workers", "0"),
        ("build-dataset", "--annotations", "photos", "--descriptions", "photos", "--images", folder,
         "--workers", "0", "--roi", "mask", "--name", "photos-mask"),
        ("analyze", "--descriptions", "photos", "--annotations", "photos"),
        ("train", "--dataset", "photos", "--model-type", "focusclip", "--arch", "focus-tiny", "--image-size",
         "32", "--batch-size", "2", "--max-steps", "3", "--device", "cpu", "--threads", "2"),
    ]  # fmt: skip
    for args in steps:
        result = cli(*args)
        assert result.exit_code == 0, (args, result.output)
    assert store.meta("annotations", "photos")["counts"]["images"] == 9
    assert store.meta("descriptions", "photos")["counts"]["ok"] == 9  # the gate takes every one
    dataset = store.meta("datasets", "photos")["counts"]
    assert dataset["images"] == 9 and dataset["roi"]["instances"]["keypoints"] == 9
    assert store.meta("datasets", "photos-mask")["counts"]["roi"]["instances"]["mask"] == 9
    assert store.meta("reports", "photos")["counts"]["checked_descriptions"] == 9
    report = json.loads((store.path("reports", "photos") / "report.json").read_text())
    faithful = report["per_source"]["rules"]["faithfulness"]
    assert faithful["claims"] > 0 and faithful["agreement"] == 1.0  # the rules describe the predicted poses
    run = store.meta("runs", "photos-focusclip")
    assert run["counts"] == {"steps": 3, "images": 9} and np.isfinite(run["summary"]["final_loss"])
    assert run["heatmap_source"] == "keypoints"
