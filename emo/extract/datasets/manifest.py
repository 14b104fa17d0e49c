"""Any dataset, described by a CSV or JSONL manifest: one row per clip.

Columns: id, label, speaker (required), audio / video (paths, relative to the manifest's
folder), text, duration (seconds); every other column becomes an extra. ROOT is the
manifest file, or a folder holding manifest.csv or manifest.jsonl.

A manifest is data someone handed over: media paths are confined to the manifest's folder
(an absolute path or a `..` that climbs out of it is a skipped row with the reason) unless
the `allow_outside_paths` option (`emo extract --allow-outside-paths`) says otherwise.
"""

from __future__ import annotations

import csv
import errno
import json
import math
import os
import stat
from pathlib import Path
from typing import Any, Iterator

from emo.clip import Clip
from emo.errors import DatasetError
from emo.extract.datasets.base import Adapter, DatasetScan, as_flag, as_list

REQUIRED = ("id", "label", "speaker")
MEDIA = ("audio", "video")
KNOWN = REQUIRED + MEDIA + ("text", "duration")
DEFAULT_NAMES = ("manifest.csv", "manifest.jsonl")


def _find(root: Path) -> Path:
    if root.is_file():
        return root
    found = [root / name for name in DEFAULT_NAMES if (root / name).is_file()]
    if not found:
        raise DatasetError(f"{root}: no {' or '.join(DEFAULT_NAMES)} in this folder; give the manifest file")
    if len(found) > 1:
        raise DatasetError(f"{root}: both {' and '.join(DEFAULT_NAMES)} in this folder; give the manifest file")
    return found[0]


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}")
        if not any(c in columns for c in ("audio", "video", "text")):
            raise DatasetError(f"{path}: no audio, video or text column")
        for row in reader:
            yield reader.line_num, row


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, encoding="utf-8-sig") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DatasetError(f"{path}:{line_number}: not JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{line_number}: expected a JSON object per line")
            yield line_number, row


def _value(raw: Any) -> str | None:
    """A cell as a stripped string; empty cells and JSON nulls are absent."""
    if raw is None:
        return None
    if isinstance(raw, (dict, list)):
        return json.dumps(raw, ensure_ascii=False)
    text = str(raw).strip()
    return text or None


def _media_path(folder: Path, column: str, raw: str, allow_outside: bool) -> tuple[str | None, str | None]:
    """(absolute path of a manifest row's media file, None) or (None, why the row is skipped)."""
    given = Path(raw).expanduser()
    joined = Path(os.path.normpath(folder / given))  # lexical: `..` counted before any link is followed
    outside = given.is_absolute() or os.path.commonpath([str(folder), str(joined)]) != str(folder)
    if outside and not allow_outside:
        return None, (
            f"{column} path {raw!r} is outside the manifest's folder {folder} "
            "(absolute paths and '..' are refused; --allow-outside-paths allows them)"
        )
    try:
        st = os.stat(joined)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, f"{column} file is a symlink loop: {joined}"
        if os.path.islink(joined):
            return None, f"{column} file is a dangling symlink: {joined} -> {os.readlink(joined)}"
        return None, f"{column} file not found: {joined}"
    if not stat.S_ISREG(st.st_mode):
        return None, f"{column} path is not a file: {joined}"
    return str(joined.resolve()), None


def _duration(raw: str) -> tuple[float | None, str | None]:
    try:
        value = float(raw)
    except ValueError:
        return None, f"duration {raw!r} is not a number"
    if not math.isfinite(value) or value <= 0:
        return None, f"duration {raw!r} is not a positive finite number of seconds"
    return value, None


def scan(root: Path, *, labels: str | list[str] | None = None, allow_outside_paths: bool = False) -> DatasetScan:
    path = _find(root)
    folder = path.parent
    order = as_list(labels, "labels")
    allow_outside = as_flag(allow_outside_paths, "allow_outside_paths")
    rows = _jsonl_rows(path) if path.suffix.lower() in (".jsonl", ".ndjson") else _csv_rows(path)

    skipped: list[tuple[str, str]] = []
    clips: list[Clip] = []
    first_row: dict[str, int] = {}
    try:
        for line, raw in rows:
            where = f"{path}:{line}"
            row = {str(k).strip(): _value(v) for k, v in raw.items() if k is not None}
            absent = [c for c in REQUIRED if row.get(c) is None]
            if absent:
                skipped.append((where, f"no {', '.join(absent)}"))
                continue
            clip_id, label = row["id"], row["label"]
            if clip_id in first_row:
                raise DatasetError(f"{path}: duplicate clip id {clip_id!r} (lines {first_row[clip_id]} and {line})")
            first_row[clip_id] = line
            if order is not None and label not in order:
                raise DatasetError(f"{where}: label {label!r} is not in the labels option ({', '.join(order)})")
            media: dict[str, str] = {}
            missing = None
            for column in MEDIA:
                if row.get(column) is not None:
                    media_path, missing = _media_path(folder, column, row[column], allow_outside)
                    if missing:
                        break
                    media[column] = media_path
            if missing:
                skipped.append((where, missing))
                continue
            if not media and row.get("text") is None:
                skipped.append((where, "no audio, video or text"))
                continue
            duration = None
            if row.get("duration") is not None:
                duration, bad = _duration(row["duration"])
                if bad:
                    skipped.append((where, bad))
                    continue
            clips.append(
                Clip(
                    id=clip_id,
                    label=label,
                    speaker=row["speaker"],
                    audio=media.get("audio"),
                    video=media.get("video"),
                    text=row.get("text"),
                    duration=duration,
                    extras={k: v for k, v in row.items() if k not in KNOWN and k and v is not None},
                )
            )
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"{path}: cannot read ({err})") from None

    label_names = order if order is not None else sorted({clip.label for clip in clips})
    return DatasetScan(clips=clips, label_names=label_names, skipped=skipped)


ADAPTER = Adapter(
    name="manifest",
    description="any dataset listed in a CSV or JSONL manifest (id, label, speaker, audio/video/text, extras)",
    layout="ROOT = manifest.csv / .jsonl with columns id,label,speaker + audio,video,text (paths relative to it)",
    labels=None,
    scan=scan,
    option_help={
        "labels": "comma-separated label order (default: sorted labels found); other labels are an error",
        "allow_outside_paths": "true: accept absolute media paths and '..' out of the manifest's folder (default: refused)",
    },
)
