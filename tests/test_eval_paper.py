"""The reference protocol: the paper's published numbers as data (v1's Table 2, v3's abstract), shown by
`eval --compare` beside our rows; Kinetics-400's labelled test split (val when absent, said in the result);
UTKFace's split list."""

from __future__ import annotations

import csv
import json
import os

import pandas as pd
from PIL import Image

from evaluation.compare import PAPERS, published
from evaluation.readers import READERS, ReaderInput
from evaluation.tasks import PAPER_TASKS

# Table 2 of arXiv 2403.06904 as DESIGN.md quotes it (CLIP / FocusCLIP / simulated random, in %).
TABLE2 = {
    "kinetics400-action": (15.00, 15.18, 0.76),
    "stanford40-action": (6.49, 10.47, 8.24),
    "emotic-age": (37.56, 41.80, 33.54),
    "lagenda-body-age": (39.48, 59.44, 33.46),
    "lagenda-face-age": (44.56, 71.41, 33.13),
    "utkface-age": (27.02, 35.13, 20.86),
    "emotic-emotion": (10.39, 13.73, 11.54),
    "fer2013-emotion": (52.56, 63.35, 43.23),
    "ferplus-emotion": (47.38, 47.57, 36.79),
    "fairface-race": (13.47, 15.78, 14.45),
}


def result(task, group, title, k, acc):
    return {
        "task": task,
        "group": group,
        "title": title,
        "k": k,
        "status": "ok",
        "metrics": {f"acc@{k}": acc},
    }


def test_stored_table_holds_the_30_published_values():
    table = published()
    labels = ("CLIP (paper)", "FocusCLIP (paper)", "Sim. random (paper)")
    assert tuple(table.acc) == labels
    for task, values in TABLE2.items():
        assert [round(100 * table.acc[label][task], 2) for label in labels] == list(values)
    assert set(table.acc["FocusCLIP (paper)"]) == set(PAPER_TASKS)
    assert list(table.notes) == ["stanford40-action"]


def test_compare_alone_prints_table2(cli, store):
    res = cli("eval", "--compare", "--paper", "v1")
    assert res.exit_code == 0, res.output
    for label, i in (("CLIP (paper)", 0), ("FocusCLIP (paper)", 1), ("Sim. random (paper)", 2)):
        cells = [f"{v[i]:.2f}" + ("†" if task == "stanford40-action" else "") for task, v in TABLE2.items()]
        mean = sum(v[i] for v in TABLE2.values()) / len(TABLE2)
        assert f"| {label} | {' | '.join(cells)} | {mean:.2f} |" in res.output
    assert "† Stanford 40: the reference code puts the Stanford 40 class prompts in a hash-randomised" in (
        res.output
    )
    assert "| Random (k/C) |" not in res.output  # no eval of ours, so no baseline rows of ours
    res = cli("eval", "--compare", "--no-paper")
    assert res.exit_code == 2 and "needs at least one eval" in res.output


def test_compare_puts_the_paper_beside_our_columns(cli, store, tmp_path):
    ours = tmp_path / "ours"
    ours.mkdir()
    rows = [
        result("utkface-race", "Race", "UTKFace", 1, 0.5),
        result("utkface-age", "Age", "UTKFace", 1, 0.25) | {"split": "list val.csv"},
    ]
    (ours / "results.json").write_text(json.dumps(rows))
    res = cli("eval", "--compare", str(ours), "--name", "cmp", "--paper", "v1")
    assert res.exit_code == 0, res.output
    assert "| Model | Age: UTKFace (Acc@1) | Race: UTKFace (Acc@1) | Avg. |" in res.output
    assert "| ours | 25.00 | 50.00 | 37.50 |" in res.output
    assert "| FocusCLIP (paper) | 35.13 | - | 35.13 (1/2) |" in res.output
    assert "†" not in res.output  # the Stanford caveat only comes with a Stanford column
    assert "- ours: UTKFace on list val.csv (the task's default: all)" in res.output
    saved = json.loads((store.path("reports", "cmp") / "comparison.json").read_text())
    assert [r["label"] for r in saved["rows"] if r.get("published")] == [
        "CLIP (paper)",
        "FocusCLIP (paper)",
        "Sim. random (paper)",
    ]
    assert store.meta("reports", "cmp")["config"] == {"evals": [str(ours)], "paper": "v1"}
    res = cli("eval", "--compare", str(ours), "--no-paper")
    assert res.exit_code == 0 and "(paper" not in res.output
    res = cli("eval", "--compare", str(ours))  # the latest version: v3's block under our columns
    assert res.exit_code == 0 and "| ours | 25.00 | 50.00 | 37.50 |" in res.output
    assert "(paper)" not in res.output and "| FocusCLIP (paper v3) |" in res.output


def test_compare_prints_the_v3_rows_from_the_stored_file(cli, store):
    """`eval --compare --paper v3` (and the default, the latest) prints one row per model of
    evaluation/paper_v3.csv, read here with the csv module: every value, '-' where v3 gave none."""
    path = PAPERS["v3"].path
    text = path.read_text()
    assert "https://arxiv.org/html/2403.06904v3" in text  # the file cites its version
    rows = list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))
    assert [r["scope"] for r in rows] == ["activity", "age", "emotion", "average"]
    expected = []
    for model in ("CLIP", "FocusCLIP", "FocusCLIP - CLIP"):
        sign = "+" if model == "FocusCLIP - CLIP" else ""
        cells = [f"{float(r[model]):{sign}.2f}" if r[model] else "-" for r in rows]
        expected.append(f"| {model} (paper v3) | {' | '.join(cells)} |")
    assert expected[2] == "| FocusCLIP - CLIP (paper v3) | +3.98 | +14.78 | +7.06 | +8.61 |"
    for args in (["--paper", "v3"], []):
        res = cli("eval", "--compare", *args)
        assert res.exit_code == 0, res.output
        assert "| Model | Activity | Age | Emotion | Average |" in res.output
        for line in expected:
            assert line in res.output
        assert "arXiv 2403.06904v3 (https://arxiv.org/html/2403.06904v3)" in res.output
        assert "(paper)" not in res.output  # v1's rows only with --paper v1
    saved = json.loads((store.path("reports", "compare") / "comparison.json").read_text())
    assert saved["paper"] == "v3" and saved["paper_v3"]["rows"]["FocusCLIP (paper v3)"] == {"average": 33.65}
    res = cli("eval", "--compare", "--paper", "v2")
    assert res.exit_code == 2 and "--paper must be one of v1, v3" in res.output


def frames(root, rows):
    """One ready frame per clip (the reader uses `<youtube_id>_<start>_<end>.jpg` as is)."""
    (root / "frames").mkdir(parents=True, exist_ok=True)
    for r in rows.itertuples():
        Image.new("RGB", (8, 8)).save(
            root / "frames" / f"{r.youtube_id}_{r.time_start:06d}_{r.time_end:06d}.jpg"
        )


def test_kinetics_scores_the_labelled_test_split_when_present(shared_data, tmp_path):
    val = pd.read_csv(shared_data / "kinetics400" / "kinetics-400_val.csv")
    os.symlink(shared_data / "kinetics400" / "kinetics-400_val.csv", tmp_path / "kinetics-400_val.csv")
    test = val.iloc[[5, 300, 9000]].assign(split="test")
    frames(tmp_path, pd.concat([val.iloc[[0, 1]], test]))  # test rows are val rows here, so val has 5
    # ActivityNet's test CSV has no label column: alone, it sends the task to val, with a note.
    test.drop(columns=["label"]).to_csv(tmp_path / "kinetics-400_test.csv", index=False)
    out = READERS["kinetics400"](ReaderInput(root=tmp_path, split="test"))
    assert out.split == "val" and len(out.samples) == 5 and "scored the val split instead" in out.notes[0]
    # A labelled test CSV (CVDF's annotations/test.csv) beside it: test is scored, as in the reference.
    (tmp_path / "annotations").mkdir()
    test.to_csv(tmp_path / "annotations" / "test.csv", index=False)
    out = READERS["kinetics400"](ReaderInput(root=tmp_path, split="test"))
    assert out.split == "test" and not out.notes and not out.skipped
    assert [s.labels["action"] for s in out.samples] == list(test["label"])


def test_utk_split_list_through_the_cli(cli, store, shared_data, tmp_path):
    images = sorted(p.name for p in (shared_data / "utkface" / "images").iterdir())
    # The reference's val list: a CSV of names without the `.chip.jpg` suffix; one is not in our folder.
    listed = [n.removesuffix(".chip.jpg") for n in images[:3]] + ["99_0_0_20170101000000000.jpg"]
    pd.DataFrame({"img_name": listed}).to_csv(tmp_path / "val.csv", index=False)
    common = ["--arch", "focus-tiny", "--tasks", "utkface-age", "--workers", "0"]
    common += ["--path", f"utkface={shared_data / 'utkface' / 'images'}"]
    res = cli("eval", *common, "--utk-split-list", tmp_path / "val.csv", "--name", "utk")
    assert res.exit_code == 0, res.output
    (r,) = json.loads((store.path("evals", "utk") / "results.json").read_text())
    assert r["status"] == "ok" and r["split"] == "list val.csv" and r["n_samples"] == 3
    assert r["skipped"] == {"image missing": 1} and str(tmp_path / "val.csv") in r["notes"][0]
    assert store.meta("evals", "utk")["config"]["utk_split_list"] == str(tmp_path / "val.csv")
    res = cli("eval", *common, "--utk-split-list", tmp_path / "nope.txt")
    assert res.exit_code == 2 and "--utk-split-list" in res.output and "no such file" in res.output
