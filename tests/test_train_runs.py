"""Real training runs of focus-tiny on CPU over a real parquet dataset artifact: loss goes down, resume is
exact, NaN stops cleanly, open_clip loads the export, and a 2-process torchrun/gloo run (with a locked tower
and zero-shot evaluations) publishes a run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import open_clip
import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.store import Store
from pipeline.synthetic import SampleConfig, generate_sample
from pipeline.synthetic.dataset import write_synthetic_dataset
from training import data as train_data
from training import train as train_mod
from training.inference import load_model
from training.towers import register_model_configs
from training.train import TrainConfig, train

torch.set_num_threads(2)

# 32 px images: 4 patches of 16, so a step takes milliseconds, not seconds
TINY = {
    "arch": "focus-tiny",
    "image_size": 32,
    "batch_size": 8,
    "log_every": 1,
    "device": "cpu",
    "num_threads": 2,
}


@pytest.fixture(scope="module")
def store(module_tmp) -> Store:
    s = Store(module_tmp("train") / "store")
    write_synthetic_dataset(s, "synth", n_train=32, size=(48, 40), seed=0)
    return s


def _losses(store: Store, name: str) -> list[float]:
    rows = [json.loads(ln) for ln in (store.path("runs", name) / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1))
    return [r["loss"] for r in rows]


@pytest.mark.slow
@pytest.mark.parametrize("model_type", ["clip", "focusclip"])
def test_training_decreases_loss_and_exports_an_open_clip_model(store, model_type):
    cfg = TrainConfig(
        dataset="synth",
        model_type=model_type,
        name=f"t-{model_type}",
        max_steps=10,
        lr=2e-3,
        warmup=2,
        **TINY,
    )
    summary = train(cfg, store)
    losses = _losses(store, f"t-{model_type}")
    assert len(losses) == 10
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1
    run = store.path("runs", f"t-{model_type}")
    meta = store.meta("runs", f"t-{model_type}")["config"]
    assert (meta["arch"], meta["model_type"], meta["context_length"], meta["image_size"]) == (
        "focus-tiny",
        model_type,
        77,
        32,
    )
    assert (run / "loss_curve.png").stat().st_size > 1000 and (run / "checkpoints" / "last.pt").is_file()
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"loss", "lr", "temperature", "samples_per_s", "truncated"} <= row.keys()
    if model_type == "focusclip":
        assert {"loss_masked_image", "loss_masked_text", "loss_image_text"} <= row.keys()
        assert 0.0 <= summary["alpha"] <= 1.0 and summary["alpha"] != 0.5
    register_model_configs()
    model, _, preprocess = open_clip.create_model_and_transforms(
        "focus-tiny", pretrained=str(run / "model.pt"), force_image_size=32
    )
    loaded, _, tokenizer = load_model(run_dir=run)
    x = preprocess(__import__("PIL.Image", fromlist=["Image"]).new("RGB", (50, 40)))[None]
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(x), loaded.encode_image(x))
        assert loaded.encode_text(tokenizer(["a person running"])).shape == (1, 64)


@pytest.mark.slow
def test_resume_gives_the_same_loss_curve(store, monkeypatch):
    base = {
        "dataset": "synth",
        "model_type": "focusclip",
        "max_steps": 8,
        "lr": 3e-3,
        "warmup": 2,
        "checkpoint_every": 2,
        **TINY,
    }
    train(TrainConfig(name="straight", **base), store)
    straight = _losses(store, "straight")

    real_get = train_data.BatchLoader.get
    trigger: dict[str, object] = {}

    def get(self, epoch, step):
        s = epoch * self.steps_per_epoch + step
        if trigger.get("sigint") == s:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: finish the step, save, stop
        if trigger.get("crash") == s:
            raise RuntimeError("simulated crash")  # a kill: only the periodic checkpoint survives
        return real_get(self, epoch, step)

    monkeypatch.setattr(train_data.BatchLoader, "get", get)
    trigger["sigint"] = 2
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(name="resumed", **base), store)
    staging = store.staging_dir("runs", "resumed")
    assert json.loads((staging / "checkpoints" / "last.json").read_text())["step"] == 3
    assert not store.exists("runs", "resumed")
    trigger.clear()
    trigger["crash"] = 5
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(TrainConfig(name="resumed", resume=True, **base), store)
    assert json.loads((staging / "checkpoints" / "last.json").read_text())["step"] == 4
    trigger.clear()
    train(TrainConfig(name="resumed", resume=True, **base), store)
    assert _losses(store, "resumed") == pytest.approx(straight, rel=1e-5, abs=1e-6)


def test_nan_loss_stops_with_the_last_good_checkpoint(store, monkeypatch):
    calls = {"n": 0}
    real = train_mod.clip_loss

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss, terms = real(*args, **kwargs)
        return (loss * float("nan"), terms) if calls["n"] == 4 else (loss, terms)

    monkeypatch.setattr(train_mod, "clip_loss", poisoned)
    cfg = TrainConfig(dataset="synth", model_type="clip", name="nan", max_steps=6, checkpoint_every=2, **TINY)
    with pytest.raises(PipelineError, match=r"loss is nan at step 4.*last good checkpoint"):
        train(cfg, store)
    ckpt = torch.load(store.staging_dir("runs", "nan") / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert not store.exists("runs", "nan")


def test_cli_rejects_a_missing_dataset(cli):
    result = cli("train", "--dataset", "nope", "--model-type", "clip", "--arch", "focus-tiny")
    assert result.exit_code == 2 and "no artifact datasets/nope" in result.output


@pytest.mark.slow
def test_torchrun_two_process_gloo_run(store, tmp_path):
    """Also with a locked tower and zero-shot evaluations (rank 0 evaluates, rank 1 waits at a barrier)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    cli = Path(sys.executable).with_name("focus-pipeline")
    if not torchrun.is_file() or not cli.is_file():
        pytest.skip("torchrun / focus-pipeline entry points not installed in this environment")
    root = Path(str(store.root)).parent / "ddp-store"
    shutil.copytree(store.root, root, ignore=shutil.ignore_patterns(".cache", "runs"))
    sample = SampleConfig(seed=3, images=10, action_test_per_class=1, state_test_per_class=2)
    eval_root = generate_sample(sample, tmp_path / "sample").eval_root  # the demo's held-out sets, small
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FOCUS_PROGRESS": "0"}
    cmd = [
        str(torchrun),
        "--nproc_per_node",
        "2",
        "--standalone",
        "--no-python",
        str(cli),
        "--store",
        str(root),
        "train",
        "--dataset",
        "synth",
        "--model-type",
        "focusclip",
        "--arch",
        "focus-tiny",
        "--image-size",
        "32",
        "--batch-size",
        "4",
        "--max-steps",
        "4",
        "--log-every",
        "2",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--name",
        "ddp",
        "--lock-text",
        "--zeroshot-every",
        "3",
        "--zeroshot-tasks",
        "synthetic-action,synthetic-body-state",
        "--data-root",
        str(eval_root),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = Store(root)
    rows = [json.loads(ln) for ln in (ddp.path("runs", "ddp") / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert [r["step"] for r in rows if "zeroshot/synthetic-action/acc@3" in r] == [3, 4]
    assert len(list((ddp.path("runs", "ddp") / "zeroshot").glob("step-*.json"))) == 4
    meta = ddp.meta("runs", "ddp")
    assert meta["summary"]["global_batch"] == 8 and meta["counts"]["steps"] == 4
    assert meta["locked"]["text"]["unlocked_blocks"] == 0
    model, _, _ = load_model(run_dir=ddp.path("runs", "ddp"))
    assert sum(p.numel() for p in model.parameters()) > 0


def test_stored_and_rendered_heatmaps_agree_after_the_same_crop(store):
    """The two heatmap sources (stored PNG cropped with the image, keypoints cropped then rendered) match."""
    import open_clip as oc

    tok = oc.get_tokenizer("focus-tiny")
    common = {
        "split": "train",
        "image_size": 32,
        "cache_scale": 1.125,
        "tokenizer": tok,
        "context_length": 77,
    }
    batches = []
    for source in ("keypoints", "dataset"):
        data = train_data.load_train_data(store, "synth", heatmap_source=source, **common)
        loader = train_data.BatchLoader(
            data,
            batch_size=8,
            image_size=32,
            device=torch.device("cpu"),
            seed=0,
            hflip=True,
            crop_scale=(0.6, 1),
        )
        batches.append(loader.get(epoch=1, step=2))
    (a, b) = batches
    torch.testing.assert_close(a.images, b.images)
    torch.testing.assert_close(a.tokens, b.tokens)
    assert a.heatmaps.shape == b.heatmaps.shape == (8, 32, 32)
    assert (a.heatmaps - b.heatmaps).abs().mean().item() < 0.05
    assert a.heatmaps.amax().item() > 0.9


def test_uniform_heatmap_control_masks_nothing(store):
    """heatmap_source="uniform": same batches as the keypoint source but all-ones heatmaps, so FocusCLIP's
    masked view is the image itself."""
    tok = open_clip.get_tokenizer("focus-tiny")
    data = train_data.load_train_data(
        store, "synth", split="train", image_size=32, cache_scale=1.125, tokenizer=tok, context_length=77
    )
    common = {"batch_size": 8, "image_size": 32, "device": torch.device("cpu"), "seed": 0}
    real = train_data.BatchLoader(data, **common).get(epoch=0, step=1)
    uniform = train_data.BatchLoader(data, uniform_heatmap=True, **common).get(epoch=0, step=1)
    torch.testing.assert_close(real.images, uniform.images)
    assert real.heatmaps.amin().item() < 0.1
    assert torch.equal(uniform.heatmaps, torch.ones(8, 32, 32))
    torch.manual_seed(0)
    model = train_mod.FocusCLIP.create("focus-tiny", focus=True, image_size=32).eval()
    with torch.no_grad():
        out = model(uniform.images, uniform.tokens, uniform.heatmaps)
    torch.testing.assert_close(out["masked"], out["image"])


def test_bad_image_row_is_named_and_leaves_no_cache(store):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.artifacts.datasets import SCHEMA
    from pipeline.synthetic.dataset import synthetic_rows

    rows = synthetic_rows(4, size=(40, 40), seed=1, split="train")
    rows[2]["image"] = {"bytes": b"not an image", "path": None}
    with store.create("datasets", "broken", stage="test", config={}) as w:
        (w.dir / "data").mkdir()
        pq.write_table(
            pa.Table.from_pylist(rows, schema=SCHEMA), w.dir / "data" / "train-00000-of-00001.parquet"
        )
    tok = __import__("open_clip").get_tokenizer("focus-tiny")
    with pytest.raises(PipelineError, match=r"train-00000-of-00001.parquet row 2: cannot decode image"):
        train_data.load_train_data(
            store, "broken", split="train", image_size=32, cache_scale=1.0, tokenizer=tok, context_length=77
        )
    left = [p.name for p in store.cache_dir("train-cache", "broken").iterdir() if p.suffix != ".lock"]
    assert not left  # only the (empty) lock file of the build that failed


def test_the_export_loads_in_plain_open_clip_with_the_runs_shapes_and_preprocessing(store):
    # a context override: open_clip rebuilding the architecture's 77 positions would stretch the table
    cfg = TrainConfig(
        dataset="synth", model_type="clip", name="export", max_steps=2, context_length=32, **TINY
    )
    train(cfg, store)
    run = store.path("runs", "export")
    export = f"local-dir:{run / 'export'}"
    model, _, preprocess = open_clip.create_model_and_transforms(export)
    tokenizer = open_clip.get_tokenizer(export)
    assert model.positional_embedding.shape[0] == 32 and tokenizer.context_length == 32
    ours, our_preprocess, our_tokenizer = load_model(run_dir=run)
    from PIL import Image

    image = Image.fromarray(
        torch.randint(
            0, 255, (41, 57, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
        ).numpy()
    )
    texts = ["a person running", "a person sitting on a chair with the left arm raised"]
    with torch.no_grad():
        x, y = preprocess(image)[None], our_preprocess(image)[None]
        torch.testing.assert_close(x, y, rtol=0, atol=0)  # the same pixels: eval --run's pipeline
        theirs = model.encode_image(x, normalize=True) @ model.encode_text(tokenizer(texts), normalize=True).T
        mine = ours.encode_image(y, normalize=True) @ ours.encode_text(our_tokenizer(texts), normalize=True).T
    torch.testing.assert_close(theirs, mine)  # float32 noise at most (~1e-8): the same model
    assert theirs.argmax(dim=1).tolist() == mine.argmax(dim=1).tolist()


def _open_clip_train_csv(store: Store, out: Path) -> Path:
    """The synthetic dataset's images as JPEG files and a CSV (filepath, title): open_clip_train's input."""
    import io

    import pyarrow.parquet as pq
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    lines = ["filepath\ttitle"]
    for shard in sorted((store.path("datasets", "synth") / "data").glob("train-*.parquet")):
        for r in pq.read_table(shard, columns=["image", "image_id", "description"]).to_pylist():
            path = out / f"{Path(r['image_id']).stem}.jpg"
            Image.open(io.BytesIO(r["image"]["bytes"])).convert("RGB").save(path)
            lines.append(f"{path}\t{r['description']}")
    csv = out / "train.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv


@pytest.mark.slow
def test_open_clip_train_resumes_from_our_checkpoint_and_open_clip_loads_it(store, tmp_path):
    cfg = TrainConfig(dataset="synth", model_type="clip", name="octrain", max_steps=4, **TINY)  # 1 epoch
    train(cfg, store)
    ckpt = store.path("runs", "octrain") / "checkpoints" / "last.pt"
    register_model_configs()
    loaded = open_clip.create_model("focus-tiny", pretrained=str(ckpt), force_image_size=32)  # its state_dict
    ours, _, _ = load_model(run_dir=store.path("runs", "octrain"))
    torch.testing.assert_close(loaded.state_dict(), ours.state_dict())
    entry = (
        "import sys; from training.towers import register_model_configs; register_model_configs(); "
        "from open_clip_train.main import main; main(sys.argv[1:])"
    )
    csv = _open_clip_train_csv(store, tmp_path / "csv")
    args = ["--train-data", csv, "--dataset-type", "csv", "--csv-separator", "\t", "--csv-img-key",
            "filepath", "--csv-caption-key", "title", "--model", "focus-tiny", "--force-image-size", "32",
            "--batch-size", "8", "--epochs", "2", "--workers", "0", "--precision", "fp32", "--lr", "1e-3",
            "--logs", tmp_path / "logs", "--name", "resumed", "--resume", ckpt]  # fmt: skip
    res = subprocess.run(
        [sys.executable, "-c", entry, *map(str, args)], capture_output=True, text=True, timeout=240
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"=> resuming checkpoint '{ckpt}' (epoch 1)" in res.stdout + res.stderr
    assert (tmp_path / "logs" / "resumed" / "checkpoints" / "epoch_2.pt").is_file()  # it trained epoch 2


def test_push_publishes_the_export_with_a_model_card_that_open_clip_loads_from_the_hub(
    store, monkeypatch, tmp_path
):
    from fake_hub import FakeHub
    from typer.testing import CliRunner

    from pipeline.cli import app

    train(TrainConfig(dataset="synth", model_type="clip", name="pushed", max_steps=2, **TINY), store)
    monkeypatch.setenv("HF_TOKEN", "hf_test_not_a_real_token")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", hub.endpoint)
        monkeypatch.setattr(
            "huggingface_hub.constants.HUGGINGFACE_CO_URL_TEMPLATE",
            hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        )
        args = ["--store", str(store.root), "push", "--run", "pushed", "--repo", "someone/tiny-clip"]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        files = hub.files("models", "someone/tiny-clip")
        assert {"open_clip_config.json", "open_clip_model.safetensors", "README.md"} <= set(files)
        card = files["README.md"].decode()
        assert "library_name: open_clip" in card and "hf-hub:someone/tiny-clip" in card
        assert "| loss | infonce |" in card and "datasets/synth" in card
        model, _, preprocess = open_clip.create_model_and_transforms("hf-hub:someone/tiny-clip")
    ours, our_preprocess, _ = load_model(run_dir=store.path("runs", "pushed"))
    torch.testing.assert_close(model.state_dict(), ours.state_dict())
    assert model.visual.preprocess_cfg["resize_mode"] == "squash"
