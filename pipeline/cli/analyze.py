"""`focus-pipeline analyze`: description quality, pose faithfulness and an HTML gallery -> reports/<name>/.

focus-pipeline analyze --descriptions rules-mpii gpt4o-paper --name compare --sample 48
focus-pipeline analyze --descriptions gpt4o-paper --images ~/mpii/images --run demo-focusclip
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.app import app, state

# The command's options, one alias each, so the command itself reads as option -> config -> call.
Descriptions = Annotated[
    list[str],
    typer.Option(
        "--descriptions",
        metavar="NAME",
        help="descriptions artifact(s); several may follow one flag",
        show_default=False,
    ),
]
Annotations = Annotated[
    str | None,
    typer.Option(help="annotations artifact (default: the one each descriptions artifact was made from)"),
]
Name = Annotated[str | None, typer.Option(help="report name (default: the descriptions names joined by '_')")]
Images = Annotated[
    Path | None,
    typer.Option(
        metavar="DIR",
        help="folder of the source images: photos in the gallery, needed by --run (links out of it refused)",
    ),
]
Run = Annotated[
    str | None, typer.Option(help="runs artifact: CLIP score of each description against its image")
]
Sample = Annotated[int, typer.Option(help="images in the gallery (seeded sample)")]
Seed = Annotated[int, typer.Option(help="seed of the gallery sample")]
PerPage = Annotated[int, typer.Option(help="gallery cards per page")]
Source = Annotated[
    list[str] | None,
    typer.Option(metavar="SOURCE", help="keep only this description source (repeatable)"),
]
NegativeControl = Annotated[
    bool,
    typer.Option(help="also score each source with its pose words flipped: the faithfulness checker's floor"),
]
Device = Annotated[str, typer.Option(help="torch device for --run")]
Overwrite = Annotated[bool, typer.Option(help="replace an existing report of that name")]


@app.command("analyze", context_settings={"allow_extra_args": True})
def _analyze(
    ctx: typer.Context,
    *,
    descriptions: Descriptions,
    annotations: Annotations = None,
    name: Name = None,
    images: Images = None,
    run: Run = None,
    sample: Sample = 48,
    seed: Seed = 0,
    per_page: PerPage = 12,
    source: Source = None,
    negative_control: NegativeControl = False,
    device: Device = "cpu",
    overwrite: Overwrite = False,
) -> None:
    """Measure description sources (length, readability, style, diversity, cost, pose faithfulness) and
    write report.json, report.md and a self-contained report.html gallery."""
    from pipeline.analyze import AnalyzeConfig, analyze
    from pipeline.errors import PipelineError

    # `--descriptions A B C` (the contract) as well as `--descriptions A --descriptions B`: click hands the
    # names after the first one over as extra arguments.
    extra = list(ctx.args)
    if any(a.startswith("-") for a in extra):
        raise PipelineError(f"unexpected argument(s): {' '.join(extra)}")
    cfg = AnalyzeConfig(
        descriptions=[*descriptions, *extra],
        annotations=annotations,
        name=name,
        images=images,
        run=run,
        sample=sample,
        seed=seed,
        per_page=per_page,
        sources=list(source or []),
        negative_control=negative_control,
        device=device,
        overwrite=overwrite,
    )
    summary = analyze(cfg, state.store)
    typer.echo(
        f"wrote reports/{summary['name']}: "
        + "; ".join(_headline(s, v) for s, v in summary["per_source"].items())
    )


def _headline(source: str, v: dict) -> str:
    """'rules: 65 ok, score 0.912 (agreement 100.0%, parts covered 91.2%)': agreement alone is not the
    headline, since a reply that makes no checkable claim cannot be contradicted."""
    out = f"{source}: {v['text']['n']} ok"
    cover, faith = v.get("coverage"), v.get("faithfulness")
    if cover and cover["score"] is not None:
        agreement = faith and faith["agreement"]
        out += f", score {cover['score']:.3f} (agreement " + (
            "–" if agreement is None else f"{100 * agreement:.1f}%"
        )
        out += f", parts covered {100 * cover['part_coverage']:.1f}%)"
    return out
