"""The zero-shot classifier, as pure functions on tensors (after open_clip's zero_shot_classifier.py):
prompts per class, one embedding per class averaged over templates, logits (metrics.py scores them).

    prompts = class_prompts(["happy", "sad"], ["a photo of {article} {c} looking face"])
    weights = class_embeddings(encode_text(tokenize(flat(prompts))).view(C, T, -1))   # (C, D)
    scores = logits(image_features, weights)  # (N, C)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def render(template: str, name: str) -> str:
    """Templates use {c} for the class text and {article} for its indefinite article."""
    return template.format(c=name, article=article(name))


def class_prompts(
    names: list[str] | tuple[str, ...], templates: list[str] | tuple[str, ...]
) -> list[list[str]]:
    """[class][template] -> prompt text."""
    if not templates:
        raise ValueError("at least one prompt template is needed")
    return [[render(t, name) for t in templates] for name in names]


def class_embeddings(text_features: torch.Tensor) -> torch.Tensor:
    """(C, T, D) text features of C classes x T templates -> (C, D) unit class embeddings.

    Each prompt embedding is normalised before averaging, then the mean is normalised again (the CLIP
    paper's prompt ensembling), so a template with a large norm does not dominate."""
    if text_features.ndim != 3:
        raise ValueError(f"expected (classes, templates, dim), got {tuple(text_features.shape)}")
    return F.normalize(F.normalize(text_features.float(), dim=-1).mean(dim=1), dim=-1)


def logits(image_features: torch.Tensor, class_weights: torch.Tensor, scale: float = 100.0) -> torch.Tensor:
    """(N, D) image features x (C, D) unit class embeddings -> (N, C) scaled cosine similarities."""
    return scale * F.normalize(image_features.float(), dim=-1) @ class_weights.float().T
