"""describe --with-image against the local OpenAI-protocol server: the request's image part (decoded and
compared with what the resizer makes from the real file), the cache key (source bytes and settings), hosted
URLs, per-row image errors, budgets and rate limits counting image tokens, the Batch API, the CLI.
Real MPII images from shared/data/mpii/mmpose_tests (read there, or linked from a temporary folder)."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from fake_openai import FakeOpenAI
from PIL import Image
from test_describe_rules import csv_annotations, put_annotations

from pipeline.describe import DescribeConfig, describe
from pipeline.describe.image_input import (
    JPEG_QUALITY,
    RENDERING,
    ImageChanged,
    ImageSettings,
    fit_size,
    prepare,
    render,
)
from pipeline.describe.image_tokens import image_tokens
from pipeline.describe.prompting import PROMPTS_DIR
from pipeline.errors import PipelineError

MPII = "mpii/mmpose_tests"


@pytest.fixture(scope="module")
def five(shared_data):
    """The activity-CSV rows of the five real images (one annotated person each)."""
    names = {p.name for p in (shared_data / MPII).glob("*.jpg")}
    rows = [r for r in csv_annotations(shared_data, 17372) if r.image in names]
    assert len(rows) == 5
    return rows


@pytest.fixture
def server():
    with FakeOpenAI() as srv:
        yield srv


@pytest.fixture
def images(shared_data, tmp_path):
    """A folder of copies of the five real images (files here may be replaced; the originals never change)."""
    folder = tmp_path / "images"
    folder.mkdir()
    for src in (shared_data / MPII).glob("*.jpg"):
        shutil.copyfile(src, folder / src.name)
    return folder


@pytest.fixture
def tagged(tmp_path):
    """The grounded-image prompt with the image name on top, so the server can answer per image."""
    folder = tmp_path / "tagged"
    shutil.copytree(PROMPTS_DIR / "grounded-image", folder)
    (folder / "user.j2").write_text("Image {{ image }}\n" + (folder / "user.j2").read_text())
    return str(folder)


def cfg(server, images, **kw) -> DescribeConfig:
    base = {
        "annotations": "mpii", "backend": "openai", "base_url": server.url, "model": "gpt-4o",
        "with_image": True, "images": str(images) if images else None, "concurrency": 2, "timeout": 5.0,
        "max_retries": 1, "backoff": 0.01,
    }  # fmt: skip
    return DescribeConfig(**(base | kw))


def table(store, name="mpii") -> pd.DataFrame:
    return pd.read_parquet(store.path("descriptions", name) / "descriptions.parquet").set_index("image")


def journal_images(store, name="mpii") -> dict[str, dict]:
    path = store.path("descriptions", name) / "journal.sqlite"
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT image, image_input FROM results").fetchall()
    return {image: json.loads(rec) for image, rec in rows if rec}


def test_the_request_carries_the_resized_image_and_the_grounded_prompt(server, store, five, shared_data):
    put_annotations(store, "mpii", five)
    server.max_image_side = 768  # the server refuses anything larger (400), as a provider's limit would
    summary = describe(cfg(server, shared_data / MPII), store)
    assert summary["ok"] == 5 and len(server.requests) == 5
    by_image = {r.image: r for r in five}
    for req in server.requests:
        (part,) = req["images"]
        assert part["kind"] == "data" and part["format"] == "JPEG" and part["detail"] == "auto"
        assert max(part["size"]) == 768
        assert "Keypoints:" in req["user"] and "Pose facts:" in req["user"]  # the grounded context
        assert "The photograph is attached; the keypoints are in its original" in req["user"]
    # Each image sent is exactly what the resizer makes from the real file, and looks like the photo.
    sent = [blob for n in sorted(server.image_data) for blob in server.image_data[n]]
    expected = {}
    for ann in five:
        inp = prepare(ann.image, ImageSettings(images=shared_data / MPII))
        expected[render(inp, ann.keypoints)] = ann.image
    assert sorted(expected[b] for b in sent) == sorted(by_image)
    for blob in sent:
        path = shared_data / MPII / expected[blob]
        with Image.open(path) as src, Image.open(io.BytesIO(blob)) as got:
            assert got.size == fit_size(*src.size, 768)
            ref = np.asarray(src.convert("RGB").resize(got.size, Image.Resampling.LANCZOS), dtype=np.float32)
            diff = np.abs(np.asarray(got.convert("RGB"), dtype=np.float32) - ref).mean()
            assert diff < 3.0, (path.name, diff)  # JPEG quality 90; another photo differs by ~40
    # The journal records what was sent; meta.json the fixed settings.
    recorded = journal_images(store)
    assert recorded["052475643.jpg"]["sent_size"] == [768, 432]
    assert recorded["052475643.jpg"] | {"sha256": None} == {
        "sha256": None, "size": 768, "quality": JPEG_QUALITY, "detail": "auto", "mark": "none",
        "rendering": RENDERING, "sent_size": [768, 432],
    }  # fmt: skip
    meta = store.meta("descriptions", "mpii")["config"]
    assert meta["with_image"] and meta["template_name"] == "grounded-image"
    assert meta["image"] == {"jpeg_quality": JPEG_QUALITY, "rendering": RENDERING, "family": "gpt-4o",
                             "family_assumed": False}  # fmt: skip
    assert meta["image_family"] is None and meta["images"] == str(shared_data / MPII)
    df = table(store)
    assert (df.status == "ok").all() and df.description.str.contains("wooden floor").all()  # vision replies


def test_the_server_refuses_an_image_over_its_limit(server, store, five, shared_data):
    put_annotations(store, "mpii", five[:2])
    server.max_image_side = 512
    summary = describe(cfg(server, shared_data / MPII, max_retries=0, allow_partial=True,
                           max_error_share=1.0), store)  # fmt: skip
    assert summary["error"] == 2 and all("over the 512 px limit" in r["refused"] for r in server.requests)
    assert table(store).error.str.startswith("HTTP 400").all()
    fits = describe(cfg(server, shared_data / MPII, image_size=512, overwrite=True), store)
    assert fits["ok"] == 2 and all(max(r["images"][0]["size"]) == 512 for r in server.requests[2:])


def test_key_changed_bytes_are_asked_again_same_are_not(server, store, five, images, tagged):
    put_annotations(store, "mpii", five)
    assert describe(cfg(server, images, template=tagged), store)["requests_sent"] == 5
    assert describe(cfg(server, images, template=tagged), store)["requests_sent"] == 0  # same bytes: cached

    # One file replaced by other bytes (the same picture re-encoded): that row alone is asked again.
    target = images / "060754485.jpg"
    with Image.open(target.resolve()) as im:
        im = im.convert("RGB")
    target.unlink()
    im.save(target, "JPEG", quality=70)
    again = describe(cfg(server, images, template=tagged), store)
    assert again["requests_sent"] == 1 and again["cache_hits"] == 4
    assert server.requests[-1]["user"].startswith("Image 060754485.jpg")

    # Each sending setting is in the key; the journal keeps both, so changing back costs nothing.
    assert describe(cfg(server, images, template=tagged, image_size=512), store)["requests_sent"] == 5
    assert describe(cfg(server, images, template=tagged, image_mark="box"), store)["requests_sent"] == 5
    assert describe(cfg(server, images, template=tagged, image_detail="low"), store)["requests_sent"] == 5
    assert describe(cfg(server, images, template=tagged), store)["requests_sent"] == 0
    assert len(server.requests) == 5 + 1 + 15
    boxed = [r for r in server.requests[11:16]]
    assert all(max(r["images"][0]["size"]) == 768 for r in boxed)
    assert all(r["images"][0]["detail"] == "low" for r in server.requests[16:])


def test_hosted_images_are_sent_as_urls_and_keyed_by_them(server, store, five):
    put_annotations(store, "mpii", five[:3])
    base = "https://images.example.org/mpii"
    summary = describe(cfg(server, None, image_url_base=base), store)
    assert summary["ok"] == 3
    urls = sorted(r["images"][0]["url"] for r in server.requests)
    assert urls == sorted(f"{base}/{r.image}" for r in five[:3])
    assert all(r["images"][0]["kind"] == "url" for r in server.requests)
    assert describe(cfg(server, None, image_url_base=base + "/"), store)["requests_sent"] == 0
    moved = describe(cfg(server, None, image_url_base="https://cdn.example.org/v2/"), store)
    assert moved["requests_sent"] == 3  # the URL string is the key: a new URL is a new request
    with pytest.raises(PipelineError, match="not with --image-url-base"):
        cfg(server, None, image_url_base=base, image_mark="box")


def test_missing_unreadable_and_outside_images_are_error_rows_never_sent(server, store, five, images):
    rows = five[:2]
    broken = [
        csv_annotations_row(five[2], "missing.jpg"),
        csv_annotations_row(five[3], "garbage.jpg"),
        csv_annotations_row(five[4], "truncated.jpg"),
        csv_annotations_row(five[0], "../outside.jpg"),
    ]
    (images / "garbage.jpg").write_bytes(b"not a jpeg at all" * 100)
    (images / "truncated.jpg").write_bytes((images / rows[0].image).read_bytes()[:3000])  # header only
    put_annotations(store, "mpii", rows + broken)
    summary = describe(cfg(server, images, allow_partial=True, max_error_share=1.0), store)
    assert summary["ok"] == 2 and summary["error"] == 4 and len(server.requests) == 2
    df = table(store)
    assert df.loc["missing.jpg", "error"] == f"not sent: image 'missing.jpg' not found in --images {images}"
    assert (
        df.loc["garbage.jpg", "error"] == "not sent: garbage.jpg: not an image file (no format PIL can read)"
    )
    assert df.loc["truncated.jpg", "error"].startswith("not sent: image 'truncated.jpg' cannot be sent")
    assert (
        df.loc["../outside.jpg", "error"]
        == "not sent: image name '../outside.jpg' points outside --images (refused)"
    )
    assert (df.loc[[b.image for b in broken], "attempts"] == 0).all()
    # The file appears: its row is keyed anew (with its bytes) and asked, nothing else is.
    shutil.copyfile(images / rows[1].image, images / "missing.jpg")
    later = describe(cfg(server, images, allow_partial=True, max_error_share=1.0), store)
    assert later["requests_sent"] == 1 and table(store).loc["missing.jpg", "status"] == "ok"


def csv_annotations_row(row, name):
    """The row's people under another image name."""
    from dataclasses import replace

    return replace(row, image=name)


def test_a_file_changed_after_keying_is_not_sent_under_the_old_key(five, images):
    ann = five[0]
    inp = prepare(ann.image, ImageSettings(images=images))
    (images / ann.image).unlink()
    shutil.copyfile(images.parent / "images" / five[1].image, images / ann.image)
    with pytest.raises(ImageChanged, match="changed since the requests were built"):
        render(inp, ann.keypoints)


def test_plan_budget_and_rate_limit_count_image_tokens(server, store, five, images):
    put_annotations(store, "mpii", five)
    price = {"price_input": 1.0, "price_output": 1.0, "max_tokens": 100}
    plan = describe(cfg(server, images, dry_run=True, model="gpt-4o-mini", **price), store)
    per_image = image_tokens(768, 432, "high", "gpt-4o-mini")  # auto budgets as high: 2833 + 2 * 5667
    assert per_image == 14167
    info = plan["image_input"]
    assert info["image_tokens"] == 5 * per_image and info["sizes_read"] == 5 and info["sizes_assumed"] == 0
    assert plan["prompt_tokens"] == info["image_tokens"] + info["text_prompt_tokens"]
    assert info["family"] == "gpt-4o-mini" and info["detail"].startswith("auto (budgeted as high")
    low = describe(cfg(server, images, dry_run=True, image_detail="low", **price), store)
    assert low["image_input"]["image_tokens"] == 5 * 85  # gpt-4o at low detail
    assert not server.requests

    # The budget: each request's worst case is ~15k tokens = ~$0.0153 at $1/1M; $0.04 affords two.
    # (Text alone, ~1k tokens a request, would afford all five.)
    with pytest.raises(PipelineError, match="stopped at --max-cost"):
        describe(cfg(server, images, model="gpt-4o-mini", concurrency=1, max_cost=0.04, **price), store)
    assert len(server.requests) == 2

    # TPM: the bucket refills 2 requests' worth of tokens per second, so the last 3 wait ~0.5 s each.
    need = plan["prompt_tokens"] / 5 + 100
    started = time.monotonic()
    fresh = cfg(server, images, model="gpt-4o-mini", concurrency=1, tpm=120 * need, overwrite=True, **price)
    describe(fresh, store)
    assert time.monotonic() - started > 1.2 and len(server.requests) == 2 + 5


def test_vision_replies_with_people_not_annotated_are_invalid(server, store, five, shared_data, tagged):
    put_annotations(store, "mpii", five[:4])
    im = [r.image for r in five[:4]]
    server.script = {im[0]: ["crowd"], im[1]: ["bystander"], im[2]: ["spectators"]}
    describe(cfg(server, shared_data / MPII, template=tagged), store)
    df = table(store)
    assert df.loc[im[3], "status"] == "ok"
    for image in im[:3]:
        assert df.loc[image, "status"] == "invalid"
        assert df.loc[image, "error"].startswith("describes people the annotations do not have")
    # The same replies are ok as scene; re-judged from the journal, nothing asked again.
    scene = describe(cfg(server, shared_data / MPII, template=tagged, gate=_scene()), store)
    assert scene["requests_sent"] == 0 and scene["ok"] == 4


def _scene():
    from pipeline.describe.validate import Gate

    return Gate(background_people="scene")


def test_batch_lines_carry_images_and_files_are_cut_by_size(server, store, five, images, monkeypatch):
    from pipeline.describe import batch

    put_annotations(store, "mpii", five)
    monkeypatch.setattr(batch, "BATCH_FILE_BYTES", 250_000)  # two or three ~100 KB lines per input file
    summary = describe(cfg(server, images, batch=True, poll_interval=0.01), store)
    assert summary["ok"] == 5 and len(server.batches) >= 2
    assert all(len(r["images"]) == 1 and r["images"][0]["kind"] == "data" for r in server.requests)
    sizes = [len(data) for data in server.files.values() if b'"image_url"' in data]
    assert sizes and max(sizes) <= 250_000


def test_cli_dry_run_and_option_errors(cli, store, five, shared_data):
    put_annotations(store, "mpii", five)
    res = cli("describe", "--annotations", "mpii", "--model", "gpt-4o", "--with-image", "--images",
              shared_data / MPII, "--image-mark", "box", "--dry-run")  # fmt: skip
    assert res.exit_code == 0, res.output
    plan = json.loads(res.output[res.output.index("{") :])
    assert plan["image_input"]["sent_as"] == "data URL: JPEG quality 90, long side at most 768 px, mark box"
    assert plan["image_input"]["image_tokens"] == 5 * image_tokens(768, 432, "high", "gpt-4o")
    vision = ("--model", "m", "--with-image", "--images", ".")
    bad = {
        ("--model", "gpt-4o", "--images", "x"): "--images: only with --with-image",
        ("--model", "gpt-4o", "--template", "grounded-image"): "add --with-image",
        ("--backend", "rules", "--with-image", "--images", "."): "rules cannot see images",
        ("--model", "m", "--with-image", "--image-url-base", "ftp://x/"): "needs an http(s) URL",
        ("--image-mark", "circle"): "--image-mark 'circle'",
        ("--image-family", "gpt-9"): "--image-family 'gpt-9'",
        ("--assume-image-size", "big"): "expected WIDTHxHEIGHT",
        ("--image-size", "10000"): "--image-size must be between 64 and 4096",
    }
    for args, message in bad.items():
        args = args if args[0] in ("--model", "--backend") else (*vision, *args)
        res = cli("describe", "--annotations", "mpii", *args)
        assert res.exit_code != 0 and message in res.output, (args, res.output)


def test_text_only_rows_send_and_record_what_they_did_before(server, store, five):
    put_annotations(store, "mpii", five)
    plain = DescribeConfig(annotations="mpii", backend="openai", base_url=server.url, model="gpt-4o")
    summary = describe(plain, store)
    assert summary["ok"] == 5 and all(r["images"] == [] for r in server.requests)  # string content only
    config = store.meta("descriptions", "mpii")["config"]
    assert not {"with_image", "images", "image_size", "image_mark", "image"} & set(config)
    assert (
        "image_input" not in pq.read_schema(store.path("descriptions", "mpii") / "descriptions.parquet").names
    )
    assert journal_images(store) == {}


def test_local_vision_models_are_counted_by_their_family(server, store, five, images):
    put_annotations(store, "mpii", five)
    unknown = describe(cfg(server, images, model="my-vlm", dry_run=True), store)["image_input"]
    assert unknown["family"].startswith("gpt-4o (assumed: no family matches model 'my-vlm'")
    qwen = describe(cfg(server, images, model="Qwen/Qwen2-VL-7B-Instruct", dry_run=True), store)[
        "image_input"
    ]
    assert qwen["family"] == "qwen2-vl" and qwen["image_tokens"] == 5 * 27 * 15  # 768x432 -> 756x420
    llava = describe(cfg(server, images, model="x", image_family="llava-1.5", dry_run=True), store)[
        "image_input"
    ]
    assert llava["family"] == "llava-1.5" and llava["image_tokens"] == 5 * 576


@pytest.mark.parametrize(("folder", "file"), [("coco", "test_coco.json"), ("ap10k", "test_ap10k.json")])
def test_other_skeletons_marked_with_their_own_edges_never_upscaled(server, store, shared_data, folder, file):
    from pipeline.artifacts.annotations import read_file as read_annotations
    from pipeline.convert import ConvertConfig, convert
    from pipeline.instances import instances

    root = shared_data / "coco_format" / folder
    convert(ConvertConfig(sources=[root / file], name="mpii", split="train"), store)
    anns = read_annotations(store.path("annotations", "mpii") / "annotations.parquet")
    summary = describe(cfg(server, root, image_mark="skeleton"), store)
    assert summary["ok"] == len(anns) == len(server.requests)
    for ann in anns:
        inp = prepare(ann.image, ImageSettings(images=root, mark="skeleton"))
        kps = np.stack([p.keypoints for p in instances(ann)])
        marked = render(inp, kps, edges=ann.skeleton.edges)
        with Image.open(root / ann.image) as src, Image.open(io.BytesIO(marked)) as got:
            assert got.size == fit_size(*src.size, 768)
            assert got.size == src.size or max(src.size) > 768  # COCO's 640 px images are not upscaled
        sent = [b for blobs in server.image_data.values() for b in blobs]
        assert marked in sent  # the image sent is the one marked with this skeleton's edges
    user = server.requests[0]["user"]
    assert ("Pose facts:" in user) == (folder == "coco") and "Describe only the" in user


def test_dry_run_takes_an_unreadable_images_size_from_the_annotations(server, store, shared_data, tmp_path):
    from pipeline.convert import ConvertConfig, convert

    coco = shared_data / "coco_format/coco/test_coco.json"
    convert(ConvertConfig(sources=[coco], name="mpii", split="train"), store)
    empty = tmp_path / "none-here"
    empty.mkdir()
    plan = describe(cfg(server, empty, dry_run=True), store)["image_input"]
    # The COCO file records 640x425, 500x333, 640x429 and 640x392: 2, 1, 2 and 2 tiles for gpt-4o at high.
    assert plan["sizes_read"] == 0 and plan["sizes_from_annotations"] == 4 and plan["sizes_assumed"] == 0
    assert plan["assumed_size"] is None and plan["image_tokens"] == 3 * 425 + 255
    assert plan["not_sendable_now"] == 4  # still not there: a real run would record error rows
