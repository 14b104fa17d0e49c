"""What `emo cache info` shows and what `emo cache verify` checks."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emo.cache.h5file import open_h5
from emo.cache.reader import CacheReader
from emo.cache.schema import STATUS_FAILED, STATUS_MISSING, STATUS_NAMES, STATUS_OK
from emo.errors import CacheError


@dataclass
class ModalitySummary:
    name: str
    row_shape: tuple[int, ...]
    dtype: str
    counts: dict[str, int]  # ok / missing / failed / pending
    frames_mean: float
    frames_max: int
    fingerprint: dict
    first_failures: list[tuple[str, str, str]]


def summarize(path: str | Path) -> tuple[CacheReader, list[ModalitySummary]]:
    reader = CacheReader(path)
    summaries = []
    for name in reader.modalities:
        info = reader.info(name)
        ok = info.status == STATUS_OK
        lengths = (info.spans[:, 1] - info.spans[:, 0])[ok]
        counts = {STATUS_NAMES[code]: int((info.status == code).sum()) for code in STATUS_NAMES}
        summaries.append(
            ModalitySummary(
                name=name,
                row_shape=info.row_shape,
                dtype=info.dtype,
                counts=counts,
                frames_mean=float(lengths.mean()) if len(lengths) else 0.0,
                frames_max=int(lengths.max()) if len(lengths) else 0,
                fingerprint=info.fingerprint,
                first_failures=reader.failures(name)[:5],
            )
        )
    return reader, summaries


def label_counts(reader: CacheReader) -> dict[str, int]:
    counts = Counter(int(i) for i in reader.clips.labels)
    return {name: counts.get(i, 0) for i, name in enumerate(reader.clips.label_names)}


def verify(path: str | Path, chunk_rows: int = 65536) -> list[str]:
    """Every problem found in the data (empty list: the cache is sound). Reads every row once.

    The structure (attribute types, array lengths, offsets, label indices, status codes) is
    checked by the reader itself, so a damaged structure is a CacheError("corrupt cache: ...")
    here as in every other command; chunks written with fletcher32 fail their checksum on read.
    """
    reader = CacheReader(path)
    problems: list[str] = []
    for name in reader.modalities:
        info = reader.info(name)
        not_ok_without_reason = [
            reader.clips.ids[i] for i in np.flatnonzero(np.isin(info.status, [STATUS_MISSING, STATUS_FAILED]))
            if not info.reasons[i]
        ]
        if not_ok_without_reason:
            problems.append(f"{name}: {len(not_ok_without_reason)} missing/failed clips without a reason")
        problems += _scan_data(path, name, info.dtype, chunk_rows)
    return problems


def unchecksummed(path: str | Path) -> list[str]:
    """Modalities whose data has no per-chunk checksums (written before emo used fletcher32)."""
    with open_h5(path, "r") as h5:
        return [name for name in CacheReader(path).modalities if not h5[name]["data"].fletcher32]


def _scan_data(path, name: str, dtype: str, chunk_rows: int) -> list[str]:
    """Read every row (catches corrupt chunks) and count non-finite feature values."""
    bad_values = 0
    with open_h5(path, "r") as h5:
        data = h5[name]["data"]
        for start in range(0, data.shape[0], chunk_rows):
            try:
                block = data[start : start + chunk_rows]
            except OSError as exc:
                return [f"{name}: unreadable data at rows {start}+ ({str(exc)[:100]})"]
            if dtype != "uint8":
                bad_values += int((~np.isfinite(block)).sum())
    return [f"{name}: {bad_values} NaN/inf feature values"] if bad_values else []


def file_size(path: str | Path) -> int:
    try:
        return Path(path).stat().st_size
    except OSError as exc:
        raise CacheError(f"{path}: {exc.strerror}") from None
