"""`focus-pipeline train`: train CLIP or FocusCLIP on a datasets/<name> artifact into runs/<name>.

    focus-pipeline train --dataset mpii --model-type focusclip --arch ViT-B-16 --recipe paper
    focus-pipeline train --dataset mpii --model-type clip --max-steps 2000 --batch-size 256 --compile
    focus-pipeline train --dataset mpii --model-type focusclip --resume          # continue an interrupted run
    torchrun --nproc_per_node 8 --no-python focus-pipeline train --dataset mpii --model-type focusclip

Options left unset take the recipe's value (training/config.py RECIPES).
"""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.app import app, state


@app.command("train")
def _train(
    *,
    dataset: Annotated[str, typer.Option("--dataset", help="datasets/<name> artifact to train on.")],
    model_type: Annotated[str, typer.Option("--model-type", help="clip (baseline) or focusclip.")],
    arch: Annotated[
        str, typer.Option("--arch", help="open_clip architecture, or focus-tiny / focus-small.")
    ] = ("ViT-B-16"),
    name: Annotated[
        str | None, typer.Option("--name", help="Run name (default <dataset>-<model-type>).")
    ] = None,
    recipe: Annotated[str, typer.Option("--recipe", help="paper (SGD, T=0.5) or modern (AdamW, cosine).")] = (
        "modern"
    ),
    epochs: Annotated[int | None, typer.Option("--epochs", help="Epochs (recipe default).")] = None,
    max_steps: Annotated[
        int | None,
        typer.Option("--max-steps", help="Stop after this many steps; the schedule is sized to it."),
    ] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Per-process batch size.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")] = None,
    weight_decay: Annotated[float | None, typer.Option("--weight-decay", help="Weight decay.")] = None,
    warmup: Annotated[
        float | None, typer.Option("--warmup", help="Warmup: < 1 a fraction of the steps, >= 1 a step count.")
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(
            "--temperature", help="Fixed softmax temperature (default: the recipe's; modern learns it)."
        ),
    ] = None,
    loss: Annotated[
        str | None,
        typer.Option("--loss", help="infonce (CLIP's) or ntxent (the reference code's); recipe default."),
    ] = None,
    alpha_param: Annotated[
        str | None,
        typer.Option("--alpha-param", help="FocusCLIP alpha: sigmoid (bounded) or plain (the reference's)."),
    ] = None,
    alpha_init: Annotated[float, typer.Option("--alpha-init", help="FocusCLIP alpha's initial value.")] = 0.5,
    learn_alpha: Annotated[
        bool, typer.Option("--learn-alpha/--fixed-alpha", help="Learn FocusCLIP's alpha or keep its init.")
    ] = True,
    precision: Annotated[str | None, typer.Option("--precision", help="auto, fp32, bf16 or fp16.")] = None,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the interrupted run's last checkpoint.")
    ] = (False),
    seed: Annotated[int, typer.Option("--seed", help="Seed of init, data order and augmentation.")] = 0,
    context_length: Annotated[
        int | None, typer.Option("--context-length", help="Text context in tokens.")
    ] = None,
    image_size: Annotated[
        int | None, typer.Option("--image-size", help="Training resolution in pixels.")
    ] = None,
    sentence_sampling: Annotated[
        bool,
        typer.Option(
            "--sentence-sampling/--no-sentence-sampling",
            help="Fit long descriptions by sampling whole sentences.",
        ),
    ] = True,
    heatmap_source: Annotated[
        str,
        typer.Option(
            "--heatmap-source",
            help="keypoints (render on the device), dataset (the stored heatmap images) or uniform "
            "(all ones: masked = image, a no-information control).",
        ),
    ] = "keypoints",
    pretrained: Annotated[
        str | None, typer.Option("--pretrained", help="Local open_clip checkpoint to start from.")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    split: Annotated[str, typer.Option("--split", help="Dataset split to train on.")] = "train",
    log_every: Annotated[int, typer.Option("--log-every", help="Steps between metric fetches.")] = 10,
    checkpoint_every: Annotated[
        int | None,
        typer.Option("--checkpoint-every", help="Steps between checkpoints (default: each epoch)."),
    ] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="torch CPU threads.")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing run of that name.")
    ] = False,
) -> None:
    """Train CLIP or FocusCLIP on a dataset artifact (writes runs/<name>)."""
    from training.train import TrainConfig, train

    cfg = TrainConfig(
        dataset=dataset,
        model_type=model_type,
        arch=arch,
        name=name,
        recipe=recipe,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        warmup=warmup,
        temperature=temperature,
        loss=loss,
        alpha_param=alpha_param,
        alpha_init=alpha_init,
        learn_alpha=learn_alpha,
        precision=precision,
        compile=compile,
        resume=resume,
        seed=seed,
        context_length=context_length,
        image_size=image_size,
        sentence_sampling=sentence_sampling,
        heatmap_source=heatmap_source,
        pretrained=pretrained,
        device=device,
        split=split,
        log_every=log_every,
        checkpoint_every=checkpoint_every,
        num_threads=threads,
        overwrite=overwrite,
    )
    summary = train(cfg, state.store)
    if "run_dir" in summary:
        alpha = f", alpha {summary['alpha']:.3f}" if summary["alpha"] is not None else ""
        typer.echo(
            f"runs/{summary['run']}: {summary['steps']} steps, loss {summary['first_loss']:.4f} -> "
            f"{summary['final_loss']:.4f}{alpha}, {summary['samples_per_s']:.1f} samples/s "
            f"-> {summary['run_dir']}"
        )
