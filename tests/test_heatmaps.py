"""ROI heatmaps: peak at the box centre, values in [0, 1], invisible joints ignored, NumPy == torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.heatmaps import pad_people, roi_heatmap, roi_heatmap_torch, to_uint8
from pipeline.records import MISSING, OCCLUDED, VISIBLE, empty_keypoints
from pipeline.skeletons import MPII


def person(box: tuple[float, float, float, float], extra: dict[int, tuple[float, float, int]] | None = None):
    """Joints spread over box (x1, y1, x2, y2): its corners are joints, so the keypoint box is exactly box."""
    x1, y1, x2, y2 = box
    kps = empty_keypoints()
    for j, (x, y) in enumerate([(x1, y1), (x2, y2), (x1, y2), (x2, y1), ((x1 + x2) / 2, (y1 + y2) / 2)]):
        kps[j] = (x, y, VISIBLE)
    for j, (x, y, v) in (extra or {}).items():
        kps[j] = (x, y, v)
    return kps


def test_peak_at_box_centre_and_range():
    hm = roi_heatmap(person((100, 100, 200, 300))[None], image_size=(400, 400), out_size=(400, 400))
    assert hm.shape == (400, 400) and hm.dtype == np.float32
    y, x = np.unravel_index(np.argmax(hm), hm.shape)
    assert abs(x + 0.5 - 150) <= 0.5 and abs(y + 0.5 - 200) <= 0.5
    assert hm.max() == pytest.approx(1.0, abs=1e-3) and hm.min() >= 0.0
    # The axes are half the box: one standard deviation from the centre the value is exp(-1/2).
    assert hm[199, 150 + 50] == pytest.approx(np.exp(-0.5), abs=0.02)
    assert hm[200 + 100, 149] == pytest.approx(np.exp(-0.5), abs=0.02)


def test_overlapping_people_are_summed_and_clipped():
    kps = np.stack([person((100, 100, 200, 300)), person((110, 100, 210, 300)), person((300, 20, 380, 60))])
    hm = roi_heatmap(kps, image_size=(400, 400), out_size=(200, 200))
    assert hm.max() <= 1.0 and hm.min() >= 0.0
    assert (hm == 1.0).sum() > 10  # two people on top of each other saturate
    assert hm[20, 170] > 0.9  # the third person's centre (340, 40) at half resolution


def test_invisible_joints_are_ignored():
    base = person((100, 100, 200, 300))
    # A far-away joint that is not annotated: coordinates present, v = 0. It must not move the box.
    with_missing = person((100, 100, 200, 300), {10: (390.0, 10.0, MISSING)})
    a = roi_heatmap(base[None], (400, 400), (128, 128))
    b = roi_heatmap(with_missing[None], (400, 400), (128, 128))
    np.testing.assert_array_equal(a, b)
    # An occluded (annotated) joint does count.
    c = roi_heatmap(person((100, 100, 200, 300), {10: (390.0, 10.0, OCCLUDED)})[None], (400, 400), (128, 128))
    assert not np.allclose(a, c)
    # Nobody known: an empty map.
    assert roi_heatmap(empty_keypoints()[None], (400, 400), (32, 32)).max() == 0.0
    assert roi_heatmap(np.zeros((0, 16, 3), np.float32), (400, 400), (32, 32)).shape == (32, 32)


@pytest.mark.parametrize("out_size", [(224, 224), (64, 48), (37, 101)])
def test_any_output_size(out_size):
    w, h = out_size
    hm = roi_heatmap(person((100, 100, 200, 300))[None], image_size=(400, 400), out_size=out_size)
    assert hm.shape == (h, w)
    y, x = np.unravel_index(np.argmax(hm), hm.shape)
    assert abs((x + 0.5) * 400 / w - 150) <= 400 / w and abs((y + 0.5) * 400 / h - 200) <= 400 / h


def test_default_size_is_the_source_size():
    assert roi_heatmap(person((10, 10, 20, 20))[None], image_size=(30, 40)).shape == (40, 30)


def _random_batch(seed: int, b: int = 4, p: int = 3):
    rng = np.random.default_rng(seed)
    kps = np.zeros((b, p, 16, 3), np.float32)
    kps[..., 0] = rng.uniform(0, 640, (b, p, 16))
    kps[..., 1] = rng.uniform(0, 480, (b, p, 16))
    kps[..., 2] = rng.choice([MISSING, OCCLUDED, VISIBLE], (b, p, 16), p=[0.3, 0.2, 0.5])
    kps[kps[..., 2] == MISSING, :2] = np.nan
    kps[0, 1, :, 2] = MISSING  # a padding person
    sizes = np.stack([rng.uniform(500, 800, b), rng.uniform(400, 600, b)], axis=1).astype(np.float32)
    return kps, sizes


@pytest.mark.parametrize("parts", [False, True])
def test_numpy_equals_torch(parts):
    kps, sizes = _random_batch(0)
    ref = np.stack([roi_heatmap(k, tuple(s), (96, 80), parts=parts) for k, s in zip(kps, sizes, strict=True)])
    got = roi_heatmap_torch(torch.from_numpy(kps), torch.from_numpy(sizes), (96, 80), parts=parts)
    assert got.shape == (4, 80, 96) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_torch_on_gpu_matches_cpu():
    kps, sizes = _random_batch(1)
    cpu = roi_heatmap_torch(torch.from_numpy(kps), torch.from_numpy(sizes), (224, 224))
    gpu = roi_heatmap_torch(torch.from_numpy(kps).cuda(), torch.from_numpy(sizes).cuda(), (224, 224))
    assert gpu.device.type == "cuda"
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu.numpy(), atol=1e-5)


def test_parts_variant_puts_a_blob_per_part():
    kps = empty_keypoints()
    # Only the left forearm is known: the parts map has one blob along it, the whole-person map the same box.
    kps[14] = (100, 100, VISIBLE)  # left elbow
    kps[15] = (100, 200, VISIBLE)  # left wrist
    kps[9] = (300, 20, VISIBLE)  # head top alone: the "head" part needs neck and head; one joint is enough
    whole = roi_heatmap(kps[None], (400, 400), (400, 400))
    parts = roi_heatmap(kps[None], (400, 400), (400, 400), parts=True)
    assert parts.shape == whole.shape and parts.min() >= 0 and parts.max() <= 1
    assert parts[150, 100] == pytest.approx(1.0, abs=0.02)  # forearm centre
    assert parts[20, 300] == pytest.approx(1.0, abs=0.02)  # the head blob sits on the lone head joint
    assert whole[20, 300] < 0.5  # the whole-person blob is centred between all three joints instead
    assert "left forearm" in MPII.parts


def test_pad_people_and_uint8():
    a, b = person((0, 0, 10, 10))[None], np.stack([person((5, 5, 9, 9))] * 3)
    padded = pad_people([a, b, np.zeros((0, 16, 3), np.float32)])
    assert padded.shape == (3, 3, 16, 3)
    assert (padded[0, 1:, :, 2] == MISSING).all() and (padded[2, :, :, 2] == MISSING).all()
    hm = roi_heatmap_torch(torch.from_numpy(padded), torch.tensor([[20.0, 20.0]] * 3), (20, 20))
    assert hm[2].max() == 0
    u8 = to_uint8(np.array([0.0, 0.5, 1.0, 1.5, -1.0]))
    assert u8.dtype == np.uint8 and u8.tolist() == [0, 128, 255, 255, 0]


# The body parts the MPII part heatmap used before skeletons existed (heatmaps.BODY_PARTS, by
# pipeline.geometry's joint constants), written out so that the skeleton-driven version is held to them.
OLD_BODY_PARTS = {
    "head": (8, 9),  # upper neck, head top
    "torso": (7, 6, 13, 12, 3, 2),  # thorax, pelvis, shoulders, hips
    "left upper arm": (13, 14),
    "left forearm": (14, 15),
    "right upper arm": (12, 11),
    "right forearm": (11, 10),
    "left thigh": (3, 4),
    "left shin": (4, 5),
    "right thigh": (2, 1),
    "right shin": (1, 0),
}


@pytest.mark.parametrize("seed", [0, 1])
def test_mpii_part_heatmap_is_the_old_body_parts_one(seed):
    """Same groups in the same order: bit-identical maps, NumPy and torch."""
    import dataclasses

    assert {k: set(v) for k, v in MPII.parts.items()} == {k: set(v) for k, v in OLD_BODY_PARTS.items()}
    assert list(MPII.parts) == list(OLD_BODY_PARTS)
    old = dataclasses.replace(MPII, parts=OLD_BODY_PARTS)
    kps, sizes = _random_batch(seed)
    for k, s in zip(kps, sizes, strict=True):
        np.testing.assert_array_equal(
            roi_heatmap(k, tuple(s), (96, 80), parts=True),
            roi_heatmap(k, tuple(s), (96, 80), parts=True, skeleton=old),
        )
    t_kps, t_sizes = torch.from_numpy(kps), torch.from_numpy(sizes)
    assert torch.equal(
        roi_heatmap_torch(t_kps, t_sizes, (64, 64), parts=True),
        roi_heatmap_torch(t_kps, t_sizes, (64, 64), parts=True, skeleton=old),
    )
