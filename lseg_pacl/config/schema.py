"""The experiment schema: every config key, its type and a neutral default.

Defaults here carry no recipe: a value that belongs to a method's or a paper's recipe (a backbone, a learning
rate, an augmentation, an evaluation protocol) is stated by the experiment that uses it (experiments/*.yaml).
Keys a command cannot run without default to None and are required by that command (``config/validation.py``).
Values that define a method as this project implements it (PACL's temperature, LSeg's official constants) stay
here; docs/methods.md says why each was chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ClipConfig:
    """Which open_clip model and weights; ``pretrained`` is a tag (e.g. openai), a local file, or null
    (random)."""

    name: str | None = None  # an open_clip model name (required)
    pretrained: str | None = None
    image_size: int | None = None  # None: the model config's own size
    # The last vision block for dense (per-patch) features: plain (CLIP) or a training-free variant
    # (models/last_block.py). Pooled embeddings always use plain.
    last_block: str = "plain"
    # Position embeddings on other grids: resize (bilinear to size) | lineage (the SCLIP lineage's bicubic
    # with scale factor (g+0.1)/g; models/positions.py)
    pos_embed: str = "resize"
    # QuickGELU or GELU in both towers: null = as the weights say (open_clip's record of the tag; for one of
    # our checkpoints, the activation it was trained with; else GELU). A built module writes the value it
    # used into its checkpoint, so a checkpoint always rebuilds the architecture it was trained with.
    quick_gelu: bool | None = None


@dataclass
class PaclConfig:
    hidden_dim: int = 512
    # Patch-softmax temperature: a = softmax(s / temperature). Raw cosines (temperature 1) give almost uniform
    # weights, so the default sharpens them tenfold (docs/methods.md#pacl).
    temperature: float = 0.1
    learn_temperature: bool = False
    # Start the skip branch of the embedder as CLIP's own projection (and the main branch at zero), so PACL
    # starts from CLIP's own dense features. Off by default: on the demo it converged worse than a fresh
    # embedder.
    init_skip_from_proj: bool = False
    freeze_vision: bool = True
    freeze_text: bool = True


@dataclass
class LsegConfig:
    """LSeg (docs/methods.md#lseg): a DPT image encoder on a timm ViT against the frozen CLIP text encoder."""

    backbone: str | None = None  # models/dpt.py BACKBONES (required for objective lseg)
    backbone_pretrained: str | None = None
    features: int = 256  # DPT fusion width
    spatial_reg: str = "none"  # none | depthwise | bottleneck
    block_depth: int = 2
    activation: str = "lrelu"  # relu | lrelu | tanh
    logit_scale: float = 14.285714  # 1 / 0.07, the official constant
    learn_logit_scale: bool = False
    templates: str = "raw"  # the training labels' prompts: raw | pacl7 | imagenet80
    head_lr_mult: float = 10.0  # decoder and head learning rate over the backbone's
    input_mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    input_std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    # Start training from a file's weights: an official lang-seg checkpoint (models/lseg_official.py) or one
    # of ours; the LSeg network (net.*), and CLIP's text tower when the file carries one. backbone_pretrained
    # is then not read; a reload from a checkpoint does not read this file either.
    init_from: str | None = None


@dataclass
class ModelConfig:
    objective: str | None = None  # clip | pacl | lseg (required)
    # PACL's augmentation: each caption noun in this many of the 7 templates as extra texts; 0 turns it off
    # (objectives/texts.py). 7 is PACL's recipe.
    noun_prompt_templates: int = 0
    clip: ClipConfig = field(default_factory=ClipConfig)
    pacl: PaclConfig = field(default_factory=PaclConfig)
    lseg: LsegConfig = field(default_factory=LsegConfig)
    logit_scale_init: float = 14.285714  # 1 / 0.07, CLIP's initial value
    learn_logit_scale: bool = True
    logit_scale_max: float = 100.0


@dataclass
class OptimConfig:
    """The optimizer and its schedule (objectives/optim.py); betas and eps are torch's AdamW defaults."""

    name: str = "adamw"  # adamw | sgd
    lr: float | None = None  # required for training
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    schedule: str = "constant"  # constant | cosine | poly
    # How often the schedule steps: every optimizer step, or once per epoch (Lightning's default interval,
    # which the official LSeg code uses: its poly is (1 - epoch / max_epochs) ** 0.9, needing
    # trainer.max_epochs). warmup_steps counts the schedule's steps: epochs under "epoch".
    schedule_interval: str = "step"  # step | epoch
    poly_power: float = 0.9
    momentum: float = 0.0  # sgd
    # A non-finite loss on any rank: every rank skips that step (counted as train/nonfinite_steps); this many
    # in a row stop the run with a message.
    max_nonfinite_steps: int = 10
    warmup_steps: int = 0


@dataclass
class SyntheticConfig:
    """The embedded world (data_modules/synthetic/): generated into ``out`` when a run needs it."""

    enabled: bool = False  # generate the world (if absent) before the run starts
    out: str = "data/synthetic"
    seed: int = 0
    n_train: int = 4000
    n_val: int = 200
    size: int = 64


@dataclass
class ShardSourceConfig:
    """One caption source in img2dataset's webdataset layout: brace patterns or lists, local paths or URLs."""

    urls: list[str] = field(
        default_factory=list
    )  # quote brace patterns in YAML: ['/data/cc3m/{00000..00331}.tar']
    weight: float = 1.0  # mixing weight among sources, per sample


@dataclass
class TrainDataConfig:
    # coco: annotations/captions_<split>.json beside <split>/*.jpg | shards | segmentation (masks of
    # `dataset`) | episodes (LSeg's zero-shot training: 2-way episodes of `dataset`'s seen classes, data.fold)
    format: str | None = None  # required for training
    root: str | None = None  # coco: the folder holding annotations/; segmentation: the dataset's folder
    split: str | None = None  # coco and segmentation (required): e.g. train2017, training
    # format=segmentation (required): the benchmark whose training split to learn; format=episodes: an episode
    # benchmark (pascal5i, coco20i, fss1000, synthetic; data_modules/episodes)
    dataset: str | None = None
    base_size: int | None = None
    scale_range: list[float] = field(default_factory=lambda: [1.0, 1.0])
    shards: list[ShardSourceConfig] = field(default_factory=list)  # format=shards
    samples_per_epoch: int | None = None  # format=shards (required): the epoch length, over all ranks
    resampled: bool = True  # shards drawn with replacement (else each pass reads every shard once)
    shuffle_buffer: int = 1000  # samples (raw bytes) shuffled within each DataLoader worker and source
    image_size: int | None = None  # the training crop (required)
    crop_scale_min: float = 1.0  # RandomResizedCrop lower scale bound (caption formats; 1.0: no crop)
    hflip: bool = False
    # PACL with frozen encoders: keep the frozen patch tokens and text embeddings (float16) on disk and read
    # them in later epochs (training/feature_caching.py). The image side needs a deterministic transform
    # (crop_scale_min 1.0, hflip false) and coco-format data; otherwise only texts are cached, and the log
    # says why.
    feature_cache: bool = False
    feature_cache_dir: str | None = None  # None: <run.root>/feature_cache (keyed, shared by runs safely)


@dataclass
class SegDataConfig:
    # Zero-shot validation benchmarks, one DataLoader each (data_modules/benchmarks.py); val/mIoU is their
    # mean, val/mIoU/<name> each one. At least one is required.
    datasets: list[str] = field(default_factory=list)
    roots: dict[str, str] = field(
        default_factory=dict
    )  # per-dataset folder (None: <data.root>/<standard name>)
    split: str | None = None  # None: each dataset's validation split; a value applies to every dataset
    image_size: int | None = None  # resize the short side, centre-crop a square (required for training)
    max_images: int | None = None
    # Episode benchmarks validated on data.fold's unseen classes (val/mIoU/episodes/<name>: the mean
    # foreground IoU over the fold's classes; val/FB-IoU/episodes/<name>)
    episodes: list[str] = field(default_factory=list)


@dataclass
class EpisodeDataConfig:
    """LSeg's zero-shot protocol (data_modules/episodes, docs/evaluation.md): 2-way ["others", class]
    episodes."""

    size: int = 480  # images resized to size x size (aspect not kept), masks nearest, metric at this size
    # None: the official count (1000 for PASCAL-5i and COCO-20i; FSS-1000: every image)
    test_episodes: int | None = None
    # COCO-20i's fold lists (None: <data root>/COCO2014/splits, else <data root>/splits/coco)
    coco_lists: str | None = None


@dataclass
class DataConfig:
    root: str | None = None  # the folder holding every dataset under its standard name (None: $DATA_ROOT)
    train: TrainDataConfig = field(default_factory=TrainDataConfig)
    val: SegDataConfig = field(default_factory=SegDataConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    fold: int | None = None  # the zero-shot fold of the episode benchmarks (its classes are the unseen ones)
    episodes: EpisodeDataConfig = field(default_factory=EpisodeDataConfig)
    batch_size: int | None = None  # training batch per process (required for training)
    val_batch_size: int = 32
    num_workers: int = 4
    # Bad samples are counted, logged and skipped; the run stops once more than this share of the samples seen
    # (checked from 100 samples on, and at every epoch end) was bad.
    max_bad_fraction: float = 0.01


@dataclass
class EvalConfig:
    """``lseg-pacl eval``: which weights, which benchmarks, and the inference protocol (evaluation/*)."""

    ckpt: str | None = None  # a checkpoint of this project; None: the experiment's own (training-free) model
    benchmarks: list[str] = field(default_factory=list)  # empty: data.val.datasets
    # episode benchmarks scored at data.fold (empty: data.val.episodes)
    episodes: list[str] = field(default_factory=list)
    templates: str = "raw"  # raw | pacl7 | imagenet80 (each prompt normalised, averaged, re-normalised)
    class_names: dict[str, str] = field(
        default_factory=dict
    )  # benchmark -> synonym file (evaluation/labels.py)
    mode: str = "whole"  # whole | slide
    short_side: int | None = None  # resize the short side to this (None: data.val.image_size, else as it is)
    resize: str = "short"  # short | long: which side short_side sets (LSeg's protocol: long side 520 x scale)
    crop: int = 224  # slide window
    stride: int = 112
    scales: list[float] = field(default_factory=lambda: [1.0])
    flip: bool = False
    logit_scale: float = 40.0  # cosine x this, softmax: the probabilities the threshold and entropy rules see
    background: str = "text"  # text | threshold | entropy: for benchmarks with a background class
    bg_threshold: float = 0.1
    bg_entropy: float = 1.5
    # The lineage's official protocols (docs/evaluation.md#official-protocols)
    names: str = "default"  # class names: default (the benchmark's list) | sclip | clearclip (shipped files)
    remainder: str = "pad"  # sides not divisible by the patch: pad (zero-pad, cut) | drop (stretch patches)
    resize_backend: str = "torch"  # torch (bilinear, normalised float) | cv2 (OpenCV on 8 bits, as mmseg)
    bg_area: float | None = None  # background softmax: SCLIP's area threshold (None: off)
    pamr_iterations: int = 0  # PAMR refinement of the logits (0: off; NACLIP's paper protocol: 10)
    pamr_dilations: list[int] = field(default_factory=lambda: [8, 16])
    precision: str | None = None  # fp32 | fp16 | bf16 (fp16: CUDA only, else fp32); None: trainer.precision
    # the training-free method's hyper-parameters (lseg_pacl/methods/<name>.py defaults), e.g. ResCLIP's tau_r
    method_options: dict[str, Any] = field(default_factory=dict)
    # benchmark -> eval.* keys that differ on it (a preset's per-dataset values)
    per_benchmark: dict[str, Any] = field(default_factory=dict)
    preset: str | None = None  # paper | unified: experiments/presets/ merged before the command line
    method: str | None = None  # the row label in results and tables (None: the experiment's name)
    models: list[str] = field(default_factory=list)  # several experiments (or checkpoints) in one process
    max_images: int | None = None  # per benchmark (None: all)
    save_predictions: bool = False  # eval/predictions/<benchmark>/<stem>.png, the format `score` reads
    pictures: int = 4  # image | ground truth | prediction panels per benchmark (eval/pictures/)
    analysis: list[str] = field(default_factory=list)  # patch_accuracy | coherence (PACL's diagnostics)
    coherence_pairs: int = 20000  # patch pairs sampled per benchmark for the coherence ROC-AUC


@dataclass
class TrainerConfig:
    """Passed to lightning.Trainer as keyword arguments (null values are left to Lightning's defaults)."""

    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: Any = "32-true"
    max_steps: int = -1
    max_epochs: int | None = None
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None
    val_check_interval: Any = None
    check_val_every_n_epoch: int | None = 1
    log_every_n_steps: int = 1  # metrics.csv holds every step
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    num_sanity_val_steps: int | None = 0
    deterministic: Any = None
    benchmark: bool | None = None
    enable_progress_bar: bool = True


@dataclass
class WandbConfig:
    mode: str = "offline"  # offline | online | disabled; the API key only ever comes from the environment
    project: str = "lseg_pacl"
    entity: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class LoggerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class StallConfig:
    """Bounded waits, in seconds (0 or null: wait without limit). A run that stops making progress ends with
    exit code 76 (``Stalled``) after saving its state where that state is consistent; see docs/training.md."""

    watchdog: float | None = 1800.0  # no training step and no validation batch for this long
    data_timeout: float | None = 600.0  # one batch from a DataLoader worker
    collective_timeout: float | None = 1800.0  # any collective of the process group (DDP)


@dataclass
class RunConfig:
    root: str = "runs"  # runs/<experiment>/<run id>/
    dir: str | None = None  # an explicit run directory instead
    id: str | None = None  # chosen by the run plan (also the W&B run id)
    experiment: str | None = None  # set by the loader
    keep_last: int = 2


@dataclass
class ExperimentConfig:
    # One experiment or a list of them, merged in order before this file (each with its own bases first).
    base: Any = None
    description: str = ""
    # A pipeline: run these experiments in order in one run directory; a stage may take the CLIP weights of
    # the stage before it with model.clip.pretrained=previous_stage.
    stages: list[str] = field(default_factory=list)
    seed: int = 0
    # A run directory; "last" (the newest run of this experiment); "auto" (continue run.dir / run.id / the
    # SLURM job's run when it has a checkpoint, else start it: what a requeued job passes).
    resume: str | None = None
    run: RunConfig = field(default_factory=RunConfig)
    stall: StallConfig = field(default_factory=StallConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
