"""report.html: a self-contained page (no network at view time) with summary charts and a pose gallery.

    card_image(ann, image_path)               # JPEG: photo (or a neutral canvas), ROI heatmap, skeleton
    marked_html(text, checks)                 # the description with its claims marked by verdict
    render_html(summary, cards, per_page=12)  # the page; only the sampled cards are embedded

The page embeds the sampled cards as JSON and a few lines of vanilla JavaScript paginate them on the client
(#page=N in the URL opens a page), so its size and speed depend on --sample, not on the number of rows.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import jinja2
import numpy as np
from markupsafe import Markup
from PIL import Image, ImageDraw

from pipeline.analyze.report import COMPARISON_NOTE, QUALITY_ROWS, comparison_table, faith_rows, table
from pipeline.faithfulness import CONFIRMED, CONTRADICTED, UNVERIFIABLE, Check
from pipeline.heatmaps import roi_heatmap
from pipeline.images import load_rgb
from pipeline.records import ImageAnnotation, known
from pipeline.skeletons import Skeleton

TEMPLATES = Path(__file__).parent / "templates"
MAX_SIDE = 320
SIDE_COLOURS = {"l": (40, 110, 230), "r": (235, 120, 20), "c": (30, 160, 80)}
VERDICT_RANK = {CONTRADICTED: 0, UNVERIFIABLE: 1, CONFIRMED: 2}


def _side(name: str) -> str:
    """l / r / c of a joint, from its name in the image's skeleton."""
    return "l" if name.startswith("left") else "r" if name.startswith("right") else "c"


def _edge_side(skeleton: Skeleton, a: int, b: int) -> str:
    """A limb takes its joints' side; one joining the two sides (COCO's shoulder line) is central."""
    sides = {_side(skeleton.joints[a]), _side(skeleton.joints[b])} - {"c"}
    return sides.pop() if len(sides) == 1 else "c"


def _canvas(ann: ImageAnnotation, image_path: Path | None) -> tuple[Image.Image, np.ndarray, tuple[int, int]]:
    """(RGB picture at most MAX_SIDE, keypoints in its pixels, source size). No photo: a neutral canvas
    around the known keypoints with a 15% margin. Crowd regions are left out, so that the numbers drawn are
    the instance numbers descriptions use."""
    crowd = np.array([p.crowd for p in ann.people], dtype=bool)
    kps = ann.keypoints[~crowd] if crowd.any() else ann.keypoints.copy()
    if image_path is not None:
        im = load_rgb(image_path, str(image_path))
        src = im.size
        scale = MAX_SIDE / max(src)
        img = im.resize((max(1, round(src[0] * scale)), max(1, round(src[1] * scale))), Image.BILINEAR)
        kps[..., :2] *= scale
        return img, kps, src
    pts = kps[known(kps)][:, :2] if kps.size else np.zeros((0, 2))
    if len(pts) == 0:
        return Image.new("RGB", (MAX_SIDE, MAX_SIDE), (238, 238, 238)), kps, (MAX_SIDE, MAX_SIDE)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    size = np.maximum(hi - lo, 1.0)
    lo, size = lo - 0.15 * size, size * 1.3
    scale = MAX_SIDE / float(size.max())
    kps[..., 0] = (kps[..., 0] - lo[0]) * scale
    kps[..., 1] = (kps[..., 1] - lo[1]) * scale
    w, h = max(1, round(size[0] * scale)), max(1, round(size[1] * scale))
    return Image.new("RGB", (w, h), (238, 238, 238)), kps, (w, h)


def card_image(ann: ImageAnnotation | None, image_path: Path | None = None, quality: int = 80) -> bytes:
    """JPEG of the image (or a neutral canvas) with the ROI heatmap tinted over it and each skeleton drawn:
    visible joints filled, occluded ones (v = 1) hollow, unannotated ones absent. ImageError when the image
    file cannot be read (pipeline.images)."""
    if ann is None:
        img = (
            load_rgb(image_path, str(image_path))
            if image_path
            else Image.new("RGB", (MAX_SIDE, MAX_SIDE), "#eee")
        )
        img.thumbnail((MAX_SIDE, MAX_SIDE))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality)
        return buf.getvalue()
    img, kps, _ = _canvas(ann, image_path)
    w, h = img.size
    if len(kps):
        hm = roi_heatmap(kps, image_size=(w, h), out_size=(w, h))
        tint = np.array([255, 60, 0], dtype=np.float32)
        base = np.asarray(img, dtype=np.float32)
        alpha = (0.45 * hm)[..., None]
        img = Image.fromarray((base * (1 - alpha) + tint * alpha).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    r = max(2, round(max(w, h) / 110))
    for p, person in enumerate(kps):
        ok = known(person)
        for a, b in ann.skeleton.edges:
            if ok[a] and ok[b]:
                colour = SIDE_COLOURS[_edge_side(ann.skeleton, a, b)]
                draw.line([tuple(person[a, :2]), tuple(person[b, :2])], fill=colour, width=max(2, r - 1))
        for j in np.flatnonzero(ok):
            x, y = person[j, :2]
            colour = SIDE_COLOURS[_side(ann.skeleton.joints[j])]
            box = [x - r, y - r, x + r, y + r]
            draw.ellipse(
                box,
                fill=colour if person[j, 2] >= 2 else None,
                outline=(255, 255, 255) if person[j, 2] >= 2 else colour,
                width=max(1, r // 2),
            )
        if ok.any():  # the person's 1-based number, as descriptions say "person 2"
            x, y = person[ok, :2].min(axis=0)
            draw.text((float(x), max(0.0, float(y) - 12)), str(p + 1), fill=(0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def marked_html(text: str, checks: list[Check]) -> str:
    """Escaped description with <mark class="verdict" title="claim: evidence"> around each checked claim.
    Claims on the same words are merged (the worst verdict shows); overlapping ones keep the earlier."""
    spans: dict[tuple[int, int], list[Check]] = {}
    for c in checks:
        if c.claim.end > c.claim.start:
            spans.setdefault((c.claim.start, c.claim.end), []).append(c)
    out, pos = [], 0
    for (start, end), group in sorted(spans.items()):
        if start < pos:
            continue
        verdict = min((c.verdict for c in group), key=VERDICT_RANK.__getitem__)
        title = "; ".join(f"{c.claim.label}: {c.verdict} ({c.evidence})" for c in group)
        out.append(html.escape(text[pos:start]))
        out.append(
            f'<mark class="{verdict}" title="{html.escape(title)}">{html.escape(text[start:end])}</mark>'
        )
        pos = end
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _bar_svg(
    title: str,
    labels: list[str],
    values: list[float | None],
    *,
    fmt: str = "{:.1%}",
    vmax: float | None = None,
) -> str:
    """A small horizontal bar chart as inline SVG."""
    row, left, width = 24, 190, 300
    vals = [v if v is not None else 0.0 for v in values]
    top = vmax if vmax is not None else (max(vals) if vals and max(vals) > 0 else 1.0)
    h = 30 + row * len(labels)
    parts = [
        f'<svg class="chart" viewBox="0 0 {left + width + 70} {h}" role="img" '
        f'aria-label="{html.escape(title)}">',
        f'<text x="0" y="16" class="ct">{html.escape(title)}</text>',
    ]
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        y = 28 + i * row
        bw = 0 if v is None else width * max(0.0, v) / top
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{html.escape(label[:28])}</text>')
        parts.append(f'<rect x="{left}" y="{y + 2}" width="{bw:.1f}" height="{row - 8}" class="bar"/>')
        parts.append(
            f'<text x="{left + bw + 4:.1f}" y="{y + 14}">{"n/a" if v is None else fmt.format(v)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _stacked_svg(title: str, labels: list[str], shares: list[dict[str, float]]) -> str:
    """Verdict shares per source as 100% stacked bars."""
    row, left, width = 24, 190, 300
    h = 48 + row * len(labels)
    parts = [
        f'<svg class="chart" viewBox="0 0 {left + width + 20} {h}" role="img" '
        f'aria-label="{html.escape(title)}">',
        f'<text x="0" y="16" class="ct">{html.escape(title)}</text>',
    ]
    for i, (label, share) in enumerate(zip(labels, shares, strict=True)):
        y, x = 28 + i * row, float(left)
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{html.escape(label[:28])}</text>')
        for verdict in (CONFIRMED, CONTRADICTED, UNVERIFIABLE):
            bw = width * share.get(verdict, 0.0)
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 2}" width="{bw:.1f}" height="{row - 8}" class="{verdict}">'
                f"<title>{verdict}: {share.get(verdict, 0.0):.1%}</title></rect>"
            )
            x += bw
    y = 36 + row * len(labels)
    for k, verdict in enumerate((CONFIRMED, CONTRADICTED, UNVERIFIABLE)):
        parts.append(
            f'<rect x="{left + 110 * k}" y="{y - 9}" width="10" height="10" class="{verdict}"/>'
            f'<text x="{left + 110 * k + 14}" y="{y}">{verdict}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def charts(summary: dict) -> list[str]:
    sources, per = summary["sources"], summary["per_source"]
    out = [
        _bar_svg(
            "Mean length (words)",
            sources,
            [(per[s]["text"]["words"] or {}).get("mean") for s in sources],
            fmt="{:.0f}",
        ),
        _bar_svg(
            "Over 77 CLIP tokens", sources, [per[s]["text"]["over_77_tokens"] for s in sources], vmax=1.0
        ),
    ]
    cover = [per[s].get("coverage") for s in sources]
    if any(cover):
        scores = [c and c["score"] for c in cover]
        out.append(
            _bar_svg(
                "Faithfulness score (agreement × part coverage)", sources, scores, fmt="{:.3f}", vmax=1.0
            )
        )
    faith = [per[s].get("faithfulness") for s in sources]
    if any(faith):
        out.append(
            _bar_svg("Pose faithfulness: agreement", sources, [f and f["agreement"] for f in faith], vmax=1.0)
        )
        shares = []
        for f in faith:
            total = (f or {}).get("claims") or 0
            shares.append({v: f[v] / total for v in (CONFIRMED, CONTRADICTED, UNVERIFIABLE)} if total else {})
        out.append(_stacked_svg("Claims by verdict", sources, shares))
    if any(per[s].get("clip_score") for s in sources):
        out.append(
            _bar_svg(
                "CLIP score",
                sources,
                [(per[s].get("clip_score") or {}).get("mean") for s in sources],
                fmt="{:.2f}",
            )
        )
    return out


def _json_for_script(obj) -> str:
    """JSON that is safe inside <script type="application/json"> (no '</' can close the tag)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")


def render_html(summary: dict, cards: list[dict], per_page: int = 12) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    sources, per = summary["sources"], summary["per_source"]
    faith = (
        faith_rows(per) if any(per[s].get("faithfulness") or per[s].get("coverage") for s in sources) else []
    )
    return env.get_template("report.html.j2").render(
        summary=summary,
        sources=sources,
        quality=table(sources, per, QUALITY_ROWS),
        faithfulness=table(sources, per, faith) if faith else [],
        charts=[Markup(c) for c in charts(summary)],
        cards_json=Markup(_json_for_script(cards)),
        per_page=per_page,
        comparisons=[comparison_table(c) for c in summary.get("comparisons", [])],
        comparison_note=COMPARISON_NOTE,
    )
