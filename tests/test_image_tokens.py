"""image_tokens: the providers' formulas against hand-worked and published examples."""

from __future__ import annotations

import json

import pytest

from pipeline.describe.image_tokens import family_for, image_tokens, load_families
from pipeline.errors import PipelineError


@pytest.mark.parametrize(
    ("size", "detail", "family", "tokens"),
    [
        # OpenAI's examples: 1024x1024 -> 768x768 = 4 tiles; 2048x4096 -> 1024x2048 -> 768x1536 = 6 tiles.
        ((1024, 1024), "high", "gpt-4o", 85 + 4 * 170),
        ((2048, 4096), "high", "gpt-4o", 85 + 6 * 170),
        ((2048, 4096), "low", "gpt-4o", 85),
        ((2048, 4096), "auto", "gpt-4o", 85 + 6 * 170),  # auto budgets as high
        # A 128x64 image is not scaled up: 1 tile (measured on the API: 267 with 12 text tokens).
        ((128, 64), "high", "gpt-4o", 255),
        ((512, 512), "high", "gpt-4o", 255),
        ((513, 512), "high", "gpt-4o", 425),
        # An MPII frame (1280x720) resized to a 768 long side: 768x432 = 2 x 1 tiles.
        ((768, 432), "high", "gpt-4o", 425),
        ((128, 64), "high", "gpt-4o-mini", 2833 + 5667),  # measured 8512 with 12 text tokens
        ((128, 64), "low", "gpt-4o-mini", 2833),
        ((768, 432), "high", "gpt-4o-mini", 2833 + 2 * 5667),
        # Patches: 1024x1024 = 32 x 32 patches; 1800x2400 scales to 1452 patches (OpenAI's example).
        ((1024, 1024), "high", "gpt-4.1-mini", 1659),  # 1024 * 1.62 = 1658.88, rounded up
        ((1800, 2400), "high", "gpt-4.1-mini", 2353),  # 1452 * 1.62 = 2352.24
        ((1800, 2400), "low", "gpt-4.1-mini", 2353),  # detail has no effect on patch models
        ((128, 64), "high", "gpt-4.1-nano", 20),  # 8 patches * 2.46 = 19.68
        ((128, 64), "high", "o4-mini", 14),  # 8 * 1.72 = 13.76
        # 4000x4000 = 15,625 patches: scaled by sqrt(1536 / 15625) to 1254 px, then to 39 whole patches a side
        # (1248 px): 1521 patches * 2.46 = 3741.66.
        ((4000, 4000), "high", "gpt-4.1-nano", 3742),
        # Qwen2-VL: 720 -> 728 (26 x 28), 1280 -> 1288 (46 x 28); 768x432 -> 756x420 = 27 x 15.
        ((1280, 720), "high", "qwen2-vl", 46 * 26),
        ((768, 432), "low", "qwen2-vl", 27 * 15),
        ((20, 20), "high", "qwen2-vl", 4),  # below min_pixels: scaled up to 56x56
        ((1280, 720), "high", "llava-1.5", 576),
    ],
)
def test_hand_worked_examples(size, detail, family, tokens):
    assert image_tokens(*size, detail, family) == tokens


def test_a_1280x720_frame_at_high_detail_is_six_tiles_for_gpt_4o():
    # Short side 720 is under 768, so no scaling: ceil(1280/512) x ceil(720/512) = 3 x 2 tiles.
    assert image_tokens(1280, 720, "high", "gpt-4o") == 85 + 6 * 170


def test_qwen_matches_transformers_smart_resize():
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    spec = load_families()["qwen2-vl"]
    for w, h in [(1280, 720), (854, 480), (640, 427), (333, 500), (4000, 3000), (5000, 100), (30, 40)]:
        hb, wb = smart_resize(h, w, factor=28, min_pixels=spec["min_pixels"], max_pixels=spec["max_pixels"])
        assert image_tokens(w, h, "high", "qwen2-vl") == (hb // 28) * (wb // 28), (w, h)


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4.1", "gpt-4o"),
        ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("gpt-4.1-nano", "gpt-4.1-nano"),
        ("o4-mini", "o4-mini"),
        ("Qwen/Qwen2-VL-7B-Instruct", "qwen2-vl"),
        ("Qwen/Qwen2.5-VL-3B-Instruct", "qwen2-vl"),
        ("llava:13b", "llava-1.5"),
        ("llava-hf/llava-1.5-7b-hf", "llava-1.5"),
        ("llama3.1:8b", None),
    ],
)
def test_family_for(model, family):
    assert family_for(model) == family


def test_extra_families_file(tmp_path):
    extra = tmp_path / "fam.json"
    extra.write_text(json.dumps({"my-vlm": {"method": "fixed", "match": ["my-vlm"], "tokens": 100}}))
    assert family_for("org/my-vlm-7b", str(extra)) == "my-vlm"
    assert image_tokens(10, 10, "high", "my-vlm", str(extra)) == 100
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"bad": {"method": "tiles", "match": ["x"]}}))
    with pytest.raises(PipelineError, match="lacks low, base"):
        load_families(str(bad))
    with pytest.raises(PipelineError, match="family 'nope'"):
        image_tokens(10, 10, "high", "nope")
    with pytest.raises(PipelineError, match="detail 'medium'"):
        image_tokens(10, 10, "medium", "gpt-4o")
