"""Text-only against image-grounded descriptions of the same images: length, faithfulness, and what the
image adds.

    added_words(image_text, [text_only_text])     # content words the keypoint-only description lacks
    word_class("sneakers")                        # "clothes" (or "objects", "scene", None)
    compare_pair(df, checks, parts, "gpt-4o/paper", "gpt-4o/grounded-image")   # one report.json entry

A source is image-grounded when its descriptions artifact was made with describe --with-image (meta.json).
For each text-only / image-grounded pair of sources that share images, on the images both described (rows
with status ok):
- words: mean length of each;
- faithfulness: agreement, part coverage and the score (pipeline.faithfulness) of each, on those images only;
- what the image adds, measured: the distinct content words of an image-grounded description that none of
  the text-only descriptions of the same image has (lower-cased, 3+ letters, not a stopword, not pose
  vocabulary, a plural counted as its singular), per description, with the share of descriptions that add
  any and the most frequent ones; and of those words, how many fall in each of three small documented
  classes (CLASSES below: clothes, objects held or used, scene), so that "adds 6 words" reads as "2 clothes,
  1 object, 3 scene".
"""

from __future__ import annotations

import re
from collections import Counter

import pandas as pd

from pipeline.faithfulness import DescriptionChecks, coverage_summary, faithfulness_summary
from pipeline.lexicon import WORD_CLASSES, word_set

_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")


# Function words and description glue (not content). Small on purpose: what is left is what a reader sees.
STOPWORDS = word_set(
    "the and are but for nor yet with from into onto upon over under about above below behind beside "
    "between among near next toward towards around through across along while whilst whereas this that "
    "these those there here their they them theirs its his her hers him she one ones two three four five "
    "both each every all any some few many more most other another such than then also very just only quite "
    "rather slightly mostly partly who whom whose which what where when why how has have had having was "
    "were been being does did doing can could would should will shall may might must not off out down away "
    "back again still even ever own same so too as at by in of on to up an a is it be or if"
)
# The pose description's own words (pipeline.claims' vocabulary and the template's): saying them again in
# other words is not something the image added.
POSE_VOCABULARY = word_set(
    "person people individual figure image photo photograph picture shows showing shown appears seen "
    "visible left right center centre middle side sides arm arms leg legs hand hands foot feet knee knees "
    "elbow elbows wrist wrists ankle ankles shoulder shoulders hip hips thigh thighs shin shins forearm "
    "forearms torso body head neck chest back pose posture position stance raised raising lifted lifting "
    "lowered lowering hanging hangs down bent bending straight straightened extended outstretched stretched "
    "sharply flexed upright vertical leaning leans tilted tilt bowed level forward backward standing stands "
    "stand sitting sits sit seated lying lies lie reclining crossed apart together planted ground activity "
    "doing engaged general attributes relative others held holding holds slightly angle degrees direction "
    "pointing points above overhead top bottom front rest resting rests"
)
# Three small classes of what only the image can tell (not exhaustive; the measured count above is).
CLASSES = WORD_CLASSES


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "sses", "xes", "zes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def content_words(text: str | None) -> set[str]:
    """Distinct lower-cased content words (3+ letters, no stopword, no pose vocabulary), plurals folded."""
    out = set()
    for w in _WORD.findall((text or "").lower()):
        if len(w) >= 3 and w not in STOPWORDS and w not in POSE_VOCABULARY:
            s = _singular(w)
            if s not in POSE_VOCABULARY:
                out.add(s)
    return out


def added_words(image_text: str, text_only: list[str]) -> list[str]:
    """The content words of an image-grounded description that no text-only description of the image has."""
    seen = set().union(*(content_words(t) for t in text_only)) if text_only else set()
    return sorted(content_words(image_text) - seen)


def word_class(word: str) -> str | None:
    for name, words in CLASSES.items():
        if {word, _singular(word), word + "s", word + "es"} & words:
            return name
    return None


def _faith(rows: pd.DataFrame, checks: dict[int, DescriptionChecks], parts: dict[int, set[str]]) -> dict:
    idx = [i for i in rows.index if i in checks]
    faith = faithfulness_summary([checks[i] for i in idx]) if idx else None
    annotated = [i for i in rows.index if i in parts]
    agreement = faith and faith["agreement"]
    cover = coverage_summary([(checks.get(i), parts[i]) for i in annotated], agreement) if annotated else None
    return {
        "agreement": agreement,
        "part_coverage": cover and cover["part_coverage"],
        "score": cover and cover["score"],
    }


def compare_pair(
    df: pd.DataFrame,
    checks: dict[int, DescriptionChecks],
    parts: dict[int, set[str]],
    text_source: str,
    image_source: str,
) -> dict | None:
    """One text-only / image-grounded comparison on the images both describe (None when they share none)."""
    usable = df[df["usable"]]
    text_rows = usable[usable["source"] == text_source]
    image_rows = usable[usable["source"] == image_source]
    shared = sorted(set(text_rows["image"]) & set(image_rows["image"]))
    if not shared:
        return None
    text_rows = text_rows[text_rows["image"].isin(shared)]
    image_rows = image_rows[image_rows["image"].isin(shared)]
    reference = text_rows.groupby("image")["description"].apply(list).to_dict()
    added = [added_words(t, reference[im]) for im, t in zip(image_rows["image"], image_rows["description"],
                                                            strict=True)]  # fmt: skip
    n = len(added)
    by_class = {name: sum(sum(word_class(w) == name for w in a) for a in added) / n for name in CLASSES}
    frequent = Counter(w for a in added for w in a).most_common(15)
    return {
        "text_source": text_source,
        "image_source": image_source,
        "images": len(shared),
        "descriptions": {"text": len(text_rows), "image": n},
        "words": {
            "text": float(text_rows["description"].map(lambda t: len(_WORD.findall(t.lower()))).mean()),
            "image": float(image_rows["description"].map(lambda t: len(_WORD.findall(t.lower()))).mean()),
        },
        "faithfulness": {
            "text": _faith(text_rows, checks, parts),
            "image": _faith(image_rows, checks, parts),
        },
        "added_words_per_description": sum(len(a) for a in added) / n,
        "with_added_words": sum(bool(a) for a in added) / n,
        "added_by_class_per_description": by_class,
        "top_added_words": [[w, c] for w, c in frequent],
    }


def comparisons(
    df: pd.DataFrame,
    checks: dict[int, DescriptionChecks],
    parts: dict[int, set[str]],
    image_sources: set[str],
) -> list[dict]:
    """Every text-only / image-grounded pair of sources that share images, in the order the sources came."""
    sources = list(dict.fromkeys(df["source"]))
    out = []
    for text_source in (s for s in sources if s not in image_sources):
        for image_source in (s for s in sources if s in image_sources):
            pair = compare_pair(df, checks, parts, text_source, image_source)
            if pair:
                out.append(pair)
    return out
