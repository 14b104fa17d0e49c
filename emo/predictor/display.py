"""How `emo predict` shows its results: a rich table for people, JSON for machines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from emo.predictor.scoring import Prediction


def predictions_json(predictions: Sequence[Prediction]) -> str:
    """A JSON list: {file, files, probabilities{label: p}, top, missing_modalities, ...} per clip."""
    return json.dumps([p.to_dict() for p in predictions], indent=2, ensure_ascii=False)


def predictions_table(predictions: Sequence[Prediction], top: int, title: str | None = None):
    """One row per scored clip: its top `top` classes with probabilities, and what it lacked."""
    from rich.table import Table
    from rich.text import Text

    scored = [p for p in predictions if p.error is None]
    k = max(1, min(top, max((len(p.probabilities) for p in scored), default=1)))
    table = Table(title=Text(title) if title else None, title_justify="left")  # the run path: not markup
    table.add_column("clip", overflow="fold", ratio=1, min_width=12)
    for rank in range(1, k + 1):
        table.add_column(f"#{rank}", no_wrap=True)
    table.add_column("missing", overflow="fold", min_width=7)
    for p in scored:
        ranked = [Text(f"{label} {prob:.3f}", style="bold" if r == 0 else "") for r, (label, prob) in enumerate(p.ranked(k))]
        missing = ", ".join(f"{m} ({p.reasons[m]})" for m in p.missing) or "-"
        # File names only: the paths are in the --json output, and a narrow terminal needs the room.
        table.add_row(Text(" + ".join(Path(f).name for f in p.files)), *ranked, Text(missing))
    return table
