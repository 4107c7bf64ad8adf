"""Text-only cache keys are a contract: a journal written by an earlier version must answer the same rows.

Any change to how a text-only row is keyed re-asks (and re-pays) every row of every existing journal, so it
must be deliberate. An edit of the template files changes the keys too, but a row whose messages stay the same
is carried over from its old key (pipeline.describe.stage.carry_over), as the last tests here show.

The key of a fixed template was computed on main at 742f099, before image input existed;
the keys of the shipped paper and grounded families on main at 8c6ed17 (the other-skeletons work edited
those templates, which changes their hash and so their keys, on main itself).
"""

from __future__ import annotations

from pipeline.describe.config import DescribeConfig
from pipeline.describe.prompting import load_template
from pipeline.describe.stage import build_requests
from pipeline.records import ImageAnnotation, Person, empty_keypoints

# The first row of the real activity CSV (015601864.jpg, curling), right ankle marked occluded.
JOINTS = [(620, 394), (616, 269), (573, 185), (647, 188), (661, 221), (656, 231), (610, 187), (647, 176),
          (637.0201, 189.8183), (695.9799, 108.1817), (606, 217), (553, 161), (601, 167), (692, 185),
          (693, 240), (688, 313)]  # fmt: skip


def _annotation() -> ImageAnnotation:
    kps = empty_keypoints()
    for j, (x, y) in enumerate(JOINTS):
        kps[j] = (x, y, 2)
    kps[0, 2] = 1
    person = Person(keypoints=kps, center=(594.0, 257.0), scale=3.021046)
    return ImageAnnotation(
        image="015601864.jpg", split="train", activity="curling", category="sports", people=[person]
    )


def _keys(template, **kw) -> list[str]:
    tpl = load_template(template)
    cfg = DescribeConfig(
        annotations="a", backend="openai", model="gpt-4o-mini", base_url="http://127.0.0.1:9/v1",
        template=str(template), **kw,
    ).with_defaults(tpl.defaults)  # fmt: skip
    return [r.cache_key for r in build_requests([_annotation()], tpl, cfg)]


def test_text_only_keys_are_the_ones_main_computed(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "system.j2").write_text("You describe poses.\n")
    (folder / "user.j2").write_text("Image {{ image }}\n{{ input_json }}\n")
    assert _keys(folder, samples=2) == [
        "03ab0bc877c0a5436b3cd2bada55d8bb905d1bc0c512cdaf5ffd859088937614",
        "a8425c3bf8dbd4cd5a62545d8e5102824b030c3e0a1c785f2370cb5a2790af0d",
    ]


def test_shipped_paper_and_grounded_keys_are_the_ones_main_computed():
    # These also pin the shipped templates: editing prompts/paper or prompts/grounded changes every key.
    assert _keys("paper") == ["b80d83331c62515dac5feb2aaee2885716970262a800f841d2e4d971e4e3e0f6"]
    assert _keys("grounded") == ["0ba2bd2d756c3a2f62dffc25fc976ed7d15687713c722bd7b7e6c78985c8038c"]


def test_rows_keyed_before_the_template_edits_are_carried_over():
    """main at 742f099 keyed the shipped templates' rows by their files' hash then; the other-skeletons work
    edited those files without changing what an MPII row sends, so those paid rows answer today's requests."""
    import dataclasses

    from pipeline.artifacts.descriptions import DescriptionResult
    from pipeline.describe.stage import carry_over

    at_742f099 = {  # template -> (its files' hash, the key of the row above), computed on main at 742f099
        "paper": ("4c3537a4afa72a99cc3f2b04b5c713b831663aa828d91a7fcb463464f6537cc3",
                  "db5ee7b95a1a7a04832e38a4fa8ba422977d28368a680d224322ac3ef9ae25ef"),
        "grounded": ("73470b95336791c02f862335a91f6e813375776b91c8c7802b9529f368ce165e",
                     "91740a656dd041dac3b76b920f53b57257a14070a14576f59a91a89e9e527572"),
    }  # fmt: skip
    for template, (old_hash, old_key) in at_742f099.items():
        tpl = load_template(template)
        cfg = DescribeConfig(
            annotations="a", backend="openai", model="gpt-4o-mini", base_url="http://127.0.0.1:9/v1",
            template=template,
        ).with_defaults(tpl.defaults)  # fmt: skip
        (req,) = build_requests([_annotation()], tpl, cfg)
        paid = DescriptionResult(cache_key=old_key, image=req.image, source=req.source, sample=0,
                                 description="paid for", status="ok", model=req.model, template=template,
                                 template_hash=old_hash)  # fmt: skip
        (carried,) = carry_over([req], {old_key: paid})
        assert (carried.cache_key, carried.template_hash, carried.description) == (
            req.cache_key, tpl.hash, "paid for"
        )  # fmt: skip
        moved = dataclasses.replace(paid, cache_key="a key of another request")
        assert carry_over([req], {moved.cache_key: moved}) == []  # only the old key of this request answers


def test_a_journal_from_before_image_input_still_answers(tmp_path):
    """A journal written before results had an image_input column: read as it is (dry-run), and extended
    when a run opens it for writing."""
    import dataclasses
    import sqlite3

    from pipeline.artifacts.descriptions import DescriptionResult
    from pipeline.describe.journal import Journal

    old = [f.name for f in dataclasses.fields(DescriptionResult) if f.name != "image_input"]
    path = tmp_path / "journal.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE results ({', '.join(old)}, recorded_at REAL)")
        row = {"cache_key": "k1", "image": "a.jpg", "source": "m/paper", "sample": 0, "description": "d",
               "status": "ok", "model": "m", "template": "paper", "template_hash": "h"}  # fmt: skip
        db.execute(
            f"INSERT INTO results ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
        )
    with Journal(path, readonly=True) as journal:
        (got,) = journal.load().values()
    assert got.cache_key == "k1" and got.status == "ok" and got.image_input is None
    with Journal(path) as journal:
        new = dataclasses.replace(got, cache_key="k2", image_input='{"sha256":"x"}')
        journal.record(new)
        rows = journal.load()
    assert rows["k1"].image_input is None and rows["k2"].image_input == '{"sha256":"x"}'
