"""`focus-pipeline train`: train CLIP or FocusCLIP on a datasets/<name> artifact into runs/<name>.

    focus-pipeline train --dataset mpii --model-type focusclip --arch ViT-B-16 --recipe paper
    focus-pipeline train --dataset mpii --model-type clip --max-steps 2000 --batch-size 256 --compile
    focus-pipeline train --dataset mpii --model-type focusclip --resume          # continue an interrupted run
    focus-pipeline train --dataset mpii --model-type clip --pretrained runs/base/model.pt --lock-image \
        --lr 1e-4 --zeroshot-every 50 --zeroshot-tasks stanford40-action --data-root ~/eval-data   # fine-tune
    focus-pipeline train --dataset mpii --model-type focusclip --arch FocusCLIP-ViT-B-16-BERT --recipe paper \
        --pretrained-towers                         # the paper's model: ImageNet ViT-B/16 + BERT from the hub
    torchrun --nproc_per_node 8 --no-python focus-pipeline train --dataset mpii --model-type focusclip

Options left unset take the recipe's value (training/config.py RECIPES).
"""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline import hub
from pipeline.cli.app import PanelCommand, app, state

# --help groups the options into these panels, in the order of the command's parameters.
DATA = "Data"
MODEL = "Model and weights"
FOCUS = "FocusCLIP"
RECIPE = "Recipe and schedule"
RUN = "Run control"
OUTPUT = "Output and logging"

# The command's options, one alias each, so the command itself reads as option -> config -> call.
Dataset = Annotated[
    str, typer.Option("--dataset", help="datasets/<name> artifact to train on.", rich_help_panel=DATA)
]
ModelType = Annotated[
    str, typer.Option("--model-type", help="clip (baseline) or focusclip.", rich_help_panel=MODEL)
]
Arch = Annotated[
    str,
    typer.Option(
        "--arch", help="open_clip architecture, or focus-tiny / focus-small.", rich_help_panel=MODEL
    ),
]
Name = Annotated[
    str | None,
    typer.Option("--name", help="Run name (default <dataset>-<model-type>).", rich_help_panel=OUTPUT),
]
Recipe = Annotated[
    str,
    typer.Option("--recipe", help="paper (SGD, T=0.5) or modern (AdamW, cosine).", rich_help_panel=RECIPE),
]
Epochs = Annotated[
    int | None, typer.Option("--epochs", help="Epochs (recipe default).", rich_help_panel=RECIPE)
]
MaxSteps = Annotated[
    int | None,
    typer.Option(
        "--max-steps", help="Stop after this many steps; the schedule is sized to it.", rich_help_panel=RECIPE
    ),
]
BatchSize = Annotated[
    int | None, typer.Option("--batch-size", help="Per-process batch size.", rich_help_panel=RECIPE)
]
Lr = Annotated[float | None, typer.Option("--lr", help="Peak learning rate.", rich_help_panel=RECIPE)]
WeightDecay = Annotated[
    float | None, typer.Option("--weight-decay", help="Weight decay.", rich_help_panel=RECIPE)
]
Warmup = Annotated[
    float | None,
    typer.Option(
        "--warmup", help="Warmup: < 1 a fraction of the steps, >= 1 a step count.", rich_help_panel=RECIPE
    ),
]
Temperature = Annotated[
    float | None,
    typer.Option(
        "--temperature",
        help="Fixed softmax temperature (default: the recipe's; modern learns it).",
        rich_help_panel=RECIPE,
    ),
]
Loss = Annotated[
    str | None,
    typer.Option(
        "--loss",
        help="infonce (CLIP's) or ntxent (the reference code's); recipe default.",
        rich_help_panel=RECIPE,
    ),
]
AlphaParam = Annotated[
    str | None,
    typer.Option(
        "--alpha-param",
        help="FocusCLIP alpha: sigmoid (bounded) or plain (the reference's).",
        rich_help_panel=FOCUS,
    ),
]
AlphaInit = Annotated[
    float, typer.Option("--alpha-init", help="FocusCLIP alpha's initial value.", rich_help_panel=FOCUS)
]
LearnAlpha = Annotated[
    bool,
    typer.Option(
        "--learn-alpha/--fixed-alpha", help="Learn FocusCLIP's alpha or keep its init.", rich_help_panel=FOCUS
    ),
]
Precision = Annotated[
    str | None, typer.Option("--precision", help="auto, fp32, bf16 or fp16.", rich_help_panel=RUN)
]
CompileOpt = Annotated[bool, typer.Option("--compile", help="torch.compile the model.", rich_help_panel=RUN)]
Resume = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Continue the run's last checkpoint: an interrupted run, or a finished one given more steps.",
        rich_help_panel=RUN,
    ),
]
Seed = Annotated[
    int, typer.Option("--seed", help="Seed of init, data order and augmentation.", rich_help_panel=RECIPE)
]
ContextLength = Annotated[
    int | None, typer.Option("--context-length", help="Text context in tokens.", rich_help_panel=DATA)
]
ImageSize = Annotated[
    int | None, typer.Option("--image-size", help="Training resolution in pixels.", rich_help_panel=DATA)
]
SentenceSampling = Annotated[
    bool,
    typer.Option(
        "--sentence-sampling/--no-sentence-sampling",
        help="Fit long descriptions by sampling whole sentences.",
        rich_help_panel=DATA,
    ),
]
HeatmapSource = Annotated[
    str | None,
    typer.Option(
        "--heatmap-source",
        help="keypoints (render on the device), dataset (the stored heatmap images), uniform "
        "(all ones: masked = image, a no-information control) or shuffled (each image gets the keypoint "
        "heatmap of the next one in its batch: dimmed in the wrong place, a no-location control) "
        "[default: dataset for a dataset built with --roi box or mask, else keypoints].",
        rich_help_panel=FOCUS,
    ),
]
MaskedView = Annotated[
    str,
    typer.Option(
        "--masked-view",
        help="FocusCLIP's masked view: shared (the image itself, masked; the paper's) or independent "
        "(its own crop, flip and colour jitter).",
        rich_help_panel=FOCUS,
    ),
]
LossWeights = Annotated[
    tuple[float, float, float],
    typer.Option(
        "--loss-weights",
        metavar="MI MT IT",
        help="Weights of FocusCLIP's L(masked,image), L(masked,text), L(image,text); 0 leaves a term "
        "untrained.",
        rich_help_panel=FOCUS,
    ),
]
FocusMode = Annotated[
    str,
    typer.Option(
        "--focus-mode",
        help="pixels (the heatmap masks the pixels; the paper's) or pooling (an additive log-prior on the "
        "image tower's attention pooling; ModifiedResNet and class-token ViT towers).",
        rich_help_panel=FOCUS,
    ),
]
Pretrained = Annotated[
    str | None,
    typer.Option(
        "--pretrained",
        help="CLIP weights to start from: a local file, an open_clip tag of --arch (e.g. openai), "
        "local-dir:DIR or hf-hub:ORG/REPO (these bring their own architecture).",
        rich_help_panel=MODEL,
    ),
]
PretrainedTowers = Annotated[
    bool,
    typer.Option(
        "--pretrained-towers",
        help="Start timm / Hugging Face towers from their base weights on the hub (the paper's "
        "ImageNet ViT-B/16 and bert-base-uncased).",
        rich_help_panel=MODEL,
    ),
]
ImageTower = Annotated[
    str | None,
    typer.Option(
        "--image-tower",
        help="Offline: timm weights (file or folder) for the image tower.",
        rich_help_panel=MODEL,
    ),
]
TextTower = Annotated[
    str | None,
    typer.Option(
        "--text-tower",
        help="Offline: a Hugging Face model folder (save_pretrained) for the text tower.",
        rich_help_panel=MODEL,
    ),
]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.", rich_help_panel=RUN)]
Split = Annotated[str, typer.Option("--split", help="Dataset split to train on.", rich_help_panel=DATA)]
LogEvery = Annotated[
    int, typer.Option("--log-every", help="Steps between metric fetches.", rich_help_panel=OUTPUT)
]
CheckpointEvery = Annotated[
    int | None,
    typer.Option(
        "--checkpoint-every", help="Steps between checkpoints (default: each epoch).", rich_help_panel=RUN
    ),
]
Threads = Annotated[int | None, typer.Option("--threads", help="torch CPU threads.", rich_help_panel=RUN)]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Replace an existing run of that name.", rich_help_panel=OUTPUT)
]
PushToHub = Annotated[
    str | None,
    typer.Option(
        "--push-to-hub",
        metavar="REPO_ID",
        help="Then publish the run to this Hub model repo (HF_TOKEN).",
        rich_help_panel=OUTPUT,
    ),
]
Private = Annotated[
    bool, typer.Option("--private", help="Create the Hub repo as private.", rich_help_panel=OUTPUT)
]
LockImage = Annotated[
    bool,
    typer.Option(
        "--lock-image",
        help="LiT-style: freeze the image tower (its norm statistics too); see --unlock-last.",
        rich_help_panel=MODEL,
    ),
]
LockText = Annotated[
    bool, typer.Option("--lock-text", help="Freeze the text tower; see --unlock-last.", rich_help_panel=MODEL)
]
UnlockLast = Annotated[
    int,
    typer.Option(
        "--unlock-last",
        help="With --lock-image/--lock-text: the last N blocks (and the head) still train.",
        rich_help_panel=MODEL,
    ),
]
ZeroshotEvery = Annotated[
    int | None,
    typer.Option(
        "--zeroshot-every",
        help="Zero-shot evaluation every N steps and at the last (rank 0; metrics.jsonl, plot, "
        "runs/<name>/zeroshot/ in CLIP_benchmark's format).",
        rich_help_panel=OUTPUT,
    ),
]
ZeroshotTasks = Annotated[
    list[str] | None,
    typer.Option(
        "--zeroshot-tasks",
        help="Task ids for --zeroshot-every (repeat or comma-separate; `eval --list-tasks` lists them).",
        rich_help_panel=OUTPUT,
    ),
]
DataRoot = Annotated[
    str,
    typer.Option(
        "--data-root",
        envvar="FOCUS_EVAL_DATA",
        help="Evaluation datasets' folder for --zeroshot-tasks (as `eval --data-root`).",
        rich_help_panel=OUTPUT,
    ),
]


DataMode = Annotated[
    str,
    typer.Option(
        "--data",
        help="Where batches come from: cache (decode once into a memory-mapped cache per node), stream "
        "(read the Parquet shards as training goes) or auto (the cache unless it would not fit its disk).",
        rich_help_panel=DATA,
    ),
]
DataUrl = Annotated[
    str | None,
    typer.Option(
        "--data-url",
        help="Stream the dataset's shards from this fsspec URL (hf://datasets/ORG/NAME, s3://...) instead "
        "of the store's folder; datasets/<name>/meta.json must still be in the store.",
        rich_help_panel=DATA,
    ),
]
CacheDir = Annotated[
    str | None,
    typer.Option(
        "--cache-dir",
        help="Decoded caches (default: $FOCUS_CACHE/train-cache, else the store's cache).",
        rich_help_panel=DATA,
    ),
]
Workers = Annotated[
    int,
    typer.Option(
        "--workers", help="DataLoader workers of --data stream (resume with the same).", rich_help_panel=DATA
    ),
]
ReportTo = Annotated[
    list[str] | None,
    typer.Option(
        "--report-to",
        help="Live metrics besides metrics.jsonl: tensorboard, wandb (or both).",
        rich_help_panel=OUTPUT,
    ),
]


@app.command("train", cls=PanelCommand)
def _train(
    *,
    dataset: Dataset,
    split: Split = "train",
    data: DataMode = "auto",
    data_url: DataUrl = None,
    cache_dir: CacheDir = None,
    workers: Workers = 2,
    image_size: ImageSize = None,
    context_length: ContextLength = None,
    sentence_sampling: SentenceSampling = True,
    model_type: ModelType,
    arch: Arch = "ViT-B-16",
    pretrained: Pretrained = None,
    pretrained_towers: PretrainedTowers = False,
    image_tower: ImageTower = None,
    text_tower: TextTower = None,
    heatmap_source: HeatmapSource = None,
    masked_view: MaskedView = "shared",
    loss_weights: LossWeights = (1.0, 1.0, 1.0),
    focus_mode: FocusMode = "pixels",
    alpha_param: AlphaParam = None,
    alpha_init: AlphaInit = 0.5,
    learn_alpha: LearnAlpha = True,
    recipe: Recipe = "modern",
    epochs: Epochs = None,
    max_steps: MaxSteps = None,
    batch_size: BatchSize = None,
    lr: Lr = None,
    weight_decay: WeightDecay = None,
    warmup: Warmup = None,
    temperature: Temperature = None,
    loss: Loss = None,
    seed: Seed = 0,
    device: Device = "auto",
    precision: Precision = None,
    compile: CompileOpt = False,
    num_threads: Threads = None,
    resume: Resume = False,
    checkpoint_every: CheckpointEvery = None,
    name: Name = None,
    overwrite: Overwrite = False,
    log_every: LogEvery = 10,
    report_to: ReportTo = None,
    push_to_hub: PushToHub = None,
    private: Private = False,
    lock_image: LockImage = False,
    lock_text: LockText = False,
    unlock_last: UnlockLast = 0,
    zeroshot_every: ZeroshotEvery = None,
    zeroshot_tasks: ZeroshotTasks = None,
    data_root: DataRoot = "eval-data",
) -> None:
    """Train CLIP or FocusCLIP on a dataset artifact (writes runs/<name>)."""
    options = dict(locals())  # every option but the two push ones is the TrainConfig field of its name
    push_to_hub, private = options.pop("push_to_hub"), options.pop("private")
    options["zeroshot_tasks"] = tuple(
        t.strip() for v in zeroshot_tasks or [] for t in v.split(",") if t.strip()
    )
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
