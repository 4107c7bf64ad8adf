"""Text for training: tokenise each description once, then build each step's token batch from ids.

Pose descriptions run to hundreds of tokens while CLIP's text tower sees 77 by default. Plain tokenising
silently cuts everything after token 77 (open_clip's tokenizer truncates and writes EOT last). With
sentence sampling each step takes a random subset of the description's sentences that fits the context,
kept in their original order; the first sentence (people count and activity, by the prompt's template) is
always kept when it fits. A sentence longer than the whole context is still truncated; the truncation
rate (captions cut mid-text) is reported either way.

    texts = TextBank.build(descriptions_per_image, tokenizer, context_length=77)
    tokens, stats = texts.batch(indices, rng, sample_sentences=True)     # (B, 77) int64 + counters
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.errors import PipelineError

# A sentence ends at . ! or ? followed by whitespace; abbreviations are rare in pose descriptions and a
# wrong split only makes a sampled unit shorter.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


@dataclass(slots=True)
class BatchStats:
    captions: int = 0
    truncated: int = 0  # captions cut mid-text at the context length
    sentences_total: int = 0
    sentences_kept: int = 0


class TextBank:
    """Every image's descriptions as lists of sentence token ids (BPE run once, not per step)."""

    def __init__(
        self,
        sentences: list[list[list[list[int]]]],
        *,
        sot: int,
        eot: int,
        context_length: int,
        pad: int = 0,
    ):
        # sentences[image][description][sentence] -> token ids (no SOT/EOT)
        self.sentences = sentences
        self.sot, self.eot, self.pad = sot, eot, pad
        self.context_length = context_length

    @classmethod
    def build(cls, descriptions: list[list[str]], tokenizer, *, context_length: int) -> TextBank:
        encode, sot, eot, pad = _token_ids(tokenizer)
        cache: dict[str, list[int]] = {}

        def enc(s: str) -> list[int]:
            if s not in cache:
                cache[s] = encode(s)
            return cache[s]

        bank = [[[enc(s) for s in split_sentences(d)] or [[]] for d in descs] for descs in descriptions]
        return cls(bank, sot=sot, eot=eot, context_length=context_length, pad=pad)

    def __len__(self) -> int:
        return len(self.sentences)

    def batch(
        self,
        indices: np.ndarray,
        rng: np.random.Generator,
        *,
        sample_sentences: bool,
        all_descriptions: bool = True,
    ) -> tuple[torch.Tensor, BatchStats]:
        room = self.context_length - 2  # SOT and EOT
        out = torch.full((len(indices), self.context_length), self.pad, dtype=torch.long)
        stats = BatchStats()
        for row, i in enumerate(indices):
            descs = self.sentences[int(i)]
            sents = descs[int(rng.integers(len(descs)))] if all_descriptions else descs[0]
            stats.sentences_total += len(sents)
            if sample_sentences:
                keep = _sample_fitting([len(s) for s in sents], room, rng)
            else:
                keep = list(range(len(sents)))
            stats.sentences_kept += len(keep)
            ids = [t for k in keep for t in sents[k]]
            stats.captions += 1
            if len(ids) > room:
                ids = ids[:room]
                stats.truncated += 1
            toks = [self.sot, *ids, self.eot]
            out[row, : len(toks)] = torch.tensor(toks, dtype=torch.long)
        return out, stats

    def truncation_rate(self, *, sample_sentences: bool) -> float:
        """Share of (image, description) captions that would be cut at the context length."""
        room = self.context_length - 2
        cut = total = 0
        for descs in self.sentences:
            for sents in descs:
                lens = [len(s) for s in sents]
                total += 1
                cut += (min(lens) if sample_sentences else sum(lens)) > room
        return cut / max(total, 1)


def _token_ids(tokenizer):
    """(encode without special tokens, start id, end id, pad id) of open_clip's BPE tokenizer or its
    Hugging Face wrapper; the batch then reads [start] ids [end] [pad]..., as each tokenizer's own call does
    (BERT: [CLS] ... [SEP] [PAD]...). Encoding sentences apart and joining them gives the whole text's
    tokens for both: BPE and WordPiece split on whitespace first."""
    hf = getattr(tokenizer, "tokenizer", None)
    if hf is not None and hasattr(hf, "pad_token_id"):
        clean = getattr(tokenizer, "clean_fn", lambda s: s)
        sot = hf.cls_token_id if hf.cls_token_id is not None else hf.bos_token_id
        eot = hf.sep_token_id if hf.sep_token_id is not None else hf.eos_token_id
        if sot is None or eot is None or hf.pad_token_id is None:
            raise PipelineError(f"the {type(hf).__name__} tokenizer lacks start/end/pad tokens")
        return (lambda s: hf.encode(clean(s), add_special_tokens=False)), sot, eot, hf.pad_token_id
    encode = getattr(tokenizer, "encode", None)
    sot, eot = getattr(tokenizer, "sot_token_id", None), getattr(tokenizer, "eot_token_id", None)
    if encode is None or sot is None or eot is None:
        raise PipelineError(
            f"the architecture's tokenizer ({type(tokenizer).__name__}) has no encode(); training supports "
            "open_clip's SimpleTokenizer and Hugging Face tokenizers"
        )
    return encode, sot, eot, 0


def _sample_fitting(lengths: list[int], room: int, rng: np.random.Generator) -> list[int]:
    """Indices (sorted) of a random subset of sentences whose total length fits `room`.

    The first sentence goes in first when it fits; the rest are tried in random order and each is kept if
    it still fits. When everything fits, everything is kept. When even the shortest does not fit, the
    first sentence is returned (and gets truncated by the caller).
    """
    if sum(lengths) <= room:
        return list(range(len(lengths)))
    keep: list[int] = []
    used = 0
    order = [0, *(1 + rng.permutation(len(lengths) - 1)).tolist()]
    for k in order:
        if used + lengths[k] <= room:
            keep.append(k)
            used += lengths[k]
    return sorted(keep) if keep else [0]
