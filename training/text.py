"""Text for training: tokenise each description once, then build each step's token batch from ids.

Pose descriptions run to hundreds of tokens while CLIP's text tower sees 77 by default. Plain tokenising
silently cuts everything after token 77 (open_clip's tokenizer truncates and writes EOT last). With
sentence sampling each step takes a random subset of the description's sentences that fits the context,
kept in their original order; the first sentence (people count and activity, by the prompt's template) is
always kept when it fits. A sentence longer than the whole context is still truncated; the truncation
rate (captions cut mid-text) is reported either way.

    texts = TextBank.build(descriptions_per_image, tokenizer, context_length=77)
    tokens, stats = texts.batch(indices, rng, sample_sentences=True)     # (B, 77) int64 + counters
    tokens, stats = RowTexts(batch_texts, tokenizer, context_length=77).batch(rng, ...)   # a streamed batch
"""

from __future__ import annotations

import array
import re
from collections.abc import Callable
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
    """Every image's descriptions as sentence token ids (BPE run once, not per step), kept flat: one int32
    array of all tokens and three offset arrays (sentence -> tokens, description -> sentences, image ->
    descriptions), about 4 bytes a token where nested Python lists take 30-40 (a million images' captions
    in a few hundred MB per process, not several GB)."""

    def __init__(
        self,
        tokens: np.ndarray,
        sentence_starts: np.ndarray,
        description_starts: np.ndarray,
        image_starts: np.ndarray,
        *,
        sot: int,
        eot: int,
        context_length: int,
        pad: int = 0,
    ):
        # sentence k is tokens[sentence_starts[k]:sentence_starts[k + 1]], description d its sentences
        # description_starts[d]..description_starts[d + 1], image i its descriptions image_starts[i]..[i + 1]
        self.tokens, self.sentence_starts = tokens, sentence_starts
        self.description_starts, self.image_starts = description_starts, image_starts
        self.sot, self.eot, self.pad = sot, eot, pad
        self.context_length = context_length

    @classmethod
    def build(cls, descriptions: list[list[str]], tokenizer, *, context_length: int) -> TextBank:
        builder = TextBankBuilder(tokenizer, context_length=context_length)
        for descs in descriptions:
            builder.add(descs)
        return builder.build()

    def __len__(self) -> int:
        return len(self.image_starts) - 1

    def _sentences(self, description: int) -> range:
        return range(int(self.description_starts[description]), int(self.description_starts[description + 1]))

    def batch(
        self,
        indices: np.ndarray,
        rng: np.random.Generator,
        *,
        sample_sentences: bool,
        all_descriptions: bool = True,
    ) -> tuple[torch.Tensor, BatchStats]:
        starts = self.sentence_starts

        def sentences(row: int) -> list[np.ndarray]:
            i = int(indices[row])
            first, count = int(self.image_starts[i]), int(self.image_starts[i + 1] - self.image_starts[i])
            chosen = self._sentences(first + (int(rng.integers(count)) if all_descriptions else 0))
            return [self.tokens[starts[k] : starts[k + 1]] for k in chosen]

        return _compose(self, len(indices), sentences, rng, sample_sentences)

    def truncation_rate(self, *, sample_sentences: bool) -> float:
        """Share of (image, description) captions that would be cut at the context length."""
        room = self.context_length - 2
        lengths, firsts = np.diff(self.sentence_starts), self.description_starts[:-1]
        if len(firsts) == 0:
            return 0.0
        # every description has at least one sentence (TextBankBuilder.add), so no segment is empty
        per = np.minimum.reduceat(lengths, firsts) if sample_sentences else np.add.reduceat(lengths, firsts)
        return float(np.mean(per > room))


class TextBankBuilder:
    """Adds one image's descriptions at a time, straight into flat arrays: reading a million rows never holds
    their texts, or their tokens as Python ints, all at once."""

    def __init__(self, tokenizer, *, context_length: int):
        self.encode, self.sot, self.eot, self.pad = _token_ids(tokenizer)
        self.context_length = context_length
        self.tokens = array.array("i")
        self.sentence_starts, self.description_starts, self.image_starts = (
            array.array("q", [0]) for _ in "abc"
        )

    def add(self, descriptions: list[str]) -> None:
        for d in descriptions:
            for sentence in split_sentences(d) or [""]:  # a description without text: one empty sentence
                if sentence:
                    self.tokens.extend(self.encode(sentence))
                self.sentence_starts.append(len(self.tokens))
            self.description_starts.append(len(self.sentence_starts) - 1)
        self.image_starts.append(len(self.description_starts) - 1)

    def build(self) -> TextBank:
        return TextBank(
            np.frombuffer(self.tokens, dtype=np.int32).copy(),
            np.frombuffer(self.sentence_starts, dtype=np.int64).copy(),
            np.frombuffer(self.description_starts, dtype=np.int64).copy(),
            np.frombuffer(self.image_starts, dtype=np.int64).copy(),
            sot=self.sot,
            eot=self.eot,
            context_length=self.context_length,
            pad=self.pad,
        )


class RowTexts:
    """One batch's descriptions as text, with TextBank.batch's draws and output, tokenising only the
    description each row draws: the stream's workers see a row once per epoch, so a bank of all of a row's
    descriptions would run BPE on several texts to use one."""

    def __init__(self, descriptions: list[list[str]], tokenizer, *, context_length: int):
        self.descriptions = descriptions
        self.encode, self.sot, self.eot, self.pad = _token_ids(tokenizer)
        self.context_length = context_length

    def batch(
        self, rng: np.random.Generator, *, sample_sentences: bool, all_descriptions: bool = True
    ) -> tuple[torch.Tensor, BatchStats]:
        def sentences(row: int) -> list[np.ndarray]:
            descs = self.descriptions[row]
            text = descs[int(rng.integers(len(descs))) if all_descriptions else 0]
            return [
                np.asarray(self.encode(s) if s else [], dtype=np.int32) for s in split_sentences(text) or [""]
            ]

        return _compose(self, len(self.descriptions), sentences, rng, sample_sentences)


def _compose(
    texts: TextBank | RowTexts,
    n: int,
    sentences: Callable[[int], list[np.ndarray]],
    rng: np.random.Generator,
    sample_sentences: bool,
) -> tuple[torch.Tensor, BatchStats]:
    """(n, context_length) token ids with `texts`' special tokens: per row, `sentences(row)` (the drawn
    description's sentences as token arrays; it draws from rng first), then a subset that fits, as
    [start] ids [end] [pad]..."""
    room = texts.context_length - 2  # SOT and EOT
    out = torch.full((n, texts.context_length), texts.pad, dtype=torch.long)
    stats = BatchStats()
    for row in range(n):
        sents = sentences(row)
        lengths = [len(t) for t in sents]
        stats.sentences_total += len(sents)
        keep = _sample_fitting(lengths, room, rng) if sample_sentences else list(range(len(sents)))
        stats.sentences_kept += len(keep)
        ids = np.concatenate([sents[k] for k in keep])
        stats.captions += 1
        if len(ids) > room:
            ids = ids[:room]
            stats.truncated += 1
        out[row, 0] = texts.sot
        out[row, 1 : 1 + len(ids)] = torch.from_numpy(ids.astype(np.int64))
        out[row, 1 + len(ids)] = texts.eot
    return out, stats


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
