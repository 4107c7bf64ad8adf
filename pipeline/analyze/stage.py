"""The analyze stage: description quality, pose faithfulness and a visual gallery -> reports/<name>/.

    focus-pipeline analyze --descriptions rules-mpii gpt4o --images /data/mpii/images --sample 48
    summary = analyze(AnalyzeConfig(descriptions=["rules-mpii"]), store)      # the same from Python

Writes report.json (everything measured), report.md (the description-quality and faithfulness tables, one
column per description source, and text-only against image-grounded sources side by side when both are given:
pipeline.analyze.compare), report.html (charts and a seeded, paginated gallery) and checks.parquet
(one row per checked claim, to dig into). Several sources in one descriptions artifact are grouped by
their `source` column; the same label in two artifacts becomes "<artifact>/<source>".
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline import __version__
from pipeline.analyze.compare import added_words, comparisons, word_class
from pipeline.analyze.controls import contradict
from pipeline.analyze.gallery import card_image, data_uri, marked_html, render_html
from pipeline.analyze.inputs import (
    annotations_name,
    descriptions_frame,
    read_annotation_index,
)
from pipeline.analyze.report import render_markdown
from pipeline.analyze.text_metrics import text_summary
from pipeline.artifacts import reports
from pipeline.artifacts.descriptions import STATUSES
from pipeline.bystanders import find_bystanders, mask_bystanders
from pipeline.errors import PipelineError
from pipeline.facts import pose_facts_all
from pipeline.faithfulness import (
    CONFIRMED,
    CONTRADICTED,
    UNVERIFIABLE,
    DescriptionChecks,
    check_description,
    coverage_summary,
    faithfulness_summary,
    read_claims,
)
from pipeline.images import ImageError, find_image, load_rgb
from pipeline.instances import instances, noun, plural
from pipeline.log import progress
from pipeline.records import ImageAnnotation
from pipeline.store import Recorded, recorded, run_only

log = logging.getLogger(__name__)


@dataclass(slots=True)
class AnalyzeConfig:
    descriptions: list[str]
    annotations: str | None = None  # default: each descriptions artifact's own input annotations
    name: str | None = None  # default: the descriptions names joined by "_" (store names have no "+")
    images: Path | None = None  # folder of the source images, for the gallery and the CLIP score
    run: str | None = None  # a runs/<name> artifact: CLIP score of each description against its image
    sample: int = 48  # gallery images (seeded sample)
    seed: int = 0
    per_page: int = 12
    negative_control: bool = False  # add each source with its pose words flipped (controls.contradict)
    clip_batch: int = run_only(64)
    overwrite: bool = run_only(False)
    device: str = run_only("cpu")
    sources: list[str] = field(default_factory=list)  # keep only these source labels (all when empty)

    def __post_init__(self) -> None:
        if not self.descriptions:
            raise PipelineError("give at least one --descriptions artifact")
        if self.sample < 0 or self.per_page < 1:
            raise PipelineError("--sample must be >= 0 and --per-page >= 1")
        if self.images is not None and not Path(self.images).is_dir():
            raise PipelineError(f"--images {self.images}: no such folder")
        if self.run and self.images is None:
            raise PipelineError(
                "--run needs --images: the CLIP score compares each description with its image"
            )
        if self.run:
            from pipeline.devices import torch_device  # torch only for a CLIP score

            torch_device(self.device)  # checked before the report's other work, not after it

    def recorded(self) -> Recorded:
        return recorded(self)


def _default_name(cfg: AnalyzeConfig) -> str:
    return "_".join(cfg.descriptions)[:128].strip(".-_") or "report"


def _load(cfg: AnalyzeConfig, store) -> tuple[pd.DataFrame, dict[str, dict[str, ImageAnnotation]], dict]:
    frames, ann_for_artifact, indexes = [], {}, {}
    for name in cfg.descriptions:
        frames.append(descriptions_frame(store, name))
        ann = annotations_name(store, name, cfg.annotations)
        ann_for_artifact[name] = ann
        if ann and ann not in indexes:
            indexes[ann] = read_annotation_index(store, ann)
    df = pd.concat(frames, ignore_index=True)
    # The same label coming from two artifacts would merge two different runs: keep them apart.
    owners = df.groupby("source")["artifact"].nunique()
    clash = set(owners[owners > 1].index)
    if clash:
        df["source"] = [
            f"{a}/{s}" if s in clash else s for a, s in zip(df["artifact"], df["source"], strict=True)
        ]
    if cfg.sources:
        unknown = sorted(set(cfg.sources) - set(df["source"]))
        if unknown:
            raise PipelineError(
                f"--source {', '.join(unknown)}: not in the descriptions "
                f"(have: {', '.join(sorted(set(df['source'])))})"
            )
        df = df[df["source"].isin(cfg.sources)].reset_index(drop=True)
    if cfg.negative_control:
        flipped = df[df["status"] == "ok"].copy()
        flipped["source"] = flipped["source"] + " (flipped)"
        flipped["description"] = [contradict(t) for t in flipped["description"]]
        flipped["control"] = True
        df = pd.concat([df.assign(control=False), flipped], ignore_index=True)
    else:
        df["control"] = False
    df["sample"] = df["sample"].fillna(0).astype("int64")
    df["usable"] = (
        (df["status"] == "ok") & df["description"].notna() & (df["description"].fillna("").str.strip() != "")
    )
    return df, ann_for_artifact, indexes


def _per_row_mean(values: pd.Series) -> float | None:
    v = values.dropna()
    return float(v.mean()) if len(v) else None


def _find_image(images: Path, name: str) -> Path | None:
    """The image file under --images, None when there is none; ImageError for a name or link leading out of
    it (names come from the descriptions: pipeline.images.find_image)."""
    path = find_image(images, name)
    return path if path.is_file() else None


def _clip_scores(cfg: AnalyzeConfig, store, df: pd.DataFrame) -> tuple[pd.Series, dict[str, str]]:
    """max(100 * cos(image, text), 0) per usable row whose image is found and readable (the CLIPScore of
    torchmetrics), and why each unreadable image was not scored; texts longer than the model's context are
    cut by its tokenizer, as in training."""
    # torch and open_clip take seconds to import; only --run (the CLIPScore) needs them
    import torch

    from training.inference import load_model

    model, preprocess, tokenizer = load_model(run_dir=store.path("runs", cfg.run), device=cfg.device)
    rows = df[df["usable"]]
    paths: dict[str, Path | None] = {}
    unreadable: dict[str, str] = {}
    for img in rows["image"].unique():
        try:
            paths[img] = _find_image(cfg.images, img)
        except ImageError as err:
            unreadable[img] = str(err)
    found = [img for img, p in paths.items() if p is not None]
    if not found:
        raise PipelineError(
            f"--images {cfg.images}: none of the described images is there "
            f"(e.g. {rows['image'].iloc[0] if len(rows) else '-'})"
        )
    image_emb: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for i in progress(range(0, len(found), cfg.clip_batch), desc="CLIP images", unit="batch"):
            batch, ims = [], []
            for name in found[i : i + cfg.clip_batch]:
                try:
                    ims.append(preprocess(load_rgb(paths[name], str(paths[name]))))
                    batch.append(name)
                except ImageError as err:
                    unreadable[name] = str(err)
            if not ims:
                continue
            emb = torch.nn.functional.normalize(model.encode_image(torch.stack(ims).to(cfg.device)), dim=-1)
            image_emb.update(zip(batch, emb.cpu(), strict=True))
        scores = pd.Series(np.nan, index=df.index, dtype="float64")
        todo = rows[rows["image"].isin(image_emb)]
        for i in progress(range(0, len(todo), cfg.clip_batch), desc="CLIP texts", unit="batch"):
            chunk = todo.iloc[i : i + cfg.clip_batch]
            tok = tokenizer(list(chunk["description"])).to(cfg.device)
            txt = torch.nn.functional.normalize(model.encode_text(tok), dim=-1).cpu()
            img = torch.stack([image_emb[x] for x in chunk["image"]])
            scores.loc[chunk.index] = (100.0 * (txt * img).sum(-1)).clamp_min(0.0).numpy()
    log.info(
        "CLIP score: %d rows scored, %d images not found, %d unreadable",
        int(scores.notna().sum()),
        len(paths) - len(found),
        len(unreadable),
    )
    return scores, unreadable


def _stats(values: pd.Series) -> dict | None:
    v = values.dropna().to_numpy(dtype=np.float64)
    if not v.size:
        return None
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()), "max": float(v.max()),
            "n": int(v.size)}  # fmt: skip


def _check_rows(
    df: pd.DataFrame, ann_for_artifact: dict, indexes: dict
) -> tuple[dict[int, DescriptionChecks], dict[int, set[str]], dict]:
    """Faithfulness checks of every usable row that has an annotation, and the annotated body parts of every
    row's image (all statuses: coverage counts the rows that failed too); facts computed once per image."""
    rows = []  # (row, (annotations, image), description, usable) of the rows whose image is annotated
    no_annotation = Counter()
    for idx, image, artifact, text, usable, source in zip(
        df.index, df["image"], df["artifact"], df["description"], df["usable"], df["source"], strict=True
    ):
        ann_name = ann_for_artifact.get(artifact)
        if ann_name and image in indexes.get(ann_name, {}):
            rows.append((idx, (ann_name, image), text, usable))
        else:
            no_annotation[source] += usable
    images = list(dict.fromkeys(key for _, key, _, _ in rows))
    every = dict(zip(images, pose_facts_all([indexes[a][i] for a, i in images]), strict=True))
    results: dict[int, DescriptionChecks] = {}
    parts: dict[int, set[str]] = {}
    for idx, key, text, usable in progress(rows, desc="faithfulness", unit="desc"):
        facts = every[key]
        parts[idx] = set(facts.annotated_parts)
        if usable:
            # People the annotations do not have (allowed as scene by describe --background-people scene)
            # claim nothing about the annotated ones: their clauses are blanked, as describe's gate does.
            others = (
                find_bystanders(text, len(facts.people), activity=facts.activity, category=facts.category)
                if facts.human
                else []
            )
            results[idx] = check_description(read_claims(mask_bystanders(text, others), facts), facts)
    return results, parts, {k: v for k, v in no_annotation.items() if v}


def _cards(
    cfg: AnalyzeConfig,
    df: pd.DataFrame,
    checks: dict[int, DescriptionChecks],
    ann_for_artifact: dict,
    indexes: dict,
    sources: list[str],
    compared: list[dict],
) -> tuple[list[dict], int, dict[str, str]]:
    """The gallery's cards: a seeded sample of the images (of those a text-only and an image-grounded source
    both described, when there is such a pair), each with every usable description of it; and why each image
    that could not be shown was not (its card draws the keypoints on a blank canvas and says why)."""
    usable = df[df["usable"]]
    images = sorted(usable["image"].unique())
    pool = images
    if compared:
        by_source = usable.groupby("source")["image"].apply(set)
        shared = [by_source[c["text_source"]] & by_source[c["image_source"]] for c in compared]
        pool = sorted(set().union(*shared))
    picked = sorted(random.Random(cfg.seed).sample(pool, min(cfg.sample, len(pool))))
    order = {s: i for i, s in enumerate(sources)}
    cards, unreadable = [], {}
    for image in progress(picked, desc="gallery", unit="image"):
        rows = usable[usable["image"] == image]
        rows = rows.iloc[
            sorted(range(len(rows)), key=lambda i: (order[rows["source"].iloc[i]], rows["sample"].iloc[i]))
        ]
        artifact = rows["artifact"].iloc[0]
        ann_name = ann_for_artifact.get(artifact)
        ann = indexes.get(ann_name, {}).get(image) if ann_name else None
        try:
            jpeg = card_image(ann, _find_image(cfg.images, image) if cfg.images else None)
        except ImageError as err:
            unreadable[image] = str(err)
            jpeg = card_image(ann, None)
        descs = []
        text_only = list(rows.loc[~rows["with_image"] & ~rows["control"], "description"])
        for idx, source, sample, text, seen in zip(
            rows.index, rows["source"], rows["sample"], rows["description"], rows["with_image"], strict=True
        ):
            c = checks.get(idx)
            tally = c.counts() if c else Counter()
            added = added_words(text, text_only) if seen and text_only else []
            descs.append({"source": source, "sample": int(sample), "with_image": bool(seen),
                          "html": marked_html(text, c.checks if c else []), CONFIRMED: tally[CONFIRMED],
                          CONTRADICTED: tally[CONTRADICTED], UNVERIFIABLE: tally[UNVERIFIABLE],
                          "added": [[w, word_class(w)] for w in added]})  # fmt: skip
        kinds = list(dict.fromkeys(noun(p, ann.skeleton) for p in instances(ann))) if ann else []
        one = kinds[0] if len(kinds) == 1 else ann.skeleton.subject if ann else "person"
        cards.append({"image": image, "img": data_uri(jpeg), "people": len(instances(ann)) if ann else 0,
                      "noun": [one, plural(one)], "activity": ann.activity if ann else None,
                      "image_error": unreadable.get(image), "descriptions": descs})  # fmt: skip
    return cards, len(images), unreadable


def _checks_table(df: pd.DataFrame, checks: dict[int, DescriptionChecks]) -> pa.Table:
    cols: dict[str, list] = {n: [] for n in reports.CHECKS_SCHEMA.names}
    rows = df.loc[list(checks), ["image", "source", "sample", "description"]]
    for idx, image, source, sample, text in zip(
        rows.index, rows["image"], rows["source"], rows["sample"], rows["description"], strict=True
    ):
        for c in checks[idx].checks:
            cols["image"].append(image)
            cols["source"].append(source)
            cols["sample"].append(int(sample))
            cols["kind"].append(c.claim.kind)
            cols["part"].append(c.claim.part)
            cols["value"].append(str(c.claim.value))
            cols["person"].append(None if c.person is None else c.person + 1)
            cols["verdict"].append(c.verdict)
            cols["evidence"].append(c.evidence)
            cols["start"].append(c.claim.start)
            cols["end"].append(c.claim.end)
            cols["text"].append(text[c.claim.start : c.claim.end])
    return pa.table(cols, schema=reports.CHECKS_SCHEMA)


def _clean(obj):
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _source_summary(
    rows: pd.DataFrame, checks: dict, parts: dict, clip: pd.Series | None, without_annotation: int
) -> dict:
    """One source's row counts, text statistics, cost, faithfulness, coverage and CLIP score."""
    ok = rows[rows["usable"]]
    idx = [i for i in ok.index if i in checks]
    faithfulness = faithfulness_summary([checks[i] for i in idx]) if idx else None
    annotated = [i for i in rows.index if i in parts]
    coverage = (
        coverage_summary(
            [(checks.get(i), parts[i]) for i in annotated], faithfulness and faithfulness["agreement"]
        )
        if annotated
        else None
    )
    return {
        "rows": len(rows),
        "images": int(rows["image"].nunique()),
        "status": {s: int((rows["status"] == s).sum()) for s in STATUSES},
        "models": sorted({str(m) for m in rows["model"].dropna()}),
        "templates": sorted({str(t) for t in rows["template"].dropna()}),
        "text": text_summary(list(ok["description"])),
        "prompt_tokens_per_row": _per_row_mean(rows["prompt_tokens"]),
        "completion_tokens_per_row": _per_row_mean(rows["completion_tokens"]),
        "cost_per_row": _per_row_mean(rows["cost_usd"]),
        "cost_total": float(rows["cost_usd"].fillna(0).sum()),
        "faithfulness": faithfulness,
        "coverage": coverage,
        "without_annotation": without_annotation,
        "clip_score": _stats(clip.loc[ok.index]) if clip is not None else None,
    }


def _notes(cfg: AnalyzeConfig, annotated: bool, no_annotation: dict[str, int]) -> list[str]:
    notes = []
    if not annotated:
        notes.append("No annotations: pose faithfulness was not measured (give --annotations).")
    for source, n in no_annotation.items():
        notes.append(f"{source}: {n} description(s) of images missing from the annotations were not checked.")
    if cfg.negative_control:
        notes.append(
            "Sources ending in '(flipped)' are a negative control: the same descriptions with left/right, "
            "postures, raised/lowered and straight/bent swapped (pipeline/analyze/controls.py)."
        )
    return notes


def _unreadable_note(unreadable: dict[str, str], clip_scored: bool) -> str:
    why = next(iter(unreadable.values()))
    return (
        f"{len(unreadable)} image file(s) could not be read (e.g. {why}): a gallery card shows such an "
        f"image's keypoints without the photo{', and its rows have no CLIP score' if clip_scored else ''}."
    )


def analyze(cfg: AnalyzeConfig, store) -> dict:
    """Measure every description source and write reports/<name>/; returns what report.json holds."""
    name = cfg.name or _default_name(cfg)
    store.check_replace("reports", name, cfg.overwrite)
    if cfg.run and not store.exists("runs", cfg.run):
        raise PipelineError(
            f"no artifact runs/{cfg.run} in store {store.root} (see `focus-pipeline store ls`)"
        )
    df, ann_for_artifact, indexes = _load(cfg, store)
    sources = list(dict.fromkeys(df["source"]))  # first-seen order: the order the user gave
    n_annotated = sum(len(i) for i in indexes.values())
    log.info("analyze: %d rows, %d sources, %d annotated images", len(df), len(sources), n_annotated)

    checks, parts, no_annotation = _check_rows(df, ann_for_artifact, indexes) if indexes else ({}, {}, {})
    clip, unreadable = _clip_scores(cfg, store, df) if cfg.run else (None, {})

    per_source = {
        source: _source_summary(df[df["source"] == source], checks, parts, clip, no_annotation.get(source, 0))
        for source in sources
    }
    image_sources = set(df.loc[df["with_image"], "source"])
    real = df[~df["control"]]  # the negative control's flipped copies are not compared
    compared = comparisons(real, checks, parts, image_sources) if image_sources else []
    notes = _notes(cfg, bool(indexes), no_annotation)

    summary = {
        "name": name,
        "created_by": f"focus-pipeline {__version__} analyze",
        "inputs": {
            "descriptions": list(cfg.descriptions),
            "annotations": sorted({a for a in ann_for_artifact.values() if a}),
            "run": cfg.run,
        },
        "sources": sources,
        "per_source": per_source,
        "image_grounded": [s for s in sources if s in image_sources],
        "comparisons": compared,
        "notes": notes,
    }
    inputs = [store.ref("descriptions", n) for n in cfg.descriptions]
    inputs += [store.ref("annotations", a) for a in summary["inputs"]["annotations"]]
    if cfg.run:
        inputs.append(store.ref("runs", cfg.run))
    with store.create(
        "reports", name, stage="analyze", config=cfg.recorded(), inputs=inputs, overwrite=cfg.overwrite
    ) as w:
        cards, n_images, not_shown = _cards(cfg, df, checks, ann_for_artifact, indexes, sources, compared)
        summary["gallery"] = {
            "cards": len(cards),
            "images": n_images,
            "seed": cfg.seed,
            "per_page": cfg.per_page,
            "unreadable_images": len(not_shown),
        }
        unreadable |= not_shown
        if unreadable:
            summary["notes"].append(_unreadable_note(unreadable, bool(cfg.run)))
            log.warning("%s", summary["notes"][-1])
        summary = _clean(summary)
        html, markdown = render_html(summary, cards, per_page=cfg.per_page), render_markdown(summary)
        reports.write(w.dir, summary, markdown=markdown, html=html, checks=_checks_table(df, checks))
        claims = sum(len(c.checks) for c in checks.values())
        w.counts.update(
            rows=len(df),
            sources=len(sources),
            checked_descriptions=len(checks),
            claims=claims,
            gallery_cards=len(cards),
        )
    return summary
