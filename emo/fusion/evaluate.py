"""`evaluate`: rescore a saved run on its own test split, or on another cache's clips.

The cache must carry the same fingerprints as at training time for every modality the head
reads (same backbone, revision, layers, preprocessing): a different one would feed the head
features it never saw, so it is refused with the modality and field that differ.

Another cache is scored cross-corpus (emo.fusion.cross_corpus): classes matched by name or
`label_map`, clips the run trained or validated on refused, left out or included (`overlap`),
and everything left out counted in `metrics["cross_corpus"]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from emo.errors import EmoError
from emo.fusion.data import load_data
from emo.fusion.predictions import Predictions
from emo.fusion.run_dir import load_run
from emo.fusion.steps import combine_folds, score_fold
from emo.accel import resolve_device
from emo.fusion.train import deterministic, infer_probabilities


@dataclass
class EvalResult:
    metrics: dict
    predictions: Predictions
    cache: Path
    same_cache: bool  # True: scored on the run's own test split
    dropped: list[str]
    notes: list[str] = field(default_factory=list)  # what a cross-corpus score left out


def check_fingerprints(trained: dict, reader, modalities: Sequence[str]) -> None:
    """`trained`: {modality: fingerprint} as recorded at training time (RunRecord.cache.fingerprints)."""
    from emo.cache import differences

    for modality in modalities:
        if modality not in reader.modalities:
            holds = ", ".join(reader.modalities) or "nothing"
            raise EmoError(f"{reader.path}: no {modality} modality, which the run was trained on (it holds: {holds})")
        changed = differences(trained[modality], reader.fingerprint(modality))
        if changed:
            raise EmoError(
                f"{reader.path}: {modality} fingerprint differs from training: {'; '.join(changed)} "
                "(re-extract with the training settings or refit on this cache)"
            )


def evaluate(
    run: str | Path,
    cache: str | Path | None = None,
    *,
    drop: Sequence[str] = (),
    device: str = "auto",
    batch_size: int = 128,
    label_map: Sequence[str] | str | dict | None = None,
    overlap: str | None = None,
    label_column: str | None = None,
) -> EvalResult:
    """Scores of a run's saved model(s): k-fold runs score each fold's model on its own test fold
    (same cache) or on every clip (another cache) and report mean and std like `fit`.

    `overlap` (refuse | exclude | include, default refuse) handles another cache's clips that the
    run trained or validated on. A run fitted with a test cache (`fit --test-cache`) is rescored on
    that cache by default, with the label map, overlap policy and label column it was fitted with.
    `label_column` names the other cache's label column (default: the run's own).
    """
    from emo.cache import CacheReader

    saved = load_run(run)
    record = saved.record
    modalities = list(record.modalities)
    drop = list(drop)
    unknown = [m for m in drop if m not in modalities]
    if unknown:
        raise EmoError(f"--drop {', '.join(unknown)}: the run uses {', '.join(modalities)}")
    keys = [m for m in modalities if m not in drop]
    if not keys:
        raise EmoError("--drop would remove every modality the run uses")

    trained_path = Path(record.cache.path)
    tested_on = record.test_cache
    if cache is None and tested_on:
        cache = tested_on.path
        label_map = tested_on.label_map["given"] if label_map is None else label_map
        overlap = overlap or tested_on.overlap["policy"]
        label_column = tested_on.label_column if label_column is None else label_column
    cache_path = Path(cache) if cache is not None else trained_path
    same_cache = cache_path.resolve() == trained_path.resolve()
    device = resolve_device(device)
    class_names = list(record.classes)
    if not same_cache:
        return _evaluate_other(saved, cache_path, keys, drop, device, batch_size, label_map, overlap, label_column)
    if label_map:
        raise EmoError("--label-map applies to another cache; the run's own cache has the run's classes")
    if tested_on:
        raise EmoError(f"{cache_path}: the run was trained on all of it and tested on {tested_on.path}; "
                       "it has no test split here")
    reader = CacheReader(cache_path)
    check_fingerprints(record.cache.fingerprints, reader, keys)

    if not saved.splits:
        raise EmoError(f"{saved.path}: no splits.json, so the run's test split is unknown")
    normalization = record.normalize
    # Speaker statistics come from every clip of a speaker, as at training time: then load them all.
    test_ids = sorted({cid for fold in saved.splits for cid in fold["test"]}) if normalization is None else None
    data = load_data(
        cache_path, keys, layers=record.cache.layers, label_column=record.label_column,
        classes=class_names, clip_ids=test_ids, device=device, reader=reader,
    )
    if normalization is not None:
        from emo.fusion.normalize import speaker_normalized

        data, info = speaker_normalized(data, keys, cache_path)
        normalization = {**normalization, **info}
    data.max_frames = record.max_frames
    index = {cid: i for i, cid in enumerate(data.ids)}
    # A run trained with modality dropout was also tested on clips missing a modality.
    allow_missing = record.modality_dropout > 0
    usable_ids = {data.ids[r] for r in data.rows_with(keys, allow_missing)}
    heads = saved.heads()
    parts, fold_metrics = [], []
    with deterministic(device):
        for fold, head in enumerate(heads):
            ids = saved.splits[fold]["test"]
            lost = [c for c in ids if c not in usable_ids]
            if lost:
                raise EmoError(f"{cache_path}: {len(lost)} test clips of fold {fold} are gone or lack a modality "
                               f"(e.g. {lost[0]})")
            rows = np.array([index[c] for c in ids], dtype=np.int64)
            head.to(device)
            probs, _ = infer_probabilities(head, data, rows, keys, device, data.labels, batch_size)
            head.cpu()
            part, scored = score_fold([data.ids[r] for r in rows], data.labels[rows], probs, fold, class_names)
            parts.append(part)
            fold_metrics.append(scored)
    if not parts:  # load_run guarantees at least one weights file; never concatenate nothing
        raise EmoError(f"{saved.path}: the run has no fold model to score")
    predictions, metrics = combine_folds(parts, fold_metrics, class_names)
    metrics["dropped"] = drop
    if normalization is not None:
        metrics["normalize"] = normalization
    return EvalResult(metrics, predictions, cache_path, same_cache, drop)


def _evaluate_other(saved, cache_path, keys, drop, device, batch_size, label_map, overlap, label_column) -> EvalResult:
    from emo.fusion.cross_corpus import prepare_cross, score_heads
    from emo.fusion.overlap import trained_ids, trained_sources

    record = saved.record
    seen = trained_ids(saved.splits)
    cross = prepare_cross(
        cache_path, keys=keys, fingerprints=record.cache.fingerprints, layers=record.cache.layers,
        run_classes=record.classes, seen_ids=seen, seen_sources=trained_sources(record.cache.path, seen),
        label_map=label_map, overlap=overlap or "refuse",
        label_column=label_column if label_column is not None else record.label_column,
        allow_missing=record.modality_dropout > 0, device=device,
    )
    normalization = record.normalize
    if normalization is not None:
        from emo.fusion.normalize import normalized_cross

        cross = normalized_cross(cross, keys)
    cross.data.max_frames = record.max_frames
    with deterministic(device):
        metrics, predictions = score_heads(saved.heads(), cross, device, batch_size)
    metrics["dropped"] = drop
    if normalization is not None:
        metrics["normalize"] = normalization
    return EvalResult(metrics, predictions, cache_path, False, drop, metrics["cross_corpus"]["notes"])
