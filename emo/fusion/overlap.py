"""Clips of another cache that a run trained or validated on (scoring them would flatter the run).

A clip overlaps when its id is one of the run's training/validation ids, or when its source
file (audio or video path, as the cache records it) is the source of one of them; the second
check needs the run's training cache and is skipped, and said so, when that cache is gone.

Policies (`--overlap`): `refuse` (the default: a cross-corpus score is meant to be on unseen
clips, so a leak stops the command with the count), `exclude` (score the rest, count them),
`include` (score them anyway, count them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from emo.errors import EmoError

POLICIES = ("refuse", "exclude", "include")


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise EmoError(f"--overlap {policy!r}: use one of {', '.join(POLICIES)}")
    return policy


@dataclass
class Overlap:
    policy: str
    ids: list[str] = field(default_factory=list)  # the other cache's overlapping clip ids
    by_id: int = 0
    by_source: int = 0  # overlapping by source file only (their ids differ)
    sources_checked: bool = False

    def describe(self) -> dict:
        return {"policy": self.policy, "clips": len(self.ids), "by_id": self.by_id, "by_source": self.by_source,
                "sources_checked": self.sources_checked}


def trained_ids(splits: Sequence[dict]) -> set[str]:
    """Every clip any of the run's models trained or validated on."""
    return {cid for fold in splits for part in ("train", "val") for cid in fold.get(part, [])}


def _source_keys(paths: Iterable[str]) -> set[str]:
    return {os.path.normpath(p) for p in paths if p}


def trained_sources(cache: str | Path, ids: set[str]) -> set[str] | None:
    """Source files of `ids` in the run's training cache; None when that cache cannot be read."""
    from emo.cache import CacheReader

    try:
        table = CacheReader(cache).clips
    except (EmoError, OSError):
        return None
    rows = [i for i, cid in enumerate(table.ids) if cid in ids]
    return _source_keys([table.audio_paths[i] for i in rows] + [table.video_paths[i] for i in rows])


def find_overlap(table, rows: Sequence[int], seen_ids: set[str], seen_sources: set[str] | None, policy: str) -> Overlap:
    """The clips at `rows` of the clip table `table` that overlap the run's training/validation clips."""
    found = Overlap(policy, sources_checked=seen_sources is not None)
    for i in rows:
        cid = table.ids[i]
        if cid in seen_ids:
            found.by_id += 1
        elif seen_sources and _source_keys([table.audio_paths[i], table.video_paths[i]]) & seen_sources:
            found.by_source += 1
        else:
            continue
        found.ids.append(cid)
    return found


def refuse_message(where, overlap: Overlap, total: int) -> str:
    how = f"{overlap.by_id} by clip id, {overlap.by_source} by source file" if overlap.sources_checked else (
        "by clip id; source files unchecked, the training cache is gone")
    return (f"{where}: {len(overlap.ids)} of its {total} clips to score were in the run's training or validation "
            f"data ({how}; e.g. {overlap.ids[0]}); pass --overlap exclude to score the rest, or --overlap include "
            "to score them anyway")
