"""The paper's published Table 2 as data, shown by `eval --compare` beside our rows."""

from __future__ import annotations

import json

from evaluation.compare import published
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
    res = cli("eval", "--compare")
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
        result("utkface-age", "Age", "UTKFace", 1, 0.25),
    ]
    (ours / "results.json").write_text(json.dumps(rows))
    res = cli("eval", "--compare", str(ours), "--name", "cmp")
    assert res.exit_code == 0, res.output
    assert "| Model | Age: UTKFace (Acc@1) | Race: UTKFace (Acc@1) | Avg. |" in res.output
    assert "| ours | 25.00 | 50.00 | 37.50 |" in res.output
    assert "| FocusCLIP (paper) | 35.13 | - | 35.13 (1/2) |" in res.output
    assert "†" not in res.output  # the Stanford caveat only comes with a Stanford column
    saved = json.loads((store.path("reports", "cmp") / "comparison.json").read_text())
    assert [r["label"] for r in saved["rows"] if r.get("published")] == [
        "CLIP (paper)",
        "FocusCLIP (paper)",
        "Sim. random (paper)",
    ]
    assert store.meta("reports", "cmp")["config"] == {"evals": [str(ours)], "paper": True}
    res = cli("eval", "--compare", str(ours), "--no-paper")
    assert res.exit_code == 0 and "(paper)" not in res.output
