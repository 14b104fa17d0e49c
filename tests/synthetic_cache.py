"""A small emo cache with a planted signal, written through the real CacheWriter.

Every frame of a clip is noise plus a class-dependent mean (per modality its own random
direction, scaled by `signal[modality]`), so a head that reads a modality with signal > 0
must beat chance by far; a modality with signal 0 is pure noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from emo.cache import CacheWriter
from emo.clip import Clip

CLASSES = ("angry", "happy", "neutral", "sad")
DEFAULT_SHAPES = {"audio": (2, 16), "text": (1, 8), "visual": (1, 12)}


def make_synthetic_cache(
    path: Path,
    *,
    classes=CLASSES,
    speakers: int = 6,
    clips_per_speaker_class: int = 4,
    shapes: Mapping[str, tuple] = DEFAULT_SHAPES,
    signal: Mapping[str, float] | float = 1.5,
    frames: tuple[int, int] = (4, 16),
    seed: int = 0,
    fingerprints: Mapping[str, dict] | None = None,
    missing: Mapping[str, int] | None = None,
    distinct_texts: int | None = None,
    extras=None,
    dataset: str = "synthetic",
    id_prefix: str = "c",
    noise_seed: int | None = None,
    audio_paths=None,
    speaker_ids: bool = True,
    speaker_shift: float = 0.0,
) -> list[Clip]:
    """Write the cache and return its clips (ids c0000..., speakers s0..., durations = frames / 10 s).

    shapes: {modality: row_shape}; (L, D) gives float16 features, (S, S, 3) uint8 face crops.

    missing[m] = k: the last k clips have no `m` (recorded as missing).
    distinct_texts = n: transcripts cycle through n sentences (for --dedup-text).
    extras(i, clip) -> dict adds extras columns.
    noise_seed: draw lengths and noise from this seed while the class directions still come from
    `seed` (another "corpus" with the same classes and signal: cross-corpus tests).
    audio_paths(i) -> str records a source audio path per clip (nothing is read from it).
    speaker_ids=False: the clips record no speaker (an empty id).
    speaker_shift = a: every feature frame of a speaker is offset by that speaker's own random
    vector times a, and scaled by its own random factor (a voice's level and range).
    """
    rng = np.random.default_rng(seed)
    signal = {m: float(signal) for m in shapes} if not isinstance(signal, Mapping) else {m: signal.get(m, 0.0) for m in shapes}
    clips, sequences = [], {m: {} for m in shapes}
    directions = {}
    for m, shape in shapes.items():
        if _is_faces(shape):
            # Face crops are standardised per image and channel by the encoder, so the class is a
            # blocky spatial brightness pattern (4x4-pixel blocks), not a colour.
            blocks = rng.standard_normal((len(classes), -(-shape[0] // 4), -(-shape[1] // 4)))
            pattern = blocks.repeat(4, axis=1).repeat(4, axis=2)[:, : shape[0], : shape[1], None]
            directions[m] = np.broadcast_to(pattern, (len(classes), *shape))
        else:
            direction = rng.standard_normal((len(classes), shape[-1]))
            directions[m] = direction / np.linalg.norm(direction, axis=1, keepdims=True)
    draw = rng if noise_seed is None else np.random.default_rng(noise_seed)
    voices = {m: (speaker_shift * rng.standard_normal((speakers, shape[-1])), np.exp(0.5 * rng.standard_normal((speakers, 1))))
              for m, shape in shapes.items() if not _is_faces(shape)} if speaker_shift else {}
    i = 0
    for s in range(speakers):
        for c, name in enumerate(classes):
            for _ in range(clips_per_speaker_class):
                length = int(draw.integers(frames[0], frames[1] + 1))
                text = f"sentence {i % distinct_texts}" if distinct_texts else f"sentence {i}"
                clip = Clip(id=f"{id_prefix}{i:04d}", label=name, speaker=f"s{s}" if speaker_ids else "", text=text, duration=length / 10.0,
                            audio=audio_paths(i) if audio_paths else None)
                clips.append(clip)
                for m, shape in shapes.items():
                    noise = draw.standard_normal((length, *shape))
                    planted = noise + signal[m] * 2.0 * directions[m][c]
                    if m in voices:
                        planted = planted * voices[m][1][s] + voices[m][0][s]
                    if _is_faces(shape):
                        sequences[m][clip.id] = np.clip(128 + 25 * planted, 0, 255).astype(np.uint8)
                    else:
                        sequences[m][clip.id] = planted.astype(np.float16)
                i += 1
    if extras is not None:
        for k, clip in enumerate(clips):
            clip.extras.update(extras(k, clip))
    missing = dict(missing or {})
    with CacheWriter(path, dataset=dataset, clips=clips, label_names=list(classes)) as writer:
        for m, shape in shapes.items():
            default = {"backbone": f"synthetic-{m}"} if _is_faces(shape) else {"backbone": f"synthetic-{m}", "layers": list(range(shape[0]))}
            fingerprint = (fingerprints or {}).get(m, default)
            writer.open_modality(m, fingerprint, shape, "uint8" if _is_faces(shape) else "float16")
            cut = len(clips) - missing.get(m, 0)
            writer.write(m, {c.id: sequences[m][c.id] for c in clips[:cut]})
            for c in clips[cut:]:
                writer.fail(m, c.id, "synthetic: no such modality", status="missing")
    return clips


def _is_faces(shape: tuple) -> bool:
    return len(shape) == 3 and shape[-1] == 3
