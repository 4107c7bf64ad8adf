"""Fine-tuning on small data: locked towers (weights bit-identical, outside the optimizer, norm statistics
fixed, `--unlock-last`), zero-shot evaluation during training (the evaluations, their CLIP_benchmark files,
the last one equal to `eval --run`, training numerics untouched), and the per-step times in metrics.jsonl.
Real runs of tiny models on CPU over a real parquet dataset and the synthetic sample's held-out sets. The
2-process torchrun/gloo run with both is in test_train_runs.py."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_towers import TINY, build_tiny_towers
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.errors import PipelineError
from pipeline.store import Store
from pipeline.synthetic import SampleConfig, generate_sample
from pipeline.synthetic.dataset import write_synthetic_dataset
from training import data as train_data
from training.config import TrainConfig
from training.inference import register_model_configs
from training.locking import lock_towers, tower_layout
from training.model import FocusCLIP
from training.optim import build_optimizer
from training.publish import model_card
from training.towers import Towers, create_clip
from training.train import train

TASKS = ("synthetic-action", "synthetic-body-state")
SMALL = {"image_size": 32, "batch_size": 8, "log_every": 1, "device": "cpu", "num_threads": 1}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def store(module_tmp) -> Store:
    s = Store(module_tmp("finetune") / "store")
    write_synthetic_dataset(s, "synth", n_train=32, size=(48, 40), seed=0)
    return s


@pytest.fixture(scope="module")
def eval_root(module_tmp) -> Path:
    """The synthetic sample's held-out sets (10 action images, 6 body-state crops): the demo's eval data."""
    config = SampleConfig(seed=3, images=10, action_test_per_class=1, state_test_per_class=2)
    return generate_sample(config, module_tmp("sample")).eval_root


def _start(tmp_path: Path, arch: str, **kwargs) -> Path:
    """A starting checkpoint (as a user's pretrained CLIP would be), saved with seed 1."""
    register_model_configs()
    torch.manual_seed(1)
    path = tmp_path / f"{arch}-start.pt"
    torch.save(create_clip(arch, image_size=32, **kwargs).state_dict(), path)
    return path


def _rows(store: Store, run: str) -> list[dict]:
    return [json.loads(ln) for ln in (store.path("runs", run) / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arch", "model_type"), [("focus-tiny", "focusclip"), ("focus-small", "clip")], ids=["vit", "resnet"]
)
def test_a_locked_tower_stays_bit_identical_and_is_not_in_the_optimizer(
    store, eval_root, tmp_path, arch, model_type
):
    """With a zero-shot evaluation at step 2: the training mode it restores keeps the fixed norms fixed."""
    start = _start(tmp_path, arch)
    name = f"lock-{arch}"
    cfg = TrainConfig(dataset="synth", model_type=model_type, arch=arch, name=name, max_steps=3, lr=1e-3,
                      pretrained=str(start), lock_image=True, zeroshot_every=2, zeroshot_tasks=TASKS[1:],
                      data_root=str(eval_root), **SMALL)  # fmt: skip
    summary = train(cfg, store)
    before = torch.load(start, weights_only=True)
    after = torch.load(store.path("runs", name) / "model.pt", weights_only=True)
    image = [k for k in before if k.startswith("visual.")]
    text = [k for k in before if not k.startswith("visual.") and k != "logit_scale"]
    # every image-tower tensor, BatchNorm running statistics included (the ResNet has 19 such layers)
    assert all(torch.equal(before[k], after[k]) for k in image)
    assert all(not torch.equal(before[k], after[k]) for k in text if before[k].is_floating_point())
    ckpt = torch.load(store.path("runs", name) / "checkpoints" / "last.pt", weights_only=True)
    in_optimizer = sum(
        len(g["params"]) for g in ckpt["optimizer"]["param_groups"] + ckpt["focus_optimizer"]["param_groups"]
    )
    model = FocusCLIP(create_clip(arch, image_size=32), focus=model_type == "focusclip")
    locked = lock_towers(model.clip, image=True, text=False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert in_optimizer == len(trainable)
    ids = {
        id(p)
        for g in build_optimizer(model, cfg.resolved(), torch.device("cpu")).param_groups
        for p in g["params"]
    }
    assert ids == {id(p) for p in trainable}
    assert not ids & {id(p) for n, p in model.clip.named_parameters() if n.startswith("visual.")}
    frozen = sum(before[k].numel() for k in image if k in dict(model.clip.named_parameters()))
    recorded = store.meta("runs", name)["locked"]
    assert recorded == {"image": locked.towers["image"]} and recorded["image"]["frozen_params"] == frozen
    assert summary["trainable_params"] == sum(p.numel() for p in trainable)
    if arch == "focus-small":
        norms = [m for m in model.clip.visual.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert recorded["image"]["fixed_norms"] == len(norms) == 19
        model.fix_norm_stats(locked.fixed_norms)
        model.train()
        assert not any(m.training for m in locked.fixed_norms) and model.clip.transformer.training
    card = model_card(store, name, "someone/locked")
    assert "Locked towers" in card and f"image ({recorded['image']['kind']}): whole tower" in card


@pytest.mark.slow
def test_unlock_last_one_changes_exactly_the_last_block_and_the_head(store, tmp_path):
    """The paper's tower families (timm ViT, Hugging Face BERT), both locked but for their last block."""
    folders = build_tiny_towers(tmp_path)
    towers = Towers(image=str(folders["vit"]), text=str(folders["bert"]))
    start = _start(tmp_path, TINY, towers=towers, context_length=64)
    cfg = TrainConfig(dataset="synth", model_type="focusclip", arch=TINY, name="unlock1", max_steps=2,
                      lr=1e-3, pretrained=str(start), text_tower=str(folders["bert"]), context_length=64,
                      lock_image=True, lock_text=True, unlock_last=1, **SMALL)  # fmt: skip
    train(cfg, store)
    before = torch.load(start, weights_only=True)
    after = torch.load(store.path("runs", "unlock1") / "model.pt", weights_only=True)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    clip = create_clip(TINY, image_size=32, context_length=64, towers=Towers(text=str(folders["bert"])))
    expected = {"logit_scale"}
    for tower in ("image", "text"):
        layout = tower_layout(clip, tower)
        parts = {n: layout.part(n) for n, _ in clip.named_parameters() if layout.member(n)}
        assert {
            n for n, part in parts.items() if part == len(layout.blocks) - 1
        }  # the last block has weights
        expected |= {n for n, part in parts.items() if part in (len(layout.blocks) - 1, "head")}
    assert changed == expected
    assert {k.split(".")[3] for k in changed if k.startswith("visual.trunk.blocks")} == {"11"}
    assert {k.split(".")[4] for k in changed if k.startswith("text.transformer.encoder")} == {"1"}


@pytest.mark.slow
def test_lock_options_are_checked_and_resume_refuses_a_changed_lock(store, eval_root, monkeypatch):
    """Also: a resumed run redoes the evaluations after its checkpoint and keeps those before."""
    with pytest.raises(PipelineError, match="--unlock-last applies to a locked tower"):
        TrainConfig(dataset="synth", unlock_last=1).resolved()
    with pytest.raises(
        PipelineError, match=r"--unlock-last 3: the image tower \(VisionTransformer\) has only 2"
    ):
        cfg = TrainConfig(dataset="synth", arch="focus-tiny", name="u3", lock_image=True, unlock_last=3,
                          max_steps=1, **SMALL)  # fmt: skip
        train(cfg, store)
    real_get = train_data.BatchLoader.get

    def crash_at_3(self, epoch, step):
        if epoch * self.steps_per_epoch + step == 3:
            raise RuntimeError("simulated crash")
        return real_get(self, epoch, step)

    base = {"dataset": "synth", "model_type": "clip", "arch": "focus-tiny", "name": "relock", "max_steps": 4,
            "checkpoint_every": 2, "zeroshot_every": 1, "zeroshot_tasks": TASKS[1:],
            "data_root": str(eval_root), **SMALL}  # fmt: skip
    monkeypatch.setattr(train_data.BatchLoader, "get", crash_at_3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(TrainConfig(**base), store)
    evaluations = store.staging_dir("runs", "relock") / "zeroshot"
    assert len(list(evaluations.iterdir())) == 3  # steps 1, 2, 3; the checkpoint is step 2's
    monkeypatch.setattr(train_data.BatchLoader, "get", real_get)
    with pytest.raises(PipelineError, match="--resume cannot change lock_image False -> True"):
        train(TrainConfig(**base, resume=True, lock_image=True), store)
    train(TrainConfig(**base, resume=True), store)  # the run's own setting resumes
    rows = _rows(store, "relock")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all("zeroshot/synthetic-body-state/acc@1" in r for r in rows)
    names = sorted(p.name for p in (store.path("runs", "relock") / "zeroshot").iterdir())
    assert names == [f"step-{s:06d}_synthetic-body-state.json" for s in (1, 2, 3, 4)]


@pytest.mark.slow
def test_zeroshot_every_writes_its_evaluations_and_the_last_equals_eval_run(store, eval_root, tmp_path):
    common = {"dataset": "synth", "model_type": "clip", "arch": "focus-tiny", "max_steps": 5, "lr": 2e-3,
              "warmup": 1, **SMALL}  # fmt: skip
    train(TrainConfig(name="plain", **common), store)
    cfg = TrainConfig(name="zs", zeroshot_every=2, zeroshot_tasks=TASKS, data_root=str(eval_root), **common)
    summary = train(cfg, store)
    rows = _rows(store, "zs")
    assert [r["loss"] for r in rows] == [r["loss"] for r in _rows(store, "plain")]  # training untouched
    keys = {"zeroshot/synthetic-action/acc@3", "zeroshot/synthetic-body-state/acc@1"}
    assert [r["step"] for r in rows if keys <= r.keys()] == [2, 4, 5]
    assert all(not keys & r.keys() for r in rows if r["step"] not in (2, 4, 5))
    assert all(r["data_s"] > 0 and r["compute_s"] > 0 and r["peak_mem_gb"] is None for r in rows)
    folder = store.path("runs", "zs") / "zeroshot"
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"step-{s:06d}_{t}.json" for s in (2, 4, 5) for t in TASKS]
    last = {t: json.loads((folder / f"step-000005_{t}.json").read_text()) for t in TASKS}
    assert {r["step"] for r in last.values()} == {5} and last["synthetic-action"]["pretrained"] == "runs/zs@5"
    assert summary["zeroshot"] == {k: rows[-1][k] for k in keys}

    args = ["--store", str(store.root), "eval", "--run", "zs", "--tasks", ",".join(TASKS), "--data-root",
            str(eval_root), "--device", "cpu", "--workers", "0"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for r in json.loads((store.path("evals", "zs") / "results.json").read_text()):
        assert r["n_samples"] == {"synthetic-action": 10, "synthetic-body-state": 6}[r["task"]]
        assert {k: v for k, v in r["metrics"].items() if v is not None} == last[r["task"]]["metrics"]

    exe = Path(sys.executable).with_name("clip_benchmark")
    if exe.is_file():  # CLIP_benchmark tabulates the run's curve
        out = tmp_path / "curve.csv"
        subprocess.run(
            [str(exe), "build", str(folder), "--output", str(out)], check=True, capture_output=True
        )
        table = list(csv.DictReader(out.open()))
        assert sorted((int(r["step"]), r["dataset"]) for r in table) == [
            (s, t) for s in (2, 4, 5) for t in TASKS
        ]
    assert (store.path("runs", "zs") / "loss_curve.png").stat().st_size > 1000


def test_zeroshot_data_and_task_ids_are_checked_before_training(store, tmp_path):
    args = {"dataset": "synth", "model_type": "clip", "arch": "focus-tiny", "max_steps": 2, **SMALL}
    with pytest.raises(PipelineError, match="--zeroshot-tasks: unknown task"):
        train(TrainConfig(name="zs-bad", zeroshot_every=1, zeroshot_tasks=("nope",), **args), store)
    with pytest.raises(
        PipelineError, match=r"--zeroshot-tasks synthetic-action: missing, dataset folder .*stanford40"
    ):
        cfg = TrainConfig(
            name="zs-bad", zeroshot_every=1, zeroshot_tasks=TASKS, data_root=str(tmp_path), **args
        )
        train(cfg, store)
    assert not (store.staging_dir("runs", "zs-bad") / "metrics.jsonl").exists()
    with pytest.raises(PipelineError, match="--zeroshot-every needs the tasks"):
        TrainConfig(dataset="synth", zeroshot_every=5).resolved()
