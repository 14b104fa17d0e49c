"""Open an HDF5 file as an emo cache, turning h5py's errors into one-line CacheErrors."""

from __future__ import annotations

import json
from pathlib import Path

from emo.cache.schema import FORMAT, SCHEMA_VERSION
from emo.errors import CacheError


def check_cache_path(path: str | Path) -> Path:
    """CacheError unless `path` can be a cache file: not a folder, not under a file, and when it
    exists, an HDF5 file. Called before any work starts, so a typo costs seconds, not a run."""
    import h5py

    path = Path(path)
    if path.is_dir():
        raise CacheError(f"{path}: is a folder, not a cache file; give a file path such as {path / 'cache.h5'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CacheError(f"{path}: {parent} is a file, so no cache can be written under it")
            break
    if path.is_file() and path.stat().st_size > 0 and not h5py.is_hdf5(path):
        raise CacheError(f"{path}: exists and is not an HDF5 file, so not an emo cache; refusing to overwrite it")
    return path


def open_h5(path: str | Path, mode: str):
    """h5py.File(path, mode) with the failure modes a user meets named plainly."""
    import h5py

    path = Path(path)
    if path.is_dir():
        raise CacheError(f"{path}: is a folder, not a cache file")
    if mode == "r" and not path.exists():
        raise CacheError(f"{path}: no such cache file")
    if path.exists() and path.stat().st_size > 0 and not h5py.is_hdf5(path):
        raise CacheError(f"{path}: not an HDF5 file, so not an emo cache")
    try:
        return h5py.File(path, mode)
    except (OSError, ValueError) as exc:
        text = str(exc)
        lowered = text.lower()
        if "truncated" in lowered or "signature" in lowered or "eof" in lowered:
            raise CacheError(f"{path}: truncated or corrupt HDF5 file ({text.splitlines()[0][:120]})") from None
        if "unable to lock" in lowered or "lock file" in lowered:
            raise CacheError(f"{path}: locked by a running writer (an `emo extract` in progress?); wait for it to finish") from None
        raise CacheError(f"{path}: cannot open as HDF5 ({text.splitlines()[0][:160]})") from None


def check_emo_file(h5, path: str | Path) -> None:
    """Refuse foreign HDF5 files and schema versions this emo cannot read."""
    import h5py

    from emo.cache.validation import corrupt, integer_attr

    marker = h5.attrs.get("format")
    if not (isinstance(marker, str) and marker == FORMAT):
        raise CacheError(f"{path}: an HDF5 file but not an emo cache (no format='{FORMAT}' attribute)")
    version = integer_attr(h5, "schema_version", path, "file attribute")
    if version != SCHEMA_VERSION:
        raise CacheError(f"{path}: cache schema version {version} is unknown to this emo (reads version {SCHEMA_VERSION})")
    if "clips" not in h5 or not isinstance(h5["clips"], h5py.Group) or "id" not in h5["clips"]:
        raise corrupt(path, "no clip table (corrupt or half-created)")


def read_json_attr(obj, name: str, default=None):
    raw = obj.attrs.get(name)
    if raw is None:
        return default
    return json.loads(raw if isinstance(raw, str) else raw.decode())
