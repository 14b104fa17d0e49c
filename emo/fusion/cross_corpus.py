"""Scoring a run on another corpus: a cache built with the same backbones, other clips, other labels.

    cross = prepare_cross("emodb.h5", keys=["audio"], fingerprints=..., run_classes=[...], ...)
    metrics, predictions = score_heads(heads, cross, device)

The other cache's classes are matched to the run's by name or `--label-map` (emo.fusion.label_map);
clips of a class with no counterpart, clips the run trained or validated on (emo.fusion.overlap,
unless included) and clips lacking a modality are left out and counted. The model's top class is
taken among the shared classes only, so the scores are those of a K-shared-class problem (chance
1/K); how often its unrestricted top class was a run class the other corpus lacks is counted
(`predicted_unshared`). Everything left out is in `metrics["cross_corpus"]` and its `notes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from emo.errors import EmoError
from emo.fusion.data import CachedData, _labels, load_data
from emo.fusion.label_map import LabelMapping, parse_label_map, resolve_label_map
from emo.fusion.metrics import aggregate_folds, score
from emo.fusion.overlap import Overlap, check_policy, find_overlap, refuse_message
from emo.fusion.predictions import Predictions


@dataclass
class CrossCorpus:
    """Another cache's clips, loaded and mapped to the run's classes, ready for the run's heads."""

    cache: Path
    dataset: str
    data: CachedData
    keys: list[str]
    rows: np.ndarray  # data rows scored
    true: np.ndarray  # (len(data),) run class index per data row
    mapping: LabelMapping
    overlap: Overlap
    left_out: dict  # counts: unlabelled, by_class {source class: n}, overlap, missing_modality

    @property
    def ids(self) -> list[str]:
        return [self.data.ids[r] for r in self.rows]

    def describe(self) -> dict:
        return {"cache": str(self.cache.resolve()), "dataset": self.dataset, "label_map": self.mapping.describe(),
                "overlap": self.overlap.describe(), "left_out": self.left_out, "scored": int(len(self.rows))}

    def notes(self) -> list[str]:
        """What was left out or pooled, one line each, for the terminal and metrics.json."""
        lines = []
        by_class = self.left_out["by_class"]
        if by_class:
            counts = ", ".join(f"{name} {n}" for name, n in by_class.items())
            lines.append(f"{sum(by_class.values())} clips of classes without a run counterpart left out ({counts})")
        if self.left_out["unlabelled"]:
            lines.append(f"{self.left_out['unlabelled']} unlabelled clips left out")
        renamed = {s: d for s, d in self.mapping.to_run.items() if s != d}
        if renamed:
            lines.append("scored as: " + ", ".join(f"{s} -> {d}" for s, d in renamed.items()))
        if self.mapping.unshared:
            lines.append(f"run classes absent from {self.cache.name}: {', '.join(self.mapping.unshared)} "
                         "(predictions restricted to the shared classes)")
        if self.overlap.ids:
            verb = {"exclude": "left out", "include": "scored anyway"}[self.overlap.policy]
            lines.append(f"{len(self.overlap.ids)} clips the run trained or validated on {verb} (--overlap "
                         f"{self.overlap.policy})")
        elif not self.overlap.sources_checked:
            lines.append("overlap with training checked by clip id only (the training cache is gone)")
        if self.left_out["missing_modality"]:
            lines.append(f"{self.left_out['missing_modality']} clips lacking {', '.join(self.keys)} left out")
        return lines


def prepare_cross(
    cache: str | Path,
    *,
    keys: Sequence[str],
    fingerprints: dict,
    layers: dict,
    run_classes: Sequence[str],
    seen_ids: set[str],
    seen_sources: set[str] | None,
    label_map: Sequence[str] | str | dict | None = None,
    overlap: str = "refuse",
    label_column: str | None = None,
    allow_missing: bool = False,
    device="cpu",
) -> CrossCorpus:
    """Check, map and load `cache` for scoring; every refusal is one EmoError line."""
    from emo.cache import CacheReader
    from emo.fusion.evaluate import check_fingerprints  # evaluate imports this module

    check_policy(overlap)
    cache = Path(cache)
    reader = CacheReader(cache)
    check_fingerprints(fingerprints, reader, keys)
    values, names = _labels(reader, label_column, None, True)
    given = label_map if isinstance(label_map, dict) else parse_label_map(label_map)
    mapping = resolve_label_map(names, run_classes, given, str(cache))
    to_run = mapping.source_to_run_index()
    run_index = to_run[values]
    counts = np.bincount(values[values >= 0], minlength=len(names))
    by_class = {name: int(counts[i]) for i, name in enumerate(names) if name in mapping.left_out and counts[i]}
    candidates = np.flatnonzero(run_index >= 0)
    table = reader.clips
    found = find_overlap(table, candidates, seen_ids, seen_sources, overlap)
    if found.ids and overlap == "refuse":
        raise EmoError(refuse_message(cache, found, len(candidates)))
    if found.ids and overlap == "exclude":
        drop = set(found.ids)
        candidates = np.array([i for i in candidates if table.ids[i] not in drop], dtype=np.int64)
    if candidates.size == 0:
        raise EmoError(f"{cache}: no clip left to score (every clip of a shared class was in the run's training "
                       "or validation data)")
    data = load_data(cache, keys, layers=layers, label_column=label_column, clip_ids=[table.ids[i] for i in candidates],
                     device=device, reader=reader)
    rows = data.rows_with(keys, allow_missing)
    if rows.size == 0:
        raise EmoError(f"{cache}: no clip of the shared classes has {', '.join(keys)}")
    left_out = {"unlabelled": int((values < 0).sum()), "by_class": by_class,
                "overlap": len(found.ids) if overlap == "exclude" else 0,
                "missing_modality": int(candidates.size - rows.size)}
    return CrossCorpus(cache, reader.dataset, data, list(keys), rows, to_run[data.labels], mapping, found, left_out)


def score_heads(heads: Sequence, cross: CrossCorpus, device, batch_size: int = 128) -> tuple[dict, Predictions]:
    """Metrics over the shared classes (k-fold runs: every fold model on every clip, mean and std)."""
    from emo.fusion.train import infer_probabilities

    run_classes = cross.mapping.run_classes
    shared = cross.mapping.shared
    shared_index = np.array([run_classes.index(c) for c in shared], dtype=np.int64)
    position = np.full(len(run_classes), -1, dtype=np.int64)  # run class index -> shared position
    position[shared_index] = np.arange(len(shared))
    rows = cross.rows
    parts, fold_metrics = [], []
    for fold, head in enumerate(heads):
        head.to(device)
        probs, _ = infer_probabilities(head, cross.data, rows, cross.keys, device, cross.true, batch_size)
        head.cpu()
        predicted = shared_index[probs[:, shared_index].argmax(axis=1)]
        part = Predictions(cross.ids, cross.true[rows], predicted, probs, np.full(len(rows), fold), list(run_classes))
        parts.append(part)
        scored = score(position[part.true], position[part.predicted], shared)
        scored.update(fold=fold, predicted_unshared=int((position[probs.argmax(axis=1)] < 0).sum()))
        fold_metrics.append(scored)
    predictions = Predictions.concat(parts)
    if len(heads) == 1:
        metrics = fold_metrics[0]
    else:
        metrics = aggregate_folds(fold_metrics, score(position[predictions.true], position[predictions.predicted], shared))
        metrics["predicted_unshared"] = sum(f["predicted_unshared"] for f in fold_metrics)
    metrics["cross_corpus"] = {**cross.describe(), "notes": cross.notes()}
    return metrics, predictions


def save_scores(out: Path, metrics: dict, predictions: Predictions, title: str) -> None:
    """metrics.json, predictions.csv and confusion.png of a (re)score in `out`."""
    from emo.fusion.report import plot_confusion
    from emo.fusion.run_dir import METRICS, PREDICTIONS, write_json

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EmoError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / METRICS, metrics)
    predictions.write_csv(out / PREDICTIONS)
    plot_confusion(metrics["confusion"], metrics["classes"], out / "confusion.png", title)
