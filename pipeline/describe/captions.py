"""The captions backend: a source's human captions (COCO captions, joined by `convert --captions`) as the
descriptions artifact, with no LLM and no prompt.

    focus-pipeline describe --annotations coco --backend captions --name coco-captions

One row per caption: sample 0..n-1 of its image, source "captions", model "human", status ok. An image
without captions gets no row (counted in meta.json as images_without_captions; build-dataset then skips it
as no_description), so that CLIP and FocusCLIP can be trained and compared on real human text through
build-dataset and train unchanged.

The quality gate (pipeline.describe.validate) is not applied: it checks a description's pose claims against
the keypoints, and human captions describe the scene ("a man riding a wave on top of a surfboard"), not the
pose, so it would reject nearly all of them for making too few pose claims; they are the reference text, not
a model's output to be screened.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from pipeline.artifacts import descriptions
from pipeline.artifacts.descriptions import DescriptionResult
from pipeline.describe.config import DescribeConfig
from pipeline.errors import PipelineError
from pipeline.records import ImageAnnotation
from pipeline.store import Store

log = logging.getLogger(__name__)

SOURCE = "captions"
MODEL = "human"


def caption_results(rows: list[ImageAnnotation]) -> list[DescriptionResult]:
    """One ok row per caption, keyed by its image, sample and text."""
    out = []
    for ann in rows:
        for sample, text in enumerate(ann.captions):
            key = hashlib.sha256(json.dumps([ann.image, sample, text]).encode()).hexdigest()
            out.append(
                DescriptionResult(
                    cache_key=key,
                    image=ann.image,
                    source=SOURCE,
                    sample=sample,
                    description=text,
                    status="ok",
                    model=MODEL,
                    template=SOURCE,
                    template_hash="",
                    finish_reason=None,
                )  # fmt: skip
            )
    return out


def describe_captions(rows: list[ImageAnnotation], cfg: DescribeConfig, store: Store) -> dict[str, Any]:
    """Publish descriptions/<name> from the images' captions; returns the summary describe returns."""
    results = caption_results(rows)
    if not results:
        raise PipelineError(
            f"annotations/{cfg.annotations}: no image has captions; convert the COCO-format file with "
            f"--captions captions_<split>.json"
        )
    counts = descriptions.totals(results) | {"images_without_captions": sum(not a.captions for a in rows)}
    with store.create(
        "descriptions", cfg.artifact_name, stage="describe", config=cfg.recorded(), overwrite=cfg.overwrite,
        inputs=[store.ref("annotations", cfg.annotations)],
    ) as writer:  # fmt: skip
        descriptions.write(writer.dir / descriptions.FILE, results)
        writer.counts.update(counts)
    log.info("descriptions/%s: %d captions of %d images", cfg.artifact_name, counts["rows"], counts["images"])
    return {"artifact": f"descriptions/{cfg.artifact_name}", **counts}
