"""What every dataset adapter shares: the scan result, the adapter record, and file listing.

Adapters only look at names and sizes (one `stat` per file), never open media, so a scan
of CREMA-D's 7442 clips takes a fraction of a second.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from emo.clip import Clip
from emo.errors import DatasetError


@dataclass
class DatasetScan:
    """What an adapter found under a root: clips, the dataset's full label set, and what it left out."""

    clips: list[Clip]
    label_names: list[str]  # canonical order, including labels no clip carries
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


@dataclass(frozen=True)
class Adapter:
    """A named dataset layout. `scan(root, **options)` does the work; `load_clips` validates and sorts."""

    name: str
    description: str  # one line
    layout: str  # the folder / file-name pattern it expects
    labels: tuple[str, ...] | None  # None: the labels come from the data (manifest)
    scan: Callable[..., DatasetScan]
    option_help: dict[str, str] = field(default_factory=dict)

    @property
    def options(self) -> dict[str, Any]:
        """Keyword options of `scan` and their defaults."""
        params = inspect.signature(self.scan).parameters.values()
        return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}


@dataclass(frozen=True)
class FileEntry:
    path: str  # absolute
    name: str
    stem: str
    ext: str  # lower case, without the dot ("" when none)
    size: int


def require_folder(root: Path, what: str) -> Path:
    if not root.exists():
        raise DatasetError(f"{root}: no such folder ({what} root)")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder ({what} root)")
    return root


def list_files(folder: Path, recursive: bool = False) -> list[FileEntry]:
    """Files of a folder sorted by path; dot-files (.DS_Store, macOS `._x` copies) are OS clutter, not data."""
    entries: list[FileEntry] = []
    pending = [str(folder)]
    while pending:
        with os.scandir(pending.pop()) as listing:
            for entry in listing:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    if recursive:
                        pending.append(entry.path)
                elif entry.is_file():
                    stem, dot, ext = entry.name.rpartition(".")
                    if not dot:
                        stem, ext = entry.name, ""
                    entries.append(FileEntry(entry.path, entry.name, stem, ext.lower(), entry.stat().st_size))
    entries.sort(key=lambda e: e.path)
    return entries


def unknown_code(path: str, field_name: str, code: str, known: Iterable[str]) -> DatasetError:
    return DatasetError(f"{path}: unknown {field_name} code {code!r} (known: {', '.join(known)})")


def as_flag(value: Any, option: str) -> bool:
    """Options may arrive as strings from the command line ("true", "0"...)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise DatasetError(f"option {option}={value!r}: expected true or false")


def as_list(value: Any, option: str) -> list[str] | None:
    """A comma-separated string or a sequence of strings; None stays None."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    items = [item.strip() for item in items if item.strip()]
    if not items:
        raise DatasetError(f"option {option}={value!r}: empty list")
    if len(set(items)) != len(items):
        raise DatasetError(f"option {option}={value!r}: repeated names")
    return items
