"""build-dataset: a real round trip through Parquet shards, the card and `datasets.load_dataset`.

Inputs are written here the way convert and describe publish them (store.create + the exact schemas), with
synthetic PIL images, the 5 real MPII images of mmpose's tests and their real annotations, and every kind of
bad input the stage must count instead of crashing on.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from pipeline.artifacts.annotations import read_file as read_annotations
from pipeline.artifacts.annotations import write as write_annotations
from pipeline.artifacts.datasets import FEATURES
from pipeline.artifacts.descriptions import SCHEMA as DESCRIPTIONS_SCHEMA
from pipeline.build_dataset import BuildConfig, build_dataset
from pipeline.build_dataset.card import token_counter
from pipeline.build_dataset.images import stored_size
from pipeline.build_dataset.index import index_descriptions
from pipeline.cli.build_dataset import parse_size
from pipeline.convert import ConvertConfig, convert
from pipeline.errors import PipelineError
from pipeline.heatmaps import PNG_ENCODERS, roi_heatmap, to_uint8
from pipeline.records import ImageAnnotation, Person, image_file

# ---- inputs, published the way convert and describe publish them ----------------------------------------


def mpii_rows(shared_data: Path, store) -> tuple[Path, list[ImageAnnotation]]:
    """The 5 real MPII images and their real annotations, through the convert stage (annotations/mpii)."""
    folder = shared_data / "mpii" / "mmpose_tests"
    convert(ConvertConfig(sources=[folder / "test_mpii.json"], name="mpii", split="val"), store)
    return folder, read_annotations(store.path("annotations", "mpii") / "annotations.parquet")


def synthetic_rows(folder: Path, n: int, rng: np.random.Generator) -> list[ImageAnnotation]:
    rows = []
    for i in range(n):
        w, h = 64 + 16 * i, 48 + 8 * i
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            folder / f"syn{i}.jpg", quality=90
        )
        people = []
        for _ in range(i % 3):  # 0, 1 or 2 people
            kps = np.column_stack([rng.uniform(0, w, 16), rng.uniform(0, h, 16), rng.integers(0, 3, 16)])
            kps = kps.astype(np.float32)
            kps[kps[:, 2] == 0, :2] = np.nan
            people.append(Person(keypoints=kps, center=(w / 2, h / 2), scale=h / 200))
        rows.append(
            ImageAnnotation(
                f"syn{i}.jpg",
                split="train" if i < 5 else "val",
                activity=f"activity {i % 2}",
                category="synthetic",
                activity_id=i % 2,
                people=people,
            )
        )
    return rows


def publish_annotations(store, name: str, rows: list[ImageAnnotation]) -> None:
    with store.create("annotations", name, stage="convert", config={"sources": ["test"]}) as w:
        w.counts["images"] = write_annotations(w.dir / "annotations.parquet", rows)


def desc(
    image: str,
    sample: int,
    text: str | None,
    status: str = "ok",
    source: str = "gpt-test/paper",
    model: str = "gpt-test",
) -> dict:
    return {
        "image": image,
        "source": source,
        "sample": sample,
        "description": text,
        "status": status,
        "model": model,
        "template": "paper",
        "template_hash": "abc123",
        "finish_reason": "stop",
        "prompt_tokens": 100,
        "completion_tokens": 40,
        "cost_usd": 0.001,
        "latency_s": 0.5,
        "attempts": 1,
        "error": None if status == "ok" else status,
        "response_id": None,
        "cache_key": f"{image}/{sample}",
    }


def publish_descriptions(store, name: str, rows: list[dict]) -> None:
    with store.create(
        "descriptions",
        name,
        stage="describe",
        config={"model": "gpt-test", "template": "paper", "temperature": 0.5, "max_tokens": 512},
    ) as w:
        pq.write_table(pa.Table.from_pylist(rows, schema=DESCRIPTIONS_SCHEMA), w.dir / "descriptions.parquet")
        (w.dir / "journal.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        w.counts.update({"rows": len(rows), "ok": sum(r["status"] == "ok" for r in rows), "cost_usd": 0.01})


def text_for(image: str, k: int = 0) -> str:
    return f"One person is doing something in {image}; the left arm is raised above the head ({k})."


@pytest.fixture
def inputs(tmp_path: Path, store, shared_data: Path) -> dict:
    """Synthetic + real images, one annotations and two descriptions artifacts, every kind of bad input."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rows = synthetic_rows(folder, 7, rng)
    real_dir, real = mpii_rows(shared_data, store)
    for r in real:
        shutil.copy(real_dir / r.image, folder / r.image)
    bad = [
        ImageAnnotation(n, split="train", people=[])
        for n in ("missing.jpg", "corrupt.jpg", "truncated.jpg", "folder.jpg", "nodesc.jpg")
    ]
    (folder / "corrupt.jpg").write_bytes(rng.bytes(5000))
    good = (real_dir / real[0].image).read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "folder.jpg").mkdir()  # exists but cannot be read as a file
    shutil.copy(folder / "syn0.jpg", folder / "nodesc.jpg")
    annotations = rows + real + bad + [rows[0]]  # the last one repeats syn0: a duplicate annotation
    publish_annotations(store, "ann", annotations)

    d1 = [desc(r.image, 0, text_for(r.image)) for r in rows + real if r.image not in ("syn1.jpg", "syn2.jpg")]
    d1 += [desc(b.image, 0, text_for(b.image)) for b in bad if b.image != "nodesc.jpg"]
    d1 += [
        desc("syn1.jpg", 0, None, status="error"),  # failed, then retried as sample 0 below: the ok one wins
        desc("syn1.jpg", 0, text_for("syn1.jpg")),
        desc("syn1.jpg", 1, text_for("syn1.jpg", 1), status="truncated"),
        desc("syn2.jpg", 0, "I cannot help with that.", status="refused"),
        desc("syn0.jpg", 0, "a different text for the same key"),  # duplicate (image, source, sample)
        desc("ghost.jpg", 0, text_for("ghost.jpg")),  # no such image in the annotations
        desc("syn3.jpg", 1, "   "),  # ok but empty
        desc("syn3.jpg", 2, text_for("syn3.jpg", 2) + " " + "and more words " * 40),  # long: > 77 CLIP tokens
    ]
    d2 = [
        desc(r.image, 0, f"rules text for {r.image}", source="rules", model="rules")
        for r in rows[:4]
        if r.image != "syn2.jpg"
    ]
    d2.append(desc("syn4.jpg", 0, text_for("syn4.jpg"), source="rules", model="rules"))  # same text as d1
    publish_descriptions(store, "d1", d1)
    publish_descriptions(store, "d2", d2)
    return {"folder": folder, "synthetic": rows, "real": real, "d1": d1, "d2": d2}


def expected_descriptions(inputs: dict, image: str) -> list[dict]:
    """Usable descriptions of an image in artifact order: ok, non-empty, first per (source, sample), text."""
    out, keys = [], set()
    for r in inputs["d1"] + inputs["d2"]:
        text = (r["description"] or "").strip()
        if r["image"] != image or r["status"] != "ok" or not text:
            continue
        if (r["source"], r["sample"]) in keys or text in [d["text"] for d in out]:
            continue
        keys.add((r["source"], r["sample"]))
        out.append({"source": r["source"], "model": r["model"], "text": text})
    return out


def load(path: Path, tmp_path: Path) -> datasets.DatasetDict:
    return datasets.load_dataset(str(path), cache_dir=str(tmp_path / "hf-cache"))


# ---- tests ----------------------------------------------------------------------------------------------


def test_round_trip_through_load_dataset(cli, store, inputs, tmp_path):
    res = cli(
        "build-dataset",
        "--annotations",
        "ann",
        "--descriptions",
        "d1",
        "--descriptions",
        "d2",
        "--images",
        inputs["folder"],
        "--name",
        "ds",
        "--max-shard-rows",
        "2",
        "--workers",
        "2",
    )
    assert res.exit_code == 0, res.output
    path = store.path("datasets", "ds")
    ds = load(path, tmp_path)
    assert set(ds) == {"train", "val"}  # "val" stays "val" (no guessing into "validation")
    assert ds["train"].features == FEATURES

    # syn2 has only a refused description; the bad files are left out with their reasons.
    kept = {r.image: r for r in inputs["synthetic"] + inputs["real"] if r.image != "syn2.jpg"}
    got = {row["image_id"]: row for split in ds.values() for row in split}
    assert set(got) == set(kept)
    assert sorted(ds["train"]["image_id"]) == sorted(i for i, r in kept.items() if r.split == "train")
    train_files = sorted(p.name for p in (path / "data").glob("train-*.parquet"))
    assert train_files == [f"train-{i:05d}-of-00002.parquet" for i in range(2)]  # 4 rows, 2 per shard

    for image, ann in kept.items():
        row = got[image]
        assert row["split"] == ann.split
        assert (row["activity"], row["category"], row["activity_id"]) == (
            ann.activity,
            ann.category,
            ann.activity_id,
        )
        # Original bytes, decodable, and width/height are the decoded size.
        assert row["image"].size == (row["width"], row["height"])
        with Image.open(inputs["folder"] / image) as src:
            assert src.size == row["image"].size
            assert np.array_equal(np.asarray(src.convert("RGB")), np.asarray(row["image"].convert("RGB")))
        assert len(row["people"]) == len(ann.people)
        kps = (
            np.stack([np.asarray(p["keypoints"], np.float32).reshape(16, 3) for p in row["people"]])
            if row["people"]
            else np.zeros((0, 16, 3), np.float32)
        )
        np.testing.assert_array_equal(kps, ann.keypoints)  # no resize: same pixels, NaN where v = 0
        for p, person in zip(row["people"], ann.people, strict=True):
            assert p["center"] == pytest.approx(list(person.center))
            assert p["scale"] == pytest.approx(person.scale)
        # The heatmap is what the heatmap module renders from the row's own keypoints, 8-bit, same size.
        hm = row["heatmap"]
        assert hm.mode == "L" and hm.size == row["image"].size
        expected = to_uint8(roi_heatmap(kps, image_size=hm.size))
        assert np.abs(np.asarray(hm, dtype=np.int16) - expected).max() <= 1
        want = expected_descriptions(inputs, image)
        assert row["descriptions"] == want and row["description"] == want[0]["text"]
    assert got["syn0.jpg"]["description"] == text_for("syn0.jpg")  # the first usable row, not the duplicate
    assert got["syn1.jpg"]["description"] == text_for("syn1.jpg")  # error then ok for the same key: ok wins
    assert [d["source"] for d in got["syn0.jpg"]["descriptions"]] == ["gpt-test/paper", "rules"]
    assert len(got["syn4.jpg"]["descriptions"]) == 1  # d2's identical text is a counted duplicate_text

    meta = store.meta("datasets", "ds")
    c = meta["counts"]
    assert c["images"] == len(kept) == len(got)
    assert c["skipped_images"] == {
        "duplicate_annotation": 1,
        "no_description": 2,
        "missing_image": 1,
        "corrupt_image": 2,
        "unreadable_image": 1,
    }
    assert c["annotated_images"] == c["images"] + sum(c["skipped_images"].values())
    assert c["skipped_descriptions"] == {
        "unknown_image": 1,
        "status:error": 1,
        "status:truncated": 1,
        "status:refused": 1,
        "duplicate": 1,
        "duplicate_text": 1,
        "empty_text": 1,
        "image_skipped": 4,
    }
    assert c["description_rows"] == len(inputs["d1"]) + len(inputs["d2"])
    assert c["descriptions_used"] + sum(c["skipped_descriptions"].values()) == c["description_rows"]
    assert c["descriptions_used"] == sum(len(r["descriptions"]) for r in got.values())
    skipped = [json.loads(line) for line in (path / "skipped.jsonl").read_text().splitlines()]
    assert len(skipped) == sum(c["skipped_images"].values()) + sum(c["skipped_descriptions"].values()) - 4
    assert {s["image"] for s in skipped if s["reason"] == "corrupt_image"} == {"corrupt.jpg", "truncated.jpg"}

    # Statistics: lengths of the primary descriptions, in words and CLIP tokens.
    count = token_counter()
    texts = [r["description"] for r in got.values()]
    st = meta["statistics"]["description"]
    assert st["count"] == len(texts)
    assert st["words"]["max"] == max(len(t.split()) for t in texts)
    assert st["clip_tokens"]["max"] == max(map(count, texts))
    by_src = meta["statistics"]["descriptions_by_source"]["gpt-test/paper"]["clip_tokens"]
    assert by_src["over_77"] == 1  # the long syn3 sample
    people = Counter(len(r.people) for r in kept.values())
    assert meta["statistics"]["people_per_image"] == {str(k): v for k, v in sorted(people.items())}
    assert meta["statistics"]["people_per_image"] == {"0": 3, "1": 7, "2": 1}
    assert meta["statistics"]["activities"] == {"(none)": 5, "activity 0": 3, "activity 1": 3}

    # The card: YAML the Hub reads, and a body that says how the data was made.
    card = (path / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["configs"][0]["data_files"] == [
        {"split": "train", "path": "data/train-*"},
        {"split": "val", "path": "data/val-*"},
    ]
    assert [s["num_examples"] for s in header["dataset_info"]["splits"]] == [len(ds["train"]), len(ds["val"])]
    assert datasets.Features._from_yaml_list(header["dataset_info"]["features"]) == FEATURES
    for needle in (
        "abc123",
        "temperature = 0.5",
        "gpt-test",
        "Simplified BSD",
        "research only",
        "khan2024focusclip",
        "andriluka14cvpr",
        "corrupt_image",
        "over 77",
    ):
        assert needle in card, needle
    assert header["license"] == "other" and header["license_name"] == "mpii-human-pose"


def test_cli_chain_convert_describe_build_with_max_side(cli, store, shared_data, tmp_path):
    """The real stages end to end: convert, describe (rules backend) and build-dataset --max-side."""
    folder = shared_data / "mpii" / "mmpose_tests"
    assert cli("convert", folder / "test_mpii.json", "--split", "val").exit_code == 0
    assert cli("describe", "--annotations", "mpii", "--backend", "rules").exit_code == 0
    (described,) = [a["name"] for a in store.list("descriptions")]
    res = cli(
        "build-dataset",
        "--annotations",
        "mpii",
        "--descriptions",
        described,
        "--images",
        folder,
        "--max-side",
        "320",
        "--workers",
        "0",
        "--name",
        "small",
    )
    assert res.exit_code == 0, res.output
    real = read_annotations(store.path("annotations", "mpii") / "annotations.parquet")
    rows = pq.read_table(store.path("descriptions", described) / "descriptions.parquet").to_pylist()
    ok = {r["image"]: r["description"] for r in rows if r["status"] == "ok"}
    assert store.meta("datasets", "small")["counts"]["images"] == len(ok) > 0
    ds = load(store.path("datasets", "small"), tmp_path)["val"]
    assert len(ds) == len(ok)
    for row in ds:
        assert row["description"] == ok[row["image_id"]].strip()
        assert row["descriptions"] == [{"source": "rules", "model": "rules", "text": row["description"]}]
        ann = next(r for r in real if r.image == row["image_id"])
        with Image.open(folder / ann.image) as src:
            w, h = src.size
        assert (row["width"], row["height"]) == stored_size(w, h, 320) == row["image"].size
        assert max(row["image"].size) == 320
        sx, sy = row["width"] / w, row["height"] / h
        kps = np.stack([np.asarray(p["keypoints"], np.float32).reshape(16, 3) for p in row["people"]])
        np.testing.assert_allclose(kps[..., 0], ann.keypoints[..., 0] * sx, rtol=1e-5)
        np.testing.assert_allclose(kps[..., 1], ann.keypoints[..., 1] * sy, rtol=1e-5)
        np.testing.assert_array_equal(kps[..., 2], ann.keypoints[..., 2])
        assert row["people"][0]["scale"] == pytest.approx(ann.people[0].scale * sy, rel=1e-5)
        hm = np.asarray(row["heatmap"], dtype=np.int16)
        assert np.abs(hm - to_uint8(roi_heatmap(kps, image_size=row["image"].size))).max() <= 1
        # ... which is the full-size heatmap seen at the smaller resolution.
        small = to_uint8(roi_heatmap(ann.keypoints, image_size=(w, h), out_size=row["image"].size))
        assert np.abs(hm - small).max() <= 2


def test_description_fates_add_up():
    tables = [("a", pa.Table.from_pylist([
        desc("x", 0, "t1"), desc("x", 0, "t1 again"), desc("x", 1, "t1"),
        desc("y", 0, "t2", status="invalid"), desc("zz", 0, "t3"), desc("y", 1, None),
    ], schema=DESCRIPTIONS_SCHEMA))]  # fmt: skip
    skipped: list[dict] = []
    index = index_descriptions(tables, {"x", "y"}, ("ok", "invalid"), skipped.append)
    assert [d.text for d in index.by_image["x"]] == ["t1"]
    later = pa.Table.from_pylist([desc("x", 1, "second"), desc("x", 0, "first")], schema=DESCRIPTIONS_SCHEMA)
    ordered = index_descriptions([("b", later)], {"x"}, ("ok",), skipped.append).by_image["x"]
    assert [d.text for d in ordered] == ["first", "second"]  # sample order, whatever the file order
    assert [d.text for d in index.by_image["y"]] == ["t2"]
    assert dict(index.fate) == {
        "used": 2,
        "skipped:duplicate": 1,
        "skipped:duplicate_text": 1,
        "skipped:unknown_image": 1,
        "skipped:empty_text": 1,
    }
    assert len(skipped) == 4 and index.rows == 6
    src = index.sources[0].as_dict()
    assert src["status"] == {"ok": 5, "invalid": 1} and src["prompt_tokens"] == 600


def error_line(output: str) -> str:
    """The one `error: ...` line the CLI prints (log lines may precede it in the captured output)."""
    lines = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and output.rstrip().endswith(lines[0]), output
    return lines[0]


def _small_inputs(store, tmp_path: Path) -> Path:
    folder = tmp_path / "img"
    folder.mkdir()
    rows = synthetic_rows(folder, 3, np.random.default_rng(1))
    publish_annotations(store, "ann", rows)
    publish_descriptions(store, "d", [desc(r.image, 0, text_for(r.image)) for r in rows])
    return folder


@pytest.mark.timeout(60)
def test_push_offline_fails_fast_and_keeps_the_artifact(cli, store, tmp_path, monkeypatch):
    folder = _small_inputs(store, tmp_path)
    monkeypatch.setenv("HF_TOKEN", "hf_test_not_a_real_token")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = cli(
        "build-dataset",
        "--annotations",
        "ann",
        "--descriptions",
        "d",
        "--images",
        folder,
        "--workers",
        "0",
        "--push-to-hub",
        "someone/mpii-test",
    )
    assert res.exit_code == 2
    error = error_line(res.output)
    assert "HF_HUB_OFFLINE" in error and "intact at" in error and "hf_test" not in res.output
    ds = load(store.path("datasets", "d"), tmp_path)  # built and published before the push was tried
    assert len(ds["train"]) == 3

    # Online as far as the environment says, but the endpoint does not answer: still one line, artifact kept.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "http://127.0.0.1:9")
    res = cli(
        "build-dataset",
        "--annotations",
        "ann",
        "--descriptions",
        "d",
        "--images",
        folder,
        "--workers",
        "0",
        "--push-to-hub",
        "someone/mpii-test",
        "--overwrite",
    )
    error = error_line(res.output)
    assert res.exit_code == 2 and "pushing to someone/mpii-test failed" in error and "hf upload" in error
    assert "hf_test" not in json.dumps(store.meta("datasets", "d"))
    assert len(load(store.path("datasets", "d"), tmp_path / "again")["train"]) == 3


def test_user_errors_are_one_line_and_write_nothing(cli, store, tmp_path, monkeypatch):
    folder = _small_inputs(store, tmp_path)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no stored login either
    base = ("build-dataset", "--annotations", "ann", "--descriptions", "d", "--workers", "0")
    cases = [
        ((*base, "--images", tmp_path / "nope"), "not a folder"),
        ((*base, "--images", folder, "--push-to-hub", "someone/x"), "HF_TOKEN"),
        ((*base, "--images", folder, "--push-to-hub", "no-slash"), "repo id"),
        ((*base, "--images", folder, "--include-status", "great"), "not a description status"),
        ((*base, "--images", folder, "--shard-size", "lots"), "--shard-size"),
        ((*base, "--images", folder, "--heatmap-encoder", "zopfli"), "--heatmap-encoder"),
        ((*base, "--images", tmp_path), "no image has both"),  # no image file found at all
        (
            ("build-dataset", "--annotations", "ann", "--descriptions", "missing", "--images", folder),
            "no artifact descriptions/missing",
        ),
    ]
    for args, needle in cases:
        res = cli(*args)
        assert res.exit_code == 2, (args, res.output)
        assert needle in error_line(res.output), res.output
        assert not store.exists("datasets", "d")
    assert cli(*base, "--images", folder).exit_code == 0
    res = cli(*base, "--images", folder)
    assert res.exit_code == 2 and "already exists" in res.output


def test_workers_and_executors_write_identical_rows(store, tmp_path):
    folder = _small_inputs(store, tmp_path)
    tables = {}
    for name, workers, executor in (
        ("serial", 0, "process"),
        ("threads", 2, "thread"),
        ("procs", 2, "process"),
    ):
        build_dataset(
            BuildConfig(
                annotations="ann",
                descriptions=["d"],
                images=folder,
                name=name,
                workers=workers,
                executor=executor,
            ),
            store,
        )
        files = sorted((store.path("datasets", name) / "data").glob("*.parquet"))
        tables[name] = pa.concat_tables(pq.read_table(f) for f in files)
    # repr: NaN keypoints (v = 0) compare equal as text, not as floats.
    assert repr(tables["serial"].to_pylist()) == repr(tables["threads"].to_pylist())
    assert repr(tables["serial"].to_pylist()) == repr(tables["procs"].to_pylist())


def test_both_heatmap_encoders_store_the_same_heatmap_pixels(store, tmp_path):
    """--heatmap-encoder fast writes other PNG bytes than Pillow (the default), never other pixels."""
    folder = _small_inputs(store, tmp_path)
    heatmaps = {}
    for encoder in ("pillow", "fast"):
        cfg = BuildConfig(annotations="ann", descriptions=["d"], images=folder, name=encoder, workers=0,
                          heatmap_encoder=encoder)  # fmt: skip
        build_dataset(cfg, store)
        assert store.meta("datasets", encoder)["config"]["heatmap_encoder"] == encoder
        ds = load(store.path("datasets", encoder), tmp_path / encoder)
        heatmaps[encoder] = [np.asarray(h) for h in ds["train"]["heatmap"]]
    assert len(heatmaps["fast"]) == 3
    assert all(np.array_equal(a, b) for a, b in zip(heatmaps["pillow"], heatmaps["fast"], strict=True))


def test_image_names_that_escape_images_are_skipped_and_named(cli, store, tmp_path):
    """Before: an absolute name or one with '..' made build-dataset embed that file in the dataset."""
    folder = tmp_path / "img"
    folder.mkdir()
    rows = synthetic_rows(folder, 3, np.random.default_rng(1))
    secret = tmp_path / "secret.jpg"
    secret.write_bytes((folder / "syn1.jpg").read_bytes() + b"SECRET-TRAILER")  # decodes as a JPEG
    (tmp_path / "sub").mkdir()
    escapes = [str(secret), "../secret.jpg", "syn0.jpg/../../secret.jpg"]
    people = rows[1].people
    publish_annotations(
        store, "ann", rows + [ImageAnnotation(n, split="train", people=people) for n in escapes]
    )
    publish_descriptions(store, "d", [desc(r, 0, text_for(r)) for r in [r.image for r in rows] + escapes])
    res = cli(
        "build-dataset", "--annotations", "ann", "--descriptions", "d", "--images", folder, "--workers", "0",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    counts = store.meta("datasets", "d")["counts"]
    assert counts["images"] == 3 and counts["skipped_images"] == {"path_outside_images": 3}
    skipped = [json.loads(line) for line in (store.path("datasets", "d") / "skipped.jsonl").open()]
    assert sorted(r["image"] for r in skipped if r["reason"] == "path_outside_images") == sorted(escapes)
    for shard in (store.path("datasets", "d") / "data").glob("*.parquet"):
        assert b"SECRET-TRAILER" not in shard.read_bytes()


@pytest.mark.parametrize(
    ("name", "inside"),
    [
        ("015601864.jpg", True),
        ("sub/dir/a.jpg", True),
        ("a..b.jpg", True),
        ("", False),
        ("/etc/passwd", False),
        ("../a.jpg", False),
        ("sub/../../a.jpg", False),
        ("a\0.jpg", False),
    ],
)
def test_image_file_keeps_annotation_names_inside_the_folder(tmp_path, name, inside):
    assert (image_file(tmp_path, name) == tmp_path / name) if inside else image_file(tmp_path, name) is None


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_pool_workers_die_with_a_killed_build_dataset(store, tmp_path):
    """Before: after kill -9 of build-dataset its pool workers (~500 MB each) stayed alive forever."""
    folder = _small_inputs(store, tmp_path)
    (folder / "syn2.jpg").unlink()
    os.mkfifo(folder / "syn2.jpg")  # opening it blocks: the workers are busy when the parent dies
    exe = Path(sys.executable).with_name("focus-pipeline")
    args = ["--store", str(store.root), "build-dataset", "--annotations", "ann", "--descriptions", "d"]
    proc = subprocess.Popen(
        [str(exe), *args, "--images", str(folder), "--workers", "2", "--executor", "process"],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "FOCUS_PROGRESS": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(workers) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "build-dataset did not start its pool"
            time.sleep(0.1)
            workers = _children(proc.pid)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 10
        while (alive := [w for w in workers if Path(f"/proc/{w}").exists()]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive, f"pool workers {alive} outlived their killed parent"
    finally:
        for w in workers:
            if Path(f"/proc/{w}").exists():
                os.kill(w, signal.SIGKILL)
        proc.kill()


def test_parse_size():
    assert parse_size("500MB") == 500 * 10**6
    assert parse_size("256MiB") == 256 * 2**20
    assert parse_size("1.5GB") == 1_500_000_000
    assert parse_size("64") == 64 * 2**20
    with pytest.raises(PipelineError):
        parse_size("-3MB")


def test_exif_rotation_is_dropped_so_pixels_stay_where_the_keypoints_are(tmp_path):
    from pipeline.build_dataset.images import ImageJob, ImageOptions, process_image

    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    pixels = np.zeros((40, 100, 3), np.uint8)
    pixels[:, :50] = 255  # left half white
    Image.fromarray(pixels).save(tmp_path / "r.jpg", exif=exif)
    job = ImageJob(str(tmp_path / "r.jpg"), [], [], ["text"])
    res = process_image(job, ImageOptions(None, 95, False, 1))
    assert res.reason is None and (res.width, res.height) == (100, 40)
    decoded = np.asarray(FEATURES["image"].decode_example({"bytes": res.image, "path": None}))
    assert decoded.shape == (40, 100, 3) and decoded[:, :45].min() > 200 and decoded[:, 55:].max() < 50


@pytest.mark.parametrize("encoder", ["pillow", "fast"])
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (9, 1), (37, 53)])
def test_png_gray_decodes_to_the_same_pixels(shape, encoder):
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    with Image.open(io.BytesIO(PNG_ENCODERS[encoder](pixels, 1))) as im:
        assert (im.format, im.mode, im.size) == ("PNG", "L", shape[::-1])
        assert np.array_equal(np.asarray(im), pixels)


def test_heatmap_png_is_8bit_grayscale_of_the_image_size():
    from pipeline.build_dataset.images import encode_heatmap

    kps = np.zeros((1, 16, 3), np.float32)
    kps[0, :, :2] = np.linspace(10, 50, 32).reshape(16, 2)
    kps[0, :, 2] = 2
    data = encode_heatmap(kps, (80, 60), parts=False, png_level=1)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG" and im.mode == "L" and im.size == (80, 60)
        assert np.array_equal(np.asarray(im), to_uint8(roi_heatmap(kps, (80, 60))))


@pytest.mark.timeout(120)
def test_a_second_push_with_fewer_shards_removes_the_stale_ones(cli, store, tmp_path, monkeypatch):
    from fake_hub import FakeHub

    folder = _small_inputs(store, tmp_path)
    monkeypatch.setenv("HF_TOKEN", "hf_test_not_a_real_token")
    base = ("build-dataset", "--annotations", "ann", "--descriptions", "d", "--images", folder)
    base = (*base, "--workers", "0")
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", hub.endpoint)
        first = cli(*base, "--max-shard-rows", "1", "--push-to-hub", "someone/mpii-test")
        assert first.exit_code == 0, first.output
        shards = sorted(p for p in hub.files("datasets", "someone/mpii-test") if p.startswith("data/"))
        assert shards == [f"data/train-0000{i}-of-00003.parquet" for i in range(3)]
        second = cli(*base, "--push-to-hub", "someone/mpii-test", "--overwrite")
        assert second.exit_code == 0, second.output
        files = hub.files("datasets", "someone/mpii-test")
        assert sorted(files) == ["README.md", "data/train-00000-of-00001.parquet"]
    # what the Hub now holds loads as one consistent dataset
    (tmp_path / "hub" / "data").mkdir(parents=True)
    for name, data in files.items():
        (tmp_path / "hub" / name).write_bytes(data)
    assert len(load(tmp_path / "hub", tmp_path / "hub-cache")["train"]) == 3


def test_a_synthetic_dataset_card_carries_the_project_licence(cli, store, tmp_path):
    folder = _small_inputs(store, tmp_path)
    base = ("build-dataset", "--annotations", "ann", "--descriptions", "d", "--images", folder)
    res = cli(*base, "--workers", "0", "--origin", "synthetic")
    assert res.exit_code == 0, res.output
    card = (store.path("datasets", "d") / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["license"] == "mit" and "license_name" not in header
    assert "Synthetic MPII-style" in card and "Simplified BSD" not in card and "YouTube" not in card


def test_shard_features_are_written_in_the_form_older_datasets_read():
    # datasets >= 4 writes {"_type": "List"}, which 3.x cannot parse; the one-element-list form reads in both
    # (benchmarks/datasets_compat.py loads real shards in datasets 3.6 in a throwaway venv)
    from pipeline.artifacts.datasets import SCHEMA

    stored = json.loads(SCHEMA.metadata[b"huggingface"])["info"]["features"]
    assert '"List"' not in json.dumps(stored)
    assert datasets.Features.from_dict(stored) == FEATURES
