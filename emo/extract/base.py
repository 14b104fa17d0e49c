"""What every modality extractor provides to the runner.

The runner calls `prepare` on CPU worker threads (decode, resample, tokenize, detect and
align faces), groups prepared clips into batches by `cost`, and calls `encode` on the
accelerator. `prepare` raises ClipError / ClipMissing for a bad clip; the runner records
it in the cache and carries on.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np

from emo.clip import Clip


class Extractor(Protocol):
    modality: str  # "audio" | "text" | "visual" | "faces"
    row_shape: tuple[int, ...]  # one stored frame: (layers, dim) for features, (size, size, 3) for faces
    dtype: str  # "float16" for features, "uint8" for face crops

    def fingerprint(self) -> dict[str, Any]:
        """JSON-able description of everything that changes the stored values."""

    def prepare(self, clip: Clip) -> Any:
        """CPU work for one clip; raises ClipError (failed) or ClipMissing (missing)."""

    def cost(self, prepared: Any) -> float:
        """Batch-budget units of one prepared clip (seconds of audio, tokens, frames)."""

    def encode(self, batch: Sequence[Any]) -> list[np.ndarray]:
        """Accelerator work: one (T, *row_shape) array per prepared clip, in order."""
