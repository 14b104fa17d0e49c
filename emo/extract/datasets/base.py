"""What every dataset adapter shares: the scan result, the adapter record, and file listing.

Adapters only look at names and sizes (one `stat` per file), never open media, so a scan
of CREMA-D's 7442 clips takes a fraction of a second.
"""

from __future__ import annotations

import errno
import inspect
import os
import stat
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


def list_files(folder: Path, recursive: bool = False, skipped: list[tuple[str, str]] | None = None) -> list[FileEntry]:
    """Files of a folder sorted by path; dot-files (.DS_Store, macOS `._x` copies) are OS clutter, not data.

    File-system oddities never abort the scan: a symlink loop (file or folder), a dangling
    symlink, a folder reached twice through links, or an entry that cannot be stat'ed becomes
    a (path, reason) in `skipped`, listed with the adapter's other skips.
    """
    entries: list[FileEntry] = []
    skips: list[tuple[str, str]] = [] if skipped is None else skipped
    seen_dirs: set[tuple[int, int]] = set()
    try:
        top = os.stat(folder)
        seen_dirs.add((top.st_dev, top.st_ino))
    except OSError:
        pass
    pending = [str(folder)]
    while pending:
        try:
            listing = list(os.scandir(pending.pop()))
        except OSError as exc:
            skips.append((exc.filename or str(folder), f"unreadable folder ({exc.strerror})"))
            continue
        for entry in listing:
            if entry.name.startswith("."):
                continue
            try:
                st = entry.stat()  # follows symlinks: a loop or a dangling link raises here
            except OSError as exc:
                skips.append((entry.path, _link_problem(entry.path, exc)))
                continue
            if stat.S_ISDIR(st.st_mode):
                if not recursive:
                    continue
                key = (st.st_dev, st.st_ino)
                if key in seen_dirs:
                    skips.append((entry.path, f"symlink loop: folder already scanned as {os.path.realpath(entry.path)}"))
                    continue
                seen_dirs.add(key)
                pending.append(entry.path)
            elif stat.S_ISREG(st.st_mode):
                stem, dot, ext = entry.name.rpartition(".")
                if not dot:
                    stem, ext = entry.name, ""
                entries.append(FileEntry(entry.path, entry.name, stem, ext.lower(), st.st_size))
            else:
                skips.append((entry.path, "not a regular file (device, socket or pipe)"))
    entries.sort(key=lambda e: e.path)
    return entries


def _link_problem(path: str, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop (the link resolves to itself)"
    if exc.errno == errno.ENOENT and os.path.islink(path):
        return f"dangling symlink (its target {os.readlink(path)} does not exist)"
    return f"cannot stat ({exc.strerror})"


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
