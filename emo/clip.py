"""The one record every stage shares: a clip of a dataset, as an adapter found it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Clip:
    """One labelled recording. Paths are absolute strings or None when the modality is absent."""

    id: str
    label: str
    speaker: str
    audio: str | None = None
    video: str | None = None
    text: str | None = None
    duration: float | None = None
    # Dataset-specific columns (CREMA-D sentence and level, perceived labels, demographics...).
    extras: dict[str, str] = field(default_factory=dict)
    # Per modality, why the adapter found that input unusable ({"text": "transcript x.txt is not
    # UTF-8 ..."}): the run records it as the clip's failure reason instead of guessing one.
    problems: dict[str, str] = field(default_factory=dict)
