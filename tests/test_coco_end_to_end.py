"""COCO-format data end to end on the real files (COCO with polygon masks, CrowdPose, AP-10K animals):
convert -> describe (rules, and the images' human captions) -> build-dataset with each ROI source -> a few
focus-tiny training steps, with the heatmaps the dataset stores checked against the ROI they claim."""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from PIL import Image

from pipeline.artifacts.annotations import read_file as read_annotations
from pipeline.artifacts.descriptions import read_file as read_descriptions
from pipeline.build_dataset import BuildConfig, build_dataset
from pipeline.convert import ConvertConfig, convert
from pipeline.describe import DescribeConfig, describe
from pipeline.heatmaps import decode_mask, instance_heatmap, to_uint8
from pipeline.store import Store
from training.train import TrainConfig, train

torch.set_num_threads(2)

TINY = {
    "arch": "focus-tiny",
    "image_size": 32,
    "batch_size": 2,
    "max_steps": 3,
    "device": "cpu",
    "num_threads": 2,
}
FILES = {
    "coco": "coco/test_coco.json",
    "crowdpose": "crowdpose/test_crowdpose.json",
    "ap10k": "ap10k/test_ap10k.json",
}


def _captions(tmp: Path) -> Path:
    """Three captions for each of three of the four COCO images (the documented captions format)."""
    ids = [785, 40083, 196141]
    annotations = [
        {"image_id": i, "id": 10 * i + k, "caption": f"caption {k} of image {i}: people outdoors."}
        for i in ids
        for k in range(3)
    ]
    path = tmp / "captions.json"
    path.write_text(json.dumps({"images": [{"id": i} for i in ids], "annotations": annotations}))
    return path


@pytest.fixture(scope="module")
def store(shared_data: Path, module_tmp) -> Store:
    """Every file converted (train split) and described by the rules backend; COCO also with captions."""
    tmp = module_tmp("coco-e2e")
    s = Store(tmp / "store")
    root = shared_data / "coco_format"
    for name, file in FILES.items():
        captions = _captions(tmp) if name == "coco" else None
        convert(ConvertConfig(sources=[root / file], name=name, split="train", captions=captions), s)
        summary = describe(DescribeConfig(annotations=name, backend="rules"), s)
        assert summary["ok"] == summary["rows"], summary  # the gate takes every rules description of them
    return s


def _build(store: Store, shared_data: Path, source: str, roi: str, **kw) -> dict:
    """datasets/<source>-<roi> (or kw name), built once per module; its meta.json counts and statistics."""
    dataset = kw.pop("name", f"{source}-{roi}")
    if not store.exists("datasets", dataset):
        cfg = BuildConfig(
            annotations=source, descriptions=[kw.pop("descriptions", source)], name=dataset, roi=roi,
            images=shared_data / "coco_format" / source, workers=0, **kw,
        )  # fmt: skip
        build_dataset(cfg, store)
    meta = store.meta("datasets", dataset)
    return {**meta["counts"], "statistics": meta["statistics"]}


def _rows(store: Store, dataset: str) -> list[dict]:
    files = sorted((store.path("datasets", dataset) / "data").glob("*.parquet"))
    return [r for f in files for r in pq.read_table(f).to_pylist()]


def _png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


@pytest.mark.parametrize("roi", ["keypoints", "box", "mask"])
def test_coco_builds_with_each_roi_and_stores_that_region(store, shared_data, roi):
    summary = _build(store, shared_data, "coco", roi, max_side=320)
    fallbacks = {"keypoints": (), "box": ("keypoints",), "mask": ("box", "keypoints")}[roi]
    assert summary["images"] == 4
    assert summary["roi"] == {"source": roi, "instances": {roi: 12, **dict.fromkeys(fallbacks, 0), "none": 0}}
    meta = store.meta("datasets", f"coco-{roi}")
    assert meta["config"]["roi"] == roi and meta["config"]["origin"] == "coco"
    assert meta["skeletons"][0]["name"] == "coco-17"
    card = (store.path("datasets", f"coco-{roi}") / "README.md").read_text()
    assert f"**{roi}** (`build-dataset --roi {roi}`)" in card and f"| {roi} | 12 |" in card
    assert yaml.safe_load(card.split("---\n")[1])["pretty_name"].startswith("COCO-format")
    anns = {a.image: a for a in read_annotations(store.path("annotations", "coco") / "annotations.parquet")}
    for row in _rows(store, f"coco-{roi}"):
        ann = anns[row["image_id"]]
        w, h = row["width"], row["height"]
        assert max(w, h) == 320 and row["skeleton"] == "coco-17"
        sx, sy = w / ann.width, h / ann.height
        person, source = row["people"][0], ann.people[0]
        assert len(person["keypoints"]) == 51 and person["label"] == "person" and person["roi"] == roi
        np.testing.assert_allclose(person["box"], np.array(source.source_box) * [sx, sy, sx, sy], rtol=1e-5)
        # The stored heatmap is exactly the chosen region, drawn at the stored size.
        kps = ann.keypoints * np.array([sx, sy, 1], np.float32)
        boxes = np.array([p.source_box for p in ann.people]) * [sx, sy, sx, sy]
        segs = [p.segmentation for p in ann.people]
        args = {
            "keypoints": (kps, np.zeros((0, 4)), []),
            "box": (kps[:0], boxes, []),
            "mask": (kps[:0], np.zeros((0, 4)), segs),
        }[roi]
        expected = to_uint8(instance_heatmap(*args, (w, h), mask_size=(ann.width, ann.height)))
        stored = _png(row["heatmap"]["bytes"])
        np.testing.assert_array_equal(stored, expected)
        if roi == "mask":  # covers the masks: the pixels wholly inside every instance's mask are at 255
            union = np.zeros((ann.height, ann.width), bool)
            for seg in segs:
                union |= decode_mask(seg, (ann.width, ann.height)) > 0
            small = np.asarray(Image.fromarray(union.astype(np.float32)).resize((w, h), Image.Resampling.BOX))
            assert stored[small >= 1.0].min() == 255 and stored[small <= 0.0].max() == 0


def test_fallbacks_are_counted_and_animals_keep_their_species(store, shared_data):
    crowd = _build(store, shared_data, "crowdpose", "mask")  # CrowdPose has boxes, no masks
    assert crowd["roi"]["instances"] == {"mask": 0, "box": 4, "keypoints": 0, "none": 0}
    card = (store.path("datasets", "crowdpose-mask") / "README.md").read_text()
    assert "| box (fallback) | 4 |" in card and "`crowdpose-14`: 14 joints" in card
    animals = _build(store, shared_data, "ap10k", "box")
    assert animals["roi"]["instances"] == {"box": 2, "keypoints": 0, "none": 0}
    rows = _rows(store, "ap10k-box")
    assert sorted(p["label"] for r in rows for p in r["people"]) == ["antelope", "jaguar"]
    assert {r["skeleton"] for r in rows} == {"ap10k-17"} and animals["statistics"]["labels"] == {
        "jaguar": 1, "antelope": 1
    }  # fmt: skip
    ds = datasets.load_dataset(str(store.path("datasets", "ap10k-box")), cache_dir=str(store.root / "hf"))
    row = ds["train"][0]
    assert len(row["people"][0]["keypoints"]) == 51 and row["skeleton"] == "ap10k-17"
    assert row["people"][0]["roi"] == "box" and row["heatmap"].size == row["image"].size


def test_crowd_regions_and_keypointless_instances_draw_from_box_or_mask(store, shared_data, tmp_path):
    raw = json.loads((shared_data / "coco_format" / "coco" / "test_coco.json").read_text())
    image = next(i for i in raw["images"] if i["id"] == 40083)
    h, w = image["height"], image["width"]
    region = np.zeros((h, w), np.uint8)
    region[20:60, 30:90] = 1
    flat = region.flatten(order="F")  # COCO's uncompressed RLE: column-major runs, 0s first
    runs = np.diff(np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])).tolist()
    raw["annotations"].append(
        {"id": 1, "image_id": 40083, "category_id": 1, "iscrowd": 1, "bbox": [30, 20, 60, 40],
         "segmentation": {"size": [h, w], "counts": runs}, "keypoints": [0] * 51}
    )  # fmt: skip
    path = tmp_path / "crowd.json"
    path.write_text(json.dumps(raw))
    cfg = ConvertConfig(
        sources=[path], name="crowd", split="train", keep_crowd=True, keep_people_without_keypoints=True
    )
    convert(cfg, store)
    describe(DescribeConfig(annotations="crowd", backend="rules"), store)
    folder = shared_data / "coco_format" / "coco"
    by_roi = {}
    for roi in ("keypoints", "mask"):
        cfg = BuildConfig(
            annotations="crowd", descriptions=["crowd"], images=folder, name=f"crowd-{roi}", roi=roi,
            workers=0,
        )  # fmt: skip
        by_roi[roi] = build_dataset(cfg, store)["roi"]["instances"]
    # the crowd region and the two small keypoint-less people: nothing under keypoints, their masks under mask
    assert by_roi == {
        "keypoints": {"keypoints": 12, "none": 3},
        "mask": {"mask": 15, "box": 0, "keypoints": 0, "none": 0},
    }
    row = next(r for r in _rows(store, "crowd-mask") if r["image_id"] == image["file_name"])
    hm = _png(row["heatmap"]["bytes"])
    assert hm[20:60, 30:90].min() == 255 and row["people"][-1]["crowd"] is True
    plain = next(r for r in _rows(store, "crowd-keypoints") if r["image_id"] == image["file_name"])
    assert _png(plain["heatmap"]["bytes"])[25:55, 35:85].max() < 255  # no crowd blob without --roi box/mask


def test_captions_become_the_descriptions(store, shared_data):
    summary = describe(
        DescribeConfig(annotations="coco", backend="captions", name="coco-captions", overwrite=True), store
    )
    assert summary["rows"] == 9 and summary["images"] == 3 and summary["images_without_captions"] == 1
    table = read_descriptions(store.path("descriptions", "coco-captions") / "descriptions.parquet")
    assert set(table.column("status").to_pylist()) == {"ok"} and set(table.column("source").to_pylist()) == {
        "captions"
    }  # fmt: skip
    assert sorted(table.column("sample").to_pylist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    built = _build(
        store, shared_data, "coco", "mask", descriptions="coco-captions", name="coco-captions-mask"
    )
    assert built["images"] == 3 and built["skipped_images"] == {"no_description": 1}
    row = _rows(store, "coco-captions-mask")[0]
    assert row["description"].startswith("caption 0 of image") and len(row["descriptions"]) == 3
    card = (store.path("datasets", "coco-captions-mask") / "README.md").read_text()
    assert "none (captions backend)" in card
    # the card says what the texts are: human captions, not a model's pose descriptions
    assert "# COCO-format Captions: `coco-captions-mask`" in card and "human-written captions" in card
    assert "gpt-4-0613" not in card and "one request per image" not in card


@pytest.mark.parametrize(
    ("build", "extra", "source"),
    [
        # the README recipe: human captions, mask ROI, FocusCLIP
        (("coco", "mask", {"descriptions": "coco-captions", "name": "coco-captions-mask"}), {}, "dataset"),
        (("coco", "keypoints", {"max_side": 320}), {"heatmap_parts": True}, "keypoints"),  # COCO-17 parts
        (("ap10k", "box", {}), {}, "dataset"),
    ],
    ids=["captions-mask", "coco-keypoint-parts", "ap10k-box"],
)
def test_focusclip_trains_a_few_steps(store, shared_data, build, extra, source):
    name, roi, kw = build
    if kw.get("descriptions") and not store.exists("descriptions", kw["descriptions"]):
        describe(DescribeConfig(annotations=name, backend="captions", name=kw["descriptions"]), store)
    _build(store, shared_data, name, roi, **kw)
    dataset = kw.get("name", f"{name}-{roi}")
    summary = train(
        TrainConfig(dataset=dataset, model_type="focusclip", name=f"t-{dataset}", **TINY, **extra), store
    )
    assert summary["steps"] == 3 and np.isfinite(summary["final_loss"])
    meta = store.meta("runs", f"t-{dataset}")
    assert meta["heatmap_source"] == source and meta["config"]["heatmap_source"] is None


def test_keypoint_heatmaps_are_refused_on_a_mask_dataset(store, shared_data):
    from typer.testing import CliRunner

    from pipeline.cli import app

    _build(store, shared_data, "crowdpose", "mask")
    train_args = ["--dataset", "crowdpose-mask", "--model-type", "focusclip", "--heatmap-source", "keypoints"]
    result = CliRunner().invoke(app, ["--store", str(store.root), "train", *train_args])
    assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1
    assert "--heatmap-source keypoints: datasets/crowdpose-mask was built with --roi mask" in result.output
    assert not store.exists("runs", "crowdpose-mask-focusclip")


def test_a_mask_that_does_not_fit_its_image_file_drops_that_instance(tmp_path):
    from pipeline.build_dataset.images import ImageJob, ImageOptions, process_image
    from pipeline.records import Person

    Image.new("RGB", (100, 40)).save(tmp_path / "a.jpg")
    rle = json.dumps({"size": [10, 10], "counts": [100]})  # a 10 x 10 mask: the file is 100 x 40
    fits = json.dumps({"size": [40, 100], "counts": [0, 4000]})  # the whole image
    people = [Person(segmentation=rle), Person(segmentation=fits)]
    job = ImageJob(str(tmp_path / "a.jpg"), people, ["mask", "mask"], ["text"])
    res = process_image(job, ImageOptions(None, 95, False, 1))
    assert res.reason is None and list(res.dropped) == [0]
    assert res.dropped[0].reason == "rle_size_not_image"
    assert "mask of 10x10 px on an image of 100x40 px" in res.dropped[0].detail
    assert _png(res.heatmap).min() == 255  # the other instance's mask covers the image
