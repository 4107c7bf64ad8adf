"""Training configuration: one typed dataclass, and the recipes as plain data that fill what is left unset.

    cfg = TrainConfig(dataset="mpii", model_type="focusclip", recipe="paper", epochs=2).resolved()

Every recipe value is a default only: a field set on the TrainConfig (CLI option, or a keyword) wins.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.errors import PipelineError
from pipeline.store import Recorded, recorded, run_only
from training.live_metrics import parse_report_to

ModelType = Literal["clip", "focusclip"]

# The paper's reference recipe (DESIGN.md: SGD 5e-4 momentum 0.9, batch 32, 64 epochs, NT-Xent at a fixed
# temperature 0.5, plain alpha, grad clip 1.0, 224 px squashed, no augmentation, ToTensor pixels without
# mean/std normalisation, text context 512) and a modern one for training from scratch at small scale:
# AdamW, a cosine schedule whose warmup is a fraction of THIS run's steps (open_clip's 10,000-step default
# is longer than a whole small run), weight decay, learnable temperature, CLIP's InfoNCE, a bounded alpha,
# random square crops of 80-100% of the squashed image, the architecture's mean/std, bf16 on GPU.
# Both squash (never centre-crop) at load time, and eval uses the run's recorded preprocessing
# (training/preprocess.py).
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {
        "optimizer": "sgd",
        "lr": 5e-4,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "batch_size": 32,
        "epochs": 64,
        "schedule": "constant",
        "warmup": 0.0,
        "temperature": 0.5,
        "loss": "ntxent",
        "alpha_param": "plain",
        "grad_clip": 1.0,
        "image_size": 224,
        "context_length": 512,
        "crop_scale": (1.0, 1.0),  # no augmentation
        "cache_scale": 1.0,
        "normalize": "none",
        "interpolation": "bilinear",  # the reference's transforms.Resize((224, 224)) default
        "precision": "fp32",
    },
    "modern": {
        "optimizer": "adamw",
        "lr": 1e-3,
        "momentum": 0.9,
        "weight_decay": 0.1,
        "batch_size": 64,
        "epochs": 32,
        "schedule": "cosine",
        "warmup": 0.05,
        "temperature": None,  # learnable, open_clip's init 1/0.07
        "loss": "infonce",
        "alpha_param": "sigmoid",
        "grad_clip": 1.0,
        "image_size": None,  # the architecture's own
        "context_length": None,
        "crop_scale": (0.8, 1.0),  # random crop area fraction, image and heatmap together
        "cache_scale": 1.125,  # decoded cache side = image_size * this, so crops have pixels to spare
        "normalize": "arch",
        "interpolation": "bicubic",  # open_clip's
        "precision": "auto",  # bf16 autocast on CUDA, fp32 on CPU
    },
}


# The FocusCLIP variant settings at their defaults (the method as published): a run that leaves them there
# trains exactly as before they existed.
FOCUS_VARIANT_DEFAULTS: dict[str, Any] = {
    "masked_view": "shared",
    "loss_weights": (1.0, 1.0, 1.0),
    "focus_mode": "pixels",
}
# What only FocusCLIP reads, so a CLIP run keeps these defaults (and no heatmap_source control: uniform and
# shuffled change the masked view only).
FOCUS_ONLY_DEFAULTS: dict[str, Any] = {
    **FOCUS_VARIANT_DEFAULTS, "alpha_init": 0.5, "learn_alpha": True, "heatmap_parts": False,
}  # fmt: skip


def plain(value: Any) -> Any:
    """A config value as JSON gives it back (tuples as lists), for comparing with a recorded one."""
    return list(value) if isinstance(value, tuple | list) else value


@dataclass(slots=True)
class TrainConfig:
    dataset: str
    model_type: ModelType = "focusclip"
    arch: str = "ViT-B-16"
    name: str | None = None  # runs/<name>; default "<dataset>-<model_type>"
    recipe: str = "modern"
    # ---- set by the recipe unless given -------------------------------------------------------------
    optimizer: Literal["adamw", "sgd"] | None = None
    lr: float | None = None
    momentum: float | None = None  # SGD momentum
    weight_decay: float | None = None
    batch_size: int | None = None  # per process
    epochs: int | None = None
    schedule: Literal["cosine", "constant"] | None = None
    warmup: float | None = None  # < 1: a fraction of the run's steps; >= 1: a number of steps
    temperature: float | None = None  # fixed softmax temperature; None with learn_temperature: learnable
    loss: Literal["infonce", "ntxent"] | None = None  # pair loss of each term (training/losses.py)
    alpha_param: Literal["sigmoid", "plain"] | None = None  # FocusCLIP's alpha: bounded or as the reference
    grad_clip: float | None = None  # max global grad norm; 0 disables
    image_size: int | None = None
    context_length: int | None = None
    crop_scale: tuple[float, float] | None = None  # random crop area fraction; (1, 1): no crop
    cache_scale: float | None = None
    normalize: Literal["arch", "none"] | None = None  # pixel mean/std: the architecture's, or none ([0, 1])
    interpolation: Literal["bicubic", "bilinear"] | None = None  # of the squash resize
    precision: Literal["auto", "fp32", "bf16", "fp16"] | None = None
    # ---- not recipe-dependent ---------------------------------------------------------------------
    max_steps: int | None = None  # stop after this many optimizer steps (the schedule is sized to it)
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    learn_temperature: bool | None = None  # default: learnable iff the recipe's temperature is None
    alpha_init: float = 0.5
    learn_alpha: bool = True  # False: alpha stays at alpha_init (an ablation)
    sentence_sampling: bool = True  # fit long descriptions to the context by sampling whole sentences
    all_descriptions: bool = True  # each step picks one of the image's descriptions at random
    # "uniform": an all-ones heatmap, so masked == image (same compute, no location information): the
    # control that tells whether a FocusCLIP gain comes from where the person is. None: from the dataset,
    # "dataset" when it was built with --roi box or mask, else "keypoints" (training.data.heatmap_source_for).
    # "shuffled": each image gets the keypoint heatmap of the next image in its batch (the masked view is
    # dimmed as usual, in the wrong place): the control that keeps everything but the location.
    heatmap_source: Literal["keypoints", "dataset", "uniform", "shuffled"] | None = None
    heatmap_parts: bool = False  # one blob per body part instead of per person
    # ---- FocusCLIP variants (benchmarks/README.md, the pre-registered study); the defaults are the paper's.
    # "independent": the masked view is cropped, flipped and colour-jittered on its own (training/data.py),
    # so L(masked, image) is an invariance task rather than a brightness match.
    masked_view: Literal["shared", "independent"] = "shared"
    # weights of L(masked, image), L(masked, text), L(image, text); a 0 leaves the term logged but untrained
    loss_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    # "pooling": the masked view keeps its pixels and the heatmap becomes an additive log-prior on the image
    # tower's attention pooling instead (training/model.py); inference never sees a heatmap either way.
    focus_mode: Literal["pixels", "pooling"] = "pixels"
    # Horizontal flips are off by default: the descriptions name left/right arms and people, and a
    # mirrored image would contradict its text.
    hflip: bool = False
    split: str = "train"
    seed: int = 0
    device: str = run_only("auto")  # auto | cpu | cuda | cuda:N
    compile: bool = False
    channels_last: bool | None = None  # default: on CUDA
    pretrained: str | None = None  # CLIP weights: a local file, an open_clip tag, local-dir:/hf-hub: ids
    pretrained_towers: bool = False  # timm / Hugging Face towers' base weights from the hub
    image_tower: str | None = None  # offline: a timm checkpoint file (or folder) for the image tower
    text_tower: str | None = None  # offline: a Hugging Face model folder for the text tower
    resume: bool = run_only(False)
    overwrite: bool = run_only(False)
    log_every: int = run_only(10)  # steps between host syncs (metrics are still written for every step)
    checkpoint_every: int | None = run_only(None)  # steps; default: once per epoch
    num_threads: int | None = run_only(None)  # torch CPU threads
    # ---- where the batches come from (docs/scaling.md) ----------------------------------------------
    # cache: the node's decoded, memory-mapped cache (training/cache.py); stream: read from the Parquet
    # shards (training/stream.py); auto: the cache unless it would not fit its disk
    data: Literal["auto", "cache", "stream"] = "auto"
    data_url: str | None = None  # stream the shards from this fsspec URL (hf://, s3://) instead of the store
    cache_dir: str | None = run_only(
        None
    )  # decoded caches (default $FOCUS_CACHE/train-cache, else the store's)
    workers: int = (
        2  # stream mode's DataLoader workers (part of the stream's order: --resume refuses another)
    )
    report_to: tuple[str, ...] = run_only(())  # live metrics besides metrics.jsonl: tensorboard and/or wandb
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes recorded in meta.json
    # ---- fine-tuning on small data (training/locking.py, training/zeroshot_eval.py) --------------------
    lock_image: bool = False  # LiT: the image tower's weights frozen and its norm statistics fixed
    lock_text: bool = False
    unlock_last: int = 0  # the last N blocks (and the head) of each locked tower still train
    zeroshot_every: int | None = None  # steps between zero-shot evaluations (and one at the last step)
    zeroshot_tasks: tuple[str, ...] = ()  # evaluation task ids (evaluation/tasks.py)
    data_root: str = "eval-data"  # the evaluation datasets' folder, as `eval --data-root`

    def resolved(self) -> TrainConfig:
        """A copy with every recipe-owned field filled in and the values checked."""
        if self.recipe not in RECIPES:
            raise PipelineError(f"unknown recipe {self.recipe!r} (one of {', '.join(RECIPES)})")
        cfg = dataclasses.replace(self)
        for key, value in RECIPES[self.recipe].items():
            if getattr(cfg, key) is None:
                setattr(cfg, key, value)
        if cfg.learn_temperature is None:
            cfg.learn_temperature = cfg.temperature is None
        if cfg.name is None:
            cfg.name = f"{cfg.dataset}-{cfg.model_type}"
        cfg.betas = tuple(cfg.betas)
        cfg.crop_scale = tuple(cfg.crop_scale)
        cfg.loss_weights = tuple(float(w) for w in cfg.loss_weights)
        cfg.report_to = parse_report_to(cfg.report_to)
        cfg.check()
        cfg.check_fine_tuning()
        return cfg

    def check(self) -> None:
        def bad(msg: str) -> PipelineError:
            return PipelineError(f"train config: {msg}")

        if self.model_type not in ("clip", "focusclip"):
            raise bad(f"model_type must be clip or focusclip, not {self.model_type!r}")
        if self.optimizer not in ("adamw", "sgd"):
            raise bad(f"optimizer must be adamw or sgd, not {self.optimizer!r}")
        if self.schedule not in ("cosine", "constant"):
            raise bad(f"schedule must be cosine or constant, not {self.schedule!r}")
        if self.loss not in ("infonce", "ntxent"):
            raise bad(f"loss must be infonce or ntxent, not {self.loss!r}")
        if self.alpha_param not in ("sigmoid", "plain"):
            raise bad(f"alpha_param must be sigmoid or plain, not {self.alpha_param!r}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise bad(f"precision must be auto, fp32, bf16 or fp16, not {self.precision!r}")
        if self.lr <= 0 or self.batch_size < 1 or self.epochs < 1:
            raise bad("lr, batch_size and epochs must be positive")
        if self.max_steps is not None and self.max_steps < 1:
            raise bad("max_steps must be >= 1")
        if self.temperature is None and not self.learn_temperature:
            raise bad("a fixed temperature needs a value (temperature=...)")
        if self.temperature is not None and self.temperature <= 0:
            raise bad("temperature must be > 0")
        if not 0.0 <= self.alpha_init <= 1.0:
            raise bad("alpha_init must be in [0, 1]")
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise bad("crop_scale must satisfy 0 < min <= max <= 1")
        if self.log_every < 1:
            raise bad("log_every must be >= 1")
        if self.image_size is not None and self.image_size < 16:
            raise bad(f"image_size {self.image_size}: must be >= 16 (one ViT patch)")
        if self.context_length is not None and self.context_length < 2:
            raise bad(f"context_length {self.context_length}: must be >= 2 (start and end tokens)")
        if self.cache_scale < 1.0:
            raise bad("cache_scale must be >= 1")
        if self.normalize not in ("arch", "none"):
            raise bad(f"normalize must be arch or none, not {self.normalize!r}")
        if self.interpolation not in ("bicubic", "bilinear"):
            raise bad(f"interpolation must be bicubic or bilinear, not {self.interpolation!r}")
        if self.heatmap_source not in ("keypoints", "dataset", "uniform", "shuffled", None):
            raise bad(
                "heatmap_source must be keypoints, dataset, uniform or shuffled (or unset: from the dataset)"
            )
        if self.masked_view not in ("shared", "independent"):
            raise bad(f"masked_view must be shared or independent, not {self.masked_view!r}")
        if self.focus_mode not in ("pixels", "pooling"):
            raise bad(f"focus_mode must be pixels or pooling, not {self.focus_mode!r}")
        weights = self.loss_weights
        if len(weights) != 3 or not all(math.isfinite(w) and w >= 0 for w in weights) or not any(weights):
            raise bad(f"loss_weights must be 3 finite values >= 0, not all 0 (got {list(weights)})")
        if self.data not in ("auto", "cache", "stream"):
            raise bad(f"data must be auto, cache or stream, not {self.data!r}")
        if self.data_url and self.data == "cache":
            raise bad("data_url is streamed (--data stream or auto), not decoded into a cache")
        if self.workers < 0:
            raise bad("workers must be >= 0")
        if self.model_type == "clip":  # a setting CLIP has no use for would be recorded as if it had acted
            changed = [k for k, v in FOCUS_ONLY_DEFAULTS.items() if plain(getattr(self, k)) != plain(v)]
            if self.heatmap_source in ("uniform", "shuffled"):
                changed.append("heatmap_source")
            if changed:
                what = ", ".join(changed)
                raise bad(f"{what} change(s) FocusCLIP's masked view, alpha or loss; a CLIP run has none")

    def recorded(self) -> Recorded:
        """The config as a run's meta.json records it (of the resolved config: what the run trained with).
        device, threads, logging and checkpoint cadence, resume and overwrite are run-only."""
        return recorded(self)

    def to_dict(self) -> dict[str, Any]:
        """Every field as it is: a checkpoint's config (what --resume compares)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def check_fine_tuning(self) -> None:
        """The locking and zero-shot options (each needs its partner); zeroshot_tasks as a tuple."""
        self.zeroshot_tasks = tuple(self.zeroshot_tasks)
        if self.unlock_last < 0:
            raise PipelineError("train config: unlock_last must be >= 0")
        if self.unlock_last and not (self.lock_image or self.lock_text):
            raise PipelineError(
                "--unlock-last applies to a locked tower: add --lock-image and/or --lock-text"
            )
        if self.zeroshot_every is not None and self.zeroshot_every < 1:
            raise PipelineError("train config: zeroshot_every must be >= 1")
        if self.zeroshot_every and not self.zeroshot_tasks:
            raise PipelineError("--zeroshot-every needs the tasks to evaluate: --zeroshot-tasks ID[,ID...]")
        if self.zeroshot_tasks and not self.zeroshot_every:
            raise PipelineError("--zeroshot-tasks needs --zeroshot-every N (steps between evaluations)")
