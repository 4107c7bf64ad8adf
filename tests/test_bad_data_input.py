"""Bad input on the data surfaces (issue 23): COCO geometry that crashed pycocotools, image files that aborted
whole runs (decompression bombs, non-images), image files of another size than the annotations record, links
out of --images, and convert's messages about JSON files it cannot read. Every case runs through the CLI; the
one that used to kill the process runs in a subprocess, so that a crash would show as a signal exit."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.artifacts.annotations import read_file as read_annotations
from pipeline.artifacts.annotations import write as write_annotations
from pipeline.bounds import rescale_factor, rle_string_counts, segmentation_problem
from pipeline.describe import DescribeConfig, describe

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from pipeline.cli import main; main()"]
COCO = "coco_format/coco"
MPII = "mpii/mmpose_tests"


def _bomb(path: Path) -> None:
    """A 20000 x 20000 PNG: 400 million pixels in ~50 kB (the issue's file, saved under a .jpg name)."""
    Image.new("1", (20000, 20000)).save(path, format="PNG")


def _coco_images(shared_data: Path, folder: Path) -> Path:
    folder.mkdir()
    for src in (shared_data / COCO).glob("*.jpg"):
        shutil.copyfile(src, folder / src.name)
    return folder


def _coco_json(shared_data: Path, tmp_path: Path, change=None, name: str = "coco.json") -> Path:
    raw = json.loads((shared_data / COCO / "test_coco.json").read_text())
    if change:
        change(raw)
    out = tmp_path / name
    out.write_text(json.dumps(raw))
    return out


def _one_line_error(result, *needles: str) -> str:
    line = result.output.strip()
    assert result.exit_code == 2 and "\n" not in line and "Traceback" not in line, result.output
    for needle in needles:
        assert needle in line, line
    return line


def _meta(store, kind: str, name: str) -> dict:
    return store.meta(kind, name)


def _rows(store, dataset: str) -> list[dict]:
    files = sorted((store.path("datasets", dataset) / "data").glob("*.parquet"))
    return [r for f in files for r in pq.read_table(f).to_pylist()]


# ---- item 1: coordinates far off the image never reach pycocotools -------------------------------------


def test_convert_skips_and_counts_instances_far_off_their_image(cli, store, shared_data, tmp_path):
    def change(raw):
        raw["annotations"][1]["segmentation"][0][0] = 1e9  # pycocotools' frPyObjects died on this
        raw["annotations"][2]["bbox"][2] = 1e308  # overflowed to inf in the heatmap (a RuntimeWarning)

    result = cli("convert", _coco_json(shared_data, tmp_path, change), "--name", "c", "--json")
    assert result.exit_code == 0, result.output
    dropped = json.loads(result.stdout)["dropped"]
    assert dropped["coco.json:person_polygon_out_of_range"] == 1
    assert dropped["coco.json:person_box_out_of_range"] == 1
    people = [
        p for a in read_annotations(store.path("annotations", "c") / "annotations.parquet") for p in a.people
    ]
    assert len(people) == 10  # 12 kept before, minus the two
    assert all(segmentation_problem(p.segmentation, (1000, 1000)) is None for p in people)


def _old_artifact(store, shared_data: Path) -> None:
    """annotations/old as convert wrote it before the bounds checks: one polygon point at 1e9, one box 1e7
    px wide; and descriptions/old by the rules describer."""
    from pipeline.convert import ConvertConfig, convert

    convert(ConvertConfig(sources=[shared_data / COCO / "test_coco.json"], name="good"), store)
    anns = read_annotations(store.path("annotations", "good") / "annotations.parquet")
    poly = json.loads(anns[0].people[0].segmentation)
    poly[0][0] = 1e9
    anns[0].people[0].segmentation = json.dumps(poly)
    x1, y1, _, y2 = anns[1].people[0].source_box
    anns[1].people[0].source_box = (x1, y1, 1e7, y2)
    with store.create("annotations", "old", stage="convert", config={}) as w:
        w.counts["images"] = write_annotations(w.dir / "annotations.parquet", anns)
    describe(DescribeConfig(annotations="old", backend="rules"), store)


def _limited_memory() -> None:
    """8 GB of address space (a build needs ~5 GB of it): a regression fails fast as SIGSEGV or MemoryError
    instead of eating the shared machine's memory, as the unchecked polygon did here."""
    resource.setrlimit(resource.RLIMIT_AS, (8 * 2**30, 8 * 2**30))


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["0", "2"])
def test_build_dataset_skips_old_instances_far_off_their_image_without_crashing(
    store, store_root, shared_data, tmp_path, workers
):
    """Before: exit 139 (SIGSEGV in pycocotools; killed here for memory), BrokenProcessPool with workers."""
    _old_artifact(store, shared_data)
    images = _coco_images(shared_data, tmp_path / "images")
    args = ["--store", str(store_root), "build-dataset", "--annotations", "old", "--descriptions", "old",
            "--images", str(images), "--roi", "mask", "--workers", workers, "--name", "d"]  # fmt: skip
    done = subprocess.run(
        [*CLI, *args], cwd=ROOT, env=os.environ | {"FOCUS_PROGRESS": "0"}, capture_output=True, text=True,
        timeout=240, preexec_fn=_limited_memory,
    )  # fmt: skip
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    counts = _meta(store, "datasets", "d")["counts"]
    assert counts["images"] == 4 and counts["skipped_images"] == {}
    assert counts["skipped_instances"] == {"polygon_out_of_range": 1, "box_out_of_range": 1}
    assert counts["roi"]["instances"]["mask"] == 10  # the other ten instances keep their masks
    skipped = [json.loads(line) for line in (store.path("datasets", "d") / "skipped.jsonl").open()]
    polygon = next(s for s in skipped if s["kind"] == "instance" and s["reason"] == "polygon_out_of_range")
    assert polygon["instance"] == 0 and "(1e+09, " in polygon["detail"]
    card = (store.path("datasets", "d") / "README.md").read_text()
    assert "| skipped: polygon_out_of_range | 1 |" in card and "| skipped: box_out_of_range | 1 |" in card
    assert not list((store_root / "datasets").rglob("*.lock"))  # no stale lock either


# ---- item 2: an image that cannot be decoded is its row's error, never the run's --------------------------


@pytest.fixture
def mpii_images(cli, shared_data, tmp_path) -> Path:
    """annotations/m (the 5 real MPII images of mmpose's tests) and a folder of copies of them."""
    assert cli("convert", shared_data / MPII / "test_mpii.json", "--name", "m").exit_code == 0
    folder = tmp_path / "images"
    folder.mkdir()
    for src in (shared_data / MPII).glob("*.jpg"):
        shutil.copyfile(src, folder / src.name)
    return folder


def _plan(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["image_input"]


def test_describe_with_a_decompression_bomb_plans_sends_and_records_an_error_row(cli, store, mpii_images):
    """Before: describe --with-image (also --dry-run, --image-url-base) exited 2, DecompressionBombError."""
    from fake_openai import FakeOpenAI

    _bomb(mpii_images / "004645041.jpg")
    describe_args = [
        "describe",
        "--annotations",
        "m",
        "--model",
        "gpt-4o",
        "--with-image",
        "--images",
        mpii_images,
    ]
    plan = _plan(cli(*describe_args, "--dry-run"))
    assert plan["not_sendable_now"] == 1
    assert plan["not_sendable_example"] == (
        "004645041.jpg: 400,000,000 pixels, over the limit of 100,000,000 pixels "
        "(--max-image-pixels or FOCUS_MAX_IMAGE_PIXELS raises it)"
    )
    hosted = _plan(cli(*describe_args, "--image-url-base", "https://example.org/m/", "--dry-run"))
    assert hosted["not_sendable_now"] == 0 and hosted["sizes_read"] == 4  # the bomb's size is not read
    lower = _plan(cli("--max-image-pixels", "300000000", *describe_args, "--dry-run"))
    assert lower["not_sendable_example"] == (
        "004645041.jpg: 400,000,000 pixels (20000x20000), over the limit of 300,000,000 pixels "
        "(--max-image-pixels or FOCUS_MAX_IMAGE_PIXELS raises it)"
    )
    raised = _plan(cli("--max-image-pixels", "500000000", *describe_args, "--dry-run"))
    assert raised["not_sendable_now"] == 0  # the limit is the setting's: raised, the header passes
    with FakeOpenAI() as server:
        result = cli(*describe_args, "--base-url", server.url, "--max-error-share", "0.5")
        assert result.exit_code == 0, result.output
        assert len(server.requests) == 4 and all(len(r["images"]) == 1 for r in server.requests)
    rows = pd.read_parquet(store.path("descriptions", "m") / "descriptions.parquet").set_index("image")
    assert (rows["status"] == "ok").sum() == 4
    assert rows.loc["004645041.jpg", "status"] == "error"
    assert rows.loc["004645041.jpg", "error"] == f"not sent: {plan['not_sendable_example']}"


def test_a_file_that_is_no_image_is_an_error_row_that_names_it(cli, store, mpii_images):
    """Before: the error text read "cannot identify image file <_io.BytesIO object at 0x7f...>"."""
    (mpii_images / "005808361.jpg").write_bytes(b"<html>not found</html>" * 50)
    plan = _plan(cli("describe", "--annotations", "m", "--model", "gpt-4o", "--with-image", "--images",
                     mpii_images, "--dry-run"))  # fmt: skip
    assert plan["not_sendable_example"] == "005808361.jpg: not an image file (no format PIL can read)"
    assert "BytesIO" not in json.dumps(plan)


def _tiny_run(store) -> None:
    """runs/tiny: an untrained focus-tiny CLIP, enough to compute CLIP scores."""
    import open_clip
    import torch

    from training.towers import register_model_configs

    register_model_configs()
    torch.manual_seed(0)
    config = {"arch": "focus-tiny", "model_type": "clip", "context_length": 77, "image_size": 64}
    with store.create("runs", "tiny", stage="train", config=config) as w:
        torch.save(open_clip.create_model("focus-tiny").state_dict(), w.dir / "model.pt")


@pytest.mark.slow
def test_analyze_goes_on_past_a_bomb_and_a_file_that_is_no_image(cli, store, mpii_images):
    """Before: analyze --images exited 2 (DecompressionBombError; "cannot be read as an image") and wrote
    nothing."""
    assert cli("describe", "--annotations", "m", "--backend", "rules").exit_code == 0
    _bomb(mpii_images / "004645041.jpg")
    (mpii_images / "005808361.jpg").write_bytes(b"not a jpeg")
    _tiny_run(store)
    result = cli("analyze", "--descriptions", "m", "--images", mpii_images, "--run", "tiny", "--name", "r")
    assert result.exit_code == 0, result.output
    report = json.loads((store.path("reports", "r") / "report.json").read_text())
    assert report["gallery"]["cards"] == 5 and report["gallery"]["unreadable_images"] == 2
    assert report["per_source"]["rules"]["clip_score"]["n"] == 3  # the three readable images
    note = next(n for n in report["notes"] if "could not be read" in n)
    assert note.startswith("2 image file(s) could not be read (e.g. ") and "no CLIP score" in note
    page = (store.path("reports", "r") / "report.html").read_text()
    assert "over the limit of 100,000,000" in page and "005808361.jpg: not an image file" in page


def test_build_dataset_skips_a_bomb_and_counts_it(cli, store, mpii_images):
    assert cli("describe", "--annotations", "m", "--backend", "rules").exit_code == 0
    _bomb(mpii_images / "004645041.jpg")
    result = cli("build-dataset", "--annotations", "m", "--descriptions", "m", "--images", mpii_images,
                 "--workers", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = _meta(store, "datasets", "m")
    assert meta["counts"]["images"] == 4 and meta["counts"]["skipped_images"] == {"image_too_large": 1}
    assert meta["config"]["max_image_pixels"] == 100_000_000
    assert "| skipped: image_too_large | 1 |" in (store.path("datasets", "m") / "README.md").read_text()


# ---- item 7: an image file of another size than the recorded one -----------------------------------------


def test_an_image_of_another_size_is_rescaled_when_it_is_the_same_picture_else_skipped(
    cli, store, shared_data, tmp_path
):
    """Before: a 640x480 file recorded as 640x425 was built with exit 0, no warning, and a ROI off the
    picture."""
    assert cli("convert", shared_data / COCO / "test_coco.json", "--name", "c").exit_code == 0
    assert cli("describe", "--annotations", "c", "--backend", "rules").exit_code == 0
    originals = _coco_images(shared_data, tmp_path / "originals")
    build = ["build-dataset", "--annotations", "c", "--descriptions", "c", "--roi", "mask", "--workers", "0"]
    # The reference: the recorded files, shrunk by build-dataset itself to 320 px.
    assert cli(*build, "--images", originals, "--max-side", "320", "--name", "ref").exit_code == 0
    changed = _coco_images(shared_data, tmp_path / "changed")
    with Image.open(originals / "000000000785.jpg") as im:  # 640x425 recorded: the same picture at 320x212
        im.resize((320, 212), Image.Resampling.LANCZOS).save(changed / "000000000785.jpg")
        im.resize((640, 480)).save(changed / "000000196141.jpg")  # recorded 640x429: another picture's size
    result = cli(*build, "--images", changed, "--max-side", "320", "--name", "d")
    assert result.exit_code == 0, result.output
    counts = _meta(store, "datasets", "d")["counts"]
    assert counts["rescaled_images"] == 1 and counts["skipped_images"] == {"size_mismatch": 1}
    card = (store.path("datasets", "d") / "README.md").read_text()
    assert "| kept, annotations rescaled to the file's size | 1 |" in card
    assert "| skipped: size_mismatch | 1 |" in card and "to one pixel of rounding" in card
    skipped = [json.loads(line) for line in (store.path("datasets", "d") / "skipped.jsonl").open()]
    mismatch = next(s for s in skipped if s["reason"] == "size_mismatch")
    assert mismatch["image"] == "000000196141.jpg"
    assert "the file is 640x480, the annotations record 640x429" in mismatch["detail"]
    ref = {r["image_id"]: r for r in _rows(store, "ref")}
    row = next(r for r in _rows(store, "d") if r["image_id"] == "000000000785.jpg")
    # The rescaled annotations are what build-dataset stores when it shrinks the recorded file itself.
    assert (row["width"], row["height"]) == (320, 212)
    assert (
        row["people"] == ref["000000000785.jpg"]["people"]
        and row["heatmap"] == ref[row["image_id"]]["heatmap"]
    )


def test_rescale_factor_tolerates_one_pixel_of_rounding_only():
    assert rescale_factor((640, 425), (320, 212)) == (0.5, 212 / 425)
    assert rescale_factor((640, 425), (320, 213)) is not None
    assert rescale_factor((640, 425), (1280, 850)) == (2.0, 2.0)
    assert rescale_factor((640, 425), (640, 480)) is None
    assert rescale_factor((640, 425), (425, 640)) is None  # rotated
    assert rescale_factor((640, 425), (320, 210)) is None  # two pixels off: a crop, not a resize


def test_compressed_rle_is_read_as_pycocotools_writes_it_and_bad_strings_are_refused():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    mask = np.asfortranarray((rng.random((37, 53)) > 0.6).astype(np.uint8))
    text = mask_utils.encode(mask)["counts"].decode()
    runs = rle_string_counts(text)
    flat = np.repeat(np.arange(len(runs)) % 2, runs).astype(np.uint8)
    assert np.array_equal(flat.reshape(53, 37).T, mask)
    seg = {"size": [37, 53], "counts": text}
    assert segmentation_problem(json.dumps(seg), (53, 37)) is None
    for bad in (text[:-1] + "p", text + "o", text[:-2], "\x00", "0" * 9):
        problem = segmentation_problem(json.dumps(seg | {"counts": bad}), (53, 37))
        assert problem is not None and problem.reason == "rle_malformed", bad


# ---- item 9: the messages a user stumbles on ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("null", "JSON null"),
        ("[]", "an empty JSON list"),
        ("[1, 2, 3]", "a JSON list of 3 numbers (the first: 1)"),
        (
            '[{"image_id": 785, "category_id": 1, "keypoints": [1, 2, 2], "score": 0.9}]',
            "a JSON list of COCO annotations (image_id, category_id, keypoints, score, ...) without images "
            "or categories: a keypoint results file",
        ),
    ],
    ids=["null", "empty-list", "numbers", "coco-results"],
)
def test_convert_says_what_a_json_file_is_and_what_it_expects(cli, store, tmp_path, text, kind):
    """Before: a JSON list was "not the mmpose/HRNet MPII format", null "neither JSON nor an MPII CSV", [] "no
    image left to write"."""
    path = tmp_path / "f.json"
    path.write_text(text)
    _one_line_error(cli("convert", path), f"{path}: {kind}", "; convert reads a COCO-format keypoints object")
    assert not (store.root / "annotations").exists()


def test_nested_keypoint_triples_are_read_as_coco_writes_them_flat(cli, store, shared_data, tmp_path):
    """Before: 17 nested triples said "keypoints has 51 values, expected 51"."""

    def nest(raw):
        for a in raw["annotations"]:
            a["keypoints"] = [a["keypoints"][i : i + 3] for i in range(0, len(a["keypoints"]), 3)]

    assert cli("convert", _coco_json(shared_data, tmp_path), "--name", "flat").exit_code == 0
    assert (
        cli("convert", _coco_json(shared_data, tmp_path, nest, "nested.json"), "--name", "nested").exit_code
        == 0
    )
    flat, nested = (
        read_annotations(store.path("annotations", n) / "annotations.parquet") for n in ("flat", "nested")
    )
    for a, b in zip(flat, nested, strict=True):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)

    def pairs(raw):
        raw["annotations"][0]["keypoints"] = [
            a[:2] for a in np.reshape(raw["annotations"][0]["keypoints"], (17, 3)).tolist()
        ]

    result = cli("convert", _coco_json(shared_data, tmp_path, pairs, "pairs.json"), "--name", "pairs")
    _one_line_error(
        result, "annotation 0 (id 442619): keypoints has 17 x 2 nested lists, expected 51 (x, y, v"
    )


BIG = "1" + "0" * 400  # an integer JSON literal no float holds


@pytest.mark.parametrize(
    ("source", "where", "raw", "message"),
    [
        (COCO + "/test_coco.json", ("images", 0, "width"), str(10**12),
         "images[0] (id 785): width/height [1000000000000, 425] are not whole numbers of pixels from 1 to "
         "65535"),
        (COCO + "/test_coco.json", ("annotations", 0, "keypoints", 0), BIG,
         "annotation 0 (id 442619): keypoints has a number too large for a float"),
        (COCO + "/test_coco.json", ("annotations", 0, "bbox", 0), BIG,
         "annotation 0 (id 442619): bbox has a number too large for a float"),
        (MPII + "/test_mpii.json", (0, "joints", 0, 0), BIG,
         "record 0: joints has a number too large for a float"),
        (MPII + "/test_mpii.json", (0, "scale"), BIG, "record 0: scale has a number too large for a float"),
    ],
    ids=["coco-width-1e12", "coco-keypoint-1e400", "coco-bbox-1e400", "mpii-joint-1e400", "mpii-scale-1e400"],
)  # fmt: skip
def test_huge_numbers_are_one_line_errors_and_leave_no_staging_folder(
    cli, store, shared_data, tmp_path, source, where, raw, message
):
    """Before: a bare ArrowInvalid / OverflowError, and (for the width) an empty annotations/.staging/."""
    data = json.loads((shared_data / source).read_text())
    node = data
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = "@BIG@"
    path = tmp_path / "big.json"
    path.write_text(json.dumps(data).replace('"@BIG@"', raw))
    _one_line_error(cli("convert", path, "--name", "x"), f"{path}: {message}")
    assert not (store.root / "annotations").exists()


def test_coordinates_of_1e308_are_dropped_and_counted_without_a_warning(cli, store, shared_data, tmp_path):
    """Before: numpy printed "RuntimeWarning: overflow encountered in cast" (keypoints, at convert) and at
    build-dataset --roi box (a bbox of 1e308)."""

    def change(raw):
        raw["annotations"][0]["keypoints"][0] = 1e308
        raw["annotations"][2]["bbox"][2] = 1e308

    mm = json.loads((shared_data / MPII / "test_mpii.json").read_text())
    mm[0]["joints"][0] = [1e308, 5]
    (tmp_path / "mm.json").write_text(json.dumps(mm))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would fail the command
        coco = cli("convert", _coco_json(shared_data, tmp_path, change), "--name", "c", "--json")
        mpii = cli("convert", tmp_path / "mm.json", "--name", "m", "--json")
    assert coco.exit_code == 0 and mpii.exit_code == 0, coco.output + mpii.output
    assert json.loads(coco.stdout)["dropped"]["coco.json:point_out_of_range"] == 1
    assert json.loads(coco.stdout)["dropped"]["coco.json:person_box_out_of_range"] == 1
    assert json.loads(mpii.stdout)["dropped"]["mm.json:point_out_of_range"] == 1


def test_links_out_of_images_are_refused_in_describe_build_and_analyze(cli, store, mpii_images, tmp_path):
    """Before: a link inside --images to a file outside it was followed: describe sent the outside file to
    the model, build-dataset embedded it, analyze showed it."""
    from fake_openai import FakeOpenAI

    outside = tmp_path / "private"
    outside.mkdir()
    (mpii_images / "004645041.jpg").rename(outside / "holiday.jpg")
    (mpii_images / "004645041.jpg").symlink_to(outside / "holiday.jpg")
    (mpii_images / "real").mkdir()  # a link that stays inside the folder is the user's own, and followed
    (mpii_images / "005808361.jpg").rename(mpii_images / "real" / "005808361.jpg")
    (mpii_images / "005808361.jpg").symlink_to(mpii_images / "real" / "005808361.jpg")
    refusal = f"image '004645041.jpg' is a link to {outside / 'holiday.jpg'}, outside --images (refused"
    with FakeOpenAI() as server:
        result = cli("describe", "--annotations", "m", "--model", "gpt-4o", "--with-image", "--images",
                     mpii_images, "--base-url", server.url, "--max-error-share", "0.5")  # fmt: skip
        assert result.exit_code == 0, result.output
        assert len(server.requests) == 4
    rows = pd.read_parquet(store.path("descriptions", "m") / "descriptions.parquet").set_index("image")
    assert rows.loc["004645041.jpg", "status"] == "error" and refusal in rows.loc["004645041.jpg", "error"]
    assert rows.loc["005808361.jpg", "status"] == "ok"

    assert cli("describe", "--annotations", "m", "--backend", "rules", "--name", "r").exit_code == 0
    result = cli("build-dataset", "--annotations", "m", "--descriptions", "r", "--images", mpii_images,
                 "--workers", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    counts = _meta(store, "datasets", "r")["counts"]
    assert counts["images"] == 4 and counts["skipped_images"] == {"link_outside_images": 1}

    result = cli("analyze", "--descriptions", "r", "--images", mpii_images, "--name", "a")
    assert result.exit_code == 0, result.output
    report = json.loads((store.path("reports", "a") / "report.json").read_text())
    assert report["gallery"]["unreadable_images"] == 1
    assert refusal in (store.path("reports", "a") / "report.html").read_text()
