"""What `emo extract` can be asked to do: defaults, the options record and its parsers.

Standard library only: `emo.cli` imports this at start-up, so `emo --help` stays instant.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from emo.constants import DEFAULT_AUDIO_BACKBONE, DEFAULT_TEXT_BACKBONE

EXTRACT_MODALITIES = ("audio", "text", "faces", "visual")

# Batch budgets in each extractor's own `cost` units. Audio is seconds of audio (what
# --batch-seconds sets); the others are the extractors' units (tokens, frames). An extractor
# may carry its own `batch_budget` attribute, which replaces the default here.
DEFAULT_BATCH_SECONDS = 120.0
DEFAULT_BUDGETS = {"audio": DEFAULT_BATCH_SECONDS, "text": 8192.0, "faces": 512.0, "visual": 512.0}


def default_workers() -> int:
    """Threads for CPU `prepare` (decoding releases the GIL); one core is left to the encoder.

    Under torchrun the node's cores are shared by its LOCAL_WORLD_SIZE processes.
    """
    try:
        processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        processes = 1
    return max(1, min(8, (os.cpu_count() or 2) // processes - 1))


@dataclass
class ExtractOptions:
    """Extractor settings; None means "the extractor's own default" (the fingerprint records the value used)."""

    audio_backbone: str = DEFAULT_AUDIO_BACKBONE
    audio_layers: str | None = None
    whisper_input: str | None = None  # Whisper only: "cut" (the clip's own frames) or "pad30" (padded to 30 s)
    text_backbone: str = DEFAULT_TEXT_BACKBONE
    text_layers: str | None = None
    visual_backbone: str | None = None
    fps: float | None = None
    frames: int | None = None
    face_size: int | None = None
    device: str | None = None  # None or "auto" (the CLI's spelling, stored as None): "cuda" when available, else "cpu"
    batch_seconds: float = DEFAULT_BATCH_SECONDS
    workers: int = field(default_factory=default_workers)

    def __post_init__(self) -> None:
        # Options also come back from JSON (a cache's or a run's record): check types before values.
        if self.device == "auto":
            self.device = None
        for name in ("audio_backbone", "text_backbone"):
            _expect(name, getattr(self, name), str)
        for name in ("audio_layers", "whisper_input", "text_layers", "visual_backbone", "device"):
            _expect(name, getattr(self, name), str, optional=True)
        for name in ("frames", "face_size"):
            _expect(name, getattr(self, name), numbers.Integral, optional=True)
        _expect("workers", self.workers, numbers.Integral)
        _expect("fps", self.fps, numbers.Real, optional=True)
        _expect("batch_seconds", self.batch_seconds, numbers.Real)
        if self.fps is not None and self.frames is not None:
            raise ValueError("give --fps or --frames, not both")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"--fps must be a positive finite number, not {self.fps}")
        if self.frames is not None and self.frames <= 0:
            raise ValueError(f"--frames must be positive, not {self.frames}")
        if self.face_size is not None and self.face_size <= 0:
            raise ValueError(f"--face-size must be positive, not {self.face_size}")
        if self.whisper_input not in (None, "cut", "pad30"):
            raise ValueError(f"--whisper-input must be cut or pad30, not {self.whisper_input!r}")
        if not (math.isfinite(self.batch_seconds) and self.batch_seconds > 0):
            raise ValueError(f"--batch-seconds must be a positive finite number, not {self.batch_seconds}")
        if self.workers < 1:
            raise ValueError(f"--workers must be at least 1, not {self.workers}")


_KIND_NAMES = {str: "text", numbers.Integral: "an integer", numbers.Real: "a number"}


def _expect(name: str, value: Any, kind: type, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"--{name.replace('_', '-')} must be {_KIND_NAMES[kind]}, not {value!r}")


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """'I/N' -> (I, N) with 0 <= I < N; None stays None."""
    if spec is None:
        return None
    try:
        index, count = (int(part) for part in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like I/N (e.g. 0/4), not {spec!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {spec}: need 0 <= I < N")
    return index, count


def parse_modalities(spec: str | None) -> list[str] | None:
    """'audio,text' -> ['audio', 'text'] (order kept, duplicates dropped); None stays None (= what the dataset has)."""
    if spec is None:
        return None
    names = [part.strip().lower() for part in spec.split(",") if part.strip()]
    unknown = [n for n in names if n not in EXTRACT_MODALITIES]
    if unknown or not names:
        raise ValueError(f"--modalities {spec!r}: choose from {', '.join(EXTRACT_MODALITIES)}")
    return list(dict.fromkeys(names))


# The ExtractOptions fields that decide what each modality's extractor is (not how fast it runs:
# device, batch size and workers change no stored value).
MODALITY_OPTION_FIELDS = {
    "audio": ("audio_backbone", "audio_layers", "whisper_input"),
    "text": ("text_backbone", "text_layers"),
    "faces": ("fps", "frames", "face_size"),
    "visual": ("visual_backbone", "fps", "frames", "face_size"),
}

ONLY_WHEN_GIVEN = frozenset({"whisper_input"})


def extract_options_for(modality: str, options: ExtractOptions) -> dict[str, Any]:
    """How `modality`'s extractor was asked for, as recorded in the cache (CacheWriter.open_modality(options=)).

    Values are kept as the user gave them (None = the extractor's default), since the fingerprint
    names the backbone that way too; `options_from_recorded` turns the dict back into options.
    """
    if modality not in MODALITY_OPTION_FIELDS:
        raise ValueError(f"unknown modality {modality!r} (one of {', '.join(EXTRACT_MODALITIES)})")
    recorded = {name: getattr(options, name) for name in MODALITY_OPTION_FIELDS[modality]}
    # Options that concern one kind of backbone only are recorded where they were given.
    return {k: v for k, v in recorded.items() if v is not None or k not in ONLY_WHEN_GIVEN}


def options_from_recorded(recorded: Mapping[str, Any], **run_settings: Any) -> ExtractOptions:
    """ExtractOptions rebuilding the extractor a cache recorded (`CacheReader.info(m).options`).

    `run_settings` (device=..., workers=...) are this run's own. Keys that are no ExtractOptions
    field (written by a newer emo) are ignored: the fingerprint check decides whether the
    rebuilt extractor is the same.
    """
    names = {f.name for f in fields(ExtractOptions)}
    values = {k: v for k, v in recorded.items() if k in names}
    return ExtractOptions(**(values | run_settings))
