"""The offline describer: a description written from pose geometry through prompts/rules/description.j2.

Free, instant and deterministic, and it states only what pipeline.geometry computed from the keypoints
(nothing about a joint whose position is unknown), so it cannot hallucinate. The default when no LLM
endpoint is configured, and the one the demo uses.
"""

from __future__ import annotations

from typing import Any

from pipeline.describe.prompting import TemplateSet


def rules_description(tpl: TemplateSet, ctx: dict[str, Any]) -> str:
    """The rendered template as one paragraph (the template's line breaks only keep it readable)."""
    return " ".join(tpl.description(ctx).split())
