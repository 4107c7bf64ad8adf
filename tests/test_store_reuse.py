"""Whether a finished artifact is reused is the store's answer from the config its stage recorded: for every
stage config, changing a run-only field (how the stage runs) keeps the artifact current, changing a content
field (what it makes) makes it stale, and every run-only field is one of the cases below."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from evaluation.stage import EvalConfig
from pipeline.analyze.stage import AnalyzeConfig
from pipeline.annotate.stage import AnnotateConfig
from pipeline.build_dataset import BuildConfig
from pipeline.convert import ConvertConfig
from pipeline.demo import DemoConfig
from pipeline.describe import DescribeConfig
from pipeline.describe.stage import settle
from pipeline.describe.validate import Gate
from pipeline.store import Recorded, Store
from training.config import TrainConfig


@dataclass
class Case:
    kind: str
    make: Callable[..., Any]  # keyword overrides -> a config
    run_only: dict[str, Any]  # every run-only field -> a value other than the default
    content: dict[str, Any]  # some content fields -> another value
    record: Callable[[Any], Recorded] = lambda cfg: cfg.recorded()
    derived_run_only: set[str] = field(default_factory=set)  # run-only keys a config derives, not fields


def _cases(tmp: Path) -> dict[str, Case]:
    prices = tmp / "prices.json"
    prices.write_text(json.dumps({"my-model": {"input": 1, "output": 2}}))
    images = tmp / "images"
    images.mkdir(exist_ok=True)
    local = {"backend": "openai", "base_url": "http://localhost:8000/v1", "model": "gpt-4o-mini"}
    return {
        "convert": Case(
            "annotations",
            lambda **kw: ConvertConfig(**({"sources": [tmp / "a.json"], "name": "a"} | kw)),
            run_only={"overwrite": True},
            content={"join": "outer", "split": "val", "sources": [tmp / "b.json"]},
        ),
        "annotate": Case(
            "annotations",
            lambda **kw: AnnotateConfig(**({"images": images, "name": "a"} | kw)),
            run_only={"workers": 3, "device": "cpu", "overwrite": True},
            content={"min_score": 0.9, "split": "val", "model": "keypointrcnn"},
        ),
        "describe": Case(
            "descriptions",
            lambda **kw: DescribeConfig(**({"annotations": "a"} | local | kw)),
            run_only={
                "concurrency": 4,
                "rpm": 100.0,
                "tpm": 10_000.0,
                "timeout": 5.0,
                "lean_http": True,
                "max_retries": 1,
                "backoff": 2.0,
                "max_cost": 3.0,
                "price_input": 1.0,
                "price_output": 2.0,
                "prices": str(prices),
                "retry": ("error",),
                "dry_run": True,
                "batch": True,
                "batch_size": 10,
                "poll_interval": 1.0,
                "overwrite": True,
                "max_error_share": 0.5,
                "allow_partial": True,
            },  # fmt: skip
            content={
                "temperature": 0.9,
                "samples": 2,
                "limit": 5,
                "template": "grounded",
                "model": "gpt-4o",
                "gate": Gate(min_pose_claims=1),
                "retry_invalid": 1,
            },  # fmt: skip
            record=lambda cfg: settle(cfg).recorded(),
            derived_run_only={"price_per_1m"},
        ),
        "build": Case(
            "datasets",
            lambda **kw: BuildConfig(**({"annotations": "a", "descriptions": ["d"], "images": images} | kw)),
            run_only={
                "workers": 3,
                "executor": "thread",
                "overwrite": True,
                "push_to_hub": "me/x",
                "private": True,
            },
            content={"max_side": 256, "roi": "box", "jpeg_quality": 80, "images": tmp, "descriptions": ["e"]},
        ),
        "train": Case(
            "runs",
            lambda **kw: TrainConfig(**({"dataset": "d", "arch": "focus-tiny", "max_steps": 5} | kw)),
            run_only={
                "device": "cpu",
                "resume": True,
                "overwrite": True,
                "log_every": 2,
                "checkpoint_every": 3,
                "num_threads": 1,
                "cache_dir": "/elsewhere",
                "report_to": ("tensorboard",),
            },
            content={
                "lr": 0.0123,
                "max_steps": 6,
                "seed": 1,
                "model_type": "clip",
                "compile": True,
                "data": "stream",
                "workers": 4,
            },
            record=lambda cfg: cfg.resolved().recorded(),
        ),
        "eval": Case(
            "evals",
            lambda **kw: EvalConfig(**({"run": "r"} | kw)),
            run_only={"workers": 0, "device": "cpu", "overwrite": True, "allow_empty": True},
            content={"seed": 1, "limit": 10, "templates": "ensemble", "tasks": ("utkface-age",)},
        ),
        "analyze": Case(
            "reports",
            lambda **kw: AnalyzeConfig(**({"descriptions": ["d"]} | kw)),
            run_only={"clip_batch": 8, "overwrite": True, "device": "cuda"},
            content={"sample": 10, "seed": 1, "descriptions": ["d", "e"]},
        ),
        "demo": Case(
            "evals",
            lambda **kw: DemoConfig(**kw),
            run_only={"fresh": True, "threads": 1},
            content={"steps": 5, "arch": "focus-tiny"},
        ),
    }


CASES = ("convert", "annotate", "describe", "build", "train", "eval", "analyze", "demo")


@pytest.fixture
def cases(tmp_path) -> dict[str, Case]:
    return _cases(tmp_path)


def _publish(store: Store, case: Case) -> None:
    with store.create(case.kind, "x", stage="test", config=case.record(case.make())) as w:
        (w.dir / "out.txt").write_text("made")


@pytest.mark.parametrize("name", CASES)
def test_every_run_only_field_keeps_the_artifact_current(name, cases, store):
    case = cases[name]
    _publish(store, case)
    marked = {f.name for f in dataclasses.fields(case.make()) if f.metadata.get("run_only")}
    assert marked == set(case.run_only), "each run-only field needs a case (and each case a marked field)"
    assert store.meta(case.kind, "x")["run_only"] == sorted(marked | case.derived_run_only)
    for key, value in case.run_only.items():
        changed = case.record(case.make(**{key: value}))
        assert changed.config != case.record(case.make()).config, key  # the case does change something
        assert store.is_current(case.kind, "x", config=changed), f"{name}: changing {key} made it stale"


@pytest.mark.parametrize("name", CASES)
def test_a_content_field_makes_the_artifact_stale(name, cases, store):
    case = cases[name]
    _publish(store, case)
    assert store.is_current(case.kind, "x", config=case.record(case.make()))
    for key, value in case.content.items():
        changed = case.record(case.make(**{key: value}))
        assert not store.is_current(case.kind, "x", config=changed), f"{name}: changing {key} kept it current"


def test_the_api_key_is_never_recorded_and_never_makes_a_run_stale(cases, store):
    case = cases["describe"]
    _publish(store, case)
    key = "sk-test-not-recorded-0123456789"
    with_key = case.record(case.make(api_key=key))
    assert "api_key" not in with_key.config and key not in json.dumps(with_key.config)
    assert store.is_current(case.kind, "x", config=with_key)
    assert key not in (store.path(case.kind, "x") / "meta.json").read_text()


def test_an_artifact_written_before_run_only_fields_stays_current(store, tmp_path):
    """annotations/demo's meta.json as focus-pipeline wrote it before fields were marked (its config verbatim,
    no run_only list): reused by a run that differs only in a run-only field, remade when content differs."""
    source = tmp_path / "mpii_human_pose_v1_u12_1.mat"
    legacy = {"sources": [str(source)], "name": "demo", "overwrite": True, "join": "left", "split": None,
              "keep_people_without_keypoints": False, "keep_images_without_people": False,
              "keep_crowd": False, "captions": None}  # fmt: skip
    with store.create("annotations", "demo", stage="convert", config=legacy) as w:
        (w.dir / "annotations.parquet").write_text("rows")
    meta_path = store.path("annotations", "demo") / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["run_only"]
    meta_path.write_text(json.dumps(meta))
    now = ConvertConfig(sources=[source], name="demo", overwrite=False)
    assert now.recorded().config == legacy | {"overwrite": False}
    assert store.is_current("annotations", "demo", config=now.recorded())
    assert not store.is_current(
        "annotations", "demo", config=dataclasses.replace(now, join="outer").recorded()
    )
