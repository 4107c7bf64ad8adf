"""`focus-pipeline demo`: the whole pipeline on the embedded synthetic sample, on a CPU, in minutes.

    focus-pipeline demo                           # = make demo; prints the Table-2-style comparison
    focus-pipeline demo --fresh                   # start over instead of reusing finished stages
    focus-pipeline --store /tmp/s demo --images 300 --steps 20

The command only parses options; pipeline.demo.demo does the work.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.app import app, state
from pipeline.demo import DemoConfig, demo


@app.command("demo")
def _demo(
    *,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Start over: regenerate the sample and re-run every stage.")
    ] = False,
    images: Annotated[int, typer.Option("--images", help="Synthetic MPII-style training images.")] = 1000,
    steps: Annotated[
        int, typer.Option("--steps", help="Training steps per model (CLIP and FocusCLIP).")
    ] = 300,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Training batch size.")] = 32,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sample and of training.")] = 0,
    arch: Annotated[str, typer.Option("--arch", help="Model architecture (open_clip name or focus-*).")] = (
        "focus-small"
    ),
    lr: Annotated[
        float | None,
        typer.Option("--lr", help="Peak learning rate (AdamW, cosine; default: the recipe's, 1e-3)."),
    ] = None,
    eval_per_class: Annotated[
        int, typer.Option("--eval-per-class", help="Held-out action test images per activity.")
    ] = 30,
    state_per_class: Annotated[
        int, typer.Option("--state-per-class", help="Held-out body-state crops per state.")
    ] = 40,
    threads: Annotated[
        int | None, typer.Option("--threads", help="torch CPU threads (default: torch's choice).")
    ] = None,
    name: Annotated[str, typer.Option("--name", help="Artifact name prefix in the store.")] = "demo",
) -> None:
    """Generate the sample, convert, describe, build, train CLIP and FocusCLIP, evaluate, compare."""
    cfg = DemoConfig(images=images, steps=steps, batch_size=batch_size, seed=seed, arch=arch, name=name,
                     action_test_per_class=eval_per_class, state_test_per_class=state_per_class, lr=lr,
                     threads=threads, fresh=fresh)  # fmt: skip
    result = demo(cfg, state.store)
    typer.echo(result.table)
    for model_type, ok in result.beats_random.items():
        verdict = "significantly above" if ok else "NOT significantly above"
        typer.echo(f"{model_type}: {verdict} random on synthetic actions (binomial test, p < 0.01)")
    typer.echo(f"report: {result.report}")
