"""What `emo cache info` shows and what `emo cache verify` checks."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emo.cache.h5file import open_h5
from emo.cache.reader import CacheReader
from emo.cache.schema import STATUS_FAILED, STATUS_MISSING, STATUS_NAMES, STATUS_OK, STATUS_PENDING
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
        lengths = (info.offsets[:, 1] - info.offsets[:, 0])[ok]
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
    """Every structural problem found (empty list: the cache is sound). Reads all data once."""
    reader = CacheReader(path)
    problems: list[str] = []
    n = len(reader.clips)
    if len(set(reader.clips.ids)) != n:
        problems.append("duplicate clip ids in the clip table")
    if n and (reader.clips.labels.min() < 0 or reader.clips.labels.max() >= len(reader.clips.label_names)):
        problems.append("label indices outside the label set")
    for name in reader.modalities:
        info = reader.info(name)
        if len(info.status) != n or len(info.offsets) != n:
            problems.append(f"{name}: status/offsets have {len(info.status)} rows for {n} clips")
            continue
        known = np.isin(info.status, [STATUS_PENDING, STATUS_OK, STATUS_MISSING, STATUS_FAILED])
        if not known.all():
            problems.append(f"{name}: {int((~known).sum())} clips with an unknown status code")
        ok = info.status == STATUS_OK
        spans = info.offsets[ok]
        if (spans[:, 1] <= spans[:, 0]).any():
            problems.append(f"{name}: {int((spans[:, 1] <= spans[:, 0]).sum())} ok clips with empty spans")
        if len(spans) and spans[:, 1].max() > info.rows:
            problems.append(f"{name}: offsets point past the end of data ({spans[:, 1].max()} > {info.rows})")
        ordered = spans[np.argsort(spans[:, 0])]
        if len(ordered) > 1 and (ordered[1:, 0] < ordered[:-1, 1]).any():
            problems.append(f"{name}: clip spans overlap")
        not_ok_without_reason = [
            reader.clips.ids[i] for i in np.flatnonzero(np.isin(info.status, [STATUS_MISSING, STATUS_FAILED]))
            if not info.reasons[i]
        ]
        if not_ok_without_reason:
            problems.append(f"{name}: {len(not_ok_without_reason)} missing/failed clips without a reason")
        problems += _scan_data(path, name, info.dtype, chunk_rows)
    return problems


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
