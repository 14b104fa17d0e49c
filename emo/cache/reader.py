"""CacheReader: what a cache holds, and one-bulk-read loading of a modality into memory.

The reader keeps no HDF5 handle between calls (handles cannot cross processes, and an
open handle would lock out a writer); each `load` opens, reads once, and closes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from emo.cache.h5file import check_emo_file, open_h5, read_json_attr
from emo.cache.schema import MODALITIES, STATUS_NAMES, STATUS_OK
from emo.cache.sequences import Sequences, gather_rows
from emo.cache.validation import check_structure, corrupt
from emo.clip import Clip
from emo.errors import CacheError, describe
from emo.layer_spec import stored_layer_ids


def _strings(dataset) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else s for s in dataset[:]]


@dataclass
class ClipTable:
    ids: list[str]
    labels: np.ndarray  # int64 index into label_names
    label_names: list[str]
    speakers: list[str]
    durations: np.ndarray  # float32 seconds, nan when unknown
    texts: list[str]
    audio_paths: list[str]
    video_paths: list[str]
    extras: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def to_clips(self) -> list[Clip]:
        """The table as Clip records again (empty strings back to None)."""
        return [
            Clip(
                id=cid,
                label=self.label_names[int(self.labels[i])],
                speaker=self.speakers[i],
                audio=self.audio_paths[i] or None,
                video=self.video_paths[i] or None,
                text=self.texts[i] or None,
                duration=None if np.isnan(self.durations[i]) else float(self.durations[i]),
                extras={name: values[i] for name, values in self.extras.items() if values[i] != ""},
            )
            for i, cid in enumerate(self.ids)
        ]

    def index(self, ids: Sequence[str]) -> np.ndarray:
        lookup = {c: i for i, c in enumerate(self.ids)}
        missing = [c for c in ids if c not in lookup]
        if missing:
            raise CacheError(f"clips not in this cache: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        return np.array([lookup[c] for c in ids], dtype=np.int64)


@dataclass
class ModalityInfo:
    fingerprint: dict
    row_shape: tuple[int, ...]
    dtype: str
    status: np.ndarray  # (N,) uint8
    reasons: list[str]
    spans: np.ndarray  # (N, 2): each clip's [start, end) rows of data (on disk: `offsets`)
    rows: int
    options: dict  # how the extractor was asked for (see CacheWriter.open_modality); {} when unrecorded


class CacheReader:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open_h5(self.path, "r") as h5:
            check_emo_file(h5, self.path)
            try:
                check_structure(h5, self.path)
                self._read_metadata(h5)
            except (KeyError, OSError) as exc:
                raise corrupt(self.path, describe(exc)) from None

    def _read_metadata(self, h5) -> None:
        self.dataset = str(h5.attrs.get("dataset", ""))
        self.emo_version = str(h5.attrs.get("emo_version", ""))
        self.created = str(h5.attrs.get("created", ""))
        table = h5["clips"]
        self.clips = ClipTable(
            ids=_strings(table["id"]),
            labels=table["label"][:].astype(np.int64),
            label_names=read_json_attr(table, "label_names"),
            speakers=_strings(table["speaker"]),
            durations=table["duration"][:],
            texts=_strings(table["text"]),
            audio_paths=_strings(table["audio_path"]),
            video_paths=_strings(table["video_path"]),
            extras={name: _strings(table["extras"][name]) for name in table.get("extras", {})},
        )
        self._modalities: dict[str, ModalityInfo] = {}
        for name in MODALITIES:
            if name not in h5:
                continue
            group = h5[name]
            self._modalities[name] = ModalityInfo(
                fingerprint=read_json_attr(group, "fingerprint", {}),
                row_shape=tuple(int(n) for n in group.attrs["row_shape"]),
                dtype=str(group.attrs["dtype"]),
                status=group["status"][:],
                reasons=_strings(group["reason"]),
                spans=group["offsets"][:],
                rows=group["data"].shape[0],
                options=read_json_attr(group, "extract_options", {}),
            )

    # -- what is here -----------------------------------------------------------------
    @property
    def modalities(self) -> list[str]:
        return list(self._modalities)

    def info(self, modality: str) -> ModalityInfo:
        if modality not in self._modalities:
            present = ", ".join(self._modalities) or "none"
            raise CacheError(f"{self.path}: no {modality!r} modality in this cache (present: {present})")
        return self._modalities[modality]

    def fingerprint(self, modality: str) -> dict:
        return self.info(modality).fingerprint

    def row_shape(self, modality: str) -> tuple[int, ...]:
        return self.info(modality).row_shape

    def status(self, modality: str) -> tuple[np.ndarray, list[str]]:
        info = self.info(modality)
        return info.status, info.reasons

    def ok_ids(self, modality: str) -> list[str]:
        status = self.info(modality).status
        return [self.clips.ids[i] for i in np.flatnonzero(status == STATUS_OK)]

    def layer_ids(self, modality: str) -> list:
        """The hidden-layer ids stored along axis 1 of a feature modality (as the fingerprint lists them)."""
        info = self.info(modality)
        if info.dtype == "uint8" or len(info.row_shape) != 2:
            raise CacheError(f"{self.path}: {modality} holds no layer axis (row shape {info.row_shape})")
        return stored_layer_ids(info.fingerprint, info.row_shape)

    def failures(self, modality: str) -> list[tuple[str, str, str]]:
        """(clip id, 'missing'|'failed', reason) for every clip without a sequence."""
        info = self.info(modality)
        return [
            (self.clips.ids[i], STATUS_NAMES[int(info.status[i])], info.reasons[i])
            for i in np.flatnonzero((info.status != STATUS_OK) & (info.status != 0))
        ]

    # -- loading ----------------------------------------------------------------------
    def load(self, modality: str, clips: Sequence[str] | None = None, layers: Sequence | None = None) -> Sequences:
        """Read the sequences of `clips` (default: every ok clip) into memory with one bulk read."""
        info = self.info(modality)
        if clips is None:
            index = np.flatnonzero(info.status == STATUS_OK)
        else:
            index = self.clips.index(list(clips))
            bad = index[info.status[index] != STATUS_OK]
            if len(bad):
                names = [f"{self.clips.ids[i]} ({STATUS_NAMES[int(info.status[i])]})" for i in bad[:5]]
                raise CacheError(f"{self.path}: {len(bad)} requested clips have no {modality}: {', '.join(names)}")
        layer_index = None
        if layers is not None:
            stored = self.layer_ids(modality)
            unknown = [layer for layer in layers if layer not in stored]
            if unknown:
                raise CacheError(f"{self.path}: {modality} layers {unknown} not cached (cached: {stored})")
            layer_index = [stored.index(layer) for layer in layers]
        spans = info.spans[index]
        ids = [self.clips.ids[i] for i in index]
        if len(index) == 0:
            return Sequences(ids, np.zeros((0, *info.row_shape), info.dtype), np.zeros(1, np.int64))
        lo, hi = int(spans[:, 0].min()), int(spans[:, 1].max())
        with open_h5(self.path, "r") as h5:
            try:
                block = h5[modality]["data"][lo:hi]  # one contiguous read covering every wanted clip
            except OSError as exc:  # a fletcher32 checksum mismatch lands here too
                raise corrupt(self.path, f"unreadable {modality} data ({str(exc)[:120]})") from None
        if layer_index is not None:
            block = block[:, layer_index]
        _refuse_non_finite(self.path, modality, block, spans - lo, ids)
        rows, bounds = gather_rows(spans - lo)
        data = block if (len(rows) == len(block) and np.array_equal(rows, np.arange(len(block)))) else block[rows]
        return Sequences(ids, data, bounds)


def non_finite_rows(block: np.ndarray, rows_per_step: int = 1 << 14) -> np.ndarray:
    """Indices of rows holding NaN/inf. Float16 is tested on its bits (exponent all ones), an
    integer pass several times faster than numpy's emulated float16 isfinite; steps bound the
    temporary memory to a few MB whatever the block's size."""
    if block.dtype.kind != "f" or not block.size:
        return np.zeros(0, np.int64)
    flat = block.reshape(len(block), -1)
    exponent = np.uint16(0x7C00)
    found = []
    for start in range(0, len(flat), rows_per_step):
        part = flat[start : start + rows_per_step]
        if part.dtype == np.float16:
            bits = np.bitwise_and(part.view(np.uint16), exponent)
            if bits.max() != exponent:  # the common case: one SIMD max, no boolean array
                continue
            bad = (bits == exponent).any(axis=1)
        else:
            bad = ~np.isfinite(part).all(axis=1)
        if bad.any():
            found.append(start + np.flatnonzero(bad))
    return np.concatenate(found) if found else np.zeros(0, np.int64)


def _refuse_non_finite(path, modality: str, block: np.ndarray, spans: np.ndarray, ids: list[str]) -> None:
    """Features with NaN/inf (from a writer before this check, or damage) must not train silently."""
    bad_rows = non_finite_rows(block)
    if not len(bad_rows):
        return
    first = int(bad_rows[0])
    clip = next((cid for cid, (start, end) in zip(ids, spans) if start <= first < end), "?")
    raise corrupt(path, f"{modality} holds non-finite values (NaN/inf) in {len(bad_rows)} rows, first in clip {clip!r}; "
                  "extract that modality again with --force")
