"""The FocusCLIP variants behind train flags (benchmarks/README.md): loss weights, the independent masked
view, heatmap-guided pooling; each against an independent computation, and each at its default leaving
training as it was."""

from __future__ import annotations

import json
import math

import open_clip
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from open_clip.transformer import VisionTransformer

from pipeline.errors import PipelineError
from pipeline.heatmaps import roi_heatmap_torch
from pipeline.synthetic.dataset import write_synthetic_dataset
from training import data as train_data
from training import views
from training.checkpoint import RESUME_REFUSES, _changes
from training.config import FOCUS_VARIANT_DEFAULTS, TrainConfig
from training.losses import contrastive_loss, focusclip_loss
from training.model import FocusCLIP, _attnpool_with_prior, encode_image_with_prior, token_grid
from training.towers import create_clip
from training.train import train

torch.set_num_threads(2)


def _feats(seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(F.normalize(torch.randn(6, 8, generator=g), dim=-1).requires_grad_() for _ in range(3))


def test_default_weights_are_the_plain_sum_and_a_zero_weight_trains_nothing():
    image, text, masked = _feats()
    scale = torch.tensor(1 / 0.07)
    mi, mt, it = (contrastive_loss(a, b, scale) for a, b in ((masked, image), (masked, text), (image, text)))
    loss, terms = focusclip_loss(image, text, masked, scale)
    assert torch.equal(loss, mi + mt + it)  # bit for bit: the default is the published sum
    no_mi, terms0 = focusclip_loss(image, text, masked, scale, weights=(0.0, 1.0, 1.0))
    assert torch.equal(no_mi, mt + it) and torch.equal(
        terms0["loss_masked_image"], terms["loss_masked_image"]
    )
    (grad_masked,) = torch.autograd.grad(no_mi, masked)
    (grad_mt,) = torch.autograd.grad(contrastive_loss(masked, text, scale), masked)
    torch.testing.assert_close(grad_masked, grad_mt)  # L(masked,image) sends nothing back
    weighted, _ = focusclip_loss(image, text, masked, scale, weights=(2.0, 1.0, 0.5))
    torch.testing.assert_close(weighted, 2 * mi + mt + 0.5 * it)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"loss_weights": (0.0, 0.0, 0.0)}, "loss_weights must be 3 finite values >= 0, not all 0"),
        ({"loss_weights": (1.0, -1.0, 1.0)}, "loss_weights must be 3 finite values >= 0"),
        ({"masked_view": "other"}, "masked_view must be shared or independent"),
        ({"focus_mode": "attention"}, "focus_mode must be pixels or pooling"),
        ({"model_type": "clip", "focus_mode": "pooling"}, "focus_mode change(s) FocusCLIP's masked view"),
        ({"model_type": "clip", "alpha_init": 0.9, "learn_alpha": False}, "alpha_init, learn_alpha change"),
        ({"model_type": "clip", "heatmap_source": "shuffled"}, "heatmap_source change(s) FocusCLIP's"),
    ],
)
def test_variant_settings_are_checked(change, message):
    with pytest.raises(PipelineError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(dataset="d", **change).resolved()


def test_resume_refuses_a_changed_variant_and_reads_older_checkpoints_as_the_default():
    new = TrainConfig(dataset="d").resolved().to_dict()
    assert set(FOCUS_VARIANT_DEFAULTS) <= set(RESUME_REFUSES)
    older = {k: v for k, v in new.items() if k not in FOCUS_VARIANT_DEFAULTS}  # a checkpoint from before them
    assert _changes(json.loads(json.dumps(older)), new, RESUME_REFUSES) == {}
    changed = _changes(json.loads(json.dumps(new)), {**new, "loss_weights": (0.0, 1.0, 1.0)}, RESUME_REFUSES)
    assert changed == {"loss_weights": {"from": [1.0, 1.0, 1.0], "to": (0.0, 1.0, 1.0)}}
    # what the first steps were trained on and from: a change would be recorded as if the whole run had it
    for key, value in [("heatmap_source", "shuffled"), ("sentence_sampling", False), ("pretrained", "c.pt")]:
        assert set(_changes(json.loads(json.dumps(new)), {**new, key: value}, RESUME_REFUSES)) == {key}


def test_color_jitter_is_torchvisions_brightness_contrast_saturation():
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    factors = torch.tensor([[0.6, 1.4, 1.0], [1.4, 0.6, 1.3], [1.0, 1.0, 0.6], [1.2, 0.8, 1.4]])
    got = views.color_jitter(x, factors)
    for i, (b, c, s) in enumerate(factors.tolist()):
        ref = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(x[i], b), c), s)
        torch.testing.assert_close(got[i], ref, atol=2e-6, rtol=0)


@pytest.fixture(scope="module")
def loader_data(module_tmp):
    from pipeline.store import Store

    store = Store(module_tmp("views") / "store")
    write_synthetic_dataset(store, "synth", n_train=16, size=(48, 40), seed=0)
    tok = open_clip.get_tokenizer("focus-tiny")
    return train_data.load_train_data(
        store, "synth", split="train", image_size=32, cache_scale=1.125, tokenizer=tok, context_length=77
    )


def test_the_independent_view_has_its_own_crop_flip_jitter_and_heatmap(loader_data):
    """The image view is the default run's to the bit; the masked view is the cached image under its own
    crop, flip and jitter (re-derived here from the view's stream), with the heatmap of that crop."""
    common = {"batch_size": 8, "image_size": 32, "device": torch.device("cpu"), "seed": 3}
    shared_loader = train_data.BatchLoader(loader_data, **common)
    loader = train_data.BatchLoader(loader_data, masked_view="independent", **common)
    shared, batch = shared_loader.get(epoch=0, step=1), loader.get(epoch=0, step=1)
    assert shared.masked_images is None
    assert torch.equal(batch.images, shared.images) and torch.equal(batch.tokens, shared.tokens)

    idx = train_data.local_indices(16, batch_size=8, world=1, rank=0, seed=3, epoch=0, step=1)
    gen = views.view_generator(3, 0, 0, 1)
    view = views.crop_params(8, gen, scale=views.VIEW_CROP_SCALE, hflip=True)
    factors = 1 + views.VIEW_JITTER * (2 * torch.rand(8, 3, generator=gen) - 1)
    source = loader_data.images[idx].permute(0, 3, 1, 2).float() / 255
    expected = views.color_jitter(views.crop_images(source, view, 32), factors)
    torch.testing.assert_close(batch.masked_images, expected)
    kps = views.crop_keypoints(loader_data.keypoints_of(idx), view, loader_data.side, 32)
    torch.testing.assert_close(batch.heatmaps, roi_heatmap_torch(kps, torch.full((8, 2), 32.0), (32, 32)))
    assert not torch.equal(batch.heatmaps, shared.heatmaps)
    assert 0 < view[:, 3].sum() < 8  # some flipped, some not
    clip_loader = train_data.BatchLoader(loader_data, focus=False, masked_view="independent", **common)
    assert clip_loader.get(epoch=0, step=1).masked_images is None  # CLIP has no masked view


def test_the_shuffled_heatmap_is_the_next_images_and_nothing_else_changes(loader_data):
    """--heatmap-source shuffled (the no-location control): the same images, tokens and crops; each image's
    heatmap is the keypoint heatmap of the next image in the batch, under its own crop."""
    common = {"batch_size": 8, "image_size": 32, "device": torch.device("cpu"), "seed": 3}
    for masked_view in ("shared", "independent"):
        plain = train_data.BatchLoader(loader_data, masked_view=masked_view, **common).get(epoch=1, step=0)
        loader = train_data.BatchLoader(loader_data, masked_view=masked_view, shuffled_heatmap=True, **common)
        shuffled = loader.get(epoch=1, step=0)
        assert torch.equal(shuffled.images, plain.images) and torch.equal(shuffled.tokens, plain.tokens)
        if masked_view == "independent":
            assert torch.equal(shuffled.masked_images, plain.masked_images)
        torch.testing.assert_close(shuffled.heatmaps, torch.roll(plain.heatmaps, 1, dims=0), rtol=0, atol=0)
        assert not torch.equal(shuffled.heatmaps, plain.heatmaps)
    assert train_data.heatmap_source_for("shuffled", "keypoints", "d") == "shuffled"
    with pytest.raises(PipelineError, match="--heatmap-source shuffled: datasets/d was built with --roi box"):
        train_data.heatmap_source_for("shuffled", "box", "d")


def _reference_pool(pool, x: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """The attention pool's summary query, written out: softmax(q k^T / sqrt(d) + prior) v, per head."""
    n, c = x.shape[:2]
    t = x.flatten(2).permute(0, 2, 1)
    t = torch.cat([t.mean(1, keepdim=True), t], dim=1) + pool.positional_embedding
    h = pool.num_heads
    q = pool.q_proj(t[:, :1]).view(n, 1, h, c // h).transpose(1, 2)
    k = pool.k_proj(t).view(n, -1, h, c // h).transpose(1, 2)
    v = pool.v_proj(t).view(n, -1, h, c // h).transpose(1, 2)
    logits = q @ k.transpose(-1, -2) / math.sqrt(c // h) + F.pad(prior, (1, 0))[:, None, None, :]
    return pool.c_proj((logits.softmax(-1) @ v).transpose(1, 2).reshape(n, c))


def test_guided_pooling_on_the_resnet_attention_pool():
    torch.manual_seed(0)
    visual = create_clip("focus-small").visual.eval()
    assert token_grid(visual) == (2, 2)  # focus-small at 64 px: the pool attends over 2 x 2 cells
    pixels = torch.randn(3, 3, 64, 64)
    prior = torch.log(torch.tensor([[1.0, 0.5, 0.5, 0.5], [0.1, 1.0, 1.0, 0.1], [1e-6, 1e-6, 1e-6, 1.0]]))
    with torch.no_grad():
        plain = visual(pixels)
        torch.testing.assert_close(encode_image_with_prior(visual, pixels, torch.zeros(3, 4)), plain)
        x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(pixels)))))
        torch.testing.assert_close(
            _attnpool_with_prior(visual.attnpool, x, prior), _reference_pool(visual.attnpool, x, prior)
        )
        assert (encode_image_with_prior(visual, pixels, prior) - plain).abs().max() > 1e-3


def test_guided_pooling_on_the_vit_class_token_only_and_only_while_asked():
    torch.manual_seed(0)
    visual = create_clip("focus-tiny").visual.eval()
    assert token_grid(visual) == (4, 4)
    pixels = torch.randn(2, 3, 64, 64)
    prior = torch.log(torch.rand(2, 16) + 0.05)
    visual.output_tokens = True  # the patch tokens too: the prior must leave them alone
    with torch.no_grad():
        plain, plain_tokens = visual(pixels)
        same, _ = encode_image_with_prior(visual, pixels, torch.zeros(2, 16))
        guided, guided_tokens = encode_image_with_prior(visual, pixels, prior)
        after, _ = visual(pixels)
    torch.testing.assert_close(same, plain, atol=1e-5, rtol=0)
    assert (guided - plain).abs().max() > 1e-3  # the class token attends differently in the last block
    torch.testing.assert_close(guided_tokens, plain_tokens)  # every other query is untouched
    torch.testing.assert_close(after, plain)  # the hook is gone: eval sees the plain tower


def test_guided_pooling_trains_alpha_and_refuses_other_towers():
    torch.manual_seed(0)
    model = FocusCLIP.create(
        "focus-small", focus=True, context_length=16, image_size=64, focus_mode="pooling"
    )
    images, heat = torch.rand(4, 3, 64, 64), torch.zeros(4, 64, 64)
    heat[:, :32, :32] = 1
    out = model(images, torch.randint(0, 1000, (4, 16)), heat)
    with torch.no_grad():  # the image view is the plain tower; the masked view keeps the pixels
        plain = F.normalize(model.clip.visual((images - model.mean) / model.std), dim=-1)
    torch.testing.assert_close(out["image"], plain, atol=1e-5, rtol=0)
    (out["masked"] @ out["text"].T).sum().backward()
    assert model.alpha_logit.grad.abs() > 0
    pooler = VisionTransformer(image_size=32, patch_size=16, width=32, layers=1, heads=2, mlp_ratio=2.0,
                               output_dim=16, attentional_pool=True)  # fmt: skip
    dropout = VisionTransformer(image_size=32, patch_size=16, width=32, layers=1, heads=2, mlp_ratio=2.0,
                                output_dim=16, patch_dropout=0.5)  # fmt: skip
    for visual in (pooler, dropout):
        with pytest.raises(
            PipelineError, match="this image tower is a VisionTransformer: use --focus-mode pixels"
        ):
            token_grid(visual)


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant",
    [{"masked_view": "independent"}, {"loss_weights": (0.0, 1.0, 1.0)}, {"focus_mode": "pooling"}],
    ids=["independent-views", "no-masked-image", "guided-pooling"],
)
def test_each_variant_trains_and_records_itself(tmp_path, variant):
    from pipeline.store import Store

    store = Store(tmp_path / "store")
    write_synthetic_dataset(store, "synth", n_train=16, size=(48, 40), seed=0)
    tiny = {"arch": "focus-tiny", "image_size": 32, "batch_size": 8, "log_every": 1, "num_threads": 2}
    cfg = TrainConfig(
        dataset="synth", model_type="focusclip", name="v", max_steps=3, device="cpu", **tiny, **variant
    )
    train(cfg, store)
    rows = [json.loads(ln) for ln in (store.path("runs", "v") / "metrics.jsonl").read_text().splitlines()]
    weights = cfg.resolved().loss_weights
    for r in rows:
        parts = (r["loss_masked_image"], r["loss_masked_text"], r["loss_image_text"])
        assert r["loss"] == pytest.approx(sum(w * t for w, t in zip(weights, parts, strict=True)), rel=1e-5)
    recorded = store.meta("runs", "v")["config"]
    assert {k: recorded[k] for k in variant} == {k: json.loads(json.dumps(v)) for k, v in variant.items()}
    # the export is the plain open_clip model: zero-shot needs no heatmap, whatever the variant
    state = torch.load(store.path("runs", "v") / "model.pt", weights_only=True)
    plain = create_clip("focus-tiny", image_size=32)
    plain.load_state_dict(state)
