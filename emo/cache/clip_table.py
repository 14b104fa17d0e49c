"""The cache's clip table written from Clip records, and kept in step with the dataset on rerun.

A rerun of `emo extract` hands the writer the dataset's clips as they are now. The stored
table must follow them: a changed label, speaker, transcript, path, duration or extra is
updated in place; a clip whose media changed (another path, or another size / mtime stamp
of the same path) goes back to pending in the modalities that read that media, so it is
extracted again; a clip no longer in the dataset is dropped (when the run covers the whole
dataset) or counted as absent. `TableChanges` says what happened, for the run's summary.

The sync rewrites only the small per-clip arrays (never feature data) before any extraction,
in well under a second for tens of thousands of clips. It is not atomic: a run killed inside
it can leave columns of different lengths, which every reader then refuses as a corrupt cache
(validation.py) rather than misreading.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from emo.cache.schema import MODALITIES, STATUS_PENDING
from emo.clip import Clip
from emo.errors import CacheError

STAMP_COLUMNS = ("audio_stamp", "video_stamp")  # "size:mtime_ns" of each media file at extraction
# Which stored modalities read which media: a changed audio file (or, for a clip without one,
# its video's audio track) invalidates audio; a changed video invalidates faces and visual.
TEXT_MODALITIES = ("text",)
VIDEO_MODALITIES = ("faces", "visual")
MAX_EXAMPLES = 5


@dataclass
class TableChanges:
    """What a rerun changed in the clip table (all zero on a first run or an unchanged dataset)."""

    added: int = 0
    removed: int = 0  # dropped from the cache: no longer in the dataset
    absent: int = 0  # in the cache, not in this run's clips, kept (a shard run, or drop_absent off)
    updated: dict[str, int] = field(default_factory=dict)  # column -> clips whose value changed
    reextract: dict[str, int] = field(default_factory=dict)  # modality -> clips reset to pending
    examples: list[str] = field(default_factory=list)  # "clip: label 'sad' -> 'angry'" for the first few

    @property
    def any(self) -> bool:
        return bool(self.added or self.removed or self.absent or self.updated or self.reextract)

    def describe(self) -> str:
        """One line for the summary: 'clip table: 2 added, 3 updated (label 2, speaker 1), ...'."""
        parts = []
        if self.added:
            parts.append(f"{self.added} added")
        if self.updated:
            detail = ", ".join(f"{name} {count}" for name, count in sorted(self.updated.items()))
            parts.append(f"{sum(self.updated.values())} field changes ({detail})")
        if self.reextract:
            detail = ", ".join(f"{name} {count}" for name, count in self.reextract.items())
            parts.append(f"media or text changed, extracted again: {detail}")
        if self.removed:
            parts.append(f"{self.removed} no longer in the dataset, dropped")
        if self.absent:
            parts.append(f"{self.absent} not in this run's clips, kept")
        return "clip table: " + "; ".join(parts) if parts else "clip table: unchanged"


def media_stamp(path: str | None) -> str:
    """'size:mtime_ns' of a media file ('' when absent or unreadable): cheap, one stat per file."""
    if not path:
        return ""
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{st.st_size}:{st.st_mtime_ns}"


def string_columns(clips: Sequence[Clip]) -> dict[str, list[str]]:
    return {
        "id": [c.id for c in clips],
        "speaker": [c.speaker for c in clips],
        "text": [c.text or "" for c in clips],
        "audio_path": [c.audio or "" for c in clips],
        "video_path": [c.video or "" for c in clips],
        "audio_stamp": [media_stamp(c.audio) for c in clips],
        "video_stamp": [media_stamp(c.video) for c in clips],
    }


def durations(clips: Sequence[Clip]) -> np.ndarray:
    return np.array([np.nan if c.duration is None else c.duration for c in clips], dtype=np.float32)


def extra_names(clips: Sequence[Clip]) -> list[str]:
    return sorted({key for c in clips for key in c.extras})


def extra_column(clips: Sequence[Clip], name: str) -> list[str]:
    return [str(c.extras.get(name, "")) for c in clips]


def label_indices(clips: Sequence[Clip], names: Sequence[str], path) -> np.ndarray:
    lookup = {n: i for i, n in enumerate(names)}
    unknown = sorted({c.label for c in clips} - set(lookup))
    if unknown:
        raise CacheError(f"{path}: labels {unknown} are not in the label set {list(names)}")
    return np.array([lookup[c.label] for c in clips], dtype=np.int16)


def str_dataset(group, name: str, values: Sequence[str]):
    import h5py

    return group.create_dataset(
        name, data=np.array(list(values), dtype=object), dtype=h5py.string_dtype(), maxshape=(None,), chunks=(1024,)
    )


def _strings(dataset) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else s for s in dataset[:]]


def _rewrite(dataset, values) -> None:
    """Replace a resizable 1-D/2-D dataset's rows with `values` (same trailing shape)."""
    dataset.resize(len(values), axis=0)
    if len(values):
        dataset[...] = values


def create_table(h5, clips: Sequence[Clip], names: Sequence[str], path) -> None:
    table = h5.create_group("clips")
    table.attrs["label_names"] = json.dumps(list(names))
    table.create_dataset("label", data=label_indices(clips, names, path), maxshape=(None,), chunks=(4096,))
    table.create_dataset("duration", data=durations(clips), maxshape=(None,), chunks=(4096,))
    for column, values in string_columns(clips).items():
        str_dataset(table, column, values)
    extras = table.create_group("extras")
    for name in extra_names(clips):
        str_dataset(extras, name, extra_column(clips, name))


def sync_table(h5, clips: Sequence[Clip], label_names: Sequence[str] | None, drop_absent: bool, path) -> TableChanges:
    """Bring the stored clip table in step with `clips` (see the module docstring)."""
    table = h5["clips"]
    changes = TableChanges()
    names = json.loads(table.attrs["label_names"])
    wanted_names = list(label_names) if label_names else sorted({c.label for c in clips})
    # New labels go at the end: stored label indices keep their meaning.
    grown = names + [n for n in wanted_names if n not in names] + sorted({c.label for c in clips} - set(names) - set(wanted_names))
    if label_names is not None:
        unknown = sorted({c.label for c in clips} - set(wanted_names))
        if unknown:
            raise CacheError(f"{path}: labels {unknown} are not in the label set {wanted_names}")
    if grown != names:
        table.attrs["label_names"] = json.dumps(grown)
        names = grown

    ids = _strings(table["id"])
    by_id = {c.id: c for c in clips}
    # Older caches have no stamps: take today's, so only later changes count.
    for column in STAMP_COLUMNS:
        if column not in table:
            source = "audio_path" if column == "audio_stamp" else "video_path"
            str_dataset(table, column, [media_stamp(p) for p in _strings(table[source])])
    if drop_absent:
        keep = np.array([cid in by_id for cid in ids], dtype=bool)
        if not keep.all():
            changes.removed = int((~keep).sum())
            _drop_rows(h5, keep)
            ids = [cid for cid, k in zip(ids, keep) if k]
    else:
        changes.absent = sum(1 for cid in ids if cid not in by_id)

    _update_rows(h5, ids, by_id, names, changes, path)
    new = [c for c in clips if c.id not in set(ids)]
    if new:
        _append_rows(h5, new, names, path)
        changes.added = len(new)
    return changes


def _modality_groups(h5):
    return [h5[m] for m in MODALITIES if m in h5]


def _drop_rows(h5, keep: np.ndarray) -> None:
    """Remove clip rows (table and every modality's offsets/status/reason); data rows are left unreferenced."""
    table = h5["clips"]
    for name in list(table):
        if name == "extras":
            continue
        _rewrite(table[name], table[name][:][keep])
    for name in table["extras"]:
        _rewrite(table["extras"][name], table["extras"][name][:][keep])
    for group in _modality_groups(h5):
        for name in ("offsets", "status", "reason"):
            _rewrite(group[name], group[name][:][keep])


def _update_rows(h5, ids: list[str], by_id: dict[str, Clip], names: list[str], changes: TableChanges, path) -> None:
    table = h5["clips"]
    present = [i for i, cid in enumerate(ids) if cid in by_id]
    if not present:
        return
    current = [by_id[ids[i]] for i in present]
    rows = np.array(present, dtype=np.int64)
    changed_rows: dict[str, np.ndarray] = {}

    def compare(column: str, stored: np.ndarray, now: np.ndarray, equal: np.ndarray) -> None:
        differ = ~equal
        if differ.any():
            changes.updated[column] = changes.updated.get(column, 0) + int(differ.sum())
            changed_rows[column] = rows[differ]
            for k in np.flatnonzero(differ)[: MAX_EXAMPLES - len(changes.examples)]:
                changes.examples.append(f"{ids[rows[k]]}: {column} {float(stored[k])} -> {float(now[k])}")
            full = table[column][:] if column in table else None
            if full is not None:
                full[rows[differ]] = now[differ]
                table[column][...] = full

    labels = table["label"][:]
    stored_labels = np.array([names[int(i)] for i in labels[rows]], dtype=object)
    now_labels = np.array([c.label for c in current], dtype=object)
    differ = stored_labels != now_labels
    if differ.any():
        changes.updated["label"] = int(differ.sum())
        for k in np.flatnonzero(differ)[:MAX_EXAMPLES]:
            changes.examples.append(f"{ids[rows[k]]}: label {stored_labels[k]!r} -> {now_labels[k]!r}")
        labels[rows[differ]] = label_indices([current[k] for k in np.flatnonzero(differ)], names, path)
        table["label"][...] = labels

    stored_d = table["duration"][:]
    now_d = durations(current)
    same_d = (stored_d[rows] == now_d) | (np.isnan(stored_d[rows]) & np.isnan(now_d))
    compare("duration", stored_d[rows], now_d, same_d)

    for column, values in string_columns(current).items():
        if column == "id":
            continue
        stored = np.array(_strings(table[column]), dtype=object)
        now = np.array(values, dtype=object)
        same = stored[rows] == now
        if column in STAMP_COLUMNS:  # a stamp change is not a field change; it only triggers re-extraction
            if not same.all():
                changed_rows[column] = rows[~same]
                full = stored.copy()
                full[rows[~same]] = now[~same]
                table[column][...] = full
            continue
        if not same.all():
            changes.updated[column] = int((~same).sum())
            changed_rows[column] = rows[~same]
            for k in np.flatnonzero(~same)[: max(0, MAX_EXAMPLES - len(changes.examples))]:
                shown = f"{stored[rows[k]]!r} -> {now[k]!r}" if column == "speaker" else "changed"
                changes.examples.append(f"{ids[rows[k]]}: {column.replace('_', ' ')} {shown}")
            full = stored.copy()
            full[rows[~same]] = now[~same]
            table[column][...] = full

    extras = table["extras"]
    n = len(ids)
    for name in extra_names(current):
        if name not in extras:
            str_dataset(extras, name, [""] * n)
    for name in list(extras):
        stored = np.array(_strings(extras[name]), dtype=object)
        now = np.array(extra_column(current, name), dtype=object)
        same = stored[rows] == now
        if not same.all():
            changes.updated[name] = int((~same).sum())
            full = stored.copy()
            full[rows[~same]] = now[~same]
            extras[name][...] = full

    _reset_modalities(h5, changed_rows, table, changes)


def _reset_modalities(h5, changed_rows: dict[str, np.ndarray], table, changes: TableChanges) -> None:
    """Clips whose media (or transcript) changed go back to pending where that input is read."""
    audio_paths = np.array(_strings(table["audio_path"]), dtype=object)
    video_changed = np.union1d(changed_rows.get("video_path", []), changed_rows.get("video_stamp", [])).astype(np.int64)
    audio_changed = np.union1d(changed_rows.get("audio_path", []), changed_rows.get("audio_stamp", [])).astype(np.int64)
    # A clip without an audio file takes its sound from the video.
    audio_changed = np.union1d(audio_changed, video_changed[audio_paths[video_changed] == ""]).astype(np.int64)
    text_changed = np.asarray(changed_rows.get("text", []), dtype=np.int64)
    resets = {"audio": audio_changed, "text": text_changed}
    for modality in VIDEO_MODALITIES:
        resets[modality] = video_changed
    for modality, rows in resets.items():
        if modality not in h5 or not len(rows):
            continue
        group = h5[modality]
        rows = np.sort(rows)
        status = group["status"][:]
        touched = rows[status[rows] != STATUS_PENDING]
        if not len(touched):
            continue
        status[touched] = STATUS_PENDING
        offsets = group["offsets"][:]
        offsets[touched] = 0
        reasons = group["reason"][:]
        reasons[touched] = ""
        # Status first: a crash after it leaves pending clips, which a rerun extracts again.
        group["status"][...] = status
        group["offsets"][...] = offsets
        group["reason"][...] = reasons
        changes.reextract[modality] = int(len(touched))


def _append_rows(h5, new: Sequence[Clip], names: list[str], path) -> None:
    table = h5["clips"]

    def append(dataset, values) -> None:
        start = dataset.shape[0]
        dataset.resize(start + len(values), axis=0)
        dataset[start:] = values

    append(table["label"], label_indices(new, names, path))
    append(table["duration"], durations(new))
    for column, values in string_columns(new).items():
        append(table[column], np.array(values, dtype=object))
    for name in table["extras"]:
        append(table["extras"][name], np.array(extra_column(new, name), dtype=object))
    n = table["id"].shape[0]
    # Offsets and status of existing modalities grow with the clip table; new clips are pending.
    for group in _modality_groups(h5):
        old = group["status"].shape[0]
        for name in ("offsets", "status", "reason"):
            group[name].resize(n, axis=0)
        group["reason"][old:] = np.array([""] * (n - old), dtype=object)
