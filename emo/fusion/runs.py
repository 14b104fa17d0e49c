"""`emo runs`: one summary row per run directory, for comparing fits side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from emo.errors import EmoError
from emo.fusion.metrics import HEADLINE
from emo.fusion.run_dir import find_runs, load_run

COLUMNS = ["run", "head", "modalities", "split", "seed", *HEADLINE]


def summarize_runs(paths: Sequence[str | Path], damaged: list[str] | None = None) -> list[dict]:
    """Rows with run, head, modalities, split, seed and the headline metrics (with *_std for k-fold).

    A run found under a folder argument is named by its path relative to that folder. A run that
    does not load raises its one-line EmoError, unless `damaged` is a list: its message is then
    appended there and the other runs are still summarised (one bad folder in a sweep of 200
    must not hide the other 199).
    """
    rows = []
    for root in map(Path, paths):
        for path in find_runs([root]):
            try:
                rows.append(_summary(path, path.relative_to(root) if path != root else path))
            except EmoError as err:
                if damaged is None:
                    raise
                damaged.append(str(err))
    return rows


def _summary(path: Path, shown: Path) -> dict:
    run = load_run(path)
    record, metrics = run.record, run.metrics
    row = {
        "run": str(shown),
        "head": record.head["name"],  # load_run checked the record
        "modalities": ",".join(record.modalities),
        "split": record.split.spec if record.split is not None else "?",
        "seed": str(record.split.seed if record.split is not None and record.split.seed is not None else ""),
    }
    if record.test_cache is not None:  # scored on another corpus
        row["split"] += f" · test {Path(record.test_cache.path).name}"
    for key in (k for name in HEADLINE for k in (name, f"{name}_std")):
        value = metrics.get(key)
        # Numbers only: a damaged or hand-edited metrics.json leaves a blank cell, never a crash.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            row[key] = value
    return row
