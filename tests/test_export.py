"""The trained model as it leaves the store: runs/<name>/export/ and its SHA256SUMS manifest, checked before
`push`, `eval` and our loader read it; the BERT-tower export loading offline from its own files in a clean
`python -I`, at the run's image size, the way docs/interop.md says; plain open_clip told what to import.

Runs are real CLI trainings of tiny models on CPU (a native open_clip ViT, and the paper's timm-ViT + BERT
families at their smallest, tests/tiny_towers.py); the Hub is tests/fake_hub.py on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fake_hub import FakeHub
from PIL import Image
from tiny_towers import TINY, build_tiny_towers
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.errors import PipelineError
from pipeline.store import Store
from pipeline.synthetic.dataset import write_synthetic_dataset
from training.export import (
    LOAD_WITH_FOCUS_PIPELINE,
    MANIFEST_NAME,
    WEIGHTS_NAME,
    export_model_cfg,
    write_export,
)
from training.inference import load_export, load_model
from training.preprocess import Preprocess
from training.towers import Towers, create_clip, make_tokenizer

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["a person is standing", "a person sitting on the left", "the head and the right arm"]


@pytest.fixture(scope="module")
def towers(module_tmp) -> dict[str, Path]:
    return build_tiny_towers(module_tmp("towers"))


@pytest.fixture(scope="module")
def store(module_tmp, towers) -> Store:
    """Two runs at --image-size 32: "bert" (the tiny timm-ViT + BERT arch, the paper recipe) and "plain"
    (focus-tiny, open_clip's own towers)."""
    s = Store(module_tmp("export") / "store")
    write_synthetic_dataset(s, "synth", n_train=8, size=(48, 40), seed=0)
    common = ["--dataset", "synth", "--max-steps", "2", "--batch-size", "4", "--image-size", "32"]
    common += ["--device", "cpu", "--threads", "1"]
    bert = ["--model-type", "focusclip", "--arch", TINY, "--recipe", "paper", "--context-length", "64"]
    bert += ["--image-tower", towers["vit"], "--text-tower", towers["bert"], "--name", "bert"]
    for args in (bert, ["--model-type", "clip", "--arch", "focus-tiny", "--name", "plain"]):
        res = invoke(s, "train", *common, *args)
        assert res.exit_code == 0, res.output
    return s


def invoke(store: Store, *args):
    return CliRunner().invoke(app, ["--store", str(store.root), *map(str, args)])


def error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, output
    return lines[0]


@contextlib.contextmanager
def damaged(path: Path, how: str):
    """The file truncated to half, or one byte flipped in its middle; restored afterwards."""
    good = path.read_bytes()
    middle = len(good) // 2
    bad = (
        good[:middle]
        if how == "truncate"
        else good[:middle] + bytes([good[middle] ^ 0xFF]) + good[middle + 1 :]
    )
    path.write_bytes(bad)
    try:
        yield
    finally:
        path.write_bytes(good)


@contextlib.contextmanager
def fake_hub(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", "hf_test_not_a_real_token")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        yield hub


def scores(model, preprocess, tokenizer, image: Image.Image) -> torch.Tensor:
    with torch.no_grad():
        img = model.encode_image(preprocess(image)[None], normalize=True)
        txt = model.encode_text(tokenizer(TEXTS), normalize=True)
    return img @ txt.T


def test_the_export_carries_a_manifest_of_every_file(store):
    export = store.path("runs", "bert") / "export"
    lines = (export / MANIFEST_NAME).read_text().splitlines()
    listed = {ln.split("  ", 1)[1] for ln in lines}
    # the text tower's own config and tokenizer travel with the export; the manifest lists every other file
    assert {"open_clip_config.json", WEIGHTS_NAME, "config.json", "tokenizer.json"} <= listed
    assert listed == {p.name for p in export.iterdir()} - {MANIFEST_NAME}
    # `sha256sum -c SHA256SUMS` checks it without focus-pipeline
    check = subprocess.run(
        ["sha256sum", "--check", "--quiet", MANIFEST_NAME], cwd=export, capture_output=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize(
    ("run", "name", "how"),
    [
        ("plain", "open_clip_config.json", "truncate"),
        ("plain", WEIGHTS_NAME, "flip"),
        ("bert", "tokenizer.json", "flip"),
    ],
)
def test_push_refuses_a_corrupted_export_and_uploads_nothing(store, monkeypatch, tmp_path, run, name, how):
    """Before: push exited 0 and the Hub held the broken file (only model.pt had a checksum)."""
    path = store.path("runs", run) / "export" / name
    with fake_hub(monkeypatch, tmp_path) as hub, damaged(path, how):
        res = invoke(store, "push", "--run", run, "--repo", "someone/broken")
        assert res.exit_code == 2, res.output
        line = error_line(res.output)
        assert f"{path}: corrupt (sha256" in line and "SHA256SUMS" in line
        assert hub.requests == [] and hub.repos == {}  # not even the repo was created


def test_push_refuses_an_export_it_cannot_check(store, monkeypatch, tmp_path):
    """No manifest (an export from before checksums), a file the manifest does not list, a damaged manifest:
    each is one line naming the file, and nothing reaches the Hub."""
    export = store.path("runs", "plain") / "export"
    manifest = (export / MANIFEST_NAME).read_bytes()
    listed, extra = export / MANIFEST_NAME, export / "added_tokens.json"
    cases = [
        (listed.unlink, f"{export}: no SHA256SUMS"),
        (lambda: extra.write_text("{}"), f"{extra}: not listed in SHA256SUMS"),
        (lambda: listed.write_bytes(manifest[:70]), f"{listed}: truncated"),
        (lambda: listed.write_bytes(b"garbage\n" + manifest), f"{listed}, line 1: not '<sha256>"),
    ]
    with fake_hub(monkeypatch, tmp_path) as hub:
        for damage, expected in cases:
            damage()
            try:
                res = invoke(store, "push", "--run", "plain", "--repo", "someone/unchecked")
            finally:
                extra.unlink(missing_ok=True)
                listed.write_bytes(manifest)
            assert res.exit_code == 2 and error_line(res.output).startswith(f"error: {expected}"), res.output
        assert hub.requests == []
    with pytest.raises(PipelineError, match="not an export"):
        load_export(tmp_path)


def test_push_uploads_exactly_the_checked_files_and_the_hub_copy_loads_offline(store, monkeypatch, tmp_path):
    export = store.path("runs", "bert") / "export"
    with fake_hub(monkeypatch, tmp_path) as hub:
        res = invoke(store, "push", "--run", "bert", "--repo", "someone/tiny-bert")
        assert res.exit_code == 0, res.output
        files = hub.files("models", "someone/tiny-bert")
    assert set(files) == {p.name for p in export.iterdir()} | {"README.md"}
    assert all(files[p.name] == p.read_bytes() for p in export.iterdir())
    card = files["README.md"].decode()
    assert "load_export" in card and "SHA256SUMS" in card

    download = tmp_path / "download"  # what `hf download someone/tiny-bert --local-dir download` leaves
    download.mkdir()
    for name, data in files.items():
        (download / name).write_bytes(data)
    image = Image.new("RGB", (57, 41), (200, 30, 10))
    theirs = scores(*load_export(download), image)
    ours = scores(*load_model(run_dir=store.path("runs", "bert")), image)
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-6)


def test_push_offline_names_the_export_it_kept(store, monkeypatch):
    """Before: the error named a temporary folder that was already deleted."""
    monkeypatch.setenv("HF_TOKEN", "hf_test_not_a_real_token")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = invoke(store, "push", "--run", "plain", "--repo", "someone/tiny")
    assert res.exit_code == 2
    line = error_line(res.output)
    named = re.search(r"intact at (\S+);", line)
    assert named and Path(named.group(1)) == store.path("runs", "plain") / "export", line
    assert (
        Path(named.group(1)).is_dir() and "cannot push to someone/tiny" in line and "HF_HUB_OFFLINE" in line
    )
    assert "focus-pipeline push --run plain --repo someone/tiny" in line


def _eval(store: Store, data_root: Path, name: str, *model_args):
    return invoke(
        store, "eval", *model_args, "--tasks", "fer2013-emotion", "--split", "test", "--data-root", data_root,
        "--workers", "0", "--device", "cpu", "--name", name, "--overwrite",
    )  # fmt: skip


@pytest.fixture(scope="module")
def data_root(shared_data, module_tmp) -> Path:
    root = module_tmp("eval-data")
    os.symlink(shared_data / "fer2013" / "images_msambare_layout", root / "fer2013")
    return root


def test_eval_checks_the_export_and_scores_it_as_the_run(store, data_root):
    """eval --arch local-dir:EXPORT --checkpoint EXPORT/weights reads the export's own text tower at the run's
    image size (before: bert-base-uncased from the hub, and a 224-px ViT that the 32-px weights did not fit)
    and refuses a damaged file (before: no check); eval --run refuses a damaged text tower file."""
    export = store.path("runs", "bert") / "export"
    weights = export / WEIGHTS_NAME
    as_export = ["--arch", f"local-dir:{export}", "--checkpoint", weights]
    with damaged(weights, "flip"):
        res = _eval(store, data_root, "bad", *as_export)
        assert res.exit_code == 2 and f"{weights}: corrupt (sha256" in error_line(res.output)
    with damaged(export / "tokenizer.json", "flip"):
        res = _eval(store, data_root, "bad", "--run", "bert")
        assert res.exit_code == 2 and f"{export / 'tokenizer.json'}: corrupt" in error_line(res.output)
    model_pt = store.path("runs", "plain") / "model.pt"  # a run's checkpoint: meta.json records its sha256
    with damaged(model_pt, "flip"):
        res = _eval(store, data_root, "bad", "--arch", "focus-tiny", "--checkpoint", model_pt)
        assert res.exit_code == 2 and f"{model_pt}: corrupt (sha256" in error_line(res.output)

    for name, args in (("of-run", ["--run", "bert"]), ("of-export", as_export)):
        res = _eval(store, data_root, name, *args)
        assert res.exit_code == 0, res.output
    of_run, of_export = (json.loads((store.path("evals", n) / "results.json").read_text())[0] for n in
                         ("of-run", "of-export"))  # fmt: skip
    assert of_run["status"] == of_export["status"] == "ok" and of_run["n_samples"] == 14
    assert of_run["metrics"] == of_export["metrics"]


def _readme_loader_snippet() -> str:
    """The code block of docs/interop.md that loads an export with a Hugging Face text tower."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "interop.md").read_text(), flags=re.S)
    found = [b for b in blocks if "load_export(" in b]
    assert len(found) == 1, "docs/interop.md shows one way to load such an export"
    return found[0]


def _isolated_python(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """`python -I` (no PYTHONPATH, no user site, no current folder on the path) with the hub switched off:
    offline flags, an HF_HOME with nothing cached (no bert-base-uncased), an endpoint that does not answer."""
    (tmp_path / "hf-home").mkdir(exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.run(
        [sys.executable, "-I", "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240
    )


def _isolated_script(exports: list[Path], image: Path) -> str:
    """Plain open_clip on each export first (nothing of ours imported), then docs/interop.md's lines with its
    example path replaced, and the scores of one image and three texts. The line before the doc's puts
    this checkout first on the path: the package as a user has it installed."""
    lines = ["import json, sys", "import open_clip", "out = {'plain': [], 'ours': []}"]
    for export in exports:
        lines += [
            "try:",
            f"    open_clip.create_model_and_transforms({f'local-dir:{export}'!r})",
            "    out['plain'].append('loaded')",
            "except Exception as err:",
            "    out['plain'].append(f'{type(err).__name__}: {err}')",
        ]
    lines += [
        "out['imported'] = sorted(m for m in sys.modules if m.split('.')[0] in ('training', 'pipeline'))",
        f"sys.path.insert(0, {str(ROOT)!r})",
    ]
    for export in exports:
        snippet = re.sub(r'load_export\("[^"]*"\)', f"load_export({str(export)!r})", _readme_loader_snippet())
        lines += [
            snippet,
            "import torch",
            "from PIL import Image",
            "with torch.no_grad():",
            f"    img = model.encode_image(preprocess(Image.open({str(image)!r}))[None], normalize=True)",
            f"    txt = model.encode_text(tokenizer({TEXTS!r}), normalize=True)",
            "pos = list(model.visual.trunk.pos_embed.shape)",
            "out['ours'].append({'scores': (img @ txt.T).tolist(), 'pos': pos})",
        ]
    return "\n".join([*lines, "print(json.dumps(out))"])


@pytest.mark.slow
def test_bert_tower_exports_load_offline_in_a_clean_python_the_way_the_readme_says(store, towers, tmp_path):
    """The tiny timm-ViT + BERT run, and FocusCLIP-ViT-B-16-BERT (ViT-B/16, random weights; the tiny BERT as
    its text tower, as --text-tower gives it) exported by the function a run calls, both at 32 px.

    Before: plain open_clip went to the hub for bert-base-uncased (the name in the exported config) and, past
    that, raised KeyError 'all_positions_mean_pooler'; with `import training.towers` it still went to the
    hub; with the tower's path given by hand, the 32-px weights did not fit the 224-px ViT it built.
    open_clip's poolers cannot express the reference's all-positions mean (its mean_pooler averages the
    tokens the attention mask keeps, and BERT needs that mask): plain open_clip fails, naming the import."""
    image = Image.new("RGB", (57, 41), (200, 30, 10))
    run = store.path("runs", "bert")
    expected = [scores(*load_model(run_dir=run), image)]
    torch.manual_seed(0)
    arch = "FocusCLIP-ViT-B-16-BERT"
    clip = create_clip(arch, image_size=32, context_length=64, towers=Towers(text=str(towers["bert"]))).eval()
    pp = Preprocess.for_run(size=32, context_length=64, normalize="none", clip=clip)
    tokenizer = make_tokenizer(arch, context_length=64, text_tower=str(towers["bert"]))
    paper = tmp_path / "paper-export"
    write_export(
        clip, export_model_cfg(arch, context_length=64, image_size=32), pp, paper, tokenizer=tokenizer
    )
    expected.append(scores(clip, pp.transform(), tokenizer, image))
    image.save(tmp_path / "person.png")

    res = _isolated_python(_isolated_script([run / "export", paper], tmp_path / "person.png"), tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["imported"] == []
    for error in out["plain"]:
        assert error.startswith("OSError: ") and error.endswith(f"'{LOAD_WITH_FOCUS_PIPELINE}'."), error
    assert "from training.inference import load_export" in LOAD_WITH_FOCUS_PIPELINE
    for got, want in zip(out["ours"], expected, strict=True):
        torch.testing.assert_close(torch.tensor(got["scores"]), want, rtol=0, atol=1e-5)
        assert got["pos"][1] == 1 + 2 * 2  # the class token + the run's 2x2 patch grid, not 224 px's 14x14
    assert not list((tmp_path / "hf-home").rglob("*"))  # nothing was fetched or cached
