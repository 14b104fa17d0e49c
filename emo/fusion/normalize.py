"""Speaker normalisation (`--normalize speaker`): each speaker's cached features standardised with
that speaker's own statistics, per (layer, dim) over all of that speaker's frames.

It removes what is constant about a voice (pitch range, loudness, microphone) so a head sees how
a clip departs from its speaker's usual self. Labels are never used, but the statistics of a test
speaker come from that speaker's own (unlabelled) test clips: the protocol is transductive, and
every fit, evaluation and prediction that uses it says so (config.json, metrics.json, printed).

Defined behaviour at the edges:
- A speaker with fewer than MIN_CLIPS clips of a modality is standardised with the global
  statistics of that modality (every loaded clip's frames, all speakers) instead: one clip's own
  statistics would set its mean to 0 and its spread to 1 and erase what the clip carries.
- A clip without a speaker id is an error (the cache records no speakers, or not for every clip).
- A constant feature (std 0) is only centred.
- `emo predict --speaker NAME` takes all the clips of one call as that speaker's and needs at
  least MIN_CLIPS of them; otherwise it refuses (emo.predictor.scoring).
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Sequence

import numpy as np

from emo.constants import FLOAT16_MAX
from emo.errors import EmoError

MODES = ("none", "speaker")
MIN_CLIPS = 2
TRANSDUCTIVE = ("transductive: every speaker's features, the test speakers' included, are standardised with "
                "that speaker's own unlabelled clips")


def record(mode: str, info: dict | None = None) -> dict | None:
    """What config.json / metrics.json keep about the normalisation (None when there is none)."""
    if mode == "none":
        return None
    return {"mode": mode, "transductive": True, "note": TRANSDUCTIVE, "min_clips": MIN_CLIPS, **(info or {})}


def speaker_normalized(data, keys: Sequence[str], source) -> tuple[object, dict]:
    """A copy of `data` (CachedData) whose feature inputs in `keys` are standardised per speaker.

    Returns (data, info) with info = {"speakers": n, "global_fallback": [speakers with < MIN_CLIPS clips]}.
    """
    features = [k for k in keys if data.modalities[k].kind == "features"]
    if not features:
        raise EmoError(f"{source}: --normalize speaker standardises cached features; "
                       f"{', '.join(keys)} hold(s) raw face crops")
    speakers = np.array(["" if s is None else str(s) for s in data.speakers], dtype=object)
    unknown = np.flatnonzero(speakers == "")
    if len(unknown):
        raise EmoError(f"{source}: --normalize speaker needs a speaker id per clip; {len(unknown)} of {len(speakers)} "
                       f"clips have none (e.g. {data.ids[unknown[0]]})")
    names, codes = np.unique(speakers, return_inverse=True)
    fallback: set[str] = set()
    changed = {}
    for key in features:
        changed[key], lone = _normalized_modality(data.modalities[key], names, codes)
        fallback |= lone
    info = {"speakers": int(len(names)), "global_fallback": sorted(fallback)}
    return dataclasses.replace(data, modalities={**data.modalities, **changed}), info


# The normalised copy of a loaded modality, kept while its source tensor lives: the fits of a sweep
# or of a benchmark over one in-memory cache normalise it once. Keyed by id() (a tensor's == is
# elementwise), checked against the source, the clip layout and the speakers; dropped with the source.
_NORMALIZED: dict[int, tuple] = {}


def _normalized_modality(m, names: np.ndarray, codes: np.ndarray):
    """(the modality standardised per speaker, speakers that fell back to the global statistics)."""
    import torch

    speakers_key = (tuple(names), codes.tobytes())
    held = _NORMALIZED.get(id(m.data))
    if held is not None and held[0]() is m.data and held[1] is m.starts and np.array_equal(held[2], m.lengths) \
            and held[3] == speakers_key:
        return held[4], held[5]
    present = np.flatnonzero(m.lengths > 0)
    if m.data.shape[0] == 0 or len(present) == 0:
        return m, set()
    # Speaker of every flat frame: clips are contiguous runs [start, start + length).
    lengths = m.lengths[present]
    first = np.repeat(m.starts.cpu().numpy()[present], lengths)
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    owner = np.full(m.data.shape[0], -1, dtype=np.int64)
    owner[first + within] = np.repeat(codes[present], lengths)
    clips_of = np.bincount(codes[present], minlength=len(names))
    out = m.data.clone()
    global_stats = _stats(m.data, np.flatnonzero(owner >= 0))
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(len(names) + 1))
    fallback = set()
    for code, name in enumerate(names):
        frames = order[bounds[code] : bounds[code + 1]]
        if len(frames) == 0:
            continue
        if clips_of[code] < MIN_CLIPS:
            fallback.add(str(name))
            mean, std = global_stats
        else:
            mean, std = _stats(m.data, frames)
        index = torch.from_numpy(frames).to(m.data.device)
        scaled = (m.data[index].double() - mean) / std
        out[index] = scaled.clamp(-FLOAT16_MAX, FLOAT16_MAX).to(m.data.dtype)
    result = dataclasses.replace(m, data=out)
    if id(m.data) not in _NORMALIZED:
        weakref.finalize(m.data, _NORMALIZED.pop, id(m.data), None)
    _NORMALIZED[id(m.data)] = (weakref.ref(m.data), m.starts, m.lengths.copy(), speakers_key, result, fallback)
    return result, fallback


def _stats(values, frames: np.ndarray, chunk: int = 1 << 15):
    """(mean, std) float64 per (layer, dim) over `frames` of `values`, summed in chunks (no full float64 copy)."""
    import torch

    total = torch.zeros(values.shape[1:], dtype=torch.float64, device=values.device)
    squares = torch.zeros_like(total)
    for start in range(0, len(frames), chunk):
        block = values[torch.from_numpy(frames[start : start + chunk]).to(values.device)].double()
        total += block.sum(0)
        squares += (block * block).sum(0)
    mean = total / max(len(frames), 1)
    std = (squares / max(len(frames), 1) - mean * mean).clamp(min=0).sqrt()
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def normalized_cross(cross, keys: Sequence[str]):
    """A cross-corpus test set (emo.fusion.cross_corpus.CrossCorpus) normalised by its own speakers."""
    data, _ = speaker_normalized(cross.data, keys, cross.cache)
    return dataclasses.replace(cross, data=data)
