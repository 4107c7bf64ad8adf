"""The synthetic sample: exact poses, determinism, the real source formats read back by the real readers."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import geometry
from pipeline.records import VISIBLE
from pipeline.synthetic import ACTIVITIES, BODY_STATES, SampleConfig, SceneSpec, generate_sample, render_scene
from pipeline.synthetic.poses import sample_body, sample_pose
from pipeline.synthetic.sample import mpii_annotations, stanford_name

SMALL = SampleConfig(seed=3, images=24, action_test_per_class=2, action_train_per_class=1,
                     state_test_per_class=3, state_train_per_class=1)  # fmt: skip


def _image_kps(local: np.ndarray) -> np.ndarray:
    """Local pose (y up, body units) -> image-style (16, 3) keypoints the geometry module takes."""
    kps = np.empty((16, 3), dtype=np.float32)
    kps[:, :2] = local * np.array([1.0, -1.0]) * 200.0
    kps[:, 2] = VISIBLE
    return kps


@pytest.fixture(scope="module")
def sample(module_tmp) -> Path:
    root = module_tmp("sample") / "s"
    generate_sample(SMALL, root)
    return root


def test_forward_kinematics_keeps_segment_lengths():
    rng = np.random.default_rng(0)
    g = geometry
    for activity in ACTIVITIES:
        body = sample_body(rng)
        kps = sample_pose(activity.name, body, rng).keypoints
        for (a, b), length in {
            (g.L_SHOULDER, g.L_ELBOW): body.upper_arm, (g.R_ELBOW, g.R_WRIST): body.forearm,
            (g.L_HIP, g.L_KNEE): body.thigh, (g.R_KNEE, g.R_ANKLE): body.shin, (g.NECK, g.HEAD): body.head,
        }.items():  # fmt: skip
            assert np.linalg.norm(kps[a] - kps[b]) == pytest.approx(length, rel=1e-9), activity.name


@pytest.mark.parametrize("activity", ACTIVITIES, ids=lambda a: a.name)
def test_every_pose_reads_as_its_activity(activity):
    """The pose geometry that the rules describer uses finds what each activity is meant to show."""
    rng = np.random.default_rng(1)
    for _ in range(60):
        kps = _image_kps(sample_pose(activity.name, sample_body(rng), rng).keypoints)
        f = geometry.person_facts(kps)
        if activity.state is not None:
            assert f.state == activity.state
        above = [f.limbs[f"{s} arm"].above_head for s in ("left", "right")]
        raised = [f.limbs[f"{s} arm"].raised for s in ("left", "right")]
        if activity.name == "raising both arms":
            assert all(above)
        elif activity.name == "waving":
            assert sum(raised) == 1
        elif activity.name in ("standing", "walking", "sitting"):
            assert not any(raised)
        if activity.name == "lying down":
            assert f.torso == "horizontal"
        if activity.name == "bending over":
            assert f.torso == "leaning"
        if activity.name == "kicking":
            assert sum(f.limbs[f"{s} leg"].raised for s in ("left", "right")) == 1
        if activity.name in ("sitting", "squatting", "running"):
            assert min(f.angles[k] for k in ("left knee", "right knee")) < 125


def test_unknown_activity_is_refused():
    with pytest.raises(ValueError, match="unknown activity"):
        sample_pose("juggling", sample_body(np.random.default_rng(0)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown activities"):
        SampleConfig(activities=("juggling",))


def test_scene_is_deterministic_and_keypoints_lie_on_the_drawn_people():
    spec = SceneSpec(size=(160, 128), clutter=(0, 0), noise=0.0)
    a = render_scene("waving", np.random.default_rng([5, 0, 1]), spec, n_people=2)
    b = render_scene("waving", np.random.default_rng([5, 0, 1]), spec, n_people=2)
    c = render_scene("waving", np.random.default_rng([6, 0, 1]), spec, n_people=2)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))
    assert len(a.people) == 2
    img = np.asarray(a.image).astype(int)
    for person, (x1, y1, x2, y2) in zip(a.people, a.extents, strict=True):
        xy = person.keypoints[:, :2]
        assert (person.keypoints[:, 2] == VISIBLE).all()
        assert (xy >= 0).all() and (xy[:, 0] < 160).all() and (xy[:, 1] < 128).all()
        assert x1 <= xy[:, 0].min() and xy[:, 0].max() <= x2 and y1 <= xy[:, 1].min() and xy[:, 1].max() <= y2
        # Without clutter, the background is a vertical gradient (one colour per row) and a flat floor:
        # at the body's joints the pixel differs from its row's left edge, i.e. something was drawn there.
        body = [geometry.PELVIS, geometry.THORAX, geometry.NECK, geometry.L_HIP, geometry.R_HIP]
        for j in body:
            x, y = (int(round(v)) for v in xy[j])
            assert np.abs(img[y, x] - img[y, 0]).sum() > 0 or np.abs(img[y, x] - img[y, -1]).sum() > 0
        assert 0 < person.scale < 1.0 and person.head_box[0] < person.head_box[2]


def test_images_do_not_depend_on_the_sample_size():
    small = mpii_annotations(SampleConfig(seed=3, images=5))
    large = mpii_annotations(SampleConfig(seed=3, images=12))
    for a, b in zip(small, large[:5], strict=True):
        assert a.image == b.image and a.activity == b.activity
        assert np.array_equal(a.keypoints, b.keypoints)
    # Activities are balanced: each appears once in the first len(ACTIVITIES) images.
    assert sorted(r.activity for r in large[:10]) == sorted(a.name for a in ACTIVITIES)


def test_mat_reads_back_through_convert_reader(sample):
    from pipeline.sources.formats import read_source

    source = read_source(sample / "mpii" / "mpii_human_pose_v1_u12_1.mat")
    expected = mpii_annotations(SMALL)
    assert source.format == "mat" and len(source.images) == SMALL.images
    for row in expected:
        got = source.images[row.image]
        assert (got.split, got.activity, got.category, got.activity_id) == (
            "train", row.activity, row.category, row.activity_id)  # fmt: skip
        assert len(got.people) == len(row.people)
        for p, q in zip(got.people, row.people, strict=True):
            np.testing.assert_allclose(p.keypoints, q.keypoints, atol=1e-4)
            np.testing.assert_allclose(p.center, q.center, atol=1e-4)
            assert p.scale == pytest.approx(q.scale, abs=1e-6)
        assert (sample / "mpii" / "images" / row.image).is_file()
    with Image.open(sample / "mpii" / "images" / expected[0].image) as im:
        assert im.size == SMALL.image_size and im.format == "JPEG"


def test_stanford40_layout_reads_with_the_eval_reader(sample):
    from evaluation.readers.base import ReaderInput
    from evaluation.readers.stanford40 import read

    root = sample / "eval" / "stanford40"
    result = read(ReaderInput(root=root, split="test"))
    assert result.classes == tuple(stanford_name(a.name) for a in ACTIVITIES)
    assert not result.skipped
    assert len(result.samples) == SMALL.action_test_per_class * len(ACTIVITIES)
    labels = [s.labels["action"] for s in result.samples]
    assert sorted(set(labels)) == sorted(result.classes)
    train = read(ReaderInput(root=root, split="train"))
    assert len(train.samples) == SMALL.action_train_per_class * len(ACTIVITIES)
    assert not {s.name for s in train.samples} & {s.name for s in result.samples}
    boxed = read(ReaderInput(root=root, split="test", options={"crop": "person"}))
    for s in boxed.samples:
        x1, y1, x2, y2 = s.box
        assert 0 <= x1 < x2 < SMALL.image_size[0] and 0 <= y1 < y2 < SMALL.image_size[1]


def test_body_state_folders_read_with_the_fer_reader(sample):
    from evaluation.readers.fer2013 import read_folder

    result = read_folder(sample / "eval" / "fer2013" / "test")
    counts = {}
    for s in result.samples:
        counts[s.labels["emotion"]] = counts.get(s.labels["emotion"], 0) + 1
        with Image.open(s.source) as im:
            assert im.size == (SMALL.crop_size, SMALL.crop_size)
    assert counts == dict.fromkeys(BODY_STATES, SMALL.state_test_per_class)


def _digests(folder: Path) -> set[str]:
    return {hashlib.sha256(np.asarray(Image.open(io.BytesIO(p.read_bytes()))).tobytes()).hexdigest()
            for p in folder.rglob("*.jpg")}  # fmt: skip


def test_eval_images_are_held_out_and_sample_is_reused(sample):
    train = _digests(sample / "mpii" / "images")
    assert not train & _digests(sample / "eval" / "stanford40" / "JPEGImages")
    manifest = json.loads((sample / "manifest.json").read_text())
    assert manifest["counts"]["images"] == SMALL.images
    stamp = (sample / "manifest.json").stat().st_mtime_ns
    layout = generate_sample(SMALL, sample)  # same config: nothing rewritten
    assert (sample / "manifest.json").stat().st_mtime_ns == stamp
    assert layout.counts == manifest["counts"]
