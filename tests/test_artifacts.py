"""Each artifact kind's contract (pipeline.artifacts): what its writer writes, its reader reads back, and a
file whose columns are not the contract's (a column renamed) is a one-line error naming the file."""

from __future__ import annotations

import inspect
import json
import sys
import types

import datasets as hf
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.artifacts import annotations, datasets, descriptions, evals, reports, runs
from pipeline.artifacts.datasets import DatasetMeta
from pipeline.artifacts.descriptions import DescribeMeta, DescriptionResult
from pipeline.artifacts.evals import TaskResult
from pipeline.artifacts.runs import RunMeta
from pipeline.errors import PipelineError
from pipeline.records import ImageAnnotation, Person, empty_keypoints
from pipeline.skeletons import SKELETONS
from pipeline.store import file_sha256
from pipeline.synthetic.dataset import synthetic_rows, write_synthetic_dataset

COCO = SKELETONS["coco-17"]


def _rename(path, old: str, new: str) -> None:
    table = pq.read_table(path)
    pq.write_table(table.rename_columns([new if c == old else c for c in table.column_names]), path)


def test_annotations_round_trip_and_a_renamed_column_fails(store, tmp_path):
    kps = empty_keypoints()
    kps[[0, 9], :] = [[10, 80, 2], [30, 5, 1]]
    coco = empty_keypoints(COCO.num_joints)
    coco[0] = [4, 5, 2]
    rows = [
        ImageAnnotation("a.jpg", split="train", activity="curling", people=[Person(kps, scale=1.5)]),
        ImageAnnotation("b.jpg", people=[Person(coco, label="person", crowd=False)], skeleton=COCO,
                        width=640, height=480, captions=("a person",)),
    ]  # fmt: skip
    with store.create("annotations", "a", stage="test", config={}) as w:
        assert annotations.write(w.dir / annotations.FILE, rows) == 2
    a, b = annotations.read(store, "a")
    assert (a.image, a.split, a.activity, a.people[0].scale) == ("a.jpg", "train", "curling", 1.5)
    assert a.people[0].box == (10.0, 5.0, 30.0, 80.0) and a.skeleton.name == "mpii-16"
    assert b.skeleton == COCO and b.people[0].label == "person" and b.captions == ("a person",)
    assert (b.width, b.height) == (640, 480) and b.people[0].keypoints.shape == (COCO.num_joints, 3)

    path = store.path("annotations", "a") / annotations.FILE
    _rename(path, "people", "persons")
    with pytest.raises(
        PipelineError, match=r"annotations.parquet: not an annotations table \(missing .*people"
    ):
        annotations.read(store, "a")
    path.write_bytes(b"not parquet")
    with pytest.raises(PipelineError, match="not an annotations table"):
        annotations.read_file(path)
    with pytest.raises(PipelineError, match=r"missing \(annotations/\w+ has no annotations.parquet\)"):
        annotations.read_file(tmp_path / "none" / annotations.FILE)


def _result(**overrides) -> DescriptionResult:
    row = {"cache_key": "k", "image": "a.jpg", "source": "rules", "sample": 0, "description": "A person.",
           "status": "ok", "model": "rules", "template": "rules", "template_hash": "h"}  # fmt: skip
    return DescriptionResult(**(row | overrides))


def test_descriptions_round_trip_and_a_renamed_column_fails(store, tmp_path):
    results = [_result(), _result(cache_key="j", sample=1, status="invalid", error="no pose", cost_usd=0.5)]
    with store.create("descriptions", "d", stage="test", config={"backend": "rules"},
                      inputs=[]) as w:  # fmt: skip
        descriptions.write(w.dir / descriptions.FILE, results)
    table = descriptions.read(store, "d", columns=descriptions.SCHEMA.names)
    assert table.schema.equals(descriptions.SCHEMA)
    assert [DescriptionResult(**row) for row in table.to_pylist()] == results
    assert descriptions.totals(results) | {"cost_usd": 0.5} == {
        "rows": 2, "images": 1, "ok": 1, "truncated": 0, "refused": 0, "invalid": 1, "error": 0,
        "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.5,
    }  # fmt: skip
    meta = DescribeMeta.read(store, "d")
    assert (meta.backend, meta.with_image, meta.annotations) == ("rules", False, None)

    path = store.path("descriptions", "d") / descriptions.FILE
    pq.write_table(pq.read_table(path).drop(["cost_usd"]), path)  # an optional column comes back null
    assert descriptions.read_file(path, ("image", "cost_usd")).column("cost_usd").to_pylist() == [None, None]
    _rename(path, "status", "state")
    with pytest.raises(PipelineError, match=r"descriptions.parquet: missing column\(s\) status"):
        descriptions.read(store, "d")


def test_descriptions_reader_checks_every_row(tmp_path):
    path = tmp_path / descriptions.FILE
    for bad, message in (({"status": "weird"}, r"row 1: status 'weird' is not one of ok, truncated"),
                         ({"image": None}, r"row 1: image is null")):  # fmt: skip
        rows = [_result(), _result(cache_key="j", **bad)]
        pq.write_table(pa.Table.from_pylist([vars_of(r) for r in rows], schema=descriptions.SCHEMA), path)
        with pytest.raises(PipelineError, match=message):
            descriptions.read_file(path)
    path.write_bytes(b"not parquet")
    with pytest.raises(PipelineError, match="not a readable Parquet file"):
        descriptions.read_file(path)
    with pytest.raises(PipelineError, match=r"missing \(descriptions/\w+ has no descriptions.parquet\)"):
        descriptions.read_file(tmp_path / "nope" / descriptions.FILE)


def vars_of(result: DescriptionResult) -> dict:
    return {name: getattr(result, name) for name in descriptions.SCHEMA.names}


def _task(task: str = "utkface-age", **overrides) -> TaskResult:
    row = {"task": task, "dataset": "utkface", "model": "focus-tiny", "pretrained": "runs/r",
           "metrics": {"acc@1": 0.5, "acc1": 0.5, "acc5": None, "mean_per_class_recall": 0.4},
           "n_samples": 4, "skipped": {}, "status": "ok", "group": "Age", "title": "UTKFace", "k": 1,
           "split": "test", "templates": "paper", "data_path": "/data/utkface",
           "random": {"analytic": 0.2, "simulated": 0.25}}  # fmt: skip
    return row | overrides


def test_evals_round_trip_and_a_renamed_key_fails(store):
    results = [_task(), _task("emotic-age", status="skipped", metrics={}, message="no data")]
    with store.create("evals", "e", stage="test", config={}) as w:
        evals.write_results(w.dir, results)
        evals.write_clip_benchmark(w.dir, results)
    assert evals.read(store, "e") == results
    assert evals.read_entry("evals/e", store) == ("e", results)
    folder = store.path("evals", "e")
    record = json.loads((folder / evals.CLIP_BENCHMARK_DIR / "utkface-age.json").read_text())
    assert record["dataset"] == "utkface-age" and record["metrics"]["acc1"] == 0.5
    assert "acc5" not in record["metrics"]  # CLIP_benchmark's files leave an undefined metric out
    assert sorted(p.name for p in (folder / evals.CLIP_BENCHMARK_DIR).iterdir()) == ["utkface-age.json"]
    path = folder / evals.RESULTS_FILE
    path.write_text(json.dumps([{("tasks" if k == "task" else k): v for k, v in _task().items()}]))
    with pytest.raises(PipelineError, match=r"results.json: task 0: missing task"):
        evals.read(store, "e")
    path.write_text(json.dumps([_task(status="done")]))
    with pytest.raises(PipelineError, match=r"task 0 \(utkface-age\): status 'done' is not one of ok, skip"):
        evals.read(store, "e")
    with pytest.raises(PipelineError, match=r"nope: no results.json there and no evals/nope"):
        evals.read_entry("nope", store)


def test_runs_round_trip_and_a_missing_arch_fails(store):
    with store.create("datasets", "d", stage="test", config={}) as w:
        (w.dir / "x").write_text("x")
    summary = {"steps": 3, "images": 8, "first_loss": 2.0, "final_loss": 1.5}
    config = {"arch": "focus-tiny", "context_length": 32, "image_size": 64, "model_type": "clip"}
    with store.create("runs", "r", stage="test", config=config, inputs=[store.ref("datasets", "d")]) as w:
        (w.dir / runs.MODEL_FILE).write_bytes(b"weights")
        (w.dir / runs.METRICS_FILE).write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n')
        runs.record(w, preprocess={"size": 64}, summary=summary, heatmap_source="keypoints")
    meta = RunMeta.read(store, "r")
    assert (meta.arch, meta.context_length, meta.image_size) == ("focus-tiny", 32, 64)
    assert meta.preprocess == {"size": 64} and meta.summary == summary and meta.heatmap_source == "keypoints"
    assert meta.checksums == {runs.MODEL_FILE: file_sha256(store.path("runs", "r") / runs.MODEL_FILE)}
    assert meta.dataset == store.ref("datasets", "d") and store.meta("runs", "r")["counts"]["steps"] == 3
    assert [row["loss"] for row in runs.read_metrics(meta.folder)] == [2.0, 1.5]

    path = store.path("runs", "r") / "meta.json"
    path.write_text(path.read_text().replace('"arch"', '"architecture"'))
    with pytest.raises(PipelineError, match=r"meta.json: has no config arch \(not a run\)"):
        RunMeta.read_dir(store.path("runs", "r"))
    (store.path("runs", "r") / runs.METRICS_FILE).write_text("{not json\n")
    with pytest.raises(PipelineError, match=r"metrics.jsonl: not readable training metrics"):
        runs.read_metrics(store.path("runs", "r"))


def test_reports_round_trip_and_a_renamed_column_fails(store):
    checks = pa.Table.from_pylist(
        [{"image": "a.jpg", "source": "rules", "sample": 0, "kind": "arm", "part": "left arm",
          "value": "raised", "person": 1, "verdict": "confirmed", "evidence": "wrist above shoulder",
          "start": 4, "end": 20, "text": "left arm raised"}], schema=reports.CHECKS_SCHEMA)  # fmt: skip
    with store.create("reports", "r", stage="test", config={}) as w:
        reports.write(
            w.dir, {"per_source": {"rules": {"rows": 1}}}, markdown="# r\n", html="<p>", checks=checks
        )
    assert reports.read(store, "r") == {"per_source": {"rules": {"rows": 1}}}
    assert reports.read_checks(store, "r").equals(checks)
    assert (store.path("reports", "r") / reports.MARKDOWN_FILE).read_text() == "# r\n"
    _rename(store.path("reports", "r") / reports.CHECKS_FILE, "verdict", "outcome")
    with pytest.raises(PipelineError, match=r"checks.parquet: missing column\(s\) verdict"):
        reports.read_checks(store, "r")
    (store.path("reports", "r") / reports.REPORT_FILE).write_text('{"sources": []}')
    with pytest.raises(PipelineError, match=r"report.json: not an analyze report"):
        reports.read(store, "r")


def test_datasets_round_trip_and_a_renamed_column_fails(store):
    rows = synthetic_rows(5, size=(32, 24), seed=0, split="train")
    with store.create("datasets", "d", stage="test", config={"roi": "box"}) as w:
        (w.dir / datasets.DATA_DIR).mkdir()
        writer = datasets.SplitWriter(w.dir / datasets.DATA_DIR, "train", max_rows=3, group_rows=2)
        for row in rows:
            writer.add(row, len(row["image"]["bytes"]))
        files = writer.finish()
        w.extra["skeletons"] = [{"name": "custom-x", "joints": ["a", "b"]}]
    assert [f.name for f in files] == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    paths = datasets.shard_paths(store.path("datasets", "d"), "train")
    assert [p.name for p in paths] == [f.name for f in files]
    tables = [pq.read_table(p, columns=list(datasets.META_COLUMNS)) for p in paths]
    back = [r for t in tables for r in t.to_pylist()]
    assert [r["image_id"] for r in back] == [r["image_id"] for r in rows]
    assert [datasets.row_texts(r) for r in back] == [[d["text"] for d in r["descriptions"]] for r in rows]
    assert back[0]["people"][0]["keypoints"] == pytest.approx(rows[0]["people"][0]["keypoints"], nan_ok=True)
    # the features travel in the schema, as `datasets` writes them: load_dataset decodes the images
    schema = pq.read_schema(paths[0])
    assert schema.metadata[b"huggingface"] == datasets.SCHEMA.metadata[b"huggingface"]
    assert hf.Features.from_arrow_schema(schema) == datasets.FEATURES
    meta = DatasetMeta.read(store, "d")
    assert meta.roi == "box" and "custom-x" in meta.skeletons and "mpii-16" in meta.skeletons

    _rename(paths[0], "people", "persons")
    with pytest.raises(PipelineError, match=r"train-00000-of-00002.parquet: missing column\(s\) people"):
        datasets.check_columns(set(pq.read_schema(paths[0]).names), paths[0])
    with pytest.raises(PipelineError, match=r"no 'val' shards in data/ \(splits found: train\)"):
        datasets.shard_paths(store.path("datasets", "d"), "val")
    pixels_only = {datasets.IMAGE, *datasets.TRAIN_REQUIRED}  # no text column, and training wants heatmaps
    with pytest.raises(PipelineError, match=r"^x.parquet: missing column\(s\) description, heatmap$"):
        datasets.check_columns(pixels_only, "x.parquet", heatmaps=True)


def test_the_synthetic_writer_writes_shards_through_the_one_split_writer(store):
    folder = write_synthetic_dataset(store, "s", n_train=8, n_val=2, size=(32, 24), seed=0, shards=3)
    train = datasets.shard_paths(folder, "train")
    assert [p.name for p in train] == [datasets.shard_name("train", i, 3) for i in range(3)]
    assert [pq.read_metadata(p).num_rows for p in train] == [3, 3, 2]
    assert [pq.read_metadata(p).num_rows for p in datasets.shard_paths(folder, "val")] == [1, 1]  # none empty
    assert pq.read_schema(train[0]).metadata[b"huggingface"] == datasets.SCHEMA.metadata[b"huggingface"]
    with pytest.raises(PipelineError, match="shards=0: must be at least 1"):
        write_synthetic_dataset(store, "t", n_train=2, shards=0)


@pytest.mark.parametrize(
    ("module", "old", "new"),
    [
        (datasets, '"people": hf.List(PERSON_FEATURES)', '"persons": hf.List(PERSON_FEATURES)'),
        (datasets, '"keypoints": hf.List(hf.Value("float32")),', '"points": hf.List(hf.Value("float32")),'),
        (descriptions, '("status", pa.string()),', '("state", pa.string()),'),
    ],
)
def test_a_column_renamed_in_the_schema_fails_at_import(module, old, new, monkeypatch):
    """The module's own source with one column renamed in its schema, imported: it stops at once."""
    source = inspect.getsource(module)
    assert source.count(old) == 1
    renamed = types.ModuleType("renamed")
    monkeypatch.setitem(sys.modules, "renamed", renamed)
    exec(compile(source, module.__file__, "exec"), renamed.__dict__)  # as it is, it imports
    with pytest.raises(TypeError, match="column|field"):
        exec(compile(source.replace(old, new), module.__file__, "exec"), renamed.__dict__)
