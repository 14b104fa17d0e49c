"""`emo runs`: one summary row per run directory, for comparing fits side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from emo.fusion.metrics import HEADLINE
from emo.fusion.run_dir import find_runs, load_run

COLUMNS = ["run", "head", "modalities", "split", "seed", *HEADLINE]


def summarize_runs(paths: Sequence[str | Path]) -> list[dict]:
    """Rows with run, head, modalities, split, seed and the headline metrics (with *_std for k-fold).

    A run found under a folder argument is named by its path relative to that folder.
    """
    rows = []
    for root in map(Path, paths):
        for path in find_runs([root]):
            rows.append(_summary(path, path.relative_to(root) if path != root else path))
    return rows


def _summary(path: Path, shown: Path) -> dict:
    run = load_run(path)
    config, metrics = run.config, run.metrics
    split = config.get("split") if isinstance(config.get("split"), dict) else {}
    row = {
        "run": str(shown),
        "head": config["head"]["name"],  # load_run checked the record
        "modalities": ",".join(config.get("modalities", [])),
        "split": str(split.get("spec", "?")),
        "seed": str(split.get("seed", "")),
    }
    test_cache = config.get("test_cache")
    if isinstance(test_cache, dict) and isinstance(test_cache.get("path"), str):  # scored on another corpus
        row["split"] += f" · test {Path(test_cache['path']).name}"
    for key in (k for name in HEADLINE for k in (name, f"{name}_std")):
        value = metrics.get(key)
        # Numbers only: a damaged or hand-edited metrics.json leaves a blank cell, never a crash.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            row[key] = value
    return row
