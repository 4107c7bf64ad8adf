"""Prices (USD per 1M tokens) and a tokenizer-free prompt token estimate for plans and budgets.

The table is a snapshot of public list prices; pass --price-input/--price-output or --prices FILE
(JSON {model: {"input": x, "output": y}}) to override. A model missing from the table costs 0 (a local
server), with a warning.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o4-mini": (1.10, 4.40),
}

# Pieces the cl100k/o200k BPE pre-tokenizer splits text into (words with their leading space, digit runs of
# up to 3, punctuation runs); one token per piece, plus one per 6 further letters of a long word. Close to
# tiktoken on English and JSON (an estimate: real usage comes back with each reply), and needs no vocabulary.
_PIECE = re.compile(r"'(?:s|t|re|ve|m|ll|d)| ?[A-Za-z]+| ?\d{1,3}| ?[^\sA-Za-z\d]+|\s+")
_MESSAGE_OVERHEAD = 4  # tokens the chat format adds per message
# The most tokens one request can count: above the largest context window offered today (10M, Llama 4 Scout).
# A usage beyond it (or negative, or not an integer) is an endpoint's error, never a bill.
MAX_REQUEST_TOKENS = 10_000_000


@functools.lru_cache(maxsize=256)  # system prompts repeat on every row
def estimate_tokens(text: str) -> int:
    pieces = _PIECE.findall(text)
    return len(pieces) + sum((len(p) - 2) // 6 for p in pieces if len(p) > 7 and p[-1:].isalpha())


def estimate_prompt_tokens(messages: list[dict[str, str]]) -> int:
    return sum(estimate_tokens(m["content"]) + _MESSAGE_OVERHEAD for m in messages) + 3


@dataclass(frozen=True, slots=True)
class Price:
    input: float  # USD per 1M prompt tokens
    output: float  # USD per 1M completion tokens
    known: bool = True

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1e6


def price_for(
    model: str,
    *,
    price_input: float | None = None,
    price_output: float | None = None,
    prices_file: str | None = None,
) -> Price:
    table = dict(PRICES)
    if prices_file:
        try:
            extra = json.loads(Path(prices_file).read_text())
            extra = {m: (float(v["input"]), float(v["output"])) for m, v in extra.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise PipelineError(
                f"--prices {prices_file}: expected JSON {{model: {{input, output}}}} ({err})"
            ) from None
        for m, pair in extra.items():
            if not all(math.isfinite(v) and v >= 0 for v in pair):
                raise PipelineError(f"--prices {prices_file}: {m}: prices must be finite and >= 0 ({pair})")
        table |= extra
    # Dated snapshots ("gpt-4o-mini-2024-07-18") cost what their family costs: longest prefix wins.
    match = max((m for m in table if model == m or model.startswith(m + "-")), key=len, default=None)
    base = table.get(match) if match else None
    if base is None and (price_input is None or price_output is None):
        log.warning(
            "no price known for model %r: costs count as 0 (pass --price-input/--price-output)", model
        )
    known = base is not None or (price_input is not None and price_output is not None)
    base = base or (0.0, 0.0)
    return Price(
        input=base[0] if price_input is None else price_input,
        output=base[1] if price_output is None else price_output,
        known=known,
    )
