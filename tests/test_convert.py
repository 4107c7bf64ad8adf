"""convert on the real MPII files in ../shared/data/mpii: counts match the sources, conventions agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline.artifacts.annotations import read_file as read_annotations
from pipeline.convert import ConvertConfig, convert
from pipeline.errors import PipelineError
from pipeline.records import MISSING, OCCLUDED, VISIBLE
from pipeline.sources.base import split_from_name
from pipeline.sources.formats import read_source
from pipeline.sources.merge import merge_sources

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mpii(shared_data: Path) -> Path:
    return shared_data / "mpii"


@pytest.fixture(scope="module")
def paths(mpii: Path) -> dict[str, Path]:
    return {
        "json": mpii / "mmpose_tests" / "test_mpii.json",
        "h5": mpii / "hourglass_annot" / "valid.h5",
        "csv": mpii / "csv_activity" / "mpii_dataset.csv",
    }


@pytest.fixture(scope="module")
def csv_source(paths):
    return read_source(paths["csv"])


@pytest.fixture(scope="module")
def h5_source(paths):
    return read_source(paths["h5"])


def _published(store, name: str):
    return read_annotations(store.path("annotations", name) / "annotations.parquet"), store.meta(
        "annotations", name
    )


def test_mmpose_json_with_images(store, paths, mpii):
    counts = convert(ConvertConfig(sources=[paths["json"]], name="json"), store)
    images, meta = _published(store, "json")
    raw = json.loads(paths["json"].read_text())
    assert counts["images"] == len({r["image"] for r in raw}) == 5
    assert counts["people"] == len(raw) == 5
    assert counts["keypoints"] == sum(sum(r["joints_vis"]) for r in raw) == 76
    assert meta["counts"]["images"] == 5 and meta["stage"] == "convert"
    assert meta["source_files"][0]["format"] == "json" and len(meta["source_files"][0]["sha256"]) == 64
    by_name = {a.image: a for a in images}
    for rec in raw:  # every record's image is one of the real images beside the JSON
        assert (mpii / "mmpose_tests" / rec["image"]).is_file()
        kps = by_name[rec["image"]].people[0].keypoints
        vis = np.asarray(rec["joints_vis"]) > 0
        np.testing.assert_allclose(kps[vis, :2], np.asarray(rec["joints"])[vis], atol=1e-3)
        assert (
            (kps[vis, 2] == VISIBLE).all()
            and (kps[~vis, 2] == MISSING).all()
            and np.isnan(kps[~vis, :2]).all()
        )
        assert by_name[rec["image"]].people[0].center == tuple(rec["center"])
    assert {a.split for a in images} == {"unknown"}  # test_mpii.json names no split


def test_hourglass_h5_conventions_are_undone(h5_source, paths):
    with h5py.File(paths["h5"]) as f:
        part, visible = f["part"][()], f["visible"][()]
        names = [n.decode() for n in f["imgname"][()]]
    assert len(h5_source.images) == len(set(names)) == 2729
    assert sum(len(a.people) for a in h5_source.images.values()) == len(names) == 2958
    kps = np.stack([p.keypoints for a in h5_source.images.values() for p in a.people])
    missing = (part == 0).all(-1)
    assert (kps[..., 2] == MISSING).sum() == missing.sum() == 3088
    assert (kps[..., 2] == OCCLUDED).sum() == ((visible == 0) & ~missing).sum() == 10243
    # The h5 shifts objpos by +15*scale and enlarges scale by 1.25; the JSON holds the raw .mat values.
    person = h5_source.images["005808361.jpg"].people[0]
    assert person.center == pytest.approx((966.0, 340.0), abs=1e-3)
    assert person.scale == pytest.approx(4.718488, abs=1e-5)
    assert h5_source.images["005808361.jpg"].split == "val"


def test_csv_counts_and_activity(csv_source):
    images = csv_source.images
    assert len(images) == 17372
    kps = np.stack([a.people[0].keypoints for a in images.values()])
    assert (kps[..., 2] == MISSING).sum() == 20111  # the -1,-1 cells
    assert (kps[..., 2] == OCCLUDED).sum() == 0  # the CSV records no visibility
    unlabelled = [a for a in images.values() if a.activity is None]
    assert len(unlabelled) == 41 and all(a.category is None for a in unlabelled)  # "[]" in the source
    assert images["005808361.jpg"].activity == "curling" and images["005808361.jpg"].category == "sports"
    cut = [a.activity for a in images.values() if a.activity and len(a.activity) == 100]
    assert cut and all(len(a.activity or "") <= 100 for a in images.values())
    assert {a.split for a in images.values()} == {"train"}


def test_csv_agrees_with_h5_on_shared_people(csv_source, h5_source):
    merged, counts = merge_sources([h5_source, csv_source], join="left")
    assert len(merged) == 2729
    # The CSV holds annorect(1) of each image; valid.h5 often another person of the same image. Where both
    # hold the same person they agree to the h5's 1 px rounding.
    assert counts["images_found_in:mpii_dataset.csv"] == 2723
    assert counts["conflict:activity"] == 0 and counts["conflict:split"] == 0
    assert counts["conflict:people"] == 0 and counts["people_only_in_later_source"] == 913
    assert counts["split:val_refines_train"] == 2723
    assert sum(a.activity is not None for a in merged) == 2717


def test_json_plus_csv_activity_join(store, paths):
    counts = convert(ConvertConfig(sources=[paths["json"], paths["csv"]], name="joined"), store)
    images, meta = _published(store, "joined")
    by_name = {a.image: a for a in images}
    assert counts["images"] == 5 and counts["images_with_activity"] == 5
    assert by_name["005808361.jpg"].activity == "curling" and by_name["005808361.jpg"].category == "sports"
    assert by_name["052475643.jpg"].category == "miscellaneous"
    assert by_name["051423444.jpg"].activity.startswith("truck driving, loading and unloading truck")
    assert meta["counts"]["dropped"]["mpii_dataset.csv:image_not_in_first_source"] == 17372 - 5
    assert meta["counts"]["joined"]["activity_from_other_source"] == 5
    assert {a.split for a in images} == {"train"}  # the JSON names none, the CSV's images are img_train == 1


def test_json_h5_csv_fill_occlusion_and_split(store, paths):
    counts = convert(ConvertConfig(sources=[paths["json"], paths["h5"], paths["csv"]], name="three"), store)
    images, _ = _published(store, "three")
    wrists = {a.image: a for a in images}["051423444.jpg"].people[0].keypoints[[10, 11], 2]
    # PROVENANCE: wrists of 051423444 are occluded in valid.h5 but only "annotated" in the JSON.
    assert (wrists == OCCLUDED).all()
    assert counts["splits"] == {"val": 5}
    assert counts["conflicts"] == {"people": 0, "activity": 0, "split": 0}


def test_outer_join_keeps_every_image(store, csv_source, h5_source):
    merged, counts = merge_sources([csv_source, h5_source], join="outer")
    assert len(merged) == len(set(csv_source.images) | set(h5_source.images)) == 17378
    splits = {a.image: a.split for a in merged}
    assert sum(s == "val" for s in splits.values()) == 2729
    assert counts["filled:center"] > 0  # the CSV has no objpos; the h5 supplies it for matching people


def test_activity_conflicts_are_counted(tmp_path, paths, csv_source):
    rows = _lines(paths["csv"], 4)
    header, first = rows[0], rows[1].replace(",curling,sports", ",rowing,water activities")
    # The second image's person re-annotated: its right wrist moved 40 px, the rest unchanged.
    second = rows[2].split(",")
    wrist_x = header.split(",").index("r wrist_X")
    second[wrist_x] = str(float(second[wrist_x]) + 40)
    other = tmp_path / "relabelled.csv"
    other.write_text("\n".join([header, first, ",".join(second), rows[3]]) + "\n")
    merged, counts = merge_sources([csv_source, read_source(other)], join="left")
    assert counts["conflict:activity"] == 1 and counts["conflict:people"] == 1
    assert {a.image: a for a in merged}["015601864.jpg"].activity == "curling"  # the first source wins


def test_duplicate_people_and_short_json(store, tmp_path, paths):
    raw = json.loads(paths["json"].read_text())
    twice = tmp_path / "mpii_val.json"
    twice.write_text(json.dumps([*raw, raw[0]]))  # the first person listed again
    counts = convert(ConvertConfig(sources=[twice], name="dup"), store)
    assert counts["people"] == 5 and counts["dropped"] == {"duplicate_person": 1}
    assert counts["splits"] == {"val": 5}  # mmpose's val file name


def test_split_option_and_names(store, paths):
    convert(ConvertConfig(sources=[paths["json"]], name="val", split="val"), store)
    images, meta = _published(store, "val")
    assert {a.split for a in images} == {"val"} and meta["config"]["split"] == "val"
    assert split_from_name(Path("mpii_val.json")) == "val" and split_from_name(Path("valid.h5")) == "val"
    assert (
        split_from_name(Path("mpii_train.json")) == "train"
        and split_from_name(Path("test_mpii.json")) == "unknown"
    )


def test_overwrite_and_existing(store, paths):
    convert(ConvertConfig(sources=[paths["json"]], name="a"), store)
    with pytest.raises(PipelineError, match="already exists"):
        convert(ConvertConfig(sources=[paths["json"]], name="a"), store)
    convert(ConvertConfig(sources=[paths["json"]], name="a", overwrite=True, split="train"), store)
    assert store.meta("annotations", "a")["config"]["split"] == "train"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda d, m: m / "official_eval" / "groups_v12.mat",
            r"groups_v12\.mat: .*without the MPII 'RELEASE'",
        ),
        (lambda d, m: m / "mmpose_tests" / "004645041.jpg", r"004645041\.jpg: a JPEG image"),
        (
            lambda d, m: _cut(m / "mmpose_tests" / "test_mpii.json", d / "cut.json", 5000),
            r"cut\.json: invalid JSON",
        ),
        (
            lambda d, m: _cut(m / "csv_activity" / "mpii_dataset.csv", d / "cut.csv", 100_000),
            r"cut\.csv: the last row has \d+ of 37 fields",
        ),
        (
            lambda d, m: _cut(m / "hourglass_annot" / "valid.h5", d / "cut.h5", 600_000),
            r"cut\.h5: unreadable HDF5",
        ),
        (
            lambda d, m: _write(d / "shape.json", '[{"image": "a.jpg", "joints": [[1, 2]]}]'),
            r"shape\.json: record 0: joints has shape \[1, 2\], expected \[16, 2\]",
        ),
        (lambda d, m: _write(d / "dict.json", '{"people": []}'), r"dict\.json: JSON object with keys people"),
        (
            lambda d, m: _write(d / "notes.csv", "just,some,text\n1,2,3\n"),
            r"notes\.csv: text that is neither",
        ),
        (
            lambda d, m: _write(
                d / "bad.csv",
                "\n".join(_lines(m / "csv_activity" / "mpii_dataset.csv", 5)).replace(
                    "015601864.jpg,620,", "015601864.jpg,oops,"
                )
                + "\n",
            ),
            r"bad\.csv: row 2, column 'r ankle_X': 'oops' is not a number",
        ),
        (lambda d, m: _write(d / "empty.h5", ""), r"empty\.h5: empty file"),
        (
            lambda d, m: _write(d / "null.json", json.dumps([{"image": None, "joints": [[1, 2]] * 16}])),
            r"null\.json: record 0: image is null, not a file name",
        ),
        (
            lambda d, m: _write(d / "num.json", json.dumps([{"image": 12345, "joints": [[1, 2]] * 16}])),
            r"num\.json: record 0: image is 12345, not a file name",
        ),
        (lambda d, m: d / "missing.mat", r"missing\.mat: no such file"),
    ],
    ids=[
        "groups_v12",
        "jpeg",
        "cut-json",
        "cut-csv",
        "cut-h5",
        "short-joints",
        "json-object",
        "plain-text",
        "non-numeric",
        "empty",
        "null-image-name",
        "number-image-name",
        "missing",
    ],
)
def test_bad_inputs_are_refused_without_artifact(store, tmp_path, mpii, make, message):
    path = make(tmp_path, mpii)
    with pytest.raises(PipelineError, match=message) as err:
        convert(ConvertConfig(sources=[path], name="bad"), store)
    assert "\n" not in str(err.value)
    assert not store.exists("annotations", "bad") and not (store.root / "annotations" / "bad").exists()


def _cut(src: Path, dest: Path, size: int) -> Path:
    dest.write_bytes(src.read_bytes()[:size])
    return dest


def _lines(path: Path, n: int) -> list[str]:
    with open(path) as fh:
        return [next(fh).rstrip("\n") for _ in range(n)]


def _write(dest: Path, text: str) -> Path:
    dest.write_text(text)
    return dest


def test_cli_convert(cli, store, paths, mpii):
    result = cli("convert", paths["json"], paths["h5"], "--name", "cli", "--json", "--split", "val")
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    assert counts["images"] == 5 and counts["splits"] == {"val": 5}
    assert counts["joined"]["filled:occlusion_flags"] == 2
    assert store.meta("annotations", "cli")["config"]["sources"] == [str(paths["json"]), str(paths["h5"])]
    again = cli("convert", paths["json"], "--name", "cli")
    assert again.exit_code == 2 and "already exists" in again.output and "Traceback" not in again.output
    wrong = cli("convert", mpii / "official_eval" / "groups_v12.mat")
    assert wrong.exit_code == 2 and wrong.output.count("\n") == 1 and wrong.output.startswith("error: ")
    assert "groups_v12.mat" in wrong.output and not store.exists("annotations", "mpii")
    bad = cli("convert", paths["json"], "--join", "inner")
    assert bad.exit_code == 2 and "--join must be one of left, outer" in bad.output


def test_cli_implausible_coordinates_become_missing_and_are_counted(cli, store, tmp_path):
    """NaN, inf and 1e40 used to be stored as visible joints (the heatmap went blank)."""
    joints = [[100.0 + 10 * j, 200.0] for j in range(16)]
    joints[0], joints[1], joints[2] = [float("nan"), 5.0], [float("inf"), 5.0], [1e40, 5.0]
    joints[3] = [50_000.0, 5.0]
    people = [
        {"image": "a.jpg", "joints": joints, "joints_vis": [1] * 16, "center": [1e40, 3.0], "scale": 1.5},
        {"image": "b.jpg", "joints": [[-30.0, 1921.0]] * 16, "joints_vis": [1] * 16, "scale": float("inf")},
    ]
    src = tmp_path / "odd.json"
    src.write_text(json.dumps(people))  # Python writes NaN / Infinity, which JSON readers accept
    result = cli("convert", src, "--name", "odd", "--json")
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    assert counts["dropped"]["odd.json:point_out_of_range"] == 4
    assert counts["dropped"]["odd.json:point_center_out_of_range"] == 1
    assert counts["dropped"]["odd.json:point_scale_out_of_range"] == 1
    (a, b), _ = _published(store, "odd")
    kps = a.people[0].keypoints
    assert (kps[:4, 2] == MISSING).all() and np.isnan(kps[:4, :2]).all()
    assert (kps[4:, 2] == VISIBLE).all() and np.isfinite(kps[4:, :2]).all()
    assert a.people[0].center is None and a.people[0].scale == 1.5
    assert (b.people[0].keypoints[:, 2] == VISIBLE).all() and b.people[0].scale is None  # real-range extremes


def test_cli_subprocess(tmp_path, paths):
    env = {**os.environ, "FOCUS_PROGRESS": "0"}
    exe = Path(sys.executable).with_name("focus-pipeline")
    store = tmp_path / "store"
    ok = subprocess.run(
        [str(exe), "--store", str(store), "convert", str(paths["h5"]), "--name", "val"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "annotations/val: 2729 images, 2958 people, 44240 keypoints" in ok.stdout
    meta = json.loads((store / "annotations" / "val" / "meta.json").read_text())
    assert meta["counts"]["occluded_keypoints"] == 10243
