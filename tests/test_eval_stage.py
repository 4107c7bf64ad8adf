"""The eval stage end to end with a real tiny open_clip model on CPU: results against an independent
per-image loop, skipped-row accounting, absent data, ad-hoc tasks, runs from the store, the CLI, --compare."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_eval_readers import write_clip, write_stanford40  # tests/ is on sys.path under pytest

from evaluation.config import EvalConfig
from evaluation.stage import evaluate
from evaluation.tasks import TASKS, Task

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(module_tmp) -> Path:
    from training.inference import load_model

    torch.manual_seed(0)
    model, _, _ = load_model(arch="focus-tiny")
    path = module_tmp("ckpt") / "tiny.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def data_root(module_tmp, shared_data) -> Path:
    root = module_tmp("eval-data")
    os.symlink(shared_data / "fer2013" / "images_msambare_layout", root / "fer2013")
    os.symlink(shared_data / "utkface" / "images", root / "utkface")
    write_stanford40(root / "stanford40")
    k400 = root / "kinetics400"
    k400.mkdir()
    os.symlink(shared_data / "kinetics400" / "kinetics-400_val.csv", k400 / "kinetics-400_val.csv")
    write_clip(k400 / "clips" / "0wR5jVB-WPk_000417_000427.mp4")
    write_clip(k400 / "clips" / "3caPS4FHFF8_000036_000046.mp4")
    (k400 / "clips" / "--33Lscn6sk_000004_000014.mp4").write_bytes(b"\x00" * 300)
    return root


def _per_image_accuracy(reference, task: Task, items: list[tuple[Path, str]]) -> tuple[float, float]:
    """The paper's eval.py loop, written independently: one image at a time, argsort of the raw logits."""
    model, preprocess, tokenizer = reference
    classes = list(task.classes)
    prompts = [
        task.templates[0].format(
            c=task.prompt_name(c), article="an" if task.prompt_name(c)[0] in "aeiou" else "a"
        )
        for c in classes
    ]
    with torch.no_grad():
        text = model.encode_text(tokenizer(prompts))
        text = text / text.norm(dim=-1, keepdim=True)
        rows, labels = [], []
        for path, label in items:
            image = preprocess(Image.open(path).convert("RGB")).unsqueeze(0)
            feats = model.encode_image(image)
            rows.append((feats / feats.norm(dim=-1, keepdim=True) @ text.T)[0].numpy())
            labels.append(classes.index(label))
    logits, labels = np.stack(rows), np.array(labels)
    ranked = np.argsort(-logits, axis=1)
    return float(np.mean([labels[i] in ranked[i, : task.k] for i in range(len(labels))])), float(
        np.mean(ranked[:, 0] == labels)
    )


@pytest.fixture(scope="module")
def reference(checkpoint):
    """The same weights, loaded separately for the independent per-image loop."""
    from training.inference import load_model

    return load_model(arch="focus-tiny", checkpoint=checkpoint)


@pytest.mark.slow
def test_evaluate_end_to_end(store, checkpoint, reference, data_root, tmp_path):
    cfg = EvalConfig(
        arch="focus-tiny",
        checkpoint=str(checkpoint),
        data_root=str(data_root),
        tasks=("fer2013-emotion", "utkface-age", "kinetics400-action", "stanford40-action", "emotic-age"),
        splits={"fer2013": "test"},
        workers=0,
        batch_size=8,
        name="e2e",
    )
    results = evaluate(cfg, store)
    folder = store.path("evals", "e2e")
    assert json.loads((folder / "results.json").read_text()) == results
    by = {r["task"]: r for r in results}
    for r in results:
        assert {"task", "dataset", "model", "pretrained", "metrics", "n_samples", "skipped"} <= set(r)
        assert r["model"] == "focus-tiny" and r["pretrained"] == str(checkpoint)

    fer = by["fer2013-emotion"]
    assert fer["status"] == "ok" and fer["n_samples"] == 14 and fer["skipped"] == {}
    assert set(fer["metrics"]) == {"acc@3", "acc1", "acc5", "mean_per_class_recall"}
    fer_items = sorted((p, p.parent.name) for p in (data_root / "fer2013" / "test").glob("*/*.jpg"))
    acc3, acc1 = _per_image_accuracy(reference, TASKS["fer2013-emotion"], fer_items)
    assert fer["metrics"]["acc@3"] == pytest.approx(acc3, abs=1e-6)
    assert fer["metrics"]["acc1"] == pytest.approx(acc1, abs=1e-6)

    utk = by["utkface-age"]
    assert (
        utk["n_samples"] == 22
        and utk["skipped"] == {"malformed file name": 2}
        and utk["metrics"]["acc5"] is None
    )
    from evaluation.readers.utkface import parse_name

    utk_items = [
        (p, parse_name(p.name)["age_group"])
        for p in sorted((data_root / "utkface").iterdir())
        if parse_name(p.name)
    ]
    assert utk["metrics"]["acc1"] == pytest.approx(
        _per_image_accuracy(reference, TASKS["utkface-age"], utk_items)[1], abs=1e-6
    )

    k400 = by["kinetics400-action"]
    assert k400["split"] == "val" and k400["n_samples"] == 2 and k400["n_classes"] == 400
    assert k400["skipped"] == {"clip missing": 19906 - 3, "clip decode failed": 1}
    assert k400["n_samples"] + sum(k400["skipped"].values()) == 19906  # never a silently smaller denominator
    assert k400["random"]["analytic"] == pytest.approx(3 / 400)

    s40 = by["stanford40-action"]
    assert s40["n_samples"] == 3 and s40["n_classes"] == 2 and s40["metrics"]["acc@3"] == 1.0  # k >= C

    emotic = by["emotic-age"]
    assert emotic["status"] == "skipped" and str(data_root / "emotic") in emotic["looked_for"]
    assert emotic["metrics"]["acc1"] is None and emotic["n_samples"] == 0

    md = (folder / "results.md").read_text()
    assert "| fer2013-emotion | Emotion | test | 3 | 14 | 0 |" in md and "emotic-age [skipped]" in md
    assert "kinetics400-action: Kinetics-400 test has no labels here" in md
    assert (folder / "results.png").read_bytes()[:4] == b"\x89PNG"
    meta = store.meta("evals", "e2e")
    assert meta["counts"]["scored"] == 4 and meta["config"]["tasks"][0] == "fer2013-emotion"
    _check_clip_benchmark_build(folder / "clip_benchmark", by, tmp_path)


def _check_clip_benchmark_build(folder: Path, by_task: dict[str, dict], tmp_path: Path) -> None:
    """CLIP_benchmark's own `build` aggregates our per-task files into its CSV, one row per scored task."""
    exe = Path(sys.executable).with_name("clip_benchmark")
    if not exe.is_file():
        pytest.skip("clip_benchmark (a test dependency) is not installed")
    files = sorted(folder.glob("*.json"))
    assert [f.stem for f in files] == sorted(t for t, r in by_task.items() if r["status"] == "ok")
    out = folder.parent / "benchmark.csv"
    subprocess.run(
        [str(exe), "build", *map(str, files), "--output", str(out)], check=True, capture_output=True
    )
    rows = {r["dataset"]: r for r in csv.DictReader(out.open())}
    assert set(rows) == {f.stem for f in files}
    fer = rows["fer2013-emotion"]
    assert fer["task"] == "zeroshot_classification" and fer["language"] == "en"
    assert float(fer["acc1"]) == pytest.approx(by_task["fer2013-emotion"]["metrics"]["acc1"])
    assert fer["model_fullname"] == f"{fer['model']} {fer['pretrained']}"


def test_adhoc_task_with_workers_and_ensemble(store, checkpoint, shared_data):
    """A task defined in code (as the demo does) on the FER2013 image-folder reader, with its own classes."""
    task = Task(
        id="toy-mood",
        dataset="moods",
        reader="fer2013",
        label="class",
        classes=("happy", "sad", "angry"),
        templates=("a photo of a {c} face", "a {c} looking person"),
        k=2,
        split="test",
        group="Emotion",
    )
    cfg = EvalConfig(
        arch="focus-tiny",
        checkpoint=str(checkpoint),
        tasks=(task,),
        templates="ensemble",
        paths={"moods": str(shared_data / "fer2013" / "images_msambare_layout")},
        workers=2,
        batch_size=4,
        name="toy",
    )
    (r,) = evaluate(cfg, store)
    assert r["status"] == "ok" and r["n_samples"] == 6 and r["skipped"] == {"unknown label": 8}
    assert r["unknown_labels"] == {"disgust": 2, "fear": 2, "neutral": 2, "surprise": 2}
    assert set(r["metrics"]) == {"acc@2", "acc1", "acc5", "mean_per_class_recall"}
    assert store.meta("evals", "toy")["config"]["custom_tasks"][0]["classes"] == ["happy", "sad", "angry"]
    again = evaluate(EvalConfig(**{**cfg.__dict__, "workers": 0, "overwrite": True}), store)[0]
    assert again["metrics"] == r["metrics"]  # workers change speed, not results


def test_eval_from_a_run_artifact_with_limit_and_a_bad_file(store, checkpoint, data_root, tmp_path):
    import shutil

    config = {"arch": "focus-tiny", "model_type": "clip", "context_length": 77, "image_size": 64}
    with store.create("runs", "tiny", stage="train", config=config) as w:
        shutil.copy(checkpoint, w.dir / "model.pt")
    (tmp_path / "fairface_label_val.csv").write_text("file,age\nval/1.jpg,3-9\n")  # no race column
    cfg = EvalConfig(
        run="tiny",
        data_root=str(data_root),
        tasks=("fairface-race", "utkface-race"),
        workers=0,
        limit=5,
        paths={"fairface": str(tmp_path)},
    )
    bad, r = evaluate(cfg, store)
    assert (
        bad["status"] == "error" and "missing column" in bad["message"]
    )  # reported; the other task still ran
    assert (
        r["pretrained"] == "runs/tiny" and r["n_samples"] == 5 and r["limit"] == 5 and r["n_available"] == 22
    )
    meta = store.meta("evals", "tiny")
    assert meta["inputs"][0]["name"] == "tiny" and meta["inputs"][0]["kind"] == "runs"
    assert "fairface-race [error]" in (store.path("evals", "tiny") / "results.md").read_text()


def test_cli_eval_compare_and_errors(cli, store, checkpoint, data_root):
    common = ["--arch", "focus-tiny", "--checkpoint", checkpoint, "--data-root", data_root, "--workers", "0"]
    res = cli("eval", *common, "--tasks", "utkface-age", "emotic-age", "--name", "a")
    assert res.exit_code == 0, res.output
    assert "utkface-age          acc@1" in res.output and "emotic-age           skipped" in res.output
    res = cli(
        "eval",
        *common,
        "--tasks",
        "stanford40-action",
        "--split",
        "stanford40=test",
        "--templates",
        "ensemble",
        "--name",
        "b",
    )
    assert res.exit_code == 0, res.output
    res = cli("eval", "--compare", "evals/a", "b")
    assert res.exit_code == 0, res.output
    assert "| Model | Action: Stanford 40 (Acc@3) | Age: UTKFace (Acc@1) | Avg. |" in res.output
    assert "| Sim. random |" in res.output and "| b | 100.00 | - | 100.00 (1/2) |" in res.output
    assert "| Random (k/C) | 100.00 | 20.00 | 60.00 |" in res.output
    assert (store.path("reports", "compare") / "comparison.png").is_file()
    assert [i["name"] for i in store.meta("reports", "compare")["inputs"]] == ["a", "b"]
    res = cli("store", "rm", "evals", "a")  # the comparison was built from it
    assert res.exit_code == 2 and "reports/compare" in res.output and store.exists("evals", "a")
    res = cli("eval", "--compare", "evals/a", "--run", "a", "--limit", "3")
    assert res.exit_code == 2 and "--run, --limit: scoring option(s), not read by --compare" in res.output
    with store.create("reports", "gallery", stage="analyze", config={}):
        pass
    res = cli("eval", "--compare", "evals/a", "--name", "gallery")  # never replaces another stage's report
    assert res.exit_code == 2 and "reports/gallery holds a 'analyze' report, not a comparison" in res.output
    assert store.meta("reports", "gallery")["stage"] == "analyze"

    for args, message in [
        (["--path", "fer2013"], "expected DATASET=DIR"),
        (["--tasks", "nope"], "unknown task 'nope'"),
        (["--tasks", "utkface-age", "--name", "a"], "already exists"),
        (["--tasks", "utkface-age", "--templates", "many"], "paper or ensemble"),
        # a key that names none of the tasks would be ignored and the default folder or split scored
        (
            ["--tasks", "utkface-age", "--path", "utkface-age=elsewhere"],
            "no task here reads dataset 'utkface-age'",
        ),
        (
            ["--tasks", "utkface-age", "--split", "utkfce=val"],
            "'utkfce' is none of the tasks here (utkface-age)",
        ),
        (["--tasks", "utkface-age", "--limit", "-1"], "--limit -1: must be >= 1"),
        (["--tasks", "utkface-age", "--device", "bogus"], "--device 'bogus': not a torch device"),
        (["not-a-task"], "unexpected argument"),
    ]:
        res = cli("eval", *common, *args)
        assert res.exit_code == 2 and message in res.output, (args, res.output)
    res = cli("eval", "--compare", "evals/missing")
    assert res.exit_code == 2 and "no results.json" in res.output
    res = cli("eval", "--arch", "no-such-arch", "--tasks", "utkface-age")
    assert res.exit_code == 2 and "unknown open_clip architecture" in res.output
    assert not store.exists("evals", "no-such-arch-random")


def test_cli_eval_that_scores_nothing_fails_and_publishes_nothing(cli, store, checkpoint, tmp_path):
    """Before: `eval --data-root /nonexistent` exited 0 and published an eval with nothing scored."""
    common = ["--arch", "focus-tiny", "--checkpoint", checkpoint, "--workers", "0", "--name", "none"]
    res = cli(
        "eval", *common, "--data-root", tmp_path / "nonexistent", "--tasks", "utkface-age", "fer2013-emotion"
    )
    assert res.exit_code == 2, res.output
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("error: no task scored anything (utkface-age: skipped, dataset folder")
    assert "nothing was published" in line and not store.exists("evals", "none")
    res = cli(
        "eval", *common, "--data-root", tmp_path / "nonexistent", "--tasks", "utkface-age", "--allow-empty"
    )
    assert res.exit_code == 0, res.output
    assert store.meta("evals", "none")["counts"]["scored"] == 0


def test_cli_eval_label_file_paths_stay_inside_the_dataset_folder(cli, store, checkpoint, tmp_path):
    """A label CSV naming '../x.jpg' or an absolute path must not make eval open files elsewhere."""
    from PIL import Image

    root = tmp_path / "fairface"
    (root / "val").mkdir(parents=True)
    for path in (root / "val" / "1.jpg", tmp_path / "outside.jpg"):
        Image.new("RGB", (40, 40), (120, 80, 60)).save(path)
    rows = ["val/1.jpg", "../outside.jpg", str(tmp_path / "outside.jpg"), "val/../../outside.jpg"]
    (root / "fairface_label_val.csv").write_text(
        "file,age,gender,race,service_test\n" + "".join(f"{r},20-29,Male,White,True\n" for r in rows)
    )
    args = ["--arch", "focus-tiny", "--checkpoint", checkpoint, "--workers", "0", "--name", "ff"]
    res = cli("eval", *args, "--tasks", "fairface-race", "--path", f"fairface={root}")
    assert res.exit_code == 0, res.output
    (result,) = json.loads((store.path("evals", "ff") / "results.json").read_text())
    assert result["n_samples"] == 1 and result["skipped"] == {"path outside the dataset folders": 3}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_amp_on_gpu_matches_cpu(store, checkpoint, data_root):
    cfg = dict(
        arch="focus-tiny",
        checkpoint=str(checkpoint),
        data_root=str(data_root),
        tasks=("utkface-age",),
        workers=0,
    )
    cpu = evaluate(EvalConfig(**cfg, device="cpu", name="cpu"), store)[0]
    gpu = evaluate(EvalConfig(**cfg, device="cuda", name="gpu"), store)[0]
    assert gpu["n_samples"] == cpu["n_samples"]
    assert (
        abs(gpu["metrics"]["acc1"] - cpu["metrics"]["acc1"]) <= 2 / cpu["n_samples"]
    )  # fp16 may flip a near tie


def test_check_data_says_what_is_found_and_where_to_get_the_rest(cli, shared_data):
    res = cli("eval", "--check-data", "--data-root", str(shared_data))
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert re.search(
        r"^utkface-age\s+found\s+split=all\s+22 samples \(2 skipped: malformed file name 2\)", out, re.M
    )
    block = out[out.index("stanford40-action") :].split("\n    expected")[0]
    assert "missing" in block and "ImageSplits/actions.txt" in block
    assert (
        "http://vision.stanford.edu/Datasets/40actions.html" in out and "susanqq.github.io/UTKFace" not in out
    )
    assert out.rstrip().endswith("of 10 tasks have data")


def test_check_data_skips_and_names_a_kinetics_row_without_a_segment(cli, shared_data, tmp_path):
    lines = (shared_data / "kinetics400" / "kinetics-400_val.csv").read_text().splitlines()
    fields = lines[5].split(",")  # line 6 of the file
    fields[2] = "nan"
    lines[5] = ",".join(fields)
    root = tmp_path / "kinetics400"
    root.mkdir()
    (root / "kinetics-400_val.csv").write_text("\n".join(lines) + "\n")
    label, youtube_id, start, end = lines[1].split(",")[:4]  # one clip present, as its extracted frame
    Image.new("RGB", (32, 32)).save(root / f"{youtube_id}_{int(start):06d}_{int(end):06d}.jpg")
    res = cli("eval", "--check-data", "--data-root", str(tmp_path), "--tasks", "kinetics400-action")
    assert res.exit_code == 0, res.output
    assert re.search(
        r"^kinetics400-action\s+found\s+split=val\s+1 samples \(.*bad segment 1", res.stdout, re.M
    )
    assert f"skipped {root / 'kinetics-400_val.csv'} line 6 (time_start 'nan', time_end" in res.stdout
