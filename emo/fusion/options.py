"""The options of a fit (`FitOptions`), their declared ranges and their one default each.

No torch here: the CLI reads its option defaults from this dataclass when it starts, so each
default is written once, here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from emo.errors import EmoError
from emo.fusion.augment import Augment
from emo.fusion.data import DEFAULT_MAX_FRAMES
from emo.fusion.normalize import MODES as NORMALIZE_MODES
from emo.fusion.params import Param

ORDERS = ("random", "short", "long")  # which clips --per-class keeps
CLASS_WEIGHTS = ("none", "balanced")
# Learning rate, batch size and augmentation when neither the user nor the head (`Head.fit_defaults`)
# sets them. A head whose measured best differs declares its own (the `audio` head trains at 1e-3,
# in batches of 16, with time / feature masking and mixup: chosen on validation folds).
FALLBACKS = {"lr": 1e-4, "batch_size": 32, "time_mask": 0.0, "feature_mask": 0.0, "mixup": 0.0}


# Declared type and range of every numeric fit option (and --order): checked in one place, so
# `--lr inf`, `--val-fraction nan` or `--epochs 0` are one-line errors before anything is read.
FIT_PARAMS = {
    "val_fraction": Param(float, 0.0, 1.0, hi_open=True),
    "epochs": Param(int, 1, 1_000_000),
    "seed": Param(int, 0, 2**32 - 1),  # numpy seeds are non-negative
    "batch_size": Param(int, 1, 1_000_000, optional=True),
    "lr": Param(float, 0.0, 10.0, lo_open=True, optional=True),
    "weight_decay": Param(float, 0.0, 10.0),
    "warmup": Param(float, 0.0, 1.0),
    "grad_clip": Param(float, 0.0, 1e6),  # 0: no clipping
    "patience": Param(int, 0, 1_000_000, optional=True),
    "per_class": Param(int, 1, None, optional=True),
    "order": Param(str, choices=ORDERS),
    "modality_dropout": Param(float, 0.0, 1.0, hi_open=True),
    "max_frames": Param(int, 1, 1_000_000, optional=True),
    "class_weights": Param(str, choices=CLASS_WEIGHTS),
    "time_mask": Param(float, 0.0, 1.0, hi_open=True, optional=True),
    "feature_mask": Param(float, 0.0, 1.0, hi_open=True, optional=True),
    "mixup": Param(float, 0.0, 100.0, optional=True),
    "normalize": Param(str, choices=NORMALIZE_MODES),
}


@dataclass
class FitOptions:
    """Everything that decides a fit besides the cache; stored verbatim in config.json."""

    head: str
    modalities: list[str] | None = None  # None: what the head takes, among what the cache holds
    split: str = "stratified"
    val_fraction: float = 0.1
    epochs: int = 50
    seed: int = 0
    device: str = "auto"
    layers: list[str] | None = None  # "--layers" values: "12,18,24", "last", "audio=12,18"
    batch_size: int | None = None  # None: the head's own (Head.fit_defaults), else FALLBACKS
    lr: float | None = None  # None: the head's own (Head.fit_defaults), else FALLBACKS
    weight_decay: float = 0.01
    warmup: float = 0.05
    grad_clip: float = 1.0
    patience: int | None = 10
    per_class: int | None = None
    order: str = "random"
    dedup_text: bool = False
    label_column: str | None = None
    classes: list[str] | None = None
    modality_dropout: float = 0.0
    # Frames per clip and input a head sees, training and scoring (longer clips: a random window in
    # training, the centred one in scoring); bounds memory whatever one long file holds. None: all.
    max_frames: int | None = DEFAULT_MAX_FRAMES
    normalize: str = "none"  # "speaker": per-speaker standardisation of the cached features (transductive)
    # Training-only regularisers (see emo/fusion/augment.py); validation and test never see them.
    class_weights: str = "none"  # "balanced": cross-entropy weighted by inverse training class frequency
    # None (these three, lr and batch_size): the head's own (Head.fit_defaults), else FALLBACKS.
    time_mask: float | None = None  # per clip, hide one span of up to this fraction of its frames
    feature_mask: float | None = None  # per clip, set one band of up to this fraction of feature dims to the mean
    mixup: float | None = None  # Beta(a, a) mixup of clip pairs (inputs and targets); 0: off
    head_params: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    # Train on all of the cache (less validation) and test on another corpus' cache (cross_corpus.py).
    test_cache: str | None = None
    label_map: dict[str, str] | list[str] | None = None  # test cache class SRC -> run class DST
    overlap: str = "refuse"  # test cache clips the run trains or validates on: refuse | exclude | include

    def __post_init__(self) -> None:
        if isinstance(self.modalities, str):
            self.modalities = [m.strip() for m in self.modalities.split(",") if m.strip()]
        if isinstance(self.classes, str):
            self.classes = [c.strip() for c in self.classes.split(",") if c.strip()]
        if isinstance(self.layers, str):
            self.layers = [self.layers]
        from emo.fusion.splits import parse_split, validation_only

        split = parse_split(self.split)
        if self.test_cache is not None:
            from emo.fusion.label_map import parse_label_map
            from emo.fusion.overlap import check_policy

            self.test_cache = str(self.test_cache)
            self.label_map = self.label_map if isinstance(self.label_map, dict) else parse_label_map(self.label_map)
            check_policy(self.overlap)
            validation_only(split)
        elif self.label_map:
            raise EmoError("--label-map needs --test-cache (it maps the test cache's classes to the run's)")
        try:  # every declared option: type, finiteness, range (the head hyperparameters' checks)
            for name, param in FIT_PARAMS.items():
                setattr(self, name, param.check("--" + name.replace("_", "-"), getattr(self, name)))
        except ValueError as err:
            raise EmoError(str(err)) from None
        from emo.fusion.heads.registry import check_hparams

        # Head hyperparameters are checked now, before the cache is read (and again when built).
        checked = check_hparams(self.head, dict(self.head_params or {}))
        self.head_params = {k: checked[k] for k in self.head_params or {}}
        from emo.fusion.heads.registry import head_class

        # Resolved now, so config.json records the values the fit used.
        preferred = head_class(self.head).fit_defaults
        for name, fallback in FALLBACKS.items():
            if getattr(self, name) is None:
                setattr(self, name, preferred.get(name, fallback))

    def train_settings(self):
        from emo.fusion.train import TrainSettings

        return TrainSettings(
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
            warmup=self.warmup, grad_clip=self.grad_clip, patience=self.patience or None,
            modality_dropout=self.modality_dropout, class_weights=self.class_weights,
            augment=Augment(time_mask=self.time_mask, feature_mask=self.feature_mask, mixup=self.mixup),
        )


def default(name: str) -> Any:
    """FitOptions' default for option `name` (what the CLI shows and passes when not given)."""
    for f in fields(FitOptions):
        if f.name == name:
            return f.default
    raise KeyError(name)
