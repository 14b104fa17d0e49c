"""Merge shard caches (from `--shard I/N` runs or torchrun ranks) into one cache.

Every clip ends up exactly once; a modality's fingerprint must agree across shards, so
features from different backbones or settings are never mixed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from emo.cache.fingerprint import canonical, differences
from emo.cache.h5file import check_cache_path
from emo.cache.lock import WriterLock
from emo.cache.reader import CacheReader
from emo.cache.schema import STATUS_NAMES, STATUS_OK, STATUS_PENDING
from emo.cache.writer import CacheWriter
from emo.errors import CacheError

BATCH_CLIPS = 256


@dataclass
class MergeSummary:
    out: Path
    clips: int
    ok: dict[str, int] = field(default_factory=dict)
    duplicates_dropped: dict[str, int] = field(default_factory=dict)


def _check_compatible(readers: Sequence[CacheReader]) -> list[str]:
    first = readers[0]
    for other in readers[1:]:
        if other.clips.label_names != first.clips.label_names:
            raise CacheError(
                f"{other.path}: label set {other.clips.label_names} differs from {first.path}'s {first.clips.label_names}"
            )
    modalities = sorted({m for r in readers for m in r.modalities})
    for modality in modalities:
        holders = [r for r in readers if modality in r.modalities]
        reference = holders[0]
        for other in holders[1:]:
            if canonical(other.fingerprint(modality)) != canonical(reference.fingerprint(modality)) or other.row_shape(
                modality
            ) != reference.row_shape(modality):
                diff = "; ".join(differences(reference.fingerprint(modality), other.fingerprint(modality))) or "row shape"
                raise CacheError(f"{other.path}: {modality} fingerprint differs from {reference.path} ({diff}); refusing to merge")
    return modalities


def merge_caches(shards: Sequence[str | Path], out: str | Path, dataset: str | None = None) -> MergeSummary:
    """Write `out` holding every clip of every shard once, with each modality's ok sequences."""
    if not shards:
        raise CacheError("merge needs at least one shard cache")
    out = check_cache_path(out)  # before reading anything: `-o DIR` is a one-line error, not a crash
    readers = [CacheReader(p) for p in shards]
    modalities = _check_compatible(readers)

    clips, seen = [], set()
    for reader in readers:
        for clip in reader.clips.to_clips():
            if clip.id not in seen:
                seen.add(clip.id)
                clips.append(clip)
    clips.sort(key=lambda c: c.id)

    # Written beside the target and renamed at the end: a failed merge never leaves a half cache.
    partial = out.with_name(out.name + ".merging")
    summary = MergeSummary(out=out, clips=len(clips))
    # Holding the target's writer lock: no extract can be writing `out` while it is replaced.
    lock = WriterLock(out).acquire()
    try:
        partial.unlink(missing_ok=True)
        _write_merged(partial, readers, modalities, clips, dataset, summary)
        os.replace(partial, out)
    except BaseException:  # any failure, Ctrl-C included: no half-merged file stays behind
        partial.unlink(missing_ok=True)
        raise
    finally:
        lock.release()
    final = CacheReader(out)
    summary.ok = {m: len(final.ok_ids(m)) for m in final.modalities}
    return summary


def _write_merged(partial: Path, readers, modalities, clips, dataset, summary: MergeSummary) -> None:
    with CacheWriter(partial, dataset=dataset or readers[0].dataset, clips=clips, label_names=readers[0].clips.label_names) as writer:
        for modality in modalities:
            holders = [r for r in readers if modality in r.modalities]
            info = holders[0].info(modality)
            writer.open_modality(modality, info.fingerprint, info.row_shape, info.dtype, options=info.options)
            stored: set[str] = set()
            dropped = 0
            for reader in holders:
                ok_ids = [c for c in reader.ok_ids(modality) if c not in stored]
                dropped += len(reader.ok_ids(modality)) - len(ok_ids)
                for start in range(0, len(ok_ids), BATCH_CLIPS):
                    batch = ok_ids[start : start + BATCH_CLIPS]
                    seqs = reader.load(modality, clips=batch)
                    writer.write(modality, {cid: seqs[i] for i, cid in enumerate(seqs.ids)})
                stored.update(ok_ids)
            # A clip no shard extracted keeps the first recorded reason why.
            for reader in holders:
                codes, reasons = reader.status(modality)
                for i in np.flatnonzero((codes != STATUS_OK) & (codes != STATUS_PENDING)):
                    cid = reader.clips.ids[i]
                    if cid not in stored:
                        writer.fail(modality, cid, reasons[i] or "unknown", status=STATUS_NAMES[int(codes[i])])
                        stored.add(cid)
            summary.duplicates_dropped[modality] = dropped
