"""report.md: the description-quality table, one column per description source (as in the paper).

markdown = render_markdown(summary)     # summary: what analyze() returns / writes to report.json
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.artifacts.descriptions import STATUSES


def _num(v, digits: int = 2) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _mean_std(stats: dict | None, digits: int = 1) -> str:
    if not stats or stats.get("mean") is None:
        return "–"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def _range(stats: dict | None) -> str:
    if not stats or stats.get("mean") is None:
        return "–"
    return f"{stats['min']:.0f}–{stats['max']:.0f}"


def _text(key: str, fmt: Callable) -> Callable[[dict], str]:
    return lambda s: fmt(s["text"].get(key)) if s.get("text") else "–"


def _faith(key: str, fmt: Callable = _pct) -> Callable[[dict], str]:
    return lambda s: fmt(s["faithfulness"].get(key)) if s.get("faithfulness") else "–"


def _kind(kind: str) -> Callable[[dict], str]:
    def cell(s: dict) -> str:
        k = (s.get("faithfulness") or {}).get("by_kind", {}).get(kind)
        if not k or k["agreement"] is None:
            return "–"
        return f"{100 * k['agreement']:.1f}% (n={k['confirmed'] + k['contradicted']})"

    return cell


QUALITY_ROWS: list[tuple[str, Callable[[dict], str]]] = [
    ("Model", lambda s: ", ".join(s.get("models") or []) or "–"),
    ("Template", lambda s: ", ".join(s.get("templates") or []) or "–"),
    ("Descriptions used (ok / rows)", lambda s: f"{s['text']['n']:,} / {s['rows']:,}"),
    ("Length, words (mean ± std)", _text("words", _mean_std)),
    ("Length, words (range)", _text("words", _range)),
    ("Length, CLIP tokens (mean ± std)", _text("clip_tokens", _mean_std)),
    ("Length, CLIP tokens (range)", _text("clip_tokens", _range)),
    ("Over 77 CLIP tokens", _text("over_77_tokens", _pct)),
    ("Flesch-Kincaid grade", _text("fk_grade", _mean_std)),
    ("Style consistency (TF-IDF cosine)", _text("style_consistency", lambda v: _num(v, 3))),
    ("Lexical diversity (MTLD)", _text("mtld", _mean_std)),
    ("3-gram repetition", _text("trigram_repetition", lambda st: _pct(st.get("mean") if st else None))),
    ("CLIP score", lambda s: _mean_std(s.get("clip_score"), 2)),
    ("Prompt tokens / row", lambda s: _num(s.get("prompt_tokens_per_row"), 1)),
    ("Completion tokens / row", lambda s: _num(s.get("completion_tokens_per_row"), 1)),
    ("Cost / row (USD)", lambda s: _num(s.get("cost_per_row"), 5)),
    *[(f"Status: {st}", lambda s, st=st: f"{s['status'].get(st, 0):,}") for st in STATUSES],
]


def _cover(key: str, fmt: Callable = _pct) -> Callable[[dict], str]:
    return lambda s: fmt(s["coverage"].get(key)) if s.get("coverage") else "–"


FAITH_ROWS: list[tuple[str, Callable[[dict], str]]] = [
    ("**Faithfulness score** (agreement × part coverage)", _cover("score", lambda v: _num(v, 3))),
    ("Descriptions with a checked pose claim (all rows)", _cover("with_checked_claim")),
    ("Annotated body parts covered by a checked claim", _cover("part_coverage")),
    ("Checked descriptions", _faith("descriptions", lambda v: f"{v:,}")),
    ("Claims / description", _faith("claims_per_description", lambda v: _num(v, 1))),
    ("**Agreement** (confirmed / decided)", _faith("agreement")),
    ("Verifiable claims", _faith("verifiable_share")),
    ("Confirmed", _faith("confirmed", lambda v: f"{v:,}")),
    ("Contradicted", _faith("contradicted", lambda v: f"{v:,}")),
    ("Unverifiable", _faith("unverifiable", lambda v: f"{v:,}")),
    ("Descriptions with a contradiction", _faith("with_contradiction")),
    ("Descriptions mentioning an unannotated joint", _faith("mentions_missing_joint")),
]
KIND_LABELS = {"count": "people count", "position": "left/right/center person",
               "state": "standing/sitting/lying",
               "raised": "limb raised/lowered", "above_head": "arm above head", "bend": "limb straight/bent",
               "torso": "torso posture", "head": "head posture", "arms_crossed": "arms crossed",
               "feet_apart": "feet apart", "visible": "says a part is not visible"}  # fmt: skip


def table(
    sources: list[str], per_source: dict, rows: list[tuple[str, Callable[[dict], str]]]
) -> list[list[str]]:
    return [[label] + [fn(per_source[s]) for s in sources] for label, fn in rows]


def faith_rows(per_source: dict) -> list[tuple[str, Callable[[dict], str]]]:
    kinds = sorted(
        {k for s in per_source.values() for k in ((s.get("faithfulness") or {}).get("by_kind") or {})}
    )
    return FAITH_ROWS + [(f"Agreement: {KIND_LABELS.get(k, k)}", _kind(k)) for k in kinds]


def comparison_table(c: dict) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of one text-only / image-grounded comparison (pipeline.analyze.compare)."""
    text, image = c["faithfulness"]["text"], c["faithfulness"]["image"]
    by = c["added_by_class_per_description"]
    top = ", ".join(f"{w} ({n})" for w, n in c["top_added_words"][:10]) or "–"
    rows = [
        ["Images both describe", f"{c['images']:,}", f"{c['images']:,}"],
        ["Descriptions (ok)", f"{c['descriptions']['text']:,}", f"{c['descriptions']['image']:,}"],
        ["Length, words (mean)", _num(c["words"]["text"], 1), _num(c["words"]["image"], 1)],
        ["Faithfulness score", _num(text["score"], 3), _num(image["score"], 3)],
        ["Agreement", _pct(text["agreement"]), _pct(image["agreement"])],
        ["Annotated body parts covered", _pct(text["part_coverage"]), _pct(image["part_coverage"])],
        ["Content words the image adds / description", "–", _num(c["added_words_per_description"], 1)],
        ["Descriptions that add any", "–", _pct(c["with_added_words"])],
        ["of them clothes / objects / scene (per description)", "–",
         f"{by['clothes']:.2f} / {by['objects']:.2f} / {by['scene']:.2f}"],
        ["Most added words", "–", top],
    ]  # fmt: skip
    return ["Metric", f"text-only: {c['text_source']}", f"image-grounded: {c['image_source']}"], rows


COMPARISON_NOTE = (
    "On the images both sources describe (status ok). The words an image-grounded description adds are its "
    "distinct content words that none of the text-only descriptions of the same image has (no stopwords, no "
    "pose vocabulary, plurals folded); clothes / objects / scene count those of them in three small word "
    "lists (pipeline/analyze/compare.py)."
)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in r] for r in [header, *rows]]
    lines = [
        "| " + " | ".join(esc[0]) + " |",
        "|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return "\n".join(lines)


def render_markdown(summary: dict) -> str:
    sources, per = summary["sources"], summary["per_source"]
    header = ["Metric", *sources]
    out = [f"# Description report: {summary['name']}", "",
           f"Descriptions: {', '.join(summary['inputs']['descriptions'])}; annotations: "
           f"{', '.join(summary['inputs']['annotations']) or 'none'}; created by focus-pipeline analyze.", "",
           "## Description quality", "", _md_table(header, table(sources, per, QUALITY_ROWS)), "",
           "Words and CLIP tokens count every usable (status ok) description; CLIP tokens include the "
           "start and end tokens (77 is CLIP's context). Style consistency is the mean pairwise cosine of "
           "TF-IDF vectors; MTLD per McCarthy & Jarvis (2010); 3-gram repetition is the share of a "
           "description's word 3-grams that repeat an earlier one. CLIP score = max(100 cos, 0) of a trained "
           "run's image and text embeddings.", ""]  # fmt: skip
    if any(per[s].get("faithfulness") or per[s].get("coverage") for s in sources):
        out += ["## Pose faithfulness", "", _md_table(header, table(sources, per, faith_rows(per))), "",
                "Claims are parsed with the documented rules of pipeline/claims.py and checked "
                "against pipeline.geometry's facts about the annotated keypoints "
                "(pipeline/faithfulness.py). "
                "Agreement = confirmed / (confirmed + contradicted); n = decided claims. Coverage counts "
                "every row of an annotated image, whatever its status: a description covers a body part "
                "(left/right arm/leg, torso, head) its keypoints give a fact about when one of its pose "
                "claims about that part is confirmed or contradicted. The score multiplies agreement by part "
                "coverage, so a set of empty, failed or off-topic replies scores 0 however few of its claims "
                "are wrong.",
                ""]  # fmt: skip
    else:
        out += ["## Pose faithfulness", "", "Not measured: no annotations were given or found.", ""]
    if summary.get("comparisons"):
        out += ["## Text-only vs image-grounded", ""]
        for c in summary["comparisons"]:
            out += [_md_table(*comparison_table(c)), ""]
        out += [COMPARISON_NOTE, ""]
    for note in summary.get("notes", []):
        out.append(f"- {note}")
    return "\n".join(out).rstrip() + "\n"
