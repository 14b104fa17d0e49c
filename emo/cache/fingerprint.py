"""Fingerprints: the JSON description of everything that changed a modality's stored values."""

from __future__ import annotations

import json
from typing import Any


def canonical(fingerprint: dict[str, Any]) -> str:
    """Stable JSON text: key order and spacing never make two equal fingerprints differ."""
    return json.dumps(fingerprint, sort_keys=True, separators=(",", ":"), default=str)


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable 'field: old -> new' lines for the top-level fields that differ."""
    lines = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key, "<absent>"), new.get(key, "<absent>")
        if canonical({"v": before}) != canonical({"v": after}):
            lines.append(f"{key}: {before!r} -> {after!r}")
    return lines
