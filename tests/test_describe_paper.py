"""describe --template paper sends what the reference code sent: its user-message JSON ("<category>,
<activity>", integer keypoints, -1 when not annotated) and its sampling settings (temperature 0.5,
max_tokens 512, frequency_penalty 1.0) as the family's defaults, overridable; frequency_penalty is part of
the cache key."""

from __future__ import annotations

import json
import shutil

import pytest
from fake_openai import FakeOpenAI
from test_describe_rules import csv_annotations, h5_annotations, put_annotations

from pipeline.describe import DescribeConfig, describe
from pipeline.describe.prompting import PROMPTS_DIR
from pipeline.errors import PipelineError


class RecordingOpenAI(FakeOpenAI):
    """The fake server, keeping every chat request's whole body."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict] = []

    async def _chat(self, body, writer, auth=""):
        self.bodies.append(body)
        return await super()._chat(body, writer, auth)


@pytest.fixture
def server():
    with RecordingOpenAI() as srv:
        yield srv


@pytest.fixture
def rows(shared_data):
    multi = h5_annotations(shared_data, 1)[0]
    multi.activity, multi.category = "rock climbing", "sports"
    return [*csv_annotations(shared_data, 3), multi]


def run(server, store, **kw):
    base = dict(annotations="mpii", backend="openai", base_url=server.url, model="fake", concurrency=2)
    return describe(DescribeConfig(**(base | kw)), store)


def expected_message(ann) -> dict:
    """The reference's convert_dataset.py + generate_captions.py, written out for one image."""
    return {
        "activity": f"{ann.category}, {ann.activity}",
        "count": len(ann.people),
        "istrain": int(ann.split == "train"),
        "people": [
            {
                "id": i,
                "center": None if p.center is None else [round(float(c), 1) for c in p.center],
                "scale": round(p.scale, 3),
                "kpts": [[int(x), int(y)] if v > 0 else [-1, -1] for x, y, v in p.keypoints.tolist()],
            }
            for i, p in enumerate(ann.people)
        ],
    }


def test_paper_template_sends_the_reference_message_and_sampling(server, store, rows):
    put_annotations(store, "mpii", rows)
    summary = run(server, store, template="paper")
    assert summary["ok"] == len(rows) and len(server.bodies) == len(rows)
    sent, matched = [], []
    for body in server.bodies:
        assert (body["temperature"], body["max_tokens"], body["frequency_penalty"]) == (0.5, 512, 1.0)
        assert "top_p" not in body and "seed" not in body
        message = json.loads(body["messages"][-1]["content"])
        assert list(message) == ["activity", "count", "istrain", "people"]  # the reference's key order
        sent.append(message)
        matched.append(next((a.image for a in rows if expected_message(a) == message), None))
    assert sorted(matched) == sorted(r.image for r in rows)  # each image's message, exactly
    assert max(m["count"] for m in sent) > 1 and {m["istrain"] for m in sent} == {0, 1}
    assert any([-1, -1] in p["kpts"] for m in sent for p in m["people"])  # an unannotated joint was sent
    meta = store.meta("descriptions", "mpii")
    assert meta["config"]["sampling"] == {"temperature": 0.5, "max_tokens": 512, "frequency_penalty": 1.0}


def test_flags_override_the_family_defaults_and_key_the_cache(server, store, rows):
    put_annotations(store, "mpii", rows)
    run(server, store, template="paper")
    again = run(server, store, template="paper")
    assert again["cache_hits"] == len(rows) and len(server.bodies) == len(rows)
    # Only frequency_penalty differs: every row is a new request, so it is part of each row's key.
    changed = run(server, store, template="paper", frequency_penalty=0.0, temperature=0.2)
    assert changed["cache_hits"] == 0 and len(server.bodies) == 2 * len(rows)
    assert all((b["temperature"], b["frequency_penalty"]) == (0.2, 0.0) for b in server.bodies[len(rows) :])


def test_family_without_defaults_sends_the_fallback(server, store, rows, tmp_path):
    put_annotations(store, "mpii", rows[:1])
    plain = tmp_path / "plain"
    shutil.copytree(PROMPTS_DIR / "paper", plain)
    (plain / "defaults.json").unlink()
    run(server, store, template=str(plain))
    (body,) = server.bodies
    assert (body["temperature"], body["max_tokens"]) == (0.5, 512) and "frequency_penalty" not in body
    (plain / "defaults.json").write_text('{"temperature": 0.1, "presence_penalty": 2}')
    with pytest.raises(PipelineError, match="defaults.json: expected an object with keys among"):
        run(server, store, template=str(plain), overwrite=True)
