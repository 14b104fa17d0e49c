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
    row = {
        "run": str(shown),
        "head": config.get("head", {}).get("name", "?"),
        "modalities": ",".join(config.get("modalities", [])),
        "split": config.get("split", {}).get("spec", "?"),
        "seed": config.get("split", {}).get("seed", ""),
    }
    for key in HEADLINE:
        if key in metrics:
            row[key] = metrics[key]
        if f"{key}_std" in metrics:
            row[f"{key}_std"] = metrics[f"{key}_std"]
    return row
