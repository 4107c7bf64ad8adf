"""The paper's towers (a timm ViT image tower, a Hugging Face BERT text tower) built tiny and locally: base
weights from local files, the reference's all-positions mean pooling, the shapes of the real architecture,
the paper recipe through the CLI on CPU, and one preprocessing shared by training and `eval --run`."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import open_clip
import pyarrow.parquet as pq
import pytest
import timm
import torch
import transformers
from PIL import Image
from safetensors.torch import load_file, save_file
from tiny_towers import TINY, build_tiny_towers

from evaluation.tasks import TASKS
from pipeline.errors import PipelineError
from pipeline.synthetic.dataset import write_synthetic_dataset
from training.data import load_train_data
from training.inference import load_model
from training.preprocess import Preprocess
from training.text import TextBank
from training.towers import AllPositionsMeanPooler, Towers, create_clip, make_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def towers(module_tmp) -> dict[str, Path]:
    return build_tiny_towers(module_tmp("towers"))


def test_local_tower_weights_pooling_and_shapes(towers):
    clip = create_clip(TINY, image_size=32, towers=Towers(image=str(towers["vit"]), text=str(towers["bert"])))
    bert = transformers.BertModel.from_pretrained(towers["bert"])
    vit = timm.create_model("vit_tiny_patch16_224")
    vit.load_state_dict(load_file(towers["vit"] / "model.safetensors"))
    assert torch.equal(
        clip.text.transformer.encoder.layer[1].output.dense.weight, bert.encoder.layer[1].output.dense.weight
    )
    assert torch.equal(clip.visual.trunk.blocks[0].attn.qkv.weight, vit.blocks[0].attn.qkv.weight)
    assert clip.visual.trunk.global_pool == "token" and clip.visual.head.proj.bias is not None  # class token
    assert clip.visual.trunk.pos_embed.shape[1] == 1 + 2 * 2  # resampled to 32 px after loading

    tokenizer = make_tokenizer(TINY, context_length=64, text_tower=str(towers["bert"]))
    tokens = tokenizer(["a person is standing", "the left arm"])
    assert tokens.shape == (2, 64) and tokens[0, 0] == tokenizer.tokenizer.cls_token_id
    assert isinstance(clip.text.pooler, AllPositionsMeanPooler)
    with torch.no_grad():
        text = clip.encode_text(tokens)
        mask = (tokens != 0).long()
        hidden = bert(input_ids=tokens, attention_mask=mask).last_hidden_state
        # the reference: AdaptiveAvgPool1d over all 64 positions, padding included; then the projection
        assert torch.allclose(text, clip.text.proj(hidden.mean(dim=1)), atol=1e-6)
        real_only = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # open_clip's mean_pooler
        assert not torch.allclose(text, clip.text.proj(real_only), atol=1e-3)
        assert clip.encode_image(torch.rand(3, 3, 32, 32)).shape == (3, 16) and text.shape == (2, 16)

    # training's token batches are the tokenizer's own call: [CLS] ids [SEP] [PAD]...
    text = "A person is standing.  The left arm is up. The head is tilted."
    bank = TextBank.build([[text]], tokenizer, context_length=64)
    batch, _ = bank.batch(np.array([0]), np.random.default_rng(0), sample_sentences=False)
    assert torch.equal(batch, tokenizer([text]))

    random = create_clip(TINY, image_size=32, towers=Towers(text=str(towers["bert"])))
    assert not torch.equal(random.visual.trunk.blocks[0].attn.qkv.weight, vit.blocks[0].attn.qkv.weight)


def test_tower_and_pretrained_errors_are_one_line(towers, tmp_path, monkeypatch, caplog):
    wrong = tmp_path / "wrong.safetensors"
    save_file({"blocks.0.attn.qkv.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(PipelineError, match=r"image tower .*wrong.safetensors: does not fit"):
        create_clip(TINY, towers=Towers(image=str(wrong), text=str(towers["bert"])))
    with pytest.raises(PipelineError, match="not a Hugging Face model folder"):
        create_clip(TINY, towers=Towers(text=str(tmp_path)))
    with pytest.raises(PipelineError, match="need a timm image or Hugging Face text"):
        create_clip("focus-tiny", towers=Towers(hub=True))
    with pytest.raises(PipelineError, match="not a file, a local-dir:/hf-hub: id, or an open_clip tag"):
        create_clip("focus-tiny", pretrained="no-such-tag")

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr("training.towers.download_pretrained", offline)  # the name towers.py calls
    with pytest.raises(PipelineError) as err:
        create_clip("ViT-B-16", pretrained="openai")
    assert "--pretrained openai" in str(err.value)
    assert "--pretrained /path/to/file.bin" in str(err.value) and "\n" not in str(err.value)
    monkeypatch.setattr("open_clip.create_model", offline)
    with pytest.raises(
        PipelineError, match=r"vit_base_patch16_224 and bert-base-uncased from the hub .*--text-tower"
    ):
        create_clip("FocusCLIP-ViT-B-16-BERT", towers=Towers(hub=True))


@pytest.mark.slow
def test_real_architecture_shapes(towers):
    """The real image tower at full size (random weights): ViT-B/16, class token, 768 -> 512."""
    clip = create_clip("FocusCLIP-ViT-B-16-BERT", towers=Towers(text=str(towers["bert"])))
    trunk = clip.visual.trunk
    assert (trunk.embed_dim, len(trunk.blocks), trunk.patch_embed.patch_size, trunk.global_pool) == (
        768,
        12,
        (16, 16),
        "token",
    )
    assert tuple(clip.visual.head.proj.weight.shape) == (512, 768) and clip.visual.head.proj.bias is not None
    assert isinstance(clip.text.pooler, AllPositionsMeanPooler) and clip.text.proj.out_features == 512
    with torch.no_grad():
        assert clip.encode_image(torch.rand(1, 3, 224, 224)).shape == (1, 512)


def test_paper_recipe_trains_with_the_towers_and_eval_uses_its_preprocessing(
    towers, cli, store, shared_data, tmp_path
):
    write_synthetic_dataset(store, "synth", n_train=8, size=(48, 40), seed=0)
    args = ["--dataset", "synth", "--model-type", "focusclip", "--arch", TINY, "--recipe", "paper"]
    args += ["--image-tower", towers["vit"], "--text-tower", towers["bert"], "--max-steps", "3"]
    args += ["--batch-size", "4", "--image-size", "32", "--context-length", "64", "--device", "cpu"]
    result = cli("train", *args, "--name", "paper", "--log-every", "1", "--threads", "1")
    assert result.exit_code == 0, result.output
    meta = store.meta("runs", "paper")
    cfg, pp = meta["config"], meta["preprocess"]
    assert (cfg["loss"], cfg["alpha_param"], cfg["temperature"], cfg["optimizer"]) == (
        "ntxent",
        "plain",
        0.5,
        "sgd",
    )
    assert tuple(cfg["crop_scale"]) == (1.0, 1.0) and cfg["normalize"] == "none"
    assert pp == {
        "size": 32,
        "context_length": 64,
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
        "resize_mode": "squash",
        "interpolation": "bilinear",
    }
    run = store.path("runs", "paper")
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(np.isfinite(r["loss"]) for r in rows)
    assert {"config.json", "tokenizer_config.json"} <= {p.name for p in (run / "export").iterdir()}

    # training's pixels are eval's: the decoded cache of the run equals the recorded transform, bit for bit
    tok = make_tokenizer(TINY, context_length=64, text_tower=str(towers["bert"]))
    data = load_train_data(
        store,
        "synth",
        split="train",
        image_size=32,
        cache_scale=1.0,
        tokenizer=tok,
        context_length=64,
        interpolation="bilinear",
    )
    row = pq.read_table(
        sorted((store.path("datasets", "synth") / "data").glob("train-*.parquet"))[0]
    ).to_pylist()[0]
    image = Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB")
    pixels = Preprocess.from_dict(pp).transform()(image)
    assert torch.equal(pixels, data.images[0].permute(2, 0, 1).float().div(255.0))

    # eval --run scores with exactly a hand-built pipeline from the recorded settings
    root = tmp_path / "eval-data"
    root.mkdir()
    os.symlink(shared_data / "fer2013" / "images_msambare_layout", root / "fer2013")
    result = cli(
        "eval",
        "--run",
        "paper",
        "--tasks",
        "fer2013-emotion",
        "--split",
        "test",
        "--data-root",
        root,
        "--workers",
        "0",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    scored = json.loads((store.path("evals", "paper") / "results.json").read_text())[0]
    assert scored["status"] == "ok" and scored["n_samples"] == 14

    task = TASKS["fer2013-emotion"]
    clip = create_clip(
        TINY,
        image_size=32,
        context_length=64,
        pretrained=run / "model.pt",
        towers=Towers(text=str(run / "export")),
    ).eval()
    bert_tok = transformers.AutoTokenizer.from_pretrained(run / "export")
    prompts = [
        task.templates[0].format(
            c=task.prompt_name(c), article="an" if task.prompt_name(c)[0] in "aeiou" else "a"
        )
        for c in task.classes
    ]
    items = sorted((p, p.parent.name) for p in (root / "fer2013" / "test").glob("*/*.jpg"))
    with torch.no_grad():
        ids = bert_tok(
            prompts, padding="max_length", max_length=64, truncation=True, return_tensors="pt"
        ).input_ids
        text = torch.nn.functional.normalize(clip.encode_text(ids), dim=-1)
        hits3 = hits1 = 0
        for path, label in items:
            im = Image.open(path).convert("RGB").resize((32, 32), Image.Resampling.BILINEAR)
            x = torch.from_numpy(np.array(im)).permute(2, 0, 1).float().div(255.0)  # mean 0, std 1
            logits = torch.nn.functional.normalize(clip.encode_image(x[None]), dim=-1) @ text.T
            top = logits[0].argsort(descending=True).tolist()
            y = list(task.classes).index(label)
            hits3 += y in top[:3]
            hits1 += y == top[0]
    # results.json rounds to 6 decimals; the counts behind them are equal
    assert scored["metrics"]["acc@3"] == round(hits3 / len(items), 6)
    assert scored["metrics"]["acc1"] == round(hits1 / len(items), 6)


def test_random_init_warns_loudly(towers, caplog):
    from training.config import TrainConfig
    from training.train import _warn_random_init

    with caplog.at_level(logging.WARNING):
        _warn_random_init(TrainConfig(dataset="d", arch=TINY, recipe="paper"), Towers())
    assert "will NOT reproduce the paper" in caplog.text and "--pretrained-towers" in caplog.text
    caplog.clear()
    _warn_random_init(TrainConfig(dataset="d", arch=TINY, recipe="paper"), Towers(text=str(towers["bert"])))
    assert "RANDOM INIT: vit_tiny_patch16_224 start(s)" in caplog.text  # the image tower is still random
    caplog.clear()
    _warn_random_init(TrainConfig(dataset="d", arch=TINY), Towers(image="vit.safetensors", text="bert/"))
    _warn_random_init(TrainConfig(dataset="d", arch="focus-tiny", recipe="modern"), Towers())
    assert caplog.text == ""


def test_pretrained_local_dir_brings_its_architecture_and_weights(tmp_path):
    """--pretrained local-dir:DIR (open_clip's folder layout): the id is the arch and its weights load; a
    run's model.pt then loads over that architecture instead of the folder's weights."""
    torch.manual_seed(1)
    source = create_clip("focus-tiny", image_size=32)
    folder = tmp_path / "clip"
    folder.mkdir()
    model_cfg = open_clip.get_model_config("focus-tiny")  # a copy
    model_cfg["vision_cfg"]["image_size"] = 32
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg}))
    torch.save(source.state_dict(), folder / "open_clip_pytorch_model.bin")
    arch = f"local-dir:{folder}"
    loaded = create_clip(arch, pretrained=arch)
    assert _same(source, loaded)

    torch.manual_seed(2)
    other = create_clip("focus-tiny", image_size=32)
    torch.save(other.state_dict(), tmp_path / "model.pt")
    again = create_clip(arch, pretrained=tmp_path / "model.pt")
    assert _same(other, again) and not _same(source, again)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_runs_without_recorded_preprocessing_load_with_what_they_trained_on(store):
    """Runs from before "preprocess" was recorded trained on squashed images with the arch's mean/std."""
    torch.manual_seed(0)
    clip = create_clip("focus-tiny", image_size=64)
    config = {"arch": "focus-tiny", "model_type": "clip", "context_length": 77, "image_size": 64}
    with store.create("runs", "old", stage="train", config=config) as w:
        torch.save(clip.state_dict(), w.dir / "model.pt")
    model, preprocess, _ = load_model(run_dir=store.path("runs", "old"))
    assert model.visual.preprocess_cfg["resize_mode"] == "squash"
    assert tuple(model.visual.preprocess_cfg["mean"]) == open_clip.OPENAI_DATASET_MEAN
    image = Image.new("RGB", (120, 40), (200, 10, 10))
    image.paste((10, 10, 200), (0, 0, 20, 40))  # a blue band on the left that a centre crop would cut
    pixels = preprocess(image)
    assert pixels.shape == (3, 64, 64) and pixels[2, 32, 0] > pixels[0, 32, 0]
