"""A fitted run's record (config.json): written and read here, and nowhere else.

    record = RunRecord.read(run_dir)     # checked (emo.fusion.run_checks) before it is built
    record.cache.fingerprints["audio"], record.classes, record.max_frames
    record.write(run_dir)

The record carries everything needed to rebuild the run's extractors (the cache's fingerprints,
layers and recorded extract options) and heads (head config, weights files), and to rescore it
(classes, label column, split, normalisation, test cache). The JSON keeps the layout runs have
always had, so runs from an older emo read back (fields they lack take their older meaning).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from emo.errors import EmoError

CONFIG = "config.json"


def max_frames_of(options: dict) -> int | None:
    """The frames per clip a run's heads see (its fit's --max-frames; runs from before it: the default)."""
    from emo.fusion.data import DEFAULT_MAX_FRAMES

    return options.get("max_frames", DEFAULT_MAX_FRAMES)


@dataclass
class CacheRef:
    """The cache a run was trained on, as it was then: the run needs none of it to exist later."""

    path: str
    dataset: str = ""
    fingerprints: dict[str, dict] = field(default_factory=dict)  # modality -> fingerprint at training
    layers: dict[str, list | None] = field(default_factory=dict)  # modality -> cached layer ids kept (None: all)
    extract_options: dict[str, dict] = field(default_factory=dict)  # modality -> how its extractor was asked for


@dataclass
class SplitRecord:
    spec: str  # e.g. "kfold-speaker:5"
    folds: int
    seed: int
    val_fraction: float


@dataclass
class TestCacheRecord:
    """fit --test-cache: the other corpus the run was scored on, and how (eval rescores it by default)."""

    path: str
    dataset: str
    label_map: dict  # LabelMapping.describe(): "given" is what a rescore passes again
    overlap: dict  # Overlap.describe(): "policy" is what a rescore applies again
    label_column: str | None = None


@dataclass
class RunRecord:
    cache: CacheRef
    head: dict  # Head.config: name, inputs, n_classes, hparams
    modalities: list[str]
    classes: list[str]
    label_column: str | None = None
    name: str = ""
    split: SplitRecord | None = None  # None: an older or hand-written record without one
    normalize: dict | None = None  # fit --normalize speaker: how eval and predict standardise
    clips: dict = field(default_factory=dict)  # used, dedup_dropped, left_out_missing
    options: dict = field(default_factory=dict)  # FitOptions as given (asdict)
    weights: list[str] = field(default_factory=list)  # one safetensors file per fold
    test_cache: TestCacheRecord | None = None
    # Provenance, for people reading the file.
    emo_version: str = ""
    created: str = ""
    device: str = ""
    torch_version: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def modality_dropout(self) -> float:
        """> 0: the run was trained (and tested) on clips missing a modality."""
        return float(self.options.get("modality_dropout", 0.0) or 0.0)

    @property
    def max_frames(self) -> int | None:
        return max_frames_of(self.options)

    # -- JSON ----------------------------------------------------------------------------
    def to_json(self) -> dict:
        """The config.json object (the layout of every emo version; absent parts stay absent)."""
        out = {
            "emo_version": self.emo_version,
            "created": self.created,
            "name": self.name,
            "cache": asdict(self.cache),
            "head": self.head,
            "modalities": list(self.modalities),
            "classes": list(self.classes),
            "label_column": self.label_column,
            "split": asdict(self.split) if self.split is not None else None,
            "normalize": self.normalize,
            "clips": self.clips,
            "options": self.options,
            "device": self.device,
            "torch_version": self.torch_version,
            "notes": list(self.notes),
            "weights": list(self.weights),
        }
        if self.test_cache is not None:
            out["test_cache"] = asdict(self.test_cache)
        return out

    @classmethod
    def from_json(cls, config: dict, weights: list[str] | None = None) -> "RunRecord":
        """The record of a config.json object that `run_checks.check_config` accepted.

        Fields the checks leave free (provenance, split) are taken when well-formed, else left
        empty: a hand-edited or older record still loads for what it does say.
        """
        cache = config["cache"]
        split = config.get("split")
        tested = config.get("test_cache")
        return cls(
            cache=CacheRef(
                path=cache["path"], dataset=str(cache.get("dataset", "")), fingerprints=dict(cache["fingerprints"]),
                layers=dict(cache.get("layers") or {}), extract_options=dict(cache.get("extract_options") or {}),
            ),
            head=config["head"],
            modalities=list(config["modalities"]),
            classes=list(config["classes"]),
            label_column=config.get("label_column"),
            name=str(config.get("name", "")),
            split=SplitRecord(str(split.get("spec", "?")), split.get("folds"), split.get("seed"), split.get("val_fraction"))
            if isinstance(split, dict) else None,
            normalize=config.get("normalize"),
            clips=config.get("clips") if isinstance(config.get("clips"), dict) else {},
            options=dict(config.get("options", {})),
            weights=list(weights if weights is not None else config.get("weights") or []),
            test_cache=TestCacheRecord(
                tested["path"], str(tested.get("dataset", "")), tested["label_map"], tested["overlap"],
                tested.get("label_column"),
            ) if tested is not None else None,
            emo_version=str(config.get("emo_version", "")),
            created=str(config.get("created", "")),
            device=str(config.get("device", "")),
            torch_version=str(config.get("torch_version", "")),
            notes=[str(n) for n in config.get("notes", [])] if isinstance(config.get("notes"), list) else [],
        )

    # -- files ---------------------------------------------------------------------------
    def write(self, run_dir: str | Path) -> None:
        path = Path(run_dir) / CONFIG
        path.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, run_dir: str | Path) -> "RunRecord":
        """The run's config.json, checked field by field; one-line EmoError naming the file otherwise."""
        from emo.fusion.run_checks import check_config, weights_files

        run_dir = Path(run_dir)
        path = run_dir / CONFIG
        if not path.is_file():
            raise EmoError(f"{run_dir}: not a run directory (no {CONFIG}); runs are made by `emo fit --out`")
        try:
            config: Any = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
            raise EmoError(f"{path}: damaged run file ({str(exc)[:160]})") from None
        check_config(config, run_dir)
        # Older runs list no weights: the files present decide (checked there too).
        return cls.from_json(config, weights_files(config, run_dir))
