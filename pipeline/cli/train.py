"""`focus-pipeline train`: train CLIP or FocusCLIP on a datasets/<name> artifact into runs/<name>.

    focus-pipeline train --dataset mpii --model-type focusclip --arch ViT-B-16 --recipe paper
    focus-pipeline train --dataset mpii --model-type clip --max-steps 2000 --batch-size 256 --compile
    focus-pipeline train --dataset mpii --model-type focusclip --resume          # continue an interrupted run
    focus-pipeline train --dataset mpii --model-type focusclip --arch FocusCLIP-ViT-B-16-BERT --recipe paper \
        --pretrained-towers                         # the paper's model: ImageNet ViT-B/16 + BERT from the hub
    torchrun --nproc_per_node 8 --no-python focus-pipeline train --dataset mpii --model-type focusclip

Options left unset take the recipe's value (training/config.py RECIPES).
"""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline import hub
from pipeline.cli.app import app, state

# The command's options, one alias each, so the command itself reads as option -> config -> call.
Dataset = Annotated[str, typer.Option("--dataset", help="datasets/<name> artifact to train on.")]
ModelType = Annotated[str, typer.Option("--model-type", help="clip (baseline) or focusclip.")]
Arch = Annotated[str, typer.Option("--arch", help="open_clip architecture, or focus-tiny / focus-small.")]
Name = Annotated[str | None, typer.Option("--name", help="Run name (default <dataset>-<model-type>).")]
Recipe = Annotated[str, typer.Option("--recipe", help="paper (SGD, T=0.5) or modern (AdamW, cosine).")]
Epochs = Annotated[int | None, typer.Option("--epochs", help="Epochs (recipe default).")]
MaxSteps = Annotated[
    int | None,
    typer.Option("--max-steps", help="Stop after this many steps; the schedule is sized to it."),
]
BatchSize = Annotated[int | None, typer.Option("--batch-size", help="Per-process batch size.")]
Lr = Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")]
WeightDecay = Annotated[float | None, typer.Option("--weight-decay", help="Weight decay.")]
Warmup = Annotated[
    float | None, typer.Option("--warmup", help="Warmup: < 1 a fraction of the steps, >= 1 a step count.")
]
Temperature = Annotated[
    float | None,
    typer.Option(
        "--temperature", help="Fixed softmax temperature (default: the recipe's; modern learns it)."
    ),
]
Loss = Annotated[
    str | None,
    typer.Option("--loss", help="infonce (CLIP's) or ntxent (the reference code's); recipe default."),
]
AlphaParam = Annotated[
    str | None,
    typer.Option("--alpha-param", help="FocusCLIP alpha: sigmoid (bounded) or plain (the reference's)."),
]
AlphaInit = Annotated[float, typer.Option("--alpha-init", help="FocusCLIP alpha's initial value.")]
LearnAlpha = Annotated[
    bool, typer.Option("--learn-alpha/--fixed-alpha", help="Learn FocusCLIP's alpha or keep its init.")
]
Precision = Annotated[str | None, typer.Option("--precision", help="auto, fp32, bf16 or fp16.")]
CompileOpt = Annotated[bool, typer.Option("--compile", help="torch.compile the model.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the interrupted run's last checkpoint.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of init, data order and augmentation.")]
ContextLength = Annotated[int | None, typer.Option("--context-length", help="Text context in tokens.")]
ImageSize = Annotated[int | None, typer.Option("--image-size", help="Training resolution in pixels.")]
SentenceSampling = Annotated[
    bool,
    typer.Option(
        "--sentence-sampling/--no-sentence-sampling",
        help="Fit long descriptions by sampling whole sentences.",
    ),
]
HeatmapSource = Annotated[
    str | None,
    typer.Option(
        "--heatmap-source",
        help="keypoints (render on the device), dataset (the stored heatmap images) or uniform "
        "(all ones: masked = image, a no-information control) [default: dataset for a dataset built "
        "with --roi box or mask, else keypoints].",
    ),
]
MaskedView = Annotated[
    str,
    typer.Option(
        "--masked-view",
        help="FocusCLIP's masked view: shared (the image itself, masked; the paper's) or independent "
        "(its own crop, flip and colour jitter).",
    ),
]
LossWeights = Annotated[
    tuple[float, float, float],
    typer.Option(
        "--loss-weights",
        metavar="MI MT IT",
        help="Weights of FocusCLIP's L(masked,image), L(masked,text), L(image,text); 0 leaves a term "
        "untrained.",
    ),
]
FocusMode = Annotated[
    str,
    typer.Option(
        "--focus-mode",
        help="pixels (the heatmap masks the pixels; the paper's) or pooling (an additive log-prior on the "
        "image tower's attention pooling; ModifiedResNet and class-token ViT towers).",
    ),
]
Pretrained = Annotated[
    str | None,
    typer.Option(
        "--pretrained",
        help="CLIP weights to start from: a local file, an open_clip tag of --arch (e.g. openai), "
        "local-dir:DIR or hf-hub:ORG/REPO (these bring their own architecture).",
    ),
]
PretrainedTowers = Annotated[
    bool,
    typer.Option(
        "--pretrained-towers",
        help="Start timm / Hugging Face towers from their base weights on the hub (the paper's "
        "ImageNet ViT-B/16 and bert-base-uncased).",
    ),
]
ImageTower = Annotated[
    str | None,
    typer.Option("--image-tower", help="Offline: timm weights (file or folder) for the image tower."),
]
TextTower = Annotated[
    str | None,
    typer.Option(
        "--text-tower", help="Offline: a Hugging Face model folder (save_pretrained) for the text tower."
    ),
]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
Split = Annotated[str, typer.Option("--split", help="Dataset split to train on.")]
LogEvery = Annotated[int, typer.Option("--log-every", help="Steps between metric fetches.")]
CheckpointEvery = Annotated[
    int | None,
    typer.Option("--checkpoint-every", help="Steps between checkpoints (default: each epoch)."),
]
Threads = Annotated[int | None, typer.Option("--threads", help="torch CPU threads.")]
DataMode = Annotated[
    str,
    typer.Option(
        "--data",
        help="Where batches come from: cache (decode once into a memory-mapped cache per node), stream "
        "(read the Parquet shards as training goes) or auto (the cache unless it would not fit its disk).",
    ),
]
DataUrl = Annotated[
    str | None,
    typer.Option(
        "--data-url",
        help="Stream the dataset's shards from this fsspec URL (hf://datasets/ORG/NAME, s3://...) instead "
        "of the store's folder; datasets/<name>/meta.json must still be in the store.",
    ),
]
CacheDir = Annotated[
    str | None,
    typer.Option(
        "--cache-dir", help="Decoded caches (default: $FOCUS_CACHE/train-cache, else the store's cache)."
    ),
]
Workers = Annotated[
    int, typer.Option("--workers", help="DataLoader workers of --data stream (resume with the same).")
]
ReportTo = Annotated[
    list[str] | None,
    typer.Option("--report-to", help="Live metrics besides metrics.jsonl: tensorboard, wandb (or both)."),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing run of that name.")]
PushToHub = Annotated[
    str | None,
    typer.Option(
        "--push-to-hub", metavar="REPO_ID", help="Then publish the run to this Hub model repo (HF_TOKEN)."
    ),
]
Private = Annotated[bool, typer.Option("--private", help="Create the Hub repo as private.")]


@app.command("train")
def _train(
    *,
    dataset: Dataset,
    model_type: ModelType,
    arch: Arch = "ViT-B-16",
    name: Name = None,
    recipe: Recipe = "modern",
    epochs: Epochs = None,
    max_steps: MaxSteps = None,
    batch_size: BatchSize = None,
    lr: Lr = None,
    weight_decay: WeightDecay = None,
    warmup: Warmup = None,
    temperature: Temperature = None,
    loss: Loss = None,
    alpha_param: AlphaParam = None,
    alpha_init: AlphaInit = 0.5,
    learn_alpha: LearnAlpha = True,
    precision: Precision = None,
    compile: CompileOpt = False,
    resume: Resume = False,
    seed: Seed = 0,
    context_length: ContextLength = None,
    image_size: ImageSize = None,
    sentence_sampling: SentenceSampling = True,
    heatmap_source: HeatmapSource = None,
    masked_view: MaskedView = "shared",
    loss_weights: LossWeights = (1.0, 1.0, 1.0),
    focus_mode: FocusMode = "pixels",
    pretrained: Pretrained = None,
    pretrained_towers: PretrainedTowers = False,
    image_tower: ImageTower = None,
    text_tower: TextTower = None,
    device: Device = "auto",
    split: Split = "train",
    log_every: LogEvery = 10,
    checkpoint_every: CheckpointEvery = None,
    num_threads: Threads = None,
    data: DataMode = "auto",
    data_url: DataUrl = None,
    cache_dir: CacheDir = None,
    workers: Workers = 2,
    report_to: ReportTo = None,
    overwrite: Overwrite = False,
    push_to_hub: PushToHub = None,
    private: Private = False,
) -> None:
    """Train CLIP or FocusCLIP on a dataset artifact (writes runs/<name>)."""
    options = dict(locals())  # every option but the two push ones is the TrainConfig field of its name
    push_to_hub, private = options.pop("push_to_hub"), options.pop("private")
    options["report_to"] = tuple(options["report_to"] or ())
    from training.train import TrainConfig, train

    cfg = TrainConfig(**options)
    token = hub.hub_token(push_to_hub, flag="--push-to-hub") if push_to_hub else None  # before training
    summary = train(cfg, state.store)
    if "run_dir" in summary:  # the main process (of a torchrun job) reports and publishes
        _report(summary)
        if push_to_hub:
            from training.publish import push_run

            url = push_run(state.store, summary["run"], push_to_hub, token=token, private=private)
            typer.echo(f"pushed to {url}")


def _report(summary: dict) -> None:
    alpha = f", alpha {summary['alpha']:.3f}" if summary["alpha"] is not None else ""
    typer.echo(
        f"runs/{summary['run']}: {summary['steps']} steps, loss {summary['first_loss']:.4f} -> "
        f"{summary['final_loss']:.4f}{alpha}, {summary['samples_per_s']:.1f} samples/s "
        f"-> {summary['run_dir']}"
    )
