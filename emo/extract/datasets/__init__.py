"""Dataset adapters: turn a dataset folder (or a manifest) into `Clip` records.

    scan = load_clips("crema-d", "/data/CREMA-D", meta="/data/cremad_meta")
    scan.clips, scan.label_names, scan.skipped

Each adapter lives in its own module and is listed in `_ADAPTERS`; `register_adapter` adds
one from outside the package. `load_clips` is the one entry point: it checks the options
and the root, and guarantees a non-empty, duplicate-free, id-sorted clip list whose labels
all belong to `label_names`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from emo.errors import DatasetError
from emo.extract.datasets import crema_d, emodb, kor_emotion, manifest, mead, ravdess
from emo.extract.datasets.base import Adapter, DatasetScan

__all__ = ["Adapter", "DatasetScan", "get_adapter", "list_adapters", "load_clips", "register_adapter"]

_ADAPTERS: dict[str, Adapter] = {
    module.ADAPTER.name: module.ADAPTER for module in (crema_d, kor_emotion, ravdess, emodb, mead, manifest)
}


def register_adapter(adapter: Adapter) -> Adapter:
    """Make a custom adapter available by name (to `load_clips`, `emo datasets`, `emo extract`)."""
    if adapter.name in _ADAPTERS and _ADAPTERS[adapter.name] is not adapter:
        raise DatasetError(f"a dataset adapter named {adapter.name!r} already exists")
    _ADAPTERS[adapter.name] = adapter
    return adapter


def get_adapter(name: str) -> Adapter:
    try:
        return _ADAPTERS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r} (known: {', '.join(_ADAPTERS)})") from None


def list_adapters() -> list[tuple[str, str, str]]:
    """(name, one-line description, layout) of every adapter, in registration order."""
    return [(a.name, a.description, a.layout) for a in _ADAPTERS.values()]


def load_clips(name: str, root: str | Path, **options: Any) -> DatasetScan:
    """Scan ROOT with the named adapter; raises DatasetError for a missing root, no clips, duplicate ids."""
    adapter = get_adapter(name)
    unknown = sorted(set(options) - set(adapter.options))
    if unknown:
        known = ", ".join(adapter.options) or "none"
        raise DatasetError(f"dataset {name!r} has no option {', '.join(unknown)} (options: {known})")
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"{root}: no such file or folder ({name} root)")
    scan = adapter.scan(root.resolve(), **options)

    if not scan.clips:
        hint = ""
        if scan.skipped:
            reason, count = Counter(reason for _, reason in scan.skipped).most_common(1)[0]
            example = next(path for path, r in scan.skipped if r == reason)
            hint = f"; {len(scan.skipped)} file(s) skipped, {count} as {example}: {reason}"
        raise DatasetError(f"{root}: no {name} clips found (expected {adapter.layout}){hint}")
    seen: dict[str, Any] = {}
    for clip in scan.clips:
        if clip.id in seen:
            first = seen[clip.id]
            raise DatasetError(
                f"{root}: duplicate clip id {clip.id!r} "
                f"({first.audio or first.video or first.text} and {clip.audio or clip.video or clip.text})"
            )
        seen[clip.id] = clip
    allowed = set(scan.label_names)
    for clip in scan.clips:
        if clip.label not in allowed:
            raise DatasetError(f"{root}: clip {clip.id} has label {clip.label!r}, not in {scan.label_names}")
    scan.clips.sort(key=lambda clip: clip.id)
    return scan
