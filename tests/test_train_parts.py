"""Pure parts of training: losses against a reference, alpha and masking, sentence sampling, joint crops."""

from __future__ import annotations

import math

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F

from pipeline.devices import torch_device
from pipeline.errors import PipelineError
from pipeline.heatmaps import roi_heatmap_torch
from training.config import TrainConfig
from training.data import local_indices
from training.distributed import DistInfo, value_range
from training.losses import clip_loss, contrastive_loss, focusclip_loss
from training.model import FocusCLIP
from training.optim import lr_factor
from training.text import RowTexts, TextBank, _sample_fitting, split_sentences
from training.views import crop_images, crop_keypoints, crop_params

torch.set_num_threads(2)


def _reference(a: torch.Tensor, b: torch.Tensor, scale: float) -> float:
    """Symmetric InfoNCE written out row by row."""
    n = a.shape[0]
    total = 0.0
    for i in range(n):
        row = [scale * float(a[i] @ b[j]) for j in range(n)]
        col = [scale * float(b[i] @ a[j]) for j in range(n)]
        total += -(row[i] - math.log(sum(math.exp(v) for v in row)))
        total += -(col[i] - math.log(sum(math.exp(v) for v in col)))
    return total / (2 * n)


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(
        torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=-1
    )


def test_losses_match_reference_and_open_clip():
    img, txt, msk = _unit(6, 8, 0), _unit(6, 8, 1), _unit(6, 8, 2)
    scale = torch.tensor(2.0, dtype=torch.float64)  # the paper's fixed temperature 0.5
    got = contrastive_loss(img, txt, scale)
    assert got.item() == pytest.approx(_reference(img, txt, 2.0), rel=1e-9)
    assert got.item() == pytest.approx(open_clip.ClipLoss()(img, txt, scale).item(), rel=1e-9)
    total, terms = focusclip_loss(img, txt, msk, scale)
    want = _reference(msk, img, 2.0) + _reference(msk, txt, 2.0) + _reference(img, txt, 2.0)
    assert total.item() == pytest.approx(want, rel=1e-9)
    assert terms["loss_masked_text"].item() == pytest.approx(_reference(msk, txt, 2.0), rel=1e-9)
    single, _ = clip_loss(img, txt, scale)
    assert single.item() == pytest.approx(got.item())
    # The distributed form (local rows against gathered columns, offset labels) on a simulated world of 2:
    # the two ranks' losses average to the full-batch loss's per-row terms.
    halves = [
        contrastive_loss(
            img[r * 3 : (r + 1) * 3], txt[r * 3 : (r + 1) * 3], scale, a_all=img, b_all=txt, offset=3 * r
        )
        for r in range(2)
    ]
    assert (sum(halves) / 2).item() == pytest.approx(got.item(), rel=1e-9)


def test_alpha_stays_in_unit_interval_and_masking_formula():
    torch.manual_seed(0)
    model = FocusCLIP.create("focus-tiny", focus=True, image_size=32)
    assert model.alpha().item() == pytest.approx(0.5)
    opt = torch.optim.SGD([model.alpha_logit], lr=1e4)  # absurd steps still keep alpha in [0, 1]
    for sign in (1.0, -1.0):
        for _ in range(3):
            opt.zero_grad()
            (sign * model.alpha()).backward()
            opt.step()
            assert 0.0 <= model.alpha().item() <= 1.0
    # masked = image * (alpha + heatmap * (1 - alpha)); the masked view goes through the same tower
    model.alpha_logit.data.fill_(0.0)
    img = torch.rand(2, 3, 32, 32)
    hm = torch.zeros(2, 32, 32)
    hm[:, 8:24, 8:24] = 1.0
    out = model(img, torch.zeros(2, 77, dtype=torch.long), hm)
    masked = img * (0.5 + hm[:, None] * 0.5)
    direct = model.clip.encode_image((masked - model.mean) / model.std, normalize=True)
    torch.testing.assert_close(out["masked"], direct, atol=1e-5, rtol=1e-4)
    clip_only = FocusCLIP.create("focus-tiny", focus=False, image_size=32)
    assert not hasattr(clip_only, "alpha_logit") and "masked" not in clip_only(img, torch.zeros(2, 77).long())


def test_fixed_temperature_is_not_trained():
    model = FocusCLIP.create(
        "focus-tiny", focus=False, image_size=32, temperature=0.5, learn_temperature=False
    )
    assert model.clip.logit_scale.exp().item() == pytest.approx(2.0)
    assert not model.clip.logit_scale.requires_grad


def test_sentence_sampling_fits_context_and_counts_truncation():
    tok = open_clip.get_tokenizer("focus-tiny")
    long = "One person is running. " + " ".join(f"The left arm number {i} is raised high." for i in range(30))
    assert split_sentences(long)[0] == "One person is running."
    bank = TextBank.build([[long], ["Short caption."]], tok, context_length=32)
    rng = np.random.default_rng(0)
    tokens, stats = bank.batch(np.array([0, 1]), rng, sample_sentences=True)
    assert stats.truncated == 0 and stats.sentences_kept < stats.sentences_total
    row = tokens[0].tolist()
    n = row.index(tok.eot_token_id) + 1
    assert n <= 32 and row[0] == tok.sot_token_id
    assert tok.decode(row[1 : n - 1]).startswith("one person is running")  # first sentence kept, in order
    plain, stats = bank.batch(np.array([0, 1]), rng, sample_sentences=False)
    assert stats.truncated == 1 and plain[0, -1].item() == tok.eot_token_id
    # open_clip's own tokenizer truncates the same way (first 30 tokens, EOT last)
    torch.testing.assert_close(plain[0], tok([long], context_length=32)[0])
    assert bank.truncation_rate(sample_sentences=False) == 0.5
    assert bank.truncation_rate(sample_sentences=True) == 0.0
    assert _sample_fitting([50, 5, 5], 10, np.random.default_rng(1)) == [1, 2]


@pytest.mark.parametrize("sample_sentences", [True, False])
@pytest.mark.parametrize("all_descriptions", [True, False])
def test_a_streamed_batch_tokenises_only_what_it_draws_and_equals_the_banks(
    sample_sentences, all_descriptions
):
    """RowTexts (the stream's: BPE on the drawn description only) gives TextBank's tokens and counters from
    the same generator state, and leaves the generator where TextBank leaves it."""
    tok = open_clip.get_tokenizer("focus-tiny")
    rows = [
        [
            "One person runs. " + " ".join(f"The left arm {i} is raised." for i in range(12)),
            "Two people sit.",
        ],
        ["A person stands.", "Someone jumps. Both arms are up.", "Legs apart. Head turned left."],
        ["Short caption."],
    ]
    bank = TextBank.build(rows, tok, context_length=32)
    encoded = []
    counting = RowTexts(rows, tok, context_length=32)
    counting.encode = lambda s, encode=counting.encode: encoded.append(s) or encode(s)
    for seed in range(5):
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        want, want_stats = bank.batch(
            np.arange(3), a, sample_sentences=sample_sentences, all_descriptions=all_descriptions
        )
        got, got_stats = counting.batch(
            b, sample_sentences=sample_sentences, all_descriptions=all_descriptions
        )
        torch.testing.assert_close(got, want)
        assert got_stats == want_stats and a.integers(1 << 30) == b.integers(1 << 30)
    per_batch_most = sum(max(len(split_sentences(d)) for d in r) for r in rows)  # one description a row
    every_sentence = sum(len(split_sentences(d)) for r in rows for d in r)  # what a bank of the batch encodes
    assert 0 < len(encoded) <= 5 * per_batch_most < 5 * every_sentence


def test_crop_is_applied_jointly_to_image_and_heatmap():
    """Heatmap rendered from cropped keypoints == the full-size heatmap cropped like the image."""
    src, out = 72, 64
    kps = torch.full((3, 1, 16, 3), float("nan"))
    kps[..., 2] = 0
    kps[:, 0, :4] = torch.tensor([[20.0, 18, 2], [40, 30, 2], [30, 50, 2], [25, 40, 1]])
    full = roi_heatmap_torch(kps, torch.full((3, 2), float(src)), (src, src))
    params = crop_params(3, torch.Generator().manual_seed(3), scale=(0.5, 0.9), hflip=True)
    params[0, 3] = 1.0  # at least one flipped
    cropped = crop_images(full[:, None], params, out)[:, 0]
    rendered = roi_heatmap_torch(
        crop_keypoints(kps, params, src, out), torch.full((3, 2), float(out)), (out, out)
    )
    assert (cropped - rendered).abs().max().item() < 0.03


def test_sharding_covers_the_epoch_once_and_lr_schedule():
    parts = [
        local_indices(20, batch_size=3, world=2, rank=r, seed=1, epoch=4, step=s)
        for s in range(3)
        for r in range(2)
    ]
    flat = torch.cat(parts).tolist()
    assert len(flat) == len(set(flat)) == 18
    assert lr_factor(0, total=100, warmup=10, schedule="cosine") == pytest.approx(0.1)
    assert lr_factor(10, total=100, warmup=10, schedule="cosine") == pytest.approx(1.0)
    assert lr_factor(100, total=100, warmup=10, schedule="cosine") == pytest.approx(0.0)
    assert lr_factor(50, total=100, warmup=0, schedule="constant") == 1.0


def test_recipes_fill_only_unset_values():
    paper = TrainConfig(dataset="d", recipe="paper", lr=1e-2).resolved()
    assert (paper.optimizer, paper.lr, paper.temperature, paper.batch_size, paper.epochs) == (
        "sgd",
        1e-2,
        0.5,
        32,
        64,
    )
    assert paper.learn_temperature is False and paper.name == "d-focusclip"
    modern = TrainConfig(dataset="d", model_type="clip").resolved()
    assert modern.optimizer == "adamw" and modern.learn_temperature and modern.schedule == "cosine"
    with pytest.raises(Exception, match="recipe"):
        TrainConfig(dataset="d", recipe="nope").resolved()
    with pytest.raises(PipelineError, match="image_size 0: must be >= 16"):  # not a dataset's fault
        TrainConfig(dataset="d", image_size=0).resolved()
    with pytest.raises(PipelineError, match="context_length 0: must be >= 2"):
        TrainConfig(dataset="d", context_length=0).resolved()


def test_device_names_are_read_one_way_for_every_stage():
    assert torch_device("cpu") == torch.device("cpu")
    assert torch_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(PipelineError, match=r"^--device 'bogus': not a torch device"):
        torch_device("bogus")
    if torch.cuda.is_available():
        assert torch_device("cuda", local_rank=0) == torch.device("cuda:0")  # this torchrun process's GPU
    else:
        with pytest.raises(PipelineError, match="--device cuda:1: CUDA is not available on this machine"):
            torch_device("cuda:1")


@pytest.mark.slow
def test_every_rank_learns_the_range_of_the_resume_steps_found(tmp_path):
    """What `--resume` compares: a node that lacks rank 0's checkpoint (step 0 against 300) is seen by all."""
    import ranks  # a light module: each spawned process imports it, not this one
    import torch.multiprocessing as mp

    mp.spawn(ranks.value_range_on_rank, args=(str(tmp_path / "rdzv"), str(tmp_path)), nprocs=2)
    assert [(tmp_path / f"{r}.txt").read_text() for r in (0, 1)] == ["0 300", "0 300"]
    assert value_range(7, DistInfo(), torch.device("cpu")) == (7, 7)  # one process: no collective
